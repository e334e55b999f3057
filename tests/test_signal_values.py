"""Signals are values: equal and hashed by their exact fields, printed exactly (what is
printed reads back as the same object and learns the same bits), and the state they key
is saved under exact, versioned names (checkpoints of the 6-digit names still load).

The references are per-step loops in float64 written from the equations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import plasticity as pl
from plasticity import eligibility, modulator, post, pre, relu, weight
from plasticity.language import parse

FIXTURES = Path(__file__).parent / "fixtures"


def _inputs(seed: int = 0, steps: int = 25, batch: int = 2, n_in: int = 3, n_out: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.4).double()
    y = (torch.rand(steps, batch, n_out, generator=g) < 0.4).double()
    return x, y


def _trace_loop(s: torch.Tensor, tau: float) -> torch.Tensor:
    """``x_t = e^{-1/tau} x_{t-1} + s_t`` step by step (dt = 1), float64."""
    d, x, out = math.exp(-1.0 / tau), torch.zeros_like(s[0]), []
    for t in range(s.shape[0]):
        x = d * x + s[t]
        out.append(x)
    return torch.stack(out)


def _rule(pos, neg=None, **kw):
    fc = torch.nn.Linear(3, 2, bias=False).double()
    return pl.Rule(fc, torch.nn.Identity(), pos=pos, neg=neg, **kw)


# ------------------------------------------------------------------------- values


def test_signals_differing_in_the_last_digits_are_different_values():
    a, b = pre.trace(20.0), pre.trace(20.000001)
    assert a != b and len({a, b}) == 2
    assert a == pre.trace(20) and hash(a) == hash(pre.trace(20)) and {a: 1}[pre.trace(20.0)] == 1
    assert post.voltage.lowpass(5.0, init=0.1) != post.voltage.lowpass(5.0, init=0.1 + 1e-12)
    assert pre.trace(3.0, nearest=True) != pre.trace(3.0)
    assert 0.5 * post.spike * pre.trace(2.0) == parse("0.5 * post.spike * pre.trace(2)")


@pytest.mark.parametrize("kernel", ["auto", "dense", "sparse"])
def test_two_close_time_constants_are_two_filters(kernel):
    """``post.spike * (x_20 - x_20.000001)`` is not zero (the engine merged the two by
    their 6-digit name): it equals the loop's difference."""
    x, y = _inputs()
    rule = _rule(post.spike * pre.trace(20.0) - post.spike * pre.trace(20.000001), kernel=kernel)
    assert len(rule.plan.filters) == 2
    rule.observe(x, y)
    got = rule.step()
    diff = _trace_loop(x, 20.0) - _trace_loop(x, 20.000001)
    want = torch.einsum("tbi,tbj->ij", y, diff) / x.shape[1]
    assert float(want.abs().min()) > 1e-7
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-18)


# ---------------------------------------------------------------------- exact text

_NUMBERS = st.one_of(
    st.sampled_from([1.0, 0.5, 20.0, 2.0, 1e6, 1e-5, 0.1]),
    st.floats(0.01, 100.0, allow_nan=False, allow_infinity=False),
)
_TAUS = st.floats(0.05, 1e4, allow_nan=False, allow_infinity=False)
_FUNCTIONS = [relu, abs, pl.sigmoid, pl.exp, pl.tanh, pl.heaviside]


def _signal(side: str):
    spikes = st.just((pre if side == "pre" else post).spike)
    leaves = spikes | (st.just(post.voltage) if side == "post" else spikes)
    leaves = leaves | st.sampled_from(["L", "g", "error"]).map(  # user-fed signals
        (pre if side == "pre" else post).signal)
    traces = st.builds(lambda tau, near: (pre if side == "pre" else post).trace(
        tau, nearest=near), _TAUS, st.booleans())  # fmt: skip
    base = leaves | traces | st.builds(lambda s, tau: s.lowpass(tau), leaves, _TAUS)
    base = base | st.builds(lambda tau: (pre if side == "pre" else post).trace(tau).before, _TAUS)
    base = base | st.builds(lambda tau, k: (pre if side == "pre" else post).trace(tau).delayed(k),
                            _TAUS, st.integers(1, 3))  # fmt: skip

    def extend(inner):
        return (
            st.builds(lambda a, c: c * a, inner, _NUMBERS | _NUMBERS.map(lambda v: -v))
            | st.builds(lambda a, b: a + b, inner, inner)
            | st.builds(lambda a, b: a - b, inner, inner)
            | st.builds(lambda a, b: a * b, inner, inner)
            | st.builds(lambda a, f: f(a), inner, st.sampled_from(_FUNCTIONS))
            | st.builds(lambda a, c: a - c, inner, _NUMBERS)
            | st.builds(lambda a: a**2, inner)
            | st.builds(lambda a: a.batch_mean(), inner)
            | st.builds(lambda a, tau: a.lowpass(tau, init=0.25), inner, _TAUS)
        )

    return st.recursive(base, extend, max_leaves=4)


