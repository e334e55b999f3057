"""Accumulator: the seed API, running reductions, copies, bounds, errors and state."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import plasticity as pl
from plasticity import bounds


def rand(*shape, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype).to(device)


# ------------------------------------------------------------------- seed semantics


def test_empty_accumulator_reads_none_and_updates_nothing():
    acc = pl.Accumulator()
    w = torch.ones(3)
    assert acc.pos is None and acc.neg is None
    assert acc.update(w) is None
    assert acc(w) is w
    acc.pos = None  # setting None is a no-op
    assert acc.pos is None and acc.counts == (0, 0)


def test_setting_appends_and_reading_reduces(device):
    acc = pl.Accumulator()
    xs = [rand(2, 3, seed=s, device=device) for s in range(4)]
    for x in xs:
        acc.pos = x
    acc.neg = xs[0]
    torch.testing.assert_close(acc.pos, sum(xs))
    torch.testing.assert_close(acc.neg, xs[0])
    assert acc.counts == (4, 1)
    del acc.pos
    assert acc.pos is None and acc.neg is not None
    acc.clear()
    assert acc.pos is None and acc.neg is None and acc.counts == (0, 0)


@pytest.mark.parametrize(
    "fn, ref",
    [
        (None, lambda s: s.sum(0)),
        (torch.sum, lambda s: s.sum(0)),
        (torch.mean, lambda s: s.mean(0)),
        (torch.amax, lambda s: s.amax(0)),
        (torch.amin, lambda s: s.amin(0)),
        (lambda x, dim: torch.quantile(x, 0.5, dim=dim), lambda s: s.median(0).values),
        (torch.prod, lambda s: s.prod(0)),
    ],
)
def test_reductions(fn, ref, device):
    acc = pl.Accumulator()
    acc.reduction(fn)
    xs = [rand(3, 4, seed=s, device=device) for s in range(5)]
    for x in xs:
        acc.pos = x
        acc.neg = 2 * x
    stacked = torch.stack(xs)
    torch.testing.assert_close(acc.pos, ref(stacked))
    torch.testing.assert_close(acc.neg, ref(2 * stacked))


def test_running_reductions_do_not_grow_with_appends():
    for fn in (torch.sum, torch.mean, torch.amax):
        acc = pl.Accumulator()
        acc.reduction(fn)
        acc.pos = torch.zeros(50, 50)
        ptr = acc.pos_acc.data_ptr()
        for _ in range(1000):
            acc.pos = torch.rand(50, 50)
        assert acc.pos_acc.data_ptr() == ptr  # updated in place, one tensor
        assert acc._lists["pos"] == []
        assert len(acc.state_dict()) == 2  # pos_acc + extra state (counts), nothing per append
        assert acc.counts == (1001, 0)


def test_custom_reduction_keeps_appends_until_clear():
    acc = pl.Accumulator()
    acc.reduction(torch.prod)
    for _ in range(3):
        acc.pos = torch.full((2,), 2.0)
    assert len(acc._lists["pos"]) == 3
    torch.testing.assert_close(acc.pos, torch.full((2,), 8.0))
    acc.clear()
    assert acc._lists["pos"] == []


@given(
    st.lists(
        st.lists(st.floats(0, 1e6, allow_nan=False), min_size=3, max_size=3),
        min_size=1,
        max_size=30,
    )
)
def test_sum_equals_sum_of_appends(rows):
    acc = pl.Accumulator()
    for r in rows:
        acc.pos = torch.tensor(r, dtype=torch.float64)
    expected = [sum(r[i] for r in rows) for i in range(3)]
    torch.testing.assert_close(
        acc.pos, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-9
    )


@given(st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=40))
def test_mean_equals_mean_of_appends(vals):
    acc = pl.Accumulator()
    acc.reduction(torch.mean)
    for v in vals:
        acc.neg = torch.tensor([v], dtype=torch.float64)
    torch.testing.assert_close(acc.neg, torch.tensor([sum(vals) / len(vals)], dtype=torch.float64))


# ----------------------------------------------------------- copies, buffers, dtypes


@pytest.mark.parametrize("fn", [torch.sum, torch.prod])
def test_appends_are_copied_never_aliased(fn):
    acc = pl.Accumulator()
    acc.reduction(fn)
    x = torch.ones(3)
    acc.pos = x
    x.add_(100.0)  # the caller reuses its buffer
    torch.testing.assert_close(acc.pos, torch.ones(3))
    out = acc.pos
    out.add_(5.0)  # mutating what was read does not touch the state
    torch.testing.assert_close(acc.pos, torch.ones(3))


def test_appends_carry_no_autograd_history():
    w = torch.ones(3, requires_grad=True)
    acc = pl.Accumulator()
    acc.pos = w * 2
    acc.pos = w * 3
    assert not acc.pos.requires_grad and acc.pos.grad_fn is None
    assert not acc.pos_acc.requires_grad


def test_state_is_plain_buffers_never_parameters():
    acc = pl.Accumulator()
    acc.pos = torch.ones(2)
    acc.neg = torch.ones(2)
    assert list(acc.parameters()) == []
    assert {"pos_acc", "neg_acc"} <= dict(acc.named_buffers()).keys()
    assert not isinstance(acc.pos_acc, torch.nn.Parameter)


def test_device_and_dtype_follow_the_first_append(device):
    acc = pl.Accumulator()
    acc.pos = torch.ones(2, dtype=torch.float64, device=device)
    acc.pos = torch.ones(2, dtype=torch.float32)  # converted to the first append's
    acc.neg = torch.ones(2, dtype=torch.float16)
    assert acc.pos.dtype == torch.float64 and acc.pos.device.type == device.type
    assert acc.neg.dtype == torch.float64 and acc.neg.device.type == device.type
    ints = pl.Accumulator()
    ints.pos = torch.ones(2, dtype=torch.int64)
    assert ints.pos.dtype == torch.get_default_dtype()


def test_module_to_moves_state_including_kept_appends():
    acc = pl.Accumulator()
    acc.pos = torch.ones(2)
    acc.to(torch.float64)
    assert acc.pos.dtype == torch.float64
    custom = pl.Accumulator()
    custom.reduction(torch.prod)
    custom.pos = torch.ones(2)
    custom.double()
    assert custom.pos.dtype == torch.float64


# ------------------------------------------------------------------------- errors


def snapshot(acc: pl.Accumulator):
    return (
        acc.counts,
        None if acc.pos is None else acc.pos.clone(),
        None if acc.neg is None else acc.neg.clone(),
    )


def same(a, b):
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:], strict=True):
        assert (x is None and y is None) or torch.equal(x, y)


@pytest.mark.parametrize(
    "which, value, exc, words",
    [
        ("pos", torch.ones(3, 3), ValueError, "shape"),
        ("neg", torch.ones(2), ValueError, "shape"),
        ("pos", torch.tensor([1.0, float("nan"), 0.0]), ValueError, "NaN"),
        ("neg", torch.tensor([1.0, float("inf"), 0.0]), ValueError, "infinity"),
        ("pos", [1.0, 2.0, 3.0], TypeError, "Tensor"),
    ],
)
def test_bad_appends_raise_and_change_nothing(which, value, exc, words):
    acc = pl.Accumulator()
    acc.pos = torch.ones(3)
    before = snapshot(acc)
    with pytest.raises(exc, match=words):
        setattr(acc, which, value)
    same(before, snapshot(acc))


@pytest.mark.parametrize("merge, alpha", [(False, 1.0), (False, 2.0), (True, 1.0), (True, 0.5)])
@pytest.mark.parametrize("value", [[1.0, 2.0, 3.0], 3.0, (1.0, 2.0, 3.0)])
def test_add_of_a_non_tensor_is_a_type_error_and_changes_nothing(value, merge, alpha):
    """``add_`` names its argument for a value that is not a tensor, on every path (a new
    append, one scaled by ``alpha``, a merge into the latest append)."""
    acc = pl.Accumulator()
    acc.add_("pos", torch.ones(3))
    before = snapshot(acc)
    with pytest.raises(TypeError, match=r"Accumulator.add_: `value` must be a torch.Tensor"):
        acc.add_("pos", value, merge=merge, alpha=alpha)
    same(before, snapshot(acc))


def test_finite_check_can_be_switched_off():
    acc = pl.Accumulator(check_finite=False)
    acc.pos = torch.tensor([float("inf")])
    assert torch.isinf(acc.pos).all()


@pytest.mark.parametrize(
    "configure, exc, words",
    [
        (lambda a: a.upperbound(bounds.upper_multiplicative), ValueError, "max"),
        (lambda a: a.lowerbound(bounds.lower_multiplicative, None), ValueError, "min"),
        (lambda a: a.upperbound(bounds.upper_multiplicative, float("nan")), ValueError, "NaN"),
        (
            lambda a: a.lowerbound(bounds.lower_sharp, torch.tensor([0.0, float("nan")])),
            ValueError,
            "NaN",
        ),
        (lambda a: a.upperbound(bounds.upper_multiplicative, "1.0"), TypeError, "max"),
        (lambda a: a.upperbound("upper_multiplicative", 1.0), TypeError, "bound"),
        (lambda a: a.upperbound(bounds.upper_power, 1.0, power=-1.0), ValueError, "power"),
        (lambda a: a.upperbound(bounds.upper_power, 1.0, mu=2.0), TypeError, "mu"),
        (lambda a: a.lowerbound(bounds.lower_multiplicative, 2.0), ValueError, "min <= max"),
        (lambda a: a.fullbound(bounds.multiplicative), ValueError, "max"),
        (lambda a: a.fullbound(bounds.multiplicative, 0.0, 1.0), ValueError, "min <= max"),
        (
            lambda a: a.fullbound(bounds.power, 1.0, 0.0, upper_power=float("nan")),
            ValueError,
            "upper_power",
        ),
        (lambda a: a.fullbound(bounds.multiplicative, None, float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_bounds_fail_at_configuration_and_keep_the_old_ones(configure, exc, words):
    acc = pl.Accumulator()
    acc.upperbound(bounds.upper_multiplicative, 1.0)
    acc.pos = torch.ones(2)
    w = torch.tensor([0.25, 0.5])
    before = acc.update(w)
    with pytest.raises(exc, match=words):
        configure(acc)
    torch.testing.assert_close(acc.update(w), before)


_MISFITS = [torch.ones(3), torch.ones(4, 7), torch.ones(2, 4, 6)]  # for a [4, 6] weight


@pytest.mark.parametrize("limit", _MISFITS, ids=["3", "4x7", "2x4x6"])
@pytest.mark.parametrize("setter, name", [("upperbound", "max"), ("lowerbound", "min"),
                                          ("fullbound", "max"), ("fullbound", "min")])  # fmt: skip
def test_a_tensor_limit_that_does_not_fit_the_rules_weight_is_refused_when_set(setter, name,
                                                                                limit):  # fmt: skip
    """A rule's accumulator knows its weight's shape: a limit tensor that does not broadcast
    to it (or would enlarge it) is refused when set, naming the argument; the bounds in
    place and the window stay."""
    import snntorch as snn

    fc = torch.nn.Linear(6, 4, bias=False).double()
    rule = pl.STDP(fc, snn.Leaky(beta=0.5), a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0)
    acc = rule.accumulator
    acc.upperbound(bounds.upper_multiplicative, torch.full((4, 1), 0.75, dtype=torch.float64))
    acc.lowerbound(bounds.lower_multiplicative, torch.zeros(6, dtype=torch.float64))  # fits
    rule.observe(torch.ones(3, 2, 6, dtype=torch.float64), torch.ones(3, 2, 4, dtype=torch.float64))
    rule.flush()
    w = rand(4, 6, seed=1)
    before = acc.update(w)
    args = {"upperbound": (bounds.upper_multiplicative, limit.double()),
            "lowerbound": (bounds.lower_multiplicative, limit.double() * -1),
            "fullbound": (bounds.multiplicative, limit.double() if name == "max" else 2.0,
                          limit.double() * -1 if name == "min" else -1.0)}[setter]  # fmt: skip
    with pytest.raises(
        ValueError, match=rf"{setter}: the tensor `{name}` has shape .* weight's shape \(4, 6\)"
    ):
        getattr(acc, setter)(*args)
    torch.testing.assert_close(acc.update(w), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="parameter's shape"):  # appends: the weight's shape
        acc.pos = torch.ones(6, 4, dtype=torch.float64)


@pytest.mark.parametrize("limit", _MISFITS, ids=["3", "4x7", "2x4x6"])
@pytest.mark.parametrize("setter, name", [("upperbound", "max"), ("lowerbound", "min"),
                                          ("fullbound", "max"), ("fullbound", "min")])  # fmt: skip
def test_a_bare_accumulator_refuses_a_misfit_limit_at_update_by_name(setter, name, limit):
    """Without a known shape, the limit is checked against ``param`` in ``update()``: a
    ValueError naming the argument, not torch's broadcasting error; the window stays."""
    acc = pl.Accumulator()
    args = {"upperbound": (bounds.upper_multiplicative, limit),
            "lowerbound": (bounds.lower_multiplicative, -limit),
            "fullbound": (bounds.multiplicative, limit if name == "max" else 2.0,
                          -limit if name == "min" else -1.0)}[setter]  # fmt: skip
    getattr(acc, setter)(*args)
    acc.pos, acc.neg = rand(4, 6, seed=2), rand(4, 6, seed=3)
    with pytest.raises(ValueError, match=rf"\({setter}\): the tensor `{name}` has shape"):
        acc.update(torch.zeros(4, 6, dtype=torch.float64))
    assert acc.counts == (1, 1) and torch.equal(acc.pos, rand(4, 6, seed=2))
    getattr(acc, setter)(*[a.flatten()[:1] if isinstance(a, torch.Tensor) else a for a in args])
    assert acc.update(torch.zeros(4, 6, dtype=torch.float64)).shape == (4, 6)


