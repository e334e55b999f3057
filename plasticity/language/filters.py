"""Signal nodes with state carried from step to step: traces, low-pass filters, delays
(and ``.before``, a trace read before its step's input). Each holds its evaluation on a
chunk and on one step, its value before the first step (:meth:`Filter.start`) and its
state after a chunk (:meth:`Filter.final`, :meth:`Filter.release`); the engine keys that
state by the node itself (see :mod:`plasticity.language.signals`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..functional.traces import decay_powers, scan_trace
from .nodes import Spike
from .signals import Fmt, Signal, node

__all__ = ["Filter", "Trace", "Lowpass", "Before", "Delay"]


def _last(table: Tensor) -> Tensor:
    """The last row of a filter's fresh table (the table itself, for a one-step chunk)."""
    return table[0] if table.shape[0] == 1 else table[-1].clone()


class Filter(Signal):
    """A signal whose value after a step is carried to the next (the engine's state)."""

    x: Signal
    stateful: ClassVar[bool] = True

    @property
    def side(self) -> Any:  # type: ignore[override]
        return self.x.side

    def start(self, first: Callable[[], Any]) -> Any:
        """The value before the first step (``first()``: the input's first row)."""
        return 0.0

    def release(self, c: Any, table: Tensor) -> Tensor:
        """The state after the chunk ``c`` from the filter's table, freed now."""
        return _last(table)

    def final(self, c: Any) -> Tensor:
        """The state after the chunk ``c`` (no table freed before)."""
        table = c.memo.get(self)
        return _last(table if table is not None else c.value(self))

    def _to_end(self, c: Any, scale: float) -> Tensor:
        """The filter after the chunk without its table: its input decayed to the end
        (times ``scale``) plus the carried value decayed over the chunk."""
        x = c.value(self.x)
        d = c.decay(self.tau)  # type: ignore[attr-defined]
        x = x if isinstance(x, Tensor) else c.full_rows(x)
        to_end = decay_powers(d, c.steps, x, offset=-1, reverse=True)
        end = torch.tensordot(to_end, x, dims=1)
        if scale != 1.0:
            end.mul_(scale)
        return end.add_(c.carry_tensor(self, x), alpha=d**c.steps)


@node
class Trace(Filter):
    """``x.trace(tau)``: :math:`x_t = e^{-dt/\\tau} x_{t-1} + s_t` (``nearest``: reset to
    the spike at a spike)."""

    x: Signal
    tau: float
    nearest: bool = False

    def text(self, fmt: Fmt) -> str:
        base = f"{self.x.side}" if isinstance(self.x, Spike) else f"({self.x.text(fmt)})"
        near = ", nearest=True" if self.nearest else ""
        return f"{base}.trace({fmt(self.tau)}{near})"

    def all_to_all(self) -> Trace | None:
        """This trace if it is an all-to-all trace of spikes (which the engine may
        rewrite as the other side's future trace read at the spikes)."""
        return self if isinstance(self.x, Spike) and not self.nearest else None

    def chunk(self, c: Any) -> Any:
        x, d = c.value(self.x), c.decay(self.tau)
        carry = c.carry_tensor(self, x)
        return scan_trace(x, carry, d, "nearest" if self.nearest else "all-to-all")

    def step(self, s: Any) -> Any:
        x, d = s.input(self), s.decay(self.tau)
        c = s.carried(self, x)
        out = torch.where(x != 0, x, c * d) if self.nearest else torch.add(x, c, alpha=d)
        s.new[self] = out
        return out

    def final(self, c: Any) -> Tensor:
        if c.memo.get(self) is None and not self.nearest:
            return self._to_end(c, 1.0)
        return super().final(c)


