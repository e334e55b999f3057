r"""Accumulator: gathers potentiation and depression for one parameter, then bounds it.

A learning rule appends non-negative magnitudes to :attr:`Accumulator.pos` and
:attr:`Accumulator.neg` during a window (e.g. once per chunk of time steps). At the end
of the window :meth:`Accumulator.update` reduces each component over the appends and
applies the configured weight bounds:

.. math::

    \Delta w = f_+(w)\,\mathrm{pos} - f_-(w)\,\mathrm{neg}

The API follows inferno's ``Accumulator`` exactly (``pos``/``neg`` properties where
setting appends, ``update``, ``forward``, ``clear``, ``reduction``, ``upperbound``,
``lowerbound``, ``fullbound``), and fixes what it gets wrong:

* sum and mean (also ``torch.amax``/``torch.amin``) are *running* reductions: memory does
  not grow with the number of appends. A custom ``fn(stacked, dim)`` keeps the appends.
* reduced components live in plain buffers (never ``nn.Parameter``); nothing is cached,
  so nothing goes stale.
* appended tensors are copied and detached: never aliased, never carrying autograd.
* a bound without its limit, a NaN limit, ``min > max`` or an unknown bound keyword is
  an error when the bound is configured, not when the update is computed.
* ``state_dict()`` round-trips in the middle of a window, append counts included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..bounds import FullBounding, HalfBounding
from .setters import BoundSetters, _name
from .state import _BUFFER, _COMPONENTS, AccumulatorState
from .update import BoundedUpdate

__all__ = ["Accumulator"]

Reducer = Callable[[Tensor, int], Tensor]

# reductions computed on the fly, O(1) memory in the number of appends
_RUNNING: dict[Any, str] = {torch.sum: "sum", torch.mean: "mean", torch.amax: "amax",
                            torch.amin: "amin"}  # fmt: skip


def _copy(v: Tensor) -> Tensor:  # (an append that cannot be kept as it is)
    return v.clone(memory_format=torch.contiguous_format)


def _like(v: Tensor, ref: Tensor) -> Tensor:
    """``v`` on ``ref``'s device, in its dtype (``v`` itself where it is, without ``to``)."""
    if v.dtype is ref.dtype and v.device == ref.device:
        return v
    return v.to(device=ref.device, dtype=ref.dtype)


def _whole(v: Tensor) -> bool:
    """Whether ``v`` is its whole storage (e.g. a transposed result, not a slice)."""
    return v.storage_offset() == 0 and v.untyped_storage().nbytes() == v.numel() * v.element_size()


def _check_finite(which: str, what: str, v: Tensor) -> None:
    """Refuses NaN and infinity: one cheap reduction (a sum is finite where every element
    is), the exact check only where the sum is not (NaN/inf, or an overflow)."""
    if not bool(torch.isfinite(v.sum())) and not bool(torch.isfinite(v).all()):
        raise ValueError(f"Accumulator.{which}: the {what} tensor contains NaN or infinity")