def test_update_with_wrong_param_shape_raises():
    acc = pl.Accumulator()
    acc.pos = torch.ones(2, 3)
    with pytest.raises(ValueError, match="param"):
        acc.update(torch.ones(3, 2))
    with pytest.raises(TypeError, match="param"):
        acc.update([1.0])


def test_reduction_change_mid_window_is_an_error_unless_derivable():
    acc = pl.Accumulator()
    acc.pos = torch.ones(2)
    for fn in (torch.amax, torch.amin, torch.prod):  # not derivable from a running sum
        with pytest.raises(ValueError, match="clear"):
            acc.reduction(fn)
    acc.reduction(torch.mean)  # sum <-> mean: from the running sum and count
    acc.reduction(torch.sum)
    with pytest.raises(TypeError):
        acc.reduction(3)
    acc.clear()
    acc.reduction(torch.amax)
    acc.pos = torch.ones(2)
    for fn in (torch.sum, torch.mean, torch.prod):  # nor is anything from a running max
        with pytest.raises(ValueError, match="amax"):
            acc.reduction(fn)


def test_reduction_none_restores_the_sum_from_a_custom_reduction_mid_window():
    """The seed: ``reduction(None)`` sets the default sum, also in the middle of a window
    held by a custom reduction (it kept every append); likewise to mean, amax and amin."""
    appends = [rand(3, 2, seed=s) for s in range(4)]

    def by_hand(op):
        total = appends[0].clone()
        for x in appends[1:]:  # in order of appending
            total = op(total, x)
        return total

    median = lambda x, dim: x.median(dim).values  # noqa: E731
    for target, expected in [
        (None, by_hand(torch.add)),
        (torch.sum, by_hand(torch.add)),
        (torch.mean, by_hand(torch.add) / 4),
        (torch.amax, by_hand(torch.maximum)),
        (torch.amin, by_hand(torch.minimum)),
    ]:
        acc = pl.Accumulator()
        acc.reduction(median)
        for x in appends[:3]:
            acc.pos = x
        acc.neg = appends[0]
        acc.reduction(target)
        acc.pos = appends[3]  # the window goes on with the new reduction
        assert torch.equal(acc.pos, expected), target
        assert acc.counts == (4, 1) and acc.neg is not None and torch.equal(acc.neg, appends[0])
        assert not acc._lists["pos"]  # the kept appends became the running reduction
    acc = pl.Accumulator()
    acc.pos = appends[0]
    with pytest.raises(ValueError, match="clear"):  # sum -> custom: the appends are gone
        acc.reduction(median)


