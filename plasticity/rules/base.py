"""Every rule's wiring: hooks, step buffers, the engine per chunk, step/reset, state.

A rule observes the synapse's input (pre spikes), the neuron's output (post spikes, and
its membrane potential if the rule reads it) and the third factor (``reward()``),
buffers the paired steps (:class:`~plasticity.hooks.HookPairing`), and every
``chunk_size`` steps evaluates its declaration (:mod:`plasticity.language`) on the whole
chunk with the engine (:mod:`plasticity.engine`); results go to
:attr:`PlasticityRule.accumulator`. Weights are frozen during a window, so chunked and
per-step computation are identical.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch
from torch import Tensor, nn

from .._grad import no_grad
from ..accumulator import Accumulator
from ..buffers import StepBuffer
from ..engine import CHOOSER, Plan, compile_rule
from ..functional.correlate import KERNELS, Kernels
from ..functional.traces import TRACE_MODES, decay_factor
from ..hooks import ConvSynapse, HookPairing, synapse_adapter

__all__ = ["PlasticityRule", "check_positive", "check_amplitude", "spike_count"]

SPIKE_POLICIES = ("binary", "graded")
PRECISIONS = ("full", "bf16")
COINCIDENT = ("ltp", "both", "none")
_PRE, _POST = "the synapse's input spikes", "the neuron's output spikes"


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
    return _spike_counts([(spikes, binary, what)])[0]


def _spike_counts(blocks: list[tuple[Tensor, bool, str]]) -> list[tuple[int, int | None]]:
    """:func:`spike_count` of several ``(spikes, binary, what)`` blocks with one read-back
    of the numbers (the small ops and the device sync dominate a one-step window)."""
    numbers = []
    for spikes, binary, _ in blocks:
        flat = spikes.reshape(-1)
        if not binary:
            numbers += [flat.sum(), torch.count_nonzero(flat).to(flat.dtype)]
            continue
        if flat.numel() >= 2**24 and flat.dtype != torch.float64:
            flat = flat.double()
        lo, hi = torch.aminmax(flat)
        numbers += [lo, hi, flat.sum(), torch.dot(flat, flat)]
    dtype = numbers[0].dtype
    values = torch.stack([n if n.dtype == dtype else n.to(dtype) for n in numbers]).tolist()
    out = []
    for spikes, binary, what in blocks:
        if not binary:
            (total, nnz), values = values[:2], values[2:]
            if math.isfinite(total):
                out.append((int(nnz), None))
                continue
        else:
            (lo, hi, total, squares), values = values[:4], values[4:]
            if math.isfinite(total) and math.isfinite(squares):
                if not (lo >= 0 and hi <= 1 and total == squares):
                    raise ValueError(
                        f"{what} are not binary (values other than 0 and 1); pass "
                        "spikes='graded' to use graded values as spike amplitudes"
                    )
                out.append((int(total), None))
                continue
        finite = torch.isfinite(spikes.reshape(spikes.shape[0], -1)).all(1)
        bad = int((~finite).nonzero()[0, 0])
        nnz = spike_count(spikes[:bad], binary=binary, what=what)[0] if bad else 0
        out.append((nnz, bad))
    return out


class PlasticityRule(HookPairing, nn.Module):
    """Base class: attaches to a synapse and its neuron, buffers steps, evaluates the rule's
    declaration per chunk. Subclasses implement :meth:`declaration`; :class:`Rule` takes
    it as arguments. The synapse and neuron are not registered as submodules (the rule's
    ``state_dict`` holds only its own state: traces, buffered steps and the accumulator).

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

    #: automatic chunks hold about this many bytes of presynaptic spikes
    CHUNK_BYTES = 1 << 23
    #: the tables of a sub-chunk take at most this fraction of the chunk's step buffers
    TABLES = 0.35

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
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(
                f"`distributed` must be True, False or None (automatic), got {distributed!r}"
            )
        super().__init__()
        self.dt, self.trace, self.coincident = dt, trace, coincident
        self.batch_reduction, self.decay, self.chunk_size = batch_reduction, decay, chunk_size
        self.kernel, self.spikes, self.precision = kernel, spikes, precision
        self.process_group, self.distributed = process_group, distributed
        self.accumulator = Accumulator()
        self.__dict__["_adapter"] = adapter
        self.__dict__["_neuron"] = neuron
        self._pre, self._post = StepBuffer(), StepBuffer()
        self._volt: StepBuffer | None = None  # membrane potential rows (rules that read it)
        self._mod: StepBuffer | None = None  # third-factor rows [B] (rules that read it)
        # staged synapse inputs not yet paired with a neuron call: [start row, steps,
        # steps consumed, weak reference to the synapse output they produced]
        self._pending: list[list] = []
        self._warned: set[str] = set()  # warning kinds given in this window
        # in this window (reported by step() and by errors)
        self._neuron_calls = self._dropped = self._window_steps = 0
        self._batch: int | None = None
        self._state: dict[str, Tensor] | None = None
        self._extras: dict[str, Tensor] = {}  # signed targets of the window (e.g. Σζ)
        self._choice: dict[str, str] = {}  # the kernel of each product in the last chunk
        self._kernels: dict[str, tuple[str, ...]] = {}  # the choices used, by shape key
        self._handles: list = []

    def _finish_init(self) -> None:
        """Compiles the declaration (errors at construction) and attaches the hooks;
        subclasses call it at the end of their ``__init__``."""
        plan = self.plan
        if plan.reads_voltage:
            self._volt = StepBuffer()
        if plan.reads_mod:
            self._mod = StepBuffer()
        self.attach()

    # ------------------------------------------------------------------ declaration

    def declaration(self) -> dict[str, Any]:
        """The rule's terms: ``{"pos": ..., "neg": ..., "extra": {name: (terms,
        per_sample)}}`` in the language of :mod:`plasticity.language`."""
        raise NotImplementedError

    @property
    def plan(self) -> Plan:
        """The declaration compiled for the current parameters (recompiled after a public
        attribute of the rule is set, see :meth:`__setattr__`)."""
        plan = self.__dict__.get("_plan_cache")
        if plan is None:
            d = self.declaration()
            plan = compile_rule(d.get("pos"), d.get("neg"), dt=self.dt, decay=self.decay,
                                binary=self.spikes == "binary", extra=d.get("extra"))  # fmt: skip
            self.__dict__["_plan_cache"] = plan
        return plan

    def __setattr__(self, name: str, value: Any) -> None:
        # the rule's own bookkeeping (private, not a parameter, buffer or module) is a
        # plain attribute: nn.Module's checks would cost more than a small step's maths
        if name[0] == "_" and not isinstance(value, (nn.Module, nn.Parameter)) and not (
            name in self.__dict__.get("_parameters", ())
            or name in self.__dict__.get("_buffers", ())
            or name in self.__dict__.get("_modules", ())
        ):
            self.__dict__[name] = value
            return
        super().__setattr__(name, value)
        if name[0] != "_":  # a public setting: the declaration may read it
            self.__dict__.pop("_plan_cache", None)

    @property
    def kernel_choice(self) -> dict[str, str]:
        """The kernel each product of the last chunk ran with (``"gemm"``,
        ``"post-events"``, ``"pre-events"``, ``"post-rewrite"``, ...)."""
        return dict(self._choice)

    # ------------------------------------------------------------------------ sizes

    @property
    def chunk(self) -> int:
        """Steps per chunk: ``chunk_size``, or (``None``) about 8 MB of presynaptic spikes
        per chunk for the current batch, between 16 and 256 steps."""
        key = (self.chunk_size, self._pre.data)
        cached = self.__dict__.get("_chunk_cache")
        if cached is None or cached[0] != key[0] or cached[1] is not key[1]:
            cached = self.__dict__["_chunk_cache"] = (*key, self.chunk_for(key[1]))
        return cached[2]

    def chunk_for(self, pre: Tensor | None) -> int:
        """Steps per chunk for presynaptic steps shaped like ``pre`` (``[T, B, *in]``)."""
        if self.chunk_size is not None:
            return self.chunk_size
        if pre is None:
            return 256
        step_bytes = math.prod(pre.shape[1:]) * self.weight.element_size()
        return max(16, min(256, self.CHUNK_BYTES // max(step_bytes, 1)))

    @property
    def _scale(self) -> float:
        return 1.0 / self._batch if (self.batch_reduction == "mean" and self._batch) else 1.0

    @property
    def _hold_last(self) -> bool:  # the latest step waits for its reward
        return self._mod is not None

    # ----------------------------------------------------------------------- wiring

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

    def attach(self) -> None:
        """Registers the hooks (again, after :meth:`detach`, or on a deep copy)."""
        if self._handles:
            return
        self._handles = [
            self.synapse.register_forward_pre_hook(self._on_pre, with_kwargs=True, prepend=True),
            self.synapse.register_forward_hook(self._on_synapse_output, prepend=True),
            self.neuron.register_forward_hook(self._on_post),
        ]

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

    def _maybe_flush(self) -> None:
        chunk, hold = self.chunk, self._hold_last
        if self._pre.n >= chunk + hold and self._post.n >= chunk + hold:
            self.flush(keep_last=hold)

    # ------------------------------------------------------------------ third factor

    def _rows(self, value: Any, what: str, batch: int | None = None) -> Tensor:
        """A modulator value as a ``[B]`` row on the weight's device (validated)."""
        w = self.weight
        if isinstance(value, Tensor):
            v = value.detach().to(device=w.device, dtype=w.dtype)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            v = torch.tensor(float(value), device=w.device, dtype=w.dtype)
        else:
            raise TypeError(
                f"{what} must be a number or a tensor of shape [B], got {type(value).__name__}"
            )
        batch = batch or self._batch or 1
        if v.ndim == 0:
            v = v.expand(batch)
        elif v.shape != (batch,):
            raise ValueError(
                f"{what} must be a number or have shape [{batch}] (one per sample), got {tuple(v.shape)}"
            )
        self._check_values(v, what)
        return v

    def _check_values(self, v: Tensor, what: str) -> None:
        """Finite, and (without ``per_sample``) equal across the samples (last dimension)."""
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{what} contains NaN or infinity")
        shared = not getattr(self, "per_sample", True)
        if shared and v.shape[-1] > 1 and bool((v != v[..., :1]).any()):
            raise ValueError(
                f"{what} differs between samples; construct the rule with per_sample=True for per-sample rewards"
            )

    @no_grad
    def reward(self, value: float | Tensor) -> None:
        """Adds to the third factor of the step just simulated (call it after that step's
        forward pass): a number (every sample) or a ``[B]`` tensor. Steps without one
        have 0."""
        if self._mod is None:
            raise RuntimeError(
                f"{type(self).__name__} reads no third factor (its terms have no `modulator`)"
            )
        if self._post.n == 0:
            raise RuntimeError(
                "reward() belongs to the step just simulated, but no step is buffered: call it after the forward pass"
            )
        assert self._mod.data is not None
        if type(value) in (float, int):  # the common case, every step: no tensor, no sync
            if not math.isfinite(value):
                raise ValueError("`reward` contains NaN or infinity")
            self._mod.data[self._post.n - 1].add_(value)
            return
        self._mod.data[self._post.n - 1].add_(self._rows(value, "`reward`"))

    # --------------------------------------------------------------------- observe

    @no_grad
    def observe(
        self, pre: Tensor, post: Tensor, *, voltage: Tensor | None = None, reward: Any = None
    ) -> None:
        """Learns from whole sequences without hooks: ``pre`` ``[T, B, *in]``, ``post``
        ``[T, B, *out]`` (the way to feed a conv synapse a ``[T, B, C, H, W]`` sequence);
        ``voltage`` ``[T, B, *out]`` for rules that read ``post.voltage``; ``reward`` a
        number, ``[T]`` or ``[T, B]`` for rules with a third factor (default 0).

        With nothing buffered, the sequence is processed straight from ``pre`` and
        ``post`` in chunks (no copy into the step buffers); only a remainder shorter than
        16 steps (or than ``chunk_size``) is buffered for the next call. ``pre`` and
        ``post`` are read, never modified.
        """
        if self._pending:  # synapse inputs of the hooks that no neuron call took
            self._drop_pending(keep_last=False)
        pre_block, post_block = self._steps(pre, post)
        w = self.weight
        steps, batch = pre_block.shape[:2]
        v_block = None
        if self._volt is not None:
            if voltage is None:
                raise ValueError("this rule reads post.voltage: pass voltage= ([T, B, *out])")
            v_block = self._adapter.post_steps(voltage, None)
            if v_block.shape != post_block.shape:
                raise ValueError(
                    f"`voltage` has shape {tuple(v_block.shape)}; expected {tuple(post_block.shape)}"
                )
        r = None
        if reward is not None:
            if self._mod is None:
                raise ValueError(f"{type(self).__name__} takes no reward (no `modulator` term)")
            r = torch.as_tensor(reward, device=w.device, dtype=w.dtype)
            if r.ndim == 0:
                r = r.expand(steps)
            if r.ndim == 1 and r.shape[0] == steps:
                r = r[:, None].expand(steps, batch)
            if r.shape != (steps, batch):
                raise ValueError(
                    f"`reward` must be a number, [T] or [T, B]; got {tuple(r.shape)} for T={steps}, B={batch}"
                )
            self._check_values(r, "`reward`")
        if self._pre.n or self._post.n or self._mod is not None:
            start = self._post.n
            self._pre.append(pre_block.detach(), w, self.chunk_for(pre_block))
            self._add(self._post, post_block, flush=False)
            if v_block is not None:
                self._add(self._volt, v_block, flush=False)  # type: ignore[arg-type]
            if r is not None:
                self._mod.data[start : start + steps].add_(r)  # type: ignore[union-attr]
            self._maybe_flush()
            return
        blocks = [b.detach().to(device=w.device, dtype=w.dtype)
                  for b in (pre_block, post_block, v_block) if b is not None]  # fmt: skip
        first = self._batch is None
        if first:
            self._batch = batch
        chunk = self.chunk_for(blocks[0])
        direct = (steps // chunk) * chunk
        if steps - direct >= min(chunk, 16):  # a remainder worth a kernel call of its own
            direct = steps
        if direct:
            try:
                self._process(*(b[:direct] for b in blocks[:2]),
                              blocks[2][:direct] if len(blocks) > 2 else None, None, chunk)  # fmt: skip
            except ValueError:  # spikes that break the policy: the rule stays as it was
                if first and self._state is None:
                    self._batch = None
                raise
        if direct < steps:  # the remainder, in buffers just its size
            rest = steps - direct
            for buffer, b in zip((self._pre, self._post, self._volt), blocks, strict=False):
                buffer.append(b[direct:], w, rest)  # type: ignore[union-attr]

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

    # ---------------------------------------------------------------------- compute

    @no_grad
    def flush(self, keep_last: bool = False) -> None:
        """Runs the rule on every paired buffered step (in chunks of :attr:`chunk` steps).

        Steps whose spikes break the ``spikes`` policy are discarded with a ``ValueError``;
        traces, accumulator and weights are then unchanged (NaN/infinity: as they were
        just before the bad step, see :meth:`_process`).
        """
        n = min(self._pre.n, self._post.n) - (1 if keep_last else 0)
        if n <= 0:
            return
        w = self.weight
        views = [
            None if b is None else b.view(n).to(device=w.device, dtype=w.dtype)
            for b in (self._pre, self._post, self._volt, self._mod)
        ]
        try:
            self._process(*views, self.chunk)  # type: ignore[arg-type]
        finally:  # processed, or discarded by a ValueError
            self._consume(n)

    def _consume(self, n: int) -> None:
        for p in self._pending:  # staged rows move to the front with the rest
            p[0] -= n
        for buffer in (self._pre, self._post, self._volt, self._mod):
            if buffer is not None:
                buffer.consume(n)

    def _process(self, pre: Tensor, post: Tensor, volt: Tensor | None, mod: Tensor | None,
                 chunk: int) -> None:  # fmt: skip
        """Runs the engine on ``[n, B, ...]`` steps in chunks. Every chunk's spikes are
        checked first, so that a non-binary value leaves traces and accumulator unchanged;
        at a NaN or infinity the steps before it are processed and the error names it."""
        n = pre.shape[0]
        binary = self.spikes == "binary"
        bounds, counts, bad = [], [], None
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            whole = a == 0 and b == n  # (no slicing: a one-step window is one chunk)
            blocks = [(pre if whole else pre[a:b], binary, _PRE),
                      (post if whole else post[a:b], binary, _POST)]  # fmt: skip
            if volt is not None:
                blocks.append((volt if whole else volt[a:b], False, "the membrane potential"))
            seen = _spike_counts(blocks)
            firsts = [s[1] for s in seen if s[1] is not None]
            if firsts:
                first = min(firsts)
                what = [_PRE, _POST, "the neuron's membrane potential"][
                    [s[1] for s in seen].index(first)
                ]
                bad = (a + first, what)
                if first:  # the valid steps before it still count
                    bounds.append((a, a + first))
                    counts.append([spike_count(x[a:a + first], binary=binary)[0]
                                   for x in (pre, post)])  # fmt: skip
                break
            bounds.append((a, b))
            counts.append([s[0] for s in seen[:2]])
        plan, w = self.plan, self.weight
        state = {} if self._state is None else {
            k: v.to(device=w.device, dtype=w.dtype) for k, v in self._state.items()
        }  # fmt: skip
        conv = isinstance(self._adapter, ConvSynapse)
        compute = torch.bfloat16 if self.precision == "bf16" else None
        # sub-chunks keep the tables alive at once (and a few carried rows) within half
        # of the chunk's step buffers: peak <= 3 W + 1.5 S (two running sums and a result)
        # (a weight-shaped eligibility trace takes its share of that half)
        n_pre, n_post = pre.numel() // n, post.numel() // n
        per_step = n_pre + n_post
        width = plan.table_width(n_pre, n_post)
        budget = self.TABLES * chunk * per_step - len(plan.eligibilities) * w.numel()
        budget = max(budget, 0.1 * chunk * per_step)
        sub = max(1, int(budget / width) - 1) if width else chunk
        geometry = self._adapter.geometry() if conv else None
        for (a, b), nnz in zip(bounds, counts, strict=True):
            sink = _Sink(self.accumulator, self._scale, self._extras)
            for c in range(a, b, sub):
                d = min(b, c + sub)
                rows = slice(None) if (c, d) == (0, n) else slice(c, d)
                inputs = {"pre": pre[rows], "post": post[rows]}
                if volt is not None:
                    inputs["voltage"] = volt[rows]
                if mod is not None:
                    inputs["mod"] = mod[rows]
                kernels = Kernels(w, geometry, compute)
                state = CHOOSER.run(self.kernel, plan, inputs, state, kernels, sink.deliver,
                                    nnz, self._choice, self._kernels)  # fmt: skip
            sink.close()
        self._state = state
        if bad is not None:
            step = self._window_steps + bad[0]
            self._window_steps = step
            raise ValueError(
                f"{bad[1]} contain NaN or infinity at step {step} of this window (counted "
                f"from 0 since the last step()); the {step} steps before it were learned from, "
                "that step and the unprocessed steps after it were discarded"
            )
        self._window_steps += n

    @no_grad
    def step(self) -> Tensor | None:
        """Ends the window: adds ``-Δw`` to ``weight.grad`` and clears the accumulator.

        Buffered steps are processed first. ``weight.grad`` is created if it is ``None``;
        a gradient already there (e.g. from backprop) is kept and ``-Δw`` added to it, so
        an optimizer minimizing the loss applies ``+Δw``. Returns ``Δw`` (or ``None``).
        """
        self.flush()
        self._end_window()
        self._extras = {}
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
            import warnings

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

    @no_grad
    def reset(self) -> None:
        """Zeroes the traces (e.g. between samples); buffered steps are processed first.
        Eligibility traces are weight-shaped and carry on."""
        self.flush()
        if self._state is not None:
            kept = {k: v for k, v in self._state.items() if k.startswith("elig:")}
            self._state = kept or None
        self._batch = None
        self._pending.clear()  # synapse inputs that never reached the neuron: forgotten
        for buffer in (self._pre, self._post, self._volt, self._mod):
            if buffer is not None:
                buffer.clear()

    # ------------------------------------------------------------------------ state

    def state_tensor(self, name: str) -> Tensor | None:
        """The carried state of a signal of the declaration, by its text (e.g.
        ``"post.trace(20)"``), after the last processed step; ``None`` before any."""
        return None if self._state is None else self._state.get(name)

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "state": None if self._state is None else {k: v.clone() for k, v in self._state.items()},
            "pre": self._pre.tensor(),
            "post": self._post.tensor(),
            "voltage": None if self._volt is None else self._volt.tensor(),
            "modulator": None if self._mod is None else self._mod.tensor(),
            "batch": self._batch,
            "extras": {k: v.clone() for k, v in self._extras.items()},
            "kernels": {k: list(v) for k, v in self._kernels.items()},
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or not {"state", "pre", "post", "batch"} <= state.keys():
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the extra state is not a rule's"
            )
        saved = state["state"]
        if saved is not None and not isinstance(saved, dict):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state was saved by another version"
            )
        self._state = None if saved is None else {k: v.clone() for k, v in saved.items()}
        self._pre, self._post = StepBuffer(), StepBuffer()
        self._volt = None if self._volt is None else StepBuffer()
        self._mod = None if self._mod is None else StepBuffer()
        for buffer, key in ((self._pre, "pre"), (self._post, "post"), (self._volt, "voltage"),
                            (self._mod, "modulator")):  # fmt: skip
            saved_rows = state.get(key)
            if saved_rows is not None and buffer is not None:
                buffer.append(saved_rows, saved_rows, self.chunk)
        self._batch = state["batch"]
        self._extras = {k: v.clone() for k, v in (state.get("extras") or {}).items()}
        self._kernels = {k: tuple(v) for k, v in (state.get("kernels") or {}).items()}
        self._pending = []

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_handles"] = []  # hook handles do not survive a copy; re-attach with attach()
        d.pop("_chunk_cache", None)
        return d

    def extra_repr(self) -> str:
        return (
            f"synapse={type(self.synapse).__name__}, neuron={type(self.neuron).__name__}, dt={self.dt}, "
            f"trace={self.trace!r}, coincident={self.coincident!r}, batch_reduction={self.batch_reduction!r}"
        )


class _Sink:
    """Where the engine's results of one chunk go: ``pos``/``neg`` (scaled by the batch
    reduction) into one append of the accumulator per component, other targets summed
    into the rule's window buffers."""

    def __init__(self, acc: Accumulator, scale: float, extras: dict[str, Tensor]) -> None:
        self.acc, self.scale, self.extras = acc, scale, extras
        self.merge = acc.merges
        self.started: set[str] = set()
        self.local: dict[str, Tensor] = {}

    def deliver(self, target: str, value: Tensor) -> None:
        if target not in ("pos", "neg"):
            if target in self.extras:
                self.extras[target].add_(value)
            else:
                self.extras[target] = value
            return
        if self.scale != 1.0:
            value = value.mul_(self.scale)
        if not self.merge:  # a reduction that cannot add into an append: sum here first
            held = self.local.get(target)
            self.local[target] = value if held is None else held.add_(value)
            return
        self.acc.add_(target, value, merge=target in self.started, finite=True)
        self.started.add(target)

    def close(self) -> None:
        for target, value in self.local.items():
            self.acc.add_(target, value, finite=True)


class Rule(PlasticityRule):
    r"""A rule declared in the language of :mod:`plasticity.language`.

    ``pos`` and ``neg`` are sums of terms (either may be ``None``); ``Δw = f₊(w)·pos −
    f₋(w)·neg`` with the accumulator's bounds. A term whose value can be negative is split
    exactly into both components by the signs of its factors.

    Args:
        synapse, neuron: as for :class:`~plasticity.STDP`.
        pos, neg: the potentiation and depression terms.
        **options: ``dt``, ``batch_reduction``, ``decay``, ``chunk_size``, ``kernel``,
            ``spikes``, ``precision``, ``process_group``, ``distributed`` as for
            :class:`~plasticity.STDP`; ``per_sample``: whether the third factor may
            differ between the samples of a batch (default: unless an eligibility trace
            is shared by the batch).

    Example:
        Pair STDP in four lines, and its first update:

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> from plasticity import post, pre
        >>> fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
        >>> stdp = pl.Rule(fc, lif, pos=0.1 * post.spike * pre.trace(5.0),
        ...                neg=0.1 * post.trace(5.0).before * pre.spike)
        >>> x = torch.tensor([[[1.0, 0, 0]], [[0, 0, 0]]])   # input 0 fires at step 0
        >>> s = torch.tensor([[[0.0, 0]], [[1.0, 0]]])       # neuron 0 fires at step 1
        >>> stdp.observe(x, s)
        >>> round(float(stdp.step()[0, 0]), 6)               # 0.1 * exp(-1/5)
        0.081873
    """

    def __init__(self, synapse: nn.Module, neuron: nn.Module, *, pos: Any = None,
                 neg: Any = None, per_sample: bool | None = None, **options: Any) -> None:  # fmt: skip
        for name in ("trace", "coincident"):
            if name in options:
                raise TypeError(
                    f"pl.Rule takes no `{name}`: write the trace forms in the terms "
                    "(pre.trace(tau, nearest=True), post.trace(tau).before)"
                )
        super().__init__(synapse, neuron, **options)
        self._pos, self._neg = pos, neg
        plan = self.plan  # errors of the declaration now, before any hook is attached
        shared = any(not e.per_sample for e in plan.eligibilities.values())
        self.per_sample = (not shared) if per_sample is None else bool(per_sample)
        for tau in _time_constants(plan):
            decay_factor(self.dt, tau, self.decay)
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        return {"pos": self._pos, "neg": self._neg}

    def extra_repr(self) -> str:
        return f"pos={self._pos!r}, neg={self._neg!r}, dt={self.dt}"


def _time_constants(plan: Plan) -> set[float]:
    taus = {e.tau for e in plan.eligibilities.values()}
    taus |= {f.args[1] for f in plan.filters.values() if f.kind in ("trace", "lowpass")}
    return taus
