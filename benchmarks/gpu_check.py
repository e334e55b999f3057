"""``make gpu-check``: the CUDA tests and the GPU benchmarks in one command, one summary.

On a machine with an NVIDIA GPU and a CUDA build of torch, in under 8 minutes:

1. **tests**: ``pytest -m cuda tests plasticity`` (every test parametrized over the
   ``device`` fixture, on CUDA; ``tests/test_reproducibility.py`` runs its scenario in
   fresh processes under ``torch.use_deterministic_algorithms(True)``);
2. **kernel choice**: pair, triplet and MSTDPET STDP on recorded spikes (784 → 400,
   T = 250, 5 % activity, B = 32 and 256) and conv pair STDP (1 → 16 channels, 5×5,
   28×28, T = 100, B = 8 and 64): ms per window with the cost model's choice
   (``kernel="auto"``) against each candidate forced and against the timed choice
   (``CHOOSER.benchmark = True``), beside one GEMM of the chunk's shape. The ratio
   "auto / best" is how far the cost model's CUDA constants
   (:data:`plasticity.engine.cost.PROFILES`) are from this GPU's fastest candidate;
3. **hooks**: ``pl.STDP`` attached to an ``nn.Linear`` + ``snn.Leaky`` loop on the GPU
   (784 → 400, B = 32, T = 250) against the loop alone;
4. **reproducibility**: the scenario of ``tests/reproducibility_case.py`` twice in this
   process, compared bit for bit.

It prints one summary (and writes it with a JSON copy to ``--out``, default
``benchmarks/results/gpu_check.{md,json}``) and exits 0 when the tests pass and the runs
are reproducible, 1 otherwise. Without a CUDA device it says so and exits 2, running
nothing (``--device cpu --quick`` runs the benchmark steps on the CPU, to check the script
itself).

    python benchmarks/gpu_check.py [--out DIR] [--quick] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGET_S = 8 * 60  # the whole check
TESTS_TIMEOUT_S = 300


def device_problem() -> str | None:
    """Why this machine cannot run the check (``None``: it can)."""
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build: install a CUDA build of torch "
                f"{torch.__version__.split('+')[0]} into this environment (pytorch.org lists the "
                "index URL for each CUDA version), then run `make gpu-check` again")  # fmt: skip
    if not torch.cuda.is_available():
        return (f"no CUDA device is visible (torch {torch.__version__}, built for CUDA "
                f"{torch.version.cuda}; CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")  # fmt: skip
    return None


def describe(device: torch.device) -> str:
    if device.type != "cuda":
        return f"{platform.processor() or platform.machine()} (CPU), torch {torch.__version__}"
    props = torch.cuda.get_device_properties(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return (f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} "
            f"SMs, capability {props.major}.{props.minor}), torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}, cuDNN {cudnn}")  # fmt: skip


# ------------------------------------------------------------------------------ tests


def run_tests(timeout: float) -> dict:
    """``pytest -m cuda`` in a subprocess; the counts from its JUnit report."""
    report = ROOT / "benchmarks" / "results" / ".gpu_check_junit.xml"
    report.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           f"--junitxml={report}", "tests", "plasticity"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"ok": False, "summary": f"timed out after {timeout:.0f} s", "seconds": timeout}
    seconds = time.perf_counter() - start
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: list[str] = []
    if report.exists():
        root = ET.parse(report).getroot()
        suites = [root] if root.tag == "testsuite" else list(root)
        for suite in suites:
            for key in counts:
                counts[key] += int(suite.get(key, 0))
            for case in suite.iter("testcase"):
                if case.find("failure") is not None or case.find("error") is not None:
                    failed.append(f"{case.get('classname')}::{case.get('name')}")
        report.unlink()
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    ok = proc.returncode == 0 and passed > 0
    summary = (f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
               f"{counts['skipped']} skipped in {seconds:.0f} s")  # fmt: skip
    tail = "" if ok else proc.stdout[-3000:] + proc.stderr[-2000:]
    return {"ok": ok, "summary": summary, "failed": failed, "seconds": seconds, "tail": tail}


# ------------------------------------------------------------------------- benchmarks


def timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call: the minimum over ``repeats`` calls after one warm-up."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def kernel_rows(device: torch.device, quick: bool, repeats: int) -> list[dict]:
    """The cost model's choice against every candidate and the timed choice."""
    import snntorch as snn
    from stdp_dense import A_MINUS, A_PLUS, TAU
    from stdp_rules import TRIPLET, TRIPLET_TAUS
    from torch import nn

    import plasticity as pl
    from plasticity.engine import CHOOSER

    pair = dict(a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU)
    makers = {
        "pair": lambda syn: pl.STDP(syn, snn.Leaky(beta=0.9), **pair),
        "triplet": lambda syn: pl.TripletSTDP(
            syn, snn.Leaky(beta=0.9), **{k: v for k, v in TRIPLET.items() if k != "trace"},
            **TRIPLET_TAUS),  # fmt: skip
        "mstdpet": lambda syn: pl.MSTDPET(syn, snn.Leaky(beta=0.9), **pair, tau_e=25.0),
    }
    cases = []
    for batch in (32,) if quick else (32, 256):
        for name in ("pair",) if quick else ("pair", "triplet", "mstdpet"):
            cases.append((name, "dense", batch))
    for batch in (8,) if quick else (8, 64):
        cases.append(("pair", "conv", batch))
    g = torch.Generator().manual_seed(0)
    rows = []
    for name, kind, batch in cases:
        steps = 250 if kind == "dense" else 100
        if kind == "dense":
            synapse = nn.Linear(784, 400, bias=False)
            pre_shape, post_shape = (steps, batch, 784), (steps, batch, 400)
        else:
            synapse = nn.Conv2d(1, 16, 5, padding=2, bias=False)
            pre_shape, post_shape = (steps, batch, 1, 28, 28), (steps, batch, 16, 28, 28)
        synapse = synapse.to(device)
        pre = (torch.rand(pre_shape, generator=g) < 0.05).float().to(device)
        post = (torch.rand(post_shape, generator=g) < 0.05).float().to(device)
        reward = {"reward": torch.ones(steps, batch, device=device)} if name == "mstdpet" else {}
        rule = makers[name](synapse)

        def window(rule=rule, pre=pre, post=post, reward=reward):
            rule.observe(pre, post, **reward)
            rule.step()
            rule.reset()
            rule.weight.grad = None

        candidates = rule.plan.candidates(conv=kind == "conv")
        times, names = {}, {}
        for i, c in enumerate(candidates):
            CHOOSER.choose = lambda plan, inputs, kernels, nnz, c=c: c  # forced
            try:
                times[i] = timed(window, device, repeats)
            finally:
                del CHOOSER.choose
            names[i] = "/".join(sorted({k.name for k in c}))
        auto = timed(window, device, repeats)
        chosen = sorted(set(rule.kernel_choice.values()))
        CHOOSER.benchmark = True
        try:
            for _ in range(2 * CHOOSER.rounds + 1):  # the measuring chunks first
                window()
            timed_choice = timed(window, device, repeats)
            picked = sorted(set(rule.kernel_choice.values()))
        finally:
            CHOOSER.benchmark = False
        rows_tb = steps * batch
        a = torch.rand(rows_tb, post[0, 0].numel() if kind == "dense" else 1, device=device)
        b = torch.rand(rows_tb, pre[0, 0].numel() if kind == "dense" else 1, device=device)
        floor = timed(lambda a=a, b=b: a.t() @ b, device, repeats) if kind == "dense" else None
        best = min(times.values())
        rows.append({
            "rule": name, "synapse": kind, "batch": batch, "auto_ms": auto * 1e3,
            "auto_kernels": "/".join(chosen), "timed_ms": timed_choice * 1e3,
            "timed_kernels": "/".join(picked),
            "candidates_ms": {names[i]: t * 1e3 for i, t in times.items()},
            "best_ms": best * 1e3, "auto_over_best": auto / best,
            "gemm_floor_ms": None if floor is None else floor * 1e3,
        })  # fmt: skip
        rule.detach()
    return rows


