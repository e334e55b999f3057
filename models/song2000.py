"""Song, Miller & Abbott (2000) as Brian2's STDP example: additive vs soft-bounded STDP.

Brian2's ``examples/synapses/STDP.py`` ("adapted from Song, Miller and Abbott (2000)"),
with its settings: 1000 excitatory Poisson inputs at 15 Hz onto one conductance-based
integrate-and-fire neuron (τ_m = 10 ms, E_L = −74 mV, E_e = 0 mV, V_t = −54 mV,
V_r = −60 mV, synaptic conductance decaying with τ_e = 5 ms, in units of the leak
conductance), all-to-all pair STDP (τ± = 20 ms, A₊ = 0.01·g_max, A₋/A₊ = 1.05,
g_max = 0.01), initial weights uniform in [0, g_max], 100 s at dt = 0.1 ms (Brian2's
default), same-step pairs counted as pre-before-post (``coincident="ltp"``, Brian2's order).

Two neurons see the same input spikes: neuron "additive" learns with hard bounds
[0, g_max] (weight-independent updates, the example's rule), neuron "multiplicative" with
soft bounds (potentiation ∝ g_max − w, depression ∝ w). Additive STDP drives the weights
to both bounds (a U-shaped histogram) and lowers the output rate; soft bounds keep them
unimodal. ``benchmarks/song2000_brian2.py`` runs the same two neurons in Brian2 for several
seeds; where its results exist the figure and the printout show them beside ours.

Run ``python -m models.song2000 --out results`` (``make demo`` does this).
"""

from __future__ import annotations

