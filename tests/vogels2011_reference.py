"""docs/vogels2011_brian2.md in a float64 numpy loop: Brian2's ``Vogels_et_al_2011.py``.

Written from the note, not from our engine: one forward-Euler step of v, g_ampa, g_gaba per
dt (v frozen while refractory), threshold, the synaptic pathways of the step (every
``on_pre``, then the iSTDP ``on_post``), reset: Brian2's schedule. The per-synapse
event-driven traces of the example equal per-neuron traces here (they decay exactly and
add 1 per spike, so a synapse's trace is its neuron's), and a synapse sees at most one
pre and one post event per step, so the step's events are applied as whole arrays. The
connectivity is drawn with numpy (the same distribution as Brian2's ``connect(p=...)``,
not the same draws), so what can be compared with Brian2's runs is statistics.
"""

from __future__ import annotations

import numpy as np

# the example's parameters (docs/vogels2011_brian2.md §2-§5), SI units
DT = 1e-4
G_L, E_L, E_INH, V_TH, C_M, I_BG = 10e-9, -60e-3, -80e-3, -50e-3, 200e-12, 200e-12
TAU_AMPA, TAU_GABA, TAU_STDP, T_REF_STEPS = 5e-3, 10e-3, 20e-3, 50
W_EXC, W_II = 0.3e-9, 3e-9
ALPHA, G_MAX, ETA, W0 = 2 * 3.0 * TAU_STDP, 100.0, 1e-2, 1e-10


def run(ne: int = 800, eps: float = 0.2, seconds: float = 2.0, seed: int = 0) -> dict:
    """Simulate; η = 0 for t < 1 s, then 10⁻². Returns E rate per 100 ms (Hz), the mean I→E
    weight (nS) at the end of every 100 ms, and the I rate per 100 ms."""
    ni = ne // 4
    n = ne + ni
    rng = np.random.default_rng(seed)
    c_e = rng.random((n, ne)) < eps  # E -> every neuron, [post, pre]; autapses allowed
    c_ii = rng.random((ni, ni)) < eps  # I -> I
    c_ie = rng.random((ne, ni)) < eps  # I -> E, plastic
    w = np.where(c_ie, W0, 0.0)  # nS; absent synapses stay 0 (updates are masked)
    v = np.zeros(n)  # Brian2's default: 0 mV, above threshold
    g_ampa, g_gaba = np.zeros(n), np.zeros(n)
    last = np.full(n, -(10**9))  # step of the last spike
    x_pre, x_post = np.zeros(ni), np.zeros(ne)  # iSTDP traces (I neurons, E neurons)
    decay = np.exp(-DT / TAU_STDP)
    steps_per_bin = round(0.1 / DT)
    n_bins = round(seconds / 0.1)
    rate_e, rate_i, w_mean = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
    for step in range(n_bins * steps_per_bin):
        eta = 0.0 if step < round(1.0 / DT) else ETA
        # groups: refractoriness, then Euler from the old values
        free = (step - last) >= T_REF_STEPS
        dv = (-G_L * (v - E_L) - g_ampa * v - g_gaba * (v - E_INH) + I_BG) / C_M
        v = np.where(free, v + DT * dv, v)
        g_ampa *= 1.0 - DT / TAU_AMPA
        g_gaba *= 1.0 - DT / TAU_GABA
        # thresholds
        spiked = (v > V_TH) & free
        last[spiked] = step
        s_e, s_i = np.flatnonzero(spiked[:ne]), np.flatnonzero(spiked[ne:])
        # synapses: traces brought to t (event-driven: exact decay)
        x_pre *= decay
        x_post *= decay
        g_ampa += W_EXC * c_e[:, s_e].sum(axis=1)
        g_gaba[ne:] += W_II * c_ii[:, s_i].sum(axis=1)
        if s_i.size:  # con_ie on_pre: Apre += 1; w += eta (Apost - alpha), clipped; g += w
            x_pre[s_i] += 1.0
            cols = c_ie[:, s_i]
            upd = np.clip(w[:, s_i] + eta * (x_post[:, None] - ALPHA), 0.0, G_MAX)
            w[:, s_i] = np.where(cols, upd, 0.0)
            g_gaba[:ne] += 1e-9 * w[:, s_i].sum(axis=1)
        if s_e.size:  # con_ie on_post: Apost += 1; w += eta Apre, clipped
            x_post[s_e] += 1.0
            rows = c_ie[s_e]
            upd = np.clip(w[s_e] + eta * x_pre[None, :], 0.0, G_MAX)
            w[s_e] = np.where(rows, upd, 0.0)
        # resets
        v[spiked] = E_L
        b = step // steps_per_bin
        rate_e[b] += s_e.size
        rate_i[b] += s_i.size
        if (step + 1) % steps_per_bin == 0:
            w_mean[b] = w[c_ie].mean()
    return {
        "rate_e_hz": rate_e / (ne * 0.1),
        "rate_i_hz": rate_i / (ni * 0.1),
        "w_ie_mean": w_mean,
        "n_ie": int(c_ie.sum()),
    }
