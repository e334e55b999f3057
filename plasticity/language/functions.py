r"""Elementwise functions of the signals of one side: ``relu``, ``abs`` (Python's),
``sigmoid``, ``exp``, ``tanh``, ``heaviside``. A function of a number is the number; a
function of signals of both sides does not factor into post × pre and is a ``ValueError``.

Example:
    >>> from plasticity.language import heaviside, post, pre, sigmoid
    >>> sigmoid(post.voltage - 0.5) * pre.trace(10.0)
    sigmoid(post.voltage - 0.5) * pre.trace(10)
    >>> abs(post.voltage - 1.0) * heaviside(post.voltage) * pre.spike
    abs(post.voltage - 1) * heaviside(post.voltage) * pre.spike
    >>> sigmoid(post.voltage * pre.trace(10.0))
    Traceback (most recent call last):
    ...
    ValueError: sigmoid(post.voltage * pre.trace(10)) does not factor into a post-side signal times a pre-side signal; write the term as a product of signals of one side each
"""

from __future__ import annotations

from typing import Any

from .nodes import Abs, Const, Exp, Heaviside, Relu, Sigmoid, Tanh, Unary
from .signals import Signal
from .terms import _Sum
from .text import _number

__all__ = ["relu", "absolute", "sigmoid", "exp", "tanh", "heaviside"]


def _apply(cls: type[Unary], x: Any) -> Signal:
    """``cls(x)`` of a signal of one side; of a number (or a constant), the number."""
    name = cls.name
    if isinstance(x, _Sum):
        raise ValueError(
            f"{name}({x!r}) does not factor into a post-side signal times a pre-side signal; "
            "write the term as a product of signals of one side each"
        )
    if isinstance(x, Signal) and not isinstance(x, Const):
        return cls(x)  # type: ignore[call-arg]
    value = x.value if isinstance(x, Const) else _number(x, f"{name}'s argument")
    try:
        folded = cls.number(None, value)  # type: ignore[arg-type]
    except OverflowError:
        folded = float("inf")
    return Const(_number(folded, f"{name}({value!r})"))


def relu(x: Any) -> Signal:
    """:math:`\\max(x, 0)` of a signal of one side."""
    return _apply(Relu, x)


def absolute(x: Any) -> Signal:
    """:math:`|x|` of a signal of one side (what Python's ``abs(x)`` gives)."""
    return _apply(Abs, x)


def sigmoid(x: Any) -> Signal:
    """:math:`1 / (1 + e^{-x})` of a signal of one side (Urbanczik & Senn's rate φ)."""
    return _apply(Sigmoid, x)


def exp(x: Any) -> Signal:
    """:math:`e^{x}` of a signal of one side."""
    return _apply(Exp, x)


def tanh(x: Any) -> Signal:
    """:math:`\\tanh x` of a signal of one side."""
    return _apply(Tanh, x)


def heaviside(x: Any) -> Signal:
    """1 where :math:`x > 0`, else 0, of a signal of one side (a step function)."""
    return _apply(Heaviside, x)
