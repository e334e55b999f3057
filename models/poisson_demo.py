"""Demo: soft-bounded STDP on Poisson input, through an Accumulator and a clamped optimizer.

One stochastic output neuron receives ``n_inputs`` Poisson spike trains (10 Hz each);
the first ``n_correlated`` of them share a common source, so they tend to fire
together and drive the output. Pair STDP with exponential traces (exact decay)
produces potentiation and depression every millisecond; they are appended to a
:class:`plasticity.Accumulator` with soft multiplicative bounds and applied every
``window_ms`` through a :class:`plasticity.ClampedParameterOptimizer` (SGD, ``lr=1``,
weights clamped to ``[0, 1]``).

Expected outcome: the correlated inputs settle at larger weights than the independent
ones, and soft bounds keep both groups away from the hard limits (a unimodal weight
distribution per group).

Run ``python -m models.poisson_demo --out results`` (``make demo`` does this).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import plasticity as pl

from ._figures import pyplot, save


def simulate(
    *,
    duration_s: float = 60.0,
    n_inputs: int = 100,
    n_correlated: int = 30,
    rate_hz: float = 10.0,
    correlation: float = 0.8,
    a_plus: float = 1e-2,
    ratio: float = 1.05,
    tau_ms: float = 20.0,
    window_ms: int = 100,
    seed: int = 0,
) -> dict:
    """Runs the simulation and returns the recorded weights and summary numbers.

    Returns a dict with ``times_s`` ``[K]``, ``weights`` ``[K, n_inputs]`` (weights after
    each window, the initial ones first), ``w_initial``, ``w_final``, ``out_rate_hz``
    (first and last 10 % of the run) and the group means.
    """
    if n_correlated > n_inputs:
        raise ValueError(f"n_correlated={n_correlated} exceeds n_inputs={n_inputs}")
    g = torch.Generator().manual_seed(seed)
    dt = 1e-3
    steps = int(round(duration_s / dt))
    p_in = rate_hz * dt
    # a correlated input copies the shared source with probability `correlation`,
    # plus independent spikes so its rate stays `rate_hz`
    p_own = p_in * (1 - correlation)

    fc = torch.nn.Linear(n_inputs, 1, bias=False)
    with torch.no_grad():
        fc.weight.copy_(0.5 + 0.05 * torch.randn(1, n_inputs, generator=g)).clamp_(0, 1)
    acc = pl.Accumulator()
    acc.upperbound(pl.bounds.upper_multiplicative, 1.0)  # soft LTP bound
    acc.lowerbound(pl.bounds.lower_multiplicative, 0.0)  # soft LTD bound
    opt = pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)

    decay = math.exp(-1.0 / tau_ms)  # exact exponential decay per 1 ms step
    x_pre = torch.zeros(n_inputs)
    y_post = torch.zeros(1)
    # output spike probability per step: 2 Hz spontaneous + 0.04 per unit of weighted input
    base_p, gain = 2e-3, 0.04

    times, weights = [0.0], [fc.weight.detach()[0].clone()]
    post_counts = []
    with torch.no_grad():
        for t in range(steps):
            source = torch.rand((), generator=g) < p_in
            pre = torch.rand(n_inputs, generator=g) < p_in
            own = torch.rand(n_correlated, generator=g) < p_own
            copy = torch.rand(n_correlated, generator=g) < correlation
            pre[:n_correlated] = own | (copy & source)
            s_pre = pre.float()
            drive = base_p + gain * (fc.weight[0] @ s_pre)
            s_post = (torch.rand(1, generator=g) < drive.clamp(0, 1)).float()
            post_counts.append(float(s_post))
            # traces include this step's spikes: same-step pairs count as pre-before-post
            x_pre.mul_(decay).add_(s_pre)
            y_post.mul_(decay)
            acc.pos = a_plus * s_post[:, None] * x_pre[None, :]  # post spike reads pre trace
            acc.neg = (
                a_plus * ratio * y_post[:, None] * s_pre[None, :]
            )  # pre spike reads post trace
            y_post.add_(s_post)
            if (t + 1) % window_ms == 0:
                fc.weight.grad = -acc.update(fc.weight)  # the optimizer minimizes: grad = -Δw
                opt.step()
                opt.zero_grad()
                acc.clear()
                times.append((t + 1) * dt)
                weights.append(fc.weight.detach()[0].clone())

    w = torch.stack(weights)
    post = torch.tensor(post_counts)
    tenth = max(1, steps // 10)
    return {
        "times_s": torch.tensor(times),
        "weights": w,
        "w_initial": w[0],
        "w_final": w[-1],
        "n_correlated": n_correlated,
        "mean_correlated": float(w[-1, :n_correlated].mean()),
        "mean_independent": float(w[-1, n_correlated:].mean()),
        "out_rate_hz_start": float(post[:tenth].mean() / dt),
        "out_rate_hz_end": float(post[-tenth:].mean() / dt),
        "frac_at_bounds": float(((w[-1] < 0.01) | (w[-1] > 0.99)).float().mean()),
    }


def plot(result: dict, out: Path) -> list[Path]:
    """Writes the weight-trajectory and weight-histogram PNGs; returns their paths."""
    plt = pyplot()
    t, w, nc = result["times_s"].numpy(), result["weights"].numpy(), result["n_correlated"]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for i in range(w.shape[1]):
        ax.plot(t, w[:, i], color="tab:red" if i < nc else "tab:blue", lw=0.6, alpha=0.35)
    ax.plot(
        t, w[:, :nc].mean(1), color="darkred", lw=2.2, label=f"correlated inputs (n={nc}), mean"
    )
    ax.plot(
        t,
        w[:, nc:].mean(1),
        color="navy",
        lw=2.2,
        label=f"independent inputs (n={w.shape[1] - nc}), mean",
    )
    ax.set(
        xlabel="time (s)",
        ylabel="synaptic weight w (a.u., bounds [0, 1])",
        ylim=(-0.02, 1.02),
        title="Soft-bounded pair STDP: weight trajectories",
    )
    ax.legend(loc="lower left", frameon=False)
    p = save(fig, out, "weight_trajectories.png", dpi=130)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    bins = [i / 40 for i in range(41)]
    ax.hist(result["w_initial"].numpy(), bins=bins, color="0.6", label="initial (all inputs)")
    ax.hist(w[-1, :nc], bins=bins, color="tab:red", alpha=0.75, label="final, correlated")
    ax.hist(w[-1, nc:], bins=bins, color="tab:blue", alpha=0.75, label="final, independent")
    ax.set(
        xlabel="synaptic weight w (a.u.)",
        ylabel="number of synapses",
        title=f"Weight distribution after {t[-1]:.0f} s of STDP (soft multiplicative bounds)",
    )
    ax.legend(frameon=False)
    p = save(fig, out, "weight_histogram.png", dpi=130)
    paths.append(p)
    return paths


def run(out: str | Path | None = "results", **kwargs) -> dict:
    """Simulates, prints the headline numbers, writes PNGs to ``out`` (if given)."""
    start = time.perf_counter()
    result = simulate(**kwargs)
    result["paths"] = plot(result, Path(out)) if out is not None else []
    result["wall_s"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results", help="folder for the PNGs (default: results)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="simulated seconds (default: 60)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run(args.out, duration_s=args.duration, seed=args.seed)
    print(f"simulated {args.duration:.0f} s in {r['wall_s']:.1f} s wall time")
    nc, w0 = r["n_correlated"], r["w_initial"]
    print(f"mean weight, correlated inputs : {w0[:nc].mean():.3f} -> {r['mean_correlated']:.3f}")
    print(f"mean weight, independent inputs: {w0[nc:].mean():.3f} -> {r['mean_independent']:.3f}")
    print(f"fraction of weights within 0.01 of a bound: {r['frac_at_bounds']:.3f}")
    rate0, rate1 = r["out_rate_hz_start"], r["out_rate_hz_end"]
    print(f"output rate: {rate0:.1f} Hz (first 10 %) -> {rate1:.1f} Hz (last 10 %)")
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
