"""The engine's own signal nodes (see :mod:`plasticity.language.signals` for the pattern):
a trace run backwards within a chunk, and the decay of each step to the chunk's end, with
which an eligibility trace's read-out is computed."""

from __future__ import annotations

from typing import Any, ClassVar

from ..functional.traces import decay_powers, scan_future
from ..language import Signal
from ..language.signals import Fmt, node

__all__ = ["Future", "Powers"]


@node
class Future(Signal):
    """:math:`\\sum_{t' \\ge t} d^{t'-t} x_{t'}` within the chunk (``>`` with ``strict``)."""

    x: Signal
    tau: float
    strict: bool

    @property
    def side(self) -> Any:  # type: ignore[override]
        return self.x.side

    def text(self, fmt: Fmt) -> str:
        return f"future({self.x.text(fmt)}, {fmt(self.tau)}{', strict' if self.strict else ''})"

    def chunk(self, c: Any) -> Any:
        x, d = c.value(self.x), c.decay(self.tau)
        x = x if hasattr(x, "ndim") else c.full_rows(x)
        return scan_future(x, d, include_current=not self.strict)

    def step(self, s: Any) -> Any:  # a one-step chunk: the step itself
        return 0.0 if self.strict else s.value(self.x)


@node
class Powers(Signal):
    """The row factor :math:`d^{T-1-t}`: each step decayed to the chunk's end."""

    tau: float
    side: ClassVar[str] = "mod"

    def text(self, fmt: Fmt) -> str:
        return f"powers({fmt(self.tau)})"

    def chunk(self, c: Any) -> Any:
        d = c.decay(self.tau)
        like = c.inputs["pre"]
        return decay_powers(d, c.steps, like, offset=-1, reverse=True)[:, None].expand(
            c.steps, c.batch
        )

    def step(self, s: Any) -> Any:  # d^(T-1-t) of the chunk's only step
        return 1.0
