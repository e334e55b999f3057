r"""An independent, slow interpreter of rule declarations (for the tests).

It reads a declaration's objects (:mod:`plasticity.language`: signals, :class:`Term`,
:class:`ETerm`, :class:`Eligibility`, :class:`Terms`) and computes Δw step by step in
float64 from the equations of the language's docstring and of
``docs/guide/rule_language.md``, with none of the engine's machinery (no chunks, scans,
future traces, rewrites, kernels or sign splits): it imports neither
``plasticity.engine`` nor ``plasticity.functional``.

Per step :math:`t` (counted over every window seen), sample :math:`b` and neuron, every
signal is evaluated from its definition; filters keep their value after each step, and
their whole history (for ``.delayed(k)``). A term adds

.. math:: c \cdot g(w_{ij}) \sum_b m(t, b)\, P(i, t, b)\, Q(j, t, b)

(a missing side or third factor is the factor 1, ``g`` the weight or 1); an eligibility
trace is :math:`e(t) = d\, e(t-1) + \zeta(t)` with :math:`\zeta(t)` its terms' sum over
the batch (per sample with ``per_sample=True``) and adds :math:`c \sum_b m(t, b)\, e(t)`
(a shared trace is read with the batch's common third factor); a post-side factor
:math:`L` of the read-out (``post.signal("L") * eligibility(..., per_sample=True)``)
multiplies row :math:`i` of each sample's trace: :math:`c \sum_b m(t, b) L_i(t, b)
e_{bij}(t)`. The window's Δw is the sum over its steps, times ``1/B`` for
``batch_reduction="mean"``.

A user-fed signal (``post.signal(name)``, ``pre.signal(name)``) is, at step :math:`t`,
the value given for that step, sample and neuron of its side (``signals[name][t]``).

The signal kinds (the node classes of :mod:`plasticity.language`) are dispatched in one
table, :data:`SIGNALS` (one small function per class, written from the kind's equation,
not from its ``chunk``/``step``), and a signal's fields are read in one place,
``_fields``: a new kind of signal is one more entry, which tests/test_rule_soundness.py
then checks against every kernel and the one-step path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from plasticity.language import (
    Abs,
    Add,
    BatchMean,
    Before,
    Const,
    Delay,
    ETerm,
    Exp,
    Fed,
    Heaviside,
    Lowpass,
    Modulator,
    Mul,
    Pow,
    Relu,
    Scale,
    Sigmoid,
    Signal,
    Spike,
    Tanh,
    Term,
    Trace,
    Voltage,
    as_terms,
)

__all__ = ["Interpreter", "SIGNALS", "fed_signals", "leaves"]

F64 = torch.float64


def _fields(s: Signal) -> tuple[type, str | None, tuple]:
    """A signal's kind (its node class), side and arguments (its fields in order; a sum's
    or a product's operands): the one place that reads a signal's fields."""
    args = s.values()
    if isinstance(s, (Add, Mul)):
        args = tuple(s.parts)
    return type(s), s.side, tuple(args)


def _key(s: Any) -> Any:
    """A signal's exact structural key (numbers compared exactly, not by their text)."""
    if isinstance(s, Signal):
        kind, side, args = _fields(s)
        return (kind.__name__, side, tuple(_key(a) for a in args))
    return (type(s).__name__, s)


#: the input signals, by what they read
_INPUTS = {Spike: "spike", Voltage: "voltage", Modulator: "mod"}


def _signals(decl: Any) -> list[Signal]:
    """Every signal node of a declaration (its terms', eligibility traces' and
    read-outs' factors, and theirs), depth first."""
    found: list[Signal] = []

    def walk(s: Any) -> None:
        if isinstance(s, Signal):
            found.append(s)
            for a in _fields(s)[2]:
                walk(a)

    for term in as_terms(decl).terms if decl is not None else ():
        inner = term.elig.terms.terms if isinstance(term, ETerm) else ()
        for t in (term, *inner):
            for s in (getattr(t, "post", None), getattr(t, "pre", None), t.mod):
                walk(s)
    return found


