r"""Signal nodes: one frozen class per kind of signal, equal and hashed by its exact fields.

A signal is a value: ``pre.trace(20.0) == pre.trace(20.0)``, ``pre.trace(20.0) !=
pre.trace(20.000001)`` (floats are compared exactly), and the engine keys its tables and
carried state by the nodes themselves. Each kind keeps in its own class everything about
it: its fields, its text (:meth:`Signal.text`, exact: ``parse(repr(s)) == s``), whether it
is non-negative, its evaluation on a chunk of steps (:meth:`Signal.chunk`) and on one step
(:meth:`Signal.step`), and, for filters, its carried state (:class:`~.filters.Filter`).

How to add a signal kind:

1. Write a class deriving from :class:`Signal` (or :class:`~.nodes.Unary` for an
   elementwise function of one signal, :class:`~.filters.Filter` for a signal with state
   carried from step to step), decorated with :func:`node`; its fields are the dataclass
   fields (signals, floats, ints, bools), and ``side`` is a field or a property.
2. Give it ``text(fmt)`` (its text with numbers written by ``fmt``; :meth:`atom` is the
   text as an operand of ``*``), ``nonnegative(binary)``, and the evaluations
   ``chunk(c)`` (``c``: a :class:`~plasticity.engine.chunk.Chunk`; the ``[T, B, ...]``
   table of the chunk, or a number) and ``step(s)`` (``s``: the one-step evaluator of
   :mod:`plasticity.engine.step`; the ``[B, ...]`` row, or a number). Both read operands
   with ``c.value(x)``/``s.value(x)``, decay factors with ``c.decay(tau)``.
3. Class attributes tell the engine how to schedule it: ``elementwise`` (computed from
   its operands where read, no table kept), ``leaf`` (an input row), ``stateful`` (a
   filter: its value after a chunk is carried to the next, keyed by the node).
4. Make it writable: a method or function that builds it (``Signal.trace``,
   :func:`~plasticity.language.relu`) and, for the text form, its name in
   :mod:`plasticity.language.parse`.
5. Test it: its equation in the slow interpreter of the tests (an entry of ``SIGNALS``
   in ``tests/rule_interpreter.py``) and in the grammar of
   ``tests/test_rule_soundness.py``, which runs it on every kernel and the one-step path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .text import _fmt, _key_number, _legacy_number, _nonzero, _number, _positive

__all__ = ["Signal", "node"]

Fmt = Callable[[float], str]


def node(cls: type) -> type:
    """Makes ``cls`` a frozen node class (fields as a dataclass's; equality, hash and
    text from :class:`Signal`)."""
    return dataclass(frozen=True, eq=False, repr=False)(cls)


class Signal:
    """A per-step signal of one side (``"pre"``, ``"post"``), of the third factor
    (``"mod"``, combines with either side) or a constant (``side=None``)."""

    side: Any
    #: computed from its operands where read, never kept as a table of its own
    elementwise: ClassVar[bool] = False
    #: an input of the step (spikes, voltage, modulator) or a number
    leaf: ClassVar[bool] = False
    #: carries state from step to step (traces, low-pass filters, delays)
    stateful: ClassVar[bool] = False
    #: may exceed the floats on bounded inputs (an exponential)
    unbounded: ClassVar[bool] = False

    # ------------------------------------------------------------------ identity
    def values(self) -> tuple:
        """The node's fields, in order: what equality and the hash compare (kept, as the
        hash: an engine's lookups compare equal nodes of a plan at every step)."""
        v = self.__dict__.get("_values")
        if v is None:
            v = tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]
            object.__setattr__(self, "_values", v)
        return v

    def operands(self) -> tuple[Signal, ...]:
        """The signals this one is computed from."""
        return tuple(v for v in self.values() if isinstance(v, Signal))

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        if self is other:
            return True
        if type(other) is not type(self) or hash(self) != hash(other):
            return False
        return self.values() == other.values()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((type(self).__name__, self.values()))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict[str, Any]:  # the cached hash is per process: not saved
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_text", "_values")}

    # ---------------------------------------------------------------------- text
    def text(self, fmt: Fmt) -> str:
        """The signal as written in the language, numbers written with ``fmt``."""
        raise NotImplementedError

    def atom(self, fmt: Fmt) -> str:
        """The text as an operand of ``*`` (parenthesized where needed)."""
        return self.text(fmt)

    def primary(self, fmt: Fmt) -> str:
        """The text as the base of ``.method()`` or ``**`` (parenthesized unless it is a
        name, a call or an attribute)."""
        text = self.text(fmt)
        return f"({text})" if self.operation() else text

    def operation(self) -> bool:
        """Whether the text is an operation (``+``, ``*``, ``**``, a sign)."""
        return False

    def __repr__(self) -> str:
        text = self.__dict__.get("_text")
        if text is None:
            text = self.text(_fmt)
            object.__setattr__(self, "_text", text)
        return text

    @property
    def key(self) -> str:
        """The signal's state key in checkpoints (exact, format ``KEY_FORMAT``)."""
        return self.text(_key_number)

    @property
    def legacy_key(self) -> str:
        """Its state key in checkpoints of format 1 (6-digit numbers)."""
        return self.text(_legacy_number)

    # ------------------------------------------------------------------ analysis
    def nonnegative(self, binary: bool = True) -> bool:
        """Whether the signal is >= 0 by construction (``binary``: spikes are 0/1)."""
        return all(x.nonnegative(binary) for x in self.operands())

    def leaves(self) -> set[str]:
        """The inputs read: ``"spike"``, ``"voltage"``, ``"mod"``, ``"fed"`` (user-fed)."""
        return set().union(set(), *(x.leaves() for x in self.operands()))

    def spiking(self) -> bool:
        """Whether the signal is zero wherever its side's spikes are (binary spikes)."""
        return False

    def walk(self) -> list[Signal]:
        """This signal and every signal it is computed from (depth first)."""
        out: list[Signal] = [self]
        for x in self.operands():
            out += x.walk()
        return out

    # ---------------------------------------------------------------- evaluation
    def chunk(self, c: Any) -> Any:
        """Its table on a chunk of steps ``[T, B, ...]`` (or a number)."""
        raise NotImplementedError(type(self).__name__)

    def step(self, s: Any) -> Any:
        """Its row on one step ``[B, ...]`` (or a number)."""
        raise NotImplementedError(type(self).__name__)

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other: Any) -> Any:
        return _algebra()._add(self, other)

    def __radd__(self, other: Any) -> Any:
        return _algebra()._add(other, self)

    def __sub__(self, other: Any) -> Any:
        a = _algebra()
        return a._add(self, a._scale(other, -1.0))

    def __rsub__(self, other: Any) -> Any:
        a = _algebra()
        return a._add(other, a._scale(self, -1.0))

    def __neg__(self) -> Any:
        return _algebra()._scale(self, -1.0)

    def __mul__(self, other: Any) -> Any:
        return _algebra()._mul(self, other)

    def __rmul__(self, other: Any) -> Any:
        return _algebra()._mul(other, self)

    def __truediv__(self, other: Any) -> Any:
        return _algebra()._scale(self, 1.0 / _nonzero(other))

    def __pow__(self, power: Any) -> Signal:
        if isinstance(power, bool) or not isinstance(power, int) or not 1 <= power < 2**31:
            raise ValueError(f"{self!r} ** {power!r}: the power must be an int >= 1 (below 2**31)")
        from .nodes import Pow

        return self if power == 1 else Pow(self, power)

    def __abs__(self) -> Signal:
        from .functions import absolute

        return absolute(self)

    # ------------------------------------------------------------------- filters
    def trace(self, tau: float, *, nearest: bool = False) -> Signal:
        """The exact trace :math:`x_t = e^{-dt/\\tau} x_{t-1} + s_t` of this signal
        (``nearest=True``, spikes only: :math:`x_t = 1` at a spike)."""
        from .filters import Trace
        from .nodes import Spike

        tau = _positive(tau, "tau")
        if nearest and not isinstance(self, Spike):
            raise ValueError(f"nearest=True is for spike trains; {self!r} is not one")
        if self.side is None:
            raise ValueError(f"the trace of a constant ({self!r}) is a constant; write the number")
        return Trace(self, tau, bool(nearest))

    def lowpass(self, tau: float, *, init: float | None = None) -> Signal:
        """Low-pass filter :math:`\\bar u_t = d\\,\\bar u_{t-1} + (1 - d)\\,u_t`,
        :math:`d = e^{-dt/\\tau}`, starting at the first value filtered (or ``init``)."""
        from .filters import Lowpass

        tau = _positive(tau, "tau")
        init = None if init is None else _number(init, "`init`")
        if self.side is None:
            raise ValueError(f"the low-pass of a constant ({self!r}) is the constant")
        return Lowpass(self, tau, init)

    @property
    def before(self) -> Signal:
        """A trace's value just before this step's input: :math:`e^{-dt/\\tau} x_{t-1}`."""
        from .filters import Before, Trace

        if not isinstance(self, Trace):
            raise ValueError(f"`.before` is defined for traces; {self!r} is not one")
        return Before(self)

    @property
    def previous(self) -> Signal:
        """A filter's value at the previous step: ``delayed(1)``."""
        return self.delayed(1)

    def delayed(self, steps: int) -> Signal:
        """A filter's value ``steps`` steps back (its initial value before the first
        step): e.g. Clopath's filtered voltage read before the current spike."""
        from .filters import Delay, Lowpass, Trace

        if not isinstance(self, (Trace, Lowpass)):
            raise ValueError(f"`.delayed()` is defined for traces and low-pass filters, not {self!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` must be an int >= 1, got {steps!r}")
        return Delay(self, steps)

    def batch_mean(self) -> Signal:
        """The mean over the samples of the batch (the same value for every sample)."""
        from .nodes import BatchMean

        return BatchMean(self)


def _algebra():
    from . import algebra

    return algebra
