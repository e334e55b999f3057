"""A slow float64 NumPy reference of what NEST 3.10's ``eprop_*_bsshslm_2020`` models compute,
written from ``docs/eprop_nest_equations.md`` (explicit loops over windows, steps, neurons and
synapses; nothing from ``plasticity``).

Everything is in *window coordinates*: window ``k`` (one "update interval" of ``T`` steps),
position ``p`` = 0..T-1. NEST's input spike of sequence index ``i`` reaches the recurrent
neurons at position ``i``; a recurrent spike at position ``p`` reaches the other recurrent
neurons at ``p + 1`` (dropped if that is the next window's position 0) and the readout at
``p`` (its window starts one step later); the readout's error at ``p`` reaches the recurrent
neurons' eligibility at ``p`` (NEST shifts its history to undo the delays). The notes'
section numbers are quoted as (§n).

    >>> from tests.eprop_nest_case import load_case
    >>> from tests.eprop_reference import run
    >>> res = run(load_case("lif").config, n_seq=2)
    >>> sorted(res["weights"][0])
    ['in', 'out', 'rec']
"""

from __future__ import annotations

import math

import numpy as np


def constants(cfg: dict) -> dict:
    """The per-step factors NEST derives in ``pre_run_hook`` (§1, §5)."""
    dt = float(cfg.get("resolution_ms", 1.0))
    pr, po = cfg["params_rec"], cfg["params_out"]
    alpha = math.exp(-dt / pr["tau_m"])
    alpha_out = math.exp(-dt / po["tau_m"])
    c = {
        "dt": dt,
        "alpha": alpha,
        "zeta": 1.0 if pr.get("regular_spike_arrival", True) else 1.0 - alpha,
        "alpha_out": alpha_out,
        "zeta_out": 1.0 if po.get("regular_spike_arrival", True) else 1.0 - alpha_out,
        # the synapses' tau_m_readout, in NEST's examples the readout's tau_m
        "kappa": math.exp(-dt / cfg.get("tau_m_readout", po["tau_m"])),
        "v_th": pr["V_th"] - pr.get("E_L", 0.0),
        "v_min": pr.get("V_min", -np.finfo(np.float64).max),
        "gamma": pr["surrogate_gradient_height"],
        "width": pr["surrogate_gradient_width"],
        "n_ref": int(round(pr.get("t_ref", 0.0) / dt)),
        "c_reg": pr.get("c_reg", 0.0),
        "f_target": pr.get("f_target", 10.0) / 1000.0 * dt,  # spikes per step
        "adaptive": cfg["neuron_model"] == "eprop_iaf_adapt_bsshslm_2020",
    }
    if c["adaptive"]:
        c["rho"] = math.exp(-dt / pr["adapt_tau"])
        c["beta"] = pr["adapt_beta"]
    return c


def psi(r: int, v: float, v_th: float, gamma: float, width: float) -> float:
    """Piecewise-linear pseudo-derivative, zero while refractory (§3)."""
    if r > 0:
        return 0.0
    return gamma * max(0.0, 1.0 - abs(v - v_th) / width)


