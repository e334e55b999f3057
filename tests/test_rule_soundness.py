"""Soundness of the rule language: every declaration the language accepts runs on every
kernel candidate of the engine and on the one-step path, and gives, window after window,
what an independent slow interpreter of the declaration gives (tests/rule_interpreter.py:
per-step loops in float64 from the language's equations)."""

from __future__ import annotations

import pytest
import snntorch as snn
import test_fed_signals as loops  # the per-step loops of user-fed signals
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rule_interpreter import Interpreter
from soundness_runs import check_declaration, observed
from torch import nn

import plasticity as pl
from plasticity import eligibility, modulator, post, pre, relu, weight
from plasticity.language import Exp, Pow, parse

TAUS = st.sampled_from([2.0, 3.5, 6.0])
NUMBERS = st.sampled_from([0.5, -0.3, 1.25, 2.0])
#: the names of the user-fed signals of each side (a name belongs to one side)
FED = {"post": ["L", "E"], "pre": ["g"]}


def _fed(draw, side: str):
    return (post if side == "post" else pre).signal(draw(st.sampled_from(FED[side])))


# ---------------------------------------------------------------------- declarations
def _filter(draw, x):
    return x.trace(draw(TAUS)) if draw(st.booleans()) else x.lowpass(draw(TAUS))


def _exp(draw, x):
    """``pl.exp`` of ``x``, or of ``tanh(x)`` where ``x`` holds an exponential or a power
    (so that the values stay far from float64's overflow; the overflow's refusal is tested
    in tests/test_functions.py)."""
    deep = any(isinstance(s, (Exp, Pow)) for s in x.walk())
    return pl.exp(pl.tanh(x) if deep else draw(st.sampled_from([1.0, -0.5])) * x)


#: a signal built on a signal ``x`` of one side (``factory``: that side)
UNARY = {
    "trace": lambda draw, x, factory: x.trace(draw(TAUS)),
    "lowpass": lambda draw, x, factory: x.lowpass(draw(TAUS),
                                                  init=draw(st.sampled_from([None, 0.0, 0.4]))),
    "before": lambda draw, x, factory: x.trace(draw(TAUS)).before,
    "previous": lambda draw, x, factory: _filter(draw, x).previous,
    "delayed": lambda draw, x, factory: _filter(draw, x).delayed(draw(st.integers(1, 3))),
    "rate": lambda draw, x, factory: factory.rate(draw(TAUS)),
    "relu": lambda draw, x, factory: relu(x - draw(NUMBERS)),
    "abs": lambda draw, x, factory: abs(x - draw(NUMBERS)),
    "sigmoid": lambda draw, x, factory: pl.sigmoid(x - draw(NUMBERS)),
    "exp": lambda draw, x, factory: _exp(draw, x),
    "tanh": lambda draw, x, factory: pl.tanh(draw(NUMBERS) * x),
    "heaviside": lambda draw, x, factory: pl.heaviside(x - draw(NUMBERS)),
    "pow": lambda draw, x, factory: x ** draw(st.integers(1, 3)),
    "batch_mean": lambda draw, x, factory: x.batch_mean(),
    "scale": lambda draw, x, factory: draw(NUMBERS) * x,
    "div": lambda draw, x, factory: x / draw(NUMBERS),
    "times modulator": lambda draw, x, factory: x * modulator,
    "plus modulator": lambda draw, x, factory: x + modulator,
    "times its trace": lambda draw, x, factory: x * modulator.trace(draw(TAUS)),
}  # fmt: skip
BINARY = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}


@st.composite
def side_signal(draw, side: str, depth: int = 2, binary: bool = True):
    """A signal of one side drawn from the whole grammar of signals (user-fed signals
    among its leaves)."""
    factory = post if side == "post" else pre
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(["spike", "trace", "nearest", "fed"]
                                    + ["voltage"] * (side == "post")))  # fmt: skip
        if kind == "fed":
            return _fed(draw, side)
        if kind in ("spike", "voltage"):
            return getattr(factory, kind)
        return factory.trace(draw(TAUS), nearest=kind == "nearest")
    x = draw(side_signal(side, depth - 1, binary))
    op = draw(st.sampled_from([*UNARY, *BINARY]))
    if op in BINARY:
        return BINARY[op](x, draw(side_signal(side, depth - 1, binary)))
    return UNARY[op](draw, x, factory)


