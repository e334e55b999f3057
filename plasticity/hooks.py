"""A rule's hooks: reading spikes from neuron outputs, and pairing each neuron call with
the synapse step that fed it (:class:`HookPairing`, which also holds the buffered steps).

A *neuron* is any module whose output is spikes, or a tuple whose first element is
spikes (snnTorch's ``(spk, mem)`` convention, with ``init_hidden`` either way); its
membrane potential is the tuple's last element or ``neuron.mem``. The synapse side is
:mod:`plasticity.synapses`.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from ._grad import _graph_task_id, eagerly, run_eagerly, traced
from .buffers import SignalBuffers, StepBuffer, same_storage
from .synapses import SynapseAdapter

__all__ = ["HookPairing", "output_spikes", "output_voltage"]


def output_spikes(output: object, where: str = "neuron") -> Tensor:
    """The spike tensor of a neuron's output: the output itself or its first element."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and len(output) > 0 and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"the {where} returned {type(output).__name__}, which holds no spikes; a neuron must "
        "return a spike tensor or a tuple whose first element is the spike tensor"
    )


def output_voltage(output: object, neuron: nn.Module) -> Tensor:
    """The membrane potential of a neuron's step: the last element of a tuple output
    (snnTorch: ``(spk, mem)``, ``(spk, syn, mem)``, ...) or ``neuron.mem`` (snnTorch's
    ``init_hidden=True`` without ``output=True``)."""
    if isinstance(output, (tuple, list)) and len(output) > 1 and isinstance(output[-1], Tensor):
        return output[-1].detach()
    mem = getattr(neuron, "mem", None)
    if isinstance(mem, Tensor):
        return mem.detach()
    raise TypeError(
        f"the rule reads post.voltage, but the neuron ({type(neuron).__name__}) returned no "
        "membrane potential: return (spikes, mem) or keep it in `neuron.mem` (snnTorch: "
        "init_hidden=True), or pass voltage= to rule.observe()"
    )


