"""User-fed signals (``post.signal(name)``, ``pre.signal(name)``) and per-neuron factors
of eligibility traces, against per-step float64 loops written from the equations.

The rules run through real modules (an snnTorch neuron's hooks with ``rule.feed``, or
``observe(..., signals=...)``), over several windows with the state carried, on every
kernel candidate of the engine (forced one at a time), the ``kernel=`` options, several
chunk sizes and the one-step path (``step()`` after every step).
"""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch
from torch import nn

import plasticity as pl
from plasticity import eligibility, modulator, post, pre, relu
from plasticity.engine.chooser import KernelChooser
from plasticity.language import parse

B, N_IN, N_OUT = 3, 5, 4


def _decay(tau: float) -> float:
    return math.exp(-1.0 / tau)


def _data(seed: int, steps: int):
    """Pre spikes and fed values (float64): ``x`` [T, B, N_IN], ``L`` [T, B, N_OUT]
    (signed), ``g`` [T, B, N_IN], ``m`` [T, B] (a reward)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, B, N_IN, generator=gen) < 0.35).double()
    L = torch.randn(steps, B, N_OUT, generator=gen, dtype=torch.float64)
    g = torch.randn(steps, B, N_IN, generator=gen, dtype=torch.float64)
    m = torch.randn(steps, B, generator=gen, dtype=torch.float64)
    return x, L, g, m


def _net(seed: int = 0):
    gen = torch.Generator().manual_seed(seed + 100)
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.rand(N_OUT, N_IN, generator=gen, dtype=torch.float64))
    return fc, snn.Leaky(beta=0.8, threshold=0.6)


def _post_spikes(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The post spikes of the network on ``x`` (no rule attached)."""
    fc, lif = _net(seed)
    mem, out = lif.init_leaky(), []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk, mem = lif(fc(x[t]), mem)
            out.append(spk.double())
    return torch.stack(out)


# ------------------------------------------------------------------- references


class _Trace:
    """x_t = d x_{t-1} + u_t (state per sample and neuron, float64)."""

    def __init__(self, tau: float) -> None:
        self.d, self.x = _decay(tau), None

    def step(self, u: torch.Tensor) -> torch.Tensor:
        self.x = u.clone() if self.x is None else self.d * self.x + u
        return self.x


def reference_plain(x, s, L, g, windows):
    """Δw per window of

        pos = 0.5 * L * pre.trace(3) + relu(L.lowpass(4)) * pre.spike
              + post.spike * g.trace(2).delayed(2) + relu(L).batch_mean() * pre.spike
        neg = 0.3 * (L * post.spike) * pre.trace(5).before + post.trace(4) * (g + pre.spike)

    summed over the batch, the state carried across windows; loops over steps."""
    tr3, tr5, post4, g2 = _Trace(3.0), _Trace(5.0), _Trace(4.0), _Trace(2.0)
    d4 = _decay(4.0)
    low = None
    g2_hist = [torch.zeros(B, N_IN, dtype=torch.float64)] * 2
    out, dw, t0 = [], torch.zeros(N_OUT, N_IN, dtype=torch.float64), 0
    for t in range(x.shape[0]):
        before5 = tr5.d * (tr5.x if tr5.x is not None else torch.zeros(B, N_IN, dtype=torch.float64))
        p3, p5, q4 = tr3.step(x[t]), tr5.step(x[t]), post4.step(s[t])
        low = L[t].clone() if low is None else low
        low = d4 * low + (1 - d4) * L[t]
        delayed = g2_hist[0]
        g2_now = g2.step(g[t])
        g2_hist = [g2_hist[1], g2_now.clone()]
        del p5
        mean = L[t].clamp_min(0).mean(0, keepdim=True).expand(B, N_OUT)
        for b in range(B):
            dw += 0.5 * torch.outer(L[t, b], p3[b]) + torch.outer(low[b].clamp_min(0), x[t, b])
            dw += torch.outer(s[t, b], delayed[b]) + torch.outer(mean[b], x[t, b])
            dw -= 0.3 * torch.outer(L[t, b] * s[t, b], before5[b])
            dw -= torch.outer(q4[b], g[t, b] + x[t, b])
        if t + 1 - t0 == windows[len(out)]:
            out.append(dw.clone())
            dw.zero_()
            t0 = t + 1
    return out


