"""Our rules on the spike trains of ``tests/data/nest_reference.json`` (NEST 3.10's synapse
models, recorded by ``benchmarks/nest_reference.py``), with the settings that reproduce
each model; used by ``tests/test_nest_reference.py`` and ``docs/matching_nest.md``.

Time at the synapse: NEST treats a connection's delay ``d`` as dendritic, so a
presynaptic spike at ``t`` meets a postsynaptic spike at ``t_post`` as if the latter were
at ``t_post + d``. Our step of a spike is ``round(t / dt)`` for pre spikes and
``round((t_post + d) / dt)`` for post spikes (and the post neuron's membrane potential
is read ``d`` later), with ``dt`` = NEST's resolution, 0.1 ms. NEST applies every
update at the spike that triggers it, so the rule runs online: one window per step with
a spike (nothing changes in between), ``step()`` and the optimizer after each, and the
weight compared with NEST's at every presynaptic spike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import snntorch as snn
import torch

import plasticity as pl
from plasticity import eligibility, modulator, post, pre

DATA = Path(__file__).parent / "data" / "nest_reference.json"
F64 = torch.float64


def load() -> dict[str, Any]:
    return json.loads(DATA.read_text())


def _steps(times: list[float], shift: float, dt: float) -> list[int]:
    return [round((t + shift) / dt) for t in times]


def _train(steps: list[list[int]], T: int) -> torch.Tensor:
    x = torch.zeros(T, 1, len(steps), dtype=F64)
    for j, ks in enumerate(steps):
        x[ks, 0, j] = 1.0
    return x


def _bounded_stdp(case: dict, **kw: Any) -> tuple[Any, ...]:
    """``stdp_synapse``/``stdp_nn_symm_synapse``: NEST's w/Wmax + λ(1 − w/Wmax)^μ₊ K₊ and
    w/Wmax − αλ(w/Wmax)^μ₋ K₋, clipped to [0, Wmax], are our amplitudes
    λ Wmax^(1−μ₊), αλ Wmax^(1−μ₋) with ``upper_power``/``lower_power`` bounds
    (μ = 0: no bound factor) and a clamp to [0, Wmax]."""
    p = case["params"]
    lam, wmax, mu_p, mu_m = p["lambda"], p["Wmax"], p["mu_plus"], p["mu_minus"]
    rule_kw = dict(a_plus=lam * wmax ** (1 - mu_p), a_minus=p["alpha"] * lam * wmax ** (1 - mu_m),
                   tau_plus=p["tau_plus"], tau_minus=case["post_params"]["tau_minus"])  # fmt: skip
    fc = torch.nn.Linear(len(case["pre_times"]), len(case["post_times"]), bias=False).to(F64)
    rule = pl.STDP(fc, snn.Leaky(beta=0.9), **rule_kw, coincident="none", **kw)
    if mu_p:
        rule.accumulator.upperbound(pl.bounds.upper_power, wmax, power=mu_p)
    if mu_m:
        rule.accumulator.lowerbound(pl.bounds.lower_power, 0.0, power=mu_m)
    return fc, rule, (0.0, wmax)


def build(name: str, case: dict, dt: float, variant: str = "builtin") -> tuple[Any, ...]:
    """(synapse, rule, (clamp_min, clamp_max)) reproducing NEST's ``case``."""
    n_in, n_out = len(case["pre_times"]), len(case["post_times"])
    p = case["params"]
    lif = snn.Leaky(beta=0.9)
    fc = torch.nn.Linear(n_in, n_out, bias=False).to(F64)
    if name.startswith("stdp_nn_symm"):
        return _bounded_stdp(case, dt=dt, trace="nearest")
    if name.startswith("stdp_") and case["synapse_model"] == "stdp_synapse":
        return _bounded_stdp(case, dt=dt)
    if name == "stdp_triplet":
        q = case["post_params"]
        rule = pl.TripletSTDP(fc, lif, a2_plus=p["Aplus"], a3_plus=p["Aplus_triplet"],
                              a2_minus=p["Aminus"], a3_minus=p["Aminus_triplet"],
                              tau_plus=p["tau_plus"], tau_x=p["tau_plus_triplet"],
                              tau_minus=q["tau_minus"], tau_y=q["tau_minus_triplet"],
                              coincident="none", dt=dt)  # fmt: skip
        return fc, rule, (0.0, p["Wmax"])
    if name == "vogels_sprekeler":
        rule = pl.VogelsSprekeler(fc, lif, eta=p["eta"], alpha=p["alpha"], tau=p["tau"],
                                  coincident="none", dt=dt)  # fmt: skip
        return fc, rule, (0.0, p["Wmax"])
    if name == "stdp_dopamine" and variant == "exact":
        return fc, _exact_dopamine(fc, lif, case, dt), (p["Wmin"], p["Wmax"])
    if name == "stdp_dopamine":
        rule = pl.DopamineSTDP(fc, lif, a_plus=p["A_plus"], a_minus=p["A_minus"],
                               tau_plus=p["tau_plus"], tau_minus=case["post_params"]["tau_minus"],
                               tau_c=p["tau_c"], tau_d=p["tau_n"], coincident="none", dt=dt)  # fmt: skip
        return fc, rule, (p["Wmin"], p["Wmax"])
    if name == "clopath":
        q = case["post_params"]
        kw = dict(a_ltd=q["A_LTD"], a_ltp=q["A_LTP"], theta_minus=q["theta_minus"],
                  theta_plus=q["theta_plus"], tau_minus=q["tau_u_bar_minus"],
                  tau_plus=q["tau_u_bar_plus"], tau_x=p["tau_x"], delay=q["delay_u_bars"], dt=dt)  # fmt: skip
        if variant == "builtin":
            return fc, pl.Clopath(fc, lif, **kw), (p["Wmin"], p["Wmax"])
        # NEST's synapse reads x̄ before the step's own pre spike
        k = round(kw["delay"] / dt)
        u = post.voltage
        gate = pl.relu(u - kw["theta_plus"]) * pl.relu(
            u.lowpass(kw["tau_plus"]).delayed(k) - kw["theta_minus"])
        rule = pl.Rule(fc, lif, dt=dt,
                       pos=kw["a_ltp"] * dt * gate * (pre.trace(kw["tau_x"]).before / kw["tau_x"]),
                       neg=kw["a_ltd"] * pl.relu(u.lowpass(kw["tau_minus"]).delayed(k) - kw["theta_minus"]) * pre.spike)  # fmt: skip
        return fc, rule, (p["Wmin"], p["Wmax"])
    raise KeyError(name)