def forward_window(cfg: dict, c: dict, W_in, W_rec, W_out, x) -> dict:
    """One window (sequence) of the network, from the reset state (§1-§2, §5)."""
    T, n_rec, n_out = cfg["T"], len(W_in), len(W_out)
    v = np.zeros((T, n_rec))
    z = np.zeros((T, n_rec))
    ps = np.zeros((T, n_rec))
    a = np.zeros((T, n_rec))  # adaptation (ALIF)
    vt = np.full((T, n_rec), c["v_th"])
    y = np.zeros((T, n_out))
    v_prev = np.zeros(n_rec)
    z_prev = np.zeros(n_rec)
    a_prev = np.zeros(n_rec)
    r = np.zeros(n_rec, dtype=int)
    y_prev = np.zeros(n_out)
    for p in range(T):
        for j in range(n_rec):
            if r[j] > 0:
                r[j] -= 1
            z_in = 0.0
            if p > 0:  # a spike arriving at position 0 is dropped by the eprop synapse (§2)
                for i in range(len(x)):
                    z_in += W_in[j][i] * x[i][p]
                for k in range(n_rec):
                    if k != j:
                        z_in += W_rec[j][k] * z_prev[k]
            vj = c["zeta"] * z_in + c["alpha"] * v_prev[j]
            vj -= c["v_th"] * z_prev[j]
            vj = max(vj, c["v_min"])
            th = c["v_th"]
            if c["adaptive"]:
                a[p, j] = c["rho"] * a_prev[j] + z_prev[j]
                th = c["v_th"] + c["beta"] * a[p, j]
            vt[p, j] = th
            v[p, j] = vj
            ps[p, j] = psi(r[j], vj, th, c["gamma"], c["width"])
            if vj >= th and r[j] == 0:
                z[p, j] = 1.0
                r[j] = c["n_ref"]
        for k in range(n_out):
            s = 0.0
            for j in range(n_rec):
                s += W_out[k][j] * z[p, j]
            y[p, k] = c["zeta_out"] * s + c["alpha_out"] * y_prev[k]
        v_prev, z_prev, a_prev, y_prev = v[p].copy(), z[p].copy(), a[p].copy(), y[p].copy()
    return {"v": v, "z": z, "psi": ps, "a": a, "v_th_adapt": vt, "y": y}


def recurrent_gradient(cfg: dict, c: dict, pre: np.ndarray, ps: np.ndarray, L: np.ndarray, reg: float,
                       n_missing: int = 0) -> float:
    """One synapse's window gradient (§4, §6, §7): ``pre[p]`` = 1 where a presynaptic spike
    reaches the target at position p; ``ps``, ``L`` the target's ψ and learning signal;
    ``n_missing``: the last positions whose learning signal has not reached the neuron when
    the synapse computes the gradient (§7.3)."""
    T = cfg["T"]
    zbar = ebar = eps = grad = sum_e = 0.0
    for p in range(T):
        zbar = c["alpha"] * zbar + c["zeta"] * pre[p]
        if c["adaptive"]:
            e = ps[p] * (zbar - c["beta"] * eps)
            eps = c["rho"] * eps + e
        else:
            e = ps[p] * zbar
        ebar = c["kappa"] * ebar + (1.0 - c["kappa"]) * e
        if p < T - n_missing:
            grad += L[p] * ebar
        sum_e += e
    grad += reg * sum_e
    if cfg["average_gradient"]:
        grad /= cfg["learning_window"]
    return grad


def readout_gradient(cfg: dict, c: dict, pre: np.ndarray, E: np.ndarray) -> float:
    """The readout synapse's window gradient (§5, §7)."""
    zbar = grad = 0.0
    for p in range(cfg["T"]):
        zbar = c["alpha_out"] * zbar + c["zeta_out"] * pre[p]
        grad += E[p] * zbar
    if cfg["average_gradient"]:
        grad /= cfg["learning_window"]
    return grad


class Optimizer:
    """NEST's per-synapse optimizers (§8): gradient descent or Adam, then clipping."""

    def __init__(self, opt: dict, shape) -> None:
        self.opt = opt
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.b1p = 1.0
        self.b2p = 1.0

    def step(self, W: np.ndarray, G: np.ndarray) -> np.ndarray:
        o = self.opt
        out = np.array(W, dtype=np.float64)
        if o["type"] == "adam":
            self.b1p *= o["beta_1"]
            self.b2p *= o["beta_2"]
            lr = o["eta"] * math.sqrt(1.0 - self.b2p) / (1.0 - self.b1p)
        for idx in np.ndindex(out.shape):
            g = G[idx] / o.get("batch_size", 1)
            if o["type"] == "gradient_descent":
                w = out[idx] - o["eta"] * g
            else:
                self.m[idx] = o["beta_1"] * self.m[idx] + (1.0 - o["beta_1"]) * g
                self.v[idx] = o["beta_2"] * self.v[idx] + (1.0 - o["beta_2"]) * g * g
                w = out[idx] - lr * self.m[idx] / (math.sqrt(self.v[idx]) + o["epsilon"])
            out[idx] = min(max(w, o["Wmin"]), o["Wmax"])
        return out