PLAIN_POS = ("0.5 * post.signal('L') * pre.trace(3) + relu(post.signal('L').lowpass(4)) * pre.spike"
             " + post.spike * (pre.signal('g')).trace(2).delayed(2)"
             " + relu(post.signal('L')).batch_mean() * pre.spike")  # fmt: skip
PLAIN_NEG = ("0.3 * post.signal('L') * post.spike * pre.trace(5).before"
             " + post.trace(4) * (pre.signal('g') + pre.spike)")  # fmt: skip


def plain_terms():
    L, g = post.signal("L"), pre.signal("g")
    pos = (0.5 * L * pre.trace(3.0) + relu(L.lowpass(4.0)) * pre.spike
           + post.spike * g.trace(2.0).delayed(2) + relu(L).batch_mean() * pre.spike)  # fmt: skip
    neg = 0.3 * L * post.spike * pre.trace(5.0).before + post.trace(4.0) * (g + pre.spike)
    return pos, neg


def reference_eprop(x, s, L, m, windows, tau_e=6.0, with_mod=False, lowpass=None):
    """Δw per window of ``[m *] F(L) * eligibility(ζ, tau_e, per_sample=True)`` with
    ζ = post.spike * pre.trace(3) - 0.5 * post.trace(4).before * pre.spike, F the
    identity or a low-pass; Δw_ij = Σ_t Σ_b m_b(t) F_bi(t) e_bij(t), e carried."""
    tr3, post4, de = _Trace(3.0), _Trace(4.0), _decay(tau_e)
    e = torch.zeros(B, N_OUT, N_IN, dtype=torch.float64)
    dl, low = (None if lowpass is None else _decay(lowpass)), None
    out, dw, t0 = [], torch.zeros(N_OUT, N_IN, dtype=torch.float64), 0
    for t in range(x.shape[0]):
        before = post4.d * (post4.x if post4.x is not None else torch.zeros(B, N_OUT, dtype=torch.float64))
        p3 = tr3.step(x[t])
        post4.step(s[t])
        factor = L[t]
        if dl is not None:
            low = L[t].clone() if low is None else low
            low = dl * low + (1 - dl) * L[t]
            factor = low
        for b in range(B):
            zeta = torch.outer(s[t, b], p3[b]) - 0.5 * torch.outer(before[b], x[t, b])
            e[b] = de * e[b] + zeta
            row = factor[b] * (m[t, b] if with_mod else 1.0)
            dw += row[:, None] * e[b]
        if t + 1 - t0 == windows[len(out)]:
            out.append(dw.clone())
            dw.zero_()
            t0 = t + 1
    return out


def eprop_terms(with_mod=False, lowpass=None):
    zeta = post.spike * pre.trace(3.0) - 0.5 * post.trace(4.0).before * pre.spike
    factor = post.signal("L") if lowpass is None else post.signal("L").lowpass(lowpass)
    term = factor * eligibility(zeta, 6.0, per_sample=True)
    return modulator * term if with_mod else term


# ------------------------------------------------------------------------ runs


def _force(monkeypatch, index: int) -> list:
    """Makes the cost model choose candidate ``index`` (the last one if fewer); returns
    the list of choices made."""
    made = []

    def choose(self, plan, inputs, kernels, nnz):
        options = plan.candidates(conv=kernels.conv is not None)
        made.append(options[min(index, len(options) - 1)])
        return made[-1]

    monkeypatch.setattr(KernelChooser, "choose", choose)
    return made


