"""``ParamTransformingOptimizer``: in-place transforms around any torch optimizer's step."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from numbers import Real
from typing import Any

import torch
from torch import Tensor
from torch.optim import SGD, Optimizer

from .._grad import no_grad

__all__ = ["ParamTransformingOptimizer"]

InnerOptLike = type[Optimizer] | functools.partial | Optimizer


def _factory_class(obj: Any) -> Any:
    """What ``obj`` builds: the class under any ``functools.partial``."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return obj


def _is_optimizer_factory(obj: Any) -> bool:
    cls = _factory_class(obj)
    return isinstance(cls, type) and issubclass(cls, Optimizer)


def _reshape_to_batch(x: Tensor, param_ndim: int | None) -> Tensor:
    """A view of ``x`` shaped ``(N, d0, ...)`` where ``(d0, ...)`` has ``param_ndim`` dims."""
    if param_ndim is None:
        param_ndim = x.ndim
    if param_ndim < 0:
        param_ndim += x.ndim
    delta = (1 + param_ndim) - x.ndim
    if delta > 0:
        x = x[(None,) * delta]
    elif delta < 0:
        x = x.view(-1, *x.shape[x.ndim - param_ndim :])
    if x.ndim < 2:
        x = x.view(*x.shape, *(1,) * (2 - x.ndim))
    return x


def _to_batch(p: Tensor, param_ndim: int | None) -> Tensor:
    vp = _reshape_to_batch(p, param_ndim)
    if p.grad is not None:
        vp.grad = _reshape_to_batch(p.grad, param_ndim)
    return vp


def _check_real(where: str, name: str, value: Any, *, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise ValueError(f"{where}: `{name}` is required; pass a number")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{where}: `{name}` must be a real number, got {type(value).__name__} {value!r}"
        )
    if math.isnan(float(value)):
        raise ValueError(f"{where}: `{name}` is NaN; pass a number")


def _check_tensors(where: str, params: Any) -> None:
    """Refuses a tensor that is not a parameter (e.g. the ``weight`` of a pruned module,
    recomputed from ``weight_orig * weight_mask`` at every forward pass). An iterator is
    left to the inner optimizer (not consumed here); its groups are checked after."""
    if not isinstance(params, (Tensor, list, tuple)):
        return
    for i, p in enumerate([params] if isinstance(params, Tensor) else params):
        if isinstance(p, Tensor) and not isinstance(p, torch.nn.Parameter):
            why = (
                "a tensor computed from others (not a leaf)" if not p.is_leaf
                else "a plain tensor that requires no gradient" if not p.requires_grad
                else None
            )  # fmt: skip
            if why is not None:
                raise ValueError(
                    f"{where}: params[{i}] (shape {list(p.shape)}) is {why}, not a parameter: "
                    "a step on it would not last. A synapse pruned with torch.nn.utils.prune "
                    "computes `weight` from `weight_orig * weight_mask` at every forward pass: "
                    "optimize its `weight_orig` (a rule's `parameter`)"
                )


