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
from .plan import Plan
from .run import Deliver, signed_parts

__all__ = ["steppable", "run_step"]


def steppable(plan: Plan) -> bool:
    """Whether :func:`run_step` evaluates ``plan`` (every plan without per-sample
    products: their eligibility traces are ``[B, *weight]``)."""
    return not any(p.per_sample for p in plan.products)


class _Step:
    """The signals of one step: ``rows`` (``pre``/``post``/``voltage`` ``[B, *side]``,
    ``mod`` ``[B]``), the filters carried in ``state``; ``new`` collects their values
    after the step."""

    def __init__(self, plan: Plan, rows: dict[str, Tensor], state: dict[str, Tensor]) -> None:
        self.plan, self.rows, self.state = plan, rows, state
        self.memo: dict[str, Any] = {}
        self.new: dict[str, Tensor] = {}

    def carried(self, s: Signal, x: Tensor) -> Tensor:
        """A filter's value before the step (as :meth:`Chunk.carried`), shaped like its
        input ``x``."""
        c = self.state.get(repr(s))
        if c is not None:
            return c
        if s.kind == "lowpass" and s.args[2] is None:
            return x  # starts at its input's first value
        return torch.full_like(x, 0.0 if s.kind == "trace" else s.args[2])

    def value(self, s: Signal) -> Tensor | float:
        key = repr(s)
        if key in self.memo:
            return self.memo[key]
        k, a, v = s.kind, s.args, self.value
        if k == "spike":
            out: Any = self.rows[s.side]  # type: ignore[index]
        elif k in ("voltage", "mod"):
            out = self.rows[k]
        elif k == "const":
            out = a[0]
        elif k == "scale":
            out = v(a[0]) * a[1]
        elif k == "relu":
            x = v(a[0])
            out = x.clamp_min(0) if isinstance(x, Tensor) else max(x, 0.0)
        elif k == "pow":
            out = v(a[0]) ** a[1]
        elif k in ("add", "mul"):
            out = v(a[0])
            for y in map(v, a[1:]):
                out, y = (y, out) if _wider(y, out) else (out, y)
                y = _rows_of(y, out)
                out = out + y if k == "add" else out * y
        elif k == "batch_mean":
            x = v(a[0])
            out = x.mean(0, keepdim=True).expand_as(x) if isinstance(x, Tensor) else x
        elif k in ("trace", "lowpass"):
            out = self._filter(s)
        elif k == "before":  # the filter decayed over the step, before its input
            f = a[0]
            self.value(f)  # (its value after the step is the state carried on)
            out = self.carried(f, self._input(f)) * self.plan.decay_of(f.args[1])
        elif k == "delay":  # the filter k steps ago: the oldest of the k values held
            f, n = a
            past = self.state.get(key)
            if past is None:
                past = self.carried(f, self._input(f))[None].expand(n, *self._input(f).shape)
            out = past[0]
            self.new[key] = torch.cat([past[1:], v(f)[None]])
        elif k == "future":  # Σ_{t' >= t} within a one-step chunk: the step itself
            out = 0.0 if a[2] else v(a[0])
        elif k == "powers":  # d^(T-1-t) of the chunk's only step
            out = 1.0
        else:
            raise AssertionError(k)
        self.memo[key] = out
        return out

    def _input(self, f: Signal) -> Tensor:
        """A filter's input on this step (a number as ``[B]`` rows)."""
        x = self.value(f.args[0])
        if isinstance(x, Tensor):
            return x
        like = self.rows["pre"]
        return torch.full(like.shape[:1], x, dtype=like.dtype, device=like.device)

    def _filter(self, s: Signal) -> Tensor:
        x, d = self._input(s), self.plan.decay_of(s.args[1])
        c = self.carried(s, x)
        if s.kind == "lowpass":
            out = torch.add(x * (1.0 - d), c, alpha=d)
        elif s.args[2]:  # nearest spike
            out = torch.where(x != 0, x, c * d)
        else:
            out = torch.add(x, c, alpha=d)
        self.new[repr(s)] = out
        return out


def _wider(a: Any, b: Any) -> bool:
    return isinstance(a, Tensor) and (not isinstance(b, Tensor) or a.ndim > b.ndim)


def _rows_of(m: Any, like: Tensor) -> Any:
    """A ``[B]`` row factor viewed to broadcast against ``like`` (``[B, *side]``)."""
    if isinstance(m, Tensor) and m.ndim < like.ndim:
        return m.view(*m.shape, *([1] * (like.ndim - m.ndim)))
    return m


