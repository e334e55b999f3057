"""The one-step window's fast path (online learning: ``rule.step()`` after every time
step). A chunk of one step needs no tables, no scans and no kernel choice: every signal is
one op on the step's rows (a trace is ``d·x + s``), every product one outer product (or
conv weight-gradient) over the batch. :func:`run_step` evaluates a plan that way, with
the equations of :func:`~plasticity.engine.run.run_plan` on a chunk of one step (the
tests compare the two on every built-in and on user rules); plans with per-sample
products go through ``run_plan``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..functional.correlate import Kernels
from ..language import Signal
from .plan import Plan, _roots
from .run import Deliver, signed_parts

__all__ = ["steppable", "run_step"]


def steppable(plan: Plan) -> bool:
    """Whether :func:`run_step` evaluates ``plan`` (every plan without per-sample
    products: their eligibility traces are ``[B, *weight]``)."""
    out = plan.__dict__.get("_steppable")  # (computed once per plan: online learning
    if out is None:  # asks at every step)
        out = plan.__dict__["_steppable"] = not any(p.per_sample for p in plan.products)
    return out


class _Step:
    """The signals of one step: ``inputs`` (``pre``/``post``/``voltage`` ``[B, *side]``,
    ``mod`` ``[B]``), the filters carried in ``state``; ``new`` collects their values
    after the step. Each kind of signal computes itself (:meth:`Signal.step
    <plasticity.language.signals.Signal.step>`) from this evaluator."""

    def __init__(self, plan: Plan, rows: dict[str, Tensor], state: dict[Any, Tensor]) -> None:
        self.plan, self.inputs, self.state = plan, rows, state
        self.ids = _keys(plan)
        self.memo: dict[Any, Any] = {}  # by key: equal nodes of the plan share one
        self.new: dict[Signal, Tensor] = {}

    def decay(self, tau: float) -> float:
        """The decay factor of one step for ``tau``."""
        return self.plan.decay_of(tau)

    def carried(self, f: Signal, x: Tensor) -> Tensor:
        """A filter's value before the step (as :meth:`Chunk.carried`), shaped like its
        input ``x``."""
        c = self.state.get(f)
        if c is not None:
            return c
        start = f.start(lambda: x)  # type: ignore[attr-defined]
        return start if isinstance(start, Tensor) else torch.full_like(x, start)

    def value(self, s: Signal) -> Tensor | float:
        key = self.ids.get(id(s), s)  # (an int: no node hashed per step)
        memo = self.memo
        out = memo.get(key)
        if out is None:
            out = memo[key] = s.step(self)
        return out

    def input(self, f: Signal) -> Tensor:
        """A filter's input on this step (a number as ``[B]`` rows)."""
        x = self.value(f.x)  # type: ignore[attr-defined]
        if isinstance(x, Tensor):
            return x
        like = self.inputs["pre"]
        return torch.full(like.shape[:1], x, dtype=like.dtype, device=like.device)


def _keys(plan: Plan) -> dict[int, int]:
    """The one-step memo's key of every node the plan reads, by ``id`` (the plan holds
    them): one int per distinct signal, shared by equal nodes (computed once per plan)."""
    out = plan.__dict__.get("_step_keys")
    if out is None:
        seen: dict[Signal, int] = {}
        out = plan.__dict__["_step_keys"] = {
            id(x): seen.setdefault(x, len(seen))
            for root in (*_roots(plan), *plan.filters) for x in root.walk()
        }  # fmt: skip
    return out


def _rows_of(m: Any, like: Tensor) -> Any:
    """A ``[B]`` row factor viewed to broadcast against ``like`` (``[B, *side]``)."""
    if isinstance(m, Tensor) and m.ndim < like.ndim:
        return m.view(*m.shape, *([1] * (like.ndim - m.ndim)))
    return m


