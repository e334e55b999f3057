"""Every rule's wiring: hooks, step buffers, the engine per chunk, step/reset, state.

A rule observes the synapse's input (pre spikes), the neuron's output (post spikes, and
its membrane potential if the rule reads it) and the third factor (``reward()``),
buffers the paired steps (its part :class:`~plasticity.hooks.HookPairing`), and every
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

from .._grad import no_grad
from ..accumulator import Accumulator
from ..engine import Plan, Sink, compile_rule, run_window
from ..engine.run import NotFinite
from ..engine.step import steppable
from ..hooks import HookPairing
from ..language.text import KEY_FORMAT
from ..synapses import ConvSynapse, synapse_adapter
from . import checkpoint
from .checks import (
    _POST,
    _PRE,
    _VOLT,
    _chunks,
    _fed_blocks,
    _overflow_risk,
    _refused_message,
    _steps_valid,
    check_amplitude,
    check_options,
    check_positive,
    reduces_across_ranks,
    spike_count,
)
from .inputs import Inputs, check_fed_synapse
from .online import _one_step_window, _overflowed

__all__ = ["PlasticityRule", "check_positive", "check_amplitude", "spike_count"]

#: types of the rule's bookkeeping that are never a module or a parameter (set every step)
_PLAIN = frozenset((bool, int, float, str, dict, list, tuple, type(None)))


class PlasticityRule(nn.Module):
    """Base class: attaches to a synapse and its neuron, buffers steps, evaluates the rule's
    declaration per chunk. Subclasses implement :meth:`declaration`; :class:`Rule` takes
    it as arguments. The synapse and neuron are not registered as submodules (the rule's
    ``state_dict`` holds only its own state: traces, buffered steps and the accumulator).
    Its parts: ``_hooks`` (:class:`~plasticity.hooks.HookPairing`: the hooks and the
    buffered steps) and ``_inputs`` (:class:`~plasticity.rules.inputs.Inputs`: ``observe``,
    ``reward``, ``feed``); :mod:`plasticity.rules.checkpoint` saves and loads its state.

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
        dt = check_options(synapse, neuron, adapter, dt=dt, trace=trace, coincident=coincident,
                           batch_reduction=batch_reduction, decay=decay, chunk_size=chunk_size,
                           kernel=kernel, spikes=spikes, precision=precision,
                           distributed=distributed, time_constants=time_constants)  # fmt: skip
        super().__init__()
        self.dt, self.trace, self.coincident = dt, trace, coincident
        self.batch_reduction, self.decay, self.chunk_size = batch_reduction, decay, chunk_size
        self.kernel, self.spikes, self.precision = kernel, spikes, precision
        self.process_group, self.distributed = process_group, distributed
        self.accumulator = Accumulator(shape=adapter.weight.shape, chunked=True)
        self.__dict__["_adapter"] = adapter
        self.__dict__["_neuron"] = neuron
        self._hooks = HookPairing(adapter, neuron, self)  # the hooks and the buffered steps
        self._inputs = Inputs(self, self._hooks)  # observe(), reward(), feed()
        self._state: dict[str, Tensor] | None = None
        self._extras: dict[str, Tensor] = {}  # signed targets of the window (e.g. Σζ)
        self._choice: dict[str, str] = {}  # the kernel of each product in the last chunk
        self._kernels: dict[str, tuple[str, ...]] = {}  # the choices used, by shape key

    def _finish_init(self) -> None:
        """Compiles the declaration (errors at construction) and attaches the hooks;
        subclasses call it at the end of their ``__init__``."""
        plan = self.plan
        if plan.fed:
            check_fed_synapse(self._adapter, plan)
        self._hooks.reads(plan.reads_voltage, plan.reads_mod, plan.fed)
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
            hooks = self.__dict__.get("_hooks")
            if hooks is not None:  # (e.g. `spikes`): buffered steps checked again
                hooks._unchecked = True

    @property
    def kernel_choice(self) -> dict[str, str]:
        """The kernel each product of the last chunk ran with (``"gemm"``,
        ``"post-events"``, ``"pre-events"``, ``"post-rewrite"``, ...)."""
        return dict(self._choice)

    # ------------------------------------------------------------------------ inputs

    @no_grad
    def reward(self, value: float | Tensor) -> None:
        self._inputs.reward(value)

    reward.__doc__ = Inputs.reward.__doc__

    @no_grad
    def feed(self, **signals: Any) -> None:
        self._inputs.feed(signals)

    feed.__doc__ = Inputs.feed.__doc__

    @no_grad
    def observe(
        self, pre: Any, post: Any, *, voltage: Any = None, reward: Any = None,
        signals: dict[str, Any] | None = None,
    ) -> None:
        self._inputs.observe(pre, post, voltage, reward, signals)

    observe.__doc__ = Inputs.observe.__doc__

    # -------------------------------------------------------------------- checkpoints

    def checkpoint_config(self, key_format: int = KEY_FORMAT) -> dict[str, Any]:
        """What a checkpoint of this rule must match to load: the class, the weight's
        shape, ``dt``, ``decay``, ``batch_reduction`` and the carried ``state``'s names
        (traces, filters, delays, eligibility traces, extra sums; their time constants
        are in the names), written in ``key_format``."""
        return checkpoint.checkpoint_config(self, key_format)

    def state_tensor(self, name: Any) -> Any:
        """The carried state of a signal of the declaration (a filter such as
        ``post.trace(20.0)`` or an eligibility trace), or of its text (e.g.
        ``"post.trace(20)"``, ``"elig:eligibility(...)"``), after the last processed
        step; ``None`` before any."""
        return checkpoint.state_tensor(self, name)

    def get_extra_state(self) -> dict[str, Any]:
        return checkpoint.extra_state(self)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        checkpoint.load_extra_state(self, state)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # validate before anything changes: this rule's configuration, then its
        # accumulator's window (loaded after this module, as a child)
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:
            checkpoint.check_checkpoint(self, extra)
        self.accumulator._check_loadable(state_dict, prefix + "accumulator.")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------------ sizes

    @property
    def chunk(self) -> int:
        """Steps per chunk: ``chunk_size``, or (``None``) about 32 MB of presynaptic spikes
        per chunk for the current batch, between 16 and :attr:`MAX_CHUNK` steps."""
        key = (self.chunk_size, self._hooks._pre.data)
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
        batch = self._hooks._batch
        return 1.0 / batch if (self.batch_reduction == "mean" and batch) else 1.0

    # the parts' state, as tests and tools read it
    _pre = property(lambda self: self._hooks._pre)
    _post = property(lambda self: self._hooks._post)
    _volt = property(lambda self: self._hooks._volt)
    _mod = property(lambda self: self._hooks._mod)
    _signals = property(lambda self: self._hooks._signals)
    _pending = property(lambda self: self._hooks._pending)
    _batch = property(lambda self: self._hooks._batch)
    _on_pre = property(lambda self: self._hooks._on_pre)
    _on_post = property(lambda self: self._hooks._on_post)

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
        return bool(self._hooks._handles)

    @property
    def learning(self) -> bool:
        """Whether steps are observed now: the rule and its synapse are in training mode."""
        return self.training and self.synapse.training and self.attached

    def attach(self) -> None:
        """Registers the hooks (again, after :meth:`detach`; a copy of an attached rule is
        attached to the copied modules already)."""
        self._hooks.attach()

    def detach(self) -> None:
        """Removes every hook; the rule observes nothing more (``step()`` still applies
        what was accumulated)."""
        self._hooks.detach()

    remove = detach

    # ---------------------------------------------------------------------- compute

    @no_grad
    def flush(self, keep_last: bool = False) -> None:
        """Runs the rule on every paired buffered step (in chunks of :attr:`chunk` steps).

        Steps whose spikes break the ``spikes`` policy are discarded with a ``ValueError``;
        traces, accumulator and weights are then unchanged (NaN/infinity: as they were
        just before the bad step).
        """
        h = self._hooks
        n = min(h._pre.n, h._post.n) - (1 if keep_last else 0)
        if n <= 0:
            return
        fed = None if h._signals is None else h._fed_views(n)  # (all fed, or an error)
        try:
            if n == 1 and _one_step_window(self, h, fed):  # online learning
                return
            w = self._adapter.weight
            dtype, device = w.dtype, w.device
            views = [None if b is None else b.view(n) for b in (h._pre, h._post, h._volt, h._mod)]
            for i, v in enumerate(views):  # (buffers follow the weight: converted if it moved)
                if v is not None and (v.dtype != dtype or v.device != device):
                    views[i] = v.to(device=device, dtype=dtype)
            self._process(*views, self.chunk, checked=not h._unchecked, fed=fed)  # type: ignore[arg-type]
        finally:  # processed, or discarded by a ValueError
            h._consume(n)

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
            [] if volt is None else [(volt, False, _VOLT)]) + _fed_blocks(fed, self._hooks._signals)  # fmt: skip
        plan, w = self.plan, self.weight  # (a pruned synapse's weight is computed: once)
        if n == 1 and steppable(plan) and (checked or _steps_valid(one)):  # online
            bounds, counts, n = [(0, 1)], [[0, 0]], 0  # (no counts needed)
        peaks: list[float] = []  # graded values' largest magnitudes, from the check
        if n:
            bounds, counts, bad = _chunks(one, chunk, checked, peaks)
        bounded, hold = _overflow_risk(plan, w, binary, one, mod, len(bounds), peaks,
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
            _overflowed(self, err, plan, binary, w)
        h = self._hooks
        if bad is not None:
            step = h._window_steps + bad[0]
            h._window_steps = step
            raise ValueError(
                f"{_refused_message(bad[1], step, bad[2])}; the {step} steps before it were "
                "learned from, that step and the unprocessed steps after it were discarded"
            )
        h._window_steps += pre.shape[0]

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
        self._hooks.end_window(type(self).__name__)
        self.__dict__["_extras"] = {}  # (a plain attribute: see __setattr__)
        w = adapter.weight
        acc = self._modules["accumulator"]
        if reduces_across_ranks(self.distributed):
            average = self.batch_reduction == "mean"
            # a rank that observed nothing in this window has no samples in its mean
            seen = float(self._hooks._batch or 0) if any(acc.counts) else 0.0
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

    @no_grad
    def reset(self) -> None:
        """Zeroes the traces (e.g. between samples); buffered steps are processed first.
        Eligibility traces are weight-shaped and carry on."""
        self.flush()
        if self._state is not None:
            kept = {k: v for k, v in self._state.items() if k in self.plan.eligibilities}
            self._state = kept or None
        self._hooks.clear()

    def __getstate__(self) -> dict[str, Any]:
        # a copy (deepcopy, pickle) copies the synapse and neuron with their hooks: the
        # handles, copied with them, remove the copy's own hooks
        d = self.__dict__.copy()
        d.pop("_chunk_cache", None)
        return d

    def extra_repr(self) -> str:
        return (
            f"synapse={type(self.synapse).__name__}, neuron={type(self.neuron).__name__}, dt={self.dt}, "
            f"trace={self.trace!r}, coincident={self.coincident!r}, batch_reduction={self.batch_reduction!r}"
        )