def _stdp_window(chunk_size, reduction, *, T=64, kind="stdp", seed=3):
    import snntorch as snn

    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, 3, 6, generator=g) < 0.3).double()
    post = (torch.rand(T, 3, 4, generator=g) < 0.3).double()
    reward = torch.randn(T, 3, generator=g, dtype=torch.float64)
    reward[10:40] = 0.0  # whole chunks that give the accumulator nothing
    fc = torch.nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(rand(4, 6, seed=9))
    pair = dict(a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0, chunk_size=chunk_size)
    if kind == "stdp":
        rule = pl.STDP(fc, snn.Leaky(beta=0.5), **pair)
    else:
        rule = pl.MSTDP(fc, snn.Leaky(beta=0.5), per_sample=True, **pair)
    if kind == "stdp":
        rule.accumulator.upperbound(bounds.upper_multiplicative, 1.0)
        rule.accumulator.lowerbound(bounds.lower_multiplicative, 0.0)
    if reduction is not None:
        rule.accumulator.reduction(reduction)
    if kind == "stdp":
        rule.observe(pre, post)
    else:
        rule.observe(pre, post, reward=reward)
    return rule, fc.weight.detach().clone(), (pre, post, reward)


@pytest.mark.parametrize("kind", ["stdp", "mstdp"])
def test_a_rules_mean_is_per_time_step_whatever_the_chunk_size(kind):
    """A rule appends once per time step (a chunk of k steps is one append standing for
    k): ``reduction(torch.mean)`` is the mean per step of the window, the same for every
    chunk size, also where whole chunks give a component nothing (zero rewards)."""
    from reference import dense_reference, modulated_reference

    T = 64
    results = {}
    for chunk_size in (1, 7, 64, None):
        rule, w, (pre, post, reward) = _stdp_window(chunk_size, torch.mean, T=T, kind=kind)
        rule.flush()
        results[chunk_size] = (rule.accumulator.counts, rule.step())
    pair = dict(a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0)
    if kind == "stdp":  # bounded: the mean of each component, then the bounds
        pos, neg = dense_reference(pre, post, pair)
        expected = (1 - w) * (pos / T) - w * (neg / T)
    else:  # signed rewards, unbounded: pos and neg must be divided by the same T
        expected = modulated_reference(pre, post, reward, **pair) / T
    for chunk_size, (counts, dw) in results.items():
        torch.testing.assert_close(dw, expected, rtol=1e-10, atol=1e-13, msg=str(chunk_size))
        assert counts == (T, T)  # one append per step