def _fill(settings: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Gives ``settings`` (a group's, or an optimizer's defaults) each of ``defaults`` it
    does not set itself."""
    for key, value in defaults.items():
        settings.setdefault(key, value)


def _inner_optimizer(
    where: str, params: Any, InnerOpt: Any, defaults: dict[str, Any], kwargs: dict[str, Any]
) -> Optimizer:
    """The optimizer doing the step: ``InnerOpt`` itself, an instance (its groups given
    ``defaults``), or built from ``params`` by a class or partial, with ``kwargs``."""
    if isinstance(InnerOpt, Optimizer):
        if kwargs:
            raise TypeError(
                "`InnerOpt` is an optimizer instance, so keyword arguments "
                f"{sorted(kwargs)} cannot configure it; pass a class or partial"
            )
        for group in InnerOpt.param_groups:  # our settings, in its own group dicts
            _fill(group, defaults)
        return InnerOpt
    if not _is_optimizer_factory(InnerOpt):
        raise TypeError(
            "`InnerOpt` must be a torch.optim.Optimizer class, a functools.partial of one, "
            f"or an instance; got {InnerOpt!r}"
        )
    inner = InnerOpt(_param_groups(where, params, defaults), **kwargs)
    if not isinstance(inner, Optimizer):
        raise TypeError(f"`InnerOpt` built {type(inner).__name__}, not a torch Optimizer")
    return inner


def _param_groups(where: str, params: Any, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameter groups of ``params`` (tensors, or dicts: copied, the caller's stay
    untouched), their tensors checked, each given ``defaults``."""
    if params is None:
        raise TypeError("`params` cannot be None when `InnerOpt` is an optimizer class or partial")
    groups = list(params)
    if len(groups) == 0:
        raise ValueError("`params` is an empty list; pass the tensors to optimize")
    if not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    else:
        groups = [dict(g) for g in groups]
    for group in groups:
        _check_tensors(where, group.get("params"))
    for group in groups:
        _fill(group, defaults)
    return groups


class ParamTransformingOptimizer(Optimizer):
    r"""An optimizer that transforms each parameter in-place before and after ``InnerOpt.step``.

    Subclasses override ``_pre_step_transform_(param, optim_group)`` and/or
    ``_post_step_transform_(param, optim_group)``; ``param`` (and ``param.grad``) arrive
    reshaped to ``(N, d0, ...)`` with ``param_ndim`` trailing dimensions, and the
    transform must act in-place, broadcasting over the leading dimension.

    ``param_groups``, ``defaults`` and ``state`` are the inner optimizer's own objects,
    so LR schedulers, ``add_param_group``, ``state_dict``/``load_state_dict`` drive the
    inner step directly.

    Args:
        params: iterable of tensors or of dicts defining parameter groups (may be
            ``None`` when ``InnerOpt`` is an optimizer instance).
        InnerOpt: the optimizer doing the gradient step: a class, a
            ``functools.partial`` of one, or an instance. Defaults to ``torch.optim.SGD``.
        param_ndim: trailing dimensions each transform sees (``None``: the whole tensor;
            negative: offset from ``ndim``). Per group. Defaults to ``-1``.
        grad_scale: multiplies each gradient after the pre-step transform. Per group.
        grad_bias: added to each gradient after the pre-step transform. Per group.
        defaults: default settings for all parameter groups (copied, never mutated).
        **inner_opt_kwargs: passed to ``InnerOpt`` (e.g. ``lr=1.0``).

    Example:
        A gradient-sign optimizer on top of AdamW:

        >>> import torch as tr
        >>> from plasticity.optim import ParamTransformingOptimizer
        >>> class SignedGradientOptim(ParamTransformingOptimizer):
        ...     def _pre_step_transform_(self, param: tr.Tensor, **_kwds) -> None:
        ...         if param.grad is None:
        ...             return
        ...         tr.sign(param.grad, out=param.grad)  # operates in-place
        >>> x = tr.tensor([-10.0, 10.0], requires_grad=True)
        >>> optim = SignedGradientOptim([x], InnerOpt=tr.optim.AdamW, lr=0.1)
        >>> (10_000 * x).sum().backward()
        >>> optim.step()   # AdamW: x*(1 - lr*0.01) - lr*sign(grad)
        >>> x
        tensor([-10.0900,   9.8900], requires_grad=True)

        Clamping after the step:

        >>> class ClampedParamOptim(ParamTransformingOptimizer):
        ...     def _post_step_transform_(self, param: tr.Tensor, optim_group: dict) -> None:
        ...         param.clamp_(min=-1.0, max=1.0)
        >>> x = tr.tensor([-10., 1.], requires_grad=True)
        >>> optim = ClampedParamOptim([x], lr=0.1)
        >>> x.backward(gradient=tr.tensor([-1., 1.]))
        >>> optim.step()
        >>> x
        tensor([-1.0000,  0.9000], requires_grad=True)
    """

    inner_opt: Optimizer

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]] | None = None,
        InnerOpt: InnerOptLike = SGD,
        *,
        param_ndim: int | None = -1,
        grad_scale: float = 1.0,
        grad_bias: float = 0.0,
        defaults: dict[str, Any] | None = None,
        **inner_opt_kwargs: Any,
    ) -> None:
        """Builds the optimizer; arguments: ``help(plasticity.optim.ParamTransformingOptimizer)``."""
        if defaults is not None and not isinstance(defaults, dict):
            raise TypeError(f"`defaults` must be a dict or None, got {type(defaults).__name__}")
        defaults = dict(defaults or {})  # never mutate the caller's dict
        defaults.setdefault("param_ndim", param_ndim)
        defaults.setdefault("grad_scale", grad_scale)
        defaults.setdefault("grad_bias", grad_bias)
        inner = _inner_optimizer(type(self).__name__, params, InnerOpt, defaults, inner_opt_kwargs)
        for group in inner.param_groups:
            self._validate_group(group)

        # our defaults join the inner optimizer's, then both objects share every dict
        _fill(inner.defaults, defaults)
        self._initializing = True  # Optimizer.__init__ calls add_param_group per group
        Optimizer.__init__(self, inner.param_groups, inner.defaults)
        del self._initializing
        self.inner_opt = inner
        self._share_inner_state()

    # -------------------------------------------------------------- hooks for subclasses

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Raises a clear error if a parameter group's settings are invalid."""
        where = type(self).__name__
        param_ndim = group.get("param_ndim")
        if param_ndim is not None and (
            isinstance(param_ndim, bool) or not isinstance(param_ndim, int)
        ):
            raise TypeError(f"{where}: `param_ndim` must be an int or None, got {param_ndim!r}")
        for name in ("grad_scale", "grad_bias"):
            _check_real(where, name, group.get(name), optional=False)
        _check_tensors(where, group["params"])
        for p in group["params"]:
            if param_ndim is not None and not (-p.ndim <= param_ndim <= max(p.ndim, 0)):
                if not (p.ndim == 0 and param_ndim in (0, -1)):
                    raise ValueError(
                        f"{where}: `param_ndim={param_ndim}` does not fit a parameter with "
                        f"{p.ndim} dimensions; use a value in [{-p.ndim}, {p.ndim}] or None"
                    )

    def _pre_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        """In-place transform of each parameter (usually its gradient) before the step."""

    def _post_step_transform_(self, param: Tensor, optim_group: dict[str, Any]) -> None:
        """In-place transform of each parameter after the step."""

    # ------------------------------------------------------------------ state sharing

    def _share_inner_state(self) -> None:
        self.param_groups = self.inner_opt.param_groups
        self.state = self.inner_opt.state
        self.defaults = self.inner_opt.defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a parameter group, validated with this optimizer's rules, to the inner optimizer."""
        if self.__dict__.get("_initializing"):  # Optimizer.__init__: the inner opt has them
            return
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        candidate = dict(param_group)
        params = candidate["params"]
        candidate["params"] = [params] if isinstance(params, Tensor) else list(params)
        _fill(candidate, self.defaults)
        self._validate_group(candidate)
        self.inner_opt.add_param_group(candidate)
        self._share_inner_state()

    def state_dict(self) -> dict[str, Any]:
        return self.inner_opt.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict.get("param_groups", [])
        for saved, current in zip(groups, self.inner_opt.param_groups, strict=False):
            trial = {**current, **{k: v for k, v in saved.items() if k != "params"}}
            self._validate_group(trial)
        self.inner_opt.load_state_dict(state_dict)
        self._share_inner_state()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("step", None)  # an LR scheduler's per-instance wrapper is not picklable
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "inner_opt" in state:
            self.__dict__.update(state)
            Optimizer.__setstate__(self, {})  # re-creates missing hook dicts, patches step
            self._share_inner_state()
        else:  # torch's own load path hands us {"state": ..., "param_groups": ...}
            self.inner_opt.__setstate__(state)
            self._share_inner_state()

    def __repr__(self) -> str:
        # rai_toolbox's header, e.g. "ClampedParameterOptimizer [SGD](" (torch's "Name (")
        name = type(self).__name__
        return Optimizer.__repr__(self).replace(
            f"{name} (", f"{name} [{type(self.inner_opt).__name__}](", 1
        )

    # -------------------------------------------------------------------------- step

    def _validate_all(self) -> None:
        # settings may have been edited since the last step: validated again when any of
        # the numbers this optimizer reads (or a group's parameters) changed
        keys = [k for k in self.defaults if k != "params"]
        seen = self.__dict__.setdefault("_validated", {})
        for group in self.param_groups:
            params = group["params"]
            settings = (len(params), *map(id, params), *keys, *map(group.get, keys))
            try:
                if seen.get(id(group)) == settings:
                    continue
            except (TypeError, RuntimeError):  # e.g. a tensor learning rate
                pass
            self._validate_group(group)
            seen[id(group)] = settings

    @no_grad
    def _apply_pre_step_transform_(self) -> None:
        transforms = (
            type(self)._pre_step_transform_ is not ParamTransformingOptimizer._pre_step_transform_
        )
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if transforms:
                    self._run_pre_step_transform(p, group)
                if group["grad_scale"] != 1.0:
                    p.grad.mul_(group["grad_scale"])
                if group["grad_bias"] != 0.0:
                    p.grad.add_(group["grad_bias"])

    def _run_pre_step_transform(self, p: Tensor, group: dict[str, Any]) -> None:
        """``_pre_step_transform_`` of ``p`` (reshaped), which must write into its gradient."""
        vp = _to_batch(p, group["param_ndim"])
        self._pre_step_transform_(vp, optim_group=group)
        if vp.grad is None or vp.grad.data_ptr() != p.grad.data_ptr():
            raise ValueError(
                f"{type(self).__name__}._pre_step_transform_ did not modify the gradient "
                "in-place; write into param.grad (e.g. param.grad.mul_(...)), do not "
                "replace it"
            )

    @no_grad
    def project(self) -> None:
        """Applies ``_post_step_transform_`` to every parameter, with or without a gradient.

        ``step()`` calls it after the inner step.
        """
        for group in self.param_groups:
            for p in group["params"]:
                self._post_step_transform_(_to_batch(p, group["param_ndim"]), optim_group=group)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Pre-step transform, ``InnerOpt.step(closure)``, then post-step transform.

        With a closure, the pre-step transform runs after the closure has computed the
        gradients (inside the inner optimizer's step). Optimizer step hooks (this one's
        and torch's global ones) run around it as for any torch optimizer.
        """
        from torch.optim import optimizer as torch_optimizer

        if (self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                or torch_optimizer._global_optimizer_pre_hooks
                or torch_optimizer._global_optimizer_post_hooks):  # fmt: skip
            return Optimizer.profile_hook_step(ParamTransformingOptimizer._step)(self, closure)
        return self._step(closure)

    # the inner optimizer's step is profiled and hooked by torch; this one calls the hooks
    # itself, and only where there are some (torch's wrapper costs more than a small step)
    step.hooked = True  # type: ignore[attr-defined]

    @no_grad
    def _step(self, closure: Callable[[], Any] | None = None) -> Any:
        self._validate_all()  # before anything changes: settings may have been edited
        if closure is not None:

            def transformed_closure():
                with torch.enable_grad():
                    loss = closure()
                self._apply_pre_step_transform_()
                return loss

            loss = self.inner_opt.step(transformed_closure)
        else:
            self._apply_pre_step_transform_()
            self.inner_opt.step()
            loss = None
        self.project()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return self.inner_opt.zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
