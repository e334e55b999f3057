"""The accumulator's update: the reduced window with its bounds applied (``update``,
``forward``), and the update a rule's ``step()`` takes, in place where no bound is set."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._grad import no_grad
from .setters import _check_fits

__all__ = ["BoundedUpdate"]


class BoundedUpdate:
    """The update of :class:`~plasticity.Accumulator` (a mixin: it reads the accumulator's
    reduced components and its ``_upper``, ``_lower`` and ``_full``)."""

    @no_grad
    def update(self, param: Tensor, **kwargs: Any) -> Tensor | None:
        r"""Computes the update.

        Args:
            param (torch.Tensor): parameter being updated.

        Returns:
            torch.Tensor | None: value of the update, or ``None`` if nothing was appended.
        """
        if not isinstance(param, Tensor):
            raise TypeError(
                f"Accumulator.update: `param` must be a torch.Tensor, got {type(param).__name__}"
            )
        pos, neg = self._read("pos", copy=False), self._read("neg", copy=False)
        if pos is None and neg is None:
            return None
        shape = (pos if pos is not None else neg).shape  # type: ignore[union-attr]
        if param.shape != shape:
            raise ValueError(
                f"Accumulator.update: `param` has shape {tuple(param.shape)} but the accumulated "
                f"updates have shape {tuple(shape)}; pass the parameter these updates were made for"
            )
        self._check_limits(param.shape)
        w = param.detach()
        pos = None if pos is None else pos.to(device=w.device, dtype=w.dtype)
        neg = None if neg is None else neg.to(device=w.device, dtype=w.dtype)
        return self._unshared(self._bounded(w, pos, neg))

    def _check_limits(self, shape: torch.Size) -> None:
        """Every tensor limit broadcasts to the parameter's ``shape`` (an accumulator that
        did not know the shape when the bound was set checks it here)."""
        if self._full is not None:
            limits = [("fullbound", "max", self._full[1]), ("fullbound", "min", self._full[2])]
        else:
            limits = [(where, name, entry[1]) for where, name, entry in
                      (("upperbound", "max", self._upper), ("lowerbound", "min", self._lower))
                      if entry is not None]  # fmt: skip
        for where, name, limit in limits:
            if isinstance(limit, Tensor):
                _check_fits(f"Accumulator.update ({where})", name, limit, shape,
                            "the parameter's shape")  # fmt: skip

    def _owned(self, x: Tensor, *inputs: Tensor | None) -> bool:
        """Whether ``x`` is a fresh tensor: it shares no memory with ``inputs`` or the
        running buffers (a bound function may return its argument)."""
        ptr = x.untyped_storage().data_ptr()
        held = [*inputs, self._buffers["pos_acc"], self._buffers["neg_acc"]]
        return all(t is None or t.untyped_storage().data_ptr() != ptr for t in held)

    def _unshared(self, out: Tensor) -> Tensor:
        """``out``, copied if it shares memory with a running buffer (never hand those out)."""
        for buf in (self._buffers["pos_acc"], self._buffers["neg_acc"]):
            if buf is not None and out.data_ptr() == buf.data_ptr():
                return out.clone()
        return out

    def _take_update(self, param: Tensor) -> Tensor | None:
        """:meth:`update` followed by :meth:`clear` (a rule's ``step()``). A running sum or
        mean in ``param``'s dtype and device is handed over, not read through a copy:
        without bounds it becomes the update in place (no third weight-sized tensor);
        with bounds the bound functions receive it (as :meth:`update` gives them) and
        their fresh results are combined in place."""
        buffers = self._buffers
        pos, neg = buffers["pos_acc"], buffers["neg_acc"]
        if not self._handed(param, pos, neg):
            update = self.update(param)
            self.clear()
            return update
        mean = self._mode == "mean"
        n_pos, n_neg = self._counts["pos"], self._counts["neg"]
        if self._upper is not None or self._lower is not None or self._full is not None:
            w = param.detach()
            self._check_limits(w.shape)
            if mean:  # (fresh: the running sums stay as they were if a bound raises)
                pos = None if pos is None else pos / n_pos
                neg = None if neg is None else neg / n_neg
            update = self._bounded(w, pos, neg, owned=True)
            self.clear()
            return update
        self.clear()  # the buffers are this window's: handed out below
        if pos is None:
            return neg.mul_(-1.0 / n_neg if mean else -1.0)  # type: ignore[union-attr]
        if mean:
            pos.div_(n_pos)
        if neg is not None:
            pos.sub_(neg, alpha=1.0 / n_neg if mean else 1.0)
        return pos

    def _handed(self, param: Any, pos: Tensor | None, neg: Tensor | None) -> bool:
        """Whether :meth:`_take_update` takes the running components as they are (a sum
        or a mean with an append, in ``param``'s shape, dtype and device; else
        :meth:`update` reads them)."""
        if not isinstance(param, Tensor) or self._mode not in ("sum", "mean"):
            return False
        if pos is None and neg is None:
            return False
        shape, dtype, device = param.shape, param.dtype, param.device
        for b in (pos, neg):
            if b is not None and not (b.dtype == dtype and b.shape == shape and b.device == device):
                return False
        return True

    def _bounded(self, w: Tensor, pos: Tensor | None, neg: Tensor | None,
                 owned: bool = False) -> Tensor | None:  # fmt: skip
        """The update of the components ``pos``, ``neg`` with the bounds applied (``None``
        without either). ``owned``: they are the window's, handed over (a result may be
        ``pos`` itself and is then combined in place)."""
        if self._full is not None:
            fn, mx, mn, kw = self._full
            return fn(w, torch.zeros_like(w) if pos is None else pos,
                      torch.zeros_like(w) if neg is None else neg, mx, mn, **kw)  # fmt: skip
        upper, lower = self._upper, self._lower
        out = pos if pos is None or upper is None else upper[0](w, pos, upper[1], **upper[2])
        if neg is None:
            return out
        n = neg if lower is None else lower[0](w, neg, lower[1], **lower[2])
        if out is None:
            return -n
        if (owned and out is pos) or self._owned(out, pos, neg, w):  # fresh: in place
            return out.sub_(n)
        return out - n

    @no_grad
    def forward(self, param: Tensor, **kwargs: Any) -> Tensor:
        r"""Computes the update and returns a tensor with it applied.

        Args:
            param (torch.Tensor): parameter being updated.

        Returns:
            torch.Tensor: parameter with the update applied (``param`` itself when
            nothing was appended).
        """
        update = self.update(param, **kwargs)
        if update is None:
            return param
        return param.detach() + update