def hooks_row(device: torch.device, repeats: int) -> dict:
    """The forward pass on the GPU, alone and with ``pl.STDP`` attached (+ ``step()``)."""
    import snntorch as snn
    from stdp_dense import A_MINUS, A_PLUS, TAU
    from torch import nn

    import plasticity as pl

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(250, 32, 784, generator=g) < 0.05).float().to(device)
    fc = nn.Linear(784, 400, bias=False).to(device)
    with torch.no_grad():
        fc.weight.uniform_(0.0, 0.006)
    lif = snn.Leaky(beta=0.9)
    rule = pl.STDP(fc, lif, a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU)

    def loop():
        with torch.no_grad():
            mem = lif.init_leaky()
            for t in range(x.shape[0]):
                _, mem = lif(fc(x[t]), mem)

    def with_rule():
        rule.train()
        loop()
        rule.step()
        rule.reset()
        fc.weight.grad = None

    def without():
        rule.eval()
        loop()

    plain, learning = timed(without, device, repeats), timed(with_rule, device, repeats)
    rule.detach()
    return {"forward_ms": plain * 1e3, "hooks_ms": learning * 1e3,
            "rule_ms": (learning - plain) * 1e3, "hooks_over_forward": learning / plain}  # fmt: skip


def reproducible(device: torch.device) -> bool:
    """The reproducibility scenario twice in this process, bit for bit."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reproducibility_case import run

    return run(device.type) == run(device.type)


# ---------------------------------------------------------------------------- summary


def summary(info: dict) -> str:
    lines = [f"# gpu-check: {info['device']}", ""]
    tests = info.get("tests")
    if tests is not None:
        state = "ok" if tests["ok"] else "FAILED"
        lines += [f"tests (pytest -m cuda): {tests['summary']}: {state}"]
        lines += [f"  failed: {name}" for name in tests.get("failed", [])]
        lines += [""]
    if info.get("kernels"):
        lines += ["kernel choice, ms per window (auto: the cost model; timed: "
                  "CHOOSER.benchmark = True; candidates forced):", "",
                  "| rule | synapse | B | auto (kernels) | timed (kernels) | candidates | "
                  "auto / best | one GEMM |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in info["kernels"]:
            cands = ", ".join(f"{k} {v:.2f}" for k, v in r["candidates_ms"].items())
            floor = "" if r["gemm_floor_ms"] is None else f"{r['gemm_floor_ms']:.2f}"
            lines.append(f"| {r['rule']} | {r['synapse']} | {r['batch']} | {r['auto_ms']:.2f} "
                         f"({r['auto_kernels']}) | {r['timed_ms']:.2f} ({r['timed_kernels']}) | "
                         f"{cands} | {r['auto_over_best']:.2f} | {floor} |")  # fmt: skip
        lines += [""]
    if info.get("hooks"):
        h = info["hooks"]
        lines += [f"hooks (784 → 400, B = 32, T = 250): forward {h['forward_ms']:.1f} ms, with "
                  f"pl.STDP {h['hooks_ms']:.1f} ms (rule {h['rule_ms']:.1f} ms, "
                  f"{h['hooks_over_forward']:.2f}x the forward pass)", ""]  # fmt: skip
    if "reproducible" in info:
        lines += [f"reproducible (the same scenario twice, bit for bit): "
                  f"{'yes' if info['reproducible'] else 'NO'}", ""]  # fmt: skip
    lines += [f"total {info['seconds'] / 60:.1f} min: {'OK' if info['ok'] else 'FAILED'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="fewer cases, fewer repeats")
    parser.add_argument("--skip-tests", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        problem = device_problem()
        if problem is not None:
            print(f"gpu-check: no GPU to check: {problem}. Nothing was run.", file=sys.stderr)
            return 2
    start = time.perf_counter()
    device = torch.device(args.device)
    sys.path.insert(0, str(HERE))
    info: dict = {"device": describe(device)}
    ok = True
    if args.device == "cuda" and not args.skip_tests:
        info["tests"] = run_tests(min(TESTS_TIMEOUT_S, BUDGET_S - 120))
        ok &= info["tests"]["ok"]
        if not info["tests"]["ok"] and info["tests"].get("tail"):
            print(info["tests"]["tail"], file=sys.stderr)
    repeats = 3 if args.quick else 5
    info["kernels"] = kernel_rows(device, args.quick, repeats)
    info["hooks"] = hooks_row(device, repeats)
    info["reproducible"] = reproducible(device)
    ok &= info["reproducible"]
    info["seconds"] = time.perf_counter() - start
    info["ok"] = bool(ok)
    text = summary(info)
    print(text)
    if args.out is not None and args.device == "cuda":
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.md").write_text(text + "\n", encoding="utf-8")
        (args.out / "gpu_check.json").write_text(json.dumps(info, indent=1, default=str),
                                                 encoding="utf-8")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
