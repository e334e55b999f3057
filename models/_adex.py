"""The neuron of Clopath et al. (2010): AdEx with a 2 ms spike plateau and a depolarizing afterpotential.

A small ``nn.Module`` that follows snnTorch's calling convention: ``spk, mem = neuron(current)``
(state kept inside, as snnTorch's ``init_hidden=True``; ``neuron.mem`` holds the last
membrane potential). Units: mV, ms, pA, pF, nS.

    C du/dt = −g_L (u − E_L) + g_L Δ_T exp((u − V_T)/Δ_T) − w + z + I
    τ_w dw/dt = a (u − E_L) − w,   τ_z dz/dt = −z,   τ_VT dV_T/dt = −(V_T − V_T,rest)

What stands in for the AdEx spike (the paper models a spike as a 2 ms depolarization; the
authors' MATLAB code, ModelDB 144566 ``aEIF.m``, clamps it so): when u passes ``v_peak``
(20 mV, the authors' detection level) the neuron emits a spike and ``mem`` is held at
``v_spike`` = 29.4 mV for ``t_spike`` = 2 ms (w frozen), after which u is reset to
``v_reset`` = E_L + 21.1 mV (the authors' value after the spike), w += b, the afterpotential
current z is set to I_sp and the threshold V_T to V_T,max, from which the
afterdepolarization follows. The authors' code holds the second millisecond at 32.86 mV (the
integral of a finely resolved spike); here both are 29.4 mV, as in the paper's text.

u and w are integrated with forward Euler at ``dt`` (as the authors' code, dt = 1 ms); z and
V_T decay exactly. ``b``: the paper's table gives 0.0805 nA, but the authors' code adds 0.0805
in pA units (so does NEST's Clopath pairing example); 0.0805 pA is the default here because
it is what produced the paper's Fig. 2b (with 80.5 pA the high-frequency LTP is weaker).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Clopath et al. (2010) Table 1a (AdEx), cross-checked with the authors' aEIF.m
ADEX = {
    "c_pf": 281.0,
    "g_l_ns": 30.0,
    "e_l": -70.6,
    "delta_t": 2.0,
    "v_t_rest": -50.4,
    "v_t_max": -30.4,
    "tau_v_t": 50.0,
    "tau_w": 144.0,
    "a_ns": 4.0,
    "b_pa": 0.0805,
    "i_sp_pa": 400.0,
    "tau_z": 40.0,
    "v_peak": 20.0,
    "v_spike": 29.4,
    "t_spike": 2.0,
    "v_reset": -70.6 + 21.0984,
}


class AdEx(nn.Module):
    """AdEx neuron of Clopath et al. (2010) returning ``(spk, mem)`` per step.

    ``current``: input current in pA, ``[B, N]`` (or ``[N]``); the state starts at rest on
    the first call and after :meth:`reset`. Keyword arguments override :data:`ADEX`.

    >>> import torch
    >>> n = AdEx()
    >>> spk, mem = n(torch.tensor([[0.0, 5e4]], dtype=torch.float64))  # 50 nA, 1 ms into #2
    >>> spk.tolist(), mem.round(decimals=3).tolist()
    ([[0.0, 1.0]], [[-70.6, 29.4]])
    >>> n(torch.zeros(1, 2, dtype=torch.float64))[1][0, 1].item()  # the spike lasts 2 ms
    29.4
    """

    def __init__(self, *, dt: float = 1.0, **params: float) -> None:
        super().__init__()
        unknown = set(params) - set(ADEX)
        if unknown:
            raise TypeError(f"unknown AdEx parameter(s) {sorted(unknown)}; known: {sorted(ADEX)}")
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.p = {**ADEX, **params}
        self.dt = float(dt)
        self.plateau_steps = max(1, round(self.p["t_spike"] / self.dt))
        self.reset()

    def reset(self) -> None:
        """Back to rest (the state is created at the next call, in its shape)."""
        self.u = self.w = self.z = self.v_t = self.remaining = None
        self.mem: Tensor | None = None

    def _init_state(self, like: Tensor) -> None:
        p = self.p
        self.u = torch.full_like(like, p["e_l"])
        self.w = torch.zeros_like(like)
        self.z = torch.zeros_like(like)
        self.v_t = torch.full_like(like, p["v_t_rest"])
        self.remaining = torch.zeros_like(like, dtype=torch.long)

    def forward(self, current: Tensor) -> tuple[Tensor, Tensor]:
        p, dt = self.p, self.dt
        if self.u is None or self.u.shape != current.shape:
            self._init_state(current)
        u, w, z, v_t = self.u, self.w, self.z, self.v_t
        held = self.remaining > 0
        drive = p["g_l_ns"] * p["delta_t"] * torch.exp(((u - v_t) / p["delta_t"]).clamp(max=60.0))
        du = (-p["g_l_ns"] * (u - p["e_l"]) + drive - w + z + current) / p["c_pf"]
        dw = (p["a_ns"] * (u - p["e_l"]) - w) / p["tau_w"]
        u_new = torch.where(held, u, u + dt * du)
        w = torch.where(held, w, w + dt * dw)
        spk = (u_new > p["v_peak"]) & ~held
        in_spike = held | spk
        remaining = torch.where(spk, self.plateau_steps, self.remaining) - in_spike.long()
        mem = torch.where(in_spike, p["v_spike"], u_new)
        ending = in_spike & (remaining == 0)  # the spike's last step: reset and afterpotential
        self.u = torch.where(ending, p["v_reset"], mem)
        self.w = w + p["b_pa"] * ending
        self.z = torch.where(ending, p["i_sp_pa"], z * math.exp(-dt / p["tau_z"]))
        decayed = p["v_t_rest"] + (v_t - p["v_t_rest"]) * math.exp(-dt / p["tau_v_t"])
        self.v_t = torch.where(ending, p["v_t_max"], decayed)
        self.remaining = remaining
        self.mem = mem
        return spk.to(current.dtype), mem
