r"""The rule language: signals of the two sides of a synapse, and terms built from them.

Over a window the weights are frozen, so every rule of this field is a sum of separable
terms

.. math::
    \Delta w_{ij} = \sum_k c_k\, g_k(w_{ij}) \sum_t \sum_b m_k(t, b)\,
        P_k(i, t, b)\, Q_k(j, t, b),

with :math:`P_k` built from postsynaptic signals only, :math:`Q_k` from presynaptic ones,
:math:`m_k` a third factor (reward, dopamine; directly or through an eligibility trace)
and :math:`g_k` the weight (Oja's :math:`-y^2 w`) or 1. A rule declares its terms with
these objects; :mod:`plasticity.engine` evaluates them.

Signals (per step, per sample, per neuron of one side):

* ``pre.spike``, ``post.spike``: the step's spikes;
* ``side.trace(tau)``: the trace after this step's spikes,
  :math:`x_t = e^{-dt/\tau} x_{t-1} + s_t` (``nearest=True``: reset to 1 at a spike);
  ``.before``: its value just before this step's spikes, :math:`e^{-dt/\tau} x_{t-1}`;
  ``.previous``: its value at the previous step, :math:`x_{t-1}` (``.delayed(k)``:
  :math:`x_{t-k}`);
* ``side.rate(tau)``: ``side.trace(tau) / tau`` (spikes per unit of ``dt``);
* ``post.voltage``: the neuron's membrane potential at the step;
* ``signal.lowpass(tau, init=None)``: :math:`\bar u_t = e^{-dt/\tau}\bar u_{t-1} +
  (1 - e^{-dt/\tau}) u_t` (exponential integrator of a signal held over the step),
  starting at the first value it filters, or at ``init``;
* ``modulator``: the third factor of the step (``rule.reward(r)``, ``rule.observe(...,
  reward=...)``), one value per sample; ``modulator.trace(tau)`` filters it (dopamine);
* ``relu(x)``, ``x + y``, ``x - y``, ``x * y``, ``x / number``, ``x ** k``,
  ``x.batch_mean()`` within one side (numbers and the modulator combine with either).

Terms: the product of a post-side and a pre-side signal (either or both may be missing:
the factor 1; with neither, a constant term such as ``lam * weight``), times numbers, the modulator,
and at most once :data:`weight`; and ``eligibility(terms, tau)``: the weight-shaped
trace :math:`e(t) = e^{-dt/\tau} e(t-1) + \zeta(t)` of a sum of terms, which a term may
multiply by the modulator. Anything that does not factor into post × pre (a non-linear
function of both sides) is a ``ValueError`` when it is written.

Example:
    >>> from plasticity.language import post, pre, relu
    >>> stdp_pos = 0.01 * post.spike * pre.trace(20.0)
    >>> stdp_pos
    0.01 * post.spike * pre.trace(20)
    >>> relu(post.voltage - pre.trace(10.0))
    Traceback (most recent call last):
    ...
    ValueError: relu(post.voltage - pre.trace(10)) does not factor into a post-side signal times a pre-side signal; write the term as a product of signals of one side each
"""

from __future__ import annotations

from typing import Any

from .text import _atom, _fmt, _nonzero, _number, _positive, _side, _text, _with_coef

__all__ = [
    "ETerm",
    "Signal",
    "Term",
    "Terms",
    "Eligibility",
    "pre",
    "post",
    "modulator",
    "weight",
    "relu",
    "eligibility",
    "as_terms",
    "parse",
]

SIDES = ("pre", "post")