@st.composite
def factor(draw, side: str, binary: bool = True):
    """A side's factor of a term: half the time of the forms the engine's event-driven
    and rewritten kernels serve (spikes, spikes times a signal, traces of spikes), or a
    user-fed signal."""
    factory = post if side == "post" else pre
    form = draw(st.sampled_from(["any", "any", "spike", "spike-times", "trace", "before", "fed"]))
    if form == "any":
        return draw(side_signal(side, 2, binary))
    if form == "fed":
        return _fed(draw, side)
    if form == "spike":
        return factory.spike
    if form == "spike-times":
        return factory.spike * draw(side_signal(side, 1, binary))
    trace = factory.trace(draw(TAUS))
    return trace if form == "trace" else trace.before


@st.composite
def mod_signal(draw):
    """A third factor: the modulator and what is built from it alone."""
    return draw(st.sampled_from([
        modulator, modulator.trace(3.0), modulator ** 2, relu(modulator - 0.2),
        modulator.lowpass(2.0, init=0.0), modulator.trace(2.0).before, 0.5 * modulator,
        modulator.batch_mean(), abs(modulator), pl.sigmoid(modulator - 0.5),
        pl.exp(modulator), pl.tanh(2.0 * modulator), pl.heaviside(modulator.trace(2.0) - 0.1),
    ]))  # fmt: skip


@st.composite
def term(draw, binary: bool = True, weighted: bool = True, constant: bool = True):
    """A term: a number, optionally the weight, a third factor, a post- and a pre-side
    signal (either or both may be missing where ``constant``)."""
    parts = [draw(NUMBERS)]
    sides = draw(st.sampled_from(["both", "both", "post", "pre"] + ["none"] * constant))
    if sides in ("both", "post"):
        parts.append(draw(factor("post", binary)))
    if sides in ("both", "pre"):
        parts.append(draw(factor("pre", binary)))
    if draw(st.integers(0, 3)) == 0:
        parts.append(draw(mod_signal()))
    if weighted and draw(st.integers(0, 3)) == 0:
        parts.append(weight)
    out = parts[0]
    for p in draw(st.permutations(parts[1:])):
        out = out * p
    if weight not in parts and draw(st.integers(0, 5)) == 0:
        out = out**2  # a power of a product term: each factor's power
    return out


@st.composite
def read_out_factor(draw, binary: bool = True):
    """A post-side factor of an eligibility trace's read-out: e-prop's learning signal
    ``post.signal("L")``, or any post-side signal."""
    if draw(st.booleans()):
        return _fed(draw, "post")
    return draw(side_signal("post", 1, binary))


@st.composite
def side_of_rule(draw, binary: bool, constant: bool):
    """What ``pos=`` or ``neg=`` holds: ``None``, or a sum of terms and eligibility terms."""
    n = draw(st.integers(0, 3))
    if n == 0:
        return None
    out = None
    for _ in range(n):
        if draw(st.integers(0, 4)) == 0:
            inner = draw(st.lists(term(binary, weighted=False, constant=constant),
                                  min_size=1, max_size=2))  # fmt: skip
            e = eligibility(inner[0] if len(inner) == 1 else inner[0] + inner[1], draw(TAUS), per_sample=draw(st.booleans()))
            t = draw(NUMBERS) * (draw(mod_signal()) if draw(st.integers(0, 3)) else 1.0) * e
            if e.per_sample and draw(st.booleans()):  # a per-neuron factor of its rows
                t = t * draw(read_out_factor(binary))
        else:
            t = draw(term(binary, constant=constant))
        out = t if out is None else out + t
    return out


