"""Reward-modulated STDP: MSTDP and MSTDPET (Florian 2007), dopamine STDP (Izhikevich 2007).

The math is in :mod:`plasticity.functional.reward`; these classes add the third factor
to the STDP wiring: per-step rewards (``rule.reward(r)`` after a step's forward pass),
or dopamine release events, or a reward for the whole window (``rule.step(reward=R)``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..functional.correlate import weigh_rows
from ..functional.reward import ModulatedParams, ModulatedState, modulated_stdp
from ..functional.traces import scan_trace
from ..hooks import DenseSynapse
from .base import PlasticityRule, StepBuffer, check_amplitude, check_positive

__all__ = ["MSTDP", "MSTDPET", "DopamineSTDP"]


class _ModulatedSTDP(PlasticityRule):
    """Shared wiring: the per-step modulator buffer, ``reward()``, the eligibility state."""

    _hold_last = True

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
        self._mod = StepBuffer()

    # ------------------------------------------------------------------ the third factor

    def _rows(self, value: Any, what: str, batch: int | None = None) -> Tensor:
        """A modulator value as a ``[B]`` row on the weight's device (validated)."""
        w = self.weight
        if isinstance(value, Tensor):
            v = value.detach().to(device=w.device, dtype=w.dtype)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            v = torch.tensor(float(value), device=w.device, dtype=w.dtype)
        else:
            raise TypeError(
                f"{what} must be a number or a tensor of shape [B], got {type(value).__name__}"
            )
        batch = batch or self._batch or 1
        if v.ndim == 0:
            v = v.expand(batch)
        elif v.shape != (batch,):
            raise ValueError(
                f"{what} must be a number or have shape [{batch}] (one per sample), got {tuple(v.shape)}"
            )
        self._check_values(v, what)
        return v

    def _check_values(self, v: Tensor, what: str) -> None:
        """Finite, and (without ``per_sample``) equal across the samples (last dimension)."""
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{what} contains NaN or infinity")
        if not self.per_sample and v.shape[-1] > 1 and bool((v != v[..., :1]).any()):
            raise ValueError(
                f"{what} differs between samples; construct the rule with per_sample=True for per-sample rewards"
            )

    @torch.no_grad()
    def reward(self, value: float | Tensor) -> None:
        """Adds a reward to the step just simulated (call it after that step's forward).

        ``value``: a number (every sample) or a ``[B]`` tensor (per sample, needs
        ``per_sample=True`` when the values differ). Steps without a reward have 0.
        """
        if self._post.n == 0:
            raise RuntimeError(
                "reward() belongs to the step just simulated, but no step is buffered: call it after the forward pass"
            )
        assert self._mod is not None and self._mod.data is not None
        if type(value) in (float, int):  # the common case, every step: no tensor, no sync
            if not math.isfinite(value):
                raise ValueError("`reward` contains NaN or infinity")
            self._mod.data[self._post.n - 1].add_(value)
            return
        row = self._rows(value, "`reward`")
        self._mod.data[self._post.n - 1].add_(row)

    @torch.no_grad()
    def observe(self, pre: Tensor, post: Tensor, reward: Any = None) -> None:  # type: ignore[override]
        """Learns from whole sequences: ``pre`` ``[T, B, *in]``, ``post`` ``[T, B, *out]``,
        ``reward`` a number, ``[T]`` or ``[T, B]`` (per step and sample; default 0)."""
        w = self.weight
        r: Tensor | None = None
        if reward is not None:
            steps, batch = self._adapter.pre_steps(pre).shape[:2]
            r = torch.as_tensor(reward, device=w.device, dtype=w.dtype)
            if r.ndim == 0:
                r = r.expand(steps)
            if r.ndim == 1 and r.shape[0] == steps:
                r = r[:, None].expand(steps, batch)
            if r.shape != (steps, batch):
                raise ValueError(
                    f"`reward` must be a number, [T] or [T, B]; got {tuple(r.shape)} for T={steps}, B={batch}"
                )
            self._check_values(r, "`reward`")
        start = self._post.n
        steps = self._observe(pre, post)
        if r is not None:
            self._mod.data[start : start + steps].add_(r)  # type: ignore[union-attr]
        self._maybe_flush()

    # ------------------------------------------------------------------------ kernel

    def _initial_state(self, pre: Tensor, post: Tensor) -> ModulatedState:
        w = self.weight
        z = torch.zeros(
            (pre.shape[0], *w.shape) if self.per_sample else w.shape, dtype=w.dtype, device=w.device
        )
        return ModulatedState(torch.zeros_like(pre), torch.zeros_like(post), z)

    def _per_sample_correlate(self):
        if isinstance(self._adapter, DenseSynapse):

            def run(
                post_side: Tensor, pre_side: Tensor, *_: Any, row_weight: Tensor | None = None
            ) -> Tensor:
                if row_weight is not None:
                    post_side = weigh_rows(post_side, row_weight)
                return torch.bmm(post_side.permute(1, 2, 0), pre_side.permute(1, 0, 2))

            return run
        dense = self._adapter.correlate({}, False)

        def run_conv(
            post_side: Tensor, pre_side: Tensor, *_: Any, row_weight: Tensor | None = None
        ) -> Tensor:
            if row_weight is not None:
                post_side = weigh_rows(post_side, row_weight)
            return torch.stack(
                [
                    dense(post_side[:, b : b + 1], pre_side[:, b : b + 1])
                    for b in range(post_side.shape[1])
                ]
            )

        return run_conv

    def _params(self, decay_e: float | None, kappa: float) -> ModulatedParams:
        return ModulatedParams(
            self.a_plus,
            self.a_minus,
            self._decay(self.tau_plus),
            self._decay(self.tau_minus),
            self.trace,
            self.coincident,
            self._scale,
            self.gamma,
            decay_e,
            kappa,
            self.per_sample,
        )

    def _apply_window_term(self, term: Tensor) -> None:
        """Adds a signed update (already scaled) to the accumulator, split by sign."""
        self.accumulator._append("pos", term.clamp_min(0), owned=True)
        self.accumulator._append("neg", (-term).clamp_min(0), owned=True)


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
        super().__init__(synapse, neuron, **kwargs)
        self.window_reward = bool(window_reward)
        self._window: list[Tensor] | None = None

    def _run(self, pre, post, state, correlate, kernels, modulator=None):
        st = ModulatedState(*state)
        pos, neg, new = modulated_stdp(pre, post, modulator, st, self._params(None, 1.0), correlate)
        if self.window_reward:
            ones = torch.ones(pre.shape[:2], dtype=pre.dtype, device=pre.device)
            # the window's plain STDP signal, sum over samples (or per sample)
            corr = self._per_sample_correlate() if self.per_sample else correlate
            zp, zm, _ = modulated_stdp(
                pre,
                post,
                ones,
                st,
                self._params(None, 1.0)._replace(gamma=1.0, scale=1.0, per_sample=False),
                corr,
            )
            if self._window is None:
                self._window = [zp, zm]
            else:
                self._window[0].add_(zp)
                self._window[1].add_(zm)
        return pos, neg, new

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state["window"] = None if self._window is None else [z.clone() for z in self._window]
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        window = state.get("window") if isinstance(state, dict) else None
        if window is not None and not self.window_reward:
            raise ValueError(
                "MSTDP.load_state_dict: the saved window tracks the STDP signal for step(reward=...)"
                "; build the rule with window_reward=True to load it"
            )
        super().set_extra_state(state)
        w = self.weight
        self._window = (
            None
            if window is None
            else [z.to(device=w.device, dtype=w.dtype).clone() for z in window]
        )

    @torch.no_grad()
    def step(self, reward: float | Tensor | None = None) -> Tensor | None:  # type: ignore[override]
        """Ends the window; with ``reward`` (``window_reward=True``) also applies
        :math:`\\gamma R \\sum_t \\zeta(t)` of the window."""
        if reward is not None and not self.window_reward:
            raise ValueError("step(reward=...) needs the rule built with window_reward=True")
        r = (
            None if reward is None else self._rows(reward, "`reward`")
        )  # validated before any change
        self.flush()
        if r is not None:
            if self._window is not None:
                plus, minus = self._window
                if plus.ndim == self.weight.ndim + 1:  # per sample
                    rw = r.view(-1, *([1] * self.weight.ndim))
                    term = ((plus - minus) * rw).sum(0)
                else:
                    term = (plus - minus) * r[0]
                self._apply_window_term(term.mul_(self.gamma * self._scale))
        self._window = None
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
        super().__init__(synapse, neuron, extra_time_constants={"tau_e": tau_e}, **kwargs)
        self.tau_e = float(tau_e)

    def _kappa(self) -> float:
        return 1.0 / self.tau_e

    def _modulator(self, modulator: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        return modulator * self.dt, state

    def _run(self, pre, post, state, correlate, kernels, modulator=None):
        drive, state = self._modulator(modulator, state)
        params = self._params(self._decay(self.tau_e), self._kappa())
        per_sample = self._per_sample_correlate() if self.per_sample else None
        pos, neg, new = modulated_stdp(
            pre, post, drive, ModulatedState(*state[:3]), params, correlate, per_sample
        )
        return pos, neg, (*new, *state[3:])

    @torch.no_grad()
    def step(self, reward: float | Tensor | None = None) -> Tensor | None:  # type: ignore[override]
        """Ends the window; with ``reward`` also applies :math:`\\gamma R\\,z(T)\\,dt`."""
        r = (
            None if reward is None else self._rows(reward, "`reward`")
        )  # validated before any change
        self.flush()
        if r is not None and self._state is not None:
            z = self._state[2]
            if self.per_sample:
                term = (z * r.view(-1, *([1] * (z.ndim - 1)))).sum(0)
            else:
                term = z * r[0]
            self._apply_window_term(term * (self.gamma * self._scale * self.dt))
        return super().step()


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

    def _kappa(self) -> float:
        return 1.0

    def release(self, amount: float | Tensor) -> None:
        """Dopamine released at the step just simulated (a number, or ``[B]``)."""
        self.reward(amount)

    def _initial_state(self, pre: Tensor, post: Tensor) -> tuple:
        base = super()._initial_state(pre, post)
        return (*base, torch.zeros(pre.shape[0], dtype=pre.dtype, device=pre.device))

    def _modulator(self, modulator: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        # release events -> concentration d(t) (exact decay), carried across chunks
        d = scan_trace(modulator, state[3], self._decay(self.tau_d))
        return d * self.dt, (*state[:3], d[-1].clone())

    @property
    def dopamine(self) -> Tensor | None:
        """The dopamine concentration after the last processed step (``[B]``)."""
        return None if self._state is None else self._state[3]

    @torch.no_grad()
    def step(self, reward: float | Tensor | None = None) -> Tensor | None:  # type: ignore[override]
        if reward is not None:
            raise ValueError("DopamineSTDP takes dopamine through release(), not step(reward=...)")
        return super().step()
