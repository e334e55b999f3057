"""Synapse adapters: what a rule learns on.

A *synapse* is a module with a ``weight`` whose forward is linear in its input:
``nn.Linear`` (also snnTorch's ``RLeaky.recurrent``) or ``nn.Conv1d/2d/3d``. The adapter
turns its forward input (pre spikes) and the neuron's output (post spikes) into
``[T, B, ...]`` step blocks, checked against the weight's shape.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._weights import check_materialized, effective_weight, grad_target, weight_mask

__all__ = ["SynapseAdapter", "DenseSynapse", "ConvSynapse", "synapse_adapter"]


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
    if name == "SparseLinear":
        raise TypeError(
            "`synapse` is a pl.SparseLinear: rules do not learn on it yet; meanwhile the same "
            "network learns on a dense nn.Linear pruned to its synapses: "
            "torch.nn.utils.prune.custom_from_mask(fc, 'weight', sparse.mask())"
        )
    raise TypeError(
        f"`synapse` is a {type(module).__name__}; supported synapses are nn.Linear and nn.Conv1d/2d/3d"
    )
