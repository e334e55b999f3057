"""The accumulator's bound setters (``upperbound``, ``lowerbound``, ``fullbound``), each
checked when configured: the bound's kind, its limits, a trial call."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch
from torch import Tensor

from ..bounds import FullBounding, HalfBounding, bound_kind

__all__ = ["BoundSetters"]


def _check_limit(
    where: str, name: str, value: Any, shape: tuple[int, ...] | None = None
) -> float | Tensor:
    """A bound's limit, checked: a number or a floating tensor, no NaN, no infinity of the
    wrong sign (``max = inf`` and ``min = -inf`` leave that side unbounded), and a tensor
    that broadcasts to the parameter's ``shape`` when it is known."""
    if value is None:
        raise ValueError(f"{where}: `{name}` is required when a bound is given; pass a number")
    wrong = -math.inf if name == "max" else math.inf  # no weight lies inside such a range
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(
                f"{where}: `{name}` must be a float or a floating tensor, got {value.dtype}"
            )
        if torch.isnan(value).any():
            raise ValueError(f"{where}: `{name}` contains NaN; pass a finite number")
        if (value == wrong).any():
            raise ValueError(f"{where}: `{name}` contains {wrong}; {_UNBOUNDED[name]}")
        if shape is not None:
            _check_fits(where, name, value, shape, "the weight's shape")
        return value.detach().clone()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{where}: `{name}` must be a real number, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{where}: `{name}` is NaN; pass a number")
    if value == wrong:
        raise ValueError(f"{where}: `{name}` is {wrong}; {_UNBOUNDED[name]}")
    return value


_UNBOUNDED = {
    "max": "an upper limit may be inf (no upper bound in effect), not -inf",
    "min": "a lower limit may be -inf (no lower bound in effect), not inf",
}


def _check_fits(where: str, name: str, limit: Tensor, shape: Any, what: str) -> None:
    """A tensor limit must broadcast to the parameter's shape (never enlarge it)."""
    try:
        fits = torch.broadcast_shapes(limit.shape, shape) == tuple(shape)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{where}: the tensor `{name}` has shape {tuple(limit.shape)}, which does not "
            f"broadcast to {what} {tuple(shape)}; pass a number or a tensor of a shape that "
            "broadcasts to it (e.g. one limit per post-neuron: [N_out, 1])"
        )


def _check_order(where: str, upper: float | Tensor | None, lower: float | Tensor | None) -> None:
    if upper is None or lower is None:
        return
    bad = bool((torch.as_tensor(lower) > torch.as_tensor(upper)).any())
    if bad:
        raise ValueError(
            f"{where}: the lower limit {lower} exceeds the upper limit {upper}; need min <= max"
        )


def _trial(where: str, call: Callable[[], Tensor]) -> None:
    """Calls a bound once on a tiny tensor so bad keywords fail at configuration time."""
    try:
        out = call()
    except (TypeError, ValueError) as err:
        raise type(err)(f"{where}: {err}") from err
    if not isinstance(out, Tensor):
        raise TypeError(f"{where}: the bound must return a Tensor, got {type(out).__name__}")


def _name(fn: Callable) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def _check_kind(where: str, bound: Callable) -> None:
    """A library bound (it carries its kind) given to the wrong setter is a TypeError."""
    kind, wanted = bound_kind(bound), where[: -len("bound")]
    if kind is not None and kind != wanted:
        article = "an" if kind == "upper" else "a"
        raise TypeError(
            f"{where}: {_name(bound)} is {article} {kind} bound: use accumulator.{kind}bound(...)"
        )



