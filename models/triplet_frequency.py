"""Pairing frequency: the triplet rule gives LTP for both spike orders at high frequency; pair STDP cannot.

Sjöström et al. (2001) protocol as simulated by Pfister & Gerstner (2006): 60 pairings of
one pre and one post spike, Δt = +10 ms (pre first) or −10 ms (post first), repeated at
0.1–50 Hz (dt = 1 ms). The triplet rule uses the paper's visual-cortex all-to-all minimal
parameters; pair STDP uses τ₊ = 16.8 ms, τ₋ = 33.7 ms, A₊ = 5e-3, A₋ = 5.25e-3.

Run ``python -m models.triplet_frequency --out results``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from tqdm import tqdm

import plasticity as pl

from ._figures import pyplot, save

FREQUENCIES = (0.1, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0)
PAIR = {"a_plus": 5e-3, "a_minus": 5.25e-3, "tau_plus": 16.8, "tau_minus": 33.7}


def protocol(frequency_hz: float, lag_ms: int, pairings: int = 60, dt: float = 1.0):
    """Pre and post trains ``[T, 1, 1]`` for one frequency and lag (post − pre)."""
    period = int(round(1000.0 / frequency_hz / dt))
    offset = abs(lag_ms) + 1
    steps = offset + pairings * period + abs(lag_ms) + 1
    pre = torch.zeros(steps, 1, 1)
    post = torch.zeros(steps, 1, 1)
    for k in range(pairings):
        pre[offset + k * period] = 1.0
        post[offset + k * period + lag_ms] = 1.0
    return pre, post


def weight_change(rule_factory, pre: torch.Tensor, post: torch.Tensor) -> float:
    rule = rule_factory()
    for start in range(0, pre.shape[0], 20_000):
        rule.observe(pre[start : start + 20_000], post[start : start + 20_000])
    return float(rule.step())


def run(
    out: str | Path | None = "results",
    *,
    frequencies=FREQUENCIES,
    pairings: int = 60,
    progress: bool = True,
) -> dict:
    """Δw after the protocol for each frequency, order and rule; PNG ``triplet_frequency.png``."""

    def triplet():
        return pl.TripletSTDP.from_preset(
            torch.nn.Linear(1, 1, bias=False),
            snn.Leaky(beta=0.5),
            "visual_cortex_all_to_all_minimal",
        )

    def pair():
        return pl.STDP(torch.nn.Linear(1, 1, bias=False), snn.Leaky(beta=0.5), **PAIR)

    results = {(rule, lag): [] for rule in ("triplet", "pair") for lag in (10, -10)}
    for f in tqdm(frequencies, desc="triplet_frequency", disable=not progress):
        for lag in (10, -10):
            pre, post = protocol(f, lag, pairings)
            results[("triplet", lag)].append(weight_change(triplet, pre, post))
            results[("pair", lag)].append(weight_change(pair, pre, post))
    res = {
        f"{rule}_{'pre_post' if lag > 0 else 'post_pre'}": np.array(v)
        for (rule, lag), v in results.items()
    }
    res["frequencies"] = np.array(frequencies)
    res["paths"] = []
    if out is not None:
        plt = pyplot()

        out = Path(out)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, constrained_layout=True)
        for ax, rule, title in (
            (axes[0], "triplet", "Triplet STDP (Pfister & Gerstner, visual cortex)"),
            (axes[1], "pair", "Pair STDP"),
        ):
            ax.axhline(0, color="0.6", lw=0.8)
            ax.plot(
                res["frequencies"],
                res[f"{rule}_pre_post"] * 100,
                "o-",
                color="tab:red",
                label="pre→post, Δt = +10 ms",
            )
            ax.plot(
                res["frequencies"],
                res[f"{rule}_post_pre"] * 100,
                "s-",
                color="tab:blue",
                label="post→pre, Δt = −10 ms",
            )
            ax.set(
                xlabel="pairing frequency (Hz)",
                ylabel=f"weight change after {pairings} pairings (% of w)",
                title=title,
            )
            ax.legend(frameon=False)
        path = save(fig, out, "triplet_frequency.png", dpi=130)
        res["paths"].append(path)
    return res


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    r = run(args.out)
    print("frequency (Hz) | triplet +10 | triplet -10 | pair +10 | pair -10   (Δw, % of w)")
    for k, f in enumerate(r["frequencies"]):
        print(
            f"{f:14.1f} | {100 * r['triplet_pre_post'][k]:11.2f} | {100 * r['triplet_post_pre'][k]:11.2f} "
            f"| {100 * r['pair_pre_post'][k]:8.2f} | {100 * r['pair_post_pre'][k]:8.2f}"
        )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