@st.composite
def case(draw, constant: bool = True):
    binary = draw(st.booleans()) or draw(st.booleans())
    pos = draw(side_of_rule(binary, constant))
    neg = draw(side_of_rule(binary, constant))
    options = dict(
        seed=draw(st.integers(0, 2**16)),
        lengths=tuple(draw(st.lists(st.sampled_from([1, 2, 5, 9, 13]), min_size=2, max_size=3))),
        batch=draw(st.integers(1, 3)),
        binary=binary,
        dt=draw(st.sampled_from([1.0, 0.5])),
        decay=draw(st.sampled_from(["exact", "euler"])),
        reduction=draw(st.sampled_from(["mean", "sum"])),
        chunk_size=draw(st.sampled_from([None, 3, 8])),
    )
    return pos, neg, options


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_every_declaration_runs_on_every_kernel_and_equals_the_interpreter(drawn):
    pos, neg, options = drawn
    for decl in (pos, neg):  # and reads back from its text (the values' contract)
        assert decl is None or parse(repr(decl)) == decl, repr(decl)
    check_declaration(pos, neg, **options, every_path=False)


# ------------------------------------------------------------------------ regressions
@pytest.mark.parametrize("neg", [0.002 * post.spike, 0.002 * post.spike * weight,
                                 0.002 * pre.spike, 0.002 * pre.spike * weight])  # fmt: skip
@pytest.mark.parametrize("kernel", ["dense", "sparse", "auto"])
def test_a_one_sided_term_on_bare_spikes_runs_on_every_kernel(neg, kernel):
    """A one-sided term on bare spikes (the guide's ``post.spike * weight``, Vogels' ``c *
    pre.spike``) crashed with ``kernel="sparse"`` (and some ``"auto"`` choices): the
    event-driven candidate of a product with no other side had no table to sum."""
    g = torch.Generator().manual_seed(3)
    windows = [((torch.rand(40, 2, 50, generator=g) < 0.03).double(),
                (torch.rand(40, 2, 30, generator=g) < 0.03).double()) for _ in range(3)]  # fmt: skip
    pos = 0.01 * post.spike * pre.trace(20.0)
    got, w = observed(pos, neg, windows, kernel=kernel)
    ref = Interpreter(pos, neg)
    for (x, y), dw in zip(windows, got, strict=True):
        torch.testing.assert_close(dw, ref.window(w, x, y), rtol=1e-10, atol=1e-13)


def test_every_candidate_of_a_one_sided_term_sums_over_rows():
    """No event-driven kernel is a candidate for a product without both sides."""
    rule = pl.Rule(nn.Linear(5, 4, bias=False), snn.Leaky(beta=0.5),
                   pos=post.spike * pre.trace(2.0), neg=pre.spike + post.spike * weight)  # fmt: skip
    for choice in rule.plan.candidates(conv=False):
        for p, kernel in zip(rule.plan.products, choice, strict=True):
            if p.post is None or p.pre is None:
                assert kernel.name == "gemm", (p, choice)


@pytest.mark.parametrize("per_sample", [False, True])
def test_terms_reading_one_eligibility_trace_share_it(per_sample):
    """Two terms reading the same eligibility trace read one trace: its terms were added
    into it once per reading term (twice the trace)."""
    e = eligibility(post.spike * pre.trace(3.0) - post.trace(2.0).before * pre.spike, 4.0,
                    per_sample=per_sample)  # fmt: skip
    check_declaration(modulator * e + 0.5 * modulator.trace(3.0) * e, 0.3 * modulator**2 * e,
                      lengths=(6, 1, 9), batch=3)  # fmt: skip


def test_a_shared_eligibility_with_per_sample_rewards_is_refused():
    """A trace shared by the batch has one third factor: per-sample rewards need
    ``eligibility(..., per_sample=True)`` (it mixed the samples' rewards before)."""
    with pytest.raises(ValueError, match=r"per_sample=True\)"):
        pl.Rule(nn.Linear(3, 2), snn.Leaky(beta=0.5), per_sample=True,
                pos=modulator * eligibility(post.spike * pre.trace(3.0), 4.0))  # fmt: skip
    pl.Rule(nn.Linear(3, 2), snn.Leaky(beta=0.5), per_sample=True,  # per sample: fine
            pos=modulator * eligibility(post.spike * pre.trace(3.0), 4.0, per_sample=True))