def test_a_rules_accumulator_refuses_reductions_that_need_each_step():
    """What cannot be exact is refused when it is set, and nothing changes: a max, min or
    custom reduction of per-step updates, from chunks summed by one product per term."""
    custom = lambda x, dim: x.sum(dim)  # noqa: E731
    rule, _, _ = _stdp_window(7, None, T=0)
    for fn in (torch.amax, torch.amin, torch.prod, custom):  # refused when set
        with pytest.raises(ValueError, match="torch.mean"):
            rule.accumulator.reduction(fn)
    rule, _, _ = _stdp_window(7, None, T=10)
    before = (rule.accumulator.pos.clone(), rule.accumulator.counts)
    for fn in (torch.amax, torch.amin, torch.prod, custom):
        with pytest.raises(ValueError, match="torch.mean"):
            rule.accumulator.reduction(fn)
    assert torch.equal(rule.accumulator.pos, before[0]) and rule.accumulator.counts == before[1]
    rule.accumulator.reduction(torch.mean)
    rule.accumulator.reduction(None)
    assert torch.equal(rule.accumulator.pos, before[0])


_REDUCTIONS = {"sum": torch.sum, "mean": torch.mean}
_UNDERIVABLE = (torch.amax, torch.amin, torch.prod)


@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["pos", "neg"]), st.integers(0, 10_000)),
            st.tuples(st.just("reduction"), st.sampled_from(["sum", "mean"])),
            st.tuples(st.just("underivable"), st.integers(0, len(_UNDERIVABLE) - 1)),
            st.tuples(st.just("clear"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_switching_sum_and_mean_mid_window_equals_reducing_the_appends_by_hand(ops):
    """inferno reduces the list of appends when read, so the reduction set last applies to
    the whole window; the running sum and count must give exactly the same."""
    acc = pl.Accumulator()
    appended: dict[str, list[torch.Tensor]] = {"pos": [], "neg": []}
    mode = "sum"

    def by_hand(xs: list[torch.Tensor]) -> torch.Tensor | None:
        if not xs:
            return None
        total = xs[0].clone()
        for x in xs[1:]:  # in order of appending
            total = total + x
        return total / len(xs) if mode == "mean" else total

    for op, arg in ops:
        if op in ("pos", "neg"):
            x = torch.randn(3, 2, generator=torch.Generator().manual_seed(arg), dtype=torch.float32)
            setattr(acc, op, x)
            appended[op].append(x)
        elif op == "reduction":
            acc.reduction(_REDUCTIONS[arg])
            mode = arg
        elif op == "underivable":
            if appended["pos"] or appended["neg"]:
                with pytest.raises(ValueError, match="clear"):
                    acc.reduction(_UNDERIVABLE[arg])
        else:
            acc.clear()
            appended = {"pos": [], "neg": []}
        for c in ("pos", "neg"):
            expected, got = by_hand(appended[c]), getattr(acc, c)
            assert (got is None) == (expected is None)
            if expected is not None:
                assert torch.equal(got, expected), (c, mode)
        assert acc.counts == (len(appended["pos"]), len(appended["neg"]))
    w = torch.zeros(3, 2)
    pos, neg = by_hand(appended["pos"]), by_hand(appended["neg"])
    if pos is not None or neg is not None:  # no bounds: Δw = pos - neg
        expected = -neg if pos is None else (pos if neg is None else pos - neg)
        assert torch.equal(acc.update(w), expected)


# ------------------------------------------------------------------------ bounds


def test_half_bounds_are_applied_to_their_component(device):
    w = rand(5, 4, seed=3, device=device) * 1.4 - 0.2
    pos, neg = rand(5, 4, seed=4, device=device), rand(5, 4, seed=5, device=device)
    acc = pl.Accumulator()
    acc.upperbound(bounds.upper_power, 1.0, power=0.5)
    acc.lowerbound(bounds.lower_sharp, 0.0)
    acc.pos, acc.neg = pos, neg
    expected = (1.0 - w).clamp_min(0) ** 0.5 * pos - (w > 0).double() * neg
    torch.testing.assert_close(acc.update(w), expected)
    torch.testing.assert_close(acc(w), w + expected)


def test_unbounded_update_is_pos_minus_neg():
    acc = pl.Accumulator()
    acc.pos, acc.neg = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])
    torch.testing.assert_close(acc.update(torch.zeros(2)), torch.tensor([2.0, -1.0]))
    only_neg = pl.Accumulator()
    only_neg.lowerbound(bounds.lower_multiplicative, 0.0)
    only_neg.neg = torch.tensor([1.0, 1.0])
    torch.testing.assert_close(
        only_neg.update(torch.tensor([0.5, 2.0])), torch.tensor([-0.5, -2.0])
    )


