r"""Reward-modulated STDP: MSTDP and MSTDPET (Florian 2007), dopamine STDP (Izhikevich 2007).

Declarations in the rule language: the pair-STDP signal of a step,
:math:`\zeta = A_+\,s^\text{post} x - A_-\,y\,s^\text{pre}` (the traces and
``coincident`` forms of :class:`~plasticity.STDP`), times the third factor
(``modulator``: ``rule.reward(r)`` after a step's forward pass, or dopamine release
events), directly (MSTDP) or through an eligibility trace (MSTDPET, dopamine STDP); or
times a reward for the whole window (``rule.step(reward=R)``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._grad import no_grad
from ..language import Terms, eligibility, modulator, post, pre
from .base import PlasticityRule
from .checks import check_amplitude, check_positive
from .stdp import pair_reads

__all__ = ["MSTDP", "MSTDPET", "DopamineSTDP"]


class _ModulatedSTDP(PlasticityRule):
    """Shared parameters: pair STDP's, ``gamma`` and ``per_sample``."""

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        a_plus: float,
        a_minus: float,
        tau_plus: float,
        tau_minus: float,
        gamma: float = 1.0,
        per_sample: bool = False,
        extra_time_constants: dict[str, float] | None = None,
        **options: Any,
    ) -> None:
        a_plus, a_minus = check_amplitude("a_plus", a_plus), check_amplitude("a_minus", a_minus)
        gamma = check_amplitude("gamma", gamma)
        taus = {"tau_plus": tau_plus, "tau_minus": tau_minus, **(extra_time_constants or {})}
        for name, tau in taus.items():
            check_positive(name, tau)
        if not isinstance(per_sample, bool):
            raise TypeError(f"`per_sample` must be a bool, got {per_sample!r}")
        super().__init__(synapse, neuron, time_constants=taus, **options)
        self.a_plus, self.a_minus, self.gamma = a_plus, a_minus, gamma
        self.tau_plus, self.tau_minus = float(tau_plus), float(tau_minus)
        self.per_sample = per_sample

    def _zeta(self) -> Terms:
        """The pair-STDP signal of a step, :math:`\\zeta = A_+ s^\\text{post} x - A_- y s^\\text{pre}`."""
        x, y = pair_reads(self.tau_plus, self.tau_minus, self.trace, self.coincident)
        return self.a_plus * post.spike * x - self.a_minus * y * pre.spike

    def _apply_window_term(self, term: Tensor) -> None:
        """Adds a signed update (already scaled) to the accumulator, split by sign, into
        the window's latest append (it is a sum over the window's steps: a mean per step
        divides it by their number too)."""
        self.accumulator.add_("pos", term.clamp_min(0), merge=True)
        self.accumulator.add_("neg", (-term).clamp_min(0), merge=True)

    def _window_reward(self, value: Tensor, r: Tensor, factor: float) -> None:
        """Applies ``factor · R · value`` (a weight-shaped sum, or one per sample)."""
        if value.ndim == self.weight.ndim + 1:  # per sample
            term = (value * r.view(-1, *([1] * self.weight.ndim))).sum(0)
        else:
            term = value * r[0]
        self._apply_window_term(term.mul_(factor))


