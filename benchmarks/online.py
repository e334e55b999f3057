"""Online learning: a weight update after every time step, against a plain per-step loop.

Both run the same snnTorch network (``nn.Linear`` -> ``snn.Leaky``) on the same Poisson
inputs and make the same update every step: pair STDP (all-to-all, ``coincident="ltp"``,
batch mean) with soft multiplicative bounds, weights clamped to [0, 1].

* ``plain``: what one writes by hand in torch: two trace updates, two outer products
  (``addmm_``), the bounds, ``add_`` and ``clamp_``; also with the update applied by
  ``torch.optim.SGD`` (lr = 1) and clamped, which shows what torch's optimizer alone
  costs per step.
* ``ours``: ``pl.STDP`` through its hooks, then ``rule.step()``, ``opt.step()`` and
  ``opt.zero_grad()`` every step (``ClampedParameterOptimizer`` with SGD, lr = 1).

Reported: milliseconds per step (the median of interleaved repeats) and the ratios.
Run: ``python benchmarks/online.py [--steps N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import snntorch as snn
import torch
from torch import nn

import plasticity as pl

A_PLUS, A_MINUS, TAU = 1e-3, 1.05e-3, 20.0
SIZES = [(100, 20, 1), (784, 400, 32)]  # (N_in, N_out, B)


def _network(n_in: int, n_out: int, seed: int = 0):
    torch.manual_seed(seed)
    fc = nn.Linear(n_in, n_out, bias=False)
    nn.init.uniform_(fc.weight, 0.2, 0.6)
    return fc, snn.Leaky(beta=0.9, threshold=0.5)


def plain(x: torch.Tensor, n_out: int, optimizer: bool = False) -> torch.Tensor:
    """The update by hand; ``optimizer=True``: applied as ``-Δw`` in ``weight.grad`` by
    ``torch.optim.SGD`` (lr = 1), then clamped (what torch's optimizer costs alone)."""
    steps, batch, n_in = x.shape
    fc, lif = _network(n_in, n_out)
    w = fc.weight
    d = math.exp(-1.0 / TAU)
    x_trace = torch.zeros(batch, n_in)
    y_trace = torch.zeros(batch, n_out)
    sgd = torch.optim.SGD([w], lr=1.0) if optimizer else None
    mem = lif.init_leaky()
    with torch.no_grad():
        for t in range(steps):
            spk, mem = lif(fc(x[t]), mem)
            x_trace.mul_(d).add_(x[t])
            y_trace.mul_(d)
            pos = torch.mm(spk.t(), x_trace).mul_(A_PLUS / batch)
            neg = torch.mm(y_trace.t(), x[t]).mul_(A_MINUS / batch)
            y_trace.add_(spk)
            if sgd is None:
                w.add_(pos.mul_(1.0 - w) - neg.mul_(w)).clamp_(0.0, 1.0)
                continue
            w.grad = neg.mul_(w) - pos.mul_(1.0 - w)
            sgd.step()
            w.clamp_(0.0, 1.0)
    return w.detach().clone()


def ours(x: torch.Tensor, n_out: int) -> torch.Tensor:
    steps, batch, n_in = x.shape
    fc, lif = _network(n_in, n_out)
    rule = pl.STDP(fc, lif, a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU)
    rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    opt = pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    mem = lif.init_leaky()
    with torch.no_grad():
        for t in range(steps):
            _, mem = lif(fc(x[t]), mem)
            rule.step()
            opt.step()
            opt.zero_grad()
    rule.detach()
    return fc.weight.detach().clone()


def measure(n_in: int, n_out: int, batch: int, steps: int, repeats: int = 5) -> dict:
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.05).float()
    w_plain, w_ours = plain(x, n_out), ours(x, n_out)  # warm-up, and the same result
    error = float((w_plain - w_ours).abs().max())
    methods = {"plain": plain, "plain_sgd": lambda x, n: plain(x, n, optimizer=True),
               "ours": ours}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(repeats):  # interleaved: all see the same machine
        for name, fn in methods.items():
            start = time.perf_counter()
            fn(x, n_out)
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"size": f"{n_in}->{n_out}, B = {batch}", "plain_ms": med["plain"],
            "plain_sgd_ms": med["plain_sgd"], "ours_ms": med["ours"],
            "ratio": med["ours"] / med["plain"], "ratio_sgd": med["ours"] / med["plain_sgd"],
            "max_abs_weight_difference": error}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [measure(*size, steps=args.steps) for size in SIZES]
    lines = ["| size | plain loop (ms/step) | plain loop, torch SGD (ms/step) | ours (ms/step) | "
             "ours / plain | ours / plain with SGD | max abs Δw difference |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['size']} | {r['plain_ms']:.3f} | {r['plain_sgd_ms']:.3f} | "
                     f"{r['ours_ms']:.3f} | {r['ratio']:.2f} | {r['ratio_sgd']:.2f} | "
                     f"{r['max_abs_weight_difference']:.1e} |")  # fmt: skip
    print("\n".join(lines))
    if args.out is not None:
        from readme import save_results

        save_results(args.out, "online", "\n".join(lines), rows)


if __name__ == "__main__":
    main()
