"""Clopath et al. (2010) Fig. 4 at small size: connectivity reflects a rate or a temporal code.

Two recurrent networks of 10 AdEx neurons with all-to-all plastic connections (no self
connections), simulated side by side as one 20-neuron layer with block-diagonal weights.
Each neuron is made to fire by its own input (1 ms current pulses, as the Poisson or spike
source input of the paper and of Larisch's 2019 ReScience replication):

- rate code: Poisson spikes at 2, 4, …, 20 Hz (neuron k at 2k Hz); weights start at 0.1,
  bounded to [0, 0.25] nA;
- temporal code: neuron k fires at 20·k ms in every 200 ms cycle (a sequence, 5 Hz each);
  weights start at the bound 0.3 nA.

A presynaptic spike delivers ``1000·w`` pA for 1 ms to its targets (w = 0.25 nA: a 0.9 mV
EPSP). Weights are frozen over 1 s windows and updated after each by the rule (filters read
4 ms back, as in the frequency experiment), then clamped to the bounds. Simplifications: no
homeostasis (A_LTD fixed: the rule has none), amplitudes ×10 to learn in 10 s what the paper
learns in 100 s (the authors' code speeds up its weight-development runs the same way), and
the final weights rather than their average over the run.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ._adex import AdEx

N = 10
PA_PER_NA = 1000.0


def _imposed(code: str, steps: int, offset: int, gen: torch.Generator) -> torch.Tensor:
    """Spikes the input imposes on one network, ``[steps, N]``."""
    if code == "rate":
        rates = 2.0 * torch.arange(1, N + 1, dtype=torch.float64)  # Hz
        return (torch.rand(steps, N, generator=gen, dtype=torch.float64) < rates / 1000.0).double()
    spikes = torch.zeros(steps, N, dtype=torch.float64)
    for k in range(N):
        first = (20 * k - offset) % 200
        spikes[first::200, k] = 1.0
    return spikes


def develop(
    *, seconds: int = 10, speedup: float = 10.0, seed: int = 0, delay: int = 4, progress=False
) -> dict:
    """Weights after ``seconds`` 1-s windows: ``rate`` and ``temporal`` ``[post, pre]`` (nA),
    the final rates (Hz) and the weights after each window (``history``)."""
    from .clopath import PULSE_PA, _clopath_dw

    gen = torch.Generator().manual_seed(seed)
    bounds = {"rate": (0.1, 0.25), "temporal": (0.3, 0.3)}  # (w0, w_max)
    mask = torch.zeros(2 * N, 2 * N, dtype=torch.float64)
    mask[:N, :N] = mask[N:, N:] = 1.0
    mask.fill_diagonal_(0.0)
    w_max = torch.zeros_like(mask)
    w_max[:N, :N], w_max[N:, N:] = bounds["rate"][1], bounds["temporal"][1]
    synapse = torch.nn.Linear(2 * N, 2 * N, bias=False, dtype=torch.float64)
    neuron = AdEx()
    with torch.no_grad():
        synapse.weight.zero_()
        synapse.weight[:N, :N] = bounds["rate"][0]
        synapse.weight[N:, N:] = bounds["temporal"][0]
        synapse.weight.mul_(mask)
    last = torch.zeros(1, 2 * N, dtype=torch.float64)
    history, steps = [], 1000
    for window in tqdm(range(seconds), desc="clopath codes", disable=not progress):
        imposed = torch.cat(
            [_imposed("rate", steps, 0, gen), _imposed("temporal", steps, window * steps, gen)], 1
        ).unsqueeze(1)
        seen, spikes, mem = (torch.empty_like(imposed) for _ in range(3))
        with torch.no_grad():
            for t in range(steps):
                seen[t] = last  # the synapse's input: the layer's spikes of the previous step
                drive = PULSE_PA * imposed[t] + PA_PER_NA * synapse(last)
                spikes[t], mem[t] = neuron(drive)
                last = spikes[t]
        ltp, ltd = _clopath_dw(synapse, neuron, seen, spikes, mem, delay=delay, dt=1.0)
        with torch.no_grad():
            w = synapse.weight
            w.add_(speedup * (ltp - ltd) * mask)
            torch.minimum(w.clamp_(min=0.0), w_max, out=w)
        history.append(synapse.weight.detach().clone())
    w = history[-1].numpy()
    rates = spikes[:, 0].sum(0).numpy() / (steps / 1000.0)
    return {
        "rate": w[:N, :N],
        "temporal": w[N:, N:],
        "rates_hz": {"rate": rates[:N], "temporal": rates[N:]},
        "history": torch.stack(history).numpy(),
        "w_max": {k: v[1] for k, v in bounds.items()},
    }


def summary(res: dict) -> dict:
    """Headline numbers: strong (≥ 2/3 w_max) connection counts and mean weights by group."""
    rate, temporal = res["rate"], res["temporal"]
    off = ~np.eye(N, dtype=bool)
    strong = rate >= 2.0 / 3.0 * res["w_max"]["rate"]
    bidirectional = int(np.sum(strong & strong.T & off) // 2)
    strong_t = temporal >= 2.0 / 3.0 * res["w_max"]["temporal"]
    lag = (np.arange(N)[:, None] - np.arange(N)[None, :]) % N  # post index − pre index
    return {
        # rate code: mean weight onto the five fastest vs the five slowest neurons (rows = post)
        "rate_onto_fast": float(rate[5:][off[5:]].mean()),
        "rate_onto_slow": float(rate[:5][off[:5]].mean()),
        "rate_among_fast": float(rate[5:, 5:][off[5:, 5:]].mean()),
        "rate_bidirectional_pairs": bidirectional,
        "rate_bidirectional_among_fast": int(
            np.sum((strong & strong.T)[5:, 5:] & off[5:, 5:]) // 2
        ),
        # temporal code: the next neuron in the sequence vs the previous one
        "temporal_forward": float(temporal[lag == 1].mean()),
        "temporal_backward": float(temporal[lag == N - 1].mean()),
        "temporal_bidirectional_pairs": int(np.sum(strong_t & strong_t.T & off) // 2),
    }


def figure(res: dict, s: dict, out) -> object:
    """``clopath_connectivity.png``: both weight matrices and the temporal code by lag."""
    from ._figures import pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(10.5, 4.0),
        constrained_layout=True,
        gridspec_kw={"width_ratios": [1, 1, 0.9]},
    )
    ticks = np.arange(N)
    panels = (
        (
            axes[0],
            "rate",
            "rate code (neuron k at 2k Hz)",
            f"onto the 5 fastest {s['rate_onto_fast']:.2f} nA (among them "
            f"{s['rate_among_fast']:.2f}),\nonto the 5 slowest {s['rate_onto_slow']:.2f} nA; "
            f"{s['rate_bidirectional_pairs']} strong bidirectional\npairs "
            f"({s['rate_bidirectional_among_fast']} among the fast)",
        ),
        (
            axes[1],
            "temporal",
            "temporal code (k at 20k ms of 200)",
            f"to the next in the sequence {s['temporal_forward']:.2f} nA,\n"
            f"to the previous {s['temporal_backward']:.2f} nA; "
            f"{s['temporal_bidirectional_pairs']} strong bidirectional pairs",
        ),
    )
    for ax, code, title, note in panels:
        w = res[code].copy()
        np.fill_diagonal(w, np.nan)
        im = ax.imshow(w.T, origin="lower", cmap="viridis", vmin=0.0, vmax=res["w_max"][code])
        ax.set(
            xticks=ticks,
            xticklabels=ticks + 1,
            yticks=ticks,
            yticklabels=ticks + 1,
            xlabel=f"postsynaptic neuron\n\n{note}",
            ylabel="presynaptic neuron",
            title=title,
        )
        ax.title.set_fontsize(9)
        ax.xaxis.label.set_fontsize(8)
        fig.colorbar(im, ax=ax, shrink=0.8, label="weight (nA)")
    temporal = res["temporal"]
    lag = (np.arange(N)[:, None] - np.arange(N)[None, :]) % N
    lags = np.arange(1, N)
    mean = [temporal[lag == k].mean() for k in lags]
    ax = axes[2]
    ax.plot(20 * lags, mean, "o-", color="tab:purple")
    ax.set(
        xlabel="post fires after pre (ms)",
        ylabel="mean weight (nA)",
        title="temporal code by lag",
        ylim=(-0.01, 0.32),
    )
    ax.title.set_fontsize(9)
    ax.xaxis.label.set_fontsize(8)
    ax.axhline(2 / 3 * res["w_max"]["temporal"], color="0.6", ls=":", lw=0.8)
    ax.text(
        20 * lags[-1],
        2 / 3 * res["w_max"]["temporal"] + 0.005,
        "2/3 w_max",
        ha="right",
        fontsize=7,
        color="0.4",
    )
    for ax, letter in zip(axes, "ABC", strict=True):
        ax.text(-0.2, 1.04, letter, transform=ax.transAxes, fontsize=13, fontweight="bold")
    return save(fig, out, "clopath_connectivity.png", dpi=150)
