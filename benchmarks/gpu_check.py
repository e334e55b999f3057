"""`make gpu-check`: the CUDA tests, then the GPU figures, in one command and one summary.

For the first machine with a GPU: it runs the tests marked ``cuda`` (every test
parametrized over devices), then times pair STDP and triplet STDP on the GPU against the
same rule on the CPU and against a plain per-step torch loop on the GPU, checks that two
runs of the same script give the same bits on the GPU (also under
``torch.use_deterministic_algorithms(True)``), and prints one summary. Everything takes a
few minutes; each part has its own time limit. Without a GPU it says so and exits with
status 2 (nothing to check).

    python benchmarks/gpu_check.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent


def cuda_tests(timeout: int) -> dict:
    """``pytest -m cuda`` over the suite (the docs build and notebooks excluded)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           "tests", "plasticity"]  # fmt: skip
    start = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail = (run.stdout + run.stderr).strip().splitlines()[-1:]
        status = "passed" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
    except subprocess.TimeoutExpired:
        tail, status = [], f"TIMED OUT after {timeout} s"
    return {"status": status, "summary": tail[0] if tail else "", "seconds": round(
        time.perf_counter() - start, 1)}  # fmt: skip


def _case(n_in: int, n_out: int, batch: int, steps: int, rate: float, device: str):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, n_in, generator=g) < rate).float().to(device)
    s = (torch.rand(steps, batch, n_out, generator=g) < rate).float().to(device)
    return x, s


def _timed(fn, device: str, repeats: int = 5) -> float:
    """Minimum wall time of ``fn()`` in ms (synchronized on CUDA)."""
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _rule(kind: str, fc: nn.Module, **kw):
    import snntorch as snn

    import plasticity as pl

    lif = snn.Leaky(beta=0.9)
    if kind == "pair":
        return pl.STDP(fc, lif, a_plus=1e-3, a_minus=1.05e-3, tau_plus=20.0, tau_minus=20.0, **kw)
    return pl.TripletSTDP(fc, lif, **pl.TRIPLET_PRESETS["visual_cortex_all_to_all_minimal"],
                          tau_plus=16.8, tau_minus=33.7, **kw)  # fmt: skip


def timings(n_out: int, batch: int, steps: int = 250, rate: float = 0.05) -> dict:
    """One window of recorded spikes: ours on CUDA and CPU, and a plain per-step loop."""
    row: dict = {"n_out": n_out, "batch": batch}
    for kind in ("pair", "triplet"):
        for device in ("cuda", "cpu"):
            x, s = _case(784, n_out, batch, steps, rate, device)
            fc = nn.Linear(784, n_out, bias=False).to(device)
            rule = _rule(kind, fc)

            def window(rule=rule, x=x, s=s):
                rule.observe(x, s)
                rule.step()
                rule.reset()

            row[f"{kind} {device} ms"] = round(_timed(window, device), 2)
            rule.detach()
    x, s = _case(784, n_out, batch, steps, rate, "cuda")
    w = torch.zeros(n_out, 784, device="cuda")

    def plain():  # the per-step loop a user writes: two traces, two outer products
        xt = torch.zeros(batch, 784, device="cuda")
        yt = torch.zeros(batch, n_out, device="cuda")
        for t in range(steps):
            xt.mul_(0.951).add_(x[t])
            w.addmm_(s[t].t(), xt, alpha=1e-3 / batch)
            w.addmm_(yt.t(), x[t], alpha=-1.05e-3 / batch)
            yt.mul_(0.951).add_(s[t])

    row["plain per-step cuda ms"] = round(_timed(plain, "cuda"), 2)
    row["pair: plain / ours (cuda)"] = round(row["plain per-step cuda ms"] / row["pair cuda ms"], 2)
    row["pair: cpu / cuda"] = round(row["pair cpu ms"] / row["pair cuda ms"], 2)
    return row


def same_bits(deterministic: bool) -> bool:
    """Two identical runs of a rule on CUDA give the same Δw bytes."""
    digests = []
    for _ in range(2):
        x, s = _case(784, 400, 32, 250, 0.05, "cuda")
        torch.manual_seed(0)
        fc = nn.Linear(784, 400, bias=False).cuda()
        rule = _rule("pair", fc)
        torch.use_deterministic_algorithms(deterministic)
        try:
            dws = []
            for _ in range(3):
                rule.observe(x, s)
                dws.append(rule.step().cpu())
        finally:
            torch.use_deterministic_algorithms(False)
        rule.detach()
        digests.append(hashlib.sha256(torch.stack(dws).numpy().tobytes()).hexdigest())
    return digests[0] == digests[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-timeout", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device is present here; nothing to check (exit 2)")
        return 2
    # cuBLAS needs this workspace setting for deterministic GEMMs under
    # torch.use_deterministic_algorithms(True); set before the first cuBLAS call
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.cuda.get_device_name(0)
    print(f"gpu-check on {device}, torch {torch.__version__}", flush=True)
    tests = cuda_tests(args.test_timeout)
    print(f"CUDA tests: {tests['status']} ({tests['summary']}, {tests['seconds']} s)", flush=True)
    rows = [timings(n, b) for n, b in ((400, 1), (400, 32), (1600, 32))]
    bits = {"default": same_bits(False), "deterministic algorithms": same_bits(True)}
    print("\nSummary")
    print(f"- device: {device}")
    print(f"- CUDA tests: {tests['status']}: {tests['summary']}")
    for r in rows:
        print(f"- 784->{r['n_out']}, B = {r['batch']}, T = 250 (ms per window): "
              f"pair {r['pair cuda ms']} on the GPU, {r['pair cpu ms']} on the CPU "
              f"({r['pair: cpu / cuda']}x); triplet {r['triplet cuda ms']} / {r['triplet cpu ms']}; "
              f"plain per-step loop {r['plain per-step cuda ms']} ({r['pair: plain / ours (cuda)']}x ours)")  # fmt: skip
    for name, same in bits.items():
        print(f"- same bits in two runs ({name}): {'yes' if same else 'NO'}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(
            {"device": device, "tests": tests, "timings": rows, "same_bits": bits}, indent=1))  # fmt: skip
    ok = tests["status"] == "passed" and all(bits.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
