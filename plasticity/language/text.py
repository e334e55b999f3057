"""How signals and terms are written (their ``repr``, which is also their identity) and
the checks of the numbers and sides that a rule combines."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__: list[str] = []


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
    return f"{x:g}"


def _text(s: Any) -> str:
    k, a = s.kind, s.args
    if k == "spike":
        return f"{s.side}.spike"
    if k == "voltage":
        return "post.voltage"
    if k == "mod":
        return "modulator"
    if k == "fed":  # a user-fed signal (issue 23)
        return f"{s.side}.signal({a[0]!r})"
    if k == "const":
        return _fmt(a[0])
    if k == "trace":
        base = f"{s.side}" if a[0].kind == "spike" else f"({a[0]!r})"
        near = ", nearest=True" if a[2] else ""
        return f"{base}.trace({_fmt(a[1])}{near})"
    if k == "lowpass":
        init = "" if a[2] is None else f", init={_fmt(a[2])}"
        return f"{_atom(a[0])}.lowpass({_fmt(a[1])}{init})"
    if k == "before":
        return f"{a[0]!r}.before"
    if k == "delay":
        return f"{a[0]!r}.previous" if a[1] == 1 else f"{a[0]!r}.delayed({a[1]})"
    if k == "batch_mean":
        return f"{_atom(a[0])}.batch_mean()"
    if k == "relu":
        return f"relu({a[0]!r})"
    if k == "pow":
        return f"{_atom(a[0])} ** {a[1]}"
    if k == "scale":
        c = a[1]
        if c == -1.0:
            return f"-{_atom(a[0])}"
        return f"{_fmt(c)} * {_atom(a[0])}"
    if k == "add":
        out = repr(a[0])
        for x in a[1:]:
            t = repr(x)
            out += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
        return out
    if k == "mul":
        return " * ".join(_atom(x) for x in a)
    if k == "future":  # the engine's own: a trace run backwards within a chunk
        return f"future({a[0]!r}, {_fmt(a[1])}{', strict' if a[2] else ''})"
    if k == "powers":
        return f"powers({_fmt(a[0])})"
    raise AssertionError(k)


def _atom(s: Any) -> str:
    t = repr(s)
    return f"({t})" if s.kind in ("add", "scale") or (s.kind == "const" and s.args[0] < 0) else t


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


def _with_coef(coef: float, text: str) -> str:
    if not text:
        return _fmt(coef)
    return text if coef == 1.0 else f"-{text}" if coef == -1.0 else f"{_fmt(coef)} * {text}"


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
