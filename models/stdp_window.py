"""The STDP window from a Bi & Poo (1998) pairing protocol, and exponential fits that recover it.

For each lag Δt = t_post − t_pre in −100…100 ms, one presynaptic and one postsynaptic
spike are paired 60 times at 1 Hz (dt = 1 ms), as in Bi & Poo's experiments. Pair STDP
(`pl.STDP`, all-to-all, same-step pairs as LTP) gives the weight change per pairing;
exponentials fitted to each side recover A₊, τ₊, A₋, τ₋ (defaults: Bi & Poo's fit,
A₊ = 0.777, τ₊ = 16.8 ms, A₋ = 0.273, τ₋ = 33.7 ms).

Run ``python -m models.stdp_window --out results``.
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

BI_POO = {"a_plus": 0.777, "tau_plus": 16.8, "a_minus": 0.273, "tau_minus": 33.7}


def pairing_protocol(lags_ms, pairings: int = 60, period_ms: int = 1000, dt: float = 1.0):
    """Pre and post spike trains ``[T, 1, n_lags]``: one pre/post pair per period and lag."""
    lags = [int(round(lag / dt)) for lag in lags_ms]
    steps = int(pairings * period_ms / dt) + 2 * max(abs(x) for x in lags) + 2
    pre = torch.zeros(steps, 1, len(lags), dtype=torch.float64)
    post = torch.zeros_like(pre)
    offset = max(abs(x) for x in lags) + 1
    for k in range(pairings):
        base = offset + int(k * period_ms / dt)
        for j, lag in enumerate(lags):
            pre[base, 0, j] = 1.0
            post[base + lag, 0, j] = 1.0
    return pre, post


def fit_exponential(lags: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``(amplitude, tau)`` of ``values = amplitude * exp(-|lag| / tau)`` by a log-linear fit."""
    slope, intercept = np.polyfit(np.abs(lags), np.log(values), 1)
    return float(np.exp(intercept)), float(-1.0 / slope)


def run(
    out: str | Path | None = "results",
    *,
    a_plus: float = BI_POO["a_plus"],
    tau_plus: float = BI_POO["tau_plus"],
    a_minus: float = BI_POO["a_minus"],
    tau_minus: float = BI_POO["tau_minus"],
    pairings: int = 60,
    lags_ms: np.ndarray | None = None,
    progress: bool = True,
) -> dict:
    """Simulates the protocol, fits the window, writes ``stdp_window.png`` to ``out``."""
    lags = np.arange(-100, 101, 5) if lags_ms is None else np.asarray(lags_ms)
    pre, post = pairing_protocol(lags, pairings)
    n = len(lags)
    fc = torch.nn.Linear(n, n, bias=False).double()
    rule = pl.STDP(
        fc,
        snn.Leaky(beta=0.5),
        a_plus=a_plus,
        a_minus=a_minus,
        tau_plus=tau_plus,
        tau_minus=tau_minus,
    )
    chunk = 5000
    for start in tqdm(range(0, pre.shape[0], chunk), desc="stdp_window", disable=not progress):
        rule.observe(pre[start : start + chunk], post[start : start + chunk])
    dw = (rule.step().diagonal() / pairings).numpy()  # each lag's own pre/post pair
    ltp, ltd = lags > 0, lags < 0
    fa_plus, ftau_plus = fit_exponential(lags[ltp], dw[ltp])
    fa_minus, ftau_minus = fit_exponential(lags[ltd], -dw[ltd])
    fit = {"a_plus": fa_plus, "tau_plus": ftau_plus, "a_minus": fa_minus, "tau_minus": ftau_minus}
    truth = {"a_plus": a_plus, "tau_plus": tau_plus, "a_minus": a_minus, "tau_minus": tau_minus}
    errors = {k: abs(fit[k] - truth[k]) / truth[k] for k in fit}
    result = {
        "lags_ms": lags,
        "dw": dw,
        "fit": fit,
        "truth": truth,
        "relative_errors": errors,
        "paths": [],
    }
    if out is not None:
        pyplot()  # the Agg backend: this run writes files

        out = Path(out)
        fig, ax = pl.plot.stdp_window(
            lags, dw, fit=fit, title=f"STDP window: {pairings} pairings at 1 Hz per lag"
        )
        ax.set_ylabel("weight change per pairing Δw (fraction of w)")
        path = save(fig, out, "stdp_window.png", dpi=130)
        result["paths"].append(path)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    r = run(args.out)
    for k in ("a_plus", "tau_plus", "a_minus", "tau_minus"):
        print(
            f"{k:9s}: simulated {r['truth'][k]:.4g}, fitted {r['fit'][k]:.4g} (error {r['relative_errors'][k]:.2e})"
        )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