class BoundSetters:
    """The bound setters of :class:`~plasticity.Accumulator` (a mixin: it sets the
    accumulator's ``_upper``, ``_lower`` and ``_full``)."""

    # ---------------------------------------------------------------------- bounds

    def upperbound(
        self, bound: HalfBounding | None, max: float | None = None, /, **kwargs: Any
    ) -> None:
        r"""Sets the function used for parameter bounding on the upper limit.

        When ``bound`` is ``None``, no upper bound will be applied (and will remove
        any full bound present). When ``bound`` is not ``None``, then ``max`` cannot
        be ``None``.

        Args:
            bound (HalfBounding | None): bounding function, e.g.
                :func:`plasticity.bounds.upper_multiplicative`.
            max (float | None, optional): upper bound. Defaults to ``None``.
            **kwargs (Any): keyword arguments for the bounding function.

        Raises:
            TypeError: if ``bound`` is one of :mod:`plasticity.bounds`' lower or full
                bounds (they carry their kind; a callable of your own is accepted).
        """
        self._set_half("upperbound", "max", bound, max, kwargs)

    def lowerbound(
        self, bound: HalfBounding | None, min: float | None = None, /, **kwargs: Any
    ) -> None:
        r"""Sets the function used for parameter bounding on the lower limit.

        When ``bound`` is ``None``, no lower bound will be applied (and will remove
        any full bound present). When ``bound`` is not ``None``, then ``min`` cannot
        be ``None``.

        Args:
            bound (HalfBounding | None): bounding function, e.g.
                :func:`plasticity.bounds.lower_multiplicative`.
            min (float | None, optional): lower bound. Defaults to ``None``.
            **kwargs (Any): keyword arguments for the bounding function.

        Raises:
            TypeError: if ``bound`` is one of :mod:`plasticity.bounds`' upper or full
                bounds (they carry their kind; a callable of your own is accepted).
        """
        self._set_half("lowerbound", "min", bound, min, kwargs)

    def _set_half(
        self, where: str, name: str, bound: Any, limit: Any, kwargs: dict[str, Any]
    ) -> None:
        if bound is None:
            if name == "max":
                self._upper = None
            else:
                self._lower = None
            self._full = None
            return
        if not callable(bound):
            raise TypeError(
                f"{where}: `bound` must be a HalfBounding function or None, got {bound!r}"
            )
        _check_kind(where, bound)
        limit = _check_limit(where, name, limit, self._shape)
        other = None if self._full is not None else (self._lower if name == "max" else self._upper)
        if other is not None:
            upper, lower = (limit, other[1]) if name == "max" else (other[1], limit)
            _check_order(where, upper, lower)
        dev = limit.device if isinstance(limit, Tensor) else None
        _trial(
            where,
            lambda: bound(torch.zeros(1, device=dev), torch.zeros(1, device=dev), limit, **kwargs),
        )
        entry = (bound, limit, dict(kwargs))
        if name == "max":
            self._upper = entry
        else:
            self._lower = entry
        if self._full is not None:
            self._full = None
            # the full bound also bounded the other side; it is removed with it
            if name == "max":
                self._lower = None
            else:
                self._upper = None

    def fullbound(
        self,
        bound: FullBounding | None,
        max: float | None = None,
        min: float | None = None,
        /,
        **kwargs: Any,
    ) -> None:
        r"""Sets the function used for parameter bounding on the upper and lower limits.

        When ``bound`` is ``None``, no full bound will be applied (and will remove
        any upper or lower bound present). When ``bound`` is not ``None``, then
        ``max`` or ``min`` cannot be ``None`` (one of them may be: that side is then
        left unbounded).

        Args:
            bound (FullBounding | None): bounding function, e.g.
                :func:`plasticity.bounds.multiplicative`.
            max (float | None, optional): upper bound. Defaults to ``None``.
            min (float | None, optional): lower bound. Defaults to ``None``.
            **kwargs (Any): keyword arguments for the bounding function.

        Raises:
            TypeError: if ``bound`` is one of :mod:`plasticity.bounds`' half bounds.
        """
        where = "fullbound"
        if bound is None:
            self._full = self._upper = self._lower = None
            return
        if not callable(bound):
            raise TypeError(
                f"{where}: `bound` must be a FullBounding function or None, got {bound!r}"
            )
        _check_kind(where, bound)
        if max is None and min is None:
            raise ValueError(
                f"{where}: at least one of `max` and `min` is required when a bound is given"
            )
        mx = None if max is None else _check_limit(where, "max", max, self._shape)
        mn = None if min is None else _check_limit(where, "min", min, self._shape)
        _check_order(where, mx, mn)
        dev = next((v.device for v in (mx, mn) if isinstance(v, Tensor)), None)
        z = torch.zeros(1, device=dev)
        _trial(where, lambda: bound(z, z, z, mx, mn, **kwargs))
        self._full = (bound, mx, mn, dict(kwargs))
        self._upper = self._lower = None