def _hooks(make_rule, x, windows, feeds, rewards=None, seed=0):
    """Runs the network through the hooks, feeding ``feeds`` ({name: [T, B, N]}) after
    each forward pass; ``step()`` at the end of each window; the Δw of each window."""
    fc, lif = _net(seed)
    rule = make_rule(fc, lif)
    mem, out, t = lif.init_leaky(), [], 0
    for length in windows:
        for _ in range(length):
            spk, mem = lif(fc(x[t]), mem)
            rule.feed(**{k: v[t] for k, v in feeds.items()})
            if rewards is not None:
                rule.reward(rewards[t])
            t += 1
        dw = rule.step()
        out.append(torch.zeros_like(fc.weight) if dw is None else dw)
    return out


def _observe(make_rule, x, s, windows, signals, reward=None, seed=0):
    fc, lif = _net(seed)
    rule = make_rule(fc, lif)
    out, t = [], 0
    for length in windows:
        sl = slice(t, t + length)
        rule.observe(x[sl], s[sl], signals={k: v[sl] for k, v in signals.items()},
                     **({} if reward is None else {"reward": reward[sl]}))  # fmt: skip
        t += length
        dw = rule.step()
        out.append(torch.zeros_like(fc.weight) if dw is None else dw)
    return out


def _close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


WINDOWS = [7, 1, 12, 5]


@pytest.mark.parametrize("candidate", range(4))
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_fed_signals_combine_like_any_signal_on_every_kernel(monkeypatch, candidate, chunk):
    x, L, g, _ = _data(1, sum(WINDOWS))
    s = _post_spikes(x)
    made = _force(monkeypatch, candidate)
    pos, neg = plain_terms()

    def make(fc, lif):
        return pl.Rule(fc, lif, pos=pos, neg=neg, chunk_size=chunk, batch_reduction="sum")

    want = reference_plain(x, s, L, g, WINDOWS)
    _close(_hooks(make, x, WINDOWS, {"L": L, "g": g}), want)
    _close(_observe(make, x, s, WINDOWS, {"L": L, "g": g}), want)
    if chunk != 1:  # (one-step chunks take the one-step path: no choice)
        plan = make(*_net()).plan
        options = plan.candidates(conv=False)
        assert made and set(made) == {options[min(candidate, len(options) - 1)]}


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_fed_signals_with_the_kernel_options_and_the_one_step_path(kernel):
    x, L, g, _ = _data(2, 12)
    s = _post_spikes(x)
    pos, neg = plain_terms()

    def make(fc, lif):
        return pl.Rule(fc, lif, pos=pos, neg=neg, kernel=kernel, batch_reduction="sum")

    _close(_hooks(make, x, [12], {"L": L, "g": g}), reference_plain(x, s, L, g, [12]))
    ones = [1] * 12  # step() after every step: the one-step path
    fc, lif = _net()
    assert make(fc, lif).plan.products and pl.engine.step.steppable(make(fc, lif).plan)
    _close(_hooks(make, x, ones, {"L": L, "g": g}), reference_plain(x, s, L, g, ones))


@pytest.mark.parametrize("candidate", range(4))
@pytest.mark.parametrize("chunk", [None, 1, 4])
@pytest.mark.parametrize("variant", ["L", "mod", "lowpass"])
def test_a_learning_signal_times_an_eligibility_trace_is_exact_across_windows(
        monkeypatch, candidate, chunk, variant):  # fmt: skip
    """e-prop's update: Δw_ij = Σ_t L_i(t) e_ij(t), per sample, carried across windows
    and chunks (also times the modulator, and with the signal low-pass filtered)."""
    x, L, _, m = _data(3, sum(WINDOWS))
    s = _post_spikes(x)
    _force(monkeypatch, candidate)
    with_mod, lowpass = variant == "mod", (2.0 if variant == "lowpass" else None)
    term = eprop_terms(with_mod, lowpass)

    def make(fc, lif):
        return pl.Rule(fc, lif, pos=term, chunk_size=chunk, batch_reduction="sum")

    want = reference_eprop(x, s, L, m, WINDOWS, with_mod=with_mod, lowpass=lowpass)
    rewards = m if with_mod else None
    _close(_hooks(make, x, WINDOWS, {"L": L}, rewards), want)
    _close(_observe(make, x, s, WINDOWS, {"L": L}, reward=rewards), want)
    ones = [1] * 9  # a window per step
    _close(_hooks(make, x[:9], ones, {"L": L[:9]}, None if m is None or not with_mod else m[:9]),
           reference_eprop(x[:9], s[:9], L[:9], m[:9], ones, with_mod=with_mod, lowpass=lowpass))


