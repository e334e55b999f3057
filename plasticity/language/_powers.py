"""Powers of terms: ``(c * post.spike * pre.trace(10.0)) ** 2`` computed exactly, or a
``ValueError`` naming the term where a power is no term of the language."""

from __future__ import annotations

from typing import Any

from .terms import ETerm, Term, Terms, as_terms
from .text import _number

__all__ = ["power_of", "MAX_POWER_TERMS"]

#: the most terms a power of a sum of terms may multiply out into
MAX_POWER_TERMS = 64


def power_of(x: Any, power: Any) -> Terms:
    r"""``x ** power`` of a term or a sum of terms, exactly: a product term's factors each
    raised, :math:`(c\,m\,P\,Q)^k = c^k m^k P^k Q^k`; a sum multiplied out.

    Example:
        >>> from plasticity.language import post, pre
        >>> power_of(0.5 * post.spike * pre.trace(10.0), 2)
        0.25 * post.spike ** 2 * pre.trace(10) ** 2
    """
    terms = as_terms(x)
    if isinstance(power, bool) or not isinstance(power, int) or power < 1:
        raise ValueError(f"({terms!r}) ** {power!r}: the power of a term must be an int >= 1")
    if power == 1:
        return terms
    if any(isinstance(t, ETerm) for t in terms.terms):
        raise ValueError(f"({terms!r}) ** {power}: an eligibility trace enters a term once (a "
                         "product of eligibility traces is not separable)")  # fmt: skip
    if len(terms.terms) == 1:
        return Terms(_term_power(terms, terms.terms[0], power))
    return _multiplied_out(terms, power)


def _term_power(terms: Terms, t: Term, power: int) -> Term:
    """The power of the one product term ``t`` (of ``terms``): each factor raised."""
    if t.weight:
        raise ValueError(f"({terms!r}) ** {power}: the weight may appear once in a term; "
                         f"write weight * (...) ** {power} without the weight inside")  # fmt: skip
    try:
        coef = _number(t.coef**power, f"the number of ({terms!r}) ** {power}")
    except OverflowError:
        raise ValueError(f"({terms!r}) ** {power}: its number {t.coef!r} ** {power} is "
                         "not a finite float") from None  # fmt: skip
    post, pre, mod = (None if s is None else s**power for s in (t.post, t.pre, t.mod))
    return Term(coef, post, pre, mod)


def _multiplied_out(terms: Terms, power: int) -> Terms:
    """The power of a sum of terms, multiplied out (at most :data:`MAX_POWER_TERMS`)."""
    n = len(terms.terms)
    if n > 1 and (power > MAX_POWER_TERMS or n**power > MAX_POWER_TERMS):
        raise ValueError(f"({terms!r}) ** {power}: a power of a sum of {n} terms multiplies out "
                         f"into more than {MAX_POWER_TERMS} terms; write the product you mean")  # fmt: skip
    out = terms
    for _ in range(power - 1):
        out = out.times(terms)
    return out
