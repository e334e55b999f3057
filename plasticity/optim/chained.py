"""``ChainedParamTransformingOptimizer``: several transforming optimizers around one inner
step."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from torch import Tensor
from torch.optim import SGD, Optimizer

from .transforming import InnerOptLike, ParamTransformingOptimizer, _factory_class

__all__ = ["ChainedParamTransformingOptimizer"]


class ChainedParamTransformingOptimizer(ParamTransformingOptimizer):
    r"""Chains parameter-transforming optimizers around one inner step.

    ``Opt1, ..., OptN`` applies their pre-step transforms left to right, then
    ``InnerOpt.step()``, then their post-step transforms left to right. All share one
    set of ``param_groups`` (each group carries every member's settings).

    Args:
        *transforming_optimizers: classes or ``functools.partial`` s of
            :class:`ParamTransformingOptimizer` subclasses.
        params, InnerOpt, param_ndim, grad_scale, grad_bias, defaults, inner_opt_kwargs:
            as for :class:`ParamTransformingOptimizer`.

    Example:
        Normalize each post-neuron's incoming weights to an L1 sum of 1, then clamp:

        >>> import torch, functools
        >>> from plasticity.optim import (ChainedParamTransformingOptimizer,
        ...     L1NormalizedParameterOptimizer, ClampedParameterOptimizer)
        >>> w = torch.tensor([[0.2, 0.2, 0.6], [1.0, 1.0, 2.0]], requires_grad=True)
        >>> opt = ChainedParamTransformingOptimizer(
        ...     functools.partial(L1NormalizedParameterOptimizer, norm=1.0),
        ...     functools.partial(ClampedParameterOptimizer, clamp_min=0.0, clamp_max=0.4),
        ...     params=[w], lr=1.0)
        >>> w.grad = torch.zeros_like(w)
        >>> opt.step()
        >>> w
        tensor([[0.2000, 0.2000, 0.4000],
                [0.2500, 0.2500, 0.4000]], requires_grad=True)
    """

    def __init__(
        self,
        *transforming_optimizers: type[ParamTransformingOptimizer] | functools.partial,
        params: Iterable[Tensor] | Iterable[dict[str, Any]] | None = None,
        InnerOpt: InnerOptLike = SGD,
        param_ndim: int | None = -1,
        grad_scale: float = 1.0,
        grad_bias: float = 0.0,
        defaults: dict[str, Any] | None = None,
        **inner_opt_kwargs: Any,
    ) -> None:
        """Builds the optimizer; arguments: ``help(plasticity.optim.ChainedParamTransformingOptimizer)``."""
        for opt in transforming_optimizers:
            cls = _factory_class(opt)
            if not (isinstance(cls, type) and issubclass(cls, ParamTransformingOptimizer)):
                raise TypeError(
                    "*transforming_optimizers must be ParamTransformingOptimizer classes or "
                    f"partials of them, got {opt!r}"
                )
        self._chain: tuple[ParamTransformingOptimizer, ...] = ()
        super().__init__(
            params,
            InnerOpt,
            param_ndim=param_ndim,
            grad_scale=grad_scale,
            grad_bias=grad_bias,
            defaults=defaults,
            **inner_opt_kwargs,
        )
        self._chain = tuple(
            opt(params, InnerOpt=self.inner_opt, defaults=dict(self.defaults))
            for opt in transforming_optimizers
        )
        self._share_inner_state()

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        for opt in getattr(self, "_chain", ()):
            opt._validate_group(group)

    def _pre_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        for opt in self._chain:
            opt._pre_step_transform_(param, optim_group=optim_group)

    def _post_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        for opt in self._chain:
            opt._post_step_transform_(param, optim_group=optim_group)

    def _share_inner_state(self) -> None:
        super()._share_inner_state()
        for opt in getattr(self, "_chain", ()):
            opt._share_inner_state()

    def __repr__(self) -> str:
        names = " ○ ".join(type(o).__name__ for o in reversed(self._chain)) or type(self).__name__
        return Optimizer.__repr__(self).replace(
            f"{type(self).__name__} (", f"{names} [{type(self.inner_opt).__name__}](", 1
        )
