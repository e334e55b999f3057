"""Clopath et al. (2010): voltage-based STDP reproduces the pairing-frequency data of Sjöström (2001).

Clopath, Büsing, Vasilaki & Gerstner, "Connectivity reflects coding: a model of voltage-based
STDP with homeostasis", Nat Neurosci 13:344 (2010), Fig. 2b. Pairs of one pre and one post
spike, Δt = +10 ms (pre first) or −10 ms (post first), 5 pairs per burst at 0.1–50 Hz, bursts
10 s apart, 75 pairings (50 at 0.1 Hz), as in Sjöström et al. (2001) and the authors' MATLAB
code (ModelDB 144566). The postsynaptic neuron is the paper's AdEx (``models._adex.AdEx``:
2 ms spike plateau at 29.4 mV, depolarizing afterpotential, adaptive threshold); each post
spike is evoked by a 1 ms current pulse, the pre spike does not depolarize it (as in the
authors' code). The rule has the paper's visual-cortex parameters and no homeostasis
(A_LTD constant: the paper fixes ū̄ for this experiment). Weight change = Δw / w₀, w₀ = 0.5.

The rule reads the low-pass filtered voltages ``delay_ms`` back (default 4 ms, the authors'
code and NEST's ``delay_u_bars``): the filters then hold the voltage from before the spike, so
a post spike's own 2 ms plateau does not gate its own potentiation. ``run`` also reports the
same recordings read one step back (``one_step``), the engine's default discretization.

Fig. 4 at small size (``models._clopath_network``): two 10-neuron recurrent networks, one
driven by a rate code, one by a temporal code, learn for 100 s; the connectivity follows the
code (``clopath_connectivity.png``).

Run ``python -m models.clopath --out results`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

import plasticity as pl

from . import _sjostrom2001 as data
from ._adex import AdEx
from ._figures import pyplot, save

# Clopath et al. (2010) Table 1b, visual cortex; the same in the authors' FrequencyDependence.m
# (par = [14e-5, 8e-5, 7, 15, 10]) and NEST's clopath_synapse example
VISUAL_CORTEX = {
    "a_ltd": 14e-5,  # mV⁻¹
    "a_ltp": 8e-5,  # mV⁻²
    "theta_minus": -70.6,  # mV
    "theta_plus": -45.3,  # mV
    "tau_minus": 10.0,  # ms
    "tau_plus": 7.0,  # ms
    "tau_x": 15.0,  # ms
}
W0 = 0.5  # initial weight of the authors' code: change (%) = 100 · Δw / w₀
FREQUENCIES = (0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)
PULSE_PA = 5e4  # 1 ms, 50 nA: crosses the spike threshold within the step (the authors': 1 µA)


def _clopath_dw(synapse, neuron, pre: Tensor, post: Tensor, u: Tensor, *, delay: int, dt: float):
    """(ltp, ltd) of a recorded window, ``[N_out, N_in]`` (batch mean): ``pl.Clopath`` with
    the filtered potentials read ``delay`` steps back, learning from ``rule.observe``."""
    rule = pl.Clopath(synapse, neuron, **VISUAL_CORTEX, delay=delay * dt, dt=dt)
    rule.detach()  # recorded spikes and potentials only, no hooks
    rule.observe(pre, post, voltage=u)
    rule.flush()
    zero = torch.zeros_like(synapse.weight)
    acc = rule.accumulator
    return (zero if acc.pos is None else acc.pos), (zero if acc.neg is None else acc.neg)


def pairing_protocol(
    frequencies,
    *,
    lag_ms: float = 10.0,
    pairs: int = 5,
    dt: float = 1.0,
    trailing_post: bool = False,
) -> tuple[Tensor, Tensor, np.ndarray]:
    """One burst per condition, the conditions side by side as neurons.

    Returns pre spikes and the injected current (pA), ``[T, 1, 2F]`` (Δt = +lag for the first
    F neurons, −lag for the next F), and the number of bursts each condition stands for.
    Bursts are 10 s apart, which the neuron and the rule forget entirely (slowest time
    constant 144 ms), and nothing changes the weight outside a burst (LTD needs a pre spike,
    LTP u > θ₊, i.e. a post spike), so one burst times the number of bursts is the whole
    protocol. At 0.1 Hz the pairs are 10 s apart too: one pair, 50 times.
    ``trailing_post``: the authors' MATLAB trains, whose post→pre bursts hold a 6th post
    spike one period after the 5th (their train runs one step longer than the pre train).
    """
    lag = round(lag_ms / dt)
    bad = [f for f in frequencies if not 0 < f < 1000.0 / lag_ms]
    if bad:
        raise ValueError(f"frequencies {bad} leave no room for the {lag_ms} ms lag in a period")
    conds = [(f, s * lag) for s in (1, -1) for f in frequencies]
    layout = []
    for f, d in conds:
        n = 1 if f <= 0.1 else pairs
        period = round(1000.0 / f / dt)
        pre_t = [1 + lag + k * period for k in range(n)]
        post_t = [t + d for t in pre_t]
        if trailing_post and d < 0 and n > 1:
            post_t.append(post_t[-1] + period)
        layout.append((pre_t, post_t, 50 if f <= 0.1 else 15))
    steps = max(max(p + q) for p, q, _ in layout) + round(10 / dt)
    pre = torch.zeros(steps, 1, len(conds), dtype=torch.float64)
    current = torch.zeros_like(pre)
    for i, (pre_t, post_t, _) in enumerate(layout):
        pre[pre_t, 0, i] = 1.0
        current[post_t, 0, i] = PULSE_PA / dt
    return pre, current, np.array([b for _, _, b in layout], dtype=float)


def simulate(pre: Tensor, current: Tensor, *, dt: float = 1.0, transmit: float = 0.0, **adex):
    """Drives ``AdEx`` through a synapse step by step (so rule hooks would see both sides).

    Returns the synapse, the neuron and the recorded post spikes and membrane potential."""
    n = pre.shape[-1]
    synapse = torch.nn.Linear(n, n, bias=False, dtype=torch.float64)
    torch.nn.init.constant_(synapse.weight, W0)
    neuron = AdEx(dt=dt, **adex)
    spikes, mem = torch.empty_like(current), torch.empty_like(current)
    with torch.no_grad():
        for t in range(pre.shape[0]):
            spikes[t], mem[t] = neuron(transmit * synapse(pre[t]) + current[t])
    return synapse, neuron, spikes, mem


def frequency_experiment(
    frequencies, *, delay_ms: float = 4.0, dt: float = 1.0, trailing_post: bool = False, **adex
) -> dict:
    """Weight change (%) per frequency for both orders, read ``delay_ms`` back and one step back."""
    pre, current, bursts = pairing_protocol(frequencies, dt=dt, trailing_post=trailing_post)
    synapse, neuron, spikes, mem = simulate(pre, current, dt=dt, **adex)
    if not torch.equal(spikes > 0, current > 0):
        raise RuntimeError("the AdEx neuron missed or added a post spike; raise PULSE_PA")
    f = len(frequencies)
    out = {"spikes": spikes, "mem": mem, "pre": pre}
    for name, delay in (("delayed", round(delay_ms / dt)), ("one_step", 1)):
        ltp, ltd = _clopath_dw(synapse, neuron, pre, spikes, mem, delay=delay, dt=dt)
        change = 100.0 * bursts * torch.diagonal(ltp - ltd).numpy() / W0
        out[name] = {"pre_post": change[:f], "post_pre": change[f:]}
    return out


def run(
    out: str | Path | None = "results",
    *,
    frequencies=FREQUENCIES,
    delay_ms: float = 4.0,
    codes_seconds: int = 100,
    codes_speedup: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    **adex: float,
) -> dict:
    """Fig. 2b: the model's weight change beside Sjöström's data (``clopath_frequency.png``);
    Fig. 4 at small size: connectivity under a rate and a temporal code
    (``clopath_connectivity.png``, skipped with ``codes_seconds=0``).

    Returns ``frequencies``, ``pre_post``/``post_pre`` (%, filters read ``delay_ms`` back),
    ``one_step`` (same, read one step back), ``at_data`` (both readings at the data's
    frequencies), ``z`` ((model − data)/s.e.m. at the data points, delayed reading),
    ``authors_trains``, ``codes`` and ``codes_summary`` (see ``models._clopath_network``;
    ``codes_seconds`` 1-s windows, amplitudes × ``codes_speedup``, Poisson ``seed``) and
    ``paths``. ``adex`` overrides the neuron's parameters (e.g. ``b_pa=80.5``).
    """
    from . import _clopath_network as network

    bar = tqdm(total=3, desc="clopath", disable=not progress)
    curve = frequency_experiment(frequencies, delay_ms=delay_ms, **adex)
    bar.update()
    at = frequency_experiment(data.FREQUENCY_HZ, delay_ms=delay_ms, **adex)
    bar.update()
    authors = frequency_experiment(data.FREQUENCY_HZ, delay_ms=delay_ms, trailing_post=True, **adex)
    bar.update()
    bar.close()
    z = {
        order: (at["delayed"][order] - np.array(mean)) / np.array(sem)
        for order, mean, sem in (
            ("pre_post", data.PRE_POST, data.PRE_POST_SEM),
            ("post_pre", data.POST_PRE, data.POST_PRE_SEM),
        )
    }
    res = {
        "frequencies": np.array(frequencies, dtype=float),
        "pre_post": curve["delayed"]["pre_post"],
        "post_pre": curve["delayed"]["post_pre"],
        "one_step": curve["one_step"],
        "at_data": {"delayed": at["delayed"], "one_step": at["one_step"]},
        "authors_trains": authors["delayed"],
        "z": z,
        "max_abs_z": float(max(np.abs(v).max() for v in z.values())),
        "paths": [],
    }
    if codes_seconds:
        res["codes"] = network.develop(
            seconds=codes_seconds,
            speedup=codes_speedup,
            seed=seed,
            delay=round(delay_ms),
            progress=progress,
        )
        res["codes_summary"] = network.summary(res["codes"])
    if out is not None:
        res["paths"].append(_figure(res, Path(out), delay_ms))
        if codes_seconds:
            res["paths"].append(network.figure(res["codes"], res["codes_summary"], Path(out)))
    return res


def _burst_trace(delay_ms: float) -> dict:
    """The membrane potential and its filters during a post→pre burst at 50 Hz (panel A)."""
    pre, current, _ = pairing_protocol((50.0,), pairs=3)
    _, _, spikes, mem = simulate(pre[:, :, 1:], current[:, :, 1:])
    u = mem[:, 0, 0].numpy()
    filt = {}
    for name, tau in (
        ("u_minus", VISUAL_CORTEX["tau_minus"]),
        ("u_plus", VISUAL_CORTEX["tau_plus"]),
    ):
        d, v, trace = math.exp(-1.0 / tau), u[0], []
        for x in u:
            v = d * v + (1 - d) * x
            trace.append(v)
        filt[name] = np.array(trace)
    return {"u": u, "pre": pre[:, 0, 1].numpy(), "post": spikes[:, 0, 0].numpy(), **filt}


def _figure(res: dict, out: Path, delay_ms: float) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6), constrained_layout=True)
    tr = _burst_trace(delay_ms)
    t = np.arange(tr["u"].size)
    ax = axes[0]
    ax.plot(t, tr["u"], color="0.2", lw=1.0, label="u")
    ax.plot(t, tr["u_minus"], color="tab:blue", lw=1.2, label="ū₋ (τ₋ = 10 ms)")
    ax.plot(t, tr["u_plus"], color="tab:red", lw=1.2, label="ū₊ (τ₊ = 7 ms)")
    for theta, name in ((VISUAL_CORTEX["theta_minus"], "θ₋"), (VISUAL_CORTEX["theta_plus"], "θ₊")):
        ax.axhline(theta, color="0.5", ls=":", lw=0.8)
        ax.text(t[-1], theta + 1.0, name, ha="right", va="bottom", fontsize=8, color="0.4")
    for k in np.flatnonzero(tr["pre"]):
        ax.plot([k, k], [36, 42], color="tab:green", lw=1.5)
    ax.text(2, 38, "pre", color="tab:green", fontsize=8, va="center")
    ax.set(
        xlabel="time (ms)",
        ylabel="membrane potential (mV)",
        ylim=(-75, 45),
        title="post→pre pairs at 50 Hz (AdEx neuron)",
    )
    ax.legend(frameon=False, fontsize=8, loc="center right")
    f = res["frequencies"]
    for ax, reading, title in (
        (axes[1], None, f"filters read {delay_ms:g} ms back (authors' code)"),
        (axes[2], "one_step", "filters read one step back"),
    ):
        ax.axhline(0, color="0.6", lw=0.8)
        model = res if reading is None else res["one_step"]
        at = res["at_data"]["delayed" if reading is None else "one_step"]
        for order, mean, sem, color, marker, label in (
            ("pre_post", data.PRE_POST, data.PRE_POST_SEM, "tab:red", "o", "pre→post, +10 ms"),
            ("post_pre", data.POST_PRE, data.POST_PRE_SEM, "tab:blue", "s", "post→pre, −10 ms"),
        ):
            ax.plot(f, model[order], "-", color=color, lw=1.8, label=f"model {label}")
            ax.errorbar(
                data.FREQUENCY_HZ,
                mean,
                yerr=sem,
                fmt=marker,
                color=color,
                mfc="white",
                capsize=3,
                ms=5,
                label=f"Sjöström 2001 {label}",
            )
            low = (8, 3) if order == "pre_post" else (8, -10)
            for x, y, offset in ((0.1, at[order][0], low), (50.0, at[order][-1], (7, -3))):
                ax.annotate(
                    f"{y:+.0f}",
                    (x, y),
                    textcoords="offset points",
                    xytext=offset,
                    fontsize=7,
                    color=color,
                )
        ax.set(
            xlabel="pairing frequency (Hz)",
            ylabel="weight change (% of w₀)",
            title=title,
            ylim=(-60, 140),
        )
    axes[1].legend(frameon=False, fontsize=7, loc="upper left")
    axes[1].text(
        0.98,
        0.03,
        f"max |model − data| = {res['max_abs_z']:.1f} s.e.m.\n75 pairings (50 at 0.1 Hz), w₀ = 0.5",
        transform=axes[1].transAxes,
        ha="right",
        fontsize=7,
    )
    for ax, letter in zip(axes, "ABC", strict=True):
        ax.title.set_fontsize(9)
        ax.text(-0.2, 1.04, letter, transform=ax.transAxes, fontsize=13, fontweight="bold")
    return save(fig, out, "clopath_frequency.png", dpi=150)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    parser.add_argument("--delay-ms", type=float, default=4.0)
    parser.add_argument("--codes-seconds", type=int, default=100)
    parser.add_argument("--codes-speedup", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run(
        args.out,
        delay_ms=args.delay_ms,
        codes_seconds=args.codes_seconds,
        codes_speedup=args.codes_speedup,
        seed=args.seed,
    )
    d, o = r["at_data"]["delayed"], r["at_data"]["one_step"]
    print(
        "frequency | pre→post model / data | post→pre model / data | one step back: pre→post, post→pre  (%)"
    )
    for k, f in enumerate(data.FREQUENCY_HZ):
        print(
            f"{f:6.1f} Hz | {d['pre_post'][k]:+7.1f} / {data.PRE_POST[k]:+4.0f} ± {data.PRE_POST_SEM[k]:2.0f}"
            f" | {d['post_pre'][k]:+7.1f} / {data.POST_PRE[k]:+4.0f} ± {data.POST_PRE_SEM[k]:2.0f}"
            f" | {o['pre_post'][k]:+7.1f}, {o['post_pre'][k]:+7.1f}"
        )
    print(
        f"max |model - data| = {r['max_abs_z']:.2f} s.e.m. (filters read {args.delay_ms:g} ms back)"
    )
    a = r["authors_trains"]
    print(
        "with the authors' trains (6th post spike): post→pre "
        + ", ".join(f"{v:+.1f}" for v in a["post_pre"])
    )
    if "codes_summary" in r:
        c = r["codes_summary"]
        print(
            f"rate code: mean weight onto the 5 fastest neurons {c['rate_onto_fast']:.3f} nA "
            f"(among them {c['rate_among_fast']:.3f}), onto the 5 slowest "
            f"{c['rate_onto_slow']:.3f} nA; strong bidirectional pairs "
            f"{c['rate_bidirectional_pairs']} ({c['rate_bidirectional_among_fast']} among the fast)"
        )
        print(
            f"temporal code: next in sequence {c['temporal_forward']:.3f} nA, previous "
            f"{c['temporal_backward']:.3f} nA; strong bidirectional pairs "
            f"{c['temporal_bidirectional_pairs']}"
        )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