def test_fullbound_and_one_sided_fullbound():
    w = torch.tensor([0.0, 0.5, 1.5], dtype=torch.float64)
    acc = pl.Accumulator()
    acc.fullbound(bounds.multiplicative, 1.0, 0.0)
    acc.neg = torch.ones(3, dtype=torch.float64)  # pos missing: treated as zeros
    torch.testing.assert_close(acc.update(w), -w)
    acc.pos = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(
        acc.update(w), bounds.multiplicative(w, torch.ones_like(w), torch.ones_like(w), 1.0, 0.0)
    )
    one_sided = pl.Accumulator()
    one_sided.fullbound(bounds.sharp, 1.0, None)
    one_sided.pos = torch.ones(3, dtype=torch.float64)
    one_sided.neg = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(
        one_sided.update(w), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    )


def test_none_semantics_of_the_seed():
    w = torch.tensor([0.5])
    acc = pl.Accumulator()
    acc.pos, acc.neg = torch.ones(1), torch.ones(1)
    acc.fullbound(bounds.multiplicative, 1.0, 0.0)
    acc.upperbound(None)  # removes the full bound
    torch.testing.assert_close(acc.update(w), torch.tensor([0.0]))  # 1 - 1, unbounded
    acc.upperbound(bounds.upper_multiplicative, 1.0)
    acc.lowerbound(bounds.lower_multiplicative, 0.0)
    acc.fullbound(None)  # removes both halves
    torch.testing.assert_close(acc.update(w), torch.tensor([0.0]))
    acc.upperbound(bounds.upper_multiplicative, 1.0)
    acc.lowerbound(bounds.lower_multiplicative, 0.0)
    acc.lowerbound(None)  # removes only the lower half
    torch.testing.assert_close(acc.update(w), torch.tensor([0.5 - 1.0]))
    acc.fullbound(bounds.sharp, 1.0, 0.0)  # replaces the halves
    torch.testing.assert_close(acc.update(w), torch.tensor([0.0]))