def test_the_text_form_reads_fed_signals_and_learns_the_same_bits():
    pos, neg = plain_terms()
    assert repr(parse(PLAIN_POS)) == repr(pos) and repr(parse(PLAIN_NEG)) == repr(neg)
    for decl in (pos, neg, eprop_terms(True, 2.0)):
        assert repr(parse(repr(decl))) == repr(decl)
    x, L, g, _ = _data(4, 10)
    feeds = {"L": L, "g": g}
    a = _hooks(lambda fc, lif: pl.Rule(fc, lif, pos=pos, neg=neg), x, [10], feeds)
    b = _hooks(lambda fc, lif: pl.Rule(fc, lif, pos=PLAIN_POS, neg=PLAIN_NEG), x, [10], feeds)
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: post.signal(3), "must be a string"),
        (lambda: post.signal("two words"), "Python identifier"),
        (lambda: post.signal("L") * eligibility(post.spike * pre.spike, 5.0), "per_sample=True"),
        (lambda: pre.signal("g") * eligibility(post.spike * pre.spike, 5.0, per_sample=True),
         "post-side signals only"),
        (lambda: pl.Rule(*_net(), pos=post.signal("x") * pre.spike + post.spike * pre.signal("x")),
         "different names"),
        (lambda: parse("post.signal(L)"), "unknown name 'L'"),
    ],
)
def test_misdeclared_signals_are_refused_by_name(make, words):
    with pytest.raises((ValueError, TypeError), match=words):
        make()


def test_a_conv_synapse_refuses_a_per_neuron_factor_of_its_eligibility_trace():
    conv, lif = nn.Conv1d(2, 3, 3), snn.Leaky(beta=0.5)
    with pytest.raises(ValueError, match="shared by the output positions"):
        pl.Rule(conv, lif, pos=eprop_terms())
    rule = pl.Rule(conv, lif, pos=post.signal("L") * pre.trace(2.0))  # without one: learns
    x = (torch.rand(4, 1, 2, 6) < 0.5).float()
    rule.observe(x, torch.ones(4, 1, 3, 4), signals={"L": torch.ones(4, 1, 3, 4)})
    assert rule.step() is not None


# ----------------------------------------------------------------- feed's errors


def _rule_and_state(steps: int):
    """A rule after ``steps`` forward passes with their feeds (float64)."""
    x, L, g, _ = _data(5, 12)
    fc, lif = _net()
    pos, neg = plain_terms()
    rule = pl.Rule(fc, lif, pos=pos, neg=neg, chunk_size=4, batch_reduction="sum")
    mem = lif.init_leaky()
    for t in range(steps):
        spk, mem = lif(fc(x[t]), mem)
        rule.feed(L=L[t], g=g[t])
    return rule, fc, lif, mem, x, L, g


def _finish(rule, fc, lif, mem, x, L, g, start):
    for t in range(start, x.shape[0]):
        spk, mem = lif(fc(x[t]), mem)
        rule.feed(L=L[t], g=g[t])
    return rule.step()


