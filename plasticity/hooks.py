"""Attaching rules to modules: synapse adapters and reading spikes from neuron outputs.

A *synapse* is a module with a ``weight`` whose forward is linear in its input:
``nn.Linear`` (also snnTorch's ``RLeaky.recurrent``) or ``nn.Conv1d/2d/3d``. The adapter
turns its forward input (pre spikes) and the neuron's output (post spikes) into
``[T, B, ...]`` step blocks, checked against the weight's shape.

A *neuron* is any module whose output is spikes, or a tuple whose first element is
spikes (snnTorch's ``(spk, mem)`` convention, with ``init_hidden`` either way); its
membrane potential is the tuple's last element or ``neuron.mem``.

:class:`HookPairing` holds the hooks and the protocol that pairs each neuron call with
the synapse step that fed it.
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from ._grad import _graph_task_id, eagerly, traced
from ._weights import check_materialized, effective_weight, grad_target, weight_mask
from .buffers import StepBuffer, same_storage

__all__ = [
    "SynapseAdapter",
    "DenseSynapse",
    "ConvSynapse",
    "HookPairing",
    "synapse_adapter",
    "output_spikes",
    "output_voltage",
]


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


class SynapseAdapter:
    """Shape handling and the correlation kernel for one kind of synapse."""

    module: nn.Module
    in_shape: tuple[int, ...]

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    @property
    def weight(self) -> Tensor:
        """The weight the synapse's forward uses (a pruned synapse's ``weight_orig *
        weight_mask``, computed now)."""
        w = self.module._parameters.get("weight")
        return w if w is not None else effective_weight(self.module)

    @property
    def parameter(self) -> Tensor:
        """The tensor whose ``.grad`` a rule writes: the weight, or a pruned synapse's
        ``weight_orig``; a ``TypeError`` for a weight computed by a parametrization."""
        w = self.module._parameters.get("weight")
        return w if w is not None else grad_target(self.module)

    @property
    def mask(self) -> Tensor | None:
        """A pruned synapse's ``weight_mask`` (its update is masked), else ``None``."""
        return None if "weight" in self.module._parameters else weight_mask(self.module)

    def pre_steps(self, x: Tensor) -> Tensor:
        """The synapse's input as ``[T, B, *in]`` (T = 1 for one step)."""
        raise NotImplementedError

    def post_steps(self, s: Tensor, pre_block: Tensor | None) -> Tensor:
        """The neuron's spikes as ``[T, B, *out]``; checked against the synapse's output."""
        raise NotImplementedError



def _blocks(x: Tensor, feature_ndim: int, what: str, expected: str) -> Tensor:
    if x.ndim == feature_ndim:  # one unbatched step
        return x.unsqueeze(0).unsqueeze(0)
    if x.ndim == feature_ndim + 1:  # one batched step
        return x.unsqueeze(0)
    if x.ndim == feature_ndim + 2:  # a [T, B, ...] sequence
        return x
    raise ValueError(f"{what} has shape {tuple(x.shape)}; expected {expected}")


class DenseSynapse(SynapseAdapter):
    """``nn.Linear``: weight ``[N_out, N_in]``; spikes ``[N]``, ``[B, N]`` or ``[T, B, N]``."""

    def __init__(self, module: nn.Linear) -> None:
        super().__init__(module)
        self.n_in, self.n_out = module.in_features, module.out_features
        self.in_shape = (self.n_in,)

    def pre_steps(self, x: Tensor) -> Tensor:
        if x.ndim == 2 and x.shape[1] == self.n_in:  # the common case: one batched step
            return x[None]
        if x.ndim == 0 or x.shape[-1] != self.n_in:
            raise ValueError(
                f"the synapse's input has shape {tuple(x.shape)}; expected [..., {self.n_in}] (in_features)"
            )
        return _blocks(x, 1, "the synapse's input", f"[B, {self.n_in}] or [T, B, {self.n_in}]")

    def post_steps(self, s: Tensor, pre_block: Tensor | None) -> Tensor:
        if s.ndim == 2 and s.shape[1] == self.n_out:  # the common case: one batched step
            return s[None]
        if s.ndim == 0 or s.shape[-1] != self.n_out:
            raise ValueError(
                f"the neuron's spikes have shape {tuple(s.shape)} but the synapse has out_features="
                f"{self.n_out}; attach the rule to the neuron that this synapse drives"
            )
        return _blocks(s, 1, "the neuron's spikes", f"[B, {self.n_out}] or [T, B, {self.n_out}]")



