"""The accumulator across processes (``all_reduce_``) and checkpoints (its extra state:
append counts and reduction, mid-window)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._grad import no_grad

__all__ = ["AccumulatorState"]

_COMPONENTS = ("pos", "neg")
_BUFFER = {"pos": "pos_acc", "neg": "neg_acc"}  # each component's running buffer


class AccumulatorState:
    """Distributed reduction and ``state_dict`` support of :class:`~plasticity.Accumulator`
    (a mixin)."""

    # ------------------------------------------------------------------ distributed

    @no_grad
    def all_reduce_(
        self, like: Tensor, *, group: Any = None, weight: float = 1.0, average: bool = False
    ) -> None:
        r"""Combines this window's components across the ranks of a process group, in place.

        Every rank must call it (a collective). Each rank contributes ``weight * pos`` and
        ``weight * neg`` (a missing component counts as zeros shaped like ``like``); with
        ``average`` the sums are divided by the summed weights. A rule whose components
        are batch means passes its local batch size as ``weight`` and ``average=True``:
        the result is then the mean over the union of the ranks' batches, exactly, also for
        unequal local batches. One collective carries both components and the weights.
        Supports the default sum reduction. Bounds are applied afterwards, in
        :meth:`~plasticity.Accumulator.update`, so N ranks equal one process on the union of
        their data.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
            return
        if self._mode != "sum":
            raise ValueError("Accumulator.all_reduce_ supports the default sum reduction only")
        parts = []
        for c in _COMPONENTS:
            buf = self._buffers[_BUFFER[c]]
            parts.append(
                torch.zeros_like(like).reshape(-1)
                if buf is None
                else buf.reshape(-1).to(like) * weight
            )
        packed = torch.cat(
            [
                *parts,
                like.new_tensor([float(weight), *[float(self._counts[c]) for c in _COMPONENTS]]),
            ]
        )
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        total_weight = float(packed[-3])
        n = like.numel()
        for k, c in enumerate(_COMPONENTS):
            value = packed[k * n : (k + 1) * n].view(like.shape)
            if average and total_weight > 0:
                value = value / total_weight
            if float(packed[-2 + k]) > 0:  # appended to on some rank
                self._buffers[_BUFFER[c]] = value.clone()
                self._counts[c] = max(self._counts[c], 1)
            else:
                self._reset(c)

    # --------------------------------------------------------------- state & devices

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "mode": self._mode,
            "counts": dict(self._counts),
            "lists": {c: [t.clone() for t in self._lists[c]] for c in _COMPONENTS},
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._check_extra_state(state)
        self._counts = {c: int(state["counts"][c]) for c in _COMPONENTS}
        ref = self._reference()
        self._lists = {
            c: [
                t.detach().clone() if ref is None else t.detach().to(ref).clone()
                for t in state["lists"][c]
            ]
            for c in _COMPONENTS
        }

    def _check_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"mode", "counts", "lists"} <= state.keys():
            raise ValueError("Accumulator.load_state_dict: the extra state is not an Accumulator's")
        if state["mode"] != self._mode:
            raise ValueError(
                f"Accumulator.load_state_dict: the saved window was reduced with {state['mode']!r} "
                f"but this accumulator uses {self._mode!r}; call reduction(...) to match first"
            )

    def _check_loadable(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Refuses a saved window this accumulator cannot continue (another reduction, or
        another shape than its parameter's), before anything changes."""
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:
            self._check_extra_state(extra)
        if self._shape is None:
            return
        saved = [(c, state_dict.get(f"{prefix}{c}_acc")) for c in _COMPONENTS]
        if isinstance(extra, dict) and isinstance(extra.get("lists"), dict):
            saved += [(c, t) for c in _COMPONENTS for t in extra["lists"].get(c, ())[:1]]
        for c, t in saved:
            if isinstance(t, Tensor) and tuple(t.shape) != self._shape:
                raise ValueError(
                    f"Accumulator.load_state_dict: the saved window's {c} has shape "
                    f"{tuple(t.shape)}, the parameter's is {self._shape}; load a checkpoint of "
                    "this parameter"
                )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # validate before touching anything, so a bad state leaves this accumulator as it was
        self._check_loadable(state_dict, prefix)
        # the running components exist only while a window holds appends, on either side
        for c in _COMPONENTS:
            key = f"{prefix}{c}_acc"
            if key in state_dict:
                if self._buffers[_BUFFER[c]] is None:
                    self._buffers[_BUFFER[c]] = torch.empty_like(state_dict[key])
            else:
                self._buffers[_BUFFER[c]] = None
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        super()._apply(fn, recurse)
        self._lists = {c: [fn(t) for t in self._lists[c]] for c in _COMPONENTS}
        return self