def run(cfg: dict, n_seq: int, late_learning_signal: bool = True) -> dict:
    """``n_seq`` windows of NEST's e-prop with batch size 1: per window the forward pass,
    the signals, the three gradients and the weights after the update. After the last
    window, NEST's forced final spike (as in its tutorial) applies the update.
    ``late_learning_signal=False``: ignore §7.3 (every window's gradient gets all its
    learning signal)."""
    if cfg["optimizer"].get("batch_size", 1) != 1:
        raise ValueError("the reference implements batch_size 1")
    c = constants(cfg)
    T, lw = cfg["T"], cfg["learning_window"]
    W = {"in": np.array(cfg["W_in"], float), "rec": np.array(cfg["W_rec"], float), "out": np.array(cfg["W_out"], float)}
    B = np.array(cfg["B"], float)
    n_in, n_rec, n_out = W["in"].shape[1], W["in"].shape[0], W["out"].shape[0]
    x = np.zeros((n_in, T))
    for i, steps in enumerate(cfg["input_spike_steps"]):
        for p in steps:
            x[i, p] = 1.0
    target = np.array(cfg["target"], float)
    opts = {k: Optimizer(cfg["optimizer"], W[k].shape) for k in W}
    windows, weights = [], []
    # position at which each input's first spike of the next window reaches the recurrent
    # neurons: the synapse computes window k's gradient then (§7.3); the final forced spike
    # after the last window arrives at position 2
    first = [min([p for p in steps if p >= 1], default=T) for steps in cfg["input_spike_steps"]]
    for n in range(n_seq):
        f = forward_window(cfg, c, W["in"], W["rec"], W["out"], x)
        E = np.zeros((T, n_out))
        L = np.zeros((T, n_rec))
        for p in range(T):
            if p >= T - lw:  # the error is zero outside the learning window (§5)
                for k in range(n_out):
                    E[p, k] = f["y"][p, k] - target[p]
            for j in range(n_rec):
                for k in range(n_out):
                    L[p, j] += B[j][k] * E[p, k]
        reg = np.zeros(n_rec)
        for j in range(n_rec):
            n_spikes = f["z"][:, j].sum()
            reg[j] = c["c_reg"] * (n_spikes / T - c["f_target"]) / T  # §6
        G = {k: np.zeros_like(W[k]) for k in W}
        for j in range(n_rec):
            for i in range(n_in):
                p_trigger = first[i] if n + 1 < n_seq else 2
                G["in"][j, i] = recurrent_gradient(cfg, c, x[i], f["psi"][:, j], L[:, j], reg[j],
                                                   n_missing=max(0, 2 - p_trigger) if late_learning_signal else 0)
            for i in range(n_rec):
                if i == j:
                    continue
                pre = np.zeros(T)
                pre[1:] = f["z"][:-1, i]  # a recurrent spike reaches the others one step later
                G["rec"][j, i] = recurrent_gradient(cfg, c, pre, f["psi"][:, j], L[:, j], reg[j])
        for k in range(n_out):
            for j in range(n_rec):
                G["out"][k, j] = readout_gradient(cfg, c, f["z"][:, j], E[:, k])
        W = {k: opts[k].step(W[k], G[k]) for k in W}
        windows.append({**f, "E": E, "L": L, "reg": reg, "grad": G})
        weights.append({k: v.copy() for k, v in W.items()})
    return {"windows": windows, "weights": weights, "constants": c}