def _clean():
    rule, fc, lif, mem, x, L, g = _rule_and_state(0)
    return _finish(rule, fc, lif, mem, x, L, g, 0)


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        (lambda L, g: {"L": L[:, :2], "g": g}, ValueError, r"`L` \(post.signal\('L'\)\) has shape \(3, 2\); expected \[B, \*post\] = \[3, 4\]"),
        (lambda L, g: {"L": L, "g": g[None]}, ValueError, "`g`.*has shape"),
        (lambda L, g: {"L": L > 0, "g": g}, TypeError, "`L` must be"),
        (lambda L, g: {"L": L, "h": g}, ValueError, r"`h` is not a signal of this rule; it reads post.signal\('L'\), pre.signal\('g'\)"),
        (lambda L, g: {"L": "high", "g": g}, TypeError, "`L` must be"),
    ],
)
def test_a_bad_feed_names_the_argument_and_changes_nothing(bad, exc, words):
    rule, fc, lif, mem, x, L, g = _rule_and_state(5)
    spk, mem = lif(fc(x[5]), mem)
    with pytest.raises(exc, match=words):
        rule.feed(**bad(L[5], g[5]))
    rule.feed(L=L[5], g=g[5])
    assert torch.equal(_finish(rule, fc, lif, mem, x, L, g, 6), _clean())


@pytest.mark.parametrize("value", [float("nan"), math.inf, -math.inf])
@pytest.mark.parametrize("name", ["L", "g"])
def test_a_fed_nan_is_reported_with_its_chunk_and_the_steps_before_it_are_learned(name, value):
    """feed() checks shapes and types only (NaN and infinity cost a device sync per
    call): a fed value that is not finite is found when its chunk is processed, like a
    bad spike (here at the forward pass that fills the chunk of 4 steps), naming the
    signal and the step; the steps before it are learned, it and the rest of its chunk
    discarded, and learning goes on after (as if those steps never happened)."""
    bad = 6  # in the chunk of steps 4-7, processed at step 8's forward pass
    rule, fc, lif, mem, x, L, g = _rule_and_state(bad)
    fed = {"L": L.clone(), "g": g.clone()}
    fed[name][bad, 1, 2] = value
    spk, mem = lif(fc(x[bad]), mem)
    rule.feed(L=fed["L"][bad], g=fed["g"][bad])  # refused later, not here
    spk, mem = lif(fc(x[bad + 1]), mem)
    rule.feed(L=L[bad + 1], g=g[bad + 1])
    side = "post" if name == "L" else "pre"
    with pytest.raises(ValueError, match=rf"the values fed to {side}\.signal\('{name}'\) contain "
                       rf"NaN or infinity at step {bad} of this window.*the {bad} steps before it "
                       "were learned from"):  # fmt: skip
        lif(fc(x[bad + 2]), mem)
    mem = _membrane_after(fc, x, bad + 3)  # (the failed call returned none)
    rule.feed(L=L[bad + 2], g=g[bad + 2])
    got = _finish(rule, fc, lif, mem, x, L, g, bad + 3)
    keep = [t for t in range(x.shape[0]) if t < bad or t >= bad + 2]
    pos, neg = plain_terms()
    want = _observe(lambda fc, lif: pl.Rule(fc, lif, pos=pos, neg=neg, batch_reduction="sum"),
                    x[keep], _post_spikes(x)[keep], [len(keep)],
                    {"L": L[keep], "g": g[keep]})  # fmt: skip
    _close([got], want)


def _membrane_after(fc, x, steps):
    """The neuron's membrane after ``steps`` steps of ``x`` (``fc``'s weight, no hooks)."""
    lif = _net()[1]
    mem = lif.init_leaky()
    with torch.no_grad():
        for t in range(steps):
            _, mem = lif(nn.functional.linear(x[t], fc.weight), mem)
    return mem