# ---------------------------------------------------------------- state & copies


@pytest.mark.parametrize("fn", [torch.sum, torch.mean, torch.amax, torch.prod])
def test_state_dict_round_trips_mid_window(fn):
    xs = [rand(3, 2, seed=s) for s in range(6)]
    a = pl.Accumulator()
    a.reduction(fn)
    a.pos, a.pos, a.neg = xs[0], xs[1], xs[2]
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    b = pl.Accumulator()
    b.reduction(fn)
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    assert b.counts == a.counts == (2, 1)
    for acc in (a, b):  # the window continues identically
        acc.pos, acc.neg, acc.neg = xs[3], xs[4], xs[5]
    torch.testing.assert_close(b.pos, a.pos)
    torch.testing.assert_close(b.neg, a.neg)


def test_loading_an_empty_window_clears_and_a_mismatch_changes_nothing():
    empty = pl.Accumulator().state_dict()
    a = pl.Accumulator()
    a.pos = torch.ones(2)
    a.load_state_dict(empty)
    assert a.pos is None and a.counts == (0, 0)
    a.pos = torch.ones(2)
    meaned = pl.Accumulator()
    meaned.reduction(torch.mean)
    meaned.neg = torch.ones(2)
    with pytest.raises(ValueError, match="reduction"):
        a.load_state_dict(meaned.state_dict())
    assert a.counts == (1, 0) and a.neg is None