class Accumulator(BoundSetters, BoundedUpdate, AccumulatorState, nn.Module):
    r"""Used to accumulate updates for a parameter.

    ``pos`` and ``neg`` hold non-negative magnitudes of potentiation and depression.
    Setting either *appends* to that component; reading it returns the component
    reduced over the appends (sum by default), or ``None`` if nothing was appended.

    Args:
        check_finite: reject appends that contain NaN or infinity (one reduction over
            the appended tensor per append). Defaults to ``True``.
        shape: the shape of the parameter it updates, when known (a rule passes its
            weight's): appends and tensor bound limits are checked against it when
            given. Defaults to ``None`` (the first append sets the shape).
        chunked: its appends are sums over several time steps (a rule's chunks, see
            :meth:`add_`'s ``count``): only ``torch.sum`` and ``torch.mean`` (the mean per
            step) reduce them exactly, :meth:`reduction` refuses the others. Defaults to
            ``False``.

    Shape:
        Every append to ``pos`` and ``neg`` must have the same shape, the shape of the
        parameter they update. Device and dtype are those of the first append (later
        appends are converted); integer or boolean appends become the default float.

    Example:
        >>> import torch
        >>> import plasticity as pl
        >>> acc = pl.Accumulator()
        >>> acc.upperbound(pl.bounds.upper_multiplicative, 1.0)
        >>> acc.lowerbound(pl.bounds.lower_multiplicative, 0.0)
        >>> w = torch.tensor([0.25, 0.5, 0.75])
        >>> acc.pos = torch.tensor([1.0, 1.0, 0.0])
        >>> acc.pos = torch.tensor([1.0, 0.0, 0.0])
        >>> acc.neg = torch.tensor([0.0, 0.0, 1.0])
        >>> acc.pos
        tensor([2., 1., 0.])
        >>> acc.update(w)   # (1 - w) * pos - (w - 0) * neg
        tensor([ 1.5000,  0.5000, -0.7500])
        >>> acc(w)          # forward: the parameter with the update applied
        tensor([1.7500, 1.0000, 0.0000])
        >>> acc.clear(); acc.pos is None
        True
    """

    pos_acc: Tensor | None
    neg_acc: Tensor | None

    def __init__(
        self, *, check_finite: bool = True, shape: Sequence[int] | None = None,
        chunked: bool = False,
    ) -> None:  # fmt: skip
        """Builds the accumulator; arguments: ``help(plasticity.Accumulator)``."""
        super().__init__()
        self.check_finite, self.chunked = bool(check_finite), bool(chunked)
        if shape is not None and (
            isinstance(shape, (str, bytes)) or not all(isinstance(d, int) and d >= 0 for d in shape)
        ):
            raise TypeError(f"Accumulator: `shape` must be a sequence of ints >= 0, got {shape!r}")
        self._shape: tuple[int, ...] | None = None if shape is None else tuple(shape)
        # running reductions (sum for "sum"/"mean", extremum for "amax"/"amin")
        self.register_buffer("pos_acc", None)
        self.register_buffer("neg_acc", None)
        self._counts = {"pos": 0, "neg": 0}
        self._lists: dict[str, list[Tensor]] = {"pos": [], "neg": []}
        self._reducer: Reducer = torch.sum
        self._mode = "sum"
        self._upper: tuple[HalfBounding, float | Tensor, dict[str, Any]] | None = None
        self._lower: tuple[HalfBounding, float | Tensor, dict[str, Any]] | None = None
        self._full: (
            tuple[FullBounding, float | Tensor | None, float | Tensor | None, dict[str, Any]] | None
        ) = None

    # ------------------------------------------------------------------ components

    @property
    def pos(self) -> Tensor | None:
        r"""Positive update component.

        Args:
            value (torch.Tensor | None): appends to update component.

        Returns:
            torch.Tensor | None: accumulated update component.
        """
        return self._read("pos")

    @pos.setter
    def pos(self, value: Tensor | None) -> None:
        self._append("pos", value)

    @pos.deleter
    def pos(self) -> None:
        self._reset("pos")

    @property
    def neg(self) -> Tensor | None:
        r"""Negative update component.

        Args:
            value (torch.Tensor | None): appends to update component.

        Returns:
            torch.Tensor | None: accumulated update component.
        """
        return self._read("neg")

    @neg.setter
    def neg(self, value: Tensor | None) -> None:
        self._append("neg", value)

    @neg.deleter
    def neg(self) -> None:
        self._reset("neg")

    @property
    def counts(self) -> tuple[int, int]:
        """Number of appends to ``pos`` and to ``neg`` in the current window."""
        return self._counts["pos"], self._counts["neg"]

    def _reference(self) -> Tensor | None:
        for c in _COMPONENTS:
            buf = self._buffers[_BUFFER[c]]
            if buf is not None:
                return buf
            if self._lists[c]:
                return self._lists[c][0]
        return None

    def _append(
        self, which: str, value: Tensor | None, owned: bool = False, finite: bool = False,
        count: int = 1,
    ) -> None:  # fmt: skip
        """Appends to a component. ``owned=True`` (for rules) hands over a fresh tensor
        nobody else holds: it may be kept without a copy. ``finite=True``: the caller
        guarantees finite values (a rule's kernel on validated binary spikes), so the
        NaN/infinity check is skipped. ``count``: the number of appends it stands for."""
        if value is None:
            return
        v, keep = self._incoming(which, value, owned)
        if self.check_finite and not finite:
            _check_finite(which, "appended", v)
        if self._mode == "custom":
            self._lists[which].append(v if keep else _copy(v))
        else:
            self._fold(which, v, keep)
        self._counts[which] += count

    def _hand_over(self, which: str, value: Tensor, count: int) -> bool:
        """A rule's first append of a window to ``which`` (``count`` steps): the engine's
        fresh, finite result, of the weight's shape and dtype, kept as the running sum as
        :meth:`add_` keeps it, without the checks its maker made; ``False`` (nothing
        done) where :meth:`add_` must take it (an append there already, a custom
        reduction, another dtype, device or shape than the window's, a view)."""
        buffers = self._buffers
        key = _BUFFER[which]
        if buffers[key] is not None or self._mode not in ("sum", "mean"):
            return False
        ref = buffers["neg_acc" if key == "pos_acc" else "pos_acc"]
        shape = self._shape if self._shape is not None else None if ref is None else ref.shape
        if (value.shape != shape or value.requires_grad or not _whole(value) or (
                ref is not None and (ref.dtype != value.dtype or ref.device != value.device))):  # fmt: skip
            return False
        buffers[key] = value
        self._counts[which] += count
        return True

    def _incoming(self, which: str, value: Any, owned: bool) -> tuple[Tensor, bool]:
        """``value`` checked (a tensor of the parameter's shape), detached, converted to the
        window's device and dtype; and whether it may be kept as is (``owned``,
        unconverted, its whole storage)."""
        if not isinstance(value, Tensor):
            raise TypeError(
                f"Accumulator.{which} takes a torch.Tensor (or None), got {type(value).__name__}"
            )
        ref = self._reference()
        self._check_shape(which, "appended", value, ref)
        detached = v = value.detach() if value.requires_grad else value  # (shares its memory)
        if ref is not None:
            v = _like(v, ref)
        elif not v.is_floating_point():
            v = v.to(torch.get_default_dtype())
        return v, owned and v is detached and _whole(v)

    def _fold(self, which: str, v: Tensor, keep: bool) -> None:
        """Folds an append into the running reduction of ``which`` (``keep``: ``v`` is
        handed over and becomes the running buffer when it is the first)."""
        key = _BUFFER[which]
        acc = self._buffers[key]
        if acc is None:  # (after appends of zeros only in sum and mean: their sum)
            self._buffers[key] = v if keep else _copy(v)
        elif self._mode in ("sum", "mean"):
            acc.add_(v)
        elif self._mode == "amax":
            torch.maximum(acc, v, out=acc)
        else:
            torch.minimum(acc, v, out=acc)

    def _check_shape(self, which: str, what: str, value: Tensor, ref: Tensor | None) -> None:
        shape = self._shape if self._shape is not None else None if ref is None else ref.shape
        if shape is not None and value.shape != shape:  # (torch.Size is a tuple)
            raise ValueError(
                f"Accumulator.{which}: {what} shape {tuple(value.shape)} differs from the "
                f"parameter's shape {tuple(shape)}; every append must have the parameter's "
                "shape"
            )

    def _check_count(self, count: int, zeros: bool = False) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"Accumulator.add_: `count` must be an int >= 1, got {count!r}")
        if self._mode not in ("sum", "mean") and (count != 1 or zeros):
            what = f"{count} appends of zeros" if zeros else (
                f"an append that stands for {count} appends (e.g. {count} steps summed)")  # fmt: skip
            raise ValueError(
                f"Accumulator.add_: {what} cannot be reduced by {_name(self._reducer)}: only "
                "sum and mean reduce it exactly"
            )

    @property
    def merges(self) -> bool:
        """Whether :meth:`add_` can add into the latest append (sum, mean and custom
        reductions; a max or min must see each append whole)."""
        return self._mode in ("sum", "mean", "custom")

    def add_(self, which: str, value: Tensor | None, *, merge: bool = False,
             finite: bool = False, alpha: float = 1.0, count: int = 1) -> None:  # fmt: skip
        """Adds ``alpha * value`` to component ``which`` (``"pos"`` or ``"neg"``): as a new
        append, or with ``merge=True`` into the latest append (a rule's several products of
        one chunk make one append). The tensor is handed over: it may be kept without a
        copy, scaled in place (``finite=True``: the caller guarantees finite values, the
        check is skipped).

        ``count`` (a new append): the number of appends it stands for, e.g. a rule's chunk
        of ``count`` time steps summed (a rule appends once per time step); ``value=None``
        appends ``count`` zeros (steps that gave this component nothing) without a tensor.
        Only sum and mean reduce such appends exactly (the mean divides by every count):
        with another reduction a ``count`` other than 1 is a ``ValueError``.

        Example:
            >>> import torch
            >>> acc = Accumulator()
            >>> acc.add_("pos", torch.ones(2)); acc.add_("pos", torch.ones(2), merge=True)
            >>> acc.pos, acc.counts
            (tensor([2., 2.]), (1, 0))
            >>> acc.reduction(torch.mean)
            >>> acc.add_("pos", torch.full((2,), 6.0), count=3); acc.add_("pos", None, count=4)
            >>> acc.pos, acc.counts   # (2 + 6) / 8 appends
            (tensor([1., 1.]), (8, 0))
        """
        if which not in _COMPONENTS:
            raise ValueError(f"Accumulator.add_: `which` must be 'pos' or 'neg', got {which!r}")
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(
                f"Accumulator.add_: `value` must be a torch.Tensor (or None), got "
                f"{type(value).__name__}"
            )
        if merge and self._counts[which]:
            self._merge(which, value, finite, alpha)
        elif value is None:  # `count` appends of zeros
            self._check_count(count, zeros=True)
            self._counts[which] += count
        else:
            self._check_count(count)
            self._append(which, value if alpha == 1.0 else value.mul_(alpha), owned=True,
                         finite=finite, count=count)  # fmt: skip

    def _merge(self, which: str, value: Tensor | None, finite: bool, alpha: float) -> None:
        """:meth:`add_` into the latest append of ``which`` (``value=None`` adds nothing)."""
        if value is None:
            return
        if not self.merges:
            raise ValueError(
                f"Accumulator.add_(merge=True) needs a sum, mean or custom reduction, not {self._mode}"
            )
        if self._mode == "custom":
            latest = self._lists[which][-1]
        else:
            latest = self._buffers[_BUFFER[which]]
            if latest is None:  # the latest appends were zeros (no tensor): their sum
                self._append(which, value if alpha == 1.0 else value.mul_(alpha), owned=True,
                             finite=finite, count=0)  # fmt: skip
                return
        ref = self._reference()
        self._check_shape(which, "added", value, ref)
        v = _like(value.detach() if value.requires_grad else value, ref)  # type: ignore[arg-type]
        if self.check_finite and not finite:
            _check_finite(which, "added", v)
        latest.add_(v, alpha=alpha)

    def _read(self, which: str, copy: bool = True) -> Tensor | None:
        n = self._counts[which]
        if n == 0:
            return None
        if self._mode == "custom":
            return self._reducer(torch.stack(self._lists[which], 0), 0)
        acc = self._buffers[_BUFFER[which]]
        if acc is None:  # appends of zeros only (add_ with value=None): nothing to update
            return None
        if self._mode == "mean":
            return acc / n
        return acc.clone() if copy else acc

    def _reset(self, which: str) -> None:
        self._buffers[_BUFFER[which]] = None
        self._lists[which] = []
        self._counts[which] = 0

    def clear(self, **kwargs: Any) -> None:
        r"""Clears the accumulator's state (both components; bounds and reduction stay)."""
        for c in _COMPONENTS:
            self._reset(c)

    def reduction(self, fn: Reducer | None = None) -> None:
        r"""Sets the function used for reducing multiple updates.

        When ``fn`` is ``None``, it sets the default reducer, :py:func:`torch.sum`.
        ``torch.sum``, ``torch.mean``, ``torch.amax`` and ``torch.amin`` are computed as
        running reductions; any other ``fn(stacked, dim)`` receives the appended tensors
        stacked along ``dim=0`` and so keeps them until :meth:`clear`.

        As in inferno, the reduction applies to the whole window, also to what was
        appended before it was set: switching between sum and mean in the middle of a
        window is exact (both keep the running sum and the append count), and so is a
        switch from a custom ``fn`` (it kept every append) to any other.

        A rule's accumulator (``chunked``) appends once per time step, in sums over
        chunks of steps: ``torch.mean`` is the mean per time step, the same for every
        chunk size; reductions that need each step's update apart are refused.

        Args:
            fn (Callable[[torch.Tensor, int], torch.Tensor] | None, optional):
                function for reducing updates. Defaults to ``None``.

        Raises:
            ValueError: if the current window already holds appends and the new
                reduction cannot be derived from what is kept: a switch from
                ``torch.amax`` or ``torch.amin``, or to a custom ``fn`` (call :meth:`clear`
                first); on a ``chunked`` accumulator, any reduction but sum and mean.

        Example:
            >>> import torch
            >>> import plasticity as pl
            >>> acc = pl.Accumulator()
            >>> acc.pos = torch.tensor([1.0, 2.0])
            >>> acc.pos = torch.tensor([3.0, 6.0])
            >>> acc.reduction(torch.mean); acc.pos
            tensor([2., 4.])
            >>> acc.reduction(torch.sum); acc.pos
            tensor([4., 8.])
            >>> acc.clear(); acc.reduction(lambda x, dim: x.median(dim).values)
            >>> for x in ([1.0, 2.0], [3.0, 6.0], [2.0, 2.0]):
            ...     acc.pos = torch.tensor(x)   # kept, for the custom reduction
            >>> acc.pos
            tensor([2., 2.])
            >>> acc.reduction(None); acc.pos   # back to the sum, of what was kept
            tensor([ 6., 10.])
        """
        if fn is None:
            fn = torch.sum
        if not callable(fn):
            raise TypeError(
                f"Accumulator.reduction takes a callable fn(stacked, dim) or None, got {fn!r}"
            )
        mode = _RUNNING.get(fn, "custom")
        if self.chunked and mode not in ("sum", "mean"):
            raise ValueError(
                f"Accumulator.reduction: this accumulator's appends are sums over chunks of "
                f"time steps (a rule's), from which {_name(fn)} cannot be computed exactly; use "
                "torch.sum (the default: reduction(None)) or torch.mean (the mean per time "
                "step), or reduce the Δw that step() returns yourself"
            )
        # a custom reduction kept every append: any reduction follows from them
        derivable = mode == self._mode or self._mode == "custom" or {mode, self._mode} <= {
            "sum", "mean"}  # fmt: skip
        if not derivable and any(self._counts.values()):
            raise ValueError(
                f"Accumulator.reduction: cannot switch from {_name(self._reducer)} to {_name(fn)} "
                "in the middle of a window that holds appends (sum and mean switch from the "
                "running sum and count, a custom reduction from the appends it kept); call "
                "clear() first"
            )
        if self._mode == "custom" and mode != "custom":
            self._fold_kept(mode)
        self._reducer = fn
        self._mode = mode

    def _fold_kept(self, mode: str) -> None:
        """Reduces the appends a custom reduction kept into the running buffers of
        ``mode`` (a running reduction), in place of the first (a copy made at its append)."""
        step = {"amax": torch.maximum, "amin": torch.minimum}.get(mode, torch.add)
        for c in _COMPONENTS:
            kept, self._lists[c] = self._lists[c], []
            if kept:
                acc = kept[0]
                for t in kept[1:]:
                    step(acc, t, out=acc)
                self._buffers[_BUFFER[c]] = acc

    def extra_repr(self) -> str:
        parts = [f"reduction={_name(self._reducer)}", f"counts={self.counts}"]
        if self._full is not None:
            parts.append(
                f"fullbound={_name(self._full[0])}(max={self._full[1]}, min={self._full[2]})"
            )
        if self._upper is not None:
            parts.append(f"upperbound={_name(self._upper[0])}(max={self._upper[1]})")
        if self._lower is not None:
            parts.append(f"lowerbound={_name(self._lower[0])}(min={self._lower[1]})")
        return ", ".join(parts)
