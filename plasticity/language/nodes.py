"""Signal nodes without state: the inputs (spikes, voltage, modulator, numbers) and the
elementwise combinations of signals of one side (scale, sums, products, powers, functions),
each with its text, sign and evaluations (see :mod:`plasticity.language.signals`)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .signals import Fmt, Signal, node
from .text import _side

__all__ = ["Spike", "Voltage", "Modulator", "Const", "Unary", "Scale", "Pow", "Relu", "Abs",
           "Sigmoid", "Exp", "Tanh", "Heaviside", "Add", "Mul", "BatchMean"]  # fmt: skip


def _align(x: Any, like: Tensor) -> Any:
    """A row factor (``[T, B]`` or ``[B]``) viewed to broadcast against ``like``."""
    if isinstance(x, Tensor) and x.ndim < like.ndim:
        return x.view(*x.shape, *([1] * (like.ndim - x.ndim)))
    return x


# ----------------------------------------------------------------------------- inputs
@node
class Spike(Signal):
    """``pre.spike``/``post.spike``: the step's spikes of one side."""

    side: str
    leaf: ClassVar[bool] = True

    def text(self, fmt: Fmt) -> str:
        return f"{self.side}.spike"

    def nonnegative(self, binary: bool = True) -> bool:
        return binary

    def leaves(self) -> set[str]:
        return {"spike"}

    def spiking(self) -> bool:
        return True

    def chunk(self, c: Any) -> Any:
        return c.inputs[self.side]

    def step(self, s: Any) -> Any:
        return s.inputs[self.side]


@node
class Voltage(Signal):
    """``post.voltage``: the neuron's membrane potential at the step."""

    side: ClassVar[str] = "post"
    leaf: ClassVar[bool] = True

    def text(self, fmt: Fmt) -> str:
        return "post.voltage"

    def nonnegative(self, binary: bool = True) -> bool:
        return False

    def leaves(self) -> set[str]:
        return {"voltage"}

    def chunk(self, c: Any) -> Any:
        return c.inputs["voltage"]

    def step(self, s: Any) -> Any:
        return s.inputs["voltage"]


@node
class Modulator(Signal):
    """``modulator``: the third factor of the step, one value per sample."""

    side: ClassVar[str] = "mod"
    leaf: ClassVar[bool] = True

    def text(self, fmt: Fmt) -> str:
        return "modulator"

    def nonnegative(self, binary: bool = True) -> bool:
        return False

    def leaves(self) -> set[str]:
        return {"mod"}

    def chunk(self, c: Any) -> Any:
        return c.inputs["mod"]

    def step(self, s: Any) -> Any:
        return s.inputs["mod"]


@node
class Const(Signal):
    """A number (combines with either side)."""

    value: float
    side: ClassVar[None] = None
    leaf: ClassVar[bool] = True

    def text(self, fmt: Fmt) -> str:
        return fmt(self.value)

    def atom(self, fmt: Fmt) -> str:
        return f"({fmt(self.value)})" if self.value < 0 else fmt(self.value)

    def operation(self) -> bool:
        return self.value < 0

    def nonnegative(self, binary: bool = True) -> bool:
        return self.value >= 0

    def chunk(self, c: Any) -> Any:
        return self.value

    def step(self, s: Any) -> Any:
        return self.value


# ------------------------------------------------------------------------ elementwise
class Unary(Signal):
    """An elementwise function of one signal ``x``: ``apply(x, fresh)`` on a tensor (in
    place on a fresh temporary), ``number(x)`` on a number."""

    x: Signal
    elementwise: ClassVar[bool] = True
    name: ClassVar[str] = ""

    @property
    def side(self) -> Any:  # type: ignore[override]
        return self.x.side

    def text(self, fmt: Fmt) -> str:
        return f"{self.name}({self.x.text(fmt)})"

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        raise NotImplementedError

    def number(self, x: float) -> float:
        raise NotImplementedError

    def chunk(self, c: Any) -> Any:
        x, fresh = c.operand(self.x)
        return self.apply(x, fresh) if isinstance(x, Tensor) else self.number(x)

    def step(self, s: Any) -> Any:
        x = s.value(self.x)
        return self.apply(x, False) if isinstance(x, Tensor) else self.number(x)