def test_feed_twice_before_the_forward_pass_or_left_out_is_an_error_and_changes_nothing():
    rule, fc, lif, mem, x, L, g = _rule_and_state(5)
    with pytest.raises(ValueError, match=r"`L` was fed already for this step \(step 4"):
        rule.feed(L=L[5])
    # the next step's forward pass, with a step left without its values
    spk, mem = lif(fc(x[5]), mem)
    rule.feed(L=L[5])  # `g` left out
    with pytest.raises(ValueError, match=r"step 5 of the window has no value of `g`: call rule.feed\(g=...\)"):
        lif(fc(x[6]), mem)
    with pytest.raises(ValueError, match="step 5 of the window has no value of `g`"):
        rule.step()
    with pytest.raises(ValueError, match="step 5 of the window has no value of `g`"):
        rule.observe(x[6:7], torch.zeros(1, B, N_OUT), signals={"L": L[6:7], "g": g[6:7]})
    rule.feed(g=g[5])  # late, but before anything else happened: nothing was changed
    assert torch.equal(_finish(rule, fc, lif, mem, x, L, g, 6), _clean())

    fresh, *_ = _rule_and_state(0)
    with pytest.raises(RuntimeError, match="call it after the forward pass"):
        fresh.feed(L=L[0], g=g[0])
    with pytest.raises(TypeError, match="by name"):
        fresh.feed()
    plain = pl.STDP(*_net(), a_plus=0.1, a_minus=0.1, tau_plus=2.0, tau_minus=2.0)
    with pytest.raises(RuntimeError, match="reads no user-fed signal"):
        plain.feed(L=L[0])


def test_feed_converts_numbers_and_dtypes_and_is_ignored_in_eval_mode():
    x, L, g, _ = _data(6, 4)
    s = _post_spikes(x)
    pos, neg = plain_terms()
    make = lambda fc, lif: pl.Rule(fc, lif, pos=pos, neg=neg, batch_reduction="sum")  # noqa: E731
    half = torch.full_like(L, 0.5)
    g32 = g.float()  # a float32 tensor: converted to the weight's float64
    want = _observe(make, x, s, [4], {"L": half, "g": g32.double()})
    got = _hooks(make, x, [4], {"L": torch.full((4,), 0.5, dtype=torch.float64), "g": g32})
    _close(got, want)  # a number feeds every sample and neuron
    fc, lif = _net()
    rule = make(fc, lif)
    spk, mem = lif(fc(x[0]), lif.init_leaky())
    rule.feed(L=L[0].float(), g=g[0].numpy())  # float32 and numpy: converted
    assert rule._signals.buffers["L"].data.dtype == torch.float64
    rule.eval()
    lif(fc(x[1]), mem)
    rule.feed(L=L[1], g=g[1])  # nothing observed, nothing fed
    assert rule._signals.steps() == 1 and rule._post.n == 1


def test_observe_checks_its_signals_by_name():
    x, L, g, _ = _data(7, 5)
    s = _post_spikes(x)
    pos, neg = plain_terms()
    rule = pl.Rule(*_net(), pos=pos, neg=neg)
    cases = [
        (None, TypeError, r"this rule reads post.signal\('L'\), pre.signal\('g'\): pass signals="),
        ({"L": L}, ValueError, r"`signals` lacks 'g'"),
        ({"L": L, "g": g, "z": g}, ValueError, r"signals\['z'\] is not a signal"),
        ({"L": L[:3], "g": g}, ValueError, r"signals\['L'\] \(post.signal\('L'\)\) has shape \(3, 3, 4\); expected \[T, B, \*post\] = \[5, 3, 4\]"),
        ({"L": L, "g": g.clone().index_fill_(0, torch.tensor([2]), math.inf)}, ValueError, r"signals\['g'\] contains NaN or infinity"),
    ]
    for signals, exc, words in cases:
        with pytest.raises(exc, match=words):
            rule.observe(x, s, signals=signals)
        assert rule._post.n == 0 and rule.accumulator.pos is None and rule.state_tensor("post.trace(4)") is None
    with pytest.raises(ValueError, match="reads no user-fed signal"):
        pl.STDP(*_net(), a_plus=0.1, a_minus=0.1, tau_plus=2.0,
                tau_minus=2.0).observe(x, s, signals={"L": L})  # fmt: skip


