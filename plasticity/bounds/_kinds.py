"""The two kinds of bound (:class:`HalfBounding`, :class:`FullBounding`) and the kind each
library function carries (:func:`bound_kind`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["bound_kind", "HalfBounding", "FullBounding"]

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