def test_deepcopy_and_pickle_keep_bounds_and_window():
    a = pl.Accumulator()
    a.upperbound(bounds.upper_power, 1.0, power=2.0)
    a.lowerbound(bounds.lower_multiplicative, 0.0)
    a.pos, a.neg = torch.ones(2), torch.full((2,), 0.5)
    w = torch.tensor([0.2, 0.9])
    for b in (copy.deepcopy(a), pickle.loads(pickle.dumps(a))):
        torch.testing.assert_close(b.update(w), a.update(w))
        b.pos = torch.ones(2)
        assert a.counts == (1, 1)  # independent


def test_repr_names_reduction_and_bounds():
    a = pl.Accumulator()
    a.upperbound(bounds.upper_sharp, 1.0)
    assert "upper_sharp" in repr(a) and "reduction=sum" in repr(a)


def test_update_never_returns_internal_state():
    acc = pl.Accumulator()
    acc.pos = torch.ones(2)
    acc.update(torch.zeros(2)).add_(5.0)  # no bounds: the update is pos itself
    torch.testing.assert_close(acc.pos, torch.ones(2))
    identity = pl.Accumulator()
    identity.fullbound(lambda w, p, n, mx, mn: p, 1.0, 0.0)  # a bound that returns its input
    identity.pos = torch.ones(2)
    identity.update(torch.zeros(2)).add_(5.0)
    torch.testing.assert_close(identity.pos, torch.ones(2))


