"""Shared wiring of every synapse rule: hooks, step buffering, chunked kernels, step/reset.

A rule observes the synapse's input (pre spikes, forward pre-hook) and the neuron's
output (post spikes, forward hook), buffers the steps, and every ``chunk_size`` paired
steps runs its kernel once on the whole chunk: traces are scanned, one GEMM (or one conv
weight-grad) gives ``pos`` and ``neg``, which go to :attr:`PlasticityRule.accumulator`.
Weights are frozen during a window, so chunked and per-step computation are identical.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch
from torch import Tensor, nn

from ..accumulator import Accumulator
from ..functional.correlate import KERNELS, choose_kernel
from ..functional.stdp import COINCIDENT
from ..functional.traces import TRACE_MODES, decay_factor
from ..hooks import output_spikes, synapse_adapter

__all__ = ["PlasticityRule", "check_positive", "check_amplitude"]

SPIKE_POLICIES = ("binary", "graded")
PRECISIONS = ("full", "bf16")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    return value


def check_positive(name: str, value: Any) -> float:
    """A finite number > 0 (time constants, dt), or a clear error naming ``name``."""
    value = _real(name, value)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")
    return value


def check_amplitude(name: str, value: Any) -> float:
    """A finite number >= 0: amplitudes are magnitudes; depression is subtracted by the rule."""
    value = _real(name, value)
    if value < 0:
        raise ValueError(
            f"`{name}` must be >= 0, got {value}: amplitudes are magnitudes (the rule subtracts "
            "depression itself); for anti-Hebbian learning swap the amplitudes explicitly"
        )
    return value


def _choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(o) for o in options)}; got {value!r}"
        )
    return value


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


def _same_storage(tensor: Any, ref: Any) -> bool:
    """Whether ``tensor`` is (a view of) the tensor that the weak reference ``ref`` holds."""
    target = None if ref is None else ref()
    if not isinstance(tensor, Tensor) or target is None:
        return False
    return tensor is target or (
        tensor.untyped_storage().data_ptr() == target.untyped_storage().data_ptr()
    )


_PRE, _POST = "the synapse's input spikes", "the neuron's output spikes"


def spike_count(spikes: Tensor, *, binary: bool, what: str = "spikes") -> tuple[int, int | None]:
    """``(non-zeros, first step with NaN/inf or None)`` of ``[T, ...]`` spikes; with
    ``binary``, values other than 0 and 1 (before a non-finite step) are a ``ValueError``.

    Binary check: with every value in [0, 1] (``aminmax``), the sum equals the sum of
    squares exactly when every value is 0 or 1, since the sum of s(1 - s) is zero only
    then; the sum is then the spike count. (Float32 sums of 0/1 are exact below 2**24.)

    Example:
        >>> import torch
        >>> spike_count(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), binary=True)
        (3, None)
        >>> spike_count(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), binary=True)
        (1, 1)
    """
    flat = spikes.reshape(-1)
    if not binary:
        total, nnz = flat.sum(), torch.count_nonzero(flat)
        if math.isfinite(float(total)):
            return int(nnz), None
    else:
        lo, hi = torch.aminmax(flat)
        total = flat.sum()
        squares = torch.dot(flat, flat)
        if flat.numel() >= 2**24 and flat.dtype != torch.float64:
            total, squares = flat.double().sum(), flat.double().square().sum()
        # one read-back for the four numbers (fewer small ops: they dominate at B = 1)
        lo, hi, total, squares = torch.stack(
            [lo.to(total.dtype), hi.to(total.dtype), total, squares]
        ).tolist()
        if math.isfinite(total) and math.isfinite(squares):
            if not (lo >= 0 and hi <= 1 and total == squares):
                raise ValueError(
                    f"{what} are not binary (values other than 0 and 1); pass spikes='graded' "
                    "to use graded values as spike amplitudes"
                )
            return int(total), None
    finite = torch.isfinite(spikes.reshape(spikes.shape[0], -1)).all(1)
    bad = int((~finite).nonzero()[0, 0])
    nnz = spike_count(spikes[:bad], binary=binary, what=what)[0] if bad else 0
    return nnz, bad


class PlasticityRule(nn.Module):
    """Base class: attaches to a synapse and its neuron, buffers steps, runs a kernel per chunk.

    Subclasses implement :meth:`_initial_state` and :meth:`_run`. The synapse and neuron
    are not registered as submodules (the rule's ``state_dict`` holds only its own state:
    traces, buffered steps and the accumulator).

    Example:
        The life cycle every rule shares (here :class:`~plasticity.STDP`):

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
        >>> rule = pl.STDP(fc, lif, a_plus=0.1, a_minus=0.1, tau_plus=5.0, tau_minus=5.0)
        >>> isinstance(rule, pl.PlasticityRule), rule.learning
        (True, True)
        >>> rule.observe(torch.ones(4, 1, 3), torch.ones(4, 1, 2))  # or hooks, step by step
        >>> dw = rule.step()            # fc.weight.grad is now -dw
        >>> rule.reset(); _ = rule.eval(); rule.learning
        False
        >>> rule.detach()               # no hooks left
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        dt: float = 1.0,
        trace: str = "all-to-all",
        coincident: str = "ltp",
        batch_reduction: str = "mean",
        decay: str = "exact",
        chunk_size: int | None = None,
        kernel: str = "auto",
        spikes: str = "binary",
        precision: str = "full",
        process_group: Any = None,
        distributed: bool | None = None,
        time_constants: dict[str, float] | None = None,
    ) -> None:
        adapter = synapse_adapter(synapse)
        if not isinstance(neuron, nn.Module):
            raise TypeError(
                f"`neuron` must be a torch.nn.Module (e.g. snn.Leaky), got {type(neuron).__name__}"
            )
        if neuron is synapse:
            raise ValueError(
                "`neuron` is the synapse itself; pass the spiking module the synapse drives"
            )
        dt = check_positive("dt", dt)
        _choice("trace", trace, TRACE_MODES)
        _choice("coincident", coincident, COINCIDENT)
        _choice("batch_reduction", batch_reduction, ("mean", "sum"))
        _choice("decay", decay, ("exact", "euler"))
        _choice("kernel", kernel, KERNELS)
        _choice("spikes", spikes, SPIKE_POLICIES)
        _choice("precision", precision, PRECISIONS)
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(
                f"`chunk_size` must be an int >= 1 or None (automatic), got {chunk_size!r}"
            )
        for name, tau in (time_constants or {}).items():
            try:  # forward-Euler decay needs dt < tau
                decay_factor(dt, check_positive(name, tau), decay)
            except ValueError as err:
                raise ValueError(f"`{name}`: {err}") from err
        super().__init__()
        self.dt, self.trace, self.coincident = dt, trace, coincident
        self.batch_reduction, self.decay, self.chunk_size = batch_reduction, decay, chunk_size
        self.kernel, self.spikes, self.precision = kernel, spikes, precision
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(
                f"`distributed` must be True, False or None (automatic), got {distributed!r}"
            )
        self.process_group, self.distributed = process_group, distributed
        self.accumulator = Accumulator()
        self.__dict__["_adapter"] = adapter
        self.__dict__["_neuron"] = neuron
        self._pre = StepBuffer()
        self._post = StepBuffer()
        # staged synapse inputs not yet paired with a neuron call: [start row, steps,
        # steps consumed, weak reference to the synapse output they produced]
        self._pending: list[list] = []
        self._warned: set[str] = set()  # warning kinds given in this window
        # in this window (reported by step() and by errors)
        self._neuron_calls = self._dropped = self._window_steps = 0
        self._mod: StepBuffer | None = None  # per-step modulator rows [B] (modulated rules)
        self._batch: int | None = None
        self._state: tuple[Tensor, ...] | None = None
        self._workspace: dict[str, Tensor] = {}  # scratch buffers reused across chunks
        self._handles: list = []
        self.attach()

    # ------------------------------------------------------------------- subclasses

    def _initial_state(self, pre: Tensor, post: Tensor) -> tuple[Tensor, ...]:
        """Zero traces for a chunk's first step shapes ``pre[0]`` / ``post[0]``."""
        raise NotImplementedError

    def _run(
        self,
        pre: Tensor,
        post: Tensor,
        state: tuple[Tensor, ...],
        correlate: Callable[..., Tensor],
        kernels: dict[str, str],
        modulator: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, tuple]:
        """The rule's kernel on one chunk: ``(pos, neg, new_state)``; ``kernels`` says
        which spike operands run event-driven; ``modulator`` (``[T, B]``) is the
        per-step third factor of modulated rules."""
        raise NotImplementedError

    #: whether the presynaptic spike count is needed to choose a kernel for the pre side
    _needs_pre_kernel = True

    #: automatic chunks hold about this many bytes of presynaptic spikes
    CHUNK_BYTES = 1 << 23

    @property
    def chunk(self) -> int:
        """Steps per chunk: ``chunk_size``, or (``None``) about 8 MB of presynaptic spikes
        per chunk for the current batch, between 16 and 256 steps."""
        # read every step by the hooks: cached until chunk_size or the step buffer changes
        key = (self.chunk_size, self._pre.data)
        cached = self.__dict__.get("_chunk_cache")
        if cached is None or cached[0] != key[0] or cached[1] is not key[1]:
            cached = self.__dict__["_chunk_cache"] = (*key, self.chunk_for(key[1]))
        return cached[2]

    def chunk_for(self, pre: Tensor | None) -> int:
        """Steps per chunk for presynaptic steps shaped like ``pre`` (``[T, B, *in]``),
        buffered in the weight's dtype."""
        if self.chunk_size is not None:
            return self.chunk_size
        if pre is None:
            return 256
        step_bytes = math.prod(pre.shape[1:]) * self.weight.element_size()
        return max(16, min(256, self.CHUNK_BYTES // max(step_bytes, 1)))

    @property
    def _compute_dtype(self) -> torch.dtype | None:
        """Operand dtype of the correlation products: ``None`` (the weight's) or bfloat16."""
        return torch.bfloat16 if self.precision == "bf16" else None

    def _decay(self, tau: float) -> float:
        return decay_factor(self.dt, tau, self.decay)

    @property
    def _scale(self) -> float:
        return 1.0 / self._batch if (self.batch_reduction == "mean" and self._batch) else 1.0

    # ---------------------------------------------------------------------- wiring

    @property
    def synapse(self) -> nn.Module:
        """The synapse module whose ``weight`` learns."""
        return self._adapter.module

    @property
    def neuron(self) -> nn.Module:
        """The spiking module whose output is the postsynaptic activity."""
        return self._neuron

    @property
    def weight(self) -> Tensor:
        return self._adapter.weight

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @property
    def learning(self) -> bool:
        """Whether steps are observed now: the rule and its synapse are in training mode."""
        return self.training and self.synapse.training and self.attached

    def detach(self) -> None:
        """Removes every hook; the rule observes nothing more (``step()`` still applies
        what was accumulated)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    remove = detach

    def _check_batch(self, batch: int) -> None:
        if self._batch is not None and batch != self._batch:
            raise ValueError(
                f"the batch size changed from {self._batch} to {batch} within a sequence; call "
                "rule.reset() before a batch of another size"
            )

    # ------------------------------------------------------------ pairing protocol
    #
    # A neuron call is paired with the synapse output that fed it. The synapse's input is
    # *staged* (copied into the pre buffer after the paired steps) by the synapse's
    # pre-hook; the neuron's hook *commits* one staged step (or a block of steps) together
    # with its spikes. A staged input that never reaches the neuron (a sanity call, a call
    # feeding another neuron) is dropped with a warning and never shifts later pairs. A
    # ``[T, B, N]`` sequence through the synapse is consumed one step per neuron call.
    # The hooks run every step: keep their fast paths lean.

    def _on_pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not (self.training and module.training):
            return
        x = args[0] if args else kwargs.get("input")
        pending, pre = self._pending, self._pre
        # fast path: one step shaped like the paired ones, nothing else staged
        if not pending and self._batch is not None and isinstance(x, Tensor):
            if pre.stage_step(x.detach()):
                pending.append([pre.n, 1, 0, None])
                return
        if not isinstance(x, Tensor):
            raise TypeError(f"the synapse's input is {type(x).__name__}, not a spike tensor")
        block = self._adapter.pre_steps(x)
        if self._batch is not None and block.shape[1] != self._batch:
            self._check_batch(block.shape[1])
        if pending:  # earlier inputs not (fully) consumed: keep at most the latest one
            other_shape = pre.data is None or pre.data.shape[1:] != block.shape[1:]
            if len(pending) > 1 or pending[-1][2] > 0 or other_shape:
                self._drop_pending(keep_last=pending[-1][2] == 0 and not other_shape)
        at = pending[-1][0] + pending[-1][1] if pending else pre.n
        capacity = self.chunk if pre.data is not None else self.chunk_for(block)
        pre.stage(block.detach(), self.weight, at, capacity)
        pending.append([at, block.shape[0], 0, None])

    def _on_synapse_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Remembers which tensor the staged input produced (to find it at the neuron)."""
        pending = self._pending
        if pending and isinstance(output, Tensor):
            pending[-1][3] = weakref.ref(output)

    def _on_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not (self.training and self._adapter.module.training):
            return
        s = (
            output
            if isinstance(output, Tensor)
            else output_spikes(output, f"neuron ({type(module).__name__})")
        )
        pending = self._pending
        self._neuron_calls += 1
        # fast path: the one staged step of this neuron call, shaped like the paired ones
        if (
            len(pending) == 1
            and pending[0][1] == 1
            and pending[0][0] == self._pre.n
            and self._mod is None
            and self._batch is not None
            and self._post.push(s.detach())
        ):
            self._pre.n += 1
            pending.clear()
            self._maybe_flush()
            return
        block = self._adapter.post_steps(s, self._pre.data)
        if self._batch is not None and block.shape[1] != self._batch:
            self._check_batch(block.shape[1])
        if not pending:
            self._warn_once(
                "unfed",
                f"the neuron ({type(module).__name__}) was called without an input from the "
                f"rule's synapse ({type(self.synapse).__name__}) since its last call: its "
                "spikes are not paired with any presynaptic step and are ignored",
            )
            return
        chosen = len(pending) - 1
        if len(pending) > 1:
            current = args[0] if args else None
            fed = [_same_storage(current, p[3]) for p in pending]
            if any(fed):
                chosen = len(fed) - 1 - fed[::-1].index(True)
                self._warn_stray()
            else:
                self._warn_once(
                    "shared",
                    f"the synapse ({type(self.synapse).__name__}) was called {len(pending)} "
                    f"times before the neuron ({type(module).__name__}): weight sharing is not "
                    "supported by the hooks; the neuron's spikes are paired with the last call "
                    "only, the other calls are dropped (use rule.observe() for such networks)",
                )
        start, steps, cursor, ref = pending[chosen]
        take = block.shape[0]
        if take > steps - cursor:
            raise ValueError(
                f"the neuron returned {take} steps but the synapse's input holds only "
                f"{steps - cursor} unpaired steps; call the neuron once per synapse step"
            )
        pre = self._pre
        pre.commit(start + cursor, take)
        self._add(self._post, block, flush=False)
        cursor += take
        if len(pending) > 1:  # the other staged inputs never reached the neuron
            del pending[chosen]
            self._drop_pending(keep_last=False, warn=False)
            if cursor < steps:  # the rest of the sequence stays staged, after the pairs
                rest = pre.data[start + cursor : start + steps].clone()  # type: ignore[index]
                pre.stage(rest, rest, pre.n, 0)
                pending.append([pre.n - cursor, steps, cursor, ref])
        elif cursor < steps:  # a sequence, consumed one neuron call at a time
            pending[0][2] = cursor
        else:
            pending.clear()
        if not pending:
            pre.unstage()
            self._maybe_flush()

    def _drop_pending(self, keep_last: bool, warn: bool = True) -> None:
        """Forgets staged inputs that did not reach the neuron; with ``keep_last`` the
        latest one stays staged (moved right after the paired steps)."""
        pending, pre = self._pending, self._pre
        keep = pending[-1] if keep_last else None
        dropped = sum(p[1] - p[2] for p in (pending[:-1] if keep_last else pending))
        if warn and dropped:
            self._warn_stray()
        self._dropped += dropped
        pending.clear()
        pre.unstage()
        if keep is not None:
            pre.stage(pre.data[keep[0] : keep[0] + keep[1]].clone(), pre.data, pre.n, 0)
            keep[0] = pre.n
            pending.append(keep)

    def _warn_stray(self) -> None:
        self._warn_once(
            "stray",
            f"an output of the rule's synapse ({type(self.synapse).__name__}) never reached "
            f"its neuron ({type(self.neuron).__name__}) (a sanity call, or a call feeding "
            "another neuron): that step is dropped and does not shift later pairs",
        )

    def _warn_once(self, kind: str, message: str) -> None:
        """One warning of each kind per window (``step()`` starts a new window)."""
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, UserWarning, stacklevel=3)

    def _add(self, buffer: StepBuffer, block: Tensor, flush: bool = True) -> None:
        if self._batch is None:
            self._batch = block.shape[1]
        weight = self._adapter.module.weight
        # the first presynaptic block sizes the buffers (before it, chunk is a guess)
        chunk = self.chunk if self._pre.data is not None else self.chunk_for(block)
        buffer.append(block.detach(), weight, chunk)
        if self._mod is not None and buffer is self._post:
            self._mod.append(weight.new_zeros(block.shape[:2]), weight, chunk)
        if flush:
            self._maybe_flush()

    @torch.no_grad()
    def observe(self, pre: Tensor, post: Tensor) -> None:
        """Learns from whole sequences without hooks: ``pre`` ``[T, B, *in]``, ``post``
        ``[T, B, *out]`` (the way to feed a conv synapse a ``[T, B, C, H, W]`` sequence).

        With nothing buffered, the sequence is processed straight from ``pre`` and
        ``post`` in chunks (no copy into the step buffers); only a remainder shorter than
        16 steps (or than ``chunk_size``) is buffered for the next call. ``pre`` and
        ``post`` are read, never modified.
        """
        if self._pending:  # synapse inputs of the hooks that no neuron call took
            self._drop_pending(keep_last=False)
        if self._pre.n or self._post.n or self._mod is not None:
            self._observe(pre, post)
            self._maybe_flush()
            return
        pre_block, post_block = self._steps(pre, post)
        w = self.weight
        pre_block = pre_block.detach().to(device=w.device, dtype=w.dtype)
        post_block = post_block.detach().to(device=w.device, dtype=w.dtype)
        first = self._batch is None
        if first:
            self._batch = pre_block.shape[1]
        chunk = self.chunk_for(pre_block)
        steps = pre_block.shape[0]
        direct = (steps // chunk) * chunk
        if steps - direct >= min(chunk, 16):  # a remainder worth a kernel call of its own
            direct = steps
        if direct:
            try:
                self._process(pre_block[:direct], post_block[:direct], None, chunk)
            except ValueError:  # spikes that break the policy: the rule stays as it was
                if first:
                    self._batch = None
                raise
        if direct < pre_block.shape[0]:  # the remainder, in buffers just its size
            rest = pre_block.shape[0] - direct
            self._pre.append(pre_block[direct:], w, rest)
            self._post.append(post_block[direct:], w, rest)

    def _maybe_flush(self) -> None:
        chunk, hold = self.chunk, self._hold_last
        if self._pre.n >= chunk + hold and self._post.n >= chunk + hold:
            self.flush(keep_last=hold)

    def _steps(self, pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
        """``pre``/``post`` as ``[T, B, ...]`` blocks, checked against the synapse and each other."""
        pre_block = self._adapter.pre_steps(pre)
        post_block = self._adapter.post_steps(post, pre_block)
        if pre_block.shape[:2] != post_block.shape[:2]:
            raise ValueError(
                f"`pre` covers [T, B] = {list(pre_block.shape[:2])} but `post` covers "
                f"{list(post_block.shape[:2])}; pass the same steps and samples"
            )
        self._check_batch(pre_block.shape[1])
        return pre_block, post_block

    def _observe(self, pre: Tensor, post: Tensor) -> int:
        """Validates and buffers a sequence without processing it; returns its steps."""
        if self._pending:
            self._drop_pending(keep_last=False)
        pre_block, post_block = self._steps(pre, post)
        self._pre.append(pre_block.detach(), self.weight, self.chunk_for(pre_block))
        self._add(self._post, post_block, flush=False)
        return pre_block.shape[0]

    # ---------------------------------------------------------------------- compute

    def _inspect(self, spikes: Tensor, what: str, need_count: bool = True) -> tuple[str, int | None]:
        """Kernel choice for one side of a chunk (``"dense"``/``"sparse"``) and the first
        step holding NaN or infinity (``None`` if none); checks the ``spikes`` policy on
        the way (of the steps before a non-finite one), with read-only reductions."""
        nnz, bad = spike_count(spikes, binary=self.spikes == "binary", what=what)
        if bad is not None:
            return "dense", bad
        return (choose_kernel(self.kernel, spikes, nnz) if need_count else "dense"), None

    def _sink(self, which: str) -> Callable[[Tensor | None], None]:
        """Appends a kernel's fresh ``pos``/``neg`` result to the accumulator (no copy).
        Kernels may call it mid-chunk, so that a finished component is folded into the
        running sum before the next one is computed (one weight-sized result alive)."""
        # weight-independent kernels on validated binary spikes give finite sums of finite
        # amplitudes times traces: no NaN check needed
        finite = self.spikes == "binary" and self._finite_on_binary

        def append(value: Tensor | None) -> None:
            self.accumulator._append(which, value, owned=True, finite=finite)

        return append

    def _sink_rows(self) -> Callable[[str, Tensor, slice], None] | None:
        """Where a kernel may deliver ``pos``/``neg`` in row blocks, each added to the
        running sum at once (one block alive instead of a weight-sized result): for
        weight-independent kernels on validated binary spikes (finite by construction)
        into a running sum or mean; else ``None`` (whole results through :meth:`_sink`)."""
        acc = self.accumulator
        if not (self.spikes == "binary" and self._finite_on_binary and acc._adds_rows()):
            return None
        shape = self.weight.shape

        def add(which: str, value: Tensor, rows: slice) -> None:
            acc._append_rows(which, value, rows, shape)

        return add

    def _post_event_options(self, kernels: dict) -> dict[str, Any]:
        """Keywords of the post-events kernels (pair and triplet STDP): workspace, sinks,
        compute dtype, whether post spikes are binary, and ``scratch`` where the chunk is
        the rule's own step buffers holding binary spikes (checked), so that the tables
        can be scanned into them."""
        binary = self.spikes == "binary"
        return dict(
            workspace=self._workspace,
            sink=self._sink("pos"),
            sink_rows=self._sink_rows(),
            compute_dtype=self._compute_dtype,
            binary_post=binary,
            scratch=kernels.get("scratch", False) and binary,
        )

    #: modulated rules keep the latest step buffered: its reward comes after its forward pass
    _hold_last = False
    #: the kernel's output is finite whenever the spikes are binary (pair/triplet STDP: no
    #: weights or rewards enter it), so the accumulator's NaN check can be skipped
    _finite_on_binary = False

    @torch.no_grad()
    def flush(self, keep_last: bool = False) -> None:
        """Runs the kernel on every paired buffered step (in chunks of :attr:`chunk` steps).

        Steps whose spikes break the ``spikes`` policy are discarded with a ``ValueError``;
        traces, accumulator and weights are then unchanged.
        """
        n = min(self._pre.n, self._post.n) - (1 if keep_last else 0)
        if n <= 0:
            return
        mod = None if self._mod is None else self._mod.view(n)
        w = self.weight
        # the per-step fast path does not follow a weight moved mid-window: the steps do here
        pre, post = (b.view(n).to(device=w.device, dtype=w.dtype) for b in (self._pre, self._post))
        try:  # the buffered steps are consumed here: kernels may use them as scratch
            self._process(pre, post, mod, self.chunk, scratch=True)
        except ValueError:  # spikes that break the policy are discarded
            self._consume(n)
            raise
        self._consume(n)

    def _consume(self, n: int) -> None:
        for p in self._pending:  # staged rows move to the front with the rest
            p[0] -= n
        self._pre.consume(n)
        self._post.consume(n)
        if self._mod is not None:
            self._mod.consume(n)

    def _process(
        self, pre: Tensor, post: Tensor, mod: Tensor | None, chunk: int, scratch: bool = False
    ) -> None:
        """Runs the kernel on ``[n, B, ...]`` steps in chunks; checks every chunk's spikes
        first, so that a ``ValueError`` leaves traces and accumulator unchanged.
        ``scratch``: the steps are the rule's own (the step buffers, consumed afterwards):
        a kernel may overwrite a chunk's spikes once they are checked."""
        n = pre.shape[0]
        bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
        info, bad = [], None  # bad: (first step with NaN/inf, which side)
        for a, b in bounds:
            k_pre, bad_pre = self._inspect(pre[a:b], _PRE, self._needs_pre_kernel)
            k_post, bad_post = self._inspect(post[a:b], _POST)
            if bad_pre is None and bad_post is None:
                info.append((k_pre, k_post))
                continue
            first = min(x for x in (bad_pre, bad_post) if x is not None)
            bad = (a + first, _PRE if bad_pre == first else _POST)
            bounds = bounds[: len(info)]
            if first:  # the valid steps before it still count
                bounds.append((a, a + first))
                info.append(
                    (
                        self._inspect(pre[a : a + first], _PRE, self._needs_pre_kernel)[0],
                        self._inspect(post[a : a + first], _POST)[0],
                    )
                )
            break
        w = self.weight
        state = self._state
        if state is None:
            state = self._initial_state(pre[0], post[0])
        elif state[0].device != w.device or state[0].dtype != w.dtype:
            state = tuple(s.to(device=w.device, dtype=w.dtype) for s in state)
        binary = self.spikes == "binary"
        for (k_pre, k_post), (start, stop) in zip(info, bounds, strict=True):
            kernels = {"pre": k_pre, "post": k_post, "scratch": scratch}
            correlate = self._adapter.correlate(kernels, binary, self._compute_dtype)
            pos, neg, state = self._run(
                pre[start:stop],
                post[start:stop],
                state,
                correlate,
                kernels,
                None if mod is None else mod[start:stop],
            )
            self._sink("pos")(pos)  # None if the kernel already handed it over (see _sink)
            self._sink("neg")(neg)
            del pos, neg  # not alive while the next chunk computes its own
        self._state = tuple(state)
        if bad is not None:
            step = self._window_steps + bad[0]
            self._window_steps += bad[0]
            raise ValueError(
                f"{bad[1]} contain NaN or infinity at step {step} of this window (counted "
                f"from 0 since the last step()); the {step} steps before it were learned from, "
                "that step and the unprocessed steps after it were discarded"
            )
        self._window_steps += n

    @torch.no_grad()
    def step(self) -> Tensor | None:
        """Ends the window: adds ``-Δw`` to ``weight.grad`` and clears the accumulator.

        Buffered steps are processed first. ``weight.grad`` is created if it is ``None``;
        a gradient already there (e.g. from backprop) is kept and ``-Δw`` added to it, so
        an optimizer minimizing the loss applies ``+Δw``. Returns ``Δw`` (or ``None``).
        """
        self.flush()
        self._end_window()
        w = self.weight
        if self._reduces_across_ranks():
            local = float(self._batch or 0) if self.batch_reduction == "mean" else 1.0
            average = self.batch_reduction == "mean"
            self.accumulator.all_reduce_(
                w.detach(), group=self.process_group, weight=local, average=average
            )
        update = self.accumulator._take_update(w)  # update() + clear()
        if update is None:
            return None
        if w.grad is None:
            w.grad = (-update).to(w.dtype)
        else:
            w.grad.sub_(update)
        return update

    def _end_window(self) -> None:
        """Says so if the neuron was never called while the synapse was (the rule was
        given another neuron than the one in the forward pass); starts the next window."""
        if self._neuron_calls == 0 and (self._dropped or self._pending):
            unpaired = self._dropped + sum(p[1] - p[2] for p in self._pending)
            warnings.warn(
                f"{type(self).__name__}.step(): the rule's neuron ({type(self.neuron).__name__}, "
                f"id {id(self.neuron):#x}) was not called in this window, while its synapse "
                f"({type(self.synapse).__name__}) produced {unpaired} unpaired steps; nothing "
                "was learned from them. Pass the rule the neuron instance that the synapse "
                "drives in the forward pass",
                UserWarning,
                stacklevel=3,
            )
            self._drop_pending(keep_last=False, warn=False)  # nothing carries over
        self._neuron_calls = self._dropped = self._window_steps = 0
        self._warned.clear()

    def _reduces_across_ranks(self) -> bool:
        """Whether ``step()`` combines the window across a process group: when
        ``torch.distributed`` is initialized (``distributed=None``, the default) or forced."""
        if self.distributed is False:
            return False
        import torch.distributed as dist

        initialized = dist.is_available() and dist.is_initialized()
        if self.distributed and not initialized:
            raise RuntimeError("distributed=True but torch.distributed is not initialized")
        return initialized

    @torch.no_grad()
    def reset(self) -> None:
        """Zeroes the traces (e.g. between samples); buffered steps are processed first."""
        self.flush()
        self._state = None
        self._batch = None
        self._pending.clear()  # synapse inputs that never reached the neuron: forgotten
        self._pre.clear()
        self._post.clear()
        if self._mod is not None:
            self._mod.clear()

    # ------------------------------------------------------------------------ state

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "state": None if self._state is None else [s.clone() for s in self._state],
            "pre": self._pre.tensor(),
            "post": self._post.tensor(),
            "modulator": None if self._mod is None else self._mod.tensor(),
            "batch": self._batch,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or not {"state", "pre", "post", "batch"} <= state.keys():
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the extra state is not a rule's"
            )
        self._state = None if state["state"] is None else tuple(s.clone() for s in state["state"])
        self._pre, self._post = StepBuffer(), StepBuffer()
        if self._mod is not None:
            self._mod = StepBuffer()
        saved_mod = state.get("modulator")
        for buffer, saved in (
            (self._pre, state["pre"]),
            (self._post, state["post"]),
            (self._mod, saved_mod),
        ):
            if saved is not None and buffer is not None:
                buffer.append(saved, saved, self.chunk)
        self._batch = state["batch"]

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_handles"] = []  # hook handles do not survive a copy; re-attach with attach()
        d["_workspace"] = {}  # scratch memory, not state
        d.pop("_chunk_cache", None)
        return d

    def attach(self) -> None:
        """Registers the hooks again (after :meth:`detach`, or on a deep copy)."""
        if self._handles:
            return
        self._handles = [
            self.synapse.register_forward_pre_hook(self._on_pre, with_kwargs=True, prepend=True),
            self.synapse.register_forward_hook(self._on_synapse_output, prepend=True),
            self.neuron.register_forward_hook(self._on_post),
        ]

    def extra_repr(self) -> str:
        return (
            f"synapse={type(self.synapse).__name__}, neuron={type(self.neuron).__name__}, dt={self.dt}, "
            f"trace={self.trace!r}, coincident={self.coincident!r}, batch_reduction={self.batch_reduction!r}"
        )