def _compiled(plan: Plan) -> list[tuple]:
    """Per product, what :func:`run_step` reads of it (computed once per plan):
    ``(product, signed, to eligibility, weight factor, (signal, non-negative) of the
    post, pre and row factors)``."""
    out = plan.__dict__.get("_step_products")
    if out is None:
        out = plan.__dict__["_step_products"] = [
            (p, p.target != "dw", p.target in plan.eligibilities, p.weight,
             tuple((s, s is None or s.nonnegative(plan.binary)) for s in (p.post, p.pre, p.mod)))
            for p in plan.products
        ]  # fmt: skip
    return out


def run_step(plan: Plan, rows: dict[str, Tensor], state: dict[Any, Tensor], kernels: Kernels,
             deliver: Deliver, scale: float = 1.0) -> dict[Any, Tensor]:  # fmt: skip
    """Evaluates ``plan`` on one step (``rows``: ``pre``, ``post`` ``[B, *side]``,
    ``voltage`` ``[B, *out]`` and ``mod`` ``[B]`` where read) and returns the state after
    it; results go to ``deliver`` as for :func:`~plasticity.engine.run.run_plan`."""
    step = _Step(plan, rows, state)
    if plan.carries:
        _read_out(plan, step, deliver, scale)
    elig: dict[str, Tensor] = {}
    for key, e in plan.eligibilities.items():  # decayed (in place: the caller's state)
        e0 = state.get(key)
        if e0 is not None:
            elig[key] = e0.mul_(plan.decay_of(e.tau))
    for compiled in _compiled(plan):
        _run_product(compiled, step, kernels, deliver, elig, scale)
    out = dict(state)
    new = step.new
    if len(new) < len(plan.filters):  # a filter no product read still advances
        for f in plan.filters.values():
            step.value(f)
    out.update(new)
    if elig:
        out.update(elig)
    return out


def _read_out(plan: Plan, step: _Step, deliver: Deliver, scale: float) -> None:
    """The read-out of the eligibility traces carried in: ``d·m·e0``, split by sign."""
    for coef, mod, e in plan.carries:
        e0 = step.state.get(e)
        if e0 is None:
            continue
        m = step.value(mod) if mod is not None else 1.0
        k = (float(m.reshape(-1)[0]) if isinstance(m, Tensor) else m) * plan.decay_of(e.tau)
        k *= coef * scale
        deliver("pos" if k > 0 else "neg", e0.clamp_min(0), abs(k))
        deliver("neg" if k > 0 else "pos", e0.clamp_max(0), -abs(k))


def _parts(x: Tensor | float | None, nonnegative: bool) -> Any:
    """``[(sign, part)]`` of a factor's value (:func:`signed_parts`; a non-negative
    tensor whole, ``None`` the factor 1)."""
    if x is None:
        return _ONE
    if nonnegative and isinstance(x, Tensor):
        return ((1.0, x),)
    return signed_parts(x, nonnegative)


_ONE = ((1.0, None),)  # the factor 1


def _factors(compiled: tuple, step: _Step) -> tuple[Any, Any, Any]:
    """The ``[(sign, part)]`` of a product's post, pre and row factors (:func:`_parts`).
    The factors are evaluated first (filters advance whether or not the product is 0);
    a factor that is 0 leaves the others unsplit."""
    (s_post, n_post), (s_pre, n_pre), (s_mod, n_mod) = compiled[4]
    value = step.value
    f_post = None if s_post is None else value(s_post)
    f_pre = None if s_pre is None else value(s_pre)
    f_mod = None if s_mod is None else value(s_mod)
    # (a non-negative tensor whole, without a call)
    posts = ((1.0, f_post),) if n_post and isinstance(f_post, Tensor) else _parts(f_post, n_post)
    if not posts:
        return posts, (), ()
    pres = ((1.0, f_pre),) if n_pre and isinstance(f_pre, Tensor) else _parts(f_pre, n_pre)
    return posts, pres, (_ONE if f_mod is None else _parts(f_mod, n_mod)) if pres else ()


