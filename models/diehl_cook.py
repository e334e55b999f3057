"""Diehl & Cook (2015): unsupervised digit learning with STDP, on scikit-learn's 8×8 digits.

The network of Diehl & Cook (Front. Comput. Neurosci. 9:99) and of their Brian code, at the
paper's settings where the 8×8 digits allow them (``docs/models/diehl_cook.md`` compares
every setting): 64 Poisson inputs (at most 63.75 Hz, 350 ms per image, then a 150 ms rest;
an image that draws fewer than 5 excitatory spikes is shown again 32 Hz brighter) →
``n_exc`` conductance-based excitatory neurons (``ConductanceLIF``: τ_m 100 ms, E_exc 0 mV,
E_inh −100 mV, 5 ms refractory; adaptive threshold, θ += θ₊ per spike through
:class:`pl.AdaptiveThreshold`) → one inhibitory neuron each → inhibition of every *other*
excitatory neuron. The input weights learn by the authors' rule (nearest-spike traces:
every pre spike depresses by ν_pre·x_post, every post spike potentiates by
ν_post·x_pre·y_post, the slow post trace read before the spike), declared with
:class:`pl.Rule`; after each image each neuron's incoming weights are normalized to an L1
sum and clamped to [0, 1] (the optimizer chain).

Batches (``batch_size``): every sample has its own neuron, conductance and trace state; the
weights and θ are shared and stay fixed while a batch is shown; the batch's updates are
reduced by the rule's ``batch_reduction`` and applied once (see ``run``).

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
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import plasticity as pl
from plasticity import post, pre

from ._figures import pyplot, save

PAPER_INPUTS = 784  # MNIST: the paper's normalization (78) and drive are per 784 inputs


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


class ConductanceLIF(nn.Module):
    r"""A conductance-based leaky integrate-and-fire population (Diehl & Cook's neurons), in mV
    and ms:

    .. math:: \tau_m \dot v = (v_\text{rest} - v) + g_e (E_e - v) + g_i (E_i - v),\qquad
        \dot g_{e,i} = -g_{e,i}/\tau_{e,i}

    ``forward(exc, inh, state)`` adds this step's synaptic jumps to ``g_e``, ``g_i`` and
    integrates the step exactly for the conductances' step averages (an exponential decay
    integrated over the step; the membrane is linear in ``v`` for fixed conductances, so
    it relaxes exactly toward its step's equilibrium). A neuron spikes when ``v`` exceeds
    ``threshold`` (a tensor, one value per neuron once :class:`pl.AdaptiveThreshold`
    adapts it) and is not refractory: ``v`` is then held at ``v_reset`` for
    ``refractory`` ms, and the next spike needs ``dead_time`` ms (Diehl & Cook's code: its
    ``timer`` runs at 0.1 ms/ms, so its 5 ms wait is 50 ms; pass ``dead_time=refractory``
    for the paper's text). ``one_winner``: at most one spike per sample and step, the
    neuron furthest above threshold (BindsNET's ``one_spike``).

    Returns ``(spikes, state)`` with ``state = (v, g_e, g_i, since_spike)`` (``[B, N]`` each),
    so a plasticity rule reads the spikes as from an snnTorch neuron.
    """

    def __init__(
        self,
        n: int,
        *,
        v_rest: float,
        v_reset: float,
        v_thresh: float,
        tau_mem: float,
        e_exc: float = 0.0,
        e_inh: float,
        tau_exc: float = 1.0,
        tau_inh: float = 2.0,
        refractory: float,
        dead_time: float | None = None,
        one_winner: bool = False,
        dt: float = 1.0,
    ) -> None:
        super().__init__()
        self.n, self.dt = n, dt
        self.v_rest, self.v_reset, self.tau_mem = v_rest, v_reset, tau_mem
        self.e_exc, self.e_inh = e_exc, e_inh
        self.refractory = refractory
        self.dead_time = refractory if dead_time is None else dead_time
        self.one_winner = one_winner
        self.register_buffer("threshold", torch.tensor(float(v_thresh)))
        # step average of a unit jump at the step's start, and the decay over a step
        self.mean_exc = tau_exc / dt * (1 - math.exp(-dt / tau_exc))
        self.mean_inh = tau_inh / dt * (1 - math.exp(-dt / tau_inh))
        self.decay_exc, self.decay_inh = math.exp(-dt / tau_exc), math.exp(-dt / tau_inh)

    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        zeros = torch.zeros(batch, self.n)
        return zeros + self.v_rest, zeros.clone(), zeros.clone(), zeros + 1e9

    def forward(self, exc: torch.Tensor, inh: torch.Tensor | None, state: tuple):
        v, g_e, g_i, since = state
        g_e = g_e + exc
        g_mean = g_e * self.mean_exc
        drive = g_mean * self.e_exc + self.v_rest  # v_inf·g_total
        if inh is not None:
            g_i = g_i + inh
            g_mean_i = g_i * self.mean_inh
            drive = drive.add_(g_mean_i, alpha=self.e_inh)
            g_mean = g_mean.add_(g_mean_i)
        g_total = g_mean.add_(1.0)
        # exact relaxation toward v_inf = drive / g_total, rate g_total / τ_m
        relaxed = torch.lerp(drive.div_(g_total), v, g_total.mul_(-self.dt / self.tau_mem).exp_())
        since = since + self.dt
        v = torch.where(since > self.refractory, relaxed, v)
        over = (v > self.threshold).logical_and_(since > self.dead_time)
        if self.one_winner:
            margin = (v - self.threshold).masked_fill_(~over, -math.inf)
            best = margin.argmax(1, keepdim=True)
            over = over & torch.zeros_like(over).scatter_(1, best, True)
        v = v.masked_fill(over, self.v_reset)
        since = since.masked_fill_(over, 0.0)
        return over.to(v.dtype), (v, g_e.mul_(self.decay_exc), g_i * self.decay_inh, since)


class DiehlCook(nn.Module):
    """The excitatory/inhibitory network; ``present`` shows one batch of images.

    Defaults are Diehl & Cook's with the scalings an 8×8 image needs: the normalization
    keeps their mean weight (78/784 = 0.1) on 64 inputs, and ``input_gain`` (784/64 by
    default) multiplies the conductance of an input spike so that a neuron's drive from an
    image matches theirs (norm × gain = 78). Two differ, by measurement
    (``docs/models/diehl_cook.md``): θ₊ = 0.02 mV (theirs 0.05: every image returns each
    epoch here and θ only rises), and the excitatory refractory period is the paper's 5 ms
    (their code's timer makes it 50 ms: ``dead_time=50``).
    """

    def __init__(
        self,
        n_exc: int = 100,
        n_in: int = 64,
        *,
        seed: int = 0,
        dt: float = 1.0,
        norm: float | None = None,
        input_gain: float | None = None,
        w_exc_inh: float = 10.4,
        w_inh_exc: float = 17.0,
        theta_plus: float = 0.02,
        tau_theta: float = 1e7,
        refractory: float = 5.0,
        dead_time: float = 5.0,
        one_winner: bool = False,
        nu_pre: float = 1e-4,
        nu_post: float = 1e-2,
        batch_reduction: str = "sum",
        present_ms: float = 350.0,
        rest_ms: float = 150.0,
        learn: bool = True,
    ):
        super().__init__()
        self.dt, self.present_ms = dt, present_ms
        self.norm = 78.0 * n_in / PAPER_INPUTS if norm is None else norm
        self.input_gain = PAPER_INPUTS / n_in if input_gain is None else input_gain
        self.w_exc_inh, self.w_inh_exc = w_exc_inh, w_inh_exc
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(n_in, n_exc, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.rand(n_exc, n_in, generator=g) * 0.3)
            pl.optim.normalize_(self.fc.weight, self.norm)
        self.exc = ConductanceLIF(
            n_exc, v_rest=-65.0, v_reset=-65.0, v_thresh=-52.0, tau_mem=100.0,
            e_inh=-100.0, refractory=refractory, dead_time=dead_time,
            one_winner=one_winner, dt=dt,
        )  # fmt: skip
        self.inh = ConductanceLIF(
            n_exc, v_rest=-60.0, v_reset=-45.0, v_thresh=-40.0, tau_mem=10.0,
            e_inh=-85.0, refractory=2.0, dt=dt,
        )  # fmt: skip
        # θ decays through the rest too: only the shown steps are simulated, so its decay
        # per simulated step covers (present + rest) / present of a step
        self.adapt = pl.AdaptiveThreshold(
            self.exc, theta_plus=theta_plus, tau_theta=tau_theta * present_ms / (present_ms + rest_ms), dt=dt
        )  # fmt: skip
        # the authors' rule: nearest-spike traces, the slow post trace read before the spike
        x_pre, y_fast, y_slow = (
            pre.trace(20.0, nearest=True),
            post.trace(20.0, nearest=True).before,
            post.trace(40.0, nearest=True).before,
        )
        self.rule = pl.Rule(
            self.fc,
            self.exc,
            pos=nu_post * (post.spike * y_slow) * x_pre,
            neg=nu_pre * y_fast * pre.spike,
            dt=dt,
            batch_reduction=batch_reduction,
        )
        self.opt = pl.ChainedParamTransformingOptimizer(
            functools.partial(pl.L1NormalizedParameterOptimizer, norm=self.norm),
            functools.partial(pl.ClampedParameterOptimizer, clamp_min=0.0, clamp_max=1.0),
            params=[self.fc.weight],
            lr=1.0,
        )
        self.learn(learn)

    def learn(self, on: bool) -> None:
        self.rule.train(on)
        self.adapt.train(on)

    @torch.no_grad()
    def present(
        self,
        images: torch.Tensor,
        *,
        max_rate_hz: float = 63.75,
        rate_step_hz: float = 32.0,
        min_spikes: int = 5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Shows ``images`` ``[B, 64]`` for ``present_ms``; returns spike counts ``[B, n_exc]``.

        A sample with fewer than ``min_spikes`` excitatory spikes is shown again after a
        rest with its rate raised by ``rate_step_hz`` (the others rest meanwhile: no
        input, no spikes); its counts are those of its last showing. While learning, θ is
        fixed during the batch and raised by every spike of the batch at its end, and
        the window ends with one rule step, normalization and clamping.
        """
        batch = images.shape[0]
        steps = round(self.present_ms / self.dt)
        rate = torch.full((batch, 1), max_rate_hz)
        pending = torch.ones(batch, 1, dtype=torch.bool)
        counts = torch.zeros(batch, self.fc.out_features)
        learning = self.rule.training
        total = torch.zeros(self.fc.out_features)
        for _ in range(20):  # at most 20 showings (+640 Hz)
            p = images * (rate * self.dt / 1000.0) * pending
            x = (torch.rand((steps, *p.shape), generator=generator) < p).to(p.dtype)
            # the weights are fixed during a showing: every step's input at once
            drive = torch.matmul(x, self.fc.weight.T).mul_(self.input_gain)
            spikes = self._simulate(drive)
            if learning:
                self.rule.observe(x, spikes)
                self.rule.reset()  # the rest: traces decay (to e^-7.5 in 150 ms)
            shown = spikes.sum(0)
            counts = torch.where(pending, shown, counts)
            total += shown.sum(0)
            pending = pending & (shown.sum(1, keepdim=True) < min_spikes)
            if not pending.any():
                break
            rate = rate + rate_step_hz
        if learning:  # θ += θ₊ per spike of the batch, decayed over its time
            self._raise_theta(total)
            self.rule.step()
            self.opt.step()
            self.opt.zero_grad()
        return counts

    def _simulate(self, drive: torch.Tensor) -> torch.Tensor:
        """Excitatory spikes ``[T, B, n_exc]`` for the input conductances ``drive``."""
        steps, batch, n = drive.shape
        state_e, state_i = self.exc.init_state(batch), self.inh.init_state(batch)
        inhibition = torch.zeros(batch, n)
        spikes = torch.empty_like(drive)
        exc, inh = self.exc.forward, self.inh.forward  # the rule reads whole sequences
        for t in range(steps):
            spikes[t], state_e = exc(drive[t], inhibition, state_e)
            spk_i, state_i = inh(self.w_exc_inh * spikes[t], None, state_i)
            # each inhibitory neuron inhibits every excitatory neuron but its own
            inhibition = (spk_i.sum(1, keepdim=True) - spk_i).mul_(self.w_inh_exc)
        return spikes

    def _raise_theta(self, spikes: torch.Tensor) -> None:
        a = self.adapt
        if a.theta is None:
            a.theta = torch.zeros_like(spikes)
        a.theta.mul_(math.exp(-self.present_ms / a.tau_theta)).add_(spikes, alpha=a.theta_plus)
        self.exc.threshold = a.base + a.theta


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


def evaluate(net: DiehlCook, x_train, y_train, x_test, y_test, generator) -> float:
    """Labels the neurons on the training images, classifies the test images (fixed θ)."""
    net.learn(False)

    def counts(x):
        return torch.cat(
            [net.present(x[i : i + 256], generator=generator) for i in range(0, len(x), 256)]
        )

    assignment = assign_labels(counts(x_train), y_train)
    return float((classify(counts(x_test), assignment) == y_test).float().mean())


def kmeans_accuracy(x_train, y_train, x_test, y_test, k: int, seed: int = 0) -> float:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x_train.numpy())
    labels = np.zeros(k, dtype=int)
    for c in range(k):
        members = y_train.numpy()[km.labels_ == c]
        labels[c] = np.bincount(members, minlength=10).argmax() if len(members) else 0
    return float((labels[km.predict(x_test.numpy())] == y_test.numpy()).mean())


def train(net: DiehlCook, x, epochs: int, batch_size: int, generator, progress: bool = False):
    """Shows ``x`` ``epochs`` times in shuffled batches; returns seconds per epoch."""
    net.learn(True)
    seconds = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        start = time.perf_counter()
        batches = range(0, len(x), batch_size)
        for i in tqdm(batches, desc=f"diehl_cook epoch {epoch + 1}", disable=not progress):
            net.present(x[order[i : i + batch_size]], generator=generator)
        seconds.append(time.perf_counter() - start)
    return seconds


def run(
    out: str | Path | None = "results",
    *,
    n_exc: int = 100,
    train_images: int | None = None,
    epochs: int = 3,
    batch_size: int = 1,
    seed: int = 0,
    baselines: bool = True,
    progress: bool = True,
    **settings,
) -> dict:
    """Trains, evaluates and plots. ``settings`` go to :class:`DiehlCook` (e.g.
    ``theta_plus``, ``one_winner``, ``batch_reduction``).

    Batches: every sample has its own state; the weights and θ are shared and fixed while a
    batch is shown. The rule sums the batch's updates (``batch_reduction="sum"``, the
    default) and θ rises by every spike of the batch, so an epoch moves the weights and
    thresholds as far at any batch size (batch 1 is Diehl & Cook's online order, with the
    weights updated after each image instead of at each spike).
    """
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed=seed)
    n_train = len(x_train) if train_images is None else min(train_images, len(x_train))
    x_train, y_train = x_train[:n_train], y_train[:n_train]
    g = torch.Generator().manual_seed(seed)
    net = DiehlCook(n_exc, seed=seed, **settings)
    w_start = net.fc.weight.detach().clone()
    seconds = train(net, x_train, epochs, batch_size, g, progress)
    trained = evaluate(net, x_train, y_train, x_test, y_test, g)
    result = {
        "accuracy": trained,
        "seconds_per_epoch": float(np.mean(seconds)),
        "n_exc": n_exc,
        "n_train": n_train,
        "n_test": len(x_test),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "weights": net.fc.weight.detach().numpy().copy(),
        "w_start": w_start.numpy(),
        "theta": None if net.adapt.theta is None else net.adapt.theta.numpy().copy(),
        "paths": [],
    }
    if baselines:
        baseline_net = DiehlCook(n_exc, seed=seed + 1, **settings)
        result["random_accuracy"] = evaluate(baseline_net, x_train, y_train, x_test, y_test, g)
        result["kmeans_accuracy"] = kmeans_accuracy(x_train, y_train, x_test, y_test, n_exc, seed)
    if out is not None:
        result["paths"].append(figure(result, out))
    return result


def figure(result: dict, out: str | Path) -> Path:
    """A: the learned receptive fields; B: test accuracy beside the baselines."""
    plt = pyplot()
    w = result["weights"]
    shown = min(len(w), 100)
    cols = 10
    rows = math.ceil(shown / cols)
    fig = plt.figure(figsize=(7.2, 0.62 * rows + 3.2), constrained_layout=True)
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.62 * rows + 0.5, 2.7])
    axes = top.subplots(rows, cols, squeeze=False)
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < shown:
            image = ax.imshow(w[k].reshape(8, 8), cmap="hot", vmin=0.0, vmax=float(w.max()))
        else:
            ax.axis("off")
    top.colorbar(image, ax=axes, label="weight (0–1)", shrink=0.8)
    top.suptitle(
        f"A  input weights of {shown} excitatory neurons (8×8 pixels) after "
        f"{result['epochs']} epoch(s), batch {result['batch_size']}",
        x=0.02, ha="left", fontsize=10,
    )  # fmt: skip
    ax = bottom.subplots()
    names = ["STDP network"]
    values = [100 * result["accuracy"]]
    if "random_accuracy" in result:
        names += ["random weights", f"k-means (k={result['n_exc']})"]
        values += [100 * result["random_accuracy"], 100 * result["kmeans_accuracy"]]
    bars = ax.barh(names, values, color=["tab:green", "0.6", "tab:blue"][: len(names)])
    ax.bar_label(bars, fmt="%.1f %%", padding=3)
    ax.axvline(10, color="k", ls=":", lw=1)
    ax.text(11, 1, "chance", transform=ax.get_xaxis_transform(), va="bottom", fontsize=8)
    ax.set(xlabel="held-out accuracy (%)", xlim=(0, 112))
    ax.invert_yaxis()
    bottom.suptitle(
        f"B  8×8 digits: {result['n_train']} training, {result['n_test']} test images "
        f"(seed {result['seed']})",
        x=0.02, ha="left", fontsize=10,
    )  # fmt: skip
    return save(fig, out, "diehl_cook.png", dpi=150)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    r = run(
        args.out, n_exc=args.neurons, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    print(
        f"test accuracy: STDP network {100 * r['accuracy']:.1f} %, random weights "
        f"{100 * r['random_accuracy']:.1f} %, k-means {100 * r['kmeans_accuracy']:.1f} % "
        f"({r['n_exc']} units, {r['n_train']} training images, {r['epochs']} epoch(s), batch "
        f"{r['batch_size']}, {r['seconds_per_epoch']:.1f} s per epoch, seed {r['seed']})"
    )
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