class ConvSynapse(SynapseAdapter):
    """``nn.Conv{1,2,3}d`` with any stride, padding (incl. strings and modes), dilation, groups."""

    def __init__(self, module: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> None:
        super().__init__(module)
        self.k = len(module.kernel_size)
        self.c_in, self.c_out = module.in_channels, module.out_channels
        self.in_shape = (self.c_in,)
        padding = module.padding
        if isinstance(padding, str) or module.padding_mode != "zeros":
            pad = tuple(module._reversed_padding_repeated_twice)
            self.pad = pad if any(pad) else None
            self.padding = (0,) * self.k
        else:
            self.pad, self.padding = None, tuple(padding)

    def _check(self, x: Tensor, channels: int, what: str) -> Tensor:
        if x.ndim < self.k + 1 or x.shape[-(self.k + 1)] != channels:
            raise ValueError(
                f"{what} has shape {tuple(x.shape)}; expected [B, {channels}, *spatial] with "
                f"{self.k} spatial dimensions ({channels} channels)"
            )
        return _blocks(
            x, self.k + 1, what, f"[B, {channels}, *spatial] or [T, B, {channels}, *spatial]"
        )

    def pre_steps(self, x: Tensor) -> Tensor:
        return self._check(x, self.c_in, "the synapse's input")

    def out_spatial(self, in_spatial: tuple[int, ...]) -> tuple[int, ...]:
        m = self.module
        sizes = list(in_spatial)
        if self.pad is not None:
            for i in range(self.k):  # F.pad order: last dim first
                sizes[self.k - 1 - i] += self.pad[2 * i] + self.pad[2 * i + 1]
        return tuple(
            math.floor(
                (sizes[i] + 2 * self.padding[i] - m.dilation[i] * (m.kernel_size[i] - 1) - 1)
                / m.stride[i]
                + 1
            )
            for i in range(self.k)
        )

    def post_steps(self, s: Tensor, pre_block: Tensor | None) -> Tensor:
        block = self._check(s, self.c_out, "the neuron's spikes")
        if pre_block is not None:
            expected = self.out_spatial(tuple(pre_block.shape[-self.k :]))
            if tuple(block.shape[-self.k :]) != expected:
                raise ValueError(
                    f"the neuron's spikes have spatial shape {tuple(block.shape[-self.k :])} but the "
                    f"convolution produces {expected}; attach the rule to the neuron this synapse drives"
                )
        return block

    def geometry(self) -> dict:
        """The convolution's shape keywords (for the event-driven kernels)."""
        m = self.module
        return {
            "weight_shape": tuple(m.weight.shape),
            "stride": tuple(m.stride),
            "padding": self.padding,
            "dilation": tuple(m.dilation),
            "groups": m.groups,
            "pad": self.pad,
            "padding_mode": m.padding_mode,
        }



def synapse_adapter(module: object) -> SynapseAdapter:
    """The adapter for a synapse module, or a clear ``TypeError``."""
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"`synapse` must be a torch.nn.Module (e.g. nn.Linear), got {type(module).__name__}"
        )
    name = type(module).__name__
    if not isinstance(getattr(module, "weight", None), Tensor) and (
        getattr(module, "all_to_all", None) is False  # snn.RLeaky / snn.RSynaptic itself
        or name == "RecurrentOneToOne"  # its `.recurrent`: x * V
    ):
        what = (
            f"the `.recurrent` ({name}) of an RLeaky/RSynaptic"
            if name == "RecurrentOneToOne"
            else f"an snn.{name}"
        )
        raise TypeError(
            f"`synapse` is {what} built with all_to_all=False: its one-to-one recurrent weight "
            "`V` scales each neuron's own spike elementwise (V * spk), not a linear layer, and "
            "learning it is not supported. Build the neuron with all_to_all=True, "
            "linear_features=N and pass its `.recurrent` (an nn.Linear, whose weight learns)"
        )
    if not isinstance(getattr(module, "weight", None), Tensor):
        raise TypeError(
            f"`synapse` ({type(module).__name__}) has no `weight` tensor; pass the nn.Linear or "
            "nn.Conv1d/2d/3d whose weight should learn (for snn.RLeaky: its `.recurrent`)"
        )
    check_materialized(module, "plasticity on it")
    if isinstance(module, nn.Linear):
        return DenseSynapse(module)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return ConvSynapse(module)
    raise TypeError(
        f"`synapse` is a {type(module).__name__}; supported synapses are nn.Linear and nn.Conv1d/2d/3d"
    )