import argparse
import json
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
    """Conductance-based leaky integrate-and-fire neurons (Brian2's STDP example).

    ``τ_m dV/dt = (E_L − V) + g (E_e − V)``, ``τ_e dg/dt = −g``, ``g`` in units of the leak
    conductance; a spike when ``V ≥ V_t``, then ``V = V_r``. ``forward(increment)`` takes the
    summed synaptic input of each step (``Σ_j w_j s_j``, conductance jumps), ``[B, N]`` for
    one step or ``[T, B, N]`` for a sequence of steps, and returns spikes of the same shape.
    The jump of step t arrives at the start of the step (snnTorch's convention: a pre spike
    drives the neuron in its own step). Over a step the membrane sees the step's mean
    conductance, ``g·(τ_e/dt)(1 − e^{−dt/τ_e})``, the exact integral of the decaying
    conductance, so each input spike delivers exactly ``w·τ_e`` of conductance·time whatever
    dt; with that conductance held, ``V`` is integrated exactly. State (``v`` in mV, ``g``
    after the step's jump) lives in the module; :meth:`reset_state` clears it.

    The time loop runs on Python floats: cheap for a few neurons, slow for many.
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
        dt=0.1,
    ):
        super().__init__()
        self.tau_m, self.tau_e, self.dt = tau_m, tau_e, dt
        self.e_leak, self.e_exc, self.v_thresh, self.v_reset = e_leak, e_exc, v_thresh, v_reset
        self.v: list[float] | None = None
        self.g: list[float] | None = None

    def reset_state(self) -> None:
        self.v = self.g = None

    def forward(self, increment: Tensor) -> Tensor:
        steps = increment.reshape(-1, increment.shape[-2] * increment.shape[-1]).tolist()
        n = len(steps[0])
        if self.v is None or len(self.v) != n:
            self.v, self.g = [self.e_leak] * n, [0.0] * n
        v, g = self.v, self.g
        decay = math.exp(-self.dt / self.tau_e)
        mean = self.tau_e / self.dt * (1.0 - decay)  # mean conductance over a step / its start
        rate = -self.dt / self.tau_m
        e_leak, e_exc, exp = self.e_leak, self.e_exc, math.exp
        v_thresh, v_reset = self.v_thresh, self.v_reset
        out = []
        for row in steps:
            spikes = [0.0] * n
            for i, jump in enumerate(row):
                gi = g[i] * decay + jump
                g[i] = gi
                gm = gi * mean
                v_inf = (e_leak + gm * e_exc) / (1.0 + gm)
                vi = v_inf + (v[i] - v_inf) * exp(rate * (1.0 + gm))
                if vi >= v_thresh:
                    spikes[i] = 1.0
                    vi = v_reset
                v[i] = vi
            out.append(spikes)
        return torch.tensor(out, dtype=increment.dtype).reshape(increment.shape)


def poisson_cells(n_cells: int, p: float, generator: torch.Generator) -> Tensor:
    """Flat indices of the ones of ``n_cells`` independent Bernoulli(p) cells (sorted):
    the gaps between them are geometric, so only the spikes are drawn."""
    positions, end = [], -1
    while True:
        expected = (n_cells - end) * p
        gaps = torch.empty(int(expected + 5 * math.sqrt(expected) + 16), dtype=torch.float64)
        gaps.geometric_(p, generator=generator)
        pos = end + torch.cumsum(gaps, 0).to(torch.int64)
        positions.append(pos[pos < n_cells])
        if pos[-1] >= n_cells:
            return torch.cat(positions)
        end = int(pos[-1])


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
    dt: float = 0.1,
    window_ms: float = 20.0,
    record_every_ms: float = 500.0,
    seed: int = 0,
    coincident: str = "ltp",
    threads: int | None = 1,
    progress: bool = True,
) -> dict:
    """Runs both conditions; returns weights over time, histograms and rates.

    Input spikes, the neuron and the rule's buffers advance one window of
    ``window_ms`` at a time (``[T, 1, n_inputs]`` through the synapse); the weights change at
    the end of each window (Brian2 changes them at every spike: by at most
    ``A₊ = 1e-4`` per pair, the difference is far below the seed-to-seed spread).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    window = int(round(window_ms / dt))
    n_windows = int(round(duration_s * 1000 / dt)) // window
    steps = n_windows * window
    fc = nn.Linear(n_inputs, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(
            torch.rand(1, n_inputs, generator=g).expand(2, n_inputs) * g_max
        )  # same start
    neuron = ConductanceLIF(dt=dt)
    a_plus = a_plus_frac * g_max
    # coincident="ltp": a pre and a post spike in the same step count as pre-before-post,
    # as in Brian2 (its pre pathway runs before its post pathway)
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
        chunk_size=window,
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
    cells = window * n_inputs
    spikes_in = poisson_cells(steps * n_inputs, rate_hz * dt / 1000.0, g)
    bounds = torch.searchsorted(spikes_in, torch.arange(n_windows + 1) * cells).tolist()
    counts = torch.zeros(n_windows, 2)  # output spikes per window
    record = max(1, int(round(record_every_ms / window_ms)))
    start = time.perf_counter()
    with torch.no_grad():
        for k in tqdm(range(n_windows), desc="song2000", disable=not progress, mininterval=1.0):
            if k % record == 0:
                for mon in monitors.values():
                    mon.record(k * window)
            x = torch.zeros(cells)
            x[spikes_in[bounds[k] : bounds[k + 1]] - k * cells] = 1.0
            out = neuron(fc(x.view(window, 1, n_inputs)))  # [T, 1, 2]
            counts[k] = out.sum((0, 1))
            stdp.step()
            opt.step()
            opt.zero_grad()
        for mon in monitors.values():
            mon.record(steps)
    wall = time.perf_counter() - start
    window_s = window * dt / 1000.0
    tenth = max(1, n_windows // 10)
    result: dict = {
        "g_max": g_max,
        "duration_s": steps * dt / 1000.0,
        "wall_s": wall,
        "edges": edges,
        "seed": seed,
        "settings": {
            "n_inputs": n_inputs,
            "rate_hz": rate_hz,
            "a_plus_frac": a_plus_frac,
            "ratio": ratio,
            "tau": tau,
            "dt": dt,
            "coincident": coincident,
        },
        "conditions": {},
    }
    for k, name in enumerate(CONDITIONS):
        data = monitors[name].numpy()
        w = fc.weight.detach()[k].numpy().copy()
        rate = counts[:, k].numpy() / window_s
        result["conditions"][name] = {
            "times_s": data["steps"] * dt / 1000.0,
            "weights": data["values"],
            "hist": data["hist"],
            "w_final": w,
            "frac_near_zero": float(np.mean(w < 0.1 * g_max)),
            "frac_near_max": float(np.mean(w > 0.9 * g_max)),
            "rate_times_s": (np.arange(n_windows) + 0.5) * window_s,
            "rate_hz": rate,
            "rate_start_hz": float(rate[:tenth].mean()),
            "rate_end_hz": float(rate[-tenth:].mean()),
        }
    return result


REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "song2000_brian2.json"
# the settings of Brian2's example (benchmarks/song2000_brian2.py runs exactly these)
BRIAN2_SETTINGS = {
    "n_inputs": 1000,
    "rate_hz": 15.0,
    "a_plus_frac": 0.01,
    "ratio": 1.05,
    "tau": 20.0,
}
COLORS = {"additive": "tab:red", "multiplicative": "tab:blue"}


def load_reference(result: dict, path: str | Path | None = REFERENCE) -> dict | None:
    """Brian2's runs (``benchmarks/song2000_brian2.py``) if they exist and match the
    settings and duration of ``result``; else ``None``."""
    if path is None or not Path(path).exists():
        return None
    ref = json.loads(Path(path).read_text())
    same = all(result["settings"][k] == v for k, v in BRIAN2_SETTINGS.items())
    if not same or ref["duration_s"] != result["duration_s"] or ref["g_max"] != result["g_max"]:
        return None
    return ref


def _spread(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}–{hi:.1f}"


def plot(result: dict, out: Path, reference: dict | None = None) -> list[Path]:
    """``song2000.png``: output rate over time, fractions near the bounds over time, both
    final histograms (Brian2's seeds beside ours when ``reference`` is given);
    ``song2000_dynamics.png``: 40 synapses and the weight distribution over time."""
    plt = pyplot()
    g_max, edges, duration = result["g_max"], result["edges"], result["duration_s"]
    runs = reference["runs"] if reference else []
    label_b2 = f"Brian2 ({len(runs)} seed{'s' if len(runs) > 1 else ''}, min–max)"
    paths = []
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 7.0), constrained_layout=True)
    ax = axes[0, 0]
    for name in CONDITIONS:
        c = result["conditions"][name]
        t, rate = c["rate_times_s"], c["rate_hz"]
        per = max(1, int(round(1.0 / (t[1] - t[0])))) if len(t) > 1 else 1  # 1 s bins
        n = len(rate) // per * per
        ax.plot(
            t[:n].reshape(-1, per).mean(1),
            rate[:n].reshape(-1, per).mean(1),
            color=COLORS[name],
            lw=1.2,
            label=f"{name} (ours)",
        )
        if runs:
            r2 = np.array([r[name]["rate_per_second_hz"] for r in runs])
            ax.fill_between(
                np.arange(r2.shape[1]) + 0.5,
                r2.min(0),
                r2.max(0),
                color=COLORS[name],
                alpha=0.2,
                lw=0,
            )
    if runs:
        ax.fill_between([], [], [], color="0.6", alpha=0.4, lw=0, label=label_b2)
    ax.set(
        xlabel="time (s)",
        ylabel="output rate (Hz, 1 s bins)",
        xlim=(0, duration),
        ylim=(0, None),
        title="output rate",
    )
    ax.legend(frameon=False, fontsize=8)
    ax = axes[0, 1]
    for name in CONDITIONS:
        c = result["conditions"][name]
        h = c["hist"] / c["hist"].sum(1, keepdims=True)
        nb = h.shape[1] // 10  # bins below 0.1 g_max (and above 0.9 g_max)
        ax.plot(
            c["times_s"],
            100 * h[:, :nb].sum(1),
            color=COLORS[name],
            lw=1.2,
            label=f"{name}, < 0.1 g_max",
        )
        ax.plot(
            c["times_s"],
            100 * h[:, -nb:].sum(1),
            color=COLORS[name],
            lw=1.2,
            ls="--",
            label=f"{name}, > 0.9 g_max",
        )
        for key, marker in (("frac_near_zero", "o"), ("frac_near_max", "s")):
            if runs:
                v = 100 * np.array([r[name][key] for r in runs])
                ax.errorbar(
                    [duration * 1.02],
                    [v.mean()],
                    yerr=[[v.mean() - v.min()], [v.max() - v.mean()]],
                    color=COLORS[name],
                    marker=marker,
                    ms=4,
                    capsize=2,
                    mfc="white",
                )
    ax.set(
        xlabel="time (s)",
        ylabel="synapses (%)",
        xlim=(0, duration * 1.05),
        ylim=(0, None),
        title="weights near the bounds",
    )
    if runs:
        ax.errorbar(
            [],
            [],
            yerr=[],
            color="0.4",
            marker="o",
            ms=4,
            mfc="white",
            ls="none",
            label=f"Brian2 at {duration:.0f} s (○ < 0.1, □ > 0.9)",
        )
    ax.legend(frameon=False, fontsize=7, loc="center right")
    centers = (edges[:-1] + edges[1:]) / 2 / g_max
    for ax, name in zip(axes[1], CONDITIONS, strict=True):
        c = result["conditions"][name]
        counts = np.histogram(c["w_final"], bins=edges)[0]
        ax.bar(centers, counts, width=0.05, color=COLORS[name], alpha=0.75, label="ours")
        tenth = f"last {duration / 10:g} s"
        rows = [
            f"{'':13s}{'< 0.1 g_max':>12s}{'> 0.9 g_max':>12s}{'rate, ' + tenth:>17s}",
            f"{'ours, seed ' + str(result['seed']):13s}{100 * c['frac_near_zero']:10.1f} %"
            f"{100 * c['frac_near_max']:10.1f} %{c['rate_end_hz']:14.1f} Hz",
        ]
        if runs:
            h2 = np.array([r[name]["hist"] for r in runs])
            ax.errorbar(
                centers,
                h2.mean(0),
                yerr=[h2.mean(0) - h2.min(0), h2.max(0) - h2.mean(0)],
                fmt="_",
                color="k",
                ms=8,
                capsize=2,
                lw=1,
                label=label_b2,
            )
            rows.append(
                f"{'Brian2':13s}{_spread([100 * r[name]['frac_near_zero'] for r in runs]):>10s} %"
                f"{_spread([100 * r[name]['frac_near_max'] for r in runs]):>10s} %"
                f"{_spread([r[name]['rate_end_hz'] for r in runs]):>14s} Hz"
            )
        ax.text(
            0.5,
            0.97,
            "\n".join(rows),
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=7,
            family="monospace",
        )
        ax.set(
            xlabel="synaptic weight w / g_max",
            ylabel="synapses per bin",
            xlim=(0, 1),
            ylim=(0, 1.55 * max(counts.max(), h2.max() if runs else 0)),
            title=f"{name} STDP: weights after {duration:.0f} s",
        )
        ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.82))
    for ax, letter in zip(axes.flat, "ABCD", strict=True):
        ax.text(-0.12, 1.04, letter, transform=ax.transAxes, fontsize=13, fontweight="bold")
    paths.append(save(fig, out, "song2000.png", dpi=130))

    fig, axes = plt.subplots(2, 2, figsize=(9.0, 6.5), constrained_layout=True)
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
    for ax, letter in zip(axes.flat, "ABCD", strict=True):
        ax.text(-0.12, 1.04, letter, transform=ax.transAxes, fontsize=13, fontweight="bold")
    paths.append(save(fig, out, "song2000_dynamics.png", dpi=120))
    return paths