def leaves(decl: Any) -> set[str]:
    """The inputs a declaration reads: ``"spike"``, ``"voltage"``, ``"mod"``."""
    return {_INPUTS[type(s)] for s in _signals(decl) if type(s) in _INPUTS}


def fed_signals(decl: Any) -> dict[str, str]:
    """The user-fed signals a declaration reads: ``{name: side}``."""
    return {s.name: s.side for s in _signals(decl) if isinstance(s, Fed)}


class _Step:
    """The signals of one step: each evaluated once from its definition."""

    def __init__(self, run: Interpreter, rows: dict[str, Tensor]) -> None:
        self.run, self.rows = run, rows
        self.memo: dict[Any, Any] = {}

    def value(self, s: Signal) -> Any:
        key = _key(s)
        if key not in self.memo:
            kind, side, args = _fields(s)
            if kind not in SIGNALS:
                raise NotImplementedError(f"the interpreter has no entry for {kind.__name__}")
            self.memo[key] = SIGNALS[kind](self, side, args, key)
        return self.memo[key]

    def decay(self, tau: float) -> float:
        return self.run.decay(tau)

    # a filter's value before this step, and the values it had before the first step
    def last(self, key: Any) -> Any:
        past = self.run.past.get(key)
        return past[-1] if past else self.run.initial[key]

    def filtered(self, key: Any, value: Any) -> Any:
        self.run.pending[key] = value  # kept at the end of the step
        return value


def _spike(step: _Step, side, args, key) -> Tensor:
    return step.rows[side]


def _voltage(step: _Step, side, args, key) -> Tensor:
    return step.rows["voltage"]


def _mod(step: _Step, side, args, key) -> Tensor:
    return step.rows["mod"][:, None]  # [B, 1]: one value per sample, for either side


def _fed(step: _Step, side, args, key) -> Tensor:
    """The value fed for this step: ``[B, N]`` of its side."""
    return step.rows["signal:" + args[1]]


def _const(step: _Step, side, args, key) -> float:
    return float(args[0])


def _scale(step: _Step, side, args, key) -> Any:
    return step.value(args[0]) * args[1]


def _add(step: _Step, side, args, key) -> Any:
    out = 0.0
    for a in args:
        out = out + step.value(a)
    return out


def _mul(step: _Step, side, args, key) -> Any:
    out = 1.0
    for a in args:
        out = out * step.value(a)
    return out


def _relu(step: _Step, side, args, key) -> Any:
    x = step.value(args[0])
    return x.clamp_min(0.0) if isinstance(x, Tensor) else max(x, 0.0)


def _abs(step: _Step, side, args, key) -> Any:
    x = step.value(args[0])
    return x.abs() if isinstance(x, Tensor) else abs(x)


def _sigmoid(step: _Step, side, args, key) -> Any:
    """:math:`1 / (1 + e^{-x})`."""
    x = torch.as_tensor(step.value(args[0]), dtype=F64)
    return 1.0 / (1.0 + torch.exp(-x))


def _exp(step: _Step, side, args, key) -> Any:
    return torch.exp(torch.as_tensor(step.value(args[0]), dtype=F64))


def _tanh(step: _Step, side, args, key) -> Any:
    """:math:`(e^{x} - e^{-x}) / (e^{x} + e^{-x}) = \\mathrm{sign}(x) (1 - e^{-2|x|}) /
    (1 + e^{-2|x|})`."""
    x = torch.as_tensor(step.value(args[0]), dtype=F64)
    e = torch.exp(-2.0 * x.abs())
    return torch.sign(x) * -torch.expm1(-2.0 * x.abs()) / (1.0 + e)


def _heaviside(step: _Step, side, args, key) -> Any:
    """1 where :math:`x > 0`, else 0."""
    x = torch.as_tensor(step.value(args[0]), dtype=F64)
    return torch.where(x > 0, 1.0, 0.0).to(F64)


