"""The transforms a plasticity rule needs: clamping gradients or parameters, and L1
normalization of each post-neuron's incoming weights (Diehl & Cook 2015)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import SGD

from .._grad import no_grad
from .transforming import InnerOptLike, ParamTransformingOptimizer, _check_real, _reshape_to_batch

__all__ = [
    "ClampedGradientOptimizer",
    "ClampedParameterOptimizer",
    "L1NormalizedParameterOptimizer",
    "normalize_",
]


def _check_norm(where: str, norm: Any) -> None:
    _check_real(where, "norm", norm, optional=False)
    if not (norm > 0 and math.isfinite(norm)):
        raise ValueError(f"{where}: `norm` must be a finite number > 0, got {norm}")


class _ClampedOptim(ParamTransformingOptimizer):
    """Shared constructor and validation of the clamping optimizers."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]] | None = None,
        InnerOpt: InnerOptLike = SGD,
        *,
        clamp_min: float | None = None,
        clamp_max: float | None = None,
        defaults: dict[str, Any] | None = None,
        param_ndim: int | None = None,
        **inner_opt_kwargs: Any,
    ) -> None:
        """Builds the optimizer; arguments: ``help(type(self))``, e.g.
        ``help(plasticity.ClampedParameterOptimizer)``."""
        defaults = dict(defaults or {})
        defaults.setdefault("clamp_min", clamp_min)
        defaults.setdefault("clamp_max", clamp_max)
        super().__init__(
            params, InnerOpt, defaults=defaults, param_ndim=param_ndim, **inner_opt_kwargs
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        where = type(self).__name__
        lo, hi = group.get("clamp_min"), group.get("clamp_max")
        if lo is None and hi is None:
            raise ValueError(f"{where}: either `clamp_min` or `clamp_max` must be specified")
        _check_real(where, "clamp_min", lo, optional=True)
        _check_real(where, "clamp_max", hi, optional=True)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"{where}: `clamp_min`={lo} exceeds `clamp_max`={hi}; need clamp_min <= clamp_max"
            )


class ClampedGradientOptimizer(_ClampedOptim):
    """Clamps each gradient element to ``[clamp_min, clamp_max]`` **before** ``InnerOpt.step()``.

    Example:
        >>> import torch as tr
        >>> from plasticity.optim import ClampedGradientOptimizer
        >>> x = tr.ones(2, requires_grad=True)
        >>> optim = ClampedGradientOptimizer(params=[x], lr=1.0, clamp_min=-1.0, clamp_max=3.0)
        >>> x.backward(gradient=tr.tensor([-0.5, 10]))
        >>> optim.step()
        >>> x.grad
        tensor([-0.5000,  3.0000])
        >>> x
        tensor([ 1.5000, -2.0000], requires_grad=True)
    """

    def _pre_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        if param.grad is not None:
            param.grad.clamp_(min=optim_group["clamp_min"], max=optim_group["clamp_max"])


class ClampedParameterOptimizer(_ClampedOptim):
    """Clamps each parameter element to ``[clamp_min, clamp_max]`` **after** ``InnerOpt.step()``.

    Every parameter of every group is clamped after each step, whether or not it had a
    gradient. The limits are per parameter group.

    Example:
        Let's perform a step with SGD using a learning rate of 1.0 to each of our
        parameters and then clamp their parameters to [-1.0, 3.0].

        >>> import torch as tr
        >>> from plasticity.optim import ClampedParameterOptimizer
        >>> x = tr.ones(2, requires_grad=True)
        >>> optim = ClampedParameterOptimizer(params=[x], lr=1.0, clamp_min=-1.0, clamp_max=3.0)
        >>> x.backward(gradient=tr.tensor([0.5, -10.0]))
        >>> optim.step()
        >>> x
        tensor([0.5000, 3.0000], requires_grad=True)
    """

    def _post_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        param.clamp_(min=optim_group["clamp_min"], max=optim_group["clamp_max"])

    @no_grad
    def project(self) -> None:
        if type(self)._post_step_transform_ is not ClampedParameterOptimizer._post_step_transform_:
            return super().project()
        for group in self.param_groups:  # elementwise: no reshaping needed
            lo, hi = group["clamp_min"], group["clamp_max"]
            for p in group["params"]:
                p.clamp_(min=lo, max=hi)


