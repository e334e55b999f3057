r"""Weight-dependence ("bounding") functions for plasticity updates.

A learning rule produces two non-negative magnitudes per synapse: potentiation
``pos`` and depression ``neg``. A bound scales them by a function of the current
weight :math:`w` so that weights approach their limits softly (soft bounds) or stop
at them (hard bounds). The signed update is then

.. math::

    \Delta w = f_+(w)\,\mathrm{pos} - f_-(w)\,\mathrm{neg}.

Two kinds of callables are provided:

* **Half bounds** ``f(param, update, limit, **kw) -> Tensor`` scale one component:
  the ``upper_*`` functions scale ``pos`` against the upper limit, the ``lower_*``
  functions scale ``neg`` against the lower limit (:class:`HalfBounding`).
* **Full bounds** ``f(param, pos, neg, max, min, **kw) -> Tensor`` return the signed
  update :math:`\Delta w` (:class:`FullBounding`). Either limit may be ``None``, which
  leaves that side unbounded.

Each function here carries its kind in ``fn.bound_kind`` (``"upper"``, ``"lower"`` or
``"full"``; :func:`bound_kind` reads it, also through a ``functools.partial``), so that
:class:`~plasticity.Accumulator` refuses one given to the wrong setter: an upper bound
passed to ``lowerbound`` would scale depression by the distance to the *upper* limit. A
user's own callable has no kind and is accepted by any setter of its shape.

Soft bases (``max - w`` and ``w - min``) are clamped at zero, so a weight that lies
outside its range is never pushed further out, never flips the sign of a component and
never produces NaN (a negative base raised to a fractional power would). For the same
reason an exponent ``μ = 0`` gives ``[w < max]`` and ``[w > min]`` (``0⁰`` counts as 0:
additive inside the range, a hard stop at the limit, as the ``*_sharp`` bounds).

An infinite limit (``max = inf``, ``min = -inf``, also elements of a tensor limit) leaves
its side unbounded: the factor is 1 in every family, as a ``None`` limit of a full bound
(``inf - w`` would make ``inf · 0 = NaN``). :func:`scaled_power` then needs ``range=``.

This module is pure tensor math and imports nothing else from ``plasticity``.

Example:
    >>> import torch
    >>> from plasticity import bounds
    >>> w = torch.tensor([0.0, 0.5, 1.0, 1.5])
    >>> bounds.upper_multiplicative(w, torch.ones(4), 1.0)
    tensor([1.0000, 0.5000, 0.0000, 0.0000])
    >>> bounds.multiplicative(w, torch.ones(4), torch.ones(4), 1.0, 0.0)
    tensor([ 1.0000,  0.0000, -1.0000, -1.5000])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from numbers import Real
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "bound_kind",
    "HalfBounding",
    "FullBounding",
    "upper_power",
    "lower_power",
    "upper_scaled_power",
    "lower_scaled_power",
    "upper_multiplicative",
    "lower_multiplicative",
    "upper_sharp",
    "lower_sharp",
    "power",
    "scaled_power",
    "multiplicative",
    "sharp",
]

Limit = float | Tensor


@runtime_checkable
class HalfBounding(Protocol):
    r"""Scales one update component by a function of the parameter and one limit.

    Args:
        param: current value of the parameter (e.g. a synaptic weight).
        update: the non-negative component to scale (``pos`` or ``neg``).
        limit: the upper limit (for functions scaling ``pos``) or the lower limit (for
            functions scaling ``neg``); a number or a tensor broadcastable to ``param``.
        **kwargs: keyword arguments of the particular bound, e.g. ``power=``.

    Returns:
        The scaled component, of the broadcast shape of ``param`` and ``update``.

    Example:
        Any function of this shape works as a bound, e.g. a square-root soft bound:

        >>> import torch
        >>> from plasticity import Accumulator
        >>> def upper_sqrt(param, update, limit, /):
        ...     return (limit - param).clamp_min(0).sqrt() * update
        >>> acc = Accumulator()
        >>> acc.upperbound(upper_sqrt, 1.0)
        >>> acc.pos = torch.ones(2)
        >>> acc.update(torch.tensor([0.75, 0.0]))
        tensor([0.5000, 1.0000])
    """

    def __call__(self, param: Tensor, update: Tensor, limit: Limit, /, **kwargs) -> Tensor: ...


@runtime_checkable
class FullBounding(Protocol):
    r"""Combines both components into the signed, bounded update.

    Args:
        param: current value of the parameter.
        pos: non-negative potentiation component.
        neg: non-negative depression component.
        max: upper limit, or ``None`` to leave ``pos`` unscaled.
        min: lower limit, or ``None`` to leave ``neg`` unscaled.
        **kwargs: keyword arguments of the particular bound.

    Returns:
        The signed update :math:`f_+(w)\,\mathrm{pos} - f_-(w)\,\mathrm{neg}`.

    Example:
        >>> import torch
        >>> from plasticity import Accumulator
        >>> def soft_both(param, pos, neg, max, min, /):
        ...     return (max - param) * pos - (param - min) * neg
        >>> acc = Accumulator()
        >>> acc.fullbound(soft_both, 1.0, 0.0)
        >>> acc.pos, acc.neg = torch.ones(2), torch.ones(2)
        >>> acc.update(torch.tensor([0.25, 0.5]))
        tensor([0.5000, 0.0000])
    """

    def __call__(self, param: Tensor, pos: Tensor, neg: Tensor, max: Limit | None,
                 min: Limit | None, /, **kwargs) -> Tensor: ...  # fmt: skip


# ------------------------------------------------------------------------------ kinds

BOUND_KINDS = ("upper", "lower", "full")


def _kind(kind: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    def mark(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        fn.bound_kind = kind  # type: ignore[attr-defined]
        return fn

    return mark


def bound_kind(fn: Any) -> str | None:
    """The kind of a bound function, ``"upper"``, ``"lower"`` or ``"full"``; ``None`` for a
    callable that does not say (a user's own). Looks through ``functools.partial``.

    Example:
        >>> import functools
        >>> from plasticity import bounds
        >>> bounds.bound_kind(bounds.lower_multiplicative), bounds.bound_kind(bounds.sharp)
        ('lower', 'full')
        >>> bounds.bound_kind(functools.partial(bounds.upper_power, power=0.5))
        'upper'
        >>> bounds.bound_kind(lambda param, update, limit: update) is None
        True
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    kind = getattr(fn, "bound_kind", None)
    return kind if kind in BOUND_KINDS else None


# ----------------------------------------------------------------------------- checks


def _check_exponent(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"`{name}` must be a real number >= 0 (the Gütig exponent μ), got {value!r}"
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a finite number >= 0 (the Gütig exponent μ), got {value}"
        )
    return value


def _check_range(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`range` must be a positive real number (max - min), got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`range` must be a finite number > 0 (max - min), got {value}")
    return value


def _soft(param: Tensor, limit: Limit, upper: bool, mu: float = 1.0, r: float = 1.0) -> Tensor:
    """The soft factor ``(max(d, 0) / r)^μ`` of the distance ``d`` from ``param`` to
    ``limit`` (``limit - param`` above, ``param - limit`` below): 0 outside the range,
    ``[d > 0]`` for ``μ = 0`` (0⁰ counts as 0), 1 for an infinite distance (``+inf`` above,
    ``-inf`` below, or beyond the dtype's largest value: that side is unbounded)."""
    zero = False  # a lower limit of +0 (the usual one): w - 0 is w, bit for bit
    if not isinstance(limit, Tensor):
        far = float(limit) if upper else -float(limit)
        if far == math.inf or (param.is_floating_point() and far > torch.finfo(param.dtype).max):
            return torch.ones_like(param)
        zero = not upper and far == 0 and math.copysign(1.0, far) < 0 and param.is_floating_point()
    if zero:
        base = param.clamp_min(0)  # (one weight-sized op less)
    else:
        base = (limit - param if upper else param - limit).clamp_min_(0)  # a fresh difference
    if mu == 0:
        return (base > 0).to(base.dtype)
    unbounded = torch.isposinf(base) if isinstance(limit, Tensor) else None
    if r != 1.0:
        base = base.div_(r)
    if mu != 1.0:
        base = base.pow_(mu)
    return base if unbounded is None else base.masked_fill_(unbounded, 1.0)


def _times(factor: Tensor, update: Tensor) -> Tensor:
    """``factor * update``, in place in the fresh ``factor`` where the result fits it."""
    if factor.shape == update.shape and factor.dtype == update.dtype:
        return factor.mul_(update)
    return factor * update


# ----------------------------------------------------------------------- half bounds


@_kind("upper")
def upper_power(param: Tensor, update: Tensor, limit: Limit, /, *, power: float = 1.0) -> Tensor:
    r"""Soft upper bound with exponent μ (Gütig et al. 2003).

    .. math:: f_+(w)\,\mathrm{pos} = \max(w_\text{max} - w, 0)^{\mu}\,\mathrm{pos}

    ``power=0`` is additive STDP (no weight dependence inside the range) with a hard stop
    at the limit, as :func:`upper_sharp` (0⁰ counts as 0 here); ``power=1`` is
    :func:`upper_multiplicative`.

    Example:
        >>> import torch
        >>> upper_power(torch.tensor([0.0, 0.75, 2.0]), torch.ones(3), 1.0, power=0.5)
        tensor([1.0000, 0.5000, 0.0000])
    """
    mu = _check_exponent("power", power)
    return _times(_soft(param, limit, True, mu), update)


@_kind("lower")
def lower_power(param: Tensor, update: Tensor, limit: Limit, /, *, power: float = 1.0) -> Tensor:
    r"""Soft lower bound with exponent μ (Gütig et al. 2003).

    .. math:: f_-(w)\,\mathrm{neg} = \max(w - w_\text{min}, 0)^{\mu}\,\mathrm{neg}

    Example:
        >>> import torch
        >>> lower_power(torch.tensor([-1.0, 0.25, 1.0]), torch.ones(3), 0.0, power=0.5)
        tensor([0.0000, 0.5000, 1.0000])
    """
    mu = _check_exponent("power", power)
    return _times(_soft(param, limit, False, mu), update)


@_kind("upper")
def upper_scaled_power(
    param: Tensor, update: Tensor, limit: Limit, /, *, power: float = 1.0, range: float = 1.0
) -> Tensor:
    r"""Soft upper bound on the distance normalized by the weight range.

    .. math::
        f_+(w)\,\mathrm{pos} =
        \left(\frac{\max(w_\text{max} - w, 0)}{w_\text{max} - w_\text{min}}\right)^{\mu}
        \mathrm{pos}

    ``range`` is :math:`w_\text{max} - w_\text{min}` (a half bound does not know the
    other limit). With the normalization the factor lies in ``[0, 1]`` inside the range,
    so the amplitude keeps its meaning for any ``power``.

    Example:
        >>> import torch
        >>> upper_scaled_power(torch.tensor([0.0, 1.0]), torch.ones(2), 2.0, range=4.0)
        tensor([0.5000, 0.2500])
    """
    mu = _check_exponent("power", power)
    r = _check_range(range)
    return _times(_soft(param, limit, True, mu, r), update)


@_kind("lower")
def lower_scaled_power(
    param: Tensor, update: Tensor, limit: Limit, /, *, power: float = 1.0, range: float = 1.0
) -> Tensor:
    r"""Soft lower bound on the distance normalized by the weight range.

    .. math::
        f_-(w)\,\mathrm{neg} =
        \left(\frac{\max(w - w_\text{min}, 0)}{w_\text{max} - w_\text{min}}\right)^{\mu}
        \mathrm{neg}

    Example:
        >>> import torch
        >>> lower_scaled_power(torch.tensor([0.0, 1.0]), torch.ones(2), -2.0, range=4.0)
        tensor([0.5000, 0.7500])
    """
    mu = _check_exponent("power", power)
    r = _check_range(range)
    return _times(_soft(param, limit, False, mu, r), update)


@_kind("upper")
def upper_multiplicative(param: Tensor, update: Tensor, limit: Limit, /) -> Tensor:
    r"""Soft upper bound, linear in the distance (van Rossum et al. 2000).

    .. math:: f_+(w)\,\mathrm{pos} = \max(w_\text{max} - w, 0)\,\mathrm{pos}

    Example:
        >>> import torch
        >>> upper_multiplicative(torch.tensor([0.25, 3.0]), torch.ones(2), 1.0)
        tensor([0.7500, 0.0000])
    """
    return _times(_soft(param, limit, True), update)


@_kind("lower")
def lower_multiplicative(param: Tensor, update: Tensor, limit: Limit, /) -> Tensor:
    r"""Soft lower bound, linear in the distance (van Rossum et al. 2000).

    .. math:: f_-(w)\,\mathrm{neg} = \max(w - w_\text{min}, 0)\,\mathrm{neg}

    Example:
        >>> import torch
        >>> lower_multiplicative(torch.tensor([0.25, -3.0]), torch.ones(2), 0.0)
        tensor([0.2500, 0.0000])
    """
    return _times(_soft(param, limit, False), update)


@_kind("upper")
def upper_sharp(param: Tensor, update: Tensor, limit: Limit, /) -> Tensor:
    r"""Hard upper bound: potentiation only while the weight is below the limit.

    .. math:: f_+(w)\,\mathrm{pos} = [w < w_\text{max}]\,\mathrm{pos}

    Example:
        >>> import torch
        >>> upper_sharp(torch.tensor([0.5, 1.0, 2.0]), torch.ones(3), 1.0)
        tensor([1., 0., 0.])
    """
    return update * (param < limit).to(update.dtype)


@_kind("lower")
def lower_sharp(param: Tensor, update: Tensor, limit: Limit, /) -> Tensor:
    r"""Hard lower bound: depression only while the weight is above the limit.

    .. math:: f_-(w)\,\mathrm{neg} = [w > w_\text{min}]\,\mathrm{neg}

    Example:
        >>> import torch
        >>> lower_sharp(torch.tensor([-1.0, 0.0, 0.5]), torch.ones(3), 0.0)
        tensor([0., 0., 1.])
    """
    return update * (param > limit).to(update.dtype)


# ----------------------------------------------------------------------- full bounds

# the full bounds take keywords named `upper_power`/`lower_power`, which shadow these
_upper_power = upper_power
_lower_power = lower_power


def _combine(pos_part: Tensor, neg_part: Tensor) -> Tensor:
    return pos_part - neg_part


@_kind("full")
def power(
    param: Tensor,
    pos: Tensor,
    neg: Tensor,
    max: Limit | None,
    min: Limit | None,
    /,
    *,
    upper_power: float = 1.0,
    lower_power: float = 1.0,
) -> Tensor:
    r"""Soft bounds on both sides with exponents μ₊, μ₋ (Gütig et al. 2003).

    .. math::
        \Delta w = \max(w_\text{max} - w, 0)^{\mu_+}\,\mathrm{pos}
                 - \max(w - w_\text{min}, 0)^{\mu_-}\,\mathrm{neg}

    A ``None`` limit leaves its component unscaled.

    Example:
        >>> import torch
        >>> w = torch.tensor([0.0, 0.25, 1.0])
        >>> power(w, torch.ones(3), torch.ones(3), 1.0, 0.0, upper_power=0.5, lower_power=0.5)
        tensor([ 1.0000,  0.3660, -1.0000])
    """
    _check_exponent("upper_power", upper_power)
    _check_exponent("lower_power", lower_power)
    p = pos if max is None else _upper_power(param, pos, max, power=upper_power)
    n = neg if min is None else _lower_power(param, neg, min, power=lower_power)
    return _combine(p, n)


@_kind("full")
def scaled_power(
    param: Tensor,
    pos: Tensor,
    neg: Tensor,
    max: Limit | None,
    min: Limit | None,
    /,
    *,
    upper_power: float = 1.0,
    lower_power: float = 1.0,
    range: float | None = None,
) -> Tensor:
    r"""Soft bounds on both sides, distances normalized by the weight range.

    .. math::
        \Delta w = \left(\tfrac{\max(w_\text{max} - w, 0)}{R}\right)^{\mu_+}\mathrm{pos}
                 - \left(\tfrac{\max(w - w_\text{min}, 0)}{R}\right)^{\mu_-}\mathrm{neg},
        \qquad R = w_\text{max} - w_\text{min}

    ``range`` defaults to ``max - min``; it must be given when one limit is ``None``.

    Example:
        >>> import torch
        >>> w = torch.tensor([0.0, 1.0, 2.0])
        >>> scaled_power(w, torch.ones(3), torch.ones(3), 2.0, 0.0)
        tensor([ 1.,  0., -1.])
    """
    _check_exponent("upper_power", upper_power)
    _check_exponent("lower_power", lower_power)
    if range is None:
        if max is None or min is None:
            raise ValueError(
                "scaled_power with a `None` limit needs `range=` (the weight range max - min)"
            )
        if isinstance(max, Tensor) or isinstance(min, Tensor):
            raise ValueError("scaled_power with tensor limits needs an explicit `range=` number")
        range = float(max) - float(min)
        if math.isinf(range):
            raise ValueError(
                "scaled_power with an infinite limit needs `range=` (a finite weight range)"
            )
    r = _check_range(range)
    p = pos if max is None else upper_scaled_power(param, pos, max, power=upper_power, range=r)
    n = neg if min is None else lower_scaled_power(param, neg, min, power=lower_power, range=r)
    return _combine(p, n)


@_kind("full")
def multiplicative(
    param: Tensor, pos: Tensor, neg: Tensor, max: Limit | None, min: Limit | None, /
) -> Tensor:
    r"""Soft multiplicative bounds on both sides (van Rossum et al. 2000).

    .. math::
        \Delta w = \max(w_\text{max} - w, 0)\,\mathrm{pos} - \max(w - w_\text{min}, 0)\,\mathrm{neg}

    Example:
        >>> import torch
        >>> multiplicative(torch.tensor([0.25]), torch.ones(1), torch.ones(1), 1.0, None)
        tensor([-0.2500])
    """
    p = pos if max is None else upper_multiplicative(param, pos, max)
    n = neg if min is None else lower_multiplicative(param, neg, min)
    return _combine(p, n)


@_kind("full")
def sharp(
    param: Tensor, pos: Tensor, neg: Tensor, max: Limit | None, min: Limit | None, /
) -> Tensor:
    r"""Hard bounds on both sides.

    .. math:: \Delta w = [w < w_\text{max}]\,\mathrm{pos} - [w > w_\text{min}]\,\mathrm{neg}

    Example:
        >>> import torch
        >>> sharp(torch.tensor([0.0, 0.5, 1.0]), torch.ones(3), torch.ones(3), 1.0, 0.0)
        tensor([ 1.,  0., -1.])
    """
    p = pos if max is None else upper_sharp(param, pos, max)
    n = neg if min is None else lower_sharp(param, neg, min)
    return _combine(p, n)