@node
class Scale(Unary):
    """``c * x``."""

    x: Signal
    c: float

    def text(self, fmt: Fmt) -> str:
        x = f"({self.x.text(fmt)})" if isinstance(self.x, Mul) else self.x.atom(fmt)
        return f"-{x}" if self.c == -1.0 else f"{fmt(self.c)} * {x}"

    def atom(self, fmt: Fmt) -> str:
        return f"({self.text(fmt)})"

    def operation(self) -> bool:
        return True

    def nonnegative(self, binary: bool = True) -> bool:
        return self.c >= 0 and self.x.nonnegative(binary)

    def spiking(self) -> bool:
        return self.x.spiking()

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.mul_(self.c) if fresh else x * self.c

    def number(self, x: float) -> float:
        return x * self.c


@node
class Pow(Unary):
    """``x ** k`` (an int ``k >= 2``)."""

    x: Signal
    k: int

    def text(self, fmt: Fmt) -> str:
        return f"{self.x.primary(fmt)} ** {self.k}"

    def operation(self) -> bool:
        return True

    def nonnegative(self, binary: bool = True) -> bool:
        return self.k % 2 == 0 or self.x.nonnegative(binary)

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.pow_(self.k) if fresh else x**self.k

    def number(self, x: float) -> float:
        return x**self.k


@node
class Relu(Unary):
    """``relu(x)``: :math:`\\max(x, 0)`."""

    x: Signal
    name: ClassVar[str] = "relu"

    def nonnegative(self, binary: bool = True) -> bool:
        return True

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.clamp_min_(0) if fresh else x.clamp_min(0)

    def number(self, x: float) -> float:
        return max(x, 0.0)


@node
class Abs(Unary):
    """``abs(x)``: :math:`|x|`."""

    x: Signal
    name: ClassVar[str] = "abs"

    def nonnegative(self, binary: bool = True) -> bool:
        return True

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.abs_() if fresh else x.abs()

    def number(self, x: float) -> float:
        return abs(x)


@node
class Sigmoid(Unary):
    """``sigmoid(x)``: :math:`1 / (1 + e^{-x})`."""

    x: Signal
    name: ClassVar[str] = "sigmoid"

    def nonnegative(self, binary: bool = True) -> bool:
        return True

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.sigmoid_() if fresh else x.sigmoid()

    def number(self, x: float) -> float:
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return e / (1.0 + e)


@node
class Exp(Unary):
    """``exp(x)``: :math:`e^x`."""

    x: Signal
    name: ClassVar[str] = "exp"
    unbounded: ClassVar[bool] = True

    def nonnegative(self, binary: bool = True) -> bool:
        return True

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.exp_() if fresh else x.exp()

    def number(self, x: float) -> float:
        return math.exp(x)


@node
class Tanh(Unary):
    """``tanh(x)``."""

    x: Signal
    name: ClassVar[str] = "tanh"

    def nonnegative(self, binary: bool = True) -> bool:
        return self.x.nonnegative(binary)

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.tanh_() if fresh else x.tanh()

    def number(self, x: float) -> float:
        return math.tanh(x)


@node
class Heaviside(Unary):
    """``heaviside(x)``: 1 where :math:`x > 0`, else 0."""

    x: Signal
    name: ClassVar[str] = "heaviside"

    def nonnegative(self, binary: bool = True) -> bool:
        return True

    def apply(self, x: Tensor, fresh: bool) -> Tensor:
        return x.gt_(0) if fresh else (x > 0).to(x.dtype)

    def number(self, x: float) -> float:
        return 1.0 if x > 0 else 0.0