class HookPairing:
    """The hooks of a rule and the steps they buffer: a part of
    :class:`~plasticity.PlasticityRule` (its ``_hooks``), which owns the synapse's forward
    pre-hook and forward hook, the neuron's forward hook, the step buffers (pre and post
    spikes; membrane potentials, third factor and user-fed signals for rules that read
    them) and the window's pairing bookkeeping.

    Pairing protocol: a neuron call is paired with the synapse output that fed it. The
    synapse's input is *staged* (copied into the pre buffer after the paired steps) by the
    synapse's pre-hook; the neuron's hook *commits* one staged step (or a block of steps)
    together with its spikes (and its membrane potential, if the rule reads it). A staged
    input that never reaches the neuron (a sanity call, a call feeding another neuron) is
    dropped with a warning and never shifts later pairs. A ``[T, B, N]`` sequence through
    the synapse is consumed one step per neuron call.

    Args:
        adapter: the synapse's adapter (:func:`~plasticity.synapses.synapse_adapter`).
        neuron: the module whose output is the postsynaptic spikes.
        rule: what the steps are for: the hooks observe while ``rule.training`` (and the
            synapse's); ``rule.chunk`` and ``rule.chunk_for(block)`` size the buffers and
            ``rule.flush(keep_last)`` runs once a chunk of steps is paired.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5, init_hidden=True)
        >>> rule = pl.STDP(fc, lif, a_plus=0.1, a_minus=0.1, tau_plus=5.0, tau_minus=5.0)
        >>> _ = lif(fc(torch.ones(1, 3)))
        >>> hooks = rule._hooks
        >>> hooks._pre.n, hooks._post.n, hooks._batch, len(hooks._handles)
        (1, 1, 1, 3)
    """

    def __init__(self, adapter: SynapseAdapter, neuron: nn.Module, rule: Any) -> None:
        self._adapter, self._neuron, self._rule = adapter, neuron, rule
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
        self._handles: list = []

    def reads(self, voltage: bool, modulator: bool, fed: dict[str, str]) -> None:
        """Buffers membrane potentials, a third factor and the user-fed signals ``fed``
        (``{name: side}``) too, as the rule's declaration reads them."""
        self._volt = StepBuffer() if voltage else None
        self._mod = StepBuffer() if modulator else None
        self._signals = SignalBuffers(fed) if fed else None

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_pending"] = [[*p[:3], None] for p in self._pending]  # no weak references
        return d

    @property
    def _hold_last(self) -> bool:  # the latest step waits for its reward or signals
        return self._mod is not None or self._signals is not None

    def attach(self) -> None:
        """Registers the hooks (nothing if they are registered)."""
        if self._handles:
            return
        run_eagerly(HookPairing, "_on_pre", "_on_synapse_output", "_on_post")
        synapse = self._adapter.module
        self._handles = [
            synapse.register_forward_pre_hook(self._on_pre, with_kwargs=True, prepend=True),
            synapse.register_forward_hook(self._on_synapse_output, prepend=True),
            self._neuron.register_forward_hook(self._on_post),
        ]

    def detach(self) -> None:
        """Removes every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    #
    # The hooks run every step: keep their fast paths lean. They observe nothing while
    # autograd's backward runs (activation checkpointing recomputes forward passes then),
    # leave inference mode (what they buffer outlives it) and run outside torch.compile
    # graphs (attach).

    def _on_pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(HookPairing._on_pre, self, module, args, kwargs)
        if not (self._rule.training and module.training) or _graph_task_id() != -1:  # (in backward)
            return
        if torch.is_inference_mode_enabled():
            with torch.inference_mode(False):
                return self._on_pre(module, args, kwargs)
        if self._signals is not None:  # the previous step's fed signals (before staging)
            self._check_fed()
        x = args[0] if args else kwargs.get("input")
        pending, pre = self._pending, self._pre
        # fast path: one step shaped like the paired ones, nothing else staged
        if not pending and self._batch is not None and isinstance(x, Tensor):
            if pre.stage_step(x.detach()):
                pending.append([pre.n, 1, 0, None])
                return
        if not isinstance(x, Tensor):
            raise TypeError(f"the synapse's input is {type(x).__name__}, not a spike tensor")
        self._stage_block(x)

    def _stage_block(self, x: Tensor) -> None:
        """:meth:`_on_pre`'s slow path: stages ``x``, keeping at most the latest earlier input."""
        pending, pre = self._pending, self._pre
        block = self._adapter.pre_steps(x)
        if self._batch is not None and block.shape[1] != self._batch:
            self._check_batch(block.shape[1])
        if pending:  # earlier inputs not (fully) consumed: keep at most the latest one
            other_shape = pre.data is None or pre.data.shape[1:] != block.shape[1:]
            if len(pending) > 1 or pending[-1][2] > 0 or other_shape:
                self._drop_pending(keep_last=pending[-1][2] == 0 and not other_shape)
        at = pending[-1][0] + pending[-1][1] if pending else pre.n
        rule = self._rule
        capacity = (rule.chunk if pre.data is not None else rule.chunk_for(block)) + self._hold_last
        pre.stage(block.detach(), self._adapter.weight, at, capacity)
        pending.append([at, block.shape[0], 0, None])

    def _on_synapse_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Remembers which tensor the staged input produced (to find it at the neuron)."""
        if traced():  # by torch.compile: run outside its graph
            return eagerly(HookPairing._on_synapse_output, self, module, args, output)
        pending = self._pending
        if pending and isinstance(output, Tensor) and _graph_task_id() == -1:  # (not in backward)
            pending[-1][3] = weakref.ref(output)

    def _on_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(HookPairing._on_post, self, module, args, output)
        if not (self._rule.training and self._adapter.module.training) or _graph_task_id() != -1:
            return
        if torch.is_inference_mode_enabled():
            with torch.inference_mode(False):
                return self._on_post(module, args, output)
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
            and self._volt is None
            and self._batch is not None
            and self._post.push(s.detach())
        ):
            self._pre.n += 1
            self._unchecked = True  # checked with its chunk (see PlasticityRule._process)
            pending.clear()
            self._maybe_flush()
            return
        self._pair_block(module, args, output, s)

    def _pair_block(self, module: nn.Module, args: tuple, output: Any, s: Tensor) -> None:
        """:meth:`_on_post`'s slow path: pairs ``s`` with the staged input that produced it."""
        pending = self._pending
        block = self._adapter.post_steps(s, self._pre.data)
        if self._batch is not None and block.shape[1] != self._batch:
            self._check_batch(block.shape[1])
        if not pending:
            self._warn_once(
                "unfed",
                f"the neuron ({type(module).__name__}) was called without an input from the "
                f"rule's synapse ({type(self._adapter.module).__name__}) since its last call: its "
                "spikes are not paired with any presynaptic step and are ignored",
            )
            return
        chosen = self._fed_call(module, args) if len(pending) > 1 else 0
        start, steps, cursor, ref = pending[chosen]
        take = block.shape[0]
        if take > steps - cursor:
            raise ValueError(
                f"the neuron returned {take} steps but the synapse's input holds only "
                f"{steps - cursor} unpaired steps; call the neuron once per synapse step"
            )
        voltage = None  # the membrane potential of the same steps (read before any change)
        if self._volt is not None:
            voltage = self._adapter.post_steps(output_voltage(output, module), None)
        self._unchecked = True  # checked with its chunk (see PlasticityRule._process)
        self._pre.commit(start + cursor, take)
        self._add(self._post, block, flush=False)
        if voltage is not None:
            self._add(self._volt, voltage, flush=False)  # type: ignore[arg-type]
        self._advance(chosen, start, steps, cursor + take, ref)

    def _fed_call(self, module: nn.Module, args: tuple) -> int:
        """Which staged synapse call fed the neuron (the latest whose output it reads, else the last)."""
        pending = self._pending
        current = args[0] if args else None
        fed = [same_storage(current, p[3]) for p in pending]
        if any(fed):
            self._warn_stray()
            return len(fed) - 1 - fed[::-1].index(True)
        self._warn_once(
            "shared",
            f"the synapse ({type(self._adapter.module).__name__}) was called {len(pending)} "
            f"times before the neuron ({type(module).__name__}): weight sharing is not "
            "supported by the hooks; the neuron's spikes are paired with the last call "
            "only, the other calls are dropped (use rule.observe() for such networks)",
        )
        return len(pending) - 1

    def _advance(self, chosen: int, start: int, steps: int, cursor: int, ref: Any) -> None:
        """After pairing ``pending[chosen]`` to ``cursor``: drops the others, keeps the rest."""
        pending, pre = self._pending, self._pre
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
            f"an output of the rule's synapse ({type(self._adapter.module).__name__}) never "
            f"reached its neuron ({type(self._neuron).__name__}) (a sanity call, or a call feeding "
            "another neuron): that step is dropped and does not shift later pairs",
        )

    def _warn_once(self, kind: str, message: str) -> None:
        """One warning of each kind per window (``step()`` starts a new window)."""
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, UserWarning, stacklevel=3)

    def _add(self, buffer: StepBuffer, block: Tensor, flush: bool = True) -> None:
        """Appends a block to a step buffer (the modulator gets zero rows with the post
        spikes), setting the batch size with the first step of a sequence."""
        if self._batch is None:
            self._batch = block.shape[1]
        weight = self._adapter.module.weight
        # the first presynaptic block sizes the buffers (before it, chunk is a guess)
        chunk = self._rule.chunk if self._pre.data is not None else self._rule.chunk_for(block)
        chunk += self._hold_last  # the latest step waits there for its reward
        buffer.append(block.detach(), weight, chunk)
        if self._mod is not None and buffer is self._post:
            self._mod.append(weight.new_zeros(block.shape[:2]), weight, chunk)
        if flush:
            self._maybe_flush()

    def _check_batch(self, batch: int) -> None:
        if self._batch is not None and batch != self._batch:
            raise ValueError(
                f"the batch size changed from {self._batch} to {batch} within a sequence; call "
                "rule.reset() before a batch of another size"
            )

    def _maybe_flush(self) -> None:
        rule = self._rule
        chunk, hold = rule.chunk, self._hold_last
        if self._pre.n >= chunk + hold and self._post.n >= chunk + hold:
            rule.flush(keep_last=hold)

    def _consume(self, n: int) -> None:
        """Drops the first ``n`` paired steps (processed, or discarded by an error)."""
        for p in self._pending:  # staged rows move to the front with the rest
            p[0] -= n
        for buffer in (self._pre, self._post, self._volt, self._mod, self._signals):
            if buffer is not None:
                buffer.consume(n)
        self._unchecked = self._unchecked and self._post.n > 0

    def clear(self) -> None:
        """Forgets the buffered steps, staged inputs and the batch size (a new sequence)."""
        self._batch = None
        self._pending.clear()  # synapse inputs that never reached the neuron: forgotten
        for buffer in (self._pre, self._post, self._volt, self._mod, self._signals):
            if buffer is not None:
                buffer.clear()

    def end_window(self, rule_name: str) -> None:
        """Says so if the neuron was never called while the synapse was (the rule was
        given another neuron than the one in the forward pass); starts the next window."""
        if self._neuron_calls == 0 and (self._dropped or self._pending):
            unpaired = self._dropped + sum(p[1] - p[2] for p in self._pending)
            warnings.warn(
                f"{rule_name}.step(): the rule's neuron ({type(self._neuron).__name__}, "
                f"id {id(self._neuron):#x}) was not called in this window, while its synapse "
                f"({type(self._adapter.module).__name__}) produced {unpaired} unpaired steps; "
                "nothing was learned from them. Pass the rule the neuron instance that the "
                "synapse drives in the forward pass",
                UserWarning,
                stacklevel=3,
            )
            self._drop_pending(keep_last=False, warn=False)  # nothing carries over
        self._neuron_calls = self._dropped = self._window_steps = 0
        self._warned.clear()

    def _fed_views(self, n: int) -> dict[str, Tensor]:
        """The first ``n`` buffered steps of every fed signal; an error naming the first
        step left without a value (nothing is processed)."""
        fed = self._signals
        assert fed is not None
        missing = fed.missing(n)
        if missing:
            name = missing[0]
            raise ValueError(_unfed(name, self._window_steps + fed.buffers[name].n))
        return fed.views(n)

    def _check_fed(self) -> None:
        """At a forward pass: every step before it has its signals (the synapse's
        pre-hook calls it before anything is staged)."""
        fed = self._signals
        if fed is not None and fed.steps() < self._post.n:
            self._fed_views(self._post.n)


def _unfed(name: str, step: int) -> str:
    """The error for step ``step`` of the window left without a value of signal ``name``."""
    return (f"step {step} of the window has no value of `{name}`: call rule.feed({name}=...) "
            "after each step's forward pass (or pass signals= to observe())")
