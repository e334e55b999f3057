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
from typing import Any

import torch
from torch import Tensor, nn

from .._grad import no_grad, run_eagerly
from ..accumulator import Accumulator
from ..buffers import SignalBuffers, StepBuffer
from ..engine import Plan, Sink, compile_rule, run_window
from ..engine.run import NotFinite
from ..engine.step import steppable
from ..functional.correlate import KERNELS
from ..functional.traces import TRACE_MODES, decay_factor
from ..hooks import ConvSynapse, HookPairing, synapse_adapter
from .checkpoint import RuleState
from .checks import (
    _POST,
    _PRE,
    _VOLT,
    COINCIDENT,
    PRECISIONS,
    SPIKE_POLICIES,
    _choice,
    _chunks,
    _overflow_message,
    _overflow_risk,
    _refused_message,
    _steps_valid,
    check_amplitude,
    check_positive,
    spike_count,
)
from .inputs import RuleInputs

__all__ = ["PlasticityRule", "check_positive", "check_amplitude", "spike_count"]

#: types of the rule's bookkeeping that are never a module or a parameter (set every step)
_PLAIN = frozenset((bool, int, float, str, dict, list, tuple, type(None)))


class PlasticityRule(HookPairing, RuleInputs, RuleState, nn.Module):
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
    CHUNK_BYTES = 1 << 25
    #: at most this many steps per automatic chunk (small layers and batches: a window of a
    #: few hundred steps is one chunk, and its sub-chunks are long enough to be efficient)
    MAX_CHUNK = 2048
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
        """Builds a PlasticityRule on ``synapse`` (``nn.Linear``, ``nn.Conv1d/2d/3d`` or a
        recurrent layer's ``.recurrent``) and the ``neuron`` it drives; the options are
        those of :class:`~plasticity.STDP` (``trace`` and ``coincident`` pick the terms
        of the built-ins). Subclasses call :meth:`_finish_init` at the end of theirs."""
        adapter = synapse_adapter(synapse)
        adapter.parameter  # noqa: B018 (a weight no update can reach is refused here)
        if adapter.weight.numel() == 0:
            raise ValueError(
                f"`synapse` ({type(synapse).__name__}) has no weights (weight shape "
                f"{tuple(adapter.weight.shape)}): there is nothing to learn; pass a layer "
                "with at least one input and one output"
            )
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
        self.accumulator = Accumulator(shape=adapter.weight.shape, chunked=True)
        self.__dict__["_adapter"] = adapter
        self.__dict__["_neuron"] = neuron
        self._pre, self._post = StepBuffer(), StepBuffer()
        self._volt: StepBuffer | None = None  # membrane potential rows (rules that read it)
        self._mod: StepBuffer | None = None  # third-factor rows [B] (rules that read it)
        self._signals: SignalBuffers | None = None  # user-fed signals (rules that read them)
        # staged synapse inputs not yet paired with a neuron call: [start row, steps,
        # steps consumed, weak reference to the synapse output they produced]
        self._pending: list[list] = []
        self._warned: set[str] = set()  # warning kinds given in this window
        # in this window (reported by step() and by errors)
        self._neuron_calls = self._dropped = self._window_steps = 0
        self._batch: int | None = None
        self._unchecked = False  # buffered steps not checked when they were given
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
        if plan.fed:
            self._check_fed_synapse(plan)
            self._signals = SignalBuffers(plan.fed)
        self.attach()

    # ------------------------------------------------------------------ declaration

    def declaration(self) -> dict[str, Any]:
        """The rule's terms: ``{"pos": ..., "neg": ..., "extra": {name: (terms,
        per_sample)}}`` in the language of :mod:`plasticity.language`."""
        raise NotImplementedError

    @property
    def plan(self) -> Plan:
        """The declaration compiled for the current parameters (recompiled after a public
        attribute of the rule is set)."""
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
        if name[0] == "_" and (type(value) in _PLAIN or not isinstance(
                value, (nn.Module, nn.Parameter))) and not (  # fmt: skip
            name in self.__dict__.get("_parameters", ())
            or name in self.__dict__.get("_buffers", ())
            or name in self.__dict__.get("_modules", ())
        ):
            self.__dict__[name] = value
            return
        super().__setattr__(name, value)
        if name[0] != "_":  # a public setting: the declaration may read it
            self.__dict__.pop("_plan_cache", None)
            self.__dict__["_unchecked"] = True  # (e.g. `spikes`): buffered steps checked again

    @property
    def kernel_choice(self) -> dict[str, str]:
        """The kernel each product of the last chunk ran with (``"gemm"``,
        ``"post-events"``, ``"pre-events"``, ``"post-rewrite"``, ...)."""
        return dict(self._choice)

    # ------------------------------------------------------------------------ sizes

    @property
    def chunk(self) -> int:
        """Steps per chunk: ``chunk_size``, or (``None``) about 32 MB of presynaptic spikes
        per chunk for the current batch, between 16 and :attr:`MAX_CHUNK` steps."""
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
            return self.MAX_CHUNK
        step_bytes = math.prod(pre.shape[1:]) * self.weight.element_size()
        return max(16, min(self.MAX_CHUNK, self.CHUNK_BYTES // max(step_bytes, 1)))

    @property
    def _scale(self) -> float:
        return 1.0 / self._batch if (self.batch_reduction == "mean" and self._batch) else 1.0

    @property
    def _hold_last(self) -> bool:  # the latest step waits for its reward or signals
        return self._mod is not None or self._signals is not None

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
        """The synapse's weight as its forward uses it (what bounds and weight-dependent
        terms read; a synapse pruned by ``torch.nn.utils.prune``: ``weight_orig *
        weight_mask``)."""
        return self._adapter.weight

    @property
    def parameter(self) -> Tensor:
        """The tensor whose ``.grad`` :meth:`step` writes, to give the optimizer:
        ``synapse.weight``, or for a pruned synapse ``synapse.weight_orig`` (its update is
        masked: an absent synapse never changes)."""
        return self._adapter.parameter

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @property
    def learning(self) -> bool:
        """Whether steps are observed now: the rule and its synapse are in training mode."""
        return self.training and self.synapse.training and self.attached

    def attach(self) -> None:
        """Registers the hooks (again, after :meth:`detach`; a copy of an attached rule is
        attached to the copied modules already)."""
        if self._handles:
            return
        run_eagerly(HookPairing, "_on_pre", "_on_synapse_output", "_on_post")
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

    # ---------------------------------------------------------------------- compute

    @no_grad
    def flush(self, keep_last: bool = False) -> None:
        """Runs the rule on every paired buffered step (in chunks of :attr:`chunk` steps).

        Steps whose spikes break the ``spikes`` policy are discarded with a ``ValueError``;
        traces, accumulator and weights are then unchanged (NaN/infinity: as they were
        just before the bad step).
        """
        n = min(self._pre.n, self._post.n) - (1 if keep_last else 0)
        if n <= 0:
            return
        fed = None if self._signals is None else self._fed_views(n)  # (all fed, or an error)
        w = self._adapter.weight
        dtype, device = w.dtype, w.device
        views = [None if b is None else b.view(n) for b in (self._pre, self._post, self._volt, self._mod)]
        for i, v in enumerate(views):  # (buffers follow the weight: converted if it moved)
            if v is not None and (v.dtype != dtype or v.device != device):
                views[i] = v.to(device=device, dtype=dtype)
        try:
            self._process(*views, self.chunk, checked=not self._unchecked, fed=fed)  # type: ignore[arg-type]
        finally:  # processed, or discarded by a ValueError
            self._consume(n)

    def _consume(self, n: int) -> None:
        for p in self._pending:  # staged rows move to the front with the rest
            p[0] -= n
        for buffer in (self._pre, self._post, self._volt, self._mod, self._signals):
            if buffer is not None:
                buffer.consume(n)
        self._unchecked = self._unchecked and self._post.n > 0

    def _process(self, pre: Tensor, post: Tensor, volt: Tensor | None, mod: Tensor | None,
                 chunk: int, checked: bool = False, fed: dict[str, Tensor] | None = None) -> None:  # fmt: skip
        """Runs the engine on ``[n, B, ...]`` steps in chunks. Every chunk's spikes are
        checked first (``checked``: they were at the call that gave them, so a one-step
        window needs no check); at a value the ``spikes`` policy refuses (NaN or
        infinity; with binary spikes, any value other than 0 and 1) the steps before it
        are processed and the error names it. A chunk whose update is not finite (finite
        inputs that overflow) is discarded, with the steps after it, and the error says so."""
        n = pre.shape[0]
        binary = self.spikes == "binary"
        bounds, counts, bad = [], [], None
        one = [(pre, binary, _PRE), (post, binary, _POST)] + (
            [] if volt is None else [(volt, False, _VOLT)])  # fmt: skip
        plan, w = self.plan, self.weight  # (a pruned synapse's weight is computed: once)
        if n == 1 and steppable(plan) and (checked or _steps_valid(one)):  # online
            bounds, counts, n = [(0, 1)], [[0, 0]], 0  # (no counts needed)
        peaks: list[float] = []  # graded values' largest magnitudes, from the check
        if n:
            bounds, counts, bad = _chunks(one, chunk, checked, peaks)
        bounded, hold = _overflow_risk(plan, w, binary, one, mod, fed, len(bounds), peaks,
                                       bad is None)  # fmt: skip
        try:
            self._state = run_window(
                plan, {"pre": pre, "post": post, "voltage": volt, "mod": mod, **(fed or {})},
                bounds, counts, self._state, weight=w, chunk=chunk, tables=self.TABLES,
                geometry=self._adapter.geometry() if isinstance(self._adapter, ConvSynapse) else None,
                compute=torch.bfloat16 if self.precision == "bf16" else None, kernel=self.kernel,
                sink=lambda steps: Sink(self.accumulator, self._scale, self._extras, steps,
                                  checked=not bounded, hold=hold),
                record=self._choice, remembered=self._kernels,
            )  # fmt: skip
        except NotFinite as err:  # the chunks before it count
            self._state = err.state or (None if err.cleared else self._state)
            self._window_steps += err.start
            inputs = ["graded spikes"] * (not binary) + ["membrane potentials"] * (
                plan.reads_voltage) + ["rewards"] * plan.reads_mod + ["fed signals"] * bool(
                plan.fed)  # fmt: skip
            raise ValueError(_overflow_message(self._window_steps, err, inputs, w.dtype)) from None
        if bad is not None:
            step = self._window_steps + bad[0]
            self._window_steps = step
            raise ValueError(
                f"{_refused_message(bad[1], step, bad[2])}; the {step} steps before it were "
                "learned from, that step and the unprocessed steps after it were discarded"
            )
        self._window_steps += pre.shape[0]

    @no_grad
    def step(self) -> Tensor | None:
        """Ends the window: adds ``-Δw`` to ``weight.grad`` and clears the accumulator
        (a pruned synapse: the masked ``-Δw`` to ``weight_orig.grad``, see :attr:`parameter`).

        Buffered steps are processed first. ``weight.grad`` is created if it is ``None``;
        a gradient already there (e.g. from backprop) is kept and ``-Δw`` added to it, so
        an optimizer minimizing the loss applies ``+Δw``. Returns ``Δw`` (or ``None``).
        """
        adapter = self._adapter
        p = adapter.parameter  # a weight computed since construction: refused now
        self.flush()
        self._end_window()
        self.__dict__["_extras"] = {}  # (a plain attribute: see __setattr__)
        w = adapter.weight
        acc = self._modules["accumulator"]
        if self._reduces_across_ranks():
            average = self.batch_reduction == "mean"
            # a rank that observed nothing in this window has no samples in its mean
            seen = float(self._batch or 0) if any(acc.counts) else 0.0
            local = seen if average else 1.0
            acc.all_reduce_(w.detach(), group=self.process_group, weight=local, average=average)
        update = acc._take_update(w)  # update() + clear()
        if update is None:
            return None
        mask = adapter.mask  # a pruned synapse: absent synapses do not change
        if mask is not None:
            update = update * mask
        if p.grad is None:
            grad = torch.neg(update)
            p.grad = grad if grad.dtype == p.dtype else grad.to(p.dtype)
        else:
            p.grad.sub_(update)
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
            kept = {k: v for k, v in self._state.items() if k in self.plan.eligibilities}
            self._state = kept or None
        self._batch = None
        self._pending.clear()  # synapse inputs that never reached the neuron: forgotten
        for buffer in (self._pre, self._post, self._volt, self._mod, self._signals):
            if buffer is not None:
                buffer.clear()

    def __getstate__(self) -> dict[str, Any]:
        # a copy (deepcopy, pickle) copies the synapse and neuron with their hooks: the
        # handles, copied with them, remove the copy's own hooks
        d = self.__dict__.copy()
        d["_pending"] = [[*p[:3], None] for p in self._pending]  # no weak references
        d.pop("_chunk_cache", None)
        return d

    def extra_repr(self) -> str:
        return (
            f"synapse={type(self.synapse).__name__}, neuron={type(self.neuron).__name__}, dt={self.dt}, "
            f"trace={self.trace!r}, coincident={self.coincident!r}, batch_reduction={self.batch_reduction!r}"
        )