def _compiled(plan: Plan) -> list[tuple]:
    """Per product, what :func:`run_step` reads of it (computed once per plan)."""
    out = plan.__dict__.get("_step_products")
    if out is None:
        out = plan.__dict__["_step_products"] = [
            (p, p.target != "dw", p.target.startswith("elig:"),
             *((s, s is None or s.nonnegative(plan.binary)) for s in (p.post, p.pre, p.mod)))
            for p in plan.products
        ]  # fmt: skip
    return out


def run_step(plan: Plan, rows: dict[str, Tensor], state: dict[str, Tensor], kernels: Kernels,
             deliver: Deliver, scale: float = 1.0) -> dict[str, Tensor]:  # fmt: skip
    """Evaluates ``plan`` on one step (``rows``: ``pre``, ``post`` ``[B, *side]``,
    ``voltage`` ``[B, *out]`` and ``mod`` ``[B]`` where read) and returns the state after
    it; results go to ``deliver`` as for :func:`~plasticity.engine.run.run_plan`."""
    step = _Step(plan, rows, state)
    value = step.value
    elig: dict[str, Tensor] = {}
    for coef, mod, e in plan.carries:  # read-out of the eligibility carried in: d·m·e0
        e0 = state.get(f"elig:{e!r}")
        if e0 is not None:
            m = value(mod) if mod is not None else 1.0
            k = (float(m.reshape(-1)[0]) if isinstance(m, Tensor) else m) * plan.decay_of(e.tau)
            k *= coef * scale
            deliver("pos" if k > 0 else "neg", e0.clamp_min(0), abs(k))
            deliver("neg" if k > 0 else "pos", e0.clamp_max(0), -abs(k))
    for key, e in plan.eligibilities.items():
        e0 = state.get(key)
        if e0 is not None:
            elig[key] = e0.mul_(plan.decay_of(e.tau))
    for p, signed, to_elig, (s_post, n_post), (s_pre, n_pre), (s_mod, n_mod) in _compiled(plan):
        alpha = p.coef if signed else abs(p.coef) * scale
        f_post = None if s_post is None else value(s_post)
        f_pre = None if s_pre is None else value(s_pre)
        f_mod = None if s_mod is None else value(s_mod)
        for sp, a in signed_parts(f_post, n_post):
            for sq, b in signed_parts(f_pre, n_pre):
                for sm, m in signed_parts(f_mod, n_mod):
                    sign = sp * sq * sm
                    v = _product(a, b, m, alpha * sign if signed else alpha, rows, kernels)
                    for s, part in _weighted(v, p.weight, kernels, signed):
                        if not signed:
                            deliver("pos" if s * sign * p.coef > 0 else "neg", part, 1.0)
                        elif to_elig:
                            held = elig.get(p.target)
                            elig[p.target] = part if held is None else held.add_(part)
                        else:
                            deliver(p.target, part, 1.0)
    out = dict(state)
    if len(step.new) < len(plan.filters):  # a filter no product read still advances
        for f in plan.filters.values():
            value(f)
    out.update(step.new)
    out.update(elig)
    return out


def _product(post, pre, m, number: float, rows: dict[str, Tensor], kernels: Kernels) -> Tensor:
    """``number · Σ_b m·P·Q`` over the batch (``None``: the factor 1); the row factor and
    the number go to the smaller operand."""
    if m is not None and not isinstance(m, Tensor):
        number, m = number * m, None
    if post is None and pre is None:  # a constant term: number · Σ_b m, per synapse
        shape = kernels.weight.shape
        if m is None:
            return kernels.weight.new_full(shape, number * rows["pre"].shape[0])
        return (m.sum() * number).expand(shape)
    if post is None or pre is None:
        side = "post" if pre is None else "pre"
        x = post if pre is None else pre
        x = x if m is None else x * _rows_of(m, x)
        return kernels.one_sided(x.expand_as(rows[side])[None], side, alpha=number)
    post = post if post.shape == rows["post"].shape else post.expand_as(rows["post"])
    pre = pre if pre.shape == rows["pre"].shape else pre.expand_as(rows["pre"])
    if m is not None or number != 1.0:
        m = number if m is None else _rows_of(m, post) * number
        if post.numel() <= pre.numel():
            post = post * m
        else:
            pre = pre * _rows_of(m, pre)
    if kernels.conv is None and kernels.compute_dtype is None and post.ndim == 2:
        return torch.mm(post.t(), pre)  # (what ``correlate`` does, without its reshapes)
    return kernels.correlate(post, pre)


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
