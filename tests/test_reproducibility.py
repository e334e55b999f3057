"""Same inputs, same seed, same machine: the same bits, in every process and under load.

The issue's script (784 -> 400, B = 32, seed 0, four windows of 250 steps through the
hooks) runs in several fresh processes, with the other cores busy during some of them;
the bytes of every window's Δw must agree. Before the cost model, the kernels were chosen
by timing the candidates, so the choice (and the last bits) followed the machine's load.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import snntorch as snn
import torch

import plasticity as pl
from plasticity.engine import CHOOSER

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import torch, snntorch as snn
    import plasticity as pl

    torch.manual_seed(0)
    fc = torch.nn.Linear(784, 400, bias=False)
    with torch.no_grad():
        fc.weight.uniform_(0.0, 0.02)
    lif = snn.Leaky(beta=0.9)
    stdp = pl.STDP(fc, lif, a_plus=1e-3, a_minus=1.05e-3, tau_plus=20.0, tau_minus=20.0)
    digest = hashlib.sha256()
    for window in range(4):
        x = (torch.rand(250, 32, 784) < 0.05).float()
        mem = lif.init_leaky()
        for t in range(x.shape[0]):
            spk, mem = lif(fc(x[t]), mem)
        dw = stdp.step()
        digest.update(dw.numpy().tobytes())
        with torch.no_grad():
            fc.weight.add_(dw).clamp_(0.0, 0.02)
        stdp.reset()
    print(digest.hexdigest(), sorted(set(stdp.kernel_choice.values())))
    """
)


def _burn(seconds: float) -> None:  # keeps one core busy
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _run_script() -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300, check=True)  # fmt: skip
    return out.stdout.strip()


def test_the_same_script_gives_the_same_bits_in_fresh_processes_under_load():
    results = [_run_script()]
    ctx = mp.get_context("spawn")
    burners = [ctx.Process(target=_burn, args=(60.0,)) for _ in range(max(1, os.cpu_count() or 1))]
    for p in burners:  # every core busy while the second process runs
        p.start()
    try:
        results.append(_run_script())
    finally:
        for p in burners:
            p.terminate()
            p.join()
    results.append(_run_script())
    digests = [r.split()[0] for r in results]
    assert len(set(digests)) == 1, results


def _windows(seed: int = 0, windows: int = 3) -> bytes:
    g = torch.Generator().manual_seed(seed)
    fc = torch.nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(32, 64, generator=g) * 0.1)
    rule = pl.TripletSTDP(fc, snn.Leaky(beta=0.9), a2_plus=5e-3, a3_plus=6e-3, a2_minus=7e-3,
                          a3_minus=2e-4, tau_plus=16.8, tau_minus=33.7, tau_x=101.0,
                          tau_y=125.0)  # fmt: skip
    out = b""
    for _ in range(windows):
        x = (torch.rand(120, 8, 64, generator=g) < 0.1).float()
        s = (torch.rand(120, 8, 32, generator=g) < 0.1).float()
        rule.observe(x, s)
        out += rule.step().numpy().tobytes()
    rule.detach()
    return out


def test_the_kernel_choice_reads_no_clock(monkeypatch):
    import time

    def no_clock() -> float:
        raise AssertionError("the default kernel choice must not read a clock")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    monkeypatch.setattr(time, "perf_counter_ns", no_clock)
    monkeypatch.setattr(time, "monotonic", no_clock)
    monkeypatch.setattr(time, "time", no_clock)
    assert hashlib.sha256(_windows()).hexdigest() == hashlib.sha256(_windows()).hexdigest()


def test_use_deterministic_algorithms_is_honoured_and_changes_nothing_on_the_cpu():
    plain = _windows(seed=3)
    torch.use_deterministic_algorithms(True)
    try:
        strict = _windows(seed=3)
    finally:
        torch.use_deterministic_algorithms(False)
    assert strict == plain


def test_timed_choice_is_an_opt_in_and_deterministic_algorithms_override_it(monkeypatch):
    assert CHOOSER.benchmark is False  # reproducible by default
    monkeypatch.setattr(CHOOSER, "benchmark", True)
    assert CHOOSER.timed()
    torch.use_deterministic_algorithms(True)
    try:
        assert not CHOOSER.timed()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("kernel", ["auto", "dense", "sparse"])
def test_every_kernel_option_gives_the_same_bits_twice(kernel):
    def run() -> bytes:
        g = torch.Generator().manual_seed(1)
        fc = torch.nn.Linear(50, 20, bias=False)
        rule = pl.STDP(fc, snn.Leaky(beta=0.9), a_plus=0.01, a_minus=0.012, tau_plus=15.0,
                       tau_minus=25.0, kernel=kernel)  # fmt: skip
        out = b""
        for _ in range(3):
            rule.observe((torch.rand(90, 4, 50, generator=g) < 0.05).float(),
                         (torch.rand(90, 4, 20, generator=g) < 0.05).float())  # fmt: skip
            out += rule.step().numpy().tobytes()
        rule.detach()
        return out

    assert run() == run()
