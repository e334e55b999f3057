"""Terms: products of a post-side and a pre-side signal times numbers, the modulator and
the weight; eligibility traces of terms; their sums. Values like the signals: equal and
hashed by their exact fields, written exactly (``parse(repr(t)) == t``)."""

from __future__ import annotations

from typing import Any

from .signals import Fmt, Signal
from .text import _fmt, _key_number, _legacy_number, _nonzero, _number, _positive, _with_coef

__all__ = ["Term", "ETerm", "Terms", "Eligibility", "eligibility", "as_terms", "weight"]

#: the filters of a signal, which a term, the weight or an eligibility trace has not
_FILTERS = ("trace", "lowpass", "before", "previous", "delayed", "batch_mean")


class _Sum:
    """Arithmetic of terms (sums of products): everything becomes a :class:`Terms`;
    equality and hash by :meth:`values`, the text by :meth:`text`."""

    def values(self) -> tuple:
        return ()

    def text(self, fmt: Fmt) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.text(_fmt)

    @property
    def key(self) -> str:
        """The state key in checkpoints (exact, format ``KEY_FORMAT``)."""
        return self.text(_key_number)

    @property
    def legacy_key(self) -> str:
        """The state key in checkpoints of format 1 (6-digit numbers)."""
        return self.text(_legacy_number)

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return type(other) is type(self) and self.values() == other.values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.values()))

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

    def __abs__(self) -> Any:
        from .functions import absolute

        return absolute(self)

    def __pow__(self, power: Any) -> Terms:
        from ._powers import power_of

        return power_of(self, power)

    def __rpow__(self, other: Any) -> Terms:
        raise ValueError(
            f"{other!r} ** ({self!r}): a power with a term as the exponent is not a term of "
            "the language; raise a signal to an int power instead (`x ** 2`)"
        )

    def __getattr__(self, name: str) -> Any:
        if name in _FILTERS:  # e.g. (post.spike * pre.spike).trace(5.0), weight.lowpass(5.0)
            raise AttributeError(
                f"({self!r}).{name}: a term, the weight or an eligibility trace is no signal of "
                f"one side; apply .{name} to a signal of one side (post.spike, post.voltage, "
                "pre.trace(tau)...) before multiplying it into a term"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


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
        """The term of a signal, in canonical form: the numbers of a product gathered
        into ``coef`` and its modulator factors into ``mod`` (so that every way of
        writing a term gives the same value, and its text reads back as it)."""
        from .nodes import Const, Mul

        if isinstance(x, Const):
            return Term(coef=x.value)
        factors: list[Signal] = []
        coef = _factors(x, 1.0, factors)
        mod, parts = None, []
        for p in factors:
            if p.side == "mod":
                mod = p if mod is None else mod * p
            else:
                parts.append(p)
        if not parts:
            return Term(coef, mod=mod)
        x = parts[0] if len(parts) == 1 else Mul(tuple(parts))
        return Term(coef, mod=mod, **{x.side: x})  # type: ignore[arg-type]

    def values(self) -> tuple:
        return (self.coef, self.post, self.pre, self.mod, self.weight)

    def text(self, fmt: Fmt) -> str:
        parts = ["weight"] if self.weight else []
        parts += [s.atom(fmt) for s in (self.mod, self.post, self.pre) if s is not None]
        return _with_coef(self.coef, " * ".join(parts), fmt)


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

    def values(self) -> tuple:
        return (self.terms, self.tau, self.per_sample)

    def text(self, fmt: Fmt) -> str:
        per = ", per_sample=True" if self.per_sample else ""
        return f"eligibility({self.terms.text(fmt)}, {fmt(self.tau)}{per})"

    @property
    def key(self) -> str:
        return f"elig:{self.text(_key_number)}"

    @property
    def legacy_key(self) -> str:
        return f"elig:{self.text(_legacy_number)}"


def eligibility(terms: Any, tau: float, *, per_sample: bool = False) -> Eligibility:
    """An eligibility trace of ``terms`` (see :class:`~plasticity.language.Eligibility`);
    multiply it by the :data:`~plasticity.modulator` (a reward, a dopamine concentration) to make a term.

    Example:
        >>> from plasticity.language import eligibility, modulator, post, pre
        >>> zeta = post.spike * pre.trace(20.0) - post.trace(20.0).before * pre.spike
        >>> modulator * eligibility(zeta, 500.0)
        modulator * eligibility(post.spike * pre.trace(20) - post.trace(20).before * pre.spike, 500)
    """
    return Eligibility(terms, tau, per_sample)


class ETerm(_Sum):
    r"""``coef · mod · post · eligibility``: the modulated read-out of an eligibility trace
    (``post``: a post-side factor, per neuron, multiplying row :math:`i` of the trace at
    every step: :math:`\sum_t L_i(t)\, e_{ij}(t)`; per-sample traces only)."""

    __slots__ = ("coef", "mod", "elig", "post")

    def __init__(self, coef: float, mod: Signal | None, elig: Eligibility,
                 post: Signal | None = None) -> None:  # fmt: skip
        self.coef, self.mod, self.elig, self.post = coef, mod, elig, post

    def values(self) -> tuple:
        return (self.coef, self.mod, self.elig, self.post)

    def text(self, fmt: Fmt) -> str:
        parts = [s.atom(fmt) for s in (self.mod, self.post) if s is not None]
        return _with_coef(self.coef, " * ".join([*parts, self.elig.text(fmt)]), fmt)


class Terms(_Sum):
    """A sum of terms: what ``pos=`` and ``neg=`` hold."""

    def __init__(self, *terms: Term | ETerm) -> None:
        self.terms = tuple(terms)

    def values(self) -> tuple:
        return self.terms

    def times(self, other: Terms) -> Terms:
        return Terms(*(_times(a, b) for a in self.terms for b in other.terms))

    def text(self, fmt: Fmt) -> str:
        out = ""
        for t in self.terms:
            text = t.text(fmt)
            if not out:
                out = text
            else:
                out += f" - {text[1:]}" if text.startswith("-") else f" + {text}"
        return out or "0"


def _factors(x: Signal, coef: float, out: list[Signal]) -> float:
    """The factors of a product into ``out``, nested products and scales flattened (so
    that ``(c * a * m) * b`` is the term ``c * a * b`` times ``m``, as its text reads
    back); returns ``coef`` times its numbers, gathered left to right."""
    from .nodes import Mul, Scale

    if isinstance(x, Scale):
        return _factors(x.x, coef * x.c, out)
    if isinstance(x, Mul):
        for p in x.parts:
            coef = _factors(p, coef, out)
        return coef
    out.append(x)
    return coef


def _join(a: Signal | None, b: Signal | None) -> Signal | None:
    return b if a is None else a if b is None else a * b


def _times(a: Term | ETerm, b: Term | ETerm) -> Term | ETerm:
    if isinstance(a, ETerm) and isinstance(b, ETerm):
        raise ValueError(f"({a!r}) * ({b!r}): a product of two eligibility traces is not separable")
    if isinstance(b, ETerm):
        a, b = b, a
    if isinstance(a, ETerm):
        if b.pre is not None or b.weight:
            raise ValueError(
                f"({a!r}) * ({b!r}): an eligibility trace is weight-shaped; it can be multiplied "
                "by numbers, the modulator and post-side signals only (a product with "
                "presynaptic signals or the weight does not factor into post × pre)"
            )
        if b.post is not None and not a.elig.per_sample:  # (user-fed signals, issue 23)
            raise ValueError(
                f"({a!r}) * ({b!r}): an eligibility trace is weight-shaped; a post-side factor "
                "multiplies each sample's trace by that sample's values, so the trace must be "
                "kept per sample: write eligibility(..., per_sample=True)"
            )
        return ETerm(a.coef * b.coef, _join(a.mod, b.mod), a.elig, _join(a.post, b.post))
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
    from .nodes import Add

    if isinstance(x, Terms):
        return x
    if isinstance(x, (Term, ETerm)):
        return Terms(x)
    if isinstance(x, Eligibility):
        return Terms(ETerm(1.0, None, x))
    if isinstance(x, Signal):
        if isinstance(x, Add) and {a.side for a in x.parts} >= {"pre", "post"}:
            return Terms(*(Term.of(a) for a in x.parts))
        return Terms(Term.of(x))
    if isinstance(x, _Weight):
        return Terms(Term(weight=True))
    return Terms(Term(coef=_number(x, "a number in a rule")))


class _Weight(_Sum):
    """The synaptic weight :math:`w_{ij}` as a factor of a term (Oja's :math:`y^2 w`)."""

    def text(self, fmt: Fmt) -> str:
        return "weight"


#: the synaptic weight as a factor of a term
weight = _Weight()
