"""Rules written by users in the language, against slow references written independently.

The references enumerate spike pairs (tests/reference.py) or loop over steps with
``math.exp`` (tests/reference_clopath.py and the loops here); the rules run through real
modules (an snnTorch neuron's hooks, or ``observe``), in float64, on every kernel.
"""

from __future__ import annotations

import ast
import math
import re

import pytest
import snntorch as snn
import torch
from reference import dense_reference, kernel
from reference_clopath import clopath_reference
from torch import nn

import plasticity as pl
from plasticity import modulator, post, pre, relu, weight

PAIR = dict(a_plus=0.5, a_minus=0.4, tau_plus=3.0, tau_minus=4.0)
KERNELS = ["auto", "dense", "sparse"]


def _pos_neg(rule):
    rule.flush()
    acc = rule.accumulator
    zero = torch.zeros_like(rule.weight)
    return (zero if acc.pos is None else acc.pos), (zero if acc.neg is None else acc.neg)


def _live(seed: int, steps: int = 40, batch: int = 3, n_in: int = 6, n_out: int = 4):
    """A float64 Linear + snn.Leaky driven by random spikes: what the hooks see."""
    g = torch.Generator().manual_seed(seed)
    fc = nn.Linear(n_in, n_out, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.rand(n_out, n_in, generator=g, dtype=torch.float64))
    lif = snn.Leaky(beta=0.8, threshold=0.7)
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.3).double()
    return fc, lif, x


