"""Slow, independent reference of Clopath et al. (2010)'s voltage-based STDP (no homeostasis).

Written from the paper's equations (Nat Neurosci 13:344, Methods), as explicit Python loops
over steps, samples and synapses in float64 with ``math.exp``:

    τx dx̄/dt = −x̄ + X(t)                 presynaptic trace (a spike adds 1/τx)
    τ₋ dū₋/dt = −ū₋ + u,  τ₊ dū₊/dt = −ū₊ + u   low-pass filters of the membrane potential u
    dw⁻/dt = A_LTD · X(t) · [ū₋ − θ₋]₊          depression at each presynaptic spike
    dw⁺/dt = A_LTP · x̄(t) · [u − θ₊]₊ · [ū₊ − θ₋]₊   potentiation
    Δw = w⁺ − w⁻  (the homeostatic A_LTD(ū̄) = A_LTD ū̄²/u_ref² is *not* included)

Discretization (the one the library's engine implements), exponential integrator per step,
d = exp(−dt/τ):

- x̄(t) = d_x·x̄(t−1) + s_pre(t)/τx, with this step's spike; x̄(−1) = 0;
- ū(t) = d·ū(t−1) + (1−d)·u(t) for ū₋ and ū₊; ū(−1) = u(0) (or ``init``);
- depression at step t: a_ltd · s_pre_j(t) · [ū₋_i(t−delay) − θ₋]₊;
- potentiation at step t: a_ltp · x̄_j(t) · [u_i(t) − θ₊]₊ · [ū₊_i(t−delay) − θ₋]₊ · dt;
- ``delay`` = 1 (default): the filtered voltage of the previous step, so a step's own voltage
  never enters its filtered factor; ū(t) for t < 0 is ū(−1). (The authors' MATLAB code,
  ModelDB 144566, reads the filters 4 steps of 1 ms back, NEST's ``delay_u_bars``.)
- the batch is reduced with the mean over samples.

The postsynaptic spikes do not enter the rule (the voltage carries them); ``post`` is taken
for the same call shape as ``rule.observe(pre, post, voltage=u)`` and checked.
"""

from __future__ import annotations

import math

import torch


def _initial(init, u: torch.Tensor, b: int, i: int) -> tuple[float, float]:
    """(ū₋(−1), ū₊(−1)) of sample b, neuron i."""
    if init is None:
        v = float(u[0, b, i])
        return v, v
    if isinstance(init, tuple):
        return _initial(init[0], u, b, i)[0], _initial(init[1], u, b, i)[0]
    if isinstance(init, torch.Tensor) and init.ndim > 0:
        v = float(torch.as_tensor(init, dtype=torch.float64).expand(u.shape[1:])[b, i])
        return v, v
    return float(init), float(init)


def clopath_reference(
    pre: torch.Tensor,
    post: torch.Tensor,
    u: torch.Tensor,
    *,
    a_ltd: float,
    a_ltp: float,
    theta_minus: float,
    theta_plus: float,
    tau_minus: float,
    tau_plus: float,
    tau_x: float,
    dt: float,
    init=None,
    delay: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ltp, ltd), each ``[N_out, N_in]`` float64, batch-mean, for ``pre [T, B, N_in]``,
    ``post [T, B, N_out]`` and the membrane potential ``u [T, B, N_out]`` (mV).

    ``init``: ū₋(−1) and ū₊(−1): a number, a ``[B, N_out]`` tensor, or a pair
    ``(ū₋, ū₊)`` of those; ``None`` starts both filters at ``u[0]``.
    """
    if pre.ndim != 3 or post.ndim != 3 or u.shape != post.shape or pre.shape[:2] != u.shape[:2]:
        raise ValueError(
            f"shapes pre {tuple(pre.shape)}, post {tuple(post.shape)}, u {tuple(u.shape)}"
        )
    if delay < 1:
        raise ValueError(f"delay must be >= 1 step, got {delay}")
    steps, batch, n_in = pre.shape
    n_out = u.shape[2]
    pre = pre.detach().to(torch.float64).cpu()
    u = u.detach().to(torch.float64).cpu()
    d_x = math.exp(-dt / tau_x)
    d_minus = math.exp(-dt / tau_minus)
    d_plus = math.exp(-dt / tau_plus)
    ltp = [[0.0] * n_in for _ in range(n_out)]
    ltd = [[0.0] * n_in for _ in range(n_out)]
    for b in range(batch):
        # presynaptic traces x̄_j(t), all steps
        xbar = [[0.0] * n_in for _ in range(steps)]
        for j in range(n_in):
            x = 0.0
            for t in range(steps):
                x = d_x * x + float(pre[t, b, j]) / tau_x
                xbar[t][j] = x
        for i in range(n_out):
            um0, up0 = _initial(init, u, b, i)
            u_minus, u_plus = [], []  # ū₋(t), ū₊(t) for t = 0 .. T-1
            um, up = um0, up0
            for t in range(steps):
                v = float(u[t, b, i])
                um = d_minus * um + (1.0 - d_minus) * v
                up = d_plus * up + (1.0 - d_plus) * v
                u_minus.append(um)
                u_plus.append(up)
            for t in range(steps):
                past_minus = u_minus[t - delay] if t - delay >= 0 else um0
                past_plus = u_plus[t - delay] if t - delay >= 0 else up0
                depol = max(float(u[t, b, i]) - theta_plus, 0.0)
                gate_minus = max(past_minus - theta_minus, 0.0)
                gate_plus = max(past_plus - theta_minus, 0.0)
                for j in range(n_in):
                    s = float(pre[t, b, j])
                    ltd[i][j] += a_ltd * s * gate_minus / batch
                    ltp[i][j] += a_ltp * xbar[t][j] * depol * gate_plus * dt / batch
    return torch.tensor(ltp, dtype=torch.float64), torch.tensor(ltd, dtype=torch.float64)
