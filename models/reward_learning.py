"""Learning a pattern-to-action mapping from reward alone with MSTDPET (after Florian 2007).

40 Poisson inputs; pattern A raises inputs 0–19 to 8 % per step, pattern B inputs 20–39
(1 % otherwise). Two snnTorch Leaky neurons are the actions. The network starts with the
*reversed* mapping (action A prefers pattern B and vice versa). Every step, each of 16
parallel episodes is rewarded +1 when the correct action neuron spikes and −1 when the
wrong one does (``rule.reward`` with a per-sample ``[B]`` reward); MSTDPET (τ_e = 25 ms)
turns the reward into weight changes at the end of each 100-ms trial. A control network
gets no reward. Accuracy: the correct action neuron fired more than the other.

Run ``python -m models.reward_learning --out results``.
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


def simulate(
    *,
    trials: int = 100,
    batch: int = 16,
    gamma: float = 0.02,
    tau_e: float = 25.0,
    w_max: float = 0.5,
    steps: int = 100,
    rewarded: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    g = torch.Generator().manual_seed(seed)
    n_in = 40
    fc = torch.nn.Linear(n_in, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(2, n_in, generator=g) * 0.1 * w_max + 0.2 * w_max)
        fc.weight[0, 20:] += 0.3 * w_max  # reversed mapping: action A prefers pattern B
        fc.weight[1, :20] += 0.3 * w_max
    w_start = fc.weight.detach().clone()
    lif = snn.Leaky(beta=0.8)
    rule = pl.MSTDPET(
        fc,
        lif,
        a_plus=1.0,
        a_minus=1.0,
        tau_plus=20.0,
        tau_minus=20.0,
        tau_e=tau_e,
        gamma=gamma,
        per_sample=True,
    )
    opt = pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=w_max)
    accuracy, rewards = [], []
    label_name = "rewarded" if rewarded else "no reward"
    for _ in tqdm(range(trials), desc=f"reward_learning ({label_name})", disable=not progress):
        label = torch.randint(0, 2, (batch,), generator=g)
        rates = torch.full((batch, n_in), 0.01)
        rates[label == 0, :20] = 0.08
        rates[label == 1, 20:] = 0.08
        mem = lif.init_leaky()
        counts = torch.zeros(batch, 2)
        total = 0.0
        with torch.no_grad():
            for _ in range(steps):
                spk, mem = lif(fc((torch.rand(batch, n_in, generator=g) < rates).float()), mem)
                counts += spk
                r = spk.gather(1, label[:, None])[:, 0] - spk.gather(1, (1 - label)[:, None])[:, 0]
                total += float(r.mean())
                if rewarded:
                    rule.reward(r)  # this step's reward, per episode
        rule.step()
        opt.step()
        opt.zero_grad()
        rule.reset()
        correct = (
            counts.gather(1, label[:, None])[:, 0] > counts.gather(1, (1 - label)[:, None])[:, 0]
        )
        accuracy.append(float(correct.float().mean()))
        rewards.append(total)
    return {
        "accuracy": np.array(accuracy),
        "reward": np.array(rewards),
        "w_start": w_start.numpy(),
        "w_end": fc.weight.detach().numpy().copy(),
        "w_max": w_max,
    }


def run(out: str | Path | None = "results", *, progress: bool = True, **kwargs) -> dict:
    result = {
        "rewarded": simulate(rewarded=True, progress=progress, **kwargs),
        "control": simulate(rewarded=False, progress=progress, **kwargs),
        "paths": [],
    }
    if out is not None:
        plt = pyplot()

        out = Path(out)
        fig, axes = plt.subplots(
            1,
            3,
            figsize=(13, 3.8),
            constrained_layout=True,
            gridspec_kw={"width_ratios": [1.3, 1, 1]},
        )
        ax = axes[0]
        for name, color in (("rewarded", "tab:green"), ("control", "0.5")):
            acc = result[name]["accuracy"]
            smooth = np.convolve(acc, np.ones(5) / 5, mode="valid")
            ax.plot(np.arange(len(acc)) + 1, acc * 100, ".", color=color, alpha=0.4)
            ax.plot(
                np.arange(len(smooth)) + 3,
                smooth * 100,
                color=color,
                lw=2,
                label="MSTDPET, reward" if name == "rewarded" else "no reward (control)",
            )
        ax.set(
            xlabel="trial (100 ms, 16 episodes each)",
            ylabel="correct action (% of episodes)",
            title="Learning curve",
            ylim=(-5, 105),
        )
        ax.legend(frameon=False, loc="center right")
        w_max = result["rewarded"]["w_max"]
        for ax, key, title in (
            (axes[1], "w_start", "weights before (reversed mapping)"),
            (axes[2], "w_end", "weights after learning from reward"),
        ):
            image = ax.imshow(
                result["rewarded"][key] / w_max, aspect="auto", cmap="viridis", vmin=0, vmax=1
            )
            ax.set(
                xlabel="input channel (0–19: pattern A, 20–39: pattern B)",
                ylabel="action neuron",
                yticks=[0, 1],
                yticklabels=["A", "B"],
                title=title,
            )
        fig.colorbar(image, ax=axes[1:], label="w / w_max")
        path = save(fig, out, "reward_learning.png", dpi=130)
        result["paths"].append(path)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    r = run(args.out)
    for name in ("rewarded", "control"):
        acc = r[name]["accuracy"]
        print(
            f"{name:9s}: accuracy {100 * acc[:10].mean():5.1f} % (first 10 trials) -> "
            f"{100 * acc[-10:].mean():5.1f} % (last 10 trials)"
        )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