def _run_hooks(fc, lif, x, rule=None):
    """Steps the network; returns the post spikes and membrane potentials (float64)."""
    mem = lif.init_leaky()
    spikes, mems = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk, mem = lif(fc(x[t]), mem)
            spikes.append(spk.double())
            mems.append(mem.double())
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("kernel_option", KERNELS)
@pytest.mark.parametrize("chunk", [5, 64])
def test_user_pair_rule_in_each_coincident_form_equals_the_pair_sums(coincident, kernel_option,
                                                                     chunk):  # fmt: skip
    fc, lif, x = _live(1)
    x_read = pre.trace(3.0) if coincident != "none" else pre.trace(3.0).before
    y_read = post.trace(4.0) if coincident == "both" else post.trace(4.0).before
    rule = pl.Rule(fc, lif, pos=0.5 * post.spike * x_read, neg=0.4 * y_read * pre.spike,
                   kernel=kernel_option, chunk_size=chunk)  # fmt: skip
    spikes, _ = _run_hooks(fc, lif, x)
    assert spikes.sum() > 0
    want = dense_reference(x, spikes, PAIR, coincident=coincident)
    for got, ref in zip(_pos_neg(rule), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    # the same declaration as the built-in: the same numbers
    builtin = pl.STDP(nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.8), **PAIR,
                      coincident=coincident, chunk_size=chunk)  # fmt: skip
    builtin.observe(x, spikes)
    for got, ref in zip(_pos_neg(rule), _pos_neg(builtin), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kernel_option", KERNELS)
def test_a_difference_of_exponentials_window_equals_its_pair_sum(kernel_option):
    """``Δw = A Σ_{t_post >= t_pre} (e^{-Δ/τ₁} - 2 e^{-Δ/τ₂})``: depression for near
    coincidence, potentiation at longer lags (a signed pre-side factor, split into pos and
    neg by its sign)."""
    fc, lif, x = _live(2)
    a, tau1, tau2 = 0.7, 8.0, 2.0
    rule = pl.Rule(fc, lif, pos=a * post.spike * (pre.trace(tau1) - 2 * pre.trace(tau2)),
                   kernel=kernel_option, chunk_size=7)  # fmt: skip
    spikes, _ = _run_hooks(fc, lif, x)
    T, B, n_in = x.shape
    ref = torch.zeros(4, n_in, dtype=torch.float64)
    for b in range(B):
        for i in range(4):
            for j in range(n_in):
                for tp in range(T):
                    for tq in range(tp + 1):
                        if spikes[tp, b, i] and x[tq, b, j]:
                            lag = tp - tq
                            ref[i, j] += a * (kernel(lag, tau1, 1.0, "exact")
                                              - 2 * kernel(lag, tau2, 1.0, "exact"))  # fmt: skip
    pos, neg = _pos_neg(rule)
    assert bool((pos >= 0).all() and (neg >= 0).all()) and neg.sum() > 0
    torch.testing.assert_close(pos - neg, ref / B, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel_option", KERNELS)
@pytest.mark.parametrize("chunk", [3, 64])
def test_terms_sharing_a_factor_merge_and_equal_the_per_step_loop(kernel_option, chunk):
    """Triplet-like terms: each component's two terms share one side's factor and run as
    one product (pos and neg never merge with each other: they are bounded apart); the
    result equals a per-step loop over explicit traces."""
    fc, lif, x = _live(4)
    a, b, c, e = 0.3, 0.2, 0.25, 0.1
    rule = pl.Rule(fc, lif,
                   pos=a * post.spike * pre.trace(3.0)
                   + b * post.spike * post.trace(5.0).before * pre.trace(3.0),
                   neg=c * post.trace(4.0).before * pre.spike
                   + e * post.trace(4.0).before * pre.spike * pre.trace(6.0).before,
                   kernel=kernel_option, chunk_size=chunk)  # fmt: skip
    assert len(rule.plan.products) == 2
    assert [p.coef for p in rule.plan.products] == [1.0, -1.0]
    spikes, _ = _run_hooks(fc, lif, x)
    d = {tau: math.exp(-1.0 / tau) for tau in (3.0, 4.0, 5.0, 6.0)}
    T, B, n_in = x.shape
    r1, r2 = torch.zeros(B, n_in, dtype=torch.float64), torch.zeros(B, n_in, dtype=torch.float64)
    o1, o2 = torch.zeros(B, 4, dtype=torch.float64), torch.zeros(B, 4, dtype=torch.float64)
    want_pos, want_neg = torch.zeros(4, n_in, dtype=torch.float64), torch.zeros(4, n_in, dtype=torch.float64)
    for t in range(T):
        y, s = spikes[t], x[t]
        r1 = d[3.0] * r1 + s  # pre.trace(3) after this step's spikes
        o1_before, o2_before, r2_before = d[4.0] * o1, d[5.0] * o2, d[6.0] * r2
        for i in range(4):
            for j in range(n_in):
                for k in range(B):
                    want_pos[i, j] += y[k, i] * (a + b * o2_before[k, i]) * r1[k, j]
                    want_neg[i, j] += o1_before[k, i] * s[k, j] * (c + e * r2_before[k, j])
        o1, o2, r2 = o1_before + y, o2_before + y, r2_before + s
    pos, neg = _pos_neg(rule)
    assert want_pos.sum() > 0 and want_neg.sum() > 0
    torch.testing.assert_close(pos, want_pos / B, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(neg, want_neg / B, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel_option", KERNELS)
def test_a_voltage_gated_term_reads_snntorchs_membrane_through_the_hooks(kernel_option):
    """``pos = A · relu(u - θ) · x_pre``, ``neg = B · relu(θ - u) · s_pre``: the potential
    of each step as the neuron returned it (the ``(spk, mem)`` tuple), against a loop."""
    fc, lif, x = _live(3)
    a, b, theta, tau = 0.3, 0.2, 0.4, 5.0
    rule = pl.Rule(fc, lif, pos=a * relu(post.voltage - theta) * pre.trace(tau),
                   neg=b * relu(theta - post.voltage) * pre.spike, kernel=kernel_option,
                   chunk_size=9)  # fmt: skip
    spikes, mems = _run_hooks(fc, lif, x)
    T, B, n_in = x.shape
    pos_ref = torch.zeros(4, n_in, dtype=torch.float64)
    neg_ref = torch.zeros_like(pos_ref)
    for bb in range(B):
        for t in range(T):
            for j in range(n_in):
                trace = sum(math.exp(-(t - s) / tau) for s in range(t + 1) if x[s, bb, j])
                for i in range(4):
                    u = float(mems[t, bb, i])
                    pos_ref[i, j] += a * max(u - theta, 0.0) * trace / B
                    neg_ref[i, j] += b * max(theta - u, 0.0) * float(x[t, bb, j]) / B
    for got, ref in zip(_pos_neg(rule), (pos_ref, neg_ref), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    # observe() with the recorded potentials gives the same
    again = pl.Rule(nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.8),
                    pos=a * relu(post.voltage - theta) * pre.trace(tau),
                    neg=b * relu(theta - post.voltage) * pre.spike)  # fmt: skip
    again.observe(x, spikes, voltage=mems)
    for got, ref in zip(_pos_neg(again), (pos_ref, neg_ref), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


def test_init_hidden_neurons_give_their_membrane_through_neuron_mem():
    fc = nn.Linear(3, 2, bias=False)
    lif = snn.Leaky(beta=0.5, init_hidden=True)  # returns spikes only; mem on the module
    rule = pl.Rule(fc, lif, pos=post.voltage * pre.spike)
    mems = []
    with torch.no_grad():
        for _ in range(4):
            lif(fc(torch.ones(1, 3)))
            mems.append(lif.mem.detach().clone())
    want = torch.stack(mems).sum(0)[0][:, None].expand(2, 3)
    torch.testing.assert_close(_pos_neg(rule)[0] - _pos_neg(rule)[1], want)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: relu(post.voltage - pre.trace(10.0)), r"relu\(post.voltage - pre.trace\(10\)\)"),
        (lambda: (post.spike * pre.spike).trace(5.0), "trace"),
        (lambda: pl.eligibility(post.spike * pre.spike, 10.0) * post.spike, "weight-shaped"),
        (lambda: weight * weight * post.spike, "weight may appear once"),
        (lambda: pre.voltage, "presynaptic"),
        (lambda: pre.trace(0.0), "tau"),
        (lambda: post.spike.lowpass(5.0).delayed(0), "steps"),
        (lambda: pl.eligibility(weight * post.spike * pre.spike, 5.0), "spikes and traces only"),
    ],
)
def test_what_does_not_factor_into_post_times_pre_is_refused_when_written(make, words):
    with pytest.raises((ValueError, AttributeError), match=words):
        make()


def test_a_rule_with_a_bad_declaration_attaches_nothing():
    fc, lif = nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
    with pytest.raises(TypeError, match="trace"):
        pl.Rule(fc, lif, pos=post.spike * pre.spike, trace="nearest")
    with pytest.raises(ValueError, match="per_sample=True"):  # a shared trace, per-sample rewards
        pl.Rule(fc, lif, pos=modulator * pl.eligibility(post.spike * pre.spike, 5.0),
                per_sample=True)  # fmt: skip
    with pytest.raises(ValueError, match="dt < tau"):
        pl.Rule(fc, lif, neg=0.1 * post.spike * pre.trace(0.5), decay="euler")
    assert not fc._forward_pre_hooks and not fc._forward_hooks and not lif._forward_hooks


def test_a_third_factor_through_an_eligibility_trace_equals_mstdpet():
    """A user's ``modulator × eligibility(ζ/τ_e, τ_e)`` is MSTDPET (which the built-in's
    tests check against the paper's step-by-step reference)."""
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(30, 2, 5, generator=g) < 0.3).double()
    y = (torch.rand(30, 2, 3, generator=g) < 0.3).double()
    r = torch.randn(30, generator=g, dtype=torch.float64)
    zeta = 0.5 * post.spike * pre.trace(3.0) - 0.4 * post.trace(4.0).before * pre.spike
    mine = pl.Rule(nn.Linear(5, 3, bias=False).double(), snn.Leaky(beta=0.5),
                   pos=modulator * pl.eligibility(zeta / 20.0, 20.0), chunk_size=8)  # fmt: skip
    builtin = pl.MSTDPET(nn.Linear(5, 3, bias=False).double(), snn.Leaky(beta=0.5), **PAIR,
                         tau_e=20.0, chunk_size=8)  # fmt: skip
    for rule in (mine, builtin):
        rule.observe(x, y, reward=r)
    torch.testing.assert_close(mine.step(), builtin.step(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("delay", [1, 4])
@pytest.mark.parametrize("how", ["observe", "hooks"])
def test_clopath_equals_the_per_step_reference(delay, how):
    """pl.Clopath against the reference written from the paper's equations (float64 loops
    over steps and synapses), through observe(voltage=...) and through the hooks of the
    model's AdEx stand-in (whose (spk, mem) output carries the 2-ms spike plateau)."""
    from models import clopath
    from models._adex import AdEx

    params = {**clopath.VISUAL_CORTEX, "dt": 1.0}
    pre_in, current, _ = clopath.pairing_protocol((20.0, 50.0))
    n = pre_in.shape[-1]
    synapse = nn.Linear(n, n, bias=False, dtype=torch.float64)
    neuron = AdEx()
    rule = pl.Clopath(synapse, neuron, **params, delay=float(delay), chunk_size=23)
    if how == "observe":
        rule.detach()
    spikes, mems = [], []
    with torch.no_grad():
        for t in range(pre_in.shape[0]):
            spk, mem = neuron(0.0 * synapse(pre_in[t]) + current[t])
            spikes.append(spk.clone())
            mems.append(mem.clone())
    spikes, mems = torch.stack(spikes).double(), torch.stack(mems).double()
    if how == "observe":
        rule.observe(pre_in, spikes, voltage=mems)
    ltp, ltd = clopath_reference(pre_in, spikes, mems, **params, delay=delay)
    assert ltp.abs().max() > 0 and ltd.abs().max() > 0
    for got, ref in zip(_pos_neg(rule), (ltp, ltd), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-15)


def test_clopath_reads_the_voltage_only_with_a_potential_to_read():
    fc = nn.Linear(2, 1, bias=False)
    rule = pl.Clopath(fc, nn.Identity(), a_ltd=1.0, a_ltp=1.0, theta_minus=-70.0,
                      theta_plus=-45.0, tau_minus=10.0, tau_plus=7.0, tau_x=15.0)  # fmt: skip
    with pytest.raises(TypeError, match="membrane potential"):
        rule.neuron(fc(torch.ones(1, 2)))
    assert rule._pre.n == rule._post.n == 0 and rule._volt.n == 0
    with pytest.raises(ValueError, match="voltage="):
        rule.observe(torch.ones(3, 1, 2), torch.ones(3, 1, 1))
    for voltage in (torch.ones(3, 1, 2), torch.ones(2, 1, 1), torch.ones(3, 1)):
        with pytest.raises(ValueError, match=r"`voltage` has shape .* of `post` \(3, 1, 1\)"):
            rule.observe(torch.ones(3, 1, 2), torch.ones(3, 1, 1), voltage=voltage)
    with pytest.raises(TypeError, match="`voltage` must be .*; got str"):
        rule.observe(torch.ones(3, 1, 2), torch.ones(3, 1, 1), voltage="-70 mV")
    assert rule._pre.n == rule._post.n == 0 and rule._volt.n == 0
    with pytest.raises(ValueError, match="delay"):
        pl.Clopath(fc, nn.Identity(), a_ltd=1.0, a_ltp=1.0, theta_minus=-70.0, theta_plus=-45.0,
                   tau_minus=10.0, tau_plus=7.0, tau_x=15.0, delay=0.2)  # fmt: skip


def test_the_kernel_choice_is_inspectable_and_cached():
    fc, lif, x = _live(5, steps=64, batch=4, n_in=300, n_out=50)
    rule = pl.STDP(fc, lif, **PAIR, chunk_size=16)
    _run_hooks(fc, lif, x)
    rule.flush()
    assert set(rule.kernel_choice) == {p.label for p in rule.plan.products}
    keys = [k for k in pl.engine.CHOOSER.choices if k[0] == rule.plan.signature]
    assert keys and all(len(pl.engine.CHOOSER.choices[k]) == 2 for k in keys)


TEXTS = [
    "0.5 * post.spike * pre.trace(3) - 0.4 * post.trace(4).before * pre.spike",
    "a * post.spike * (pre.trace(tau) - 2 * pre.trace(2))",
    "relu(post.voltage - 0.3) * post.voltage.lowpass(5, init=0).previous * pre.spike",
    "modulator * eligibility(post.spike * pre.trace(20, nearest=True) - post.trace(20).before * pre.spike, 25)",
    "-0.001 * weight * post.spike ** 2 + post.trace(10).delayed(2) * pre.spike / 4 + post.rate(5) * pre.spike",
    "post.spike.batch_mean().lowpass(100, init=0) * pre.trace(5).before",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_text_form_gives_the_objects_of_the_python_expression(text):
    from plasticity.language import eligibility as elig_fn
    from plasticity.language import parse

    names = {"pre": pre, "post": post, "modulator": modulator, "weight": weight, "relu": relu,
             "eligibility": elig_fn, "a": 0.7, "tau": 8.0}  # fmt: skip
    want = eval(text, {"__builtins__": {}}, names)  # the Python expression itself
    got = parse(text, a=0.7, tau=8.0)
    assert type(got) is type(want) and repr(got) == repr(want)
    assert repr(parse(repr(got))) == repr(got)  # what is printed reads back


def test_a_rule_from_text_learns_what_the_built_in_learns():
    from plasticity.language import parse

    fc, lif, x = _live(5)
    spikes, _ = _run_hooks(fc, lif, x)
    builtin = pl.TripletSTDP.from_preset(nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.8),
                                         "visual_cortex_all_to_all_full")  # fmt: skip
    decl = builtin.declaration()
    rule = pl.Rule(nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.8),
                   pos=parse(repr(decl["pos"])), neg=parse(repr(decl["neg"])))  # fmt: skip
    text = pl.Rule(nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.8),
                   pos=repr(decl["pos"]), neg=repr(decl["neg"]))  # strings: parsed  # fmt: skip
    assert repr(text.declaration()) == repr(rule.declaration())
    for r in (builtin, rule, text):
        r.observe(x, spikes)
    for r in (rule, text):
        for got, ref in zip(_pos_neg(r), _pos_neg(builtin), strict=True):
            assert ref.sum() > 0
            torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("text, words", [
    ("post.spike * os.system('ls')", "unknown name 'os'"),
    ("post.spike.__class__", "the attribute .__class__"),
    ("post.spike * pre.trace(3, decay=2)", "the keyword decay="),
    ("post.spike * 'a'", "the constant 'a'"),
    ("post.spike if 1 else pre.spike", "IfExp"),
    ("post.spike *", "is not an expression"),
    ("relu(post.voltage - pre.trace(10))", "does not factor into a post-side signal times"),
    ("post.spike(3)", "called"),
])  # fmt: skip
def test_text_outside_the_language_is_a_value_error_naming_the_part(text, words):
    from plasticity.language import parse

    with pytest.raises(ValueError, match=re.escape(words)):
        parse(text)


_TERMS = "post.spike * pre.spike"


@pytest.mark.parametrize("text, values, exc, words", [
    ("(1).spike * pre.spike", {}, ValueError, "the attribute .spike of '1'"),
    ("relu.trace(3) * pre.spike", {}, ValueError, "the attribute .trace of 'relu'"),
    ("(" * 10000, {}, ValueError, "too many nested parentheses"),
    ("-" * 100000 + "1", {}, ValueError, "nests too deeply"),
    (" + ".join([_TERMS] * 3000), {}, ValueError, "nests too deeply"),
    (" + ".join([_TERMS] * 101), {}, ValueError, "nests more than 100 levels"),
    ("-" * 150 + _TERMS, {}, ValueError, "nests more than 100 levels"),
    (f"10**400 * {_TERMS}", {}, ValueError, "the number '10**400' (not a finite float)"),
    (f"1{'0' * 400} * {_TERMS}", {}, ValueError, "(not a finite float)"),
    (f"1e400 * {_TERMS}", {}, ValueError, "the number '1e400'"),
    (f"2.0**5000 * {_TERMS}", {}, ValueError, "the number '2.0**5000'"),
    (f"10**300 * 10**300 * {_TERMS}", {}, ValueError, "the number '10**300 * 10**300'"),
    (f"(-8)**0.5 * {_TERMS}", {}, ValueError, "the number '(-8)**0.5'"),
    (f"a * {_TERMS}", {"a": 10**400}, ValueError, "`a` must be finite"),
])  # fmt: skip
def test_what_the_text_form_evaluates_is_bounded_and_refused_by_name(text, values, exc, words):
    """Deep nesting, numbers beyond the floats and attributes of numbers are a ValueError
    naming the part (not a RecursionError, MemoryError, OverflowError or AttributeError)."""
    from plasticity.language import parse

    with pytest.raises(exc, match=re.escape(words)) as info:
        parse(text, **values)
    assert len(str(info.value)) < 600  # a long text is abbreviated in the message


def test_a_power_too_large_for_a_float_is_refused_before_python_computes_it(monkeypatch):
    """``9**9**9`` would take Python forever: the parser must refuse it from the sizes of
    its operands. A spy in place of the power stands in for the endless computation (it
    fails instead of hanging where the parser would compute it)."""
    import operator
    import sys

    parse_module = sys.modules["plasticity.language.parse"]  # (the package exports parse())

    def spy(a, b):
        if isinstance(a, int) and isinstance(b, int) and b > 0 and b * math.log2(abs(a) or 1) > 1e5:
            raise AssertionError(f"the parser computes {a} ** {b}")
        return operator.pow(a, b)

    monkeypatch.setitem(parse_module._BINARY, ast.Pow, spy)
    for text in (f"9**9**9 * {_TERMS}", f"(2**64)**(2**64) * {_TERMS}", f"-7**99999999 * {_TERMS}"):
        with pytest.raises(ValueError, match=r"\(not a finite float\)"):
            parse_module.parse(text)
    # what fits a float is still computed, an int stays one (a power of a signal)
    got = parse_module.parse(f"2**10 * {_TERMS} ** 2 + 2.5**-2 * {_TERMS}")
    assert repr(got) == repr(1024 * post.spike * pre.spike ** 2 + 0.16 * post.spike * pre.spike)


def test_text_names_are_numbers_and_not_the_languages_own():
    from plasticity.language import parse

    with pytest.raises(TypeError, match="`a` must be a real number"):
        parse("a * post.spike * pre.spike", a="0.1")
    with pytest.raises(ValueError, match="`post` is a name of the language"):
        parse("post.spike * pre.spike", post=1.0)
    with pytest.raises(TypeError, match="`text` must be a string"):
        parse(0.1 * post.spike * pre.spike)
