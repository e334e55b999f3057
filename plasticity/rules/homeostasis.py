r"""Homeostasis: an adaptive threshold for snnTorch neurons, and synaptic scaling.

* :class:`AdaptiveThreshold` (Diehl & Cook 2015): every spike raises the neuron's own
  threshold by :math:`\theta_+`, which decays back with :math:`\tau_\theta`; it works through
  snnTorch's ``threshold`` (per neuron), so a neuron that fires a lot fires less.
* :class:`SynapticScaling` (Turrigiano 1998, van Rossum et al. 2000): every incoming weight of
  a post neuron is scaled toward a target rate,
  :math:`\Delta w_{ij} = \eta \sum_t (\nu^* - \nu_i(t))\,w_{ij}\,dt`, with the filtered rate
  :math:`\nu_i` (trace / :math:`\tau_r`, batch mean). It is a rule: it feeds an Accumulator
  and ``step()`` writes :math:`-\Delta w` to the gradient, so bounds and the clamped
  optimizer apply as for STDP.

Weight normalization (Diehl & Cook's L1 norm per post neuron) is
:class:`~plasticity.optim.L1NormalizedParameterOptimizer` or
:func:`~plasticity.optim.normalize_`, per step or per sample: step it when you want it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor, nn

from .._grad import eagerly, in_backward, no_grad, run_eagerly, traced
from ..hooks import output_spikes
from ..language import post, weight
from .base import PlasticityRule
from .checks import check_amplitude, check_positive

__all__ = ["AdaptiveThreshold", "SynapticScaling"]


def _state_dict_post_hook(module: nn.Module, hook: Any) -> Any:
    """``module.register_state_dict_post_hook(hook)`` (public since torch 2.5; before it,
    the private form, which also lets a hook change the dict in place)."""
    call = functools.partial(hook)  # torch marks the hook with an attribute; a copy of
    # the module copies the partial with it (a plain closure would stay the original's)
    register = getattr(module, "register_state_dict_post_hook", None)
    return register(call) if register is not None else module._register_state_dict_hook(call)


class AdaptiveThreshold(nn.Module):
    r"""Adaptive threshold for an snnTorch neuron: :math:`\theta \leftarrow
    e^{-dt/\tau_\theta}\,\theta + \theta_+ \langle s\rangle_\text{batch}` after every step,
    and ``neuron.threshold = base + θ`` (one value per neuron).

    The step's spikes raise the threshold used from the next step on. ``θ`` is shared by
    the samples of a batch (batch mean of the spikes). Adaptation follows ``train()`` /
    ``eval()`` of this module and of the neuron; ``detach()`` removes the hook and restores
    the base threshold. One per neuron: a second is a ``ValueError`` (it would take the
    adapted threshold as its base).

    Checkpoints: while the module is attached, the neuron's ``state_dict`` holds its base
    threshold (so a fresh neuron loads it) and the adaptation ``θ`` is this module's
    state. Save both; load them in either order, or build the module after loading the
    model: the neuron runs with ``base + θ`` again.

    Args:
        neuron: a spiking module with a ``threshold`` (any snnTorch neuron).
        theta_plus: increase per spike (>= 0).
        tau_theta: decay time constant in units of ``dt`` (> 0).
        dt: simulation step.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> lif = snn.Leaky(beta=0.9, init_hidden=True)
        >>> adapt = pl.AdaptiveThreshold(lif, theta_plus=0.05, tau_theta=1e4)
        >>> for _ in range(20):
        ...     _ = lif(torch.full((1, 3), 0.5))
        >>> bool((lif.threshold > 1.0).all())
        True
    """

    def __init__(
        self, neuron: nn.Module, *, theta_plus: float, tau_theta: float, dt: float = 1.0
    ) -> None:
        """Builds the module and registers its hook; arguments: ``help(plasticity.AdaptiveThreshold)``."""
        if not isinstance(neuron, nn.Module) or not isinstance(
            getattr(neuron, "threshold", None), Tensor
        ):
            raise TypeError(
                "`neuron` must be a spiking module with a `threshold` tensor (an snnTorch neuron)"
            )
        theta_plus = check_amplitude("theta_plus", theta_plus)
        tau_theta, dt = check_positive("tau_theta", tau_theta), check_positive("dt", dt)
        for hook in neuron._forward_hooks.values():
            if isinstance(getattr(hook, "__self__", None), AdaptiveThreshold):
                raise ValueError(
                    f"the neuron ({type(neuron).__name__}) already has an AdaptiveThreshold "
                    f"({hook.__self__.extra_repr()}); a second one would take the adapted "
                    "threshold as its base. Use one per neuron (call detach() on the first "
                    "to replace it)"
                )
        super().__init__()
        self.theta_plus, self.tau_theta, self.dt = theta_plus, tau_theta, dt
        self.__dict__["_neuron"] = neuron
        self.register_buffer("base", neuron.threshold.detach().clone())
        self.register_buffer("theta", None)
        self._incoming: Tensor | None = None  # the neuron's threshold being loaded
        run_eagerly(AdaptiveThreshold, "_before_step", "_on_step")  # outside torch.compile graphs
        # the neuron's state_dict holds its base threshold (its own shape, so that a fresh
        # neuron loads it); the adaptation is this module's state
        self._handles = [
            neuron.register_forward_pre_hook(self._before_step),
            neuron.register_forward_hook(self._on_step),
            _state_dict_post_hook(neuron, self._save_neuron_threshold),
            neuron.register_load_state_dict_pre_hook(self._before_neuron_load),
            neuron.register_load_state_dict_post_hook(self._after_neuron_load),
        ]

    @property
    def neuron(self) -> nn.Module:
        return self._neuron

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered (until :meth:`detach`; a copy of the neuron
        and this module, by ``copy.deepcopy`` or pickle, is attached as the original)."""
        return bool(self._handles)

    def _before_step(self, module: nn.Module, args: tuple) -> None:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(AdaptiveThreshold._before_step, self, module, args)
        if self.training and module.training and in_backward():
            raise RuntimeError(
                "AdaptiveThreshold: the neuron's forward pass is being recomputed during "
                "backward (activation checkpointing, torch.utils.checkpoint); its threshold "
                "has adapted since that step, so the recomputation would not match the "
                "forward pass. Keep the neuron with an adaptive threshold outside the "
                "checkpointed part of the network"
            )

    @no_grad
    def _on_step(self, module: nn.Module, args: tuple, output: Any) -> None:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(AdaptiveThreshold._on_step, self, module, args, output)
        if not (self.training and module.training):
            return
        s = output_spikes(output, f"neuron ({type(module).__name__})").detach()
        rate = s.mean(0) if s.ndim > 1 else s
        decay = math.exp(-self.dt / self.tau_theta)
        if self.theta is None or self.theta.shape != rate.shape:
            self.theta = torch.zeros_like(rate, dtype=self.base.dtype)
        self.theta.mul_(decay).add_(rate.to(self.theta.dtype), alpha=self.theta_plus)
        self._write(self.base + self.theta)

    def _write(self, value: Tensor) -> None:
        threshold = self._neuron.threshold
        if isinstance(threshold, nn.Parameter):
            threshold.data = value.to(threshold.dtype)
        else:
            self._neuron.threshold = value.to(threshold.dtype)

    @no_grad
    def reset(self) -> None:
        """Forgets the adaptation: ``θ = 0`` and the base threshold again."""
        self.theta = None
        self._write(self.base.clone())

    def detach(self) -> None:
        """Removes the hooks and restores the base threshold."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.reset()

    # ------------------------------------------------------------------ checkpoints

    def _save_neuron_threshold(self, neuron: nn.Module, state: dict, prefix: str, meta) -> None:
        key = prefix + "threshold"
        if key in state:
            state[key] = self.base.detach().to(neuron.threshold.dtype).clone()

    def _before_neuron_load(self, neuron: nn.Module, state: dict, prefix: str, *args) -> None:
        incoming = state.get(prefix + "threshold")
        self._incoming = None
        if isinstance(incoming, Tensor):
            self._incoming = incoming.detach()
            if neuron.threshold.shape != incoming.shape:  # adapted [N] -> the saved base
                self._write(self.base.new_empty(incoming.shape))

    @no_grad
    def _after_neuron_load(self, neuron: nn.Module, incompatible_keys: Any) -> None:
        if self._incoming is not None:  # the loaded threshold is the base
            self.base = self._incoming.to(device=self.base.device, dtype=self.base.dtype).clone()
            self._incoming = None
            self._write(self.base if self.theta is None else self.base + self.theta)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # theta exists only once the neuron has stepped, on either side; base takes the
        # saved shape (the neuron's own)
        saved = {name: state_dict.get(prefix + name) for name in ("base", "theta")}
        if all(v is None or isinstance(v, Tensor) for v in saved.values()):
            if saved["theta"] is None:
                self.theta = None
            elif self.theta is None or self.theta.shape != saved["theta"].shape:
                self.theta = self.base.new_empty(saved["theta"].shape)
            if saved["base"] is not None and saved["base"].shape != self.base.shape:
                self.base = self.base.new_empty(saved["base"].shape)
        errors = len(error_msgs)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if len(error_msgs) == errors:
            with torch.no_grad():
                self._write(self.base if self.theta is None else self.base + self.theta)

    def extra_repr(self) -> str:
        return f"theta_plus={self.theta_plus}, tau_theta={self.tau_theta}, dt={self.dt}"


class SynapticScaling(PlasticityRule):
    r"""Multiplicative synaptic scaling toward a target rate.

    .. math:: \Delta w_{ij} = \eta \sum_t \left(\nu^* - \nu_i(t)\right) w_{ij}\,dt,
        \qquad \nu_i(t) = x_i(t)/\tau_r

    with the postsynaptic trace :math:`x_i` (exact decay, batch mean). Scaling up goes to
    ``pos``, scaling down to ``neg`` (elementwise by the sign of the update).

    Args:
        synapse, neuron: as for :class:`~plasticity.STDP`.
        target_rate: :math:`\nu^*` in spikes per unit of ``dt`` (e.g. 0.01 = 10 Hz at 1 ms).
        tau_rate: rate filter time constant (units of ``dt``).
        eta: learning rate (>= 0).
        **options: ``dt``, ``batch_reduction``, ``chunk_size``, ... as for STDP.

    Example:
        A neuron firing every step, far above a 5 % target, has its weights scaled down:

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(3, 1, bias=False), snn.Leaky(beta=0.5)
        >>> torch.nn.init.constant_(fc.weight, 0.5)
        Parameter containing:
        tensor([[0.5000, 0.5000, 0.5000]], requires_grad=True)
        >>> rule = pl.SynapticScaling(fc, lif, target_rate=0.05, tau_rate=10.0, eta=0.01)
        >>> rule.observe(torch.ones(50, 1, 3), torch.ones(50, 1, 1))
        >>> bool((rule.step() < 0).all())
        True
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        target_rate: float,
        tau_rate: float,
        eta: float,
        **options: Any,
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.SynapticScaling)``."""
        target_rate, eta = check_amplitude("target_rate", target_rate), check_amplitude("eta", eta)
        options.setdefault("spikes", "graded")  # the presynaptic side is not used: any input
        super().__init__(synapse, neuron, time_constants={"tau_rate": tau_rate}, **options)
        self.target_rate, self.tau_rate, self.eta = target_rate, float(tau_rate), eta
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        # per post neuron (conv: per channel, summed over positions as weight sharing does)
        gap = self.target_rate - post.rate(self.tau_rate)
        return {"pos": self.eta * self.dt * gap * weight}

    @property
    def rate(self) -> Tensor | None:
        """The filtered postsynaptic rate after the last processed step (``[B, *out]``)."""
        trace = self.state_tensor(post.trace(self.tau_rate))
        return None if trace is None else trace / self.tau_rate