def test_a_checkpoint_holds_the_fed_rows_of_the_buffered_steps():
    x, L, _, m = _data(8, 14)
    term = eprop_terms(with_mod=False, lowpass=2.0)

    def make(fc, lif):
        return pl.Rule(fc, lif, pos=term, chunk_size=4, batch_reduction="sum")

    whole = _hooks(make, x, [14], {"L": L})
    fc, lif = _net()
    rule = make(fc, lif)
    mem = lif.init_leaky()
    for t in range(7):
        spk, mem = lif(fc(x[t]), mem)
        rule.feed(L=L[t])
    assert rule._signals.buffers["L"].n > 0  # fed rows are buffered
    saved = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in rule.state_dict().items()}
    fc2, lif2 = _net()
    fc2.load_state_dict(fc.state_dict())
    restored = make(fc2, lif2)
    restored.load_state_dict(saved)
    for t in range(7, 14):
        spk, mem = lif2(fc2(x[t]), mem)
        restored.feed(L=L[t])
    torch.testing.assert_close(restored.step(), whole[0], rtol=1e-12, atol=1e-12)


def test_fed_signals_follow_the_weights_device(device):
    x, L, g, _ = _data(9, 6)
    s = _post_spikes(x)
    pos, neg = plain_terms()
    fc, lif = _net()
    fc = fc.to(device)
    rule = pl.Rule(fc, lif, pos=pos, neg=neg, batch_reduction="sum")
    rule.observe(x.to(device), s.to(device), signals={"L": L, "g": g})  # CPU values: moved
    torch.testing.assert_close(rule.step().cpu(), reference_plain(x, s, L, g, [6])[0],
                               rtol=1e-11, atol=1e-11)  # fmt: skip


@pytest.mark.parametrize("chunk", [None, 4])
def test_two_read_outs_of_one_eligibility_trace_add_up(chunk):
    """``L * E + m * E`` reads one trace twice: its Δw is the sum of the two rules' (the
    trace was accumulated once per read-out before: twice the ζ)."""
    x, L, _, m = _data(10, 15)
    s = _post_spikes(x)
    zeta = post.spike * pre.trace(3.0) - 0.5 * post.trace(4.0).before * pre.spike
    E = eligibility(zeta, 6.0, per_sample=True)

    def run(decl):
        rule = pl.Rule(*_net(), pos=decl, chunk_size=chunk, batch_reduction="sum")
        text = repr(decl)
        rule.observe(x, s, **({"reward": m} if "modulator" in text else {}),
                     **({"signals": {"L": L}} if "signal" in text else {}))  # fmt: skip
        return rule.step()

    both = run(post.signal("L") * E + modulator * E)
    torch.testing.assert_close(both, run(post.signal("L") * E) + run(modulator * E),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    want = [a + b for a, b in zip(reference_eprop(x, s, L, m, [15]),
                                  reference_eprop(x, s, torch.ones_like(L), m, [15], with_mod=True),
                                  strict=True)]  # fmt: skip
    _close([both], want)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("chunk", [None, 4])
def test_an_eligibility_trace_read_twice_without_fed_signals(per_sample, chunk):
    """``E + 0.5 * E`` (no modulator: a read-out of the trace carried in, which main's
    engine did not reach without an AttributeError) and ``E + modulator * E``: the trace
    accumulated once, read by both, over several windows, against the per-step loop."""
    x, L, _, m = _data(11, 15)
    s, ones, windows = _post_spikes(x), torch.ones_like(L), [5, 7, 3]
    zeta = post.spike * pre.trace(3.0) - 0.5 * post.trace(4.0).before * pre.spike
    E = eligibility(zeta, 6.0, per_sample=per_sample)
    decls = [(E + 0.5 * E, False)] + [(E + modulator * E, True)] * per_sample
    for decl, with_mod in decls:
        rule, got, t = pl.Rule(*_net(), pos=decl, chunk_size=chunk, batch_reduction="sum"), [], 0
        for length in windows:
            sl = slice(t, t + length)
            rule.observe(x[sl], s[sl], **({"reward": m[sl]} if with_mod else {}))
            got.append(rule.step())
            t += length
        plain = reference_eprop(x, s, ones, m, windows)
        other = reference_eprop(x, s, ones, m, windows, with_mod=True) if with_mod else [
            0.5 * w for w in plain]  # fmt: skip
        _close(got, [a + b for a, b in zip(plain, other, strict=True)])