def _run_product(compiled: tuple, step: _Step, kernels: Kernels, deliver: Deliver,
                 elig: dict[str, Tensor], scale: float) -> None:  # fmt: skip
    """One product's value on the step, for every combination of its factors' signed
    parts (:func:`_factors`), to ``deliver`` (the rule's update) or into ``elig`` (an
    eligibility trace)."""
    p, signed, to_elig, weight, _ = compiled
    posts, pres, mods = _factors(compiled, step)
    alpha, rows = p.coef if signed else abs(p.coef) * scale, step.inputs
    for sp, a in posts:
        for sq, b in pres:
            for sm, m in mods:
                sign = sp * sq * sm
                v = _product(a, b, m, alpha * sign if signed else alpha, rows, kernels)
                parts = _weighted(v, weight, kernels, signed) if weight else (
                    (1.0, v if v.is_contiguous() else v.contiguous()),)  # fmt: skip
                for s, part in parts:
                    if signed:
                        _signed(p.target, part, to_elig, elig, deliver)
                    else:
                        deliver("pos" if s * sign * p.coef > 0 else "neg", part, 1.0)


def _signed(target: str, part: Tensor, to_elig: bool, elig: dict[str, Tensor],
            deliver: Deliver) -> None:  # fmt: skip
    """A signed product's part: into the eligibility trace ``target`` of the step, or
    to ``deliver``."""
    if not to_elig:
        deliver(target, part, 1.0)
        return
    held = elig.get(target)
    elig[target] = part if held is None else held.add_(part)


def _product(post, pre, m, number: float, rows: dict[str, Tensor], kernels: Kernels) -> Tensor:
    """``number · Σ_b m·P·Q`` over the batch (``None``: the factor 1); the row factor and
    the number go to the smaller operand."""
    if m is not None and not isinstance(m, Tensor):
        number, m = number * m, None
    if post is None or pre is None:
        return _one_sided(post, pre, m, number, rows, kernels)
    r_post, r_pre = rows["post"], rows["pre"]
    post = post if post.shape == r_post.shape else post.expand_as(r_post)
    pre = pre if pre.shape == r_pre.shape else pre.expand_as(r_pre)
    if m is not None or number != 1.0:
        m = number if m is None else _rows_of(m, post) * number
        if post.numel() <= pre.numel():
            post = post * m
        else:
            pre = pre * _rows_of(m, pre)
    if kernels.conv is None and kernels.compute_dtype is None and post.ndim == 2:
        return torch.mm(post.t(), pre)  # (what ``correlate`` does, without its reshapes)
    return kernels.correlate(post, pre)


def _one_sided(post, pre, m, number: float, rows: dict[str, Tensor], kernels: Kernels) -> Tensor:
    """:func:`_product` with a side's factor 1: a sum over the batch of the other side
    (and ``m``), broadcast to the weight; with both, a constant term ``number · Σ_b m``."""
    if post is None and pre is None:  # a constant term: number · Σ_b m, per synapse
        shape = kernels.weight.shape
        if m is None:
            return kernels.weight.new_full(shape, number * rows["pre"].shape[0])
        return (m.sum() * number).expand(shape)
    side = "post" if pre is None else "pre"
    x = post if pre is None else pre
    x = x if m is None else x * _rows_of(m, x)
    return kernels.one_sided(x.expand_as(rows[side])[None], side, alpha=number)


def _weighted(value: Tensor, weight: bool, kernels: Kernels, signed: bool):
    """``[(sign, part)]`` of ``w·value``, split by the weight's sign for a magnitude's
    parts (``value`` alone without the weight factor; one-sided sums come as broadcast
    views, made whole)."""
    if not weight:
        return [(1.0, value if value.is_contiguous() else value.contiguous())]
    w = kernels.weight.detach()
    if signed or kernels.weight_nonnegative():
        return [(1.0, w * value)]
    return [(1.0, w.clamp_min(0).mul_(value)), (-1.0, w.clamp_max(0).neg_().mul_(value))]