class MSTDP(_ModulatedSTDP):
    r"""Reward-modulated STDP (Florian 2007): :math:`\Delta w = \gamma \sum_t r(t)\,\zeta(t)`.

    :math:`\zeta(t)` is the pair-STDP signal of step :math:`t` (potentiation
    :math:`A_+ s^\text{post} x` minus depression :math:`A_- y\,s^\text{pre}`, with the traces
    and ``coincident`` policy of :class:`~plasticity.STDP`). The reward of step :math:`t`
    (``rule.reward(r)`` after that step's forward pass) multiplies the signal of the same
    step. Positive reward potentiates with :math:`r\zeta^+` and depresses with
    :math:`r\zeta^-`; negative reward swaps them, so the accumulator's bounds apply as for
    STDP.

    Args:
        synapse, neuron, a_plus, a_minus, tau_plus, tau_minus: as for :class:`~plasticity.STDP`.
        gamma: learning rate :math:`\gamma` (>= 0).
        per_sample: rewards may differ between the samples of a batch.
        window_reward: also track :math:`\sum_t \zeta(t)` so that ``step(reward=R)``
            applies :math:`\gamma R \sum_t \zeta(t)` (episodic tasks; one reward per window).
        **options: ``dt``, ``trace``, ``coincident``, ``batch_reduction``, ``decay``,
            ``chunk_size``, ``kernel``, ``spikes`` as for :class:`~plasticity.STDP`.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(4, 2, bias=False), snn.Leaky(beta=0.5)
        >>> rule = pl.MSTDP(fc, lif, a_plus=1.0, a_minus=1.0, tau_plus=5.0, tau_minus=5.0)
        >>> pre = torch.tensor([[[1.0, 0, 0, 0]], [[0.0, 0, 0, 0]]])
        >>> post = torch.tensor([[[0.0, 0]], [[1.0, 0]]])
        >>> rule.observe(pre, post, reward=[0.0, 2.0])   # reward at the post spike
        >>> round(float(rule.step()[0, 0]), 4)             # 2 * exp(-1/5)
        1.6375
    """

    def __init__(
        self, synapse: nn.Module, neuron: nn.Module, *, window_reward: bool = False, **kwargs: Any
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.MSTDP)``."""
        super().__init__(synapse, neuron, **kwargs)
        self.window_reward = bool(window_reward)
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        x, y = pair_reads(self.tau_plus, self.tau_minus, self.trace, self.coincident)
        out: dict[str, Any] = {
            "pos": self.gamma * modulator * (self.a_plus * post.spike * x),
            "neg": self.gamma * modulator * (self.a_minus * y * pre.spike),
        }
        if self.window_reward:  # Σ_t ζ(t) of the window, for step(reward=R)
            out["extra"] = {"window": (self._zeta(), self.per_sample)}
        return out

    @no_grad
    def step(self, reward: float | Tensor | None = None) -> Tensor | None:  # type: ignore[override]
        """Ends the window; with ``reward`` (``window_reward=True``) also applies
        :math:`\\gamma R \\sum_t \\zeta(t)` of the window."""
        if reward is not None and not self.window_reward:
            raise ValueError("step(reward=...) needs the rule built with window_reward=True")
        r = (
            None if reward is None else self._inputs._rows(reward, "`reward`")
        )  # validated before any change
        self.flush()
        window = self._extras.get("window")
        if r is not None and window is not None:
            self._window_reward(window, r, self.gamma * self._scale)
        return super().step()


class MSTDPET(_ModulatedSTDP):
    r"""Reward-modulated STDP with an eligibility trace (Florian 2007).

    .. math::
        z(t) = e^{-dt/\tau_e} z(t-1) + \zeta(t)/\tau_e, \qquad
        \Delta w = \gamma \sum_t r(t)\,z(t)\,dt

    (:math:`dz/dt = -z/\tau_e + \zeta/\tau_e`, decayed exactly). The reward of step
    :math:`t` multiplies :math:`z(t)`, which includes the spikes of step :math:`t`. The
    eligibility continues across windows. ``step(reward=R)`` applies
    :math:`\gamma R\,z(T)\,dt` for a reward that comes once, at the end of a window.

    The eligibility is one weight-shaped tensor, or ``[B, *weight]`` with
    ``per_sample=True`` (rewards that differ between samples).

    Args:
        tau_e: eligibility time constant (units of ``dt``).
        others: as for :class:`MSTDP`.

    Example:
        A reward after each step; the update follows the eligibility's sign:

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(4, 2, bias=False), snn.Leaky(beta=0.5)
        >>> rule = pl.MSTDPET(fc, lif, a_plus=1.0, a_minus=1.0, tau_plus=5.0, tau_minus=5.0,
        ...                   tau_e=20.0)
        >>> pre = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
        >>> post = torch.tensor([[0.0, 0], [1.0, 0]])  # neuron 0 fires one step after input 0
        >>> rule.observe(pre.view(2, 1, 4), post.view(2, 1, 2), reward=1.0)
        >>> dw = rule.step()
        >>> bool(dw[0, 0] > 0), float(dw[1].abs().sum())
        (True, 0.0)
    """

    def __init__(
        self, synapse: nn.Module, neuron: nn.Module, *, tau_e: float, **kwargs: Any
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.MSTDPET)``."""
        super().__init__(synapse, neuron, extra_time_constants={"tau_e": tau_e}, **kwargs)
        self.tau_e = float(tau_e)
        if type(self) is MSTDPET:  # subclasses finish after setting their own parameters
            self._finish_init()

    def _eligibility(self):
        """Florian's :math:`z = e^{-dt/\\tau_e} z + \\zeta/\\tau_e`."""
        return eligibility(self._zeta() / self.tau_e, self.tau_e, per_sample=self.per_sample)

    def declaration(self) -> dict[str, Any]:
        return {"pos": self.gamma * self.dt * modulator * self._eligibility()}

    @no_grad
    def step(self, reward: float | Tensor | None = None) -> Tensor | None:  # type: ignore[override]
        """Ends the window; with ``reward`` also applies :math:`\\gamma R\\,z(T)\\,dt`."""
        r = (
            None if reward is None else self._inputs._rows(reward, "`reward`")
        )  # validated before any change
        self.flush()
        z = self.eligibility
        if r is not None and z is not None:
            self._window_reward(z.clone(), r, self.gamma * self._scale * self.dt)
        return super().step()

    @property
    def eligibility(self) -> Tensor | None:
        """The eligibility trace after the last processed step (``[*weight]``, or
        ``[B, *weight]`` per sample)."""
        return self.state_tensor(self._eligibility())