def test_an_eligibility_trace_without_a_third_factor_carries_over_windows():
    """``c * eligibility(...)`` with no modulator: the read-out of the trace carried in
    from the window before called a missing ``Chunk._full_rows`` (an AttributeError at
    the second window)."""
    check_declaration(0.5 * eligibility(post.spike * pre.trace(2.0), 4.0),
                      0.2 * eligibility(post.trace(3.0).before * pre.spike, 3.0, per_sample=True),
                      lengths=(5, 7, 1), batch=2)  # fmt: skip


def test_a_filter_of_a_before_reads_the_trace_before():
    """``trace.before.trace(tau)`` (and ``.lowpass``): the node of ``.before`` held its
    trace in a field named ``trace``, which hid the method (a TypeError, ``'Trace' object
    is not callable``, in Python and in the text form)."""
    x = post.trace(2.0).before.trace(3.0)
    assert parse("post.trace(2).before.trace(3)") == x and repr(x) == "(post.trace(2).before).trace(3)"
    check_declaration(0.5 * x * pre.spike, 0.2 * post.spike * pre.trace(2.0).before.lowpass(3.0),
                      lengths=(4, 1, 6), batch=2)  # fmt: skip


def test_a_product_holding_a_product_with_the_modulator_reads_back_from_its_text():
    """``0.5 * (post.spike * modulator) * modulator * weight``: the inner product's
    modulator stayed in the post-side factor (a term unequal to its own text's,
    ``parse(repr(t)) != t``); a term's factors are flattened, numbers and modulators
    gathered, whatever the grouping."""
    t = 0.5 * (post.spike * modulator) * modulator * weight
    assert repr(t) == "0.5 * weight * modulator * modulator * post.spike"
    assert parse(repr(t)) == t == 0.5 * weight * modulator * modulator * post.spike
    assert (2.0 * (pre.trace(3.0) * (0.5 * modulator)) * post.spike) == post.spike * modulator * pre.trace(3.0)


def test_the_functions_on_every_kernel_and_the_one_step_path():
    """``abs``, ``sigmoid``, ``exp``, ``tanh``, ``heaviside`` of signals of either side
    and of the third factor, in eligibility traces, on graded spikes: every candidate and
    one-step windows give the interpreter's."""
    v, r = post.voltage, modulator
    pos = (0.3 * pl.sigmoid(v - 0.2) * abs(pre.trace(3.0) - 0.5) + pl.heaviside(r) * post.spike
           * pl.exp(-pre.trace(2.0)) + pl.tanh(r) * eligibility(pl.tanh(v) * pre.spike, 4.0))
    neg = 0.1 * abs(r) * pl.exp(post.trace(2.0).before) * pl.heaviside(pre.trace(2.0) - 0.7)
    for binary in (True, False):
        check_declaration(pos, neg, lengths=(5, 1, 9), batch=2, binary=binary)


