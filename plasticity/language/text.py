"""How numbers are written in the text of signals and terms, and the checks of the
numbers and sides that a rule combines.

Printing is exact: :func:`_fmt` writes a float in its short form (``20``, ``0.01``) where
that reads back as the same float, and in Python's round-trip form otherwise
(``20.000001``, ``0.3333333333333333``), so ``parse(repr(x)) == x``.

The state of a rule (filters, eligibility traces) is keyed in checkpoints by the text of
the signal written with :func:`_key_number` (format :data:`KEY_FORMAT`), a fixed exact
form kept apart from the printing: checkpoints stay loadable if printing changes.
Checkpoints of format 1 (before the format was recorded) named their state with
:func:`_legacy_number` (six significant digits), which loading still reads.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__: list[str] = []

#: the format of the state's keys in checkpoints (1: 6-digit names, before it was recorded)
KEY_FORMAT = 2


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the floats
        raise ValueError(f"{what} must be finite, got an int of {int(value).bit_length()} "
                         "bits") from None  # fmt: skip
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return value


def _fmt(x: float) -> str:
    """``x`` exactly: its short form where that reads back as ``x`` (``20``, ``0.05``),
    else Python's round-trip ``repr``."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _key_number(x: float) -> str:
    """A number in a state key of format :data:`KEY_FORMAT` (exact; fixed, whatever
    printing becomes)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _legacy_number(x: float) -> str:
    """A number in a state key of format 1 (six significant digits: not exact)."""
    return f"{x:g}"


def _atom(s: Any) -> str:
    """A signal's text as an operand of ``*`` (parenthesized where needed)."""
    return s.atom(_fmt)


def _positive(value: Any, what: str) -> float:
    value = _number(value, f"`{what}`")
    if value <= 0:
        raise ValueError(f"`{what}` must be > 0, got {value}")
    return value


def _nonzero(value: Any) -> float:
    value = _number(value, "a divisor")
    if value == 0:
        raise ZeroDivisionError("division of a signal by zero")
    return value


def _with_coef(coef: float, text: str, fmt=_fmt) -> str:
    if not text:
        return fmt(coef)
    return text if coef == 1.0 else f"-{text}" if coef == -1.0 else f"{fmt(coef)} * {text}"


def _side(a: str | None, b: str | None, text: str) -> str | None:
    """The side of a combination within one side (the modulator joins either)."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if a == "mod":
        return b
    if b == "mod":
        return a
    raise ValueError(
        f"{text} does not factor into a post-side signal times a pre-side signal; write the "
        "term as a product of signals of one side each"
    )