class DopamineSTDP(MSTDPET):
    r"""Distal-reward dopamine-modulated STDP (Izhikevich 2007).

    .. math::
        \dot c = -c/\tau_c + \mathrm{STDP}(\Delta t)\,\delta(t - t_\text{pre/post}), \quad
        \dot d = -d/\tau_d + \mathrm{DA}(t), \quad
        \dot w = c\,d

    ``c`` is the synaptic eligibility (pair STDP increments, decay :math:`\tau_c`), ``d`` the
    extracellular dopamine concentration; ``rule.release(amount)`` adds a release event at
    the step just simulated. Per step :math:`\Delta w = c(t)\,d(t)\,dt` with exact decays.
    Defaults are the paper's: :math:`\tau_c = 1` s, :math:`\tau_d = 200` ms,
    :math:`A_+ = 1`, :math:`A_- = 1.5`, :math:`\tau_\pm = 20` ms (``dt`` in ms).

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> rule = pl.DopamineSTDP(torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.9))
        >>> rule.tau_c, rule.tau_d, rule.a_minus
        (1000.0, 200.0, 1.5)
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        a_plus: float = 1.0,
        a_minus: float = 1.5,
        tau_plus: float = 20.0,
        tau_minus: float = 20.0,
        tau_c: float = 1000.0,
        tau_d: float = 200.0,
        **kwargs: Any,
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.DopamineSTDP)``."""
        check_positive("tau_d", tau_d)
        super().__init__(
            synapse,
            neuron,
            a_plus=a_plus,
            a_minus=a_minus,
            tau_plus=tau_plus,
            tau_minus=tau_minus,
            tau_e=tau_c,
            **kwargs,
        )
        self.tau_c, self.tau_d = float(tau_c), float(tau_d)
        self._finish_init()

    def _eligibility(self):
        """Izhikevich's :math:`c = e^{-dt/\\tau_c} c + \\zeta`."""
        return eligibility(self._zeta(), self.tau_e, per_sample=self.per_sample)

    def declaration(self) -> dict[str, Any]:
        # d(t) = e^(-dt/tau_d) d(t-1) + release(t): the modulator's trace
        return {"pos": self.dt * modulator.trace(self.tau_d) * self._eligibility()}

    def release(self, amount: float | Tensor) -> None:
        """Dopamine released at the step just simulated (a number, or ``[B]``)."""
        self.reward(amount)

    @property
    def dopamine(self) -> Tensor | None:
        """The dopamine concentration after the last processed step (``[B]``)."""
        return self.state_tensor(modulator.trace(self.tau_d))

    @no_grad
    def step(self, reward: float | Tensor | None = None) -> Tensor | None:  # type: ignore[override]
        if reward is not None:
            raise ValueError("DopamineSTDP takes dopamine through release(), not step(reward=...)")
        return super().step()