def _exact_dopamine(fc, lif, case: dict, dt: float) -> pl.Rule:
    """NEST integrates dw/dt = c n exactly between events; per step that is
    τ_s (e^{dt/τ_s} − 1) c⁻ n⁻ with the values just before the step's own events
    (1/τ_s = 1/τ_c + 1/τ_n), and c⁻ = c − ζ of the step."""
    p = case["params"]
    tau_c, tau_n = p["tau_c"], p["tau_n"]
    tau_s = tau_c * tau_n / (tau_c + tau_n)
    k = tau_s * math.expm1(dt / tau_s)
    zeta = (p["A_plus"] * post.spike * pre.trace(p["tau_plus"]).before
            - p["A_minus"] * post.trace(case["post_params"]["tau_minus"]).before * pre.spike)  # fmt: skip
    n_before = modulator.trace(tau_n).before
    return pl.Rule(fc, lif, dt=dt, pos=k * n_before * eligibility(zeta, tau_c) - k * n_before * zeta)


def inputs(data: dict, case: dict, dt: float, name: str) -> dict[str, torch.Tensor]:
    """The spike trains (and voltage, dopamine) at the synapse, on our steps."""
    h = data["resolution_ms"]
    T = round(data["t_sim_ms"] / dt) + 1
    d = case["delay"]
    out = {"pre": _train([_steps(t, 0.0, dt) for t in case["pre_times"]], T),
           "post": _train([_steps(t, d, dt) for t in case["post_times"]], T)}  # fmt: skip
    if name == "stdp_dopamine":
        reward = torch.zeros(T, dtype=F64)
        for k in _steps(case["dopa_times"], case["dopa_delay"], dt):
            reward[k] += 1.0 / case["params"]["tau_n"]
        out["reward"] = reward
    if "V_m" in case:
        v = torch.tensor(case["V_m"], dtype=F64).T  # [steps, N_post], value after step k+1
        shift = round(d / h)
        e_l = -70.6
        volt = torch.full((T, v.shape[1]), e_l, dtype=F64)
        volt[1 + shift:] = v[: T - 1 - shift]
        out["voltage"] = volt[:, None, :]
    return out