def test_huge_finite_appends_are_accepted():
    acc = pl.Accumulator()
    acc.pos = torch.full((3,), 3e38)  # the sum overflows, the values are finite
    acc.pos = torch.full((3,), 3e38)
    assert acc.counts == (2, 0)


def test_merged_adds_make_one_append():
    """A rule's several products of one chunk (``add_(..., merge=True)``) count as one
    append and sum like the whole tensor, for sum, mean and custom reductions; a max/min
    refuses to merge, and shapes are checked."""
    g = torch.Generator().manual_seed(0)
    parts = [torch.rand(5, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    custom = lambda x, dim: x.sum(dim)  # noqa: E731
    for reduction in (torch.sum, torch.mean, custom):
        whole, merged = pl.Accumulator(), pl.Accumulator()
        whole.reduction(reduction)
        merged.reduction(reduction)
        whole.pos = parts[0] + parts[1]
        whole.pos = parts[2] + parts[3]
        for i, p in enumerate(parts):
            merged.add_("pos", p.clone(), merge=i % 2 == 1)
        merged.add_("neg", parts[0].clone(), merge=True)  # nothing to merge into: an append
        assert merged.counts == (2, 1) and merged.merges
        torch.testing.assert_close(merged.pos, whole.pos, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(merged.neg, parts[0], rtol=0, atol=0)
    peak = pl.Accumulator()
    peak.reduction(torch.amax)
    peak.add_("pos", parts[0].clone())
    assert not peak.merges
    with pytest.raises(ValueError, match="merge=True"):
        peak.add_("pos", parts[1].clone(), merge=True)
    with pytest.raises(ValueError, match="shape"):
        merged.add_("pos", torch.ones(4, 3, dtype=torch.float64), merge=True)
    with pytest.raises(ValueError, match="NaN"):
        merged.add_("pos", torch.full((5, 3), float("nan"), dtype=torch.float64), merge=True)
    with pytest.raises(ValueError, match="'pos' or 'neg'"):
        merged.add_("both", parts[0])


@pytest.mark.parametrize("reduction", [torch.sum, torch.mean])
@pytest.mark.parametrize("parts", ["both", "pos", "neg"])
@pytest.mark.parametrize("bounded", [False, True])
def test_take_update_equals_update_then_clear(reduction, parts, bounded):
    """A rule's step() takes the update and clears in one go (in place where no bound
    needs the components): the same values as update(), an empty window after it, and
    the next window accumulates from zero."""
    g = torch.Generator().manual_seed(1)
    w = torch.rand(4, 3, generator=g, dtype=torch.float64)
    appends = [torch.rand(4, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    acc = pl.Accumulator()
    acc.reduction(reduction)
    if bounded:
        acc.upperbound(bounds.upper_multiplicative, 1.0)
        acc.lowerbound(bounds.lower_multiplicative, 0.0)
    for k in range(2):
        if parts in ("both", "pos"):
            acc.pos = appends[k]
        if parts in ("both", "neg"):
            acc.neg = appends[k + 2]
    expected = acc.update(w)
    got = acc._take_update(w)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert acc.counts == (0, 0) and acc.pos is None and acc.neg is None
    acc.pos = appends[0]
    torch.testing.assert_close(acc.pos, appends[0], rtol=0, atol=0)
    assert pl.Accumulator()._take_update(w) is None
