"""What a synapse's ``weight`` is, and where a rule's update goes.

* A tensor of its own (an ``nn.Parameter``, or a buffer): the rule reads it and
  ``step()`` writes ``-Δw`` into its ``.grad``.
* Pruned by :mod:`torch.nn.utils.prune`: the forward uses ``weight_orig * weight_mask``
  (recomputed by a forward pre-hook); the rule reads that product, ``step()`` writes the
  masked ``-Δw`` into ``weight_orig.grad``, so an absent synapse (mask 0) never changes.
* Computed by anything else (a parametrization such as ``weight_norm`` or
  ``spectral_norm``, old or new form): Δw is defined on the effective weight and does not
  map onto the tensors that produce it, so a rule refuses it by name.
* Not materialized (``nn.LazyLinear`` before its first forward pass, the meta device):
  nothing to read; refused by every plasticity module.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrize, prune

__all__ = ["check_materialized", "effective_weight", "grad_target", "weight_mask"]


def _pruning(module: nn.Module) -> prune.BasePruningMethod | None:
    """The pruning hook of ``module.weight`` (torch.nn.utils.prune), if any."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == "weight":
            return hook
    return None


def _own(module: nn.Module) -> Tensor | None:
    """``module.weight`` where it is a tensor of the module's own (parameter or buffer)."""
    w = module._parameters.get("weight")
    return w if w is not None else module._buffers.get("weight")


def _derivation(module: nn.Module) -> str:
    """Words for what computes ``module.weight`` (not a tensor of its own, not pruned)."""
    if parametrize.is_parametrized(module, "weight"):
        kinds = ", ".join(type(p).__name__ for p in module.parametrizations["weight"])
        return (
            f"a parametrization ({kinds}, torch.nn.utils.parametrize; e.g. "
            "torch.nn.utils.parametrizations.weight_norm or spectral_norm)"
        )
    hook = _computing_hook(module)
    if hook is not None:
        return f"a forward pre-hook ({type(hook).__name__}, the old torch.nn.utils form)"
    return "something else (it is not a parameter or buffer of the module)"


def _computing_hook(module: nn.Module) -> object | None:
    """The old-style hook that computes ``module.weight`` (``torch.nn.utils.weight_norm``,
    ``spectral_norm``: they carry the tensor's ``name``), if any."""
    for hook in module._forward_pre_hooks.values():
        if getattr(hook, "name", None) == "weight":
            return hook
    return None


def check_materialized(module: nn.Module, what: str) -> None:
    """A clear error if the synapse's weight has no values yet (lazy or meta)."""
    w = module._parameters.get("weight")
    name = type(module).__name__
    if w is not None and nn.parameter.is_lazy(w):
        raise ValueError(
            f"`synapse` ({name}) is a lazy module whose weight is not materialized yet (its "
            "input size is unknown until the first forward pass): run one forward pass of "
            f"the network first (or call module.initialize_parameters(x)), then build {what}"
        )
    w = w if w is not None else getattr(module, "weight", None)
    if isinstance(w, Tensor) and w.is_meta:
        raise ValueError(
            f"`synapse` ({name}) has its weight on the meta device (a shape without values): "
            "materialize it before building " + what + " (module.to_empty(device=...) and "
            "initialize the weight, or load a state_dict with assign=True)"
        )


def grad_target(module: nn.Module) -> Tensor:
    """The tensor whose ``.grad`` a rule's ``step()`` writes: ``module.weight``, or a pruned
    module's ``weight_orig``; a ``TypeError`` for a weight computed otherwise."""
    w = _own(module)
    if w is not None:
        return w
    if _pruning(module) is not None and "weight_orig" in module._parameters:
        return module._parameters["weight_orig"]
    w = module.__dict__.get("weight")
    if isinstance(w, Tensor) and w.is_leaf and _computing_hook(module) is None:
        return w  # a plain tensor attribute, set by the user
    raise TypeError(
        f"`synapse` ({type(module).__name__}) computes its weight with "
        f"{_derivation(module)}: a rule's Δw is defined on the effective weight and cannot be "
        "written into the tensors it is computed from (a gradient on the computed weight never "
        "reaches them). Remove it first (torch.nn.utils.parametrize.remove_parametrizations("
        "module, 'weight'), torch.nn.utils.remove_weight_norm, remove_spectral_norm) and learn "
        "the weight itself; pruning masks (torch.nn.utils.prune) are supported"
    )


def weight_mask(module: nn.Module) -> Tensor | None:
    """A pruned module's ``weight_mask`` (1: the synapse exists), else ``None``."""
    if _own(module) is not None or _pruning(module) is None:
        return None
    return module._buffers.get("weight_mask")


def effective_weight(module: nn.Module) -> Tensor:
    """The weight the module's forward uses, now: its own tensor, a pruned module's
    ``weight_orig * weight_mask`` (computed here: ``module.weight`` is only refreshed by a
    forward pass), or the computed ``module.weight`` of any other form."""
    w = _own(module)
    if w is not None:
        return w
    mask = weight_mask(module)
    if mask is not None and "weight_orig" in module._parameters:
        return (module._parameters["weight_orig"] * mask).detach()
    return module.weight.detach()
