"""Online learning's per-step path (``rule.step()`` and ``opt.step()`` after every time
step): the one-step spike check and the optimizers' plain-SGD step do the same as before
with fewer ops (benchmarks/online.py measures the time; no timings here), and refuse or
fall back exactly where they must."""

from __future__ import annotations

import cProfile
import pstats

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import plasticity as pl
from plasticity.rules.checks import _steps_valid

PAIR = dict(a_plus=0.5, a_minus=0.4, tau_plus=3.0, tau_minus=4.0)


class _Replay(nn.Module):
    """A neuron that emits recorded spikes, one step per call."""

    def __init__(self, spikes: torch.Tensor) -> None:
        super().__init__()
        self.spikes, self.t = spikes, 0

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        self.t += 1
        return self.spikes[self.t - 1]


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


BAD = [0.5, 2.0, -1.0, 1e-45, float("nan"), float("inf"), -float("inf")]
#: refused by the one-step check, not yet by the chunk check (a float32 sum of several
#: spikes rounds 1 - 2^-24 to 1), which then learns from the step as before
NEAR_ONE = [1.0 - 2.0**-24, 1.0 - 2.0**-23]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("side", ["pre", "post"])
def test_online_learning_refuses_a_non_binary_spike_at_its_step(value, side):
    """Every value other than 0 and 1 is refused at the step that carries it (the steps
    before it learned, as a reference run on those steps alone), nothing of it kept."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 2, 5, generator=g) < 0.5).float()
    y = (torch.rand(6, 2, 3, generator=g) < 0.5).float()
    (x if side == "pre" else y)[4, 1, 2] = value

    def run(steps: int):
        fc = nn.Linear(5, 3, bias=False)
        nn.init.constant_(fc.weight, 0.5)
        rule = pl.STDP(fc, _Replay(y), **PAIR)
        opt = pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)
        for t in range(steps):
            rule.neuron(fc(x[t]))
            rule.step()
            opt.step()
            opt.zero_grad()
        return fc, rule

    fc_ref, _ = run(4)
    fc, rule = run(4)
    rule.neuron(fc(x[4]))
    with pytest.raises(ValueError, match="not binary|NaN|infinity"):
        rule.step()
    assert fc.weight.grad is None and rule.accumulator.counts == (0, 0)
    assert torch.equal(fc.weight, fc_ref.weight)


def test_negative_zero_is_a_binary_zero_online():
    """-0.0 is 0: learned from as 0 (the same Δw as with +0.0)."""
    y = torch.tensor([[[1.0, -0.0, 0.0]], [[0.0, 1.0, -0.0]]])
    x = torch.tensor([[[1.0, -0.0]], [[1.0, 1.0]]])
    out = []
    for pre, post in ((x, y), (x.abs(), y.abs())):
        fc = nn.Linear(2, 3, bias=False)
        rule = pl.STDP(fc, _Replay(post), **PAIR)
        dws = []
        for t in range(2):
            rule.neuron(fc(pre[t]))
            dws.append(rule.step())
        out.append(torch.stack(dws))
    assert torch.equal(out[0], out[1]) and out[0].abs().sum() > 0


def test_the_one_step_check_is_a_few_ops():
    """A one-step window's check of its pre and post spikes: 4 ops, views included (a
    Heaviside step and one comparison per side), where online learning runs it every step
    (it was 8: count, min/max, sum, stack, ...; then 6: two reshapes, a cat, clamp, ceil
    and the comparison)."""
    pre, post = torch.zeros(1, 2, 100), torch.ones(1, 2, 20)
    counter = _CountOps()
    with counter:
        assert _steps_valid([(pre, True, "pre"), (post, True, "post")])
    assert len(counter.ops) <= 4, counter.ops
    assert not any("cat" in op for op in counter.ops), counter.ops


@pytest.mark.parametrize("value", [*BAD, *NEAR_ONE])
def test_the_one_step_check_refuses_each_non_binary_value(value):
    x = torch.tensor([0.0, 1.0, -0.0, value])
    assert not _steps_valid([(torch.zeros(3), True, "pre"), (x, True, "post")])
    assert _steps_valid([(torch.zeros(3), True, "pre"), (x[:3], True, "post")])
    finite = value == value and abs(value) != float("inf")
    assert _steps_valid([(x, False, "voltage")]) is finite


def _online_ops(rule, fc, x, reads=""):
    """The ops of ``rule.step()`` at the 6th step of an online loop (hooks, ``step()``
    every step), after 5 steps that set its buffers up."""
    with torch.no_grad():
        for t in range(6):
            rule.neuron(fc(x[t]))
            counter = _CountOps()
            with counter:
                rule.step()
            fc.weight.grad = None
    return [op for op in counter.ops if reads in op]


@pytest.mark.parametrize("soft, most", [(False, 15), (True, 21)])
def test_an_online_step_of_pair_stdp_is_a_few_ops(soft, most):
    """``rule.step()`` of pair STDP after each step (hooks, B = 2, 10 -> 4): the spike
    check, two traces, two products, the bounds and ``-Δw``; no view of the buffers (the
    step's rows are views kept by them: it was 20/25 with 2 slices and 2 selects of the
    buffers, and without bounds a detach of the weight; before that, 2 more: a cat of the
    spikes for their check and its views)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 2, 10, generator=g) < 0.5).float()
    y = (torch.rand(6, 2, 4, generator=g) < 0.5).float()
    fc = nn.Linear(10, 4, bias=False)
    rule = pl.STDP(fc, _Replay(y), **PAIR)
    if soft:
        rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
        rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    ops = _online_ops(rule, fc, x)
    assert len(ops) <= most, ops


