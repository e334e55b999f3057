"""A window's steps through the engine: chunks (validated by the caller) in sub-chunks
that bound the memory of the tables, the state carried exactly from one to the next."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from torch import Tensor

from ..functional.correlate import Kernels
from .chooser import CHOOSER
from .kernel import ONE_STEP
from .plan import Plan
from .run import NotFinite, Sink, finite
from .step import run_step, steppable

__all__ = ["run_window", "run_one_step"]


def run_window(
    plan: Plan,
    rows: dict[str, Tensor | None],
    bounds: list[tuple[int, int]],
    counts: list[list[int]],
    state: dict[str, Tensor] | None,
    *,
    weight: Tensor,
    chunk: int,
    tables: float,
    geometry: dict | None,
    compute: Any,
    kernel: str,
    sink: Callable[[int], Sink],
    record: dict[str, str],
    remembered: dict[str, tuple[str, ...]],
) -> dict[str, Tensor]:
    """Runs ``plan`` on the steps ``rows`` (``pre``, ``post``, ``voltage``, ``mod``:
    ``[n, B, ...]`` or ``None``) chunk by chunk (``bounds``: ``[(start, end)]``, with the
    spike ``counts`` of each, shared out among its sub-chunks by length) and returns the
    state after the last.

    Every chunk is cut into sub-chunks whose tables (the traces and products alive at
    once, :meth:`Plan.table_width`) fit in ``tables`` times the chunk's step buffers,
    less the weight-sized eligibility traces: a window's peak stays within 3 W + 1.5 S.
    ``sink(steps)`` makes the receiver of the results of one chunk of ``steps`` steps; ``kernel``, ``record`` and
    ``remembered`` go to :meth:`~plasticity.engine.chooser.KernelChooser.run`. A window
    of one step takes the fast path of :func:`~plasticity.engine.step.run_step`.
    """
    w = weight
    state = _state_on(state, w)
    pre, post = rows["pre"], rows["post"]
    assert pre is not None and post is not None
    n = pre.shape[0]
    if n == 1 and bounds == [(0, 1)] and steppable(plan):  # online learning's fast path
        one = {k: v[0] for k, v in rows.items() if v is not None}
        return _one_step(plan, one, state, Kernels(w, geometry, compute), sink(1), record)
    sub = _sub_chunk(plan, pre.numel() // n, post.numel() // n, w, chunk, tables)
    for (a, b), nnz in zip(bounds, counts, strict=True):
        receiver = sink(b - a)
        with _checked(plan, receiver, state, a, b) as state:
            for c in range(a, b, sub):
                d = min(b, c + sub)
                inputs = _steps(rows, c, d, n)
                kernels = Kernels(w, geometry, compute)
                share = nnz if d - c == b - a else [x * (d - c) // (b - a) for x in nnz]
                state = CHOOSER.run(kernel, plan, inputs, state, kernels, receiver.deliver,
                                    share, record, remembered, scale=receiver.scale)  # fmt: skip
            _close(plan, receiver, state)
    return state


def _state_on(state: dict[str, Tensor] | None, weight: Tensor) -> dict[str, Tensor]:
    """The state carried in on the weight's device and dtype (``None``: none)."""
    if state is None:
        return {}
    dtype, device = weight.dtype, weight.device
    for v in state.values():
        if v.dtype != dtype or v.device != device:
            return {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    return dict(state)  # no conversion ops on the per-step path


def _steps(rows: dict[str, Tensor | None], start: int, end: int, n: int) -> dict[str, Tensor]:
    """The inputs of the steps ``[start, end)`` of ``rows`` (of ``n`` steps)."""
    part = slice(None) if (start, end) == (0, n) else slice(start, end)
    return {k: v[part] for k, v in rows.items() if v is not None}


def _sub_chunk(plan: Plan, n_pre: int, n_post: int, weight: Tensor, chunk: int,
               tables: float) -> int:  # fmt: skip
    """Steps per sub-chunk: the tables of one (:meth:`Plan.table_width` per step, for
    ``n_pre``/``n_post`` elements of a step of each side) fit in ``tables`` times the
    ``chunk`` steps' buffers, less the weight-sized eligibility traces."""
    per_step = n_pre + n_post
    width = plan.table_width(n_pre, n_post)
    budget = tables * chunk * per_step - len(plan.eligibilities) * weight.numel()
    budget = max(budget, 0.1 * chunk * per_step)
    return max(1, int(budget / width) - 1) if width else chunk


def run_one_step(plan: Plan, rows: dict[str, Tensor | None], state: dict[str, Tensor] | None,
                 *, weight: Tensor, geometry: dict | None, compute: Any,
                 receiver: Sink, record: dict[str, str]) -> dict[str, Tensor]:  # fmt: skip
    """:func:`run_window` on a window of one step whose ``rows`` are the step's
    (``[B, ...]``, not ``[1, B, ...]``: no slicing per step) for a plan that is
    :func:`~plasticity.engine.step.steppable` (online learning: the caller checked the
    step's values as for a chunk); ``receiver``: the :class:`Sink` of the step."""
    one = {k: v for k, v in rows.items() if v is not None}
    kernels = Kernels(weight, geometry, compute)
    return _one_step(plan, one, _state_on(state, weight), kernels, receiver, record)


def _one_step(plan: Plan, rows: dict[str, Tensor], state: dict[str, Tensor],
              kernels: Kernels, receiver: Sink, record: dict[str, str]) -> dict[str, Tensor]:  # fmt: skip
    """A window of one step (``rows``: ``[B, ...]``) by
    :func:`~plasticity.engine.step.run_step` (no sub-chunks, no counts, no kernel choice;
    errors as :func:`_checked`)."""
    try:
        out = run_step(plan, rows, state, kernels, receiver.deliver, scale=receiver.scale)
        _close(plan, receiver, out)
    except NotFinite as err:
        _failed(err, plan, state, 0, 1)
        raise
    labels = plan.__dict__.get("_one_step_record")  # (the same every step: set once)
    if labels is None:
        labels = plan.__dict__["_one_step_record"] = {p.label: ONE_STEP for p in plan.products}
    if record != labels:
        record.clear()
        record.update(labels)
    return out


def _failed(err: NotFinite, plan: Plan, state: dict[str, Tensor], start: int, end: int) -> None:
    """What a :class:`NotFinite` result of the chunk ``[start, end)`` run from ``state``
    carries: the chunk's steps and the state before it, less the eligibility traces
    (updated in place by the chunk; a copy per chunk would cost a weight's memory)."""
    err.start, err.end = start, end
    err.state = {k: v for k, v in state.items() if k not in plan.eligibilities}
    err.cleared = len(err.state) < len(state)


@contextmanager
def _checked(plan: Plan, receiver: Sink, state: dict[str, Tensor], start: int, end: int):
    """Runs a chunk of steps ``[start, end)`` from ``state``: a :class:`NotFinite` result
    gets :func:`_failed`'s steps and state."""
    try:
        yield state
    except NotFinite as err:
        _failed(err, plan, state, start, end)
        raise


def _close(plan: Plan, receiver: Sink, state: dict[str, Tensor]) -> None:
    """Adds the chunk's held results; a checked chunk's eligibility traces are checked
    too (they reach the accumulator only through later chunks)."""
    if receiver.checked:
        for key in plan.eligibilities:
            if key in state and not finite(state[key]):
                raise NotFinite(key.key, partial=bool(receiver.started))
    receiver.close()
