"""NEST's e-prop regression tutorial in snnTorch: a recurrent network learns a sum of sines.

NEST 3.10's ``eprop_supervised_regression_sine-waves_bsshslm_2020.py`` (Bellec et al. 2020,
Nat Commun 11:3625): 100 frozen-Poisson inputs (p = 0.05 per 1 ms step, none at step 0),
100 recurrent LIF neurons (τ_m = 30 ms, V_th = 0.03, no refractory period, no autapses),
one leaky readout (τ_m = 30 ms) learning a 1 s target, a sum of four sines (periods 1000,
500, 333 and 200 ms). One sequence per iteration, 200 iterations, e-prop with random
feedback, firing-rate regularization (c_reg = 300, f_target = 10 Hz) and gradient descent
η = 1e-4 on the sum over the sequence.

Here the network is ``nn.Linear`` → ``snn.RLeaky`` → ``nn.Linear`` → ``snn.Leaky`` and
learns with ``pl.EProp`` (docs/guide/eprop.md, "Matching NEST"): NEST's input scaling
ζ = 1 − α sits in the threshold (V_th/ζ) and, for the readout, in its weights
(W' = ζ_out·W, learning rate η·ζ_out²); ``normalize_filter=True``; B copied into
``rule.feedback``; the recurrent weights pruned with a zero diagonal. Every seed draws its
weights, inputs and target with NumPy exactly as the tutorial does (``np.random.seed(seed)``,
same order), so iteration 1 is NEST's (no learning has happened yet). NEST's own runs
(``make reference-nest``, ``tests/data/nest_eprop.json``) are shown beside ours.

Run ``python -m models.eprop_regression --out results`` (``--seeds 1 2 3 4 5``,
``--iterations 200``; ``--batch 32`` learns from 32 sequences per iteration, the tutorial's
and 31 other frozen-Poisson inputs).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn
from torch.nn.utils import prune

import plasticity as pl

from ._figures import pyplot, save

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "nest_eprop.json"

#: NEST's tutorial (``params_nrn_rec``, ``params_nrn_out``, optimizer), ms and NEST's units
SETTINGS = {"n_in": 100, "n_rec": 100, "steps": 1000, "p_input": 0.05, "tau_m": 30.0,
            "tau_out": 30.0, "v_th": 0.03, "gamma": 10.0, "width": 0.03, "c_reg": 300.0,
            "f_target_hz": 10.0, "eta": 1e-4, "periods": (1000, 500, 333, 200), "dt": 1.0}  # fmt: skip


def draws(seed: int, s: dict = SETTINGS) -> dict[str, np.ndarray]:
    """The tutorial's random draws for ``seed``, in its order: W_in, W_rec (diagonal 0),
    W_out, B (float32, as NEST's), the input spikes ``x`` [steps, n_in] (step 0 empty),
    the target [steps] (four sines, shifted to start at 0, scaled to max |·| = 1)."""
    n_in, n_rec, steps = s["n_in"], s["n_rec"], s["steps"]
    rs = np.random.RandomState(seed)  # = the tutorial's np.random.seed(seed), same stream
    f32 = np.float32
    w_in = np.array(rs.randn(n_in, n_rec).T / np.sqrt(n_in), dtype=f32)
    w_rec = np.array(rs.randn(n_rec, n_rec).T / np.sqrt(n_rec), dtype=f32)
    np.fill_diagonal(w_rec, 0.0)
    w_out = np.array(rs.randn(n_rec, 1).T / np.sqrt(n_rec), dtype=f32)
    b = np.array(rs.randn(n_rec, 1) / np.sqrt(n_rec), dtype=f32)
    x = rs.rand(steps, n_in) < s["p_input"]
    x[0] = False
    periods = s["periods"]
    amplitudes = rs.uniform(low=0.5, high=2.0, size=len(periods))
    phases = rs.uniform(low=0.0, high=2.0 * np.pi, size=len(periods))
    target = sum(a * np.sin(np.linspace(phi, phi + 2.0 * np.pi * (steps // p), steps))
                 for a, phi, p in zip(amplitudes, phases, periods, strict=True))  # fmt: skip
    target = target - target[0]
    target /= max(np.abs(target).max(), 1e-6)
    return {"W_in": w_in, "W_rec": w_rec, "W_out": w_out, "B": b, "x": x, "target": target}


def network(d: dict[str, np.ndarray], s: dict = SETTINGS, dtype: torch.dtype = torch.float64):
    """The snnTorch modules, ``pl.EProp`` and the SGD optimizer of NEST's network (module
    docstring); returns ``(fc, rlif, out, readout), rule, optimizer, zeta_out``."""
    dt = s["dt"]
    alpha, kappa = math.exp(-dt / s["tau_m"]), math.exp(-dt / s["tau_out"])
    zeta, zeta_out = 1.0 - alpha, 1.0 - kappa  # regular_spike_arrival=False
    n_in, n_rec = s["n_in"], s["n_rec"]
    fc = nn.Linear(n_in, n_rec, bias=False).to(dtype)
    rlif = snn.RLeaky(beta=torch.tensor(alpha, dtype=dtype), linear_features=n_rec,
                      threshold=torch.tensor(s["v_th"] / zeta, dtype=dtype)).to(dtype)  # fmt: skip
    out = nn.Linear(n_rec, 1, bias=False).to(dtype)
    readout = snn.Leaky(beta=torch.tensor(kappa, dtype=dtype), reset_mechanism="none").to(dtype)
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(d["W_in"]))
        rlif.recurrent.weight.copy_(torch.as_tensor(d["W_rec"]))
        rlif.recurrent.bias.zero_()
        out.weight.copy_(zeta_out * torch.as_tensor(d["W_out"], dtype=dtype))
    prune.custom_from_mask(rlif.recurrent, "weight", 1 - torch.eye(n_rec, dtype=dtype))
    rule = pl.EProp(fc, rlif, out, readout, gamma=s["gamma"] * s["v_th"],
                    width=s["width"] / s["v_th"], c_reg=s["c_reg"],
                    f_target=s["f_target_hz"] / 1000.0, feedback="random",
                    normalize_filter=True, dt=dt)  # fmt: skip
    with torch.no_grad():
        rule.feedback.copy_(torch.as_tensor(d["B"]).T)
    optimizer = torch.optim.SGD([
        {"params": [fc.weight, rlif.recurrent.weight_orig], "lr": s["eta"]},
        {"params": [out.weight], "lr": s["eta"] * zeta_out**2},
    ])  # fmt: skip
    return (fc, rlif, out, readout), rule, optimizer, zeta_out


def _inputs(d: dict[str, np.ndarray], seed: int, batch: int, s: dict,
            dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """``[T, batch, n_in]``: the tutorial's frozen input first, then ``batch − 1`` other
    frozen-Poisson inputs of the same rate (NumPy, seeded by ``seed``; none at step 0)."""
    x = [d["x"]]
    rs = np.random.RandomState(10_000 + seed)
    for _ in range(batch - 1):
        extra = (rs.rand(s["steps"], s["n_in"]) < s["p_input"]).astype(np.float64)
        extra[0] = 0.0
        x.append(extra)
    return torch.as_tensor(np.stack(x, axis=1), dtype=dtype)


def train(seed: int = 1, iterations: int = 200, s: dict = SETTINGS,
          dtype: torch.dtype = torch.float64, batch: int = 1) -> dict:  # fmt: skip
    """``iterations`` sequences of the tutorial for ``seed``, one update each. Returns the
    loss ½Σ_t (y_t − y*_t)² per iteration (NEST's), the readout of the first and the last
    iteration, the recurrent spikes of the last, and the wall time of the iterations.

    ``batch > 1``: every iteration runs ``batch`` sequences at once (the tutorial's input and
    ``batch − 1`` other frozen-Poisson inputs, one target), each with its own eligibility,
    and updates once with their mean gradient; the loss and readouts are the tutorial
    sequence's (sample 0)."""
    d = draws(seed, s)
    (fc, rlif, out, readout), rule, optimizer, _ = network(d, s, dtype)
    x = _inputs(d, seed, batch, s, dtype)  # [T, batch, n_in]
    target = torch.as_tensor(d["target"], dtype=dtype).view(-1, 1, 1).expand(-1, batch, 1)
    steps = s["steps"]
    losses, ys = [], torch.zeros(2, steps, dtype=dtype)
    spikes = torch.zeros(steps, s["n_rec"], dtype=dtype)
    start = time.perf_counter()
    for it in range(iterations):
        optimizer.zero_grad()
        spk, mem = rlif.init_rleaky()
        y, y_all = readout.init_leaky(), torch.zeros(steps, dtype=dtype)
        with torch.no_grad():
            for t in range(steps):
                spk, mem = rlif(fc(x[t]), spk.to(dtype), mem)
                _, y = readout(out(spk.to(dtype)), y)
                rule.target(target[t])
                y_all[t] = y[0, 0]
                if it == iterations - 1:
                    spikes[t] = spk[0]
        rule.step()
        optimizer.step()
        losses.append(0.5 * float(((y_all - target[:, 0, 0]) ** 2).sum()))
        if it in (0, iterations - 1):
            ys[0 if it == 0 else 1] = y_all
    wall = time.perf_counter() - start
    return {"seed": seed, "batch": batch, "losses": losses, "readout_first": ys[0].tolist(),
            "readout_last": ys[1].tolist(), "target": d["target"].tolist(),
            "spikes_last": [np.flatnonzero(spikes[:, j].numpy()).tolist() for j in range(s["n_rec"])],
            "wall_s": wall}  # fmt: skip


def load_reference(path: str | Path | None = REFERENCE) -> dict | None:
    """NEST's tutorial runs (``tests/data/nest_eprop.json`` → ``tutorial``), or ``None``."""
    if path is None or not Path(path).exists():
        return None
    tut = json.loads(Path(path).read_text())["tutorial"]
    seeds = sorted(tut["seeds"], key=int)
    return {"seeds": [int(k) for k in seeds], "losses": np.array([tut["seeds"][k]["loss"] for k in seeds]),
            "wall_s": [tut["seeds"][k]["wall_simulate_s"] for k in seeds],
            "readout_last": np.array(tut["seed1"]["readout_last"])}  # fmt: skip


def plot(runs: list[dict], nest: dict | None, out: Path) -> Path:
    """(a) loss per iteration, ours per seed and NEST's band and median; (b) seed 1's
    readout against the target before and after learning; (c) its recurrent raster."""
    plt = pyplot()
    fig = plt.figure(figsize=(11.0, 6.8), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.0, 1.0])
    ax_loss, ax_out, ax_spk = fig.add_subplot(grid[:, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    finals = [r["losses"][-1] for r in runs]
    if nest is not None:
        n = min(nest["losses"].shape[1], max(len(r["losses"]) for r in runs))
        it = np.arange(1, n + 1)
        band = nest["losses"][:, :n]
        ax_loss.fill_between(it, band.min(0), band.max(0), color="0.85", label=f"NEST 3.10, seeds {nest['seeds'][0]}–{nest['seeds'][-1]} (min–max)")
        ax_loss.plot(it, np.median(band, 0), color="k", lw=1.5, label="NEST, median")
    for r in runs:
        ax_loss.plot(np.arange(1, len(r["losses"]) + 1), r["losses"], lw=1, label=f"ours, seed {r['seed']}")
    head = f"ours: final loss median {np.median(finals):.1f} (range {min(finals):.1f}–{max(finals):.1f})"
    if nest is not None:
        nf = nest["losses"][:, len(runs[0]["losses"]) - 1]
        head += f"\nNEST: median {np.median(nf):.1f} (range {nf.min():.1f}–{nf.max():.1f})"
    ax_loss.set(xlabel="training iteration (one 1 s sequence each)", ylabel="loss ½Σ_t (y_t − y*_t)²",
                yscale="log", title="e-prop regression: loss")
    ax_loss.text(0.03, 0.03, head, transform=ax_loss.transAxes, fontsize=9, va="bottom",
                 bbox={"facecolor": "white", "edgecolor": "0.7"})
    ax_loss.legend(frameon=False, fontsize=8, loc="upper right")
    r1 = next((r for r in runs if r["seed"] == 1), runs[0])
    t = np.arange(len(r1["target"]))
    ax_out.plot(t, r1["target"], color="k", lw=2, label="target y*")
    ax_out.plot(t, r1["readout_first"], color="tab:gray", lw=1, label="readout y, iteration 1")
    ax_out.plot(t, r1["readout_last"], color="tab:red", lw=1, label=f"readout y, iteration {len(r1['losses'])}")
    if nest is not None and r1["seed"] == 1 and len(r1["losses"]) == nest["losses"].shape[1]:
        ax_out.plot(t[:-1], nest["readout_last"][1:], color="tab:blue", lw=1, ls="--", label="NEST, last iteration")
    ax_out.set(xlabel="time in the sequence (ms)", ylabel="readout y (a.u.)", title=f"seed {r1['seed']}: readout vs target")
    ax_out.legend(frameon=False, fontsize=8, ncol=2, loc="lower left")
    for j, times in enumerate(r1["spikes_last"]):
        ax_spk.plot(times, [j] * len(times), "|", color="k", ms=2, mew=0.6)
    total = sum(len(x) for x in r1["spikes_last"])
    rate = total / len(r1["spikes_last"]) / (len(r1["target"]) / 1000.0)
    ax_spk.set(xlabel="time in the sequence (ms)", ylabel="recurrent neuron",
               xlim=(0, len(r1["target"])), ylim=(-1, len(r1["spikes_last"])),
               title=f"seed {r1['seed']}: recurrent spikes, last iteration ({rate:.1f} Hz mean)")
    for ax, letter in zip((ax_loss, ax_out, ax_spk), "abc", strict=True):
        ax.text(-0.08, 1.02, letter, transform=ax.transAxes, fontsize=14, fontweight="bold")
    return save(fig, out, "eprop_regression.png")


def run(out: str | Path | None = "results", seeds: tuple[int, ...] = (1, 2, 3, 4, 5),
        iterations: int = 200, reference: str | Path | None = REFERENCE,
        batch: int = 1) -> dict:  # fmt: skip
    """Trains every seed (``batch`` sequences per iteration: :func:`train`), writes
    ``eprop_regression.json`` and the figure to ``out``."""
    runs = [train(seed, iterations, batch=batch) for seed in seeds]
    nest = load_reference(reference)
    settings = {**SETTINGS, "iterations": iterations, "batch": batch}
    result = {"settings": settings, "runs": runs, "paths": []}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "eprop_regression.json"
        path.write_text(json.dumps({k: v for k, v in result.items() if k != "paths"}))
        result["paths"] = [path, plot(runs, nest, out)]
    result["nest"] = nest
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1,
                        help="sequences per iteration (the tutorial's first; loss of that one)")
    args = parser.parse_args(argv)
    r = run(args.out, tuple(args.seeds), args.iterations, batch=args.batch)
    nest = r["nest"]
    for x in r["runs"]:
        line = f"seed {x['seed']}: loss {x['losses'][0]:.2f} -> {x['losses'][-1]:.2f}"
        if nest is not None and x["seed"] in nest["seeds"]:
            k = nest["seeds"].index(x["seed"])
            line += f"  (NEST {nest['losses'][k, 0]:.2f} -> {nest['losses'][k, len(x['losses']) - 1]:.2f})"
        per = x["wall_s"] / (args.iterations * args.batch) * 1e3
        print(f"{line}; {x['wall_s']:.1f} s for {args.iterations} iterations of "
              f"{args.batch} sequence(s), {per:.0f} ms per sequence")  # fmt: skip
    finals = [x["losses"][-1] for x in r["runs"]]
    print(f"final loss: ours median {np.median(finals):.2f} (range {min(finals):.2f}-{max(finals):.2f})", end="")
    if nest is not None:
        nf = nest["losses"][:, args.iterations - 1]
        print(f", NEST median {np.median(nf):.2f} (range {nf.min():.2f}-{nf.max():.2f})", end="")
    print()
    for p in r["paths"]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
