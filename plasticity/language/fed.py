"""User-fed signals: values the user gives at every step, per sample and neuron of one
side (``post.signal("L")``; ``rule.feed(L=x)`` after each forward pass, or
``rule.observe(..., signals={"L": x})``), read by the engine as the input rows
``"signal:" + name`` (see :mod:`plasticity.language.signals` for the node pattern)."""

from __future__ import annotations

import keyword
from typing import Any, ClassVar

from .signals import Fmt, Signal, node

__all__ = ["Fed"]


@node
class Fed(Signal):
    """``pre.signal(name)``/``post.signal(name)``: a value fed by the user at every step,
    ``[B, *side]`` per step (a learning signal, a dendritic prediction error, a
    neuromodulator per population). Its rows are the input ``"signal:" + name``.

    Example:
        >>> from plasticity.language import Fed, post
        >>> post.signal("L") == Fed("post", "L"), post.signal("L")
        (True, post.signal('L'))
    """

    side: str
    name: str
    leaf: ClassVar[bool] = True

    def __post_init__(self) -> None:
        """``name`` checked: a Python identifier that is not a keyword (it is passed as
        ``rule.feed(name=...)``)."""
        if self.side not in ("pre", "post"):
            raise ValueError(f"a fed signal's side is 'pre' or 'post', got {self.side!r}")
        name = self.name
        if not isinstance(name, str):
            raise TypeError(f"{self.side}.signal(name): `name` must be a string, got "
                            f"{type(name).__name__} {name!r}")  # fmt: skip
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"{self.side}.signal({name!r}): `name` must be a Python "
                             "identifier (it is passed as rule.feed(name=...)), e.g. 'L' or "
                             "'error'")  # fmt: skip

    @property
    def input(self) -> str:
        """The key of its rows among the engine's inputs."""
        return "signal:" + self.name

    def text(self, fmt: Fmt) -> str:
        return f"{self.side}.signal({self.name!r})"

    def nonnegative(self, binary: bool = True) -> bool:
        return False

    def leaves(self) -> set[str]:
        return {"fed"}

    def chunk(self, c: Any) -> Any:
        return c.inputs[self.input]

    def step(self, s: Any) -> Any:
        return s.inputs[self.input]