def run_online(fc, rule, clamp, x: dict[str, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Weights after every step with a spike (of any side, or dopamine), as NEST applies
    them: one window per such step, then the optimizer (SGD, lr 1) and the clamp."""
    events = torch.nonzero(x["pre"].sum((1, 2)) + x["post"].sum((1, 2))).flatten().tolist()
    if "reward" in x or "voltage" in x:  # continuous: every step
        events = list(range(x["pre"].shape[0]))
    return _learn_until(fc, rule, clamp, x, events)


def compare(name: str, data: dict, variant: str = "builtin", dt: float | None = None) -> dict[str, float]:
    """Largest |ours − NEST| over the weights NEST recorded at every pre spike, and the
    largest relative to the weight's total change."""
    case = data["cases"][name]
    dt = dt or data["resolution_ms"]
    fc, rule, clamp = build(name, case, dt, variant)
    with torch.no_grad():
        fc.weight.fill_(case["w0"])
    x = inputs(data, case, dt, name)
    weights = run_online(fc, rule, clamp, x) if "reward" not in x and "voltage" not in x else None
    if weights is None:
        weights = _run_windows(fc, rule, clamp, x, case, dt)
    err, change = 0.0, 0.0
    for j, i, t, w in case["weight_events"]:
        k = round(t / dt)
        ours = float(weights[k][i, j]) if k in weights else float(case["w0"])
        err = max(err, abs(ours - w))
        change = max(change, abs(w - case["w0"]))
    return {"max_abs": err, "max_change": change, "rel": err / change}


def _run_windows(fc, rule, clamp, x, case, dt) -> dict[int, torch.Tensor]:
    """Continuous rules (dopamine, Clopath): windows cut at the pre spikes, where NEST
    records (the weight does not feed back within a window: no clipping is reached)."""
    pre_steps = sorted({round(t / dt) for ts in case["pre_times"] for t in ts})
    return _learn_until(fc, rule, clamp, x, pre_steps)


def _learn_until(fc, rule, clamp, x, ends: list[int]) -> dict[int, torch.Tensor]:
    """One window up to and including each step of ``ends``, then the optimizer (SGD,
    lr 1) and the clamp; the weights after each."""
    opt = pl.optim.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=clamp[0],
                                             clamp_max=clamp[1])  # fmt: skip
    weights, start = {}, 0
    for k in ends:
        extra = {key: x[key][start : k + 1] for key in ("reward", "voltage") if key in x}
        rule.observe(x["pre"][start : k + 1], x["post"][start : k + 1], **extra)
        rule.step()
        opt.step()
        opt.zero_grad()
        weights[k] = fc.weight.detach().clone()
        start = k + 1
    return weights


def short_term(name: str, data: dict) -> dict[str, float]:
    """``tsodyks2_synapse``: the delivered weight·u·x at every spike against
    :class:`~plasticity.ShortTermPlasticity` scaling an identity synapse's input."""
    case = data["cases"][name]
    p, dt = case["params"], data["resolution_ms"]
    n = len(case["pre_times"])
    fc = torch.nn.Linear(n, n, bias=False).to(F64)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(n, dtype=F64))
    pl.ShortTermPlasticity(fc, U=p["U"], tau_rec=p["tau_rec"], tau_fac=p["tau_fac"], dt=dt)
    x = inputs(data, case, dt, name)["pre"]
    with torch.no_grad():
        released = torch.stack([fc(x[k]) for k in range(x.shape[0])])
    err = 0.0
    for j, _i, t, w in case["weight_events"]:
        err = max(err, abs(float(released[round(t / dt), 0, j]) - w))
    return {"max_abs": err, "max_change": 1.0, "rel": err}
