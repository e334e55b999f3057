"""What a rule is given: shapes, dtypes, numpy arrays and lists, rewards, voltages, empty
inputs, spikes the policy refuses and graded values whose products overflow.

Every refused input is an error naming the argument (at the call that passes it; a
spike given through the hooks, when its chunk is processed), and leaves the rule's state (``state_dict``: traces, buffered steps, accumulator) and the
weights as they were; what was given before it is kept and learned, against the pair
sums of tests/reference.py.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import snntorch as snn
import torch
from reference import dense_reference
from torch import Tensor, nn

import plasticity as pl

PAIR = dict(a_plus=0.5, a_minus=0.4, tau_plus=3.0, tau_minus=4.0)


def _same(a, b) -> bool:
    """Nested state (dicts, lists, tensors, numbers) equal, tensors bit for bit."""
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.shape == b.shape and a.dtype == b.dtype and bool(
            torch.equal(a, b))  # fmt: skip
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _state(rule) -> dict:
    return copy.deepcopy({"rule": rule.state_dict(), "weight": rule.weight.detach().clone(),
                          "grad": rule.weight.grad, "pending": rule._pending})  # fmt: skip


def _spikes(seed: int, steps: int, batch: int, n: int, p: float = 0.35) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, n, generator=g) < p).double()


def _stdp(n_in: int = 5, n_out: int = 3, **options):
    fc = nn.Linear(n_in, n_out, bias=False).double()
    lif = snn.Leaky(beta=0.5)
    return pl.STDP(fc, lif, **PAIR, **options), fc, lif


def _check(rule, pre, post, **reference):
    """The rule's window so far equals the pair sums of ``pre``/``post``."""
    rule.flush()
    want = dense_reference(pre, post, PAIR, **reference)
    for got, ref in zip((rule.accumulator.pos, rule.accumulator.neg), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


class Replay(nn.Module):
    """A neuron that returns recorded spikes, one step per call (whatever its input)."""

    def __init__(self, spikes: Tensor) -> None:
        super().__init__()
        self.spikes, self.t = spikes, 0

    def forward(self, current: Tensor) -> Tensor:
        self.t += 1
        return self.spikes[self.t - 1]


# ----------------------------------------------------------- 1. what [T, N] means


@pytest.mark.parametrize("side", ["pre", "post"])
@pytest.mark.parametrize("shape", ["[T, N]", "[N]"])
def test_observe_refuses_a_recording_without_a_batch_dimension(side, shape):
    """[T, N] is one recording of T steps to a neuroscientist and one step of T samples
    to the hooks: observe() takes [T, B, N] only and says how to pass either."""
    rule, _, _ = _stdp()
    pre, post = _spikes(0, 10, 1, 5), _spikes(1, 10, 1, 3)
    cut = (lambda x: x[:, 0]) if shape == "[T, N]" else (lambda x: x[0, 0])
    pre, post = (cut(pre), post) if side == "pre" else (pre, cut(post))
    before = _state(rule)
    with pytest.raises(ValueError, match=rf"`{side}` has shape .*\[T, B, .*{side}\[:, None\]"):
        rule.observe(pre, post)
    assert _same(before, _state(rule))


def test_observe_refuses_an_unbatched_conv_recording():
    conv = nn.Conv2d(2, 3, 3, bias=False)
    rule = pl.STDP(conv, snn.Leaky(beta=0.5), **PAIR)
    with pytest.raises(ValueError, match=r"`pre` has shape \(6, 2, 5, 5\).*\[T, B, 2, 5, 5\]"):
        rule.observe(torch.zeros(6, 2, 5, 5), torch.zeros(6, 3, 3, 3))
    rule.observe(torch.zeros(6, 1, 2, 5, 5), torch.zeros(6, 1, 3, 3, 3))  # [T, 1, C, H, W]


def test_a_single_recording_as_T_1_N_learns_its_pair_sums():
    """The issue's case: a pre spike 3 steps before a post spike potentiates by
    a_plus * exp(-3 / tau_plus); a random recording matches the explicit pair sums."""
    rule, _, _ = _stdp(2, 2)
    pre, post = torch.zeros(10, 2, dtype=torch.float64), torch.zeros(10, 2, dtype=torch.float64)
    pre[2, 0] = post[5, 1] = 1.0
    rule.observe(pre[:, None], post[:, None])
    dw = rule.step()
    want = torch.zeros(2, 2, dtype=torch.float64)
    want[1, 0] = PAIR["a_plus"] * math.exp(-3 / PAIR["tau_plus"])
    torch.testing.assert_close(dw, want, rtol=1e-12, atol=0)
    rule, _, _ = _stdp()
    pre, post = _spikes(2, 40, 1, 5)[:, 0], _spikes(3, 40, 1, 3)[:, 0]
    rule.observe(pre[:, None], post[:, None])
    _check(rule, pre[:, None], post[:, None])


# ---------------------------------------- 2. spikes the policy refuses, at their call


@pytest.mark.parametrize("value", [0.5, 1e-6, 2.0, -1.0, float("nan")])
@pytest.mark.parametrize("side", ["pre", "post"])
def test_hooks_report_a_bad_step_with_its_chunk_and_keep_the_steps_before(side, value):
    """The hooks check spikes once per chunk (a check per neuron call costs more than
    the whole step at B = 1): a bad step among buffered ones is reported when its chunk
    is processed (here at step()), naming the step; the steps before it are learned
    (pair sums), it and the rest of its chunk discarded, and learning goes on after."""
    pre, post = _spikes(4, 20, 2, 5), _spikes(5, 20, 2, 3)
    bad = 7
    bad_pre, bad_post = pre.clone(), post.clone()
    (bad_pre if side == "pre" else bad_post)[bad, 1, 2] = value
    fc = nn.Linear(5, 3, bias=False).double()
    neuron = Replay(bad_post)
    rule = pl.STDP(fc, neuron, **PAIR)
    for t in range(12):
        neuron(fc(bad_pre[t]))
    assert rule._post.n == 12  # buffered, not yet processed
    words = "NaN or infinity" if math.isnan(value) else "not binary"
    with pytest.raises(ValueError, match=rf"{words} .*at step {bad} of this window") as err:
        rule.step()
    assert ("synapse's input" in str(err.value)) == (side == "pre")
    assert rule._post.n == 0
    _check(rule, pre[:bad], post[:bad])
    for t in range(12, 20):  # the loop goes on: later steps are learned
        neuron(fc(pre[t]))
    keep = [t for t in range(20) if t < bad or t >= 12]
    _check(rule, pre[keep], post[keep])


@pytest.mark.parametrize("value", [0.5, float("inf")])
def test_observe_reports_a_bad_step_at_its_call_and_keeps_earlier_calls(value):
    """A short sequence waits in the step buffers; a second observe() call with a bad
    value raises at once (not at step()), and the first call's steps are learned. Not
    binary: the whole call is refused; NaN/inf: its steps before the bad one count."""
    pre, post = _spikes(6, 14, 2, 5), _spikes(7, 14, 2, 3)
    rule, _, _ = _stdp()
    rule.observe(pre[:6], post[:6])  # under 16 steps: buffered
    assert rule._post.n == 6
    bad_pre = pre.clone()
    bad_pre[9, 0, 1] = value  # step 3 of the second call, step 9 of the window
    before = _state(rule)
    with pytest.raises(ValueError, match=r"`pre`\) (are not binary|contain NaN).* at step 9 "):
        rule.observe(bad_pre[6:], post[6:])
    if value == 0.5:
        assert _same(before, _state(rule))
        _check(rule, pre[:6], post[:6])
    else:
        _check(rule, pre[:9], post[:9])


def test_observe_of_a_modulated_rule_reports_a_bad_step_at_its_call():
    """MSTDP buffers every observe() call (the latest step waits for its reward): a
    non-binary value is reported by the call that passes it, the earlier call is kept."""
    g = torch.Generator().manual_seed(8)
    pre, post = _spikes(8, 10, 1, 4), _spikes(9, 10, 1, 2)
    reward = torch.randn(10, generator=g, dtype=torch.float64)
    make = lambda: pl.MSTDP(nn.Linear(4, 2, bias=False).double(), snn.Leaky(beta=0.5), **PAIR)  # noqa: E731
    rule, clean = make(), make()
    rule.observe(pre[:5], post[:5], reward=reward[:5])
    clean.observe(pre[:5], post[:5], reward=reward[:5])
    bad_post = post.clone()
    bad_post[7, 0, 1] = 3.0
    before = _state(rule)
    with pytest.raises(ValueError, match=r"output spikes \(`post`\) are not binary .* at step 7 "):
        rule.observe(pre[5:], bad_post[5:], reward=reward[5:])
    assert _same(before, _state(rule))
    torch.testing.assert_close(rule.step(), clean.step(), rtol=0, atol=0)


def test_hooks_report_a_bad_step_at_the_call_that_fills_its_chunk():
    """A chunk fills during the loop: the neuron call that completes the chunk holding
    the bad step raises, naming it; the steps before it are learned."""
    pre, post = _spikes(10, 20, 2, 5), _spikes(11, 20, 2, 3)
    bad = 13  # in the second chunk of 8
    bad_pre = pre.clone()
    bad_pre[bad, 0, 4] = 0.25
    fc = nn.Linear(5, 3, bias=False).double()
    neuron = Replay(post)
    rule = pl.STDP(fc, neuron, **PAIR, chunk_size=8)
    for t in range(16):
        if t == 15:  # the call that fills the second chunk
            with pytest.raises(ValueError, match=rf"not binary .* at step {bad} .* the {bad} steps before"):
                neuron(fc(bad_pre[t]))
        else:
            neuron(fc(bad_pre[t]))
    _check(rule, pre[:bad], post[:bad])


@pytest.mark.parametrize("how", ["hooks", "observe"])
def test_a_bad_step_is_reported_and_the_steps_before_it_learned_on_every_device(device, how):
    pre, post = _spikes(12, 12, 2, 5).float(), _spikes(13, 12, 2, 3).float()
    bad_pre = pre.clone()
    bad_pre[8, 1, 0] = 0.5
    fc = nn.Linear(5, 3, bias=False).to(device)
    neuron = Replay(post.to(device))
    rule = pl.STDP(fc, neuron, **PAIR)
    if how == "observe":
        rule.observe(pre[:8].to(device), post[:8].to(device))
    with pytest.raises(ValueError, match="not binary .* at step 8 "):
        if how == "observe":
            rule.observe(bad_pre[8:].to(device), post[8:].to(device))
        else:
            for t in range(12):
                neuron(fc(bad_pre[t].to(device)))
        rule.step()  # the hooks' check runs with the chunk
    rule.flush()
    want = dense_reference(pre[:8].double(), post[:8].double(), PAIR)
    got = (rule.accumulator.pos.cpu().double(), rule.accumulator.neg.cpu().double())
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


# --------------------------------------------------- 3. types, rewards, empty inputs


@pytest.mark.parametrize("kind", ["numpy", "list", "numpy-bool", "int64"])
def test_observe_converts_numpy_arrays_and_lists_to_the_weights_device_and_dtype(kind):
    pre, post = _spikes(14, 20, 2, 5), _spikes(15, 20, 2, 3)
    convert = {
        "numpy": lambda x: x.numpy(),
        "list": lambda x: x.tolist(),
        "numpy-bool": lambda x: x.numpy().astype(bool),
        "int64": lambda x: x.long(),
    }[kind]
    rule, _, _ = _stdp()
    given_pre, given_post = convert(pre), convert(post)
    rule.observe(given_pre, given_post)
    _check(rule, pre, post)
    if kind == "numpy":  # read, never written
        assert np.array_equal(given_pre, pre.numpy())


@pytest.mark.parametrize(
    "value",
    ["abc", ["a", "b"], 1 + 2j, torch.tensor(1 + 1j), True, np.bool_(True), torch.tensor(True),
     None, [[1.0], [1.0, 2.0]]],  # fmt: skip
    ids=["str", "strs", "complex", "complex-tensor", "bool", "numpy-bool", "bool-tensor", "None",
         "ragged"],  # fmt: skip
)
def test_non_numeric_rewards_are_type_errors_naming_reward(value):
    """To reward() (after a step's forward pass) and to observe(reward=): a TypeError
    that names `reward`, nothing changed. A bool is refused too: pass a number (a
    success flag as 1.0 / -1.0 is a choice the rule cannot make)."""
    pre, post = _spikes(16, 3, 1, 4), _spikes(17, 3, 1, 2)
    fc, lif = nn.Linear(4, 2, bias=False).double(), snn.Leaky(beta=0.5)
    rule = pl.MSTDP(fc, lif, **PAIR)
    lif(fc(pre[0]))
    before = _state(rule)
    if value is not None:  # reward(None) is a TypeError too; observe(reward=None): no reward
        with pytest.raises(TypeError, match="`reward` must be"):
            rule.reward(value)
        assert _same(before, _state(rule))
    if value is None:
        value = object()
    with pytest.raises(TypeError, match="`reward` must be"):
        rule.observe(pre, post, reward=value)
    assert _same(before, _state(rule))


def test_numpy_rewards_are_numbers_like_floats():
    pre, post = _spikes(18, 6, 2, 4), _spikes(19, 6, 2, 2)
    rules = []
    for kind in ("float", "numpy"):
        fc, neuron = nn.Linear(4, 2, bias=False).double(), Replay(post)
        rule = pl.MSTDP(fc, neuron, **PAIR, per_sample=True)
        for t in range(6):
            neuron(fc(pre[t]))
            r = 0.5 * t - 1.0
            rule.reward(r if kind == "float" else np.float32(r))
            rule.reward(torch.tensor([0.25, -0.5]) if kind == "float" else np.array([0.25, -0.5]))
        rules.append(rule.step())
    assert bool(rules[0].any())
    torch.testing.assert_close(rules[0], rules[1], rtol=0, atol=0)


@pytest.mark.parametrize("value", ["abc", torch.ones(4, 1, 5, dtype=torch.complex64), None])
@pytest.mark.parametrize("side", ["pre", "post"])
def test_non_numeric_spikes_are_type_errors_naming_the_argument(side, value):
    rule, _, _ = _stdp()
    pre, post = torch.zeros(4, 1, 5), torch.zeros(4, 1, 3)
    if isinstance(value, Tensor) and side == "post":
        value = torch.ones(4, 1, 3, dtype=torch.complex64)
    before = _state(rule)
    with pytest.raises(TypeError, match=f"`{side}` must be"):
        rule.observe(value if side == "pre" else pre, value if side == "post" else post)
    assert _same(before, _state(rule))


def test_voltage_for_a_rule_that_reads_none_is_an_error_naming_it():
    rule, _, _ = _stdp()
    pre, post = _spikes(20, 5, 1, 5), _spikes(21, 5, 1, 3)
    before = _state(rule)
    with pytest.raises(ValueError, match="STDP reads no membrane potential.*`voltage`"):
        rule.observe(pre, post, voltage=torch.zeros(5, 1, 3))
    assert _same(before, _state(rule))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize(
    "make", [lambda: nn.Linear(0, 5), lambda: nn.Linear(5, 0), lambda: nn.Conv2d(2, 0, 3),
             lambda: nn.Conv1d(0, 3, 3)],  # fmt: skip
    ids=["no-inputs", "no-outputs", "conv-no-outputs", "conv-no-inputs"],
)
def test_a_synapse_without_weights_is_refused_at_construction(make):
    synapse, neuron = make(), snn.Leaky(beta=0.5)
    with pytest.raises(ValueError, match=r"`synapse` .* has no weights"):
        pl.STDP(synapse, neuron, **PAIR)
    assert not synapse._forward_pre_hooks and not neuron._forward_hooks


@pytest.mark.parametrize("how", ["hooks", "observe"])
@pytest.mark.parametrize("synapse", ["linear", "conv"])
def test_an_empty_batch_learns_nothing_and_does_not_crash(how, synapse):
    """B = 0 (e.g. an empty last batch): an update of zeros, weights unchanged."""
    if synapse == "linear":
        layer, x = nn.Linear(5, 3, bias=False), torch.zeros(20, 0, 5)
    else:
        layer, x = nn.Conv2d(2, 3, 3, bias=False), torch.zeros(20, 0, 2, 5, 5)
    lif = snn.Leaky(beta=0.5)
    rule = pl.STDP(layer, lif, **PAIR)
    weight = layer.weight.detach().clone()
    if how == "hooks":
        for t in range(x.shape[0]):
            lif(layer(x[t]))
    else:
        out = (3,) if synapse == "linear" else (3, 3, 3)
        rule.observe(x, torch.zeros(20, 0, *out))
    dw = rule.step()
    assert dw is None or not bool(dw.any())
    assert torch.equal(layer.weight, weight)


def test_an_empty_sequence_changes_nothing():
    rule, _, _ = _stdp()
    pre, post = _spikes(22, 5, 2, 5), _spikes(23, 5, 2, 3)
    fresh = _state(rule)
    rule.observe(torch.zeros(0, 7, 5), torch.zeros(0, 7, 3))  # sets no batch size either
    assert _same(fresh, _state(rule))
    rule.observe(pre, post)
    before = _state(rule)
    rule.observe(pre[:0], post[:0])
    rule.observe(pre[:0].numpy(), post[:0].tolist() or np.zeros((0, 2, 3)))
    assert _same(before, _state(rule))
    _check(rule, pre, post)


# ------------------------------------------------------- 4. products that overflow


def test_graded_spikes_whose_products_overflow_are_an_error_not_nan_in_the_gradient():
    """1e20 * 1e20 overflows float32: before, the result went into the accumulator
    unchecked and weight.grad held NaN. Now: a ValueError naming the graded spikes,
    and the rule as it was."""
    fc = nn.Linear(3, 2, bias=False)
    rule = pl.STDP(fc, snn.Leaky(beta=0.5), **PAIR, spikes="graded")
    before = _state(rule)
    big = torch.full((20, 1, 3), 1e20), torch.full((20, 1, 2), 1e20)  # processed at once
    with pytest.raises(ValueError, match=r"steps 0 to 19 .* not finite.*graded spikes too large"):
        rule.observe(*big)
    assert _same(before, _state(rule))
    assert rule.step() is None and fc.weight.grad is None


def test_an_overflowing_chunk_is_discarded_and_the_chunks_before_it_count():
    """Through the hooks (chunks of 4): the first chunk is learned (the pair sums of
    graded amplitudes, by an explicit loop), the second overflows and is discarded,
    and the rule goes on learning afterwards."""
    g = torch.Generator().manual_seed(24)
    pre = torch.rand(8, 2, 3, generator=g, dtype=torch.float64) * (torch.rand(8, 2, 3) < 0.5)
    post = torch.rand(8, 2, 2, generator=g, dtype=torch.float64) * (torch.rand(8, 2, 2) < 0.5)
    post[5] = 1e200  # times a pre trace of 1e200: not a float64
    pre[5] = 1e200
    fc = nn.Linear(3, 2, bias=False).double()
    neuron = Replay(post)
    rule = pl.STDP(fc, neuron, **PAIR, spikes="graded", chunk_size=4)
    with pytest.raises(ValueError, match=r"steps 4 to 7 .* not finite.* the 4 steps before them"):
        for t in range(8):
            neuron(fc(pre[t]))
        rule.step()
    rule.flush()
    pos, neg = _graded_pair_sums(pre[:4], post[:4])
    torch.testing.assert_close(rule.accumulator.pos, pos, rtol=1e-12, atol=0)
    torch.testing.assert_close(rule.accumulator.neg, neg, rtol=1e-12, atol=0)
    rule.observe(pre[:4], post[:4])  # traces as after step 3: learning goes on
    assert bool(torch.isfinite(rule.step()).all())


def _graded_pair_sums(pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
    """All-to-all pair sums with amplitudes: pos_ij = A+ Σ_{t_post >= t_pre} y x e^..,
    batch mean (an explicit loop over pairs)."""
    steps, batch = pre.shape[:2]
    pos = torch.zeros(post.shape[2], pre.shape[2], dtype=torch.float64)
    neg = torch.zeros_like(pos)
    for b in range(batch):
        for tp in range(steps):
            for tq in range(steps):
                outer = torch.outer(post[tp, b], pre[tq, b])
                if tq <= tp:
                    pos += PAIR["a_plus"] * math.exp(-(tp - tq) / PAIR["tau_plus"]) * outer
                else:
                    neg += PAIR["a_minus"] * math.exp(-(tq - tp) / PAIR["tau_minus"]) * outer
    return pos / batch, neg / batch


def test_rewards_whose_products_overflow_are_an_error_naming_them():
    fc = nn.Linear(3, 2, bias=False)
    rule = pl.MSTDP(fc, snn.Leaky(beta=0.5), a_plus=10.0, a_minus=10.0, tau_plus=5.0,
                    tau_minus=5.0)  # fmt: skip
    pre, post = torch.ones(4, 1, 3), torch.ones(4, 1, 2)
    before = _state(rule)
    with pytest.raises(ValueError, match="not finite.*rewards too large"):
        rule.observe(pre, post, reward=3e38)
        rule.step()
    assert _same(before["weight"], rule.weight) and fc.weight.grad is None
    rule.observe(pre, post, reward=1.0)  # the rule goes on
    assert bool(torch.isfinite(rule.step()).all())


def test_an_overflowing_eligibility_trace_is_reset_so_that_learning_goes_on():
    """MSTDPET: graded spikes overflow the eligibility trace; it is reset (its in-place
    update is not undone), the error says so, and later windows are finite."""
    fc = nn.Linear(3, 2, bias=False)
    rule = pl.MSTDPET(fc, snn.Leaky(beta=0.5), **PAIR, tau_e=10.0, spikes="graded",
                      chunk_size=4)  # fmt: skip
    small = torch.rand(4, 1, 3), torch.rand(4, 1, 2)
    rule.observe(*small, reward=1.0)
    rule.flush()
    assert rule.state_tensor(next(iter(rule.plan.eligibilities))) is not None
    with pytest.raises(ValueError, match="not finite.*eligibility traces.*reset"):
        rule.observe(torch.full((4, 1, 3), 1e20), torch.full((4, 1, 2), 1e20), reward=1.0)
        rule.flush()
    assert rule.state_tensor(next(iter(rule.plan.eligibilities))) is None
    rule.observe(*small, reward=1.0)
    assert bool(torch.isfinite(rule.step()).all())


def test_steps_buffered_under_graded_spikes_are_checked_again_when_the_policy_changes():
    rule, fc, _ = _stdp(spikes="graded")
    pre, post = _spikes(25, 6, 1, 5), _spikes(26, 6, 1, 3)
    pre[4, 0, 0] = 0.5
    rule.observe(pre, post)  # buffered (under 16 steps)
    rule.spikes = "binary"
    with pytest.raises(ValueError, match="not binary .* at step 4 "):
        rule.step()
    _check(rule, pre[:4], post[:4])