@no_grad
def normalize_(
    weight: Tensor,
    norm: float,
    *,
    dim: int | tuple[int, ...] = -1,
    eps: float = 0.0,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Scales ``weight`` in-place so that the L1 norm along ``dim`` equals ``norm``.

    .. math:: w_{ij} \leftarrow w_{ij}\,\frac{\text{norm}}{\sum_j |w_{ij}|}

    For a ``[N_out, N_in]`` synapse and ``dim=-1`` each post-neuron's incoming weights
    sum to ``norm`` (Diehl & Cook 2015 use ``norm = 78`` for 784 inputs). Slices whose
    L1 norm is ``<= eps`` are left unchanged (no division by zero). ``mask`` (weight-shaped,
    nonzero: the synapse exists; e.g. a pruned layer's ``weight_mask``) restricts the norm
    and the scaling to the existing synapses; the others are left as they are.

    Example:
        >>> import torch
        >>> w = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
        >>> normalize_(w, 2.0)
        tensor([[0.5000, 1.5000],
                [0.0000, 0.0000]])
    """
    _check_norm("normalize_", norm)
    present = None if mask is None else mask != 0
    stored = weight.abs() if present is None else weight.abs() * present
    total = stored.sum(dim=dim, keepdim=True)
    scale = torch.where(
        total > eps, norm / total.clamp_min(torch.finfo(weight.dtype).tiny), torch.ones_like(total)
    )
    if present is not None:
        scale = torch.where(present, scale, torch.ones_like(scale))
    return weight.mul_(scale)


class L1NormalizedParameterOptimizer(ParamTransformingOptimizer):
    r"""After ``InnerOpt.step()``, rescales each slice of a parameter to an L1 sum of ``norm``.

    With the default ``param_ndim=-1`` each slice is one row of a ``[N_out, N_in]``
    weight (all incoming weights of one post-neuron) or one output channel of a conv
    weight. Compose with clamping through :class:`ChainedParamTransformingOptimizer`.

    Args:
        norm: target L1 sum of each slice (Diehl & Cook 2015: 78 for 784 inputs). Per group.
        mask: ``None``, or a tensor shaped like each parameter of the group whose nonzero
            entries are the synapses that exist: the norm is over those only, the others
            are not touched. For a layer pruned by ``torch.nn.utils.prune``: optimize
            ``weight_orig`` with ``mask=layer.weight_mask``. Per group.
        params, InnerOpt, param_ndim, defaults, inner_opt_kwargs: as for
            :class:`ParamTransformingOptimizer`.

    Example:
        >>> import torch
        >>> from plasticity.optim import L1NormalizedParameterOptimizer
        >>> w = torch.tensor([[1.0, 1.0], [2.0, 6.0]], requires_grad=True)
        >>> opt = L1NormalizedParameterOptimizer([w], lr=1.0, norm=4.0)
        >>> opt.step()
        >>> w
        tensor([[2., 2.],
                [1., 3.]], requires_grad=True)
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]] | None = None,
        InnerOpt: InnerOptLike = SGD,
        *,
        norm: float | None = None,
        mask: Tensor | None = None,
        param_ndim: int | None = -1,
        defaults: dict[str, Any] | None = None,
        **inner_opt_kwargs: Any,
    ) -> None:
        """Builds the optimizer; arguments: ``help(plasticity.optim.L1NormalizedParameterOptimizer)``."""
        defaults = dict(defaults or {})
        defaults.setdefault("norm", norm)
        defaults.setdefault("mask", mask)
        super().__init__(
            params, InnerOpt, defaults=defaults, param_ndim=param_ndim, **inner_opt_kwargs
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        where = type(self).__name__
        _check_norm(where, group.get("norm"))
        mask = group.get("mask")
        if mask is None:
            return
        if not isinstance(mask, Tensor):
            raise TypeError(f"{where}: `mask` must be a tensor or None, got {type(mask).__name__}")
        for p in group["params"]:
            if mask.shape != p.shape:
                raise ValueError(
                    f"{where}: `mask` has shape {tuple(mask.shape)} but a parameter of its group "
                    f"has shape {tuple(p.shape)}; give each parameter its own group and mask"
                )

    def _post_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        dims = tuple(range(1, param.ndim))
        mask = optim_group.get("mask")
        if mask is not None:
            mask = _reshape_to_batch(mask, optim_group["param_ndim"])
        normalize_(param, optim_group["norm"], dim=dims, mask=mask)
