"""The half bounds: each scales one component (``pos`` against the upper limit, ``neg``
against the lower one), soft (a power of the distance to the limit) or sharp."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from ._kinds import Limit, _kind

__all__ = [
    "upper_power",
    "lower_power",
    "upper_scaled_power",
    "lower_scaled_power",
    "upper_multiplicative",
    "lower_multiplicative",
    "upper_sharp",
    "lower_sharp",
]

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


def _distance(param: Tensor, limit: Limit, upper: bool) -> Tensor | None:
    """The distance ``max(d, 0)`` from ``param`` to ``limit`` (``limit - param`` above,
    ``param - limit`` below), a fresh tensor; ``None`` for a number limit infinitely far
    (``+inf`` above, ``-inf`` below, or beyond the dtype's largest value)."""
    if not isinstance(limit, Tensor):
        far = float(limit) if upper else -float(limit)
        if far == math.inf or (param.is_floating_point() and far > torch.finfo(param.dtype).max):
            return None
        if far == 0 and not upper and math.copysign(1.0, far) < 0 and param.is_floating_point():
            # a lower limit of +0 (the usual one): w - 0 is w, bit for bit (one op less)
            return param.clamp_min(0)
    return (limit - param if upper else param - limit).clamp_min_(0)  # a fresh difference


def _soft(param: Tensor, limit: Limit, upper: bool, mu: float = 1.0, r: float = 1.0) -> Tensor:
    """The soft factor ``(max(d, 0) / r)^μ`` of the distance ``d`` from ``param`` to
    ``limit`` (``_distance``): 0 outside the range, ``[d > 0]`` for ``μ = 0`` (0⁰
    counts as 0), 1 for an infinite distance (that side is unbounded)."""
    base = _distance(param, limit, upper)
    if base is None:
        return torch.ones_like(param)
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

