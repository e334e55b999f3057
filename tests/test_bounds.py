"""Every bound against its equation, written independently as a loop over scalars."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from plasticity import bounds

# --------------------------------------------------------------- scalar references


def ref_factor(kind: str, dist: float, mu: float, rng: float) -> float:
    """Weight-dependence factor from the distance to the limit (negative: outside), as
    documented: an infinite distance (infinite limit) gives 1, and μ = 0 gives
    [dist > 0] (0⁰ counts as 0: no push at or beyond the limit)."""
    d = max(dist, 0.0)
    if dist == math.inf:
        return 1.0
    if kind in ("power", "scaled_power") and mu == 0:
        return 1.0 if dist > 0 else 0.0
    if kind == "power":
        return d**mu
    if kind == "scaled_power":
        return (d / rng) ** mu
    if kind == "multiplicative":
        return d
    if kind == "sharp":
        return 1.0 if dist > 0 else 0.0
    raise AssertionError(kind)


def ref_upper(
    kind: str, w: float, u: float, lim: float, mu: float = 1.0, rng: float = 1.0
) -> float:
    return ref_factor(kind, lim - w, mu, rng) * u


def ref_lower(
    kind: str, w: float, u: float, lim: float, mu: float = 1.0, rng: float = 1.0
) -> float:
    return ref_factor(kind, w - lim, mu, rng) * u


def elementwise(fn, *tensors) -> torch.Tensor:
    flat = [t.flatten().tolist() for t in tensors]
    return torch.tensor([fn(*vals) for vals in zip(*flat, strict=True)], dtype=torch.float64).view(
        tensors[0].shape
    )


KINDS = ["power", "scaled_power", "multiplicative", "sharp"]


def half_kwargs(kind: str, mu: float, rng: float) -> dict:
    if kind == "power":
        return {"power": mu}
    if kind == "scaled_power":
        return {"power": mu, "range": rng}
    return {}


HALF_CASES = [(k, mu) for k in ("power", "scaled_power") for mu in (0.0, 0.5, 1.0, 2.3)] + [
    ("multiplicative", 1.0),
    ("sharp", 1.0),
]


@pytest.mark.parametrize("kind, mu", HALF_CASES)
def test_half_bounds_match_equation(kind, mu, device):
    g = torch.Generator().manual_seed(1)
    w = (torch.rand(7, 5, generator=g, dtype=torch.float64) * 3 - 1).to(
        device
    )  # [-1, 2]: outside [0, 1] too
    w[0, 0], w[0, 1] = 1.0, 0.0  # exactly at the limits
    upd = torch.rand(7, 5, generator=g, dtype=torch.float64).to(device)
    kw = half_kwargs(kind, mu, 1.5)
    up = getattr(bounds, f"upper_{kind}")(w, upd, 1.0, **kw)
    lo = getattr(bounds, f"lower_{kind}")(w, upd, 0.0, **kw)
    exp_up = elementwise(lambda a, b: ref_upper(kind, a, b, 1.0, mu, 1.5), w.cpu(), upd.cpu())
    exp_lo = elementwise(lambda a, b: ref_lower(kind, a, b, 0.0, mu, 1.5), w.cpu(), upd.cpu())
    assert up.dtype == torch.float64 and up.device == w.device
    torch.testing.assert_close(up.cpu(), exp_up, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lo.cpu(), exp_lo, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("limits", [(1.0, 0.0), (1.0, None), (None, 0.0)])
def test_full_bounds_match_equation(kind, limits, device):
    mx, mn = limits
    g = torch.Generator().manual_seed(2)
    w = (torch.rand(4, 6, generator=g, dtype=torch.float64) * 3 - 1).to(device)
    pos = torch.rand(4, 6, generator=g, dtype=torch.float64).to(device)
    neg = torch.rand(4, 6, generator=g, dtype=torch.float64).to(device)
    mu_up, mu_lo, rng = 0.7, 1.3, 2.0
    if kind == "power":
        kw = {"upper_power": mu_up, "lower_power": mu_lo}
    elif kind == "scaled_power":
        kw = {"upper_power": mu_up, "lower_power": mu_lo, "range": rng}
    else:
        kw, mu_up, mu_lo = {}, 1.0, 1.0
    out = getattr(bounds, kind)(w, pos, neg, mx, mn, **kw)

    def ref(a, p, n):
        up = p if mx is None else ref_upper(kind, a, p, mx, mu_up, rng)
        lo = n if mn is None else ref_lower(kind, a, n, mn, mu_lo, rng)
        return up - lo

    torch.testing.assert_close(
        out.cpu(), elementwise(ref, w.cpu(), pos.cpu(), neg.cpu()), rtol=1e-12, atol=1e-12
    )


def test_scaled_power_default_range_is_max_minus_min():
    w = torch.tensor([0.5, 1.0, 2.5], dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    out = bounds.scaled_power(w, one, one, 3.0, 0.5, upper_power=2.0, lower_power=0.5)
    exp = torch.tensor(
        [((3 - a) / 2.5) ** 2 - (max(a - 0.5, 0) / 2.5) ** 0.5 for a in w.tolist()],
        dtype=torch.float64,
    )
    torch.testing.assert_close(out, exp)


def test_tensor_limits_broadcast():
    w = torch.tensor([[0.0, 0.5], [0.5, 1.0]])
    limit = torch.tensor([[1.0], [2.0]])  # per post-neuron upper limit
    out = bounds.upper_multiplicative(w, torch.ones(2, 2), limit)
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.5], [1.5, 1.0]]))


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: bounds.upper_power(torch.zeros(1), torch.ones(1), 1.0, power=-1.0), ValueError),
        (
            lambda: bounds.lower_power(torch.zeros(1), torch.ones(1), 0.0, power=float("nan")),
            ValueError,
        ),
        (lambda: bounds.upper_power(torch.zeros(1), torch.ones(1), 1.0, power="2"), TypeError),
        (
            lambda: bounds.upper_scaled_power(torch.zeros(1), torch.ones(1), 1.0, range=0.0),
            ValueError,
        ),
        (
            lambda: bounds.lower_scaled_power(torch.zeros(1), torch.ones(1), 0.0, range=-2.0),
            ValueError,
        ),
        (
            lambda: bounds.scaled_power(torch.zeros(1), torch.ones(1), torch.ones(1), 1.0, None),
            ValueError,
        ),
        (
            lambda: bounds.power(
                torch.zeros(1), torch.ones(1), torch.ones(1), 1.0, 0.0, upper_power=-0.5
            ),
            ValueError,
        ),
        (
            lambda: bounds.upper_multiplicative(torch.zeros(1), torch.ones(1), 1.0, power=2.0),
            TypeError,
        ),
    ],
)
def test_bad_keywords_raise(call, exc):
    with pytest.raises(exc):
        call()


# --------------------------------------------------------------------- properties

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
magnitude = st.floats(0.0, 1e3, allow_nan=False, allow_infinity=False)
exponent = st.floats(0.0, 4.0, allow_nan=False)


@given(
    w=st.lists(finite, min_size=1, max_size=16),
    u=magnitude,
    lo=finite,
    width=st.floats(0.0, 100.0),
    mu=exponent,
)
def test_half_bounds_finite_nonnegative_and_zero_outside(w, u, lo, width, mu):
    hi = lo + width
    wt = torch.tensor(w, dtype=torch.float64)
    ut = torch.full_like(wt, u)
    for kind in KINDS:
        kw_up = half_kwargs(kind, mu, max(width, 1e-3))
        up = getattr(bounds, f"upper_{kind}")(wt, ut, hi, **kw_up)
        lo_ = getattr(bounds, f"lower_{kind}")(wt, ut, lo, **kw_up)
        for out in (up, lo_):
            assert torch.isfinite(out).all(), (kind, out)
            assert (out >= 0).all(), (kind, out)  # the sign of the component never flips
        assert (up[wt >= hi] == 0).all()  # no further potentiation at or above the range
        assert (lo_[wt <= lo] == 0).all()  # no further depression at or below it


@given(
    w=st.lists(finite, min_size=1, max_size=16),
    p=magnitude,
    n=magnitude,
    lo=finite,
    width=st.floats(0.01, 100.0),
    mu_up=st.floats(0.01, 4.0),
    mu_lo=st.floats(0.01, 4.0),
)
def test_full_bounds_never_push_a_weight_further_out(w, p, n, lo, width, mu_up, mu_lo):
    hi = lo + width
    wt = torch.tensor(w, dtype=torch.float64)
    pt, nt = torch.full_like(wt, p), torch.full_like(wt, n)
    outs = [
        bounds.power(wt, pt, nt, hi, lo, upper_power=mu_up, lower_power=mu_lo),
        bounds.scaled_power(wt, pt, nt, hi, lo, upper_power=mu_up, lower_power=mu_lo),
        bounds.multiplicative(wt, pt, nt, hi, lo),
        bounds.sharp(wt, pt, nt, hi, lo),
    ]
    for out in outs:
        assert torch.isfinite(out).all()
        assert (out[wt >= hi] <= 0).all()
        assert (out[wt <= lo] >= 0).all()
    inside = (wt >= lo) & (wt <= hi)
    scaled = outs[1]  # normalized by the range: each factor lies in [0, 1] inside the range
    assert (scaled[inside] <= pt[inside] * (1 + 1e-12)).all()
    assert (scaled[inside] >= -nt[inside] * (1 + 1e-12)).all()


# ------------------------------------------------------------------------- bound kinds

BOUND_KINDS = {
    "upper": ["upper_power", "upper_scaled_power", "upper_multiplicative", "upper_sharp"],
    "lower": ["lower_power", "lower_scaled_power", "lower_multiplicative", "lower_sharp"],
    "full": ["power", "scaled_power", "multiplicative", "sharp"],
}


def _configure(acc, setter: str, fn) -> None:
    if setter == "fullbound":
        acc.fullbound(fn, 1.0, 0.0)
    else:
        getattr(acc, setter)(fn, 1.0 if setter == "upperbound" else 0.0)


@pytest.mark.parametrize("kind, name", [(k, n) for k, names in BOUND_KINDS.items() for n in names])
@pytest.mark.parametrize("setter", ["upperbound", "lowerbound", "fullbound"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_library_bounds_carry_their_kind_and_the_wrong_setter_is_a_type_error(
    kind, name, setter, wrapped
):
    import functools

    from plasticity import Accumulator

    fn = getattr(bounds, name)
    if wrapped:  # a partial of a library bound keeps its kind
        fn = functools.partial(fn)
    acc = Accumulator()
    acc.upperbound(bounds.upper_sharp, 0.5)  # what is configured before the bad call
    acc.lowerbound(bounds.lower_sharp, 0.25)
    acc.pos, acc.neg = torch.ones(3), torch.ones(3)
    w = torch.tensor([0.0, 0.4, 0.9])
    before = acc.update(w)
    if setter == f"{kind}bound":
        _configure(acc, setter, fn)
        assert bounds.bound_kind(fn) == kind == getattr(bounds, name).bound_kind
        return
    with pytest.raises(TypeError) as info:
        _configure(acc, setter, fn)
    article = "an" if kind == "upper" else "a"
    assert str(info.value) == (
        f"{setter}: {name} is {article} {kind} bound: use accumulator.{kind}bound(...)"
    )
    assert torch.equal(acc.update(w), before)  # nothing changed


@pytest.mark.parametrize("setter", ["upperbound", "lowerbound"])
def test_a_users_own_bound_has_no_kind_and_is_accepted(setter):
    from plasticity import Accumulator

    def sqrt_bound(param, update, limit, /):
        return (limit - param).abs().sqrt() * update

    def both(param, pos, neg, max, min, /):
        return (max - param) * pos - (param - min) * neg

    assert bounds.bound_kind(sqrt_bound) is None
    acc = Accumulator()
    _configure(acc, setter, sqrt_bound)
    acc.fullbound(both, 1.0, 0.0)
    acc.pos = torch.ones(2)
    torch.testing.assert_close(acc.update(torch.tensor([0.25, 0.5])), torch.tensor([0.75, 0.5]))


# ------------------------------------------------------------ infinite limits, μ = 0

INF = math.inf


@pytest.mark.parametrize("kind, mu", HALF_CASES)
@pytest.mark.parametrize("tensor", [False, True])
def test_an_infinite_limit_leaves_its_side_unbounded(kind, mu, tensor, device):
    """``max = inf`` / ``min = -inf`` (a number, or elements of a tensor limit next to
    finite ones) give the factor 1: that side is unbounded, never ``inf · 0 = NaN``."""
    g = torch.Generator().manual_seed(4)
    w = (torch.rand(3, 4, generator=g, dtype=torch.float64) * 3 - 1).to(device)
    upd = torch.rand(3, 4, generator=g, dtype=torch.float64).to(device)
    upd[0] = 0.0  # zero components: inf * 0 was NaN
    kw = half_kwargs(kind, mu, 1.5)
    if tensor:  # row 1 has finite limits, the others infinite ones
        hi = torch.tensor([[INF], [1.0], [INF]], dtype=torch.float64, device=device)
        lo = torch.tensor([[-INF], [0.0], [-INF]], dtype=torch.float64, device=device)
    else:
        hi, lo = INF, -INF
    up = getattr(bounds, f"upper_{kind}")(w, upd, hi, **kw)
    down = getattr(bounds, f"lower_{kind}")(w, upd, lo, **kw)
    his = torch.as_tensor(hi, dtype=torch.float64).expand(3, 4).cpu()
    los = torch.as_tensor(lo, dtype=torch.float64).expand(3, 4).cpu()
    exp_up = elementwise(lambda a, b, m: ref_upper(kind, a, b, m, mu, 1.5), w.cpu(), upd.cpu(), his)
    exp_lo = elementwise(lambda a, b, m: ref_lower(kind, a, b, m, mu, 1.5), w.cpu(), upd.cpu(), los)
    assert torch.isfinite(up).all() and torch.isfinite(down).all()
    torch.testing.assert_close(up.cpu(), exp_up, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(down.cpu(), exp_lo, rtol=1e-12, atol=1e-12)
    if not tensor:  # unbounded: the component itself
        torch.testing.assert_close(up, upd)
        torch.testing.assert_close(down, upd)
    # the full bounds: an infinite limit is as a None limit
    name = {"power": "power", "scaled_power": "scaled_power"}.get(kind, kind)
    fkw = {"upper_power": mu, "lower_power": mu} if kind in ("power", "scaled_power") else {}
    if kind == "scaled_power":
        fkw["range"] = 1.5
    full = getattr(bounds, name)
    torch.testing.assert_close(full(w, upd, upd, hi, lo, **fkw).cpu(), exp_up - exp_lo)
    torch.testing.assert_close(full(w, upd, upd, hi, None, **fkw).cpu(), exp_up - upd.cpu())


def test_scaled_power_with_an_infinite_limit_needs_a_range():
    w, one = torch.zeros(2), torch.ones(2)
    with pytest.raises(ValueError, match="range="):
        bounds.scaled_power(w, one, one, INF, 0.0)
    torch.testing.assert_close(bounds.scaled_power(w, one, one, INF, -1.0, range=2.0),
                               torch.full((2,), 0.5))  # fmt: skip


@pytest.mark.parametrize("kind", ["power", "scaled_power"])
def test_power_zero_never_pushes_a_weight_at_or_outside_its_limit_further_out(kind):
    """μ = 0 is additive inside the range and stops at the limit, as the sharp bound:
    0⁰ counts as 0, a weight at or beyond its limit is not pushed further out."""
    w = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    one = torch.ones(5, dtype=torch.float64)
    kw = {"power": 0.0} | ({"range": 1.0} if kind == "scaled_power" else {})
    up = getattr(bounds, f"upper_{kind}")(w, one, 1.0, **kw)
    down = getattr(bounds, f"lower_{kind}")(w, one, 0.0, **kw)
    assert torch.equal(up, bounds.upper_sharp(w, one, 1.0))
    assert torch.equal(down, bounds.lower_sharp(w, one, 0.0))
    assert up.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0] and down.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    full = getattr(bounds, kind)(w, one, one, 1.0, 0.0, upper_power=0.0, lower_power=0.0)
    assert (full[w >= 1.0] <= 0).all() and (full[w <= 0.0] >= 0).all()


@pytest.mark.parametrize("setter, limits", [
    ("upperbound", (INF,)), ("lowerbound", (-INF,)), ("fullbound", (INF, -INF)),
    ("fullbound", (INF, 0.0)), ("fullbound", (1.0, -INF)),
])  # fmt: skip
def test_a_rule_with_an_infinite_limit_writes_a_finite_gradient(setter, limits):
    """``upperbound(upper_multiplicative, inf)`` wrote NaN into ``weight.grad``."""
    import snntorch as snn
    from reference import dense_reference

    import plasticity as pl

    g = torch.Generator().manual_seed(6)
    pre = (torch.rand(12, 2, 5, generator=g) < 0.3).double()
    post = (torch.rand(12, 2, 3, generator=g) < 0.3).double()
    fc = torch.nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        fc.weight.uniform_(0.0, 1.0, generator=g)
    w = fc.weight.detach().clone()
    pair = dict(a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0)
    rule = pl.STDP(fc, snn.Leaky(beta=0.5), **pair)
    fn = {"upperbound": bounds.upper_multiplicative, "lowerbound": bounds.lower_multiplicative,
          "fullbound": bounds.multiplicative}[setter]  # fmt: skip
    getattr(rule.accumulator, setter)(fn, *limits)
    rule.observe(pre, post)
    rule.step()
    pos, neg = dense_reference(pre, post, pair)
    mx, mn = (limits[0], None) if setter == "upperbound" else (
        (None, limits[0]) if setter == "lowerbound" else limits)  # fmt: skip
    f_pos = 1.0 if mx in (None, INF) else (mx - w).clamp_min(0)
    f_neg = 1.0 if mn in (None, -INF) else (w - mn).clamp_min(0)
    assert torch.isfinite(fc.weight.grad).all()
    torch.testing.assert_close(-fc.weight.grad, f_pos * pos - f_neg * neg)


@pytest.mark.parametrize("call", [
    lambda acc: acc.upperbound(bounds.upper_multiplicative, -INF),
    lambda acc: acc.lowerbound(bounds.lower_multiplicative, INF),
    lambda acc: acc.fullbound(bounds.multiplicative, -INF, -INF),
    lambda acc: acc.upperbound(bounds.upper_sharp, torch.tensor([1.0, -INF])),
])  # fmt: skip
def test_an_infinity_of_the_wrong_sign_is_refused(call):
    from plasticity import Accumulator

    acc = Accumulator()
    acc.upperbound(bounds.upper_sharp, 1.0)
    acc.pos = torch.ones(2)
    with pytest.raises(ValueError, match="inf"):
        call(acc)
    assert torch.equal(acc.update(torch.tensor([0.5, 2.0])), torch.tensor([1.0, 0.0]))
