"""Song, Miller & Abbott (2000): STDP on 1000 Poisson inputs, additive vs soft-bounded.

1000 excitatory Poisson inputs at 15 Hz drive one conductance-based integrate-and-fire
neuron (τ_m = 10 ms, E_L = −74 mV, E_e = 0 mV, V_t = −54 mV, V_r = −60 mV, synaptic
conductance decaying with τ_e = 5 ms, in units of the leak conductance). Pair STDP
(τ± = 20 ms, A₊ = 0.01·g_max, A₋/A₊ = 1.05) runs for 100 s with dt = 1 ms.

Two neurons see the same input spikes: neuron "additive" learns with hard bounds
[0, g_max] (weight-independent updates), neuron "multiplicative" with soft bounds
(potentiation ∝ g_max − w, depression ∝ w). Additive STDP drives the weights to both bounds
(a U-shaped histogram); soft bounds keep them unimodal.

Run ``python -m models.song2000 --out results`` (``make demo`` does this).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

import plasticity as pl

from ._figures import pyplot, save

CONDITIONS = ("additive", "multiplicative")


class ConductanceLIF(nn.Module):
    """Conductance-based leaky integrate-and-fire neurons, exact integration per step.

    ``forward(increment)`` takes the summed synaptic input of the step (``Σ_j w_j s_j``,
    conductance jumps in units of the leak conductance) and returns spikes ``[B, N]``.
    State (``v`` in mV, ``g``) lives in the module; :meth:`reset_state` clears it.
    """

    def __init__(
        self,
        *,
        tau_m=10.0,
        tau_e=5.0,
        e_leak=-74.0,
        e_exc=0.0,
        v_thresh=-54.0,
        v_reset=-60.0,
        dt=1.0,
    ):
        super().__init__()
        self.tau_m, self.tau_e, self.dt = tau_m, tau_e, dt
        self.e_leak, self.e_exc, self.v_thresh, self.v_reset = e_leak, e_exc, v_thresh, v_reset
        self.v: Tensor | None = None
        self.g: Tensor | None = None

    def reset_state(self) -> None:
        self.v = self.g = None

    def forward(self, increment: Tensor) -> Tensor:
        if self.v is None or self.v.shape != increment.shape:
            self.v = torch.full_like(increment, self.e_leak)
            self.g = torch.zeros_like(increment)
        g = self.g * math.exp(-self.dt / self.tau_e) + increment
        # dV/dt = ((E_L - V) + g (E_e - V)) / tau_m with g constant over the step: exact
        v_inf = (self.e_leak + g * self.e_exc) / (1.0 + g)
        v = v_inf + (self.v - v_inf) * torch.exp(-self.dt * (1.0 + g) / self.tau_m)
        spikes = (v >= self.v_thresh).to(increment.dtype)
        self.v = torch.where(spikes > 0, torch.full_like(v, self.v_reset), v)
        self.g = g
        return spikes


def row_bounds(param: Tensor, pos: Tensor, neg: Tensor, max: float, min: float, /) -> Tensor:
    """Full bound per post neuron: row 0 hard ([w < max], [w > min]), row 1 soft
    multiplicative ((max − w)/max, (w − min)/max)."""
    hard = pl.bounds.sharp(param, pos, neg, max, min)
    soft = pl.bounds.scaled_power(param, pos, neg, max, min)
    return torch.cat([hard[:1], soft[1:]])


def simulate(
    *,
    n_inputs: int = 1000,
    rate_hz: float = 15.0,
    duration_s: float = 100.0,
    g_max: float = 0.01,
    a_plus_frac: float = 0.01,
    ratio: float = 1.05,
    tau: float = 20.0,
    dt: float = 1.0,
    window_ms: int = 20,
    record_every_ms: int = 500,
    seed: int = 0,
    coincident: str = "both",
    progress: bool = True,
) -> dict:
    """Runs both conditions; returns weights over time, histograms and rates."""
    g = torch.Generator().manual_seed(seed)
    steps = int(round(duration_s * 1000 / dt))
    fc = nn.Linear(n_inputs, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(
            torch.rand(1, n_inputs, generator=g).expand(2, n_inputs) * g_max
        )  # same start
    neuron = ConductanceLIF(dt=dt)
    a_plus = a_plus_frac * g_max
    # coincident="both": at dt = 1 ms, same-step pairs counted only as LTP would add the
    # k = 0 term to the potentiation kernel (sum 20.5 vs 19.5 for depression at tau = 20 ms)
    # and outweigh A-/A+ = 1.05: uncorrelated input would then potentiate.
    stdp = pl.STDP(
        fc,
        neuron,
        a_plus=a_plus,
        a_minus=ratio * a_plus,
        tau_plus=tau,
        tau_minus=tau,
        dt=dt,
        coincident=coincident,
        batch_reduction="sum",
        chunk_size=window_ms,
    )
    stdp.accumulator.fullbound(row_bounds, g_max, 0.0)
    opt = pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=g_max)
    edges = np.linspace(0.0, g_max, 21)
    monitors = {
        name: pl.monitor.WeightMonitor(
            fc.weight.detach()[k], every=1, capacity=400, select=40, stats=("mean",), bins=edges
        )
        for k, name in enumerate(CONDITIONS)
    }
    p_in = rate_hz * dt / 1000.0
    spikes_out = torch.zeros(steps, 2)
    window = int(window_ms / dt)
    record = int(record_every_ms / dt)
    start = time.perf_counter()
    with torch.no_grad():
        for t in tqdm(range(steps), desc="song2000", disable=not progress, mininterval=1.0):
            x = (torch.rand(1, n_inputs, generator=g) < p_in).float()
            spikes_out[t] = neuron(fc(x))[0]
            if (t + 1) % window == 0:
                stdp.step()
                opt.step()
                opt.zero_grad()
            if t % record == 0:
                for mon in monitors.values():
                    mon.record(t)
    wall = time.perf_counter() - start
    tenth = max(1, steps // 10)
    result: dict = {
        "g_max": g_max,
        "duration_s": duration_s,
        "wall_s": wall,
        "edges": edges,
        "conditions": {},
    }
    for k, name in enumerate(CONDITIONS):
        data = monitors[name].numpy()
        w = fc.weight.detach()[k].numpy().copy()
        result["conditions"][name] = {
            "times_s": data["steps"] * dt / 1000.0,
            "weights": data["values"],
            "hist": data["hist"],
            "w_final": w,
            "frac_near_zero": float(np.mean(w < 0.1 * g_max)),
            "frac_near_max": float(np.mean(w > 0.9 * g_max)),
            "rate_start_hz": float(spikes_out[:tenth, k].mean()) * 1000.0 / dt,
            "rate_end_hz": float(spikes_out[-tenth:, k].mean()) * 1000.0 / dt,
        }
    return result


def plot(result: dict, out: Path) -> list[Path]:
    plt = pyplot()
    g_max, edges = result["g_max"], result["edges"]
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, constrained_layout=True)
    for ax, name in zip(axes, CONDITIONS, strict=True):
        c = result["conditions"][name]
        ax.hist(
            c["w_final"] / g_max,
            bins=edges / g_max,
            color="tab:red" if name == "additive" else "tab:blue",
        )
        ax.set(
            xlabel="synaptic weight w / g_max",
            ylabel="number of synapses",
            title=f"{name} STDP after {result['duration_s']:.0f} s\n"
            f"{100 * c['frac_near_zero']:.0f} % < 0.1 g_max, {100 * c['frac_near_max']:.0f} % > 0.9 g_max",
        )
    path = save(fig, out, "song2000_histograms.png", dpi=130)
    paths.append(path)

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for col, name in enumerate(CONDITIONS):
        c = result["conditions"][name]
        pl.plot.weight_trajectories(
            c["times_s"],
            c["weights"] / g_max,
            ax=axes[0, col],
            weight_label="w / g_max",
            title=f"{name}: 40 synapses",
        )
        pl.plot.weight_histograms(
            c["times_s"],
            c["hist"],
            edges / g_max,
            ax=axes[1, col],
            weight_label="w / g_max",
            title=f"{name}: weight distribution over time",
        )
    path = save(fig, out, "song2000_dynamics.png", dpi=120)
    paths.append(path)
    return paths


def run(out: str | Path | None = "results", **kwargs) -> dict:
    result = simulate(**kwargs)
    result["paths"] = plot(result, Path(out)) if out is not None else []
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    parser.add_argument(
        "--duration", type=float, default=100.0, help="simulated seconds (default 100)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run(args.out, duration_s=args.duration, seed=args.seed)
    print(f"simulated {r['duration_s']:.0f} s of 1000 inputs in {r['wall_s']:.1f} s wall time")
    for name, c in r["conditions"].items():
        print(
            f"{name:14s}: {100 * c['frac_near_zero']:5.1f} % of weights < 0.1 g_max, "
            f"{100 * c['frac_near_max']:5.1f} % > 0.9 g_max; output rate "
            f"{c['rate_start_hz']:.1f} Hz (first 10 %) -> {c['rate_end_hz']:.1f} Hz (last 10 %)"
        )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
