"""Diehl & Cook (2015): unsupervised digit learning with STDP, on scikit-learn's 8×8 digits.

Network: 64 Poisson inputs (rate ∝ pixel intensity, at most 0.2 per step, 100 steps per
image) → ``n_exc`` excitatory snnTorch Leaky neurons with adaptive thresholds (θ += 0.1 per
spike, τ_θ = 10⁵ steps: a finite τ_θ keeps neurons responsive after many images, where
Diehl & Cook raised the input rate instead) → a one-to-one inhibitory Leaky layer
→ inhibition of every *other* excitatory neuron (soft winner-take-all). Pair STDP learns the
input weights (soft upper bound, weights in [0, 1]); after each image every neuron's
incoming weights are normalized to an L1 sum and clamped (the optimizer chain).

After training, each neuron is labelled with the class it responds to most on the training
images; a test image is classified by the labelled neurons' average spike counts. Beside
it, in the same run: the same network with random, untrained weights, and k-means with
the same number of units (scikit-learn, the optional extra ``digits``).

Run ``python -m models.diehl_cook --out results`` (needs ``pip install -e ".[digits]"``).
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn
from tqdm import tqdm

import plasticity as pl

from ._figures import pyplot, save


def load_digits_split(test_fraction: float = 0.3, seed: int = 0):
    """scikit-learn's bundled 8×8 digits as ``[N, 64]`` intensities in [0, 1], split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the Diehl & Cook model needs scikit-learn: pip install -e ".[digits]"'
        ) from err
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class DiehlCook(nn.Module):
    """The excitatory/inhibitory network; ``present`` runs one batch of images."""

    def __init__(
        self,
        n_exc: int = 100,
        n_in: int = 64,
        *,
        seed: int = 0,
        norm: float = 16.0,
        w_inh: float = 20.0,
        theta_plus: float = 0.1,
        tau_theta: float = 1e5,
        learn: bool = True,
        a_plus: float = 0.02,
        a_minus: float = 0.002,
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(n_in, n_exc, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.rand(n_exc, n_in, generator=g) * 0.3)
            pl.optim.normalize_(self.fc.weight, norm)
        self.exc = snn.Leaky(beta=math.exp(-1 / 20), reset_mechanism="zero")
        self.inh = snn.Leaky(beta=math.exp(-1 / 5), reset_mechanism="zero")
        self.w_inh = w_inh
        self.adapt = pl.AdaptiveThreshold(self.exc, theta_plus=theta_plus, tau_theta=tau_theta)
        self.stdp = pl.STDP(
            self.fc, self.exc, a_plus=a_plus, a_minus=a_minus, tau_plus=20.0, tau_minus=20.0
        )
        self.stdp.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
        self.opt = pl.ChainedParamTransformingOptimizer(
            functools.partial(pl.L1NormalizedParameterOptimizer, norm=norm),
            functools.partial(pl.ClampedParameterOptimizer, clamp_min=0.0, clamp_max=1.0),
            params=[self.fc.weight],
            lr=1.0,
        )
        self.learn(learn)

    def learn(self, on: bool) -> None:
        self.stdp.train(on)
        self.adapt.train(on)

    @torch.no_grad()
    def present(
        self,
        images: torch.Tensor,
        *,
        steps: int = 100,
        max_rate: float = 0.2,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Shows ``images`` ``[B, 64]`` for ``steps`` steps; returns spike counts ``[B, n_exc]``.
        While learning, ends the window: STDP step, normalization and clamping."""
        batch = images.shape[0]
        rates = images * max_rate
        mem_e, mem_i = self.exc.init_leaky(), self.inh.init_leaky()
        inhibition = torch.zeros(batch, self.fc.out_features)
        counts = torch.zeros(batch, self.fc.out_features)
        for _ in range(steps):
            x = (torch.rand(rates.shape, generator=generator) < rates).float()
            spk_e, mem_e = self.exc(self.fc(x) - inhibition, mem_e)
            spk_i, mem_i = self.inh(spk_e * 2.0, mem_i)  # one-to-one: every exc spike fires its inh
            inhibition = self.w_inh * (spk_i.sum(1, keepdim=True) - spk_i)  # inhibit all the others
            counts += spk_e
        if self.stdp.training:
            self.stdp.step()
            self.opt.step()
            self.opt.zero_grad()
            self.stdp.reset()
        return counts


def assign_labels(counts: torch.Tensor, labels: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """Each neuron's class: the one with the highest mean response (``[n_neurons]``)."""
    mean = torch.stack(
        [
            counts[labels == c].mean(0) if (labels == c).any() else torch.zeros(counts.shape[1])
            for c in range(n_classes)
        ]
    )
    return mean.argmax(0)


def classify(counts: torch.Tensor, assignment: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    votes = torch.stack(
        [
            counts[:, assignment == c].mean(1)
            if (assignment == c).any()
            else torch.full((counts.shape[0],), -1.0)
            for c in range(n_classes)
        ],
        1,
    )
    return votes.argmax(1)


def evaluate(net: DiehlCook, x_train, y_train, x_test, y_test, steps: int, generator) -> float:
    net.learn(False)
    train_counts = torch.cat(
        [
            net.present(x_train[i : i + 256], steps=steps, generator=generator)
            for i in range(0, len(x_train), 256)
        ]
    )
    test_counts = torch.cat(
        [
            net.present(x_test[i : i + 256], steps=steps, generator=generator)
            for i in range(0, len(x_test), 256)
        ]
    )
    assignment = assign_labels(train_counts, y_train)
    return float((classify(test_counts, assignment) == y_test).float().mean())


def kmeans_accuracy(x_train, y_train, x_test, y_test, k: int, seed: int = 0) -> float:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x_train.numpy())
    labels = np.zeros(k, dtype=int)
    for c in range(k):
        members = y_train.numpy()[km.labels_ == c]
        labels[c] = np.bincount(members, minlength=10).argmax() if len(members) else 0
    return float((labels[km.predict(x_test.numpy())] == y_test.numpy()).mean())


def run(
    out: str | Path | None = "results",
    *,
    n_exc: int = 100,
    train_images: int | None = None,
    epochs: int = 1,
    steps: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    x_train, y_train, x_test, y_test = load_digits_split(seed=seed)
    n_train = len(x_train) if train_images is None else min(train_images, len(x_train))
    g = torch.Generator().manual_seed(seed)
    net = DiehlCook(n_exc, seed=seed)
    w_start = net.fc.weight.detach().clone()
    order = torch.cat([torch.randperm(n_train, generator=g) for _ in range(epochs)])
    for i in tqdm(order.tolist(), desc="diehl_cook (training)", disable=not progress):
        net.present(x_train[i : i + 1], steps=steps, generator=g)
    trained = evaluate(net, x_train[:n_train], y_train[:n_train], x_test, y_test, steps, g)
    baseline_net = DiehlCook(n_exc, seed=seed + 1)
    random_weights = evaluate(
        baseline_net, x_train[:n_train], y_train[:n_train], x_test, y_test, steps, g
    )
    kmeans = kmeans_accuracy(x_train[:n_train], y_train[:n_train], x_test, y_test, n_exc, seed)
    result = {
        "accuracy": trained,
        "random_accuracy": random_weights,
        "kmeans_accuracy": kmeans,
        "n_exc": n_exc,
        "n_train": n_train,
        "n_test": len(x_test),
        "epochs": epochs,
        "weights": net.fc.weight.detach().numpy().copy(),
        "w_start": w_start.numpy(),
        "paths": [],
    }
    if out is not None:
        plt = pyplot()

        out = Path(out)
        shown = min(n_exc, 100)
        fig, _ = pl.plot.receptive_fields(
            result["weights"][:shown],
            (8, 8),
            columns=10,
            title=f"Learned input weights of {shown} excitatory neurons "
            f"(test accuracy {100 * trained:.1f} %)",
        )
        path = save(fig, out, "diehl_cook_receptive_fields.png", dpi=120)
        result["paths"].append(path)
        fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
        names = ["STDP network", "random weights", f"k-means (k={n_exc})"]
        values = [100 * trained, 100 * random_weights, 100 * kmeans]
        bars = ax.bar(names, values, color=["tab:green", "0.6", "tab:blue"])
        ax.bar_label(bars, fmt="%.1f %%")
        ax.axhline(10, color="k", ls=":", lw=1, label="chance")
        ax.set(
            ylabel="test accuracy (%)",
            ylim=(0, 108),
            title=f"8×8 digits: {n_train} training images, {len(x_test)} test images",
        )
        ax.legend(frameon=False)
        path = save(fig, out, "diehl_cook_accuracy.png", dpi=130)
        result["paths"].append(path)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    r = run(args.out, n_exc=args.neurons, epochs=args.epochs)
    print(
        f"test accuracy: STDP network {100 * r['accuracy']:.1f} %, random weights {100 * r['random_accuracy']:.1f} %, "
        f"k-means {100 * r['kmeans_accuracy']:.1f} % ({r['n_exc']} units, {r['n_train']} training images)"
    )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
