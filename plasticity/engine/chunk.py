"""The signals of one chunk of steps: every signal a product reads, computed once
(traces scanned in a constant number of ops) and freed once no later product reads it.
Each kind of signal computes itself (:meth:`Signal.chunk
<plasticity.language.signals.Signal.chunk>`); this is the evaluator it reads from."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..language import Signal
from .plan import Plan

__all__ = ["Chunk"]


def _align(x: Tensor | float, like: Tensor) -> Tensor | float:
    """A ``[T, B]`` row factor viewed to broadcast against ``like`` (``[T, B, *S]``)."""
    if isinstance(x, Tensor) and x.ndim < like.ndim:
        return x.view(*x.shape, *([1] * (like.ndim - x.ndim)))
    return x


class Chunk:
    """The signals of one chunk: ``inputs`` (``pre``, ``post``: ``[T, B, *side]``;
    ``voltage`` ``[T, B, *out]`` and ``mod`` ``[T, B]`` where the plan reads them) and the
    state carried in (keyed by the filter nodes and eligibility traces), memoized per
    signal."""

    def __init__(self, plan: Plan, inputs: dict[str, Tensor], state: dict[Any, Tensor]) -> None:
        self.plan, self.inputs, self.state = plan, inputs, state
        self.memo: dict[Signal, Any] = {}
        self.histories: dict[Signal, Tensor] = {}  # delays: the values before the chunk, then
        self.finals: dict[Signal, Tensor] = {}  # state of filters whose tables were freed
        self.steps, self.batch = inputs["pre"].shape[:2]

    def decay(self, tau: float) -> float:
        """The decay factor of one step for ``tau``."""
        return self.plan.decay_of(tau)

    def carried(self, f: Signal) -> Tensor | float:
        """A filter's value before the chunk."""
        c = self.state.get(f)
        if c is not None:
            return c

        def first() -> Tensor | float:
            x = self.value(f.x)  # type: ignore[attr-defined]
            return x[0] if isinstance(x, Tensor) else x

        return f.start(first)  # type: ignore[attr-defined]

    def value(self, s: Signal) -> Tensor | float:
        memo = self.memo
        out = memo.get(s)
        if out is None:
            out = memo[s] = s.chunk(self)
        return out

    def operand(self, s: Signal) -> tuple[Tensor | float, bool]:
        """An operand of an elementwise combination, and whether it is a fresh temporary
        (elementwise operands are computed, not kept: :attr:`Signal.elementwise`)."""
        if s.elementwise and s not in self.memo:
            return s.chunk(self), True
        return self.value(s), False

    def full_rows(self, x: float) -> Tensor:
        like = self.inputs["pre"]
        return torch.full((self.steps, self.batch), x, dtype=like.dtype, device=like.device)

    def carry_tensor(self, f: Signal, table: Tensor | float) -> Tensor:
        c = self.carried(f)
        if isinstance(c, Tensor):
            return c
        like = table if isinstance(table, Tensor) else self.full_rows(0.0)
        return torch.full_like(like[0], c)

    # ------------------------------------------------------------------------ state

    def release(self, keep: set[Signal]) -> None:
        """Frees every computed signal not in ``keep`` (keeping what the state needs)."""
        for key in [k for k in self.memo if k not in keep]:
            value = self.memo.pop(key)
            if key in self.plan.filters and key not in self.finals:
                self.finals[key] = key.release(self, value)  # type: ignore[attr-defined]

    def new_state(self) -> dict[Any, Tensor]:
        """Every filter's value after the chunk (from its table if computed, else from
        its input decayed to the end: no table needed)."""
        out: dict[Any, Tensor] = dict(self.finals)
        for f in self.plan.filters:
            if f not in out:
                out[f] = f.final(self)  # type: ignore[attr-defined]
        return out