def run(
    out: str | Path | None = "results", *, reference: str | Path | None = REFERENCE, **kwargs
) -> dict:
    """:func:`simulate`, then the figures (with Brian2's runs from ``reference`` where they
    match the settings). ``result["reference"]`` holds those runs or ``None``."""
    result = simulate(**kwargs)
    result["reference"] = load_reference(result, reference)
    result["paths"] = plot(result, Path(out), result["reference"]) if out is not None else []
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    parser.add_argument(
        "--duration", type=float, default=100.0, help="simulated seconds (default 100)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference",
        default=str(REFERENCE),
        help="Brian2 runs of benchmarks/song2000_brian2.py to compare with ('none': skip)",
    )
    args = parser.parse_args(argv)
    reference = None if args.reference == "none" else args.reference
    r = run(args.out, duration_s=args.duration, seed=args.seed, reference=reference)
    print(
        f"simulated {r['duration_s']:.0f} s of 1000 inputs (dt = {r['settings']['dt']} ms) "
        f"in {r['wall_s']:.1f} s wall time"
    )
    ref, tenth = r["reference"], f"{r['duration_s'] / 10:g} s"
    for name, c in r["conditions"].items():
        print(
            f"{name:14s}: {100 * c['frac_near_zero']:5.1f} % of weights < 0.1 g_max, "
            f"{100 * c['frac_near_max']:5.1f} % > 0.9 g_max; output rate "
            f"{c['rate_start_hz']:.1f} Hz (first {tenth}) -> {c['rate_end_hz']:.1f} Hz (last {tenth})"
        )
        if ref:
            runs = ref["runs"]
            print(
                f"{'  Brian2':14s}: {_spread([100 * x[name]['frac_near_zero'] for x in runs]):>5s} %"
                f"{'':19s}{_spread([100 * x[name]['frac_near_max'] for x in runs]):>5s} %"
                f"{'':24s}{_spread([x[name]['rate_end_hz'] for x in runs])} Hz "
                f"({len(runs)} seeds, min–max)"
            )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
