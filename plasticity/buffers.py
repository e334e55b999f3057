"""Step buffers: preallocated ``[capacity, B, *shape]`` storage of the steps a rule observes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["StepBuffer", "SignalBuffers", "same_storage"]


class StepBuffer:
    """Preallocated ``[capacity, B, *shape]`` buffer of steps (grows by doubling).

    Rows ``[0, n)`` are paired steps; rows ``[n, end)`` are *staged* (copied in, not yet
    paired: see the rule's pairing protocol). Copying a block in converts it to the
    buffer's device and dtype: no per-step allocation, no concatenation when processed.
    """

    __slots__ = ("data", "n", "end", "rows")

    def __init__(self) -> None:
        self.data: Tensor | None = None
        self.n = self.end = 0
        self.rows: tuple[Tensor, ...] | None = None  # per-step views of data, for the hooks

    def __getstate__(self) -> dict:
        # the row views are rebuilt from data on first use (a copy keeps no stale views)
        return {"data": self.data, "n": self.n, "end": self.end}

    def __setstate__(self, state: dict) -> None:
        self.data, self.n, self.rows = state["data"], state["n"], None
        self.end = state.get("end", self.n)

    def stage_step(self, step: Tensor) -> bool:
        """Copies one step (``[B, *shape]``, shaped like the buffered ones) into row ``n``
        without pairing it: the hooks' per-step fast path. ``False`` (nothing done) where
        :meth:`stage` must handle it: no buffer yet, the buffer full, or another shape."""
        data, n = self.data, self.n
        if data is None or n >= data.shape[0] or step.shape != data.shape[1:]:
            return False
        rows = self.rows
        if rows is None:
            rows = self.rows = data.unbind(0)
        rows[n].copy_(step)
        self.end = n + 1
        return True

    def push(self, step: Tensor) -> bool:
        """:meth:`stage_step` and pair the step at once."""
        if not self.stage_step(step):
            return False
        self.n += 1
        return True

    def stage(self, block: Tensor, like: Tensor, at: int, capacity: int) -> None:
        """Copies ``block`` (``[T, B, *shape]``) into rows ``[at, at + T)`` (``at >= n``),
        growing the buffer; rows before ``at`` are kept."""
        steps = block.shape[0]
        data = self.data
        fits = (
            data is not None
            and data.shape[1:] == block.shape[1:]
            and data.dtype == like.dtype
            and data.device == like.device
        )
        if not fits or at + steps > data.shape[0]:  # type: ignore[union-attr]
            size = max(capacity, at + steps, 2 * data.shape[0] if fits else 0)  # type: ignore[union-attr]
            fresh = torch.empty((size, *block.shape[1:]), dtype=like.dtype, device=like.device)
            if at:
                fresh[:at].copy_(data[:at])  # type: ignore[index]
            self.data = data = fresh
            self.rows = None
        data[at : at + steps].copy_(block)  # type: ignore[index]
        self.end = at + steps

    def append(self, block: Tensor, like: Tensor, capacity: int) -> None:
        """Stages ``block`` right after the paired steps and pairs it."""
        self.stage(block, like, self.n, capacity)
        self.n += block.shape[0]

    def commit(self, row: int, steps: int) -> None:
        """Pairs the staged rows ``[row, row + steps)`` (moved to row ``n`` if elsewhere)."""
        self.move(row, self.n, steps)
        self.n += steps
        self.end = max(self.end, self.n)

    def move(self, src: int, dst: int, steps: int) -> None:
        if src != dst:
            assert self.data is not None
            self.data[dst : dst + steps] = self.data[src : src + steps].clone()

    def unstage(self) -> None:
        """Forgets every staged row."""
        self.end = self.n

    def row(self, i: int) -> Tensor:
        """Step ``i`` (``[B, *shape]``): a view kept with the buffer (no op per call),
        valid until the buffer grows (its values: until the next append or consume)."""
        rows = self.rows
        if rows is None:
            assert self.data is not None
            rows = self.rows = self.data.unbind(0)
        return rows[i]

    def view(self, n: int) -> Tensor:
        """The first ``n`` buffered steps (valid until the next append or consume)."""
        assert self.data is not None
        return self.data[:n]

    def consume(self, n: int) -> None:
        """Drops the first ``n`` steps, keeping the rest (staged rows too) at the front."""
        rest = self.end - n
        if rest > 0:
            assert self.data is not None
            self.data[:rest] = self.data[n : self.end].clone()
        self.n -= n
        self.end = max(rest, 0)

    def clear(self) -> None:
        self.n = self.end = 0

    def tensor(self) -> Tensor | None:
        return None if self.n == 0 else self.view(self.n).clone()


def same_storage(tensor: Any, ref: Any) -> bool:
    """Whether ``tensor`` is (a view of) the tensor that the weak reference ``ref`` holds."""
    target = None if ref is None else ref()
    if not isinstance(tensor, Tensor) or target is None:
        return False
    return tensor is target or (
        tensor.untyped_storage().data_ptr() == target.untyped_storage().data_ptr()
    )


class SignalBuffers:
    """The steps of a rule's user-fed signals (``post.signal(name)``,
    ``pre.signal(name)``): one :class:`StepBuffer` per name, whose row ``t`` holds step
    ``t``'s values ``[B, *side]`` once they are fed, so ``n`` counts the steps fed. Rows
    are consumed with the spikes of the same steps.

    Example:
        >>> import torch
        >>> fed = SignalBuffers({"L": "post"})
        >>> fed.append("L", torch.ones(2, 1, 3), torch.zeros(()), 16)
        >>> fed.steps(), fed.missing(3), list(fed.views(2))
        (2, ['L'], ['signal:L'])
    """

    __slots__ = ("sides", "buffers")

    def __init__(self, sides: dict[str, str]) -> None:
        self.sides = dict(sides)  # {name: "pre" or "post"}
        self.buffers = {name: StepBuffer() for name in self.sides}

    def steps(self) -> int:
        """The steps for which every signal has been fed."""
        return min(b.n for b in self.buffers.values())

    def missing(self, steps: int) -> list[str]:
        """The names not fed for each of the first ``steps`` steps."""
        return [name for name, b in self.buffers.items() if b.n < steps]

    def append(self, name: str, block: Tensor, like: Tensor, capacity: int) -> None:
        """Adds the rows of the next ``block.shape[0]`` steps of ``name``."""
        self.buffers[name].append(block, like, capacity)

    def views(self, n: int) -> dict[str, Tensor]:
        """The first ``n`` steps of every signal, keyed as the engine reads them."""
        return {"signal:" + name: b.view(n) for name, b in self.buffers.items()}

    def consume(self, n: int) -> None:
        for b in self.buffers.values():
            b.consume(min(n, b.n))

    def clear(self) -> None:
        for b in self.buffers.values():
            b.clear()

    def state(self) -> dict[str, Tensor | None]:
        """The fed rows not yet processed (for a checkpoint)."""
        return {name: b.tensor() for name, b in self.buffers.items()}

    def load(self, saved: dict[str, Tensor | None], capacity: int) -> None:
        """Restores :meth:`state` (names this rule does not read are ignored)."""
        self.buffers = {name: StepBuffer() for name in self.sides}
        for name, rows in saved.items():
            if rows is not None and name in self.buffers:
                self.buffers[name].append(rows, rows, capacity)