class _NAry(Signal):
    """A sum or product of signals of one side (``parts``, flattened)."""

    parts: tuple[Signal, ...]
    elementwise: ClassVar[bool] = True
    joiner: ClassVar[str] = ""

    def operands(self) -> tuple[Signal, ...]:
        return self.parts

    @property
    def side(self) -> Any:  # type: ignore[override]
        side = None
        for p in self.parts:
            side = _side(side, p.side, "")
        return side

    def inplace(self, x: Tensor, y: Any) -> Tensor:
        raise NotImplementedError

    def combine(self, x: Any, y: Any) -> Any:
        raise NotImplementedError

    def chunk(self, c: Any) -> Any:
        """The parts combined left to right, in place on the temporaries."""
        x, fresh = c.operand(self.parts[0])
        for y in self.parts[1:]:
            y, _ = c.operand(y)
            if isinstance(x, Tensor) and isinstance(y, Tensor) and y.ndim > x.ndim:
                x, y, fresh = y, x, False  # the larger operand first (a row factor aligns)
            y = _align(y, x) if isinstance(x, Tensor) else y
            if fresh and isinstance(x, Tensor) and (
                    not isinstance(y, Tensor) or y.shape == x.shape or y.ndim <= x.ndim and
                    torch.broadcast_shapes(x.shape, y.shape) == x.shape):  # fmt: skip
                x = self.inplace(x, y)
            else:
                x = self.combine(x, y)
                fresh = isinstance(x, Tensor)
        return x

    def step(self, s: Any) -> Any:
        out = s.value(self.parts[0])
        for y in map(s.value, self.parts[1:]):
            wider = isinstance(y, Tensor) and (not isinstance(out, Tensor) or y.ndim > out.ndim)
            out, y = (y, out) if wider else (out, y)
            out = self.combine(out, _align(y, out) if isinstance(out, Tensor) else y)
        return out


@node
class Add(_NAry):
    """``x + y + ...`` within one side."""

    parts: tuple[Signal, ...]

    def text(self, fmt: Fmt) -> str:
        out = self.parts[0].text(fmt)
        for x in self.parts[1:]:
            t = x.text(fmt)
            out += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
        return out

    def atom(self, fmt: Fmt) -> str:
        return f"({self.text(fmt)})"

    def operation(self) -> bool:
        return True

    def spiking(self) -> bool:
        return all(p.spiking() for p in self.parts)

    def inplace(self, x: Tensor, y: Any) -> Tensor:
        return x.add_(y)

    def combine(self, x: Any, y: Any) -> Any:
        return x + y


@node
class Mul(_NAry):
    """``x * y * ...`` within one side."""

    parts: tuple[Signal, ...]

    def text(self, fmt: Fmt) -> str:
        return " * ".join(x.atom(fmt) for x in self.parts)

    def operation(self) -> bool:
        return True

    def spiking(self) -> bool:
        return any(isinstance(p, Spike) for p in self.parts)

    def inplace(self, x: Tensor, y: Any) -> Tensor:
        return x.mul_(y)

    def combine(self, x: Any, y: Any) -> Any:
        return x * y


@node
class BatchMean(Signal):
    """``x.batch_mean()``: the mean over the samples (the same for every sample)."""

    x: Signal

    @property
    def side(self) -> Any:  # type: ignore[override]
        return self.x.side

    def text(self, fmt: Fmt) -> str:
        return f"{self.x.primary(fmt)}.batch_mean()"

    def chunk(self, c: Any) -> Any:
        x = c.value(self.x)
        return x.mean(1, keepdim=True).expand_as(x) if isinstance(x, Tensor) else x

    def step(self, s: Any) -> Any:
        x = s.value(self.x)
        return x.mean(0, keepdim=True).expand_as(x) if isinstance(x, Tensor) else x