def _pow(step: _Step, side, args, key) -> Any:
    x, k = step.value(args[0]), args[1]
    out = x
    for _ in range(k - 1):  # x ** k as k - 1 products
        out = out * x
    return out


def _batch_mean(step: _Step, side, args, key) -> Any:
    x = step.value(args[0])
    return x.mean(0, keepdim=True) if isinstance(x, Tensor) else x


def _trace(step: _Step, side, args, key) -> Tensor:
    """:math:`x_t = d x_{t-1} + s_t`, from 0; nearest: :math:`x_t = s_t` at a spike."""
    s, tau, nearest = args
    x = step.value(s)
    step.run.initial.setdefault(key, torch.zeros_like(x))
    d = step.decay(tau)
    before = d * step.last(key)
    out = torch.where(x != 0, x, before) if nearest else before + x
    return step.filtered(key, out)


def _lowpass(step: _Step, side, args, key) -> Tensor:
    r""":math:`\bar u_t = d \bar u_{t-1} + (1 - d) u_t`, from ``init`` or the first value."""
    u, tau, init = args
    x = step.value(u)
    step.run.initial.setdefault(key, x.clone() if init is None else torch.full_like(x, init))
    d = step.decay(tau)
    return step.filtered(key, d * step.last(key) + (1.0 - d) * x)


def _before(step: _Step, side, args, key) -> Tensor:
    """A trace's value just before this step's input: :math:`d x_{t-1}`."""
    f = args[0]
    step.value(f)  # (the trace still advances)
    return step.decay(_fields(f)[2][1]) * step.last(_key(f))


def _delay(step: _Step, side, args, key) -> Tensor:
    """A filter's value ``k`` steps back (its initial value before the first step)."""
    f, k = args
    step.value(f)
    fk = _key(f)
    past = step.run.past.get(fk, [])
    return past[len(past) - k] if len(past) >= k else step.run.initial[fk]


#: one evaluation per signal kind (node class): ``f(step, side, args, key) -> value``
#: (``[B, N]`` tensors of a side, ``[B, 1]`` for the third factor, numbers for constants)
SIGNALS: dict[type, Callable[..., Any]] = {
    Spike: _spike, Voltage: _voltage, Modulator: _mod, Fed: _fed, Const: _const,
    Scale: _scale, Add: _add, Mul: _mul, Relu: _relu, Pow: _pow, Abs: _abs,
    Sigmoid: _sigmoid, Exp: _exp, Tanh: _tanh, Heaviside: _heaviside,
    BatchMean: _batch_mean, Trace: _trace, Lowpass: _lowpass,
    Before: _before, Delay: _delay,
}  # fmt: skip


