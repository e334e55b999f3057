"""The arithmetic of signals: numbers folded into scales, sums and products within one
side flattened into :class:`~.nodes.Add`/:class:`~.nodes.Mul` nodes, and a combination of
both sides made a sum of terms (:class:`~.terms.Terms`)."""

from __future__ import annotations

from typing import Any

from .nodes import Add, Const, Mul, Scale
from .signals import Signal
from .terms import Term, Terms, _Sum, _times, as_terms
from .text import _number, _side

__all__: list[str] = []


def _const(value: Any) -> Const:
    return Const(_number(value, "a number in a rule"))


def _scale(x: Any, c: float) -> Any:
    if isinstance(x, _Sum):
        return x * c
    if not isinstance(x, Signal):
        return _const(_number(x, "a number in a rule") * c)
    if isinstance(x, Const):
        return _const(x.value * c)
    if isinstance(x, Scale):
        return _scale(x.x, x.c * c)
    return x if c == 1.0 else Scale(x, c)


def _add(x: Any, y: Any) -> Any:
    if isinstance(x, _Sum) or isinstance(y, _Sum):
        return Terms(*as_terms(x).terms, *as_terms(y).terms)
    x = x if isinstance(x, Signal) else _const(x)
    y = y if isinstance(y, Signal) else _const(y)
    if isinstance(x, Const) and isinstance(y, Const):
        return _const(x.value + y.value)
    if {x.side, y.side} >= {"pre", "post"}:  # a sum of one-sided terms: separable
        return Terms(*as_terms(x).terms, *as_terms(y).terms)
    _side(x.side, y.side, f"{x!r} + {y!r}")
    return Add((*(x.parts if isinstance(x, Add) else (x,)), *(y.parts if isinstance(y, Add) else (y,))))


def _mul(x: Any, y: Any) -> Any:
    if isinstance(x, _Sum) or isinstance(y, _Sum):
        return as_terms(x).times(as_terms(y))
    if not isinstance(x, Signal):
        return _scale(y, _number(x, "a number in a rule"))
    if not isinstance(y, Signal):
        return _scale(x, _number(y, "a number in a rule"))
    if isinstance(x, Const):
        return _scale(y, x.value)
    if isinstance(y, Const):
        return _scale(x, y.value)
    if {x.side, y.side} == {"pre", "post"}:
        return Terms(_times(Term.of(x), Term.of(y)))
    _side(x.side, y.side, f"{x!r} * {y!r}")
    return Mul((*(x.parts if isinstance(x, Mul) else (x,)), *(y.parts if isinstance(y, Mul) else (y,))))