class Signal:
    """A per-step signal of one side (``"pre"``, ``"post"``), of the third factor
    (``"mod"``, combines with either side) or a constant (``side=None``)."""

    kind: str
    args: tuple
    side: str | None

    def __init__(self, kind: str, side: str | None, *args: Any) -> None:
        self.kind, self.side, self.args = kind, side, args
        self._text: str | None = None

    # identity: the text, which names the signal uniquely (signals are immutable)
    def __repr__(self) -> str:
        if self._text is None:
            self._text = _text(self)
        return self._text

    def __hash__(self) -> int:
        return hash(repr(self))

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return isinstance(other, Signal) and repr(self) == repr(other)

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other: Any) -> Any:
        return _add(self, other)

    def __radd__(self, other: Any) -> Any:
        return _add(other, self)

    def __sub__(self, other: Any) -> Any:
        return _add(self, _scale(other, -1.0))

    def __rsub__(self, other: Any) -> Any:
        return _add(other, _scale(self, -1.0))

    def __neg__(self) -> Any:
        return _scale(self, -1.0)

    def __mul__(self, other: Any) -> Any:
        return _mul(self, other)

    def __rmul__(self, other: Any) -> Any:
        return _mul(other, self)

    def __truediv__(self, other: Any) -> Any:
        return _scale(self, 1.0 / _nonzero(other))

    def __pow__(self, power: Any) -> Signal:
        if isinstance(power, bool) or not isinstance(power, int) or not 1 <= power < 2**31:
            raise ValueError(f"{self!r} ** {power!r}: the power must be an int >= 1 (below 2**31)")
        return self if power == 1 else Signal("pow", self.side, self, power)

    # ------------------------------------------------------------------- filters
    def trace(self, tau: float, *, nearest: bool = False) -> Signal:
        """The exact trace :math:`x_t = e^{-dt/\\tau} x_{t-1} + s_t` of this signal
        (``nearest=True``, spikes only: :math:`x_t = 1` at a spike)."""
        tau = _positive(tau, "tau")
        if nearest and self.kind != "spike":
            raise ValueError(f"nearest=True is for spike trains; {self!r} is not one")
        if self.side is None:
            raise ValueError(f"the trace of a constant ({self!r}) is a constant; write the number")
        return Signal("trace", self.side, self, tau, bool(nearest))

    def lowpass(self, tau: float, *, init: float | None = None) -> Signal:
        """Low-pass filter :math:`\\bar u_t = d\\,\\bar u_{t-1} + (1 - d)\\,u_t`,
        :math:`d = e^{-dt/\\tau}`, starting at the first value filtered (or ``init``)."""
        tau = _positive(tau, "tau")
        init = None if init is None else _number(init, "`init`")
        if self.side is None:
            raise ValueError(f"the low-pass of a constant ({self!r}) is the constant")
        return Signal("lowpass", self.side, self, tau, init)

    @property
    def before(self) -> Signal:
        """A trace's value just before this step's input: :math:`e^{-dt/\\tau} x_{t-1}`."""
        if self.kind != "trace":
            raise ValueError(f"`.before` is defined for traces; {self!r} is not one")
        return Signal("before", self.side, self)

    @property
    def previous(self) -> Signal:
        """A filter's value at the previous step: ``delayed(1)``."""
        return self.delayed(1)

    def delayed(self, steps: int) -> Signal:
        """A filter's value ``steps`` steps back (its initial value before the first
        step): e.g. Clopath's filtered voltage read before the current spike."""
        if self.kind not in ("trace", "lowpass"):
            raise ValueError(f"`.delayed()` is defined for traces and low-pass filters, not {self!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` must be an int >= 1, got {steps!r}")
        return Signal("delay", self.side, self, steps)

    def batch_mean(self) -> Signal:
        """The mean over the samples of the batch (the same value for every sample)."""
        return Signal("batch_mean", self.side, self)

    # ------------------------------------------------------------------ analysis
    def nonnegative(self, binary: bool = True) -> bool:
        """Whether the signal is >= 0 by construction (``binary``: spikes are 0/1)."""
        k, a = self.kind, self.args
        if k == "spike":
            return binary
        if k in ("voltage", "mod"):
            return False
        if k == "const":
            return a[0] >= 0
        if k in ("relu",):
            return True
        if k == "pow":
            return a[1] % 2 == 0 or a[0].nonnegative(binary)
        if k == "scale":
            return a[1] >= 0 and a[0].nonnegative(binary)
        if k == "lowpass":
            return a[0].nonnegative(binary) and (a[2] is None or a[2] >= 0)
        if k == "powers":
            return True
        if k in ("trace", "before", "delay", "batch_mean", "future"):
            return a[0].nonnegative(binary)
        return all(x.nonnegative(binary) for x in a)  # add, mul

    def leaves(self) -> set[str]:
        """The input signals read: ``"spike"``, ``"voltage"``, ``"mod"``."""
        if self.kind in ("spike", "voltage", "mod"):
            return {self.kind}
        found: set[str] = set()
        for a in self.args:
            if isinstance(a, Signal):
                found |= a.leaves()
        return found


