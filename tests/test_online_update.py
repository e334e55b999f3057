"""The update a rule's ``step()`` takes from its accumulator (``Accumulator._take_update``)
with bounds: the running sums are handed to the bound functions without a copy and their
results combined in place, so it must equal ``update()`` then ``clear()`` bit for bit, in
every reduction and with bounds that return their argument; and a soft lower bound at 0
(the usual one) costs one weight-sized op less. Behaviour is checked against the
equations written out here, not against the engine; no timings."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_online_step import _CountOps, _Replay

import plasticity as pl
from plasticity import bounds


def _identity_upper(param, update, limit, /):  # a user's bound that returns its argument
    return update


BOUNDS = {
    "none": lambda acc: None,
    "soft": lambda acc: (acc.upperbound(bounds.upper_multiplicative, 1.0),
                         acc.lowerbound(bounds.lower_multiplicative, 0.0)),
    "upper only": lambda acc: acc.upperbound(bounds.upper_power, 1.0, power=0.5),
    "lower only": lambda acc: acc.lowerbound(bounds.lower_sharp, 0.2),
    "returns its argument": lambda acc: (acc.upperbound(_identity_upper, 1.0),
                                         acc.lowerbound(bounds.lower_multiplicative, 0.0)),
    "full": lambda acc: acc.fullbound(bounds.multiplicative, 1.0, 0.0),
    "tensor limit": lambda acc: acc.lowerbound(bounds.lower_multiplicative,
                                               torch.full((3, 4), 0.1, dtype=torch.float64)),
}  # fmt: skip


def _window(acc: pl.Accumulator, pos_steps: int, neg_steps: int) -> None:
    g = torch.Generator().manual_seed(pos_steps * 10 + neg_steps)
    for _ in range(pos_steps):
        acc.add_("pos", torch.rand(3, 4, generator=g, dtype=torch.float64), finite=True)
    for _ in range(neg_steps):
        acc.add_("neg", torch.rand(3, 4, generator=g, dtype=torch.float64), finite=True)


@pytest.mark.parametrize("bound", list(BOUNDS))
@pytest.mark.parametrize("reduction", [None, torch.mean])
@pytest.mark.parametrize("steps", [(2, 3), (1, 0), (0, 2)])
def test_take_update_is_update_then_clear_bit_for_bit(bound, reduction, steps):
    w = torch.tensor([[-0.5, -0.0, 0.0, 0.1], [0.5, 0.9, 1.0, 1.5], [0.3, 0.2, 0.7, 2.0]],
                     dtype=torch.float64)  # fmt: skip
    acc = pl.Accumulator(shape=(3, 4))
    acc.reduction(reduction)
    BOUNDS[bound](acc)
    _window(acc, *steps)
    ref = copy.deepcopy(acc)
    expected = ref.update(w)
    got = acc._take_update(w)
    assert acc.counts == (0, 0) and acc.pos is None and acc.neg is None
    if expected is None:
        assert got is None
        return
    assert got.dtype == expected.dtype
    if bound == "none":  # (in place: (pos - neg/n_neg·n_pos)/n_pos, rounded otherwise)
        torch.testing.assert_close(got, expected, rtol=1e-15, atol=1e-16)
    else:  # the bounds' own ops on the same components
        assert torch.equal(got, expected)
    assert torch.equal(w[0], torch.tensor([-0.5, -0.0, 0.0, 0.1], dtype=torch.float64))


def test_take_update_leaves_the_window_when_a_bound_raises():
    calls = []

    def broken(param, update, limit, /):
        if calls:
            raise RuntimeError("broken bound")
        calls.append(1)  # (the setter may try it once)
        return update

    acc = pl.Accumulator(shape=(3, 4))
    acc.reduction(torch.mean)
    acc.upperbound(broken, 1.0)
    _window(acc, 2, 2)
    pos, neg, counts = acc.pos, acc.neg, acc.counts
    calls.append(1)
    with pytest.raises(RuntimeError, match="broken bound"):
        acc._take_update(torch.zeros(3, 4, dtype=torch.float64))
    assert acc.counts == counts and torch.equal(acc.pos, pos) and torch.equal(acc.neg, neg)


def test_soft_bounds_online_match_the_written_out_update():
    """Soft-bounded STDP with ``step()`` every step against the update written out:
    Δw = (1 - w)·pos - (w - 0)·neg per step, pos/neg from float64 traces."""
    torch.manual_seed(0)
    fc = torch.nn.Linear(6, 3, bias=False).double()
    torch.nn.init.uniform_(fc.weight, 0.2, 0.8)
    steps, batch = 30, 2
    pre = (torch.rand(steps, batch, 6) < 0.3).double()
    post = (torch.rand(steps, batch, 3) < 0.3).double()
    neuron = _Replay(post)
    rule = pl.STDP(fc, neuron, a_plus=0.1, a_minus=0.12, tau_plus=4.0, tau_minus=5.0,
                   coincident="both")  # fmt: skip
    rule.accumulator.upperbound(bounds.upper_multiplicative, 1.0)
    rule.accumulator.lowerbound(bounds.lower_multiplicative, 0.0)
    w = fc.weight.detach().clone()
    xt, yt = torch.zeros(batch, 6, dtype=torch.float64), torch.zeros(batch, 3, dtype=torch.float64)
    dp, dm = math.exp(-1 / 4.0), math.exp(-1 / 5.0)
    with torch.no_grad():
        for t in range(steps):
            neuron(fc(pre[t]))
            rule.step()
            fc.weight -= fc.weight.grad
            fc.weight.grad = None
            xt = dp * xt + pre[t]
            yt = dm * yt + post[t]
            pos = 0.1 * sum(torch.outer(post[t, b], xt[b]) for b in range(batch)) / batch
            neg = 0.12 * sum(torch.outer(yt[b], pre[t, b]) for b in range(batch)) / batch
            w = w + (1 - w).clamp_min(0) * pos - w.clamp_min(0) * neg
    torch.testing.assert_close(fc.weight.detach(), w, rtol=1e-12, atol=1e-14)


def test_a_soft_lower_bound_at_zero_is_two_ops():
    """``lower_multiplicative`` (and every soft lower bound) at a limit of +0: the weight
    clamped and the product, bit for bit ``max(w - 0, 0)·neg`` (it was three ops: the
    difference ``w - 0`` first)."""
    w = torch.tensor([-1.0, -0.0, 0.0, 0.25, float("inf"), float("nan"), -float("inf")])
    neg = torch.full_like(w, 2.0)
    counter, given = _CountOps(), neg.clone()
    with counter:
        out = bounds.lower_multiplicative(w, given, 0.0)
    assert len(counter.ops) == 2, counter.ops
    expected = (w - 0.0).clamp_min(0) * neg
    assert torch.equal(out.view(torch.int32), expected.view(torch.int32))
    for limit in (-0.0, 0.5, -1.0):  # (others: the difference, as before)
        out = bounds.lower_multiplicative(w, neg.clone(), limit)
        expected = (w - limit).clamp_min(0) * neg
        assert torch.equal(out.view(torch.int32), expected.view(torch.int32)), limit
    ints = torch.tensor([-2, 0, 3])
    assert torch.equal(bounds.lower_multiplicative(ints, torch.ones(3), 0.0),
                       torch.tensor([0.0, 0.0, 3.0]))  # fmt: skip
