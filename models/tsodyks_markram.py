"""Depressing and facilitating EPSC trains: Tsodyks & Markram (1997), Markram, Wang & Tsodyks (1998).

A presynaptic neuron fires 8 spikes at 20 Hz and a recovery spike 500 ms after the last
one. Its synapse (``nn.Linear(1, 1)``, weight A_SE in pA) is wrapped by
``pl.ShortTermPlasticity`` and drives an ``snn.Synaptic`` whose synaptic current is the
EPSC: ``syn ← e^{-dt/τ_syn}·syn + A·u·x·s``, an exact exponential current at every step.
The two parameter sets are those of Tsodyks, Pawelzik & Markram (1998), Fig. 1:

* depressing (pyramid → pyramid, Tsodyks & Markram 1997): U = 0.5, τ_rec = 800 ms, no
  facilitation, A = 250 pA, τ_syn = 3 ms;
* facilitating (pyramid → interneuron, Markram et al. 1998): U = 0.03, τ_rec = 130 ms,
  τ_fac = 530 ms, A = 1540 pA, τ_syn = 1.5 ms.

Each EPSC's amplitude (the current's jump at the spike, above the decaying previous
EPSC) is compared with the papers' recurrence over the interspike intervals, and the
stationary EPSC at regular rates 1–100 Hz (one batch, each rate a sample with its own
state) with its closed form: above about 1/(U·τ_rec) a depressing synapse transmits
A/(τ_rec·f) whatever U (Tsodyks & Markram 1997), a facilitating one peaks at an
intermediate rate.

Run ``python -m models.tsodyks_markram --out results``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from tqdm import tqdm

import plasticity as pl

from ._figures import pyplot, save

SYNAPSES = {
    "depressing": dict(U=0.5, tau_rec=800.0, tau_fac=None, amplitude_pa=250.0, tau_syn=3.0),
    "facilitating": dict(U=0.03, tau_rec=130.0, tau_fac=530.0, amplitude_pa=1540.0, tau_syn=1.5),
}
RATES_HZ = (1.0, 2.0, 4.0, 5.0, 8.0, 10.0, 20.0, 25.0, 40.0, 50.0, 100.0)
COLORS = {"depressing": "tab:blue", "facilitating": "tab:red"}


def markram_releases(times_ms, *, U, tau_rec, tau_fac, **_) -> np.ndarray:
    """u_n·R_n of each spike (Markram et al. 1998): u_1 = U, R_1 = 1,
    u_{n+1} = U + (1 − U)·u_n·e^{−Δ/τ_fac}, R_{n+1} = 1 − (1 − R_n(1 − u_n))·e^{−Δ/τ_rec}."""
    u, r, out = U, 1.0, []
    for n, t in enumerate(times_ms):
        if n:
            gap = t - times_ms[n - 1]
            fac = 0.0 if tau_fac is None else math.exp(-gap / tau_fac)
            u, r = U + (1 - U) * u * fac, 1 - (1 - r * (1 - u)) * math.exp(-gap / tau_rec)
        out.append(u * r)
    return np.array(out)


def stationary_release(rate_hz: float, *, U, tau_rec, tau_fac, **_) -> float:
    """u*·R* of a regular train: u* = U / (1 − (1 − U)e^{−Δ/τ_fac}),
    R* = (1 − e^{−Δ/τ_rec}) / (1 − (1 − u*)e^{−Δ/τ_rec})."""
    gap = 1000.0 / rate_hz
    fac = 0.0 if tau_fac is None else math.exp(-gap / tau_fac)
    rec = math.exp(-gap / tau_rec)
    u = U / (1 - (1 - U) * fac)
    return u * (1 - rec) / (1 - (1 - u) * rec)


def train_steps(n_spikes: int, rate_hz: float, recovery_ms: float, dt: float, lead_ms=20.0):
    """Spike steps of the protocol and the number of steps (100 ms after the last spike)."""
    period = round(1000.0 / rate_hz / dt)
    first = round(lead_ms / dt)
    steps = [first + k * period for k in range(n_spikes)]
    steps.append(steps[-1] + round(recovery_ms / dt))
    return steps, steps[-1] + round(100.0 / dt)


def synapse(name: str, dt: float):
    """Linear(1, 1) with weight A (pA) under short-term plasticity, and its snn.Synaptic."""
    p = SYNAPSES[name]
    fc = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        fc.weight.fill_(p["amplitude_pa"])
    stp = pl.ShortTermPlasticity(fc, U=p["U"], tau_rec=p["tau_rec"], tau_fac=p["tau_fac"], dt=dt)
    alpha = math.exp(-dt / p["tau_syn"])
    # a passive target: only its synaptic current (the EPSC) is read
    neuron = snn.Synaptic(alpha=alpha, beta=0.9, threshold=1e30, reset_mechanism="none")
    return fc, stp, neuron, alpha


def epsc_train(name: str, dt: float, n_spikes: int, rate_hz: float, recovery_ms: float, progress):
    steps, T = train_steps(n_spikes, rate_hz, recovery_ms, dt)
    spikes = torch.zeros(T, 1, 1, dtype=torch.float64)
    spikes[steps] = 1.0
    fc, stp, neuron, alpha = synapse(name, dt)
    syn, mem = neuron.init_synaptic()
    current = np.empty(T)
    with torch.no_grad():
        for t in tqdm(range(T), desc=name, disable=not progress, leave=False):
            _, syn, mem = neuron(fc(spikes[t]), syn, mem)
            current[t] = syn.item()
    stp.detach()
    # the EPSC amplitude: the jump at the spike, above the decay of the EPSCs before it
    amplitudes = np.array([current[k] - alpha * current[k - 1] for k in steps])
    return np.arange(T) * dt, current, np.array(steps) * dt, amplitudes


def stationary(name: str, rates_hz, duration_s: float, dt: float) -> np.ndarray:
    """The last EPSC (pA) of regular trains at each rate over ``duration_s``: one batch,
    each rate a sample with its own state, the whole sequence in one call."""
    T = round(duration_s * 1000.0 / dt)
    spikes = torch.zeros(T, len(rates_hz), 1, dtype=torch.float64)
    last = []
    for b, rate in enumerate(rates_hz):
        period = round(1000.0 / rate / dt)
        spikes[::period, b] = 1.0
        last.append((T - 1) // period * period)
    fc, stp, _, _ = synapse(name, dt)
    with torch.no_grad():
        out = fc(spikes)[:, :, 0]  # [T, B] transmitted A·u·x·s
    stp.detach()
    return np.array([out[k, b].item() for b, k in enumerate(last)])


def run(
    out: str | Path | None = "results",
    *,
    dt: float = 0.1,
    n_spikes: int = 8,
    rate_hz: float = 20.0,
    recovery_ms: float = 500.0,
    rates_hz=RATES_HZ,
    stationary_s: float = 20.0,
    stationary_dt: float = 1.0,
    progress: bool = True,
) -> dict:
    """EPSC trains and stationary EPSCs of both synapses; PNG ``tsodyks_markram.png``."""
    res: dict = {"rates_hz": np.array(rates_hz), "paths": []}
    for name, p in tqdm(SYNAPSES.items(), desc="tsodyks_markram", disable=not progress):
        time, current, spike_times, amp = epsc_train(
            name, dt, n_spikes, rate_hz, recovery_ms, progress
        )
        analytic = p["amplitude_pa"] * markram_releases(list(spike_times), **p)
        st_model = stationary(name, rates_hz, stationary_s, stationary_dt)
        st_analytic = np.array([p["amplitude_pa"] * stationary_release(f, **p) for f in rates_hz])
        res[name] = {
            "time_ms": time,
            "epsc_pa": current,
            "spike_times_ms": spike_times,
            "amplitudes_pa": amp,
            "analytic_pa": analytic,
            "relative": amp / amp[0],
            "analytic_relative": analytic / analytic[0],
            "ratio_last_first": amp[n_spikes - 1] / amp[0],
            "analytic_ratio_last_first": analytic[n_spikes - 1] / analytic[0],
            "recovery_relative": amp[-1] / amp[0],
            "analytic_recovery_relative": analytic[-1] / analytic[0],
            "stationary_relative": stationary_release(rate_hz, **p) / p["U"],
            "max_relative_error": float(np.max(np.abs(amp - analytic) / analytic)),
            "stationary_pa": st_model,
            "stationary_analytic_pa": st_analytic,
            "stationary_max_relative_error": float(
                np.max(np.abs(st_model - st_analytic) / st_analytic)
            ),
        }
    if out is not None:
        res["paths"].append(figure(res, Path(out), n_spikes, rate_hz, recovery_ms))
    return res


def figure(res: dict, out: Path, n_spikes: int, rate_hz: float, recovery_ms: float) -> Path:
    plt = pyplot()
    plt.rcParams.update({"font.size": 8})
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 5.6), constrained_layout=True)
    for ax, name in zip(axes[0], SYNAPSES, strict=True):
        r, p = res[name], SYNAPSES[name]
        ax.plot(r["time_ms"], r["epsc_pa"], color=COLORS[name], lw=0.9)
        ax.plot(
            r["spike_times_ms"],
            -0.06 * r["amplitudes_pa"].max() + 0 * r["spike_times_ms"],
            "|",
            color="k",
            ms=6,
        )
        tau_fac = "" if p["tau_fac"] is None else f", τ_fac {p['tau_fac']:.0f} ms"
        ax.set(xlabel="time (ms)", ylabel="EPSC (pA)")
        ax.set_title(
            f"{name}: U {p['U']}, τ_rec {p['tau_rec']:.0f} ms{tau_fac}, A {p['amplitude_pa']:.0f} pA",
            fontsize=7.5,
        )
        ax.text(
            0.98,
            0.96,
            f"EPSC₁ = {r['amplitudes_pa'][0]:.1f} pA\n"
            f"EPSC₈/EPSC₁ = {r['ratio_last_first']:.3f} (analytic {r['analytic_ratio_last_first']:.3f})\n"
            f"recovery/EPSC₁ = {r['recovery_relative']:.3f} (analytic {r['analytic_recovery_relative']:.3f})",
            transform=ax.transAxes,
            ha="right",
            va="top",
        )
    ax = axes[1, 0]
    index = np.arange(1, n_spikes + 2)
    for name in SYNAPSES:
        r = res[name]
        ax.plot(index, r["analytic_relative"], "-", color=COLORS[name], lw=0.8, alpha=0.7)
        ax.plot(index, r["relative"], "o", color=COLORS[name], ms=4, label=f"{name} (model)")
        ax.axhline(r["stationary_relative"], color=COLORS[name], ls=":", lw=0.8)
        ax.text(
            0.9,
            r["stationary_relative"],
            f"stationary {r['stationary_relative']:.3f}",
            color=COLORS[name],
            va="bottom",
            ha="left",
        )
    ax.plot([], [], "-", color="0.4", label="analytic (recurrence)")
    ax.plot([], [], ":", color="0.4", label=f"analytic stationary, {rate_hz:.0f} Hz")
    ax.set_yscale("log")
    ax.set_ylim(0.07, 40)
    ax.set_xticks(index, [str(i) for i in index[:-1]] + [f"+{recovery_ms / 1000:.1f} s"])
    ax.set(
        xlabel="spike",
        ylabel="EPSC / EPSC₁",
        title=f"{n_spikes} spikes at {rate_hz:.0f} Hz, then recovery",
    )
    ax.legend(frameon=False, loc="upper center", ncol=2, fontsize=7)
    ax = axes[1, 1]
    rates = res["rates_hz"]
    fine = np.geomspace(rates.min(), rates.max(), 200)
    for name, p in SYNAPSES.items():
        r = res[name]
        curve = [p["amplitude_pa"] * stationary_release(f, **p) for f in fine]
        ax.plot(fine, curve, "-", color=COLORS[name], lw=0.8, alpha=0.7)
        ax.plot(rates, r["stationary_pa"], "o", color=COLORS[name], ms=4, label=f"{name} (model)")
    p = SYNAPSES["depressing"]
    ax.plot(
        fine,
        p["amplitude_pa"] * 1000.0 / (p["tau_rec"] * fine),
        "--",
        color="0.4",
        lw=0.8,
        label="A/(τ_rec·f), depressing",
    )
    limit = 1000.0 / (p["U"] * p["tau_rec"])
    ax.axvline(limit, color=COLORS["depressing"], ls=":", lw=0.8)
    ax.text(
        limit * 1.1,
        1.3,
        f"1/(U·τ_rec) = {limit:.1f} Hz",
        color=COLORS["depressing"],
        ha="left",
        va="bottom",
        fontsize=7,
    )
    ax.plot([], [], "-", color="0.4", label="analytic (closed form)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="presynaptic rate (Hz)",
        ylabel="stationary EPSC (pA)",
        title="stationary EPSC vs rate",
        ylim=(1, 1e4),
    )
    err = max(res[n]["stationary_max_relative_error"] for n in SYNAPSES)
    ax.legend(
        frameon=False,
        loc="upper right",
        fontsize=7,
        title=f"model vs analytic: max rel. error {err:.0e}",
        title_fontsize=7,
    )
    for ax, letter in zip(axes.flat, "ABCD", strict=True):
        ax.text(-0.14, 1.04, letter, transform=ax.transAxes, fontsize=11, fontweight="bold")
    return save(fig, out, "tsodyks_markram.png", dpi=150)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    r = run(args.out)
    for name in SYNAPSES:
        s = r[name]
        print(
            f"{name:12s} EPSC1 = {s['amplitudes_pa'][0]:.1f} pA, EPSC8/EPSC1 = {s['ratio_last_first']:.4f} "
            f"(analytic {s['analytic_ratio_last_first']:.4f}), recovery/EPSC1 = {s['recovery_relative']:.4f} "
            f"(analytic {s['analytic_recovery_relative']:.4f}), stationary/EPSC1 at 20 Hz = "
            f"{s['stationary_relative']:.4f}, max rel. error {s['max_relative_error']:.1e}"
        )
        print(
            "             stationary EPSC (pA) at "
            + ", ".join(
                f"{f:g} Hz: {v:.1f}" for f, v in zip(r["rates_hz"], s["stationary_pa"], strict=True)
            )
        )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
