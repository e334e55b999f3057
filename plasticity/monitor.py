"""Bounded recorders: weights, traces and spikes over a run, in preallocated memory.

Every monitor records every ``every`` calls into a preallocated buffer of ``capacity``
rows. When the buffer is full it *decimates*: it keeps every other row and doubles
``every``, so a run of any length (10⁶ steps or more) fits in the same memory, at a
resolution that halves each time the run doubles. Selections (a few synapses or neurons)
and summary statistics (mean, quantiles, histograms) keep the rows small.

Example:
    >>> import torch
    >>> from plasticity.monitor import WeightMonitor
    >>> w = torch.zeros(3, 4)
    >>> mon = WeightMonitor(w, every=1, capacity=4, select=[(0, 0), (2, 3)], stats=("mean",))
    >>> for step in range(10):
    ...     w += 0.1
    ...     mon.record(step)
    >>> mon.every, len(mon)                  # decimated twice to stay within 4 rows
    (4, 3)
    >>> mon.numpy()["values"].shape, mon.numpy()["steps"].tolist()
    ((3, 2), [0, 4, 8])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._grad import eagerly, in_backward, no_grad, run_eagerly, traced
from .hooks import output_spikes

__all__ = ["Recorder", "WeightMonitor", "SpikeMonitor", "TraceMonitor"]

_STATS = {"mean", "std", "min", "max"}


def _stat_names(stats: Sequence[str]) -> list[str]:
    names = []
    for s in stats:
        if s in _STATS or (s.startswith("q") and s[1:].isdigit() and 0 <= int(s[1:]) <= 100):
            names.append(s)
        else:
            raise ValueError(
                f"unknown statistic {s!r}; use mean, std, min, max or qNN (a percentile, e.g. q05, q95)"
            )
    return names


class Recorder:
    """A decimating, preallocated table: one row per record, ``capacity`` rows at most.

    When full, every other row is dropped and ``every`` doubles, so a recorder of any
    length keeps an evenly spaced history in fixed memory.

    Example:
        >>> import torch
        >>> rec = Recorder(capacity=4)
        >>> for step in range(10):
        ...     if rec.due():  # every `every`-th call
        ...         rec.append(step, value=torch.tensor([float(step)]))
        >>> rec.numpy()["steps"].tolist(), rec.every
        ([0, 4, 8], 4)
    """

    def __init__(self, every: int = 1, capacity: int = 1000) -> None:
        """Builds the recorder; arguments: ``help(plasticity.monitor.Recorder)``."""
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be an int >= 1, got {every!r}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 2:
            raise ValueError(f"`capacity` must be an int >= 2, got {capacity!r}")
        self.every, self.capacity = every, capacity
        self.columns: dict[str, Tensor] = {}
        self.steps = torch.zeros(capacity, dtype=torch.long)
        self.n = 0
        self._calls = 0

    def __len__(self) -> int:
        return self.n

    def due(self) -> bool:
        """Whether this call is one to record (every ``every``-th call); counts the call."""
        due = self._calls % self.every == 0
        self._calls += 1
        return due

    def _decimate(self) -> None:
        keep = slice(0, self.n, 2)
        self.steps[: (self.n + 1) // 2] = self.steps[keep].clone()
        for col in self.columns.values():
            col[: (self.n + 1) // 2] = col[keep].clone()
        self.n = (self.n + 1) // 2
        self.every *= 2

    @no_grad  # (and outside inference mode: the columns outlive it)
    def append(self, step: int, **row: Tensor) -> None:
        if self.n == self.capacity:
            self._decimate()
            if (step - int(self.steps[self.n - 1])) < self.every:
                return  # this row falls between the kept ones at the new resolution
        for name, value in row.items():
            value = value.detach().reshape(-1).to("cpu", torch.float32)
            col = self.columns.get(name)
            if col is None:
                col = self.columns[name] = torch.zeros(self.capacity, value.numel())
            col[self.n] = value
        self.steps[self.n] = step
        self.n += 1

    def numpy(self) -> dict[str, np.ndarray]:
        out = {"steps": self.steps[: self.n].numpy().copy()}
        out.update({name: col[: self.n].numpy().copy() for name, col in self.columns.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "n": self.n,
            "calls": self._calls,
            "steps": self.steps.clone(),
            "columns": {k: v.clone() for k, v in self.columns.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.every, self.n, self._calls = int(state["every"]), int(state["n"]), int(state["calls"])
        self.steps = state["steps"].clone()
        self.capacity = self.steps.shape[0]
        self.columns = {k: v.clone() for k, v in state["columns"].items()}


class WeightMonitor(Recorder):
    """Records a weight tensor: selected synapses, summary statistics, a histogram.

    Args:
        weight: the tensor to watch (e.g. ``fc.weight``).
        every: record every ``every``-th call of :meth:`record`.
        capacity: rows kept at most (then decimation).
        select: ``None`` (every synapse: only for small weights), a list of index tuples,
            or an int ``k``: ``k`` synapses spread evenly over the flattened weight.
        stats: statistics of the whole weight per row (``mean``, ``std``, ``min``, ``max``,
            ``qNN`` percentiles).
        bins: histogram edges (a sequence) or ``None``.

    Example:
        >>> import torch
        >>> fc = torch.nn.Linear(4, 2)
        >>> mon = WeightMonitor(fc.weight, select=2, stats=("mean", "max"), bins=[-1, 0, 1])
        >>> for step in range(3):
        ...     mon.record(step)
        >>> data = mon.numpy()
        >>> data["values"].shape, [str(s) for s in data["stat_names"]], data["hist"].shape
        ((3, 2), ['mean', 'max'], (3, 2))
    """

    def __init__(
        self,
        weight: Tensor,
        *,
        every: int = 1,
        capacity: int = 1000,
        select: int | Sequence[Sequence[int]] | None = 16,
        stats: Sequence[str] = ("mean", "q05", "q50", "q95"),
        bins: Sequence[float] | None = None,
    ) -> None:
        """Builds the monitor; arguments: ``help(plasticity.monitor.WeightMonitor)``."""
        if not isinstance(weight, Tensor):
            raise TypeError(f"`weight` must be a tensor, got {type(weight).__name__}")
        super().__init__(every, capacity)
        self.weight = weight
        numel = weight.numel()
        if select is None:
            self.index = None
        elif isinstance(select, int):
            self.index = torch.linspace(0, numel - 1, min(select, numel)).round().long()
        else:
            flat = []
            for idx in select:
                if len(idx) != weight.ndim or any(
                    not (0 <= i < n) for i, n in zip(idx, weight.shape, strict=True)
                ):
                    raise ValueError(
                        f"synapse index {tuple(idx)} is outside the weight's shape {tuple(weight.shape)}"
                    )
                flat.append(int(np.ravel_multi_index(tuple(idx), tuple(weight.shape))))
            self.index = torch.tensor(flat, dtype=torch.long)
        self.stats = _stat_names(stats)
        self.edges = None if bins is None else torch.as_tensor(bins, dtype=torch.float32)

    @torch.no_grad()
    def record(self, step: int | None = None) -> None:
        """Records the weight now (if due). ``step`` labels the row (default: call count)."""
        label = self._calls if step is None else step
        if not self.due():
            return
        w = self.weight.detach().reshape(-1).float().cpu()
        row: dict[str, Tensor] = {}
        row["values"] = w if self.index is None else w[self.index]
        if self.stats:
            row["stats"] = torch.stack([_stat(w, s) for s in self.stats])
        if self.edges is not None:
            row["hist"] = torch.histogram(w.clamp(self.edges[0], self.edges[-1]), self.edges).hist
        self.append(label, **row)

    def numpy(self) -> dict[str, np.ndarray]:
        out = super().numpy()
        out["stat_names"] = np.array(self.stats)
        if self.edges is not None:
            out["edges"] = self.edges.numpy().copy()
        return out


def _stat(w: Tensor, name: str) -> Tensor:
    if name == "mean":
        return w.mean()
    if name == "std":
        return w.std() if w.numel() > 1 else torch.zeros(())
    if name == "min":
        return w.min()
    if name == "max":
        return w.max()
    return torch.quantile(w, int(name[1:]) / 100.0)


class SpikeMonitor(Recorder):
    """Records a neuron's spikes (one sample of the batch, selected neurons) from its
    forward hook, every ``every`` steps. ``numpy()["spikes"]`` is ``[rows, neurons]``;
    :meth:`events` gives ``(steps, neuron ids)`` for a raster.

    Args:
        neuron: any module returning spikes or ``(spikes, ...)``.
        sample: which sample of the batch to record.
        select: neuron indices (into the flattened neuron shape), or ``None`` for all.

    Example:
        >>> import torch, snntorch as snn
        >>> lif = snn.Leaky(beta=0.5)
        >>> mon = SpikeMonitor(lif)
        >>> mem = lif.init_leaky()
        >>> for t in range(3):
        ...     spk, mem = lif(torch.tensor([[2.0, 0.0]]), mem)  # neuron 0 driven hard
        >>> steps, ids = mon.events()
        >>> steps.tolist(), ids.tolist()
        ([0, 1, 2], [0, 0, 0])
    """

    def __init__(
        self,
        neuron: nn.Module,
        *,
        every: int = 1,
        capacity: int = 10_000,
        sample: int = 0,
        select: Sequence[int] | None = None,
    ) -> None:
        """Builds the monitor; arguments: ``help(plasticity.monitor.SpikeMonitor)``."""
        if not isinstance(neuron, nn.Module):
            raise TypeError(f"`neuron` must be a module, got {type(neuron).__name__}")
        super().__init__(every, capacity)
        self.sample = sample
        self.index = None if select is None else torch.as_tensor(list(select), dtype=torch.long)
        run_eagerly(SpikeMonitor, "_on_step")  # outside torch.compile graphs
        self._handle = neuron.register_forward_hook(self._on_step)

    @torch.no_grad()
    def _on_step(self, module: nn.Module, args: tuple, output: Any) -> None:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(SpikeMonitor._on_step, self, module, args, output)
        if in_backward():  # activation checkpointing's recomputation: recorded already
            return
        label = self._calls
        if not self.due():
            return
        s = output_spikes(output, "neuron")
        s = s[self.sample] if s.ndim > 1 else s
        s = s.reshape(-1)
        self.append(label, spikes=s if self.index is None else s[self.index.to(s.device)])

    def events(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, neuron ids)`` of the recorded spikes."""
        data = self.numpy()
        rows, ids = np.nonzero(data.get("spikes", np.zeros((0, 0))))
        return data["steps"][rows], ids

    def detach(self) -> None:
        self._handle.remove()


class TraceMonitor(Recorder):
    """Records any tensor-valued quantity you pass it (e.g. a rule's trace, a membrane
    potential): :meth:`record` ``(value, step)``, with a selection of elements.

    Example:
        >>> import torch
        >>> mon = TraceMonitor(select=[0])
        >>> for t in range(3):
        ...     mon.record(torch.tensor([0.5**t, 7.0]), step=t)
        >>> mon.numpy()["values"].ravel().tolist()
        [1.0, 0.5, 0.25]
    """

    def __init__(
        self, *, every: int = 1, capacity: int = 1000, select: Sequence[int] | None = None
    ) -> None:
        """Builds the monitor; arguments: ``help(plasticity.monitor.TraceMonitor)``."""
        super().__init__(every, capacity)
        self.index = None if select is None else torch.as_tensor(list(select), dtype=torch.long)

    @torch.no_grad()
    def record(self, value: Tensor, step: int | None = None) -> None:
        """Records ``value`` (any shape, flattened; the ``select``-ed entries) when due,
        labelled ``step`` (default: the number of calls so far)."""
        label = self._calls if step is None else step
        if not self.due():
            return
        v = value.detach().reshape(-1)
        self.append(label, values=v if self.index is None else v[self.index.to(v.device)])