class Interpreter:
    """Δw of a declaration ``pos``/``neg`` window after window, its state carried.

    Example:
        >>> import torch
        >>> from plasticity.language import post, pre
        >>> run = Interpreter(post.spike * pre.trace(2.0), None)
        >>> x = torch.tensor([[[1.0]], [[0.0]]]); y = torch.tensor([[[0.0]], [[1.0]]])
        >>> float(run.window(torch.zeros(1, 1), x, y)[0, 0]) == math.exp(-0.5)
        True
    """

    def __init__(self, pos: Any, neg: Any, *, dt: float = 1.0, decay: str = "exact",
                 batch_reduction: str = "mean") -> None:  # fmt: skip
        self.dt, self.method, self.reduction = dt, decay, batch_reduction
        self.terms = [(sign, t) for sign, decl in ((1.0, pos), (-1.0, neg)) if decl is not None
                      for t in as_terms(decl).terms]  # fmt: skip
        self.past: dict[Any, list] = {}  # each filter's values, one per step seen
        self.initial: dict[Any, Any] = {}  # each filter's value before the first step
        self.pending: dict[Any, Any] = {}
        self.elig: dict[int, Tensor] = {}  # per eligibility term: its trace

    def decay(self, tau: float) -> float:
        if self.method == "exact":
            return math.exp(-self.dt / tau)
        return 1.0 - self.dt / tau

    def window(self, weight: Tensor, pre: Tensor, post: Tensor, voltage: Tensor | None = None,
               reward: Tensor | None = None,
               signals: dict[str, Tensor] | None = None) -> Tensor:  # fmt: skip
        """Δw of one window: ``pre`` ``[T, B, N_in]``, ``post`` ``[T, B, N_out]``,
        ``voltage`` like ``post``, ``reward`` ``[T, B]`` (the third factor), ``signals``
        the user-fed values by name, ``[T, B, N]`` of their side."""
        w = weight.detach().to(F64)
        steps, batch = pre.shape[:2]
        dw = torch.zeros_like(w)
        for t in range(steps):
            rows = {"pre": pre[t].to(F64), "post": post[t].to(F64)}
            if voltage is not None:
                rows["voltage"] = voltage[t].to(F64)
            if reward is not None:
                rows["mod"] = reward[t].to(F64)
            for name, values in (signals or {}).items():
                rows["signal:" + name] = values[t].to(F64)
            step = _Step(self, rows)
            for i, (sign, term) in enumerate(self.terms):
                if isinstance(term, ETerm):
                    dw += sign * self._read_out(step, i, term, w.shape, batch)
                else:
                    dw += sign * self._term(step, term, w, batch, per_sample=False)
            for key, value in self.pending.items():  # the filters' values after the step
                self.past.setdefault(key, []).append(value)
            self.pending = {}
        return dw / batch if self.reduction == "mean" and batch else dw

    def _term(self, step: _Step, term: Term, w: Tensor, batch: int, per_sample: bool) -> Tensor:
        """``c·g(w)·Σ_b m P Q`` of one step (``[B, *w]`` per sample)."""
        n_out, n_in = w.shape
        p = _rows(step, term.post, batch, n_out)
        q = _rows(step, term.pre, batch, n_in)
        m = _rows(step, term.mod, batch, 1)[:, 0]
        value = term.coef * torch.einsum("b,bi,bj->bij", m, p, q)
        if term.weight:
            value = value * w
        return value if per_sample else value.sum(0)

    def _read_out(self, step: _Step, i: int, term: ETerm, shape, batch: int) -> Tensor:
        """``c · Σ_b m(t, b) e(t)`` after adding this step's ζ to the eligibility trace
        (``c · Σ_b m(t, b) L_i(t, b) e_bij(t)`` with a post-side factor ``L``)."""
        elig = term.elig
        per_sample = elig.per_sample
        zeta = sum(self._term(step, t, torch.zeros(shape, dtype=F64), batch, per_sample)
                   for t in elig.terms.terms)  # fmt: skip
        d = self.decay(elig.tau)
        e = self.elig.get(i)
        e = zeta if e is None else d * e + zeta
        self.elig[i] = e
        m = _rows(step, term.mod, batch, 1)[:, 0]  # [B]
        if per_sample:
            rows = _rows(step, term.post, batch, shape[0])  # [B, N_out]: the post factor
            return term.coef * torch.einsum("b,bi,bij->ij", m, rows, e)
        assert term.post is None, "a post-side factor reads a per-sample trace"
        assert bool((m == m[0]).all()), "a shared eligibility trace reads a common third factor"
        return term.coef * m[0] * e


def _rows(step: _Step, s: Signal | None, batch: int, width: int) -> Tensor:
    """A factor's value as ``[B, width]`` (``None``: ones)."""
    if s is None:
        return torch.ones(batch, width, dtype=F64)
    x = step.value(s)
    if not isinstance(x, Tensor):
        return torch.full((batch, width), float(x), dtype=F64)
    return x.expand(batch, width) if x.shape != (batch, width) else x