def _online_calls(rule, fc, x) -> pstats.Stats:
    """The function calls (Python and C) of ``rule.step()`` at the 6th step of an online
    loop, as :mod:`cProfile` counts them."""
    profile = cProfile.Profile()
    with torch.no_grad():
        for t in range(6):
            rule.neuron(fc(x[t]))
            if t == 5:
                profile.enable()
            rule.step()
            profile.disable()
            fc.weight.grad = None
    return pstats.Stats(profile)


@pytest.mark.parametrize("soft, most", [(False, 185), (True, 235)])
def test_an_online_step_of_pair_stdp_is_a_short_sequence(soft, most):
    """``rule.step()`` of pair STDP after each step (hooks, B = 1, 10 -> 4) runs through
    few layers: at most ``most`` function calls (they were 248/297: the chunk path's
    checks and slicing, the accumulator's checks of appends its engine made, a hash of
    a signal node at every lookup of the step's values), of which at most 4 hash a
    signal node (they were 18) and none reads the rule's parts through
    ``nn.Module.__getattr__``."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 1, 10, generator=g) < 0.5).float()
    y = (torch.rand(6, 1, 4, generator=g) < 0.5).float()
    fc = nn.Linear(10, 4, bias=False)
    rule = pl.STDP(fc, _Replay(y), **PAIR, coincident="both")
    if soft:
        rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
        rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    stats = _online_calls(rule, fc, x)
    calls = {name: n for (_, _, name), (_, n, *_) in stats.stats.items()}  # type: ignore[attr-defined]
    assert stats.total_calls <= most, sorted(calls.items(), key=lambda kv: -kv[1])  # type: ignore[attr-defined]
    assert calls.get("__hash__", 0) <= 4, calls
    assert calls.get("__getattr__", 0) == 0, calls


def test_a_signed_factor_is_split_once_per_product_online():
    """A product of two signed factors takes each one's signed parts once per step (its
    min and max: one ``aminmax`` each; the pre factor was split again for each part of the
    post factor), and Δw is the written-out update (float64, explicit traces)."""
    g = torch.Generator().manual_seed(1)
    steps, batch = 6, 2
    x = (torch.rand(steps, batch, 5, generator=g) < 0.5).double()
    y = (torch.rand(steps, batch, 3, generator=g) < 0.5).double()
    for s in (x, y):  # both signs at the 6th step: d·x(t-1) > 0 on 0, -0.5 on 1 (a first spike)
        s[4:, :, 0], s[:, :, 1] = torch.tensor([[1.0], [0.0]]), 0.0
        s[5, :, 1] = 1.0
    declared = dict(pos=0.3 * (pl.post.trace(3.0).before - 0.5 * pl.post.spike)
                    * (pl.pre.trace(2.0).before - 0.5 * pl.pre.spike))  # fmt: skip
    fc = nn.Linear(5, 3, bias=False).double()
    rule = pl.Rule(fc, _Replay(y), **declared)
    assert len(_online_ops(rule, fc, x, reads="aminmax")) == 2
    fc, dws = nn.Linear(5, 3, bias=False).double(), []
    rule = pl.Rule(fc, _Replay(y), **declared)
    with torch.no_grad():
        for t in range(steps):
            rule.neuron(fc(x[t]))
            dws.append(rule.step())
    dq, dp = torch.exp(torch.tensor(-1 / 3.0, dtype=torch.float64)), torch.exp(
        torch.tensor(-1 / 2.0, dtype=torch.float64))  # fmt: skip
    yt, xt = torch.zeros(batch, 3, dtype=torch.float64), torch.zeros(batch, 5, dtype=torch.float64)
    for t in range(steps):  # (``.before``: the trace just before the step's spike, d·x(t-1))
        yb, xb = dq * yt, dp * xt
        expected = sum(torch.outer(yb[b] - 0.5 * y[t, b], xb[b] - 0.5 * x[t, b])
                       for b in range(batch)) * 0.3 / batch  # fmt: skip
        torch.testing.assert_close(dws[t], expected, rtol=1e-13, atol=1e-15)
        yt, xt = yb + y[t], xb + x[t]


# ------------------------------------------------------------------ optimizers' SGD


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.rand(4, 3, generator=g)), nn.Parameter(torch.rand(5, generator=g)),
            nn.Parameter(torch.rand(2, 2, generator=g))]  # fmt: skip


def _grads(step: int, params: list[nn.Parameter]) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):  # the last one has no gradient on odd steps
        p.grad = None if (i == 2 and step % 2) else torch.randn(p.shape, generator=g)


def _groups(params: list[nn.Parameter], **options) -> list[dict]:
    return [{"params": params[:2], "lr": 0.3}, {"params": params[2:], "lr": 0.7, **options}]


def _reference(options: dict, steps: int = 4) -> list[torch.Tensor]:
    """torch's SGD, then the clamp, written apart from plasticity's optimizers."""
    params = _params()
    sgd = torch.optim.SGD(_groups(params, **options), lr=0.1, maximize=options.get("max", False))
    for s in range(steps):
        _grads(s, params)
        sgd.step()
        with torch.no_grad():
            for p in params:
                p.clamp_(0.1, 0.9)
    return [p.detach().clone() for p in params]


def _ours(options: dict, steps: int = 4) -> list[torch.Tensor]:
    params = _params()
    opt = pl.ClampedParameterOptimizer(_groups(params, **options), lr=0.1, clamp_min=0.1,
                                       clamp_max=0.9, maximize=options.get("max", False))  # fmt: skip
    for s in range(steps):
        _grads(s, params)
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("options", [{}, {"max": True}, {"momentum": 0.9}, {"weight_decay": 0.1},
                                     {"momentum": 0.5, "nesterov": True, "dampening": 0.0},
                                     {"lr": torch.tensor(0.5)}, {"max": True, "momentum": 0.3}])  # fmt: skip
def test_the_clamped_optimizer_gives_torchs_sgd_then_the_clamp(options):
    got, expected = _ours(options), _reference(options)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_hooks_on_the_inner_sgd_run():
    """Step hooks registered on the inner optimizer run (its own step is taken)."""
    params = _params()
    opt = pl.ClampedParameterOptimizer(params, lr=0.1, clamp_min=0.0, clamp_max=1.0)
    seen = []
    opt.inner_opt.register_step_post_hook(lambda *a: seen.append(1))
    _grads(0, params)
    opt.step()
    assert seen == [1]


def test_a_sparse_gradient_takes_torchs_step():
    emb = nn.Embedding(6, 3, sparse=True)
    ref = nn.Embedding(6, 3, sparse=True)
    ref.load_state_dict(emb.state_dict())
    opt = pl.ClampedParameterOptimizer(emb.parameters(), lr=0.5, clamp_min=-0.5, clamp_max=0.5)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.5)
    idx = torch.tensor([1, 4, 4])
    for module, o in ((emb, opt), (ref, sgd)):
        module(idx).sum().backward()
        o.step()
    with torch.no_grad():
        ref.weight.clamp_(-0.5, 0.5)
    assert torch.equal(emb.weight, ref.weight)


def test_online_learning_with_snntorch_equals_torchs_sgd():
    """``step()`` + ``opt.step()`` every step through the hooks: the same weights as the
    rule's Δw applied by torch's SGD and clamped by hand."""
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(30, 2, 6, generator=g) < 0.4).float()
    out = []
    for ours in (True, False):
        torch.manual_seed(0)
        fc, lif = nn.Linear(6, 4, bias=False), snn.Leaky(beta=0.8, threshold=0.3)
        rule = pl.STDP(fc, lif, **PAIR)
        opt = (pl.ClampedParameterOptimizer([fc.weight], lr=0.05, clamp_min=-1.0, clamp_max=1.0)
               if ours else torch.optim.SGD([fc.weight], lr=0.05))  # fmt: skip
        mem = lif.init_leaky()
        with torch.no_grad():
            for t in range(30):
                _, mem = lif(fc(x[t]), mem)
                rule.step()
                opt.step()
                if not ours:
                    fc.weight.clamp_(-1.0, 1.0)
                opt.zero_grad()
        out.append(fc.weight.detach().clone())
    assert torch.equal(out[0], out[1])
