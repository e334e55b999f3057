"""The signals of one chunk of steps: every signal a product reads, computed once
(traces scanned in a constant number of ops) and freed once no later product reads it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..functional.traces import decay_powers, scan_future, scan_trace
from ..language import Signal
from .plan import ELEMENTWISE, Plan

__all__ = ["Chunk"]


def _align(x: Tensor | float, like: Tensor) -> Tensor | float:
    """A ``[T, B]`` row factor viewed to broadcast against ``like`` (``[T, B, *S]``)."""
    if isinstance(x, Tensor) and x.ndim < like.ndim:
        return x.view(*x.shape, *([1] * (like.ndim - x.ndim)))
    return x


class Chunk:
    """The signals of one chunk: ``inputs`` (``pre``, ``post``: ``[T, B, *side]``;
    ``voltage`` ``[T, B, *out]`` and ``mod`` ``[T, B]`` where the plan reads them) and the
    state carried in (filters by name, eligibility traces), memoized per signal."""

    def __init__(self, plan: Plan, inputs: dict[str, Tensor], state: dict[str, Tensor]) -> None:
        self.plan, self.inputs, self.state = plan, inputs, state
        self.memo: dict[str, Any] = {}
        self.finals: dict[str, Tensor] = {}  # last rows of released filter tables
        self.steps, self.batch = inputs["pre"].shape[:2]

    def carried(self, s: Signal) -> Tensor | float:
        """A filter's value before the chunk."""
        key = repr(s)
        if key in self.state:
            return self.state[key]
        if s.kind == "lowpass":
            init = s.args[2]
            if init is not None:
                return init
            first = self.value(s.args[0])
            return first[0] if isinstance(first, Tensor) else first
        return 0.0

    def value(self, s: Signal) -> Tensor | float:
        key = repr(s)
        memo = self.memo
        if key in memo:
            return memo[key]
        out = self._compute(s)
        memo[key] = out
        return out

    def _operand(self, s: Signal) -> tuple[Tensor | float, bool]:
        """An operand of an elementwise combination, and whether it is a fresh temporary
        (elementwise operands are computed, not kept: :data:`~.plan.ELEMENTWISE`)."""
        if s.kind in ELEMENTWISE and repr(s) not in self.memo:
            return self._compute(s), True
        return self.value(s), False

    def _compute(self, s: Signal) -> Tensor | float:
        k, a, v = s.kind, s.args, self.value
        if k == "spike":
            return self.inputs[s.side]  # type: ignore[index]
        if k == "voltage":
            return self.inputs["voltage"]
        if k == "mod":
            return self.inputs["mod"]
        if k == "fed":  # a user-fed signal: its rows, as given (issue 23)
            return self.inputs["signal:" + a[0]]
        if k == "const":
            return a[0]
        if k in ELEMENTWISE:
            return self._elementwise(s)
        if k == "batch_mean":
            x = v(a[0])
            return x.mean(1, keepdim=True).expand_as(x) if isinstance(x, Tensor) else x
        if k == "trace":
            x, d = v(a[0]), self.plan.decay_of(a[1])
            carry = self._carry_tensor(s, x)
            return scan_trace(x, carry, d, "nearest" if a[2] else "all-to-all")
        if k == "lowpass":
            x, d = v(a[0]), self.plan.decay_of(a[1])
            carry = self._carry_tensor(s, x)
            return scan_trace(x * (1.0 - d), carry, d)
        if k == "before":
            f = a[0]
            d = self.plan.decay_of(f.args[1])
            if self.steps > 1 and repr(f) not in self.memo and repr(f) not in self.plan.direct:
                return self._before_only(f, d)
            table = v(f)
            carry = self._carry_tensor(f, table)[None]
            if self.steps == 1:
                return carry * d
            return torch.cat([carry, table[:-1]]).mul_(d)
        if k == "delay":
            return self._history(s)[: self.steps]
        if k == "future":
            x, d = v(a[0]), self.plan.decay_of(a[1])
            x = x if isinstance(x, Tensor) else self._full_rows(x)
            return scan_future(x, d, include_current=not a[2])
        if k == "powers":
            d = self.plan.decay_of(a[0])
            like = self.inputs["pre"]
            return decay_powers(d, self.steps, like, offset=-1, reverse=True)[:, None].expand(
                self.steps, self.batch
            )
        raise AssertionError(k)

    def _before_only(self, f: Signal, d: float) -> Tensor:
        """``f.before`` of a trace read only that way: scanned one row down, the carry in
        the first row, so that no table of ``f`` itself is made."""
        x = self.value(f.args[0])
        carry = self._carry_tensor(f, x)
        padded = x.new_empty((self.steps + 1, *x.shape[1:]))
        padded[0] = carry
        scan_trace(x, carry, d, "nearest" if f.args[2] else "all-to-all", out=padded[1:])
        self.finals[repr(f)] = padded[-1].clone()
        return padded[:-1].mul_(d)

    def _elementwise(self, s: Signal) -> Tensor | float:
        """``scale``, ``add``, ``mul``, ``relu``, ``pow`` of the operands, in place on the
        temporaries."""
        k, a = s.kind, s.args
        x, fresh = self._operand(a[0])
        if not isinstance(x, Tensor):  # a constant's combination
            if k == "scale":
                return x * a[1]
            if k == "relu":
                return max(x, 0.0)
            if k == "pow":
                return x ** a[1]
        elif k == "scale":
            return x.mul_(a[1]) if fresh else x * a[1]
        elif k == "relu":
            return x.clamp_min_(0) if fresh else x.clamp_min(0)
        elif k == "pow":
            return x.pow_(a[1]) if fresh else x ** a[1]
        for y in a[1:]:
            y, _ = self._operand(y)
            if isinstance(x, Tensor) and isinstance(y, Tensor) and y.ndim > x.ndim:
                x, y, fresh = y, x, False  # the larger operand first (a row factor aligns)
            y = _align(y, x) if isinstance(x, Tensor) else y
            if fresh and isinstance(x, Tensor) and (
                    not isinstance(y, Tensor) or y.shape == x.shape or y.ndim <= x.ndim and
                    torch.broadcast_shapes(x.shape, y.shape) == x.shape):  # fmt: skip
                x = x.add_(y) if k == "add" else x.mul_(y)
            else:
                x = x + y if k == "add" else x * y
                fresh = isinstance(x, Tensor)
        return x

    def _history(self, s: Signal) -> Tensor:
        """``[k + T, ...]``: the ``k`` values of a filter before the chunk, then its table."""
        key = "hist:" + repr(s)
        if key not in self.memo:
            f, k = s.args
            table = self.value(f)
            past = self.state.get(repr(s))
            if past is None:
                past = self._carry_tensor(f, table)[None].expand(k, *table.shape[1:])
            self.memo[key] = torch.cat([past, table])
        return self.memo[key]

    def _full_rows(self, x: float) -> Tensor:
        like = self.inputs["pre"]
        return torch.full((self.steps, self.batch), x, dtype=like.dtype, device=like.device)

    def _carry_tensor(self, f: Signal, table: Tensor | float) -> Tensor:
        c = self.carried(f)
        if isinstance(c, Tensor):
            return c
        like = table if isinstance(table, Tensor) else self._full_rows(0.0)
        return torch.full_like(like[0], c)

    # ------------------------------------------------------------------------ state

    def release(self, keep: set[str]) -> None:
        """Frees every computed signal not in ``keep`` (keeping what the state needs)."""
        for key in [k for k in self.memo if k not in keep]:
            value = self.memo.pop(key)
            if key in self.plan.filters and key not in self.finals:
                self.finals[key] = _last(value)
            elif key.startswith("hist:"):
                f = self.plan.filters[key[5:]]
                self.finals[key[5:]] = value[-f.args[1] :].clone()

    def new_state(self) -> dict[str, Tensor]:
        """Every filter's value after the chunk (from its table if computed, else from
        its input decayed to the end: no table needed)."""
        out: dict[str, Tensor] = dict(self.finals)
        for key, f in self.plan.filters.items():
            if key in out:
                continue
            if f.kind == "delay":
                out[key] = self._history(f)[-f.args[1] :].clone()
                continue
            table = self.memo.get(key)
            if table is None and (f.kind == "lowpass" or not f.args[2]):
                x = self.value(f.args[0])
                d = self.plan.decay_of(f.args[1])
                x = x if isinstance(x, Tensor) else self._full_rows(x)
                to_end = decay_powers(d, self.steps, x, offset=-1, reverse=True)
                end = torch.tensordot(to_end, x, dims=1)
                if f.kind == "lowpass":
                    end.mul_(1.0 - d)
                out[key] = end.add_(self._carry_tensor(f, x), alpha=d**self.steps)
            else:
                out[key] = _last(table if table is not None else self.value(f))
        return out


def _last(table: Tensor) -> Tensor:
    """The last row of a filter's fresh table (the table itself, for a one-step chunk)."""
    return table[0] if table.shape[0] == 1 else table[-1].clone()