def _const(value: Any) -> Signal:
    return Signal("const", None, _number(value, "a number in a rule"))


def relu(x: Any) -> Signal:
    """:math:`\\max(x, 0)` of a signal of one side."""
    if isinstance(x, _Sum):
        text = f"relu({x!r})"
        raise ValueError(
            f"{text} does not factor into a post-side signal times a pre-side signal; write the "
            "term as a product of signals of one side each"
        )
    if not isinstance(x, Signal):
        return _const(max(_number(x, "relu's argument"), 0.0))
    return Signal("relu", x.side, x)


def _scale(x: Any, c: float) -> Any:
    if isinstance(x, _Sum):
        return x * c
    if not isinstance(x, Signal):
        return _const(_number(x, "a number in a rule") * c)
    if x.kind == "const":
        return _const(x.args[0] * c)
    if x.kind == "scale":
        return _scale(x.args[0], x.args[1] * c)
    return x if c == 1.0 else Signal("scale", x.side, x, c)


def _add(x: Any, y: Any) -> Any:
    if isinstance(x, _Sum) or isinstance(y, _Sum):
        return Terms(*as_terms(x).terms, *as_terms(y).terms)
    x = x if isinstance(x, Signal) else _const(x)
    y = y if isinstance(y, Signal) else _const(y)
    if x.kind == "const" and y.kind == "const":
        return _const(x.args[0] + y.args[0])
    if {x.side, y.side} >= {"pre", "post"}:  # a sum of one-sided terms: separable
        return Terms(*as_terms(x).terms, *as_terms(y).terms)
    side = _side(x.side, y.side, f"{x!r} + {y!r}")
    parts = [*(x.args if x.kind == "add" else (x,)), *(y.args if y.kind == "add" else (y,))]
    return Signal("add", side, *parts)


def _mul(x: Any, y: Any) -> Any:
    if isinstance(x, _Sum) or isinstance(y, _Sum):
        return as_terms(x).times(as_terms(y))
    if not isinstance(x, Signal):
        return _scale(y, _number(x, "a number in a rule"))
    if not isinstance(y, Signal):
        return _scale(x, _number(y, "a number in a rule"))
    if x.kind == "const":
        return _scale(y, x.args[0])
    if y.kind == "const":
        return _scale(x, y.args[0])
    if {x.side, y.side} == {"pre", "post"}:
        return Terms(_times(Term.of(x), Term.of(y)))
    side = _side(x.side, y.side, f"{x!r} * {y!r}")
    parts = [*(x.args if x.kind == "mul" else (x,)), *(y.args if y.kind == "mul" else (y,))]
    return Signal("mul", side, *parts)


_FILTERS = ("trace", "lowpass", "before", "previous", "delayed", "batch_mean")