_TERMS = st.builds(lambda c, p, q: c * p * q, _NUMBERS, _signal("post"), _signal("pre"))
_DECLARATIONS = st.one_of(
    _TERMS,
    st.builds(lambda a, b: a - b, _TERMS, _TERMS),
    st.builds(lambda a, tau, c: c * modulator * eligibility(a, tau), _TERMS, _TAUS, _NUMBERS),
    st.builds(lambda a: a * weight, _TERMS),
    st.builds(lambda a, tau, f: f * eligibility(a, tau, per_sample=True), _TERMS, _TAUS,
              _signal("post")),  # a post-side factor of a per-sample trace
)


@settings(max_examples=150, deadline=None)
@given(_DECLARATIONS)
def test_what_is_printed_reads_back_as_the_same_value(declaration):
    text = repr(declaration)
    back = parse(text)
    assert back == declaration, text
    assert repr(back) == text


@settings(max_examples=150, deadline=None)
@given(st.one_of(_signal("post"), _signal("pre")))
def test_every_signal_reads_back_as_itself(signal):
    assert parse(repr(signal)) == signal and hash(parse(repr(signal))) == hash(signal)


def test_round_numbers_keep_their_short_text_and_others_are_exact():
    assert repr(pre.trace(20.0)) == "pre.trace(20)"
    assert repr(0.01 * post.spike * pre.trace(20.0)) == "0.01 * post.spike * pre.trace(20)"
    assert repr(pre.trace(20.000001)) == "pre.trace(20.000001)"
    assert repr(pre.rate(3.0)) == "0.3333333333333333 * pre.trace(3)"
    assert parse(repr(pre.trace(1 / 3))).tau == 1 / 3


@pytest.mark.parametrize("kernel", ["auto", "dense", "sparse"])
def test_a_rule_rebuilt_from_its_text_learns_the_same_bits(kernel):
    pos = (1 / 3) * post.spike * pre.trace(10 / 3) + 0.7 * post.trace(7.1234567).before * (
        pre.spike.lowpass(math.pi, init=1 / 7))  # fmt: skip
    neg = math.e * post.trace(4.4444444).previous * pre.trace(2 / 3, nearest=True)
    x, y = _inputs(3)
    made = _rule(pos, neg, kernel=kernel)
    read = _rule(repr(pos), repr(neg), kernel=kernel)  # a string is parsed
    assert read.declaration() == made.declaration()
    made.observe(x, y)
    read.observe(x, y)
    assert torch.equal(made.step(), read.step())


def test_the_kernel_cache_key_tells_close_time_constants_apart():
    a = _rule(post.spike * pre.trace(20.0))
    b = _rule(post.spike * pre.trace(20.000001))
    assert a.plan.signature != b.plan.signature


# -------------------------------------------------------------------- checkpoints


def _fixture_rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_old_ckpt", FIXTURES / "make_old_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_a_checkpoint_saved_by_main_with_six_digit_names_loads_and_continues_bit_for_bit():
    """``old_checkpoint.pt``: two rules saved mid-window by main at fe2a132 (state named
    ``pre.trace(3.33333)``, an eligibility ``elig:eligibility(..., 123.457)``, no
    ``key_format``): loaded here, the window continues to main's Δw, bit for bit."""
    old = _fixture_rules()
    saved = torch.load(FIXTURES / "old_checkpoint.pt", weights_only=True)
    assert "key_format" not in saved["a"]["_extra_state"]
    assert "pre.trace(3.33333)" in saved["a"]["_extra_state"]["state"]
    a, b = old.rules()
    pre_s, post_s, reward = old.inputs()
    a.load_state_dict(saved["a"])
    b.load_state_dict(saved["b"])
    assert a.state_tensor("pre.trace(3.33333)") is a.state_tensor(pre.trace(10 / 3))
    assert a.state_tensor(pre.trace(10 / 3)) is not None
    a.observe(pre_s[10:], post_s[10:])
    b.observe(pre_s[10:], post_s[10:], reward=reward[10:])
    assert torch.equal(a.step(), saved["dw"]["a"])
    assert torch.equal(b.step(), saved["dw"]["b"])


def test_new_checkpoints_record_exact_versioned_keys_and_load():
    rule = _rule(post.spike * pre.trace(20.0) - post.spike * pre.trace(20.000001), chunk_size=4)
    x, y = _inputs(4)
    rule.observe(x[:10], y[:10])
    extra = rule.get_extra_state()
    from plasticity.language.text import KEY_FORMAT

    assert extra["key_format"] == KEY_FORMAT == 2
    assert set(extra["state"]) == {"pre.trace(20)", "pre.trace(20.000001)"}
    assert not torch.equal(extra["state"]["pre.trace(20)"], extra["state"]["pre.trace(20.000001)"])
    again = _rule(post.spike * pre.trace(20.0) - post.spike * pre.trace(20.000001), chunk_size=4)
    again.load_state_dict(rule.state_dict())
    for r in (rule, again):
        r.observe(x[10:], y[10:])
    assert torch.equal(rule.step(), again.step())
    newer = {**rule.get_extra_state(), "key_format": 99}
    with pytest.raises(ValueError, match="format 99, of a newer version"):
        again.set_extra_state(newer)


def test_signals_pickle_across_processes_as_values():
    """A node's cached hash is not saved with it (string hashes differ per process)."""
    import pickle

    s = post.trace(5.0).before
    hash(s)
    state = pickle.loads(pickle.dumps(s)).__dict__
    assert "_hash" not in state and pickle.loads(pickle.dumps(s)) == s