@node
class Lowpass(Filter):
    """``x.lowpass(tau, init)``: :math:`\\bar u_t = d\\,\\bar u_{t-1} + (1 - d)\\,u_t`,
    starting at ``init`` or at the first value it filters."""

    x: Signal
    tau: float
    init: float | None = None

    def text(self, fmt: Fmt) -> str:
        init = "" if self.init is None else f", init={fmt(self.init)}"
        return f"{self.x.primary(fmt)}.lowpass({fmt(self.tau)}{init})"

    def nonnegative(self, binary: bool = True) -> bool:
        return self.x.nonnegative(binary) and (self.init is None or self.init >= 0)

    def start(self, first: Callable[[], Any]) -> Any:
        return self.init if self.init is not None else first()

    def chunk(self, c: Any) -> Any:
        x, d = c.value(self.x), c.decay(self.tau)
        carry = c.carry_tensor(self, x)
        return scan_trace(x * (1.0 - d), carry, d)

    def step(self, s: Any) -> Any:
        x, d = s.input(self), s.decay(self.tau)
        out = torch.add(x * (1.0 - d), s.carried(self, x), alpha=d)
        s.new[self] = out
        return out

    def final(self, c: Any) -> Tensor:
        if c.memo.get(self) is None:
            return self._to_end(c, 1.0 - c.decay(self.tau))
        return super().final(c)


@node
class Before(Signal):
    """``trace.before``: the trace decayed over the step, before its input,
    :math:`e^{-dt/\\tau} x_{t-1}` (``x``: the trace; a field named ``trace`` would hide
    :meth:`Signal.trace`, so that ``trace.before.trace(tau)`` could not be written)."""

    x: Trace

    @property
    def side(self) -> Any:  # type: ignore[override]
        return self.x.side

    def text(self, fmt: Fmt) -> str:
        return f"{self.x.text(fmt)}.before"

    def chunk(self, c: Any) -> Any:
        f = self.x
        d = c.decay(f.tau)
        if c.steps > 1 and f not in c.memo and f not in c.plan.direct:
            return self._before_only(c, d)
        table = c.value(f)
        carry = c.carry_tensor(f, table)[None]
        if c.steps == 1:
            return carry * d
        return torch.cat([carry, table[:-1]]).mul_(d)

    def _before_only(self, c: Any, d: float) -> Tensor:
        """Of a trace read only this way: scanned one row down, the carry in the first
        row, so that no table of the trace itself is made."""
        f = self.x
        x = c.value(f.x)
        carry = c.carry_tensor(f, x)
        padded = x.new_empty((c.steps + 1, *x.shape[1:]))
        padded[0] = carry
        scan_trace(x, carry, d, "nearest" if f.nearest else "all-to-all", out=padded[1:])
        c.finals[f] = padded[-1].clone()
        return padded[:-1].mul_(d)

    def step(self, s: Any) -> Any:
        f = self.x
        s.value(f)  # (its value after the step is the state carried on)
        return s.carried(f, s.input(f)) * s.decay(f.tau)


@node
class Delay(Filter):
    """``f.delayed(k)`` (``.previous``: ``k = 1``): the filter ``f`` ``k`` steps back;
    its state is the ``k`` latest values of ``f``."""

    x: Signal
    steps: int

    def text(self, fmt: Fmt) -> str:
        which = "previous" if self.steps == 1 else f"delayed({self.steps})"
        return f"{self.x.text(fmt)}.{which}"

    def history(self, c: Any) -> Tensor:
        """``[k + T, ...]``: the ``k`` values of the filter before the chunk, then its table."""
        h = c.histories.get(self)
        if h is None:
            table = c.value(self.x)
            past = c.state.get(self)
            if past is None:
                past = c.carry_tensor(self.x, table)[None].expand(self.steps, *table.shape[1:])
            h = c.histories[self] = torch.cat([past, table])
        return h

    def chunk(self, c: Any) -> Any:
        return self.history(c)[: c.steps]

    def release(self, c: Any, table: Tensor) -> Tensor:
        h = c.histories.pop(self, None)
        return self.final(c) if h is None else h[-self.steps :].clone()

    def final(self, c: Any) -> Tensor:
        return self.history(c)[-self.steps :].clone()

    def step(self, s: Any) -> Any:
        f, n = self.x, self.steps
        past = s.state.get(self)
        if past is None:
            x = s.input(f)
            past = s.carried(f, x)[None].expand(n, *x.shape)
        s.new[self] = torch.cat([past[1:], s.value(f)[None]])
        return past[0]