class _Sum:
    """Arithmetic of terms (sums of products): everything becomes a :class:`Terms`."""

    def __add__(self, other: Any) -> Terms:
        return Terms(*as_terms(self).terms, *as_terms(other).terms)

    def __radd__(self, other: Any) -> Terms:
        return Terms(*as_terms(other).terms, *as_terms(self).terms)

    def __sub__(self, other: Any) -> Terms:
        return self + as_terms(other).times(as_terms(-1.0))

    def __rsub__(self, other: Any) -> Terms:
        return as_terms(other) + as_terms(self).times(as_terms(-1.0))

    def __neg__(self) -> Terms:
        return as_terms(self).times(as_terms(-1.0))

    def __mul__(self, other: Any) -> Terms:
        return as_terms(self).times(as_terms(other))

    def __rmul__(self, other: Any) -> Terms:
        return as_terms(other).times(as_terms(self))

    def __truediv__(self, other: Any) -> Terms:
        return self * (1.0 / _nonzero(other))

    def __getattr__(self, name: str) -> Any:
        if name in _FILTERS:  # e.g. (post.spike * pre.spike).trace(5.0), weight.lowpass(5.0)
            raise AttributeError(
                f"({self!r}).{name}: a term, the weight or an eligibility trace is no signal of "
                f"one side; apply .{name} to a signal of one side (post.spike, post.voltage, "
                "pre.trace(tau)...) before multiplying it into a term"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __pow__(self, power: Any) -> Terms:
        from ._powers import power_of  # (it reads the classes below)

        return power_of(self, power)

    def __rpow__(self, other: Any) -> Terms:
        raise ValueError(
            f"{other!r} ** ({self!r}): a power with a term as the exponent is not a term of "
            "the language; raise a signal to an int power instead (`x ** 2`)"
        )


class Term(_Sum):
    """``coef · [weight] · mod · post · pre`` summed over steps and samples (either side
    may be ``None``: a one-sided term)."""

    __slots__ = ("coef", "post", "pre", "mod", "weight")

    def __init__(
        self,
        coef: float = 1.0,
        post: Signal | None = None,
        pre: Signal | None = None,
        mod: Signal | None = None,
        weight: bool = False,
    ) -> None:
        self.coef, self.post, self.pre, self.mod, self.weight = coef, post, pre, mod, weight

    @staticmethod
    def of(x: Signal) -> Term:
        if x.kind == "const":
            return Term(coef=x.args[0])
        coef = 1.0
        if x.kind == "scale":
            x, coef = x.args
        if x.side == "mod":
            return Term(coef, mod=x)
        return Term(coef, **{x.side: x})  # type: ignore[arg-type]

    def __repr__(self) -> str:
        parts = ["weight"] if self.weight else []
        parts += [_atom(s) for s in (self.mod, self.post, self.pre) if s is not None]
        return _with_coef(self.coef, " * ".join(parts))


class Eligibility(_Sum):
    r"""The weight-shaped trace of a sum of terms: :math:`e(t) = e^{-dt/\tau} e(t-1) +
    \zeta(t)`, carried across windows; one per sample with ``per_sample=True``."""

    def __init__(self, terms: Any, tau: float, per_sample: bool = False) -> None:
        inner = as_terms(terms)
        for t in inner.terms:
            if isinstance(t, ETerm) or t.weight:
                raise ValueError(
                    f"eligibility({inner!r}): the eligibility of a term holds spikes and traces "
                    "only (no weight or nested eligibility inside)"
                )
        self.terms, self.tau, self.per_sample = inner, _positive(tau, "tau"), bool(per_sample)

    def __repr__(self) -> str:
        per = ", per_sample=True" if self.per_sample else ""
        return f"eligibility({self.terms!r}, {_fmt(self.tau)}{per})"


def eligibility(terms: Any, tau: float, *, per_sample: bool = False) -> Eligibility:
    """An eligibility trace of ``terms`` (see :class:`Eligibility`); multiply it by the
    :data:`modulator` (a reward, a dopamine concentration) to make a term.

    Example:
        >>> from plasticity.language import eligibility, modulator, post, pre
        >>> zeta = post.spike * pre.trace(20.0) - post.trace(20.0).before * pre.spike
        >>> modulator * eligibility(zeta, 500.0)
        modulator * eligibility(post.spike * pre.trace(20) - post.trace(20).before * pre.spike, 500)
    """
    return Eligibility(terms, tau, per_sample)


class ETerm(_Sum):
    """``coef · mod · eligibility``: the modulated read-out of an eligibility trace."""

    __slots__ = ("coef", "mod", "elig")

    def __init__(self, coef: float, mod: Signal | None, elig: Eligibility) -> None:
        self.coef, self.mod, self.elig = coef, mod, elig

    def __repr__(self) -> str:
        parts = [] if self.mod is None else [_atom(self.mod)]
        return _with_coef(self.coef, " * ".join([*parts, repr(self.elig)]))


class Terms(_Sum):
    """A sum of terms: what ``pos=`` and ``neg=`` hold."""

    def __init__(self, *terms: Term | ETerm) -> None:
        self.terms = tuple(terms)

    def times(self, other: Terms) -> Terms:
        return Terms(*(_times(a, b) for a in self.terms for b in other.terms))

    def __repr__(self) -> str:
        out = ""
        for t in self.terms:
            text = repr(t)
            if not out:
                out = text
            else:
                out += f" - {text[1:]}" if text.startswith("-") else f" + {text}"
        return out or "0"


def _join(a: Signal | None, b: Signal | None) -> Signal | None:
    return b if a is None else a if b is None else a * b


def _times(a: Term | ETerm, b: Term | ETerm) -> Term | ETerm:
    if isinstance(a, ETerm) and isinstance(b, ETerm):
        raise ValueError(f"({a!r}) * ({b!r}): a product of two eligibility traces is not separable")
    if isinstance(b, ETerm):
        a, b = b, a
    if isinstance(a, ETerm):
        if b.post is not None or b.pre is not None or b.weight:
            raise ValueError(
                f"({a!r}) * ({b!r}): an eligibility trace is weight-shaped; it can be multiplied "
                "by numbers and the modulator only (a product with spikes or traces does not "
                "factor into post × pre)"
            )
        return ETerm(a.coef * b.coef, _join(a.mod, b.mod), a.elig)
    if a.weight and b.weight:
        raise ValueError(f"({a!r}) * ({b!r}): the weight may appear once in a term")
    return Term(
        a.coef * b.coef,
        _join(a.post, b.post),
        _join(a.pre, b.pre),
        _join(a.mod, b.mod),
        a.weight or b.weight,
    )


def as_terms(x: Any) -> Terms:
    """``x`` (a signal, term, sum of terms, eligibility, the weight or a number) as a sum
    of terms."""
    if isinstance(x, Terms):
        return x
    if isinstance(x, (Term, ETerm)):
        return Terms(x)
    if isinstance(x, Eligibility):
        return Terms(ETerm(1.0, None, x))
    if isinstance(x, Signal):
        if x.kind == "add" and {a.side for a in x.args} >= {"pre", "post"}:
            return Terms(*(Term.of(a) for a in x.args))
        return Terms(Term.of(x))
    if isinstance(x, _Weight):
        return Terms(Term(weight=True))
    return Terms(Term(coef=_number(x, "a number in a rule")))


class _Weight(_Sum):
    """The synaptic weight :math:`w_{ij}` as a factor of a term (Oja's :math:`y^2 w`)."""

    def __repr__(self) -> str:
        return "weight"


class _SideFactory:
    """``pre`` or ``post``: the signals of one side of the synapse."""

    def __init__(self, side: str) -> None:
        self._side = side

    def __repr__(self) -> str:
        return self._side

    @property
    def spike(self) -> Signal:
        """This step's spikes (0/1, or graded amplitudes with ``spikes="graded"``)."""
        return Signal("spike", self._side)

    def trace(self, tau: float, *, nearest: bool = False) -> Signal:
        """The spikes' trace (see :meth:`Signal.trace`)."""
        return self.spike.trace(tau, nearest=nearest)

    def rate(self, tau: float) -> Signal:
        """The firing rate filtered with ``tau``: ``trace(tau) / tau``."""
        return self.trace(tau) / tau

    @property
    def voltage(self) -> Signal:
        """The membrane potential at the step (postsynaptic side only)."""
        if self._side != "post":
            raise ValueError(
                "pre.voltage: the presynaptic neurons' potential is not observed by the synapse; "
                "only post.voltage (the neuron's membrane potential) is available"
            )
        return Signal("voltage", "post")


pre = _SideFactory("pre")
post = _SideFactory("post")
#: the third factor of the step (reward, dopamine release), one value per sample
modulator = Signal("mod", "mod")
#: the synaptic weight as a factor of a term
weight = _Weight()

Declaration = Signal | Term | ETerm | Terms | Eligibility | None

from .parse import parse  # noqa: E402  (the text form reads the objects above)