class HookPairing:
    """The hooks of a rule (mixed into :class:`~plasticity.PlasticityRule`): the synapse's
    forward pre-hook and forward hook, and the neuron's forward hook.

    Pairing protocol: a neuron call is paired with the synapse output that fed it. The
    synapse's input is *staged* (copied into the pre buffer after the paired steps) by the
    synapse's pre-hook; the neuron's hook *commits* one staged step (or a block of steps)
    together with its spikes (and its membrane potential, if the rule reads it). A staged
    input that never reaches the neuron (a sanity call, a call feeding another neuron) is
    dropped with a warning and never shifts later pairs. A ``[T, B, N]`` sequence through
    the synapse is consumed one step per neuron call.
    """

    _adapter: SynapseAdapter
    _pre: StepBuffer
    _post: StepBuffer
    _volt: StepBuffer | None
    _mod: StepBuffer | None
    _signals: Any  # SignalBuffers | None: user-fed signals (PlasticityRule)
    _pending: list[list]
    _batch: int | None

    #
    # A neuron call is paired with the synapse output that fed it. The synapse's input is
    # *staged* (copied into the pre buffer after the paired steps) by the synapse's
    # pre-hook; the neuron's hook *commits* one staged step (or a block of steps) together
    # with its spikes. A staged input that never reaches the neuron (a sanity call, a call
    # feeding another neuron) is dropped with a warning and never shifts later pairs. A
    # ``[T, B, N]`` sequence through the synapse is consumed one step per neuron call.
    # The hooks run every step: keep their fast paths lean. They observe nothing while
    # autograd's backward runs (activation checkpointing recomputes forward passes then),
    # leave inference mode (what they buffer outlives it) and run outside torch.compile
    # graphs (PlasticityRule.attach).

    def _on_pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(HookPairing._on_pre, self, module, args, kwargs)
        if not (self.training and module.training) or _graph_task_id() != -1:  # (in backward)
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
        capacity = (self.chunk if pre.data is not None else self.chunk_for(block)) + self._hold_last
        pre.stage(block.detach(), self.weight, at, capacity)
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
        if not (self.training and self._adapter.module.training) or _graph_task_id() != -1:
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
        self.__dict__["_neuron_calls"] += 1  # a plain attribute, set without __setattr__
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
            self.__dict__["_unchecked"] = True  # checked with its chunk (see _process)
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
                f"rule's synapse ({type(self.synapse).__name__}) since its last call: its "
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
        self.__dict__["_unchecked"] = True  # checked with its chunk (see _process)
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
            f"the synapse ({type(self.synapse).__name__}) was called {len(pending)} "
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
        """Appends a block to a step buffer (the modulator gets zero rows with the post
        spikes), setting the batch size with the first step of a sequence."""
        if self._batch is None:
            self._batch = block.shape[1]
        weight = self._adapter.module.weight
        # the first presynaptic block sizes the buffers (before it, chunk is a guess)
        chunk = self.chunk if self._pre.data is not None else self.chunk_for(block)
        chunk += self._hold_last  # the latest step waits there for its reward
        buffer.append(block.detach(), weight, chunk)
        if self._mod is not None and buffer is self._post:
            self._mod.append(weight.new_zeros(block.shape[:2]), weight, chunk)
        if flush:
            self._maybe_flush()
