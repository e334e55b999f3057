"""The reproducibility scenario of tests/test_reproducibility.py, run as a script in fresh
processes::

    python tests/reproducibility_case.py DEVICE THREADS [deterministic] [benchmark] [float64]

Pair STDP with soft bounds learns (the weight updated after each window) on the same spikes in windows of
different lengths (so that chunks of several shapes and activities come up), 200 inputs
and 200 outputs firing at the same rate: the candidate kernels at the post spikes and at
the pre spikes do mirror-image work, so a choice by timing is a coin toss. Prints one
JSON line: the SHA-256 of every window's Δw and of the final weight, and the kernels of
each window's last chunk. ``deterministic``: under ``torch.use_deterministic_algorithms
(True)``; ``benchmark``: with ``plasticity.engine.CHOOSER.benchmark = True``.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch
from torch import nn

import plasticity as pl

N, BATCH, RATE, CHUNK = 200, 8, 0.05, 32
WINDOWS = (70, 110, 40, 150)


def digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def run(device: str, dtype: torch.dtype = torch.float32) -> dict:
    g = torch.Generator().manual_seed(0)
    fc = nn.Linear(N, N, bias=False).to(device=device, dtype=dtype)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(N, N, generator=g, dtype=dtype) * 0.5)
    rule = pl.STDP(fc, nn.Identity(), a_plus=1e-2, a_minus=1.05e-2, tau_plus=20.0,
                   tau_minus=20.0, chunk_size=CHUNK)  # fmt: skip
    rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    hashes, kernels = [], []
    for steps in WINDOWS:
        pre = (torch.rand(steps, BATCH, N, generator=g) < RATE).to(device=device, dtype=dtype)
        post = (torch.rand(steps, BATCH, N, generator=g) < RATE).to(device=device, dtype=dtype)
        rule.observe(pre, post)
        rule.step()  # the traces carry over: every window continues the last
        hashes.append(digest(fc.weight.grad))
        kernels.append(sorted(set(rule.kernel_choice.values())))
        with torch.no_grad():  # what ClampedParameterOptimizer(lr=1) does
            fc.weight.sub_(fc.weight.grad).clamp_(0.0, 1.0)
        fc.weight.grad = None
    return {"dw": hashes, "weight": digest(fc.weight), "kernels": kernels}


def main(argv: list[str]) -> None:
    device, threads, flags = argv[0], int(argv[1]), set(argv[2:])
    torch.set_num_threads(threads)
    if "deterministic" in flags:
        torch.use_deterministic_algorithms(True)
    if "benchmark" in flags:
        pl.engine.CHOOSER.benchmark = True
    dtype = torch.float64 if "float64" in flags else torch.float32
    print(json.dumps(run(device, dtype)))


if __name__ == "__main__":
    main(sys.argv[1:])