# ---------------------------------------------------------------------- constant terms
LAM = 0.01


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weight_decay_is_a_constant_term(reduction):
    """``neg=lam * weight``: Δw = -lam·w per step and sample (the batch reduction as for
    any term), written as a term with no side signal."""
    g = torch.Generator().manual_seed(1)
    windows = [((torch.rand(steps, 3, 5, generator=g) < 0.3).double(),
                (torch.rand(steps, 3, 4, generator=g) < 0.3).double()) for steps in (7, 1, 30)]  # fmt: skip
    for kernel in ("dense", "sparse", "auto"):
        got, w = observed(None, LAM * weight, windows, kernel=kernel, batch_reduction=reduction)
        for (x, _), dw in zip(windows, got, strict=True):
            per_window = x.shape[0] * (1 if reduction == "mean" else x.shape[1])
            torch.testing.assert_close(dw, -LAM * per_window * w, rtol=1e-12, atol=0)
    # the same as the former trick lam * weight * (1 + 0 * post.spike)
    trick, _ = observed(None, LAM * weight * (1 + 0 * post.spike), windows)
    for a, b in zip(observed(None, LAM * weight, windows)[0], trick, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_constant_terms_on_every_kernel_and_the_one_step_path():
    """Drift, weight decay, a modulated constant and a constant in an eligibility trace,
    beside ordinary terms: every candidate and one-step windows give the interpreter's."""
    check_declaration(0.003 + 0.5 * post.spike * pre.trace(2.0) + 0.2 * modulator,
                      LAM * weight + 0.1 * modulator.trace(3.0) * weight,
                      lengths=(5, 1, 12), batch=2)  # fmt: skip
    check_declaration(modulator * eligibility(0.2 + post.spike * pre.spike, 3.0), None,
                      lengths=(4, 1, 7), batch=3)  # fmt: skip
    check_declaration(modulator * eligibility(0.2 - post.spike * pre.spike, 3.0,
                                              per_sample=True), 0.1, lengths=(4, 1, 7), batch=3)  # fmt: skip
    check_declaration("0.004 * weight", "0.001", lengths=(3, 1), batch=2, chunk_size=2)


def test_a_constant_term_reads_no_spikes_but_counts_steps_and_samples():
    """``pos=c`` is ``c`` per step and sample: T·B·c, or T·c with the batch mean."""
    fc = nn.Linear(3, 2, bias=False).double()
    rule = pl.Rule(fc, snn.Leaky(beta=0.5), pos=0.25, batch_reduction="sum")
    rule.observe(torch.zeros(6, 4, 3), torch.zeros(6, 4, 2))
    torch.testing.assert_close(rule.step(), torch.full((2, 3), 0.25 * 6 * 4, dtype=torch.float64))
    assert repr(rule.plan.products) == "[dw += 0.25 * 1]"


# ------------------------------------------------------------------------------ powers
def test_a_power_of_a_product_term_is_each_factors_power():
    """``(c·m·P·Q) ** k = c^k m^k P^k Q^k``: computed exactly, on every kernel."""
    t = 0.5 * post.spike * pre.trace(3.0)
    assert repr(t**2) == "0.25 * post.spike ** 2 * pre.trace(3) ** 2"
    assert repr(parse("(0.5 * post.spike * pre.trace(3)) ** 2")) == repr(t**2)
    check_declaration((modulator * post.trace(2.0) * pre.trace(3.0)) ** 2,
                      (post.spike + pre.trace(2.0)) ** 2, lengths=(5, 1, 8), batch=2)  # fmt: skip


@pytest.mark.parametrize("make, words", [
    (lambda: (post.spike * pre.trace(10.0)) ** 0.5, "int >= 1"),
    (lambda: (weight * post.spike * pre.spike) ** 2, "weight may appear once"),
    (lambda: 2 ** (post.spike * pre.spike), "exponent"),
    (lambda: (modulator * eligibility(post.spike * pre.spike, 3.0)) ** 2, "eligibility"),
    (lambda: (post.spike + pre.spike) ** 7, "write the product you mean"),
    (lambda: (1e200 * post.spike * pre.spike) ** 2, "not a finite float"),
    (lambda: parse("post.spike ** 10**20 * pre.spike"), r"below 2\*\*31"),  # no OverflowError
])  # fmt: skip
def test_a_power_that_is_no_term_is_a_value_error_naming_it(make, words):
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("kernel", ["dense", "sparse", "auto"])
def test_constant_and_one_sided_terms_follow_the_weights_device(kernel, device):
    """Constant and one-sided terms on the weight's device and dtype, as the interpreter
    computes them (on the CPU)."""
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(9, 2, 6, generator=g) < 0.3).double()
    y = (torch.rand(9, 2, 5, generator=g) < 0.3).double()
    r = torch.rand(9, generator=g, dtype=torch.float64)
    pos = 0.5 * post.spike * pre.trace(3.0) + 0.01 + 0.2 * modulator * weight
    neg = LAM * weight + 0.1 * pre.spike + 0.1 * post.spike * weight
    fc = nn.Linear(6, 5, bias=False).double().to(device)
    rule = pl.Rule(fc, snn.Leaky(beta=0.5), pos=pos, neg=neg, kernel=kernel)
    for part in (slice(0, 8), slice(8, 9)):  # a chunk, then the one-step path
        rule.observe(x[part].to(device), y[part].to(device), reward=r[part].to(device))
        dw = rule.step()
        assert dw.device == fc.weight.device and dw.dtype == torch.float64
        ref = Interpreter(pos, neg)
        if part.start:
            ref.window(fc.weight.cpu(), x[:8], y[:8], reward=r[:8, None].expand(8, 2))
        want = ref.window(fc.weight.cpu(), x[part], y[part], reward=r[part, None].expand(-1, 2))
        torch.testing.assert_close(dw.cpu(), want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("text", ["weight.trace(3)", "eligibility(post.spike * pre.spike, 3).before",
                                  "(post.spike * pre.spike).lowpass(3)"])  # fmt: skip
def test_a_filter_of_a_term_is_refused_naming_it(text):
    """A filter applies to a signal of one side: on a term, the weight or an eligibility
    trace it was Python's bare AttributeError; now the message names the term."""
    with pytest.raises(ValueError, match="the attribute"):  # the text form says so too
        parse(text)
    with pytest.raises(AttributeError, match="no signal of one side"):
        eval(text, {"weight": weight, "post": post, "pre": pre, "eligibility": eligibility})


@pytest.mark.parametrize("trace", ["all-to-all", "nearest"])
@pytest.mark.parametrize("coincident", ["ltp", "both"])
def test_the_interpreter_itself_gives_the_spike_pair_sums(trace, coincident):
    """The interpreter is checked apart from the engine: pair STDP declared in each form
    gives the enumeration of spike pairs of tests/reference.py."""
    from reference import dense_reference

    g = torch.Generator().manual_seed(7)
    x = (torch.rand(30, 2, 4, generator=g) < 0.3).double()
    y = (torch.rand(30, 2, 3, generator=g) < 0.3).double()
    near = trace == "nearest"
    post_trace = post.trace(3.0, nearest=near)
    pos = 0.5 * post.spike * pre.trace(2.0, nearest=near)
    neg = 0.4 * (post_trace if coincident == "both" else post_trace.before) * pre.spike
    params = dict(a_plus=0.5, a_minus=0.4, tau_plus=2.0, tau_minus=3.0)
    p, n = dense_reference(x, y, params, trace=trace, coincident=coincident, decay="euler")
    got = Interpreter(pos, neg, decay="euler").window(torch.zeros(3, 4), x, y)
    torch.testing.assert_close(got, p - n, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", ["plain", "L", "mod", "lowpass"])
def test_the_interpreter_itself_gives_the_fed_signal_loops(variant):
    """The interpreter's user-fed signals and post-side factors of eligibility read-outs,
    checked apart from the engine: the per-step loops of tests/test_fed_signals.py."""
    x, L, g, m = loops._data(12, 14)
    s = (torch.rand(14, loops.B, loops.N_OUT, generator=torch.Generator().manual_seed(5)) < 0.4).double()
    windows = [6, 1, 7]
    if variant == "plain":
        pos, neg = loops.plain_terms()
        want = loops.reference_plain(x, s, L, g, windows)
    else:
        lowpass = 2.0 if variant == "lowpass" else None
        pos, neg = loops.eprop_terms(variant == "mod", lowpass), None
        want = loops.reference_eprop(x, s, L, m, windows, with_mod=variant == "mod", lowpass=lowpass)
    ref, t = Interpreter(pos, neg, batch_reduction="sum"), 0
    for length, dw in zip(windows, want, strict=True):
        part = slice(t, t + length)
        got = ref.window(torch.zeros(loops.N_OUT, loops.N_IN), x[part], s[part], reward=m[part],
                         signals={"L": L[part], "g": g[part]})  # fmt: skip
        torch.testing.assert_close(got, dw, rtol=1e-12, atol=1e-12)
        t += length
