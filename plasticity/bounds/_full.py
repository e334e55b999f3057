"""The full bounds: both components at once, each scaled by its half bound (a ``None``
limit leaves its component unscaled), combined into the signed update."""

from __future__ import annotations

import math

from torch import Tensor

from ._half import (
    _check_exponent,
    _check_range,
    lower_multiplicative,
    lower_scaled_power,
    lower_sharp,
    upper_multiplicative,
    upper_scaled_power,
    upper_sharp,
)

# the full bounds take keywords named `upper_power`/`lower_power`, which shadow these
from ._half import lower_power as _lower_power
from ._half import upper_power as _upper_power
from ._kinds import Limit, _kind

__all__ = ["power", "scaled_power", "multiplicative", "sharp"]


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
    return p - n


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
    return p - n


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
    return p - n


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
    return p - n
