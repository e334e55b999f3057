"""Reproducibility: the same inputs give the same bits in every run and process.

The engine chooses each chunk's kernels by a cost model (:mod:`plasticity.engine.cost`),
never by a clock, so a script's results do not depend on the machine's load; timing is an
opt-in (``CHOOSER.benchmark``) that ``torch.use_deterministic_algorithms(True)``
overrides. The scenario (tests/reproducibility_case.py) runs in fresh processes, with a
CPU-burning process started between them, and their Δw are compared bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reproducibility_case import CHUNK, WINDOWS, N, run
from torch import nn

import plasticity as pl
from plasticity.engine import CHOOSER, KernelChooser
from plasticity.functional.correlate import Kernels

ROOT = Path(__file__).resolve().parents[1]
CASE = Path(__file__).with_name("reproducibility_case.py")
BURN = "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass\n"


def _env(device: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if device == "cuda":  # cuBLAS's deterministic mode (torch asks for it under the flag)
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return env


def _fresh(device: str, *flags: str) -> dict:
    """The scenario's results from a fresh process (the parent's thread count)."""
    proc = subprocess.run(
        [sys.executable, str(CASE), device, str(torch.get_num_threads()), *flags],
        env=_env(device), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def baseline() -> dict:
    """The scenario in a fresh process on an idle machine (as idle as the suite leaves it)."""
    return _fresh("cpu")


def test_the_same_script_gives_the_same_bits_in_fresh_processes_under_load(baseline):
    """Three fresh processes, the second and third with another process burning a core
    from before they start: every window's Δw and the final weight are the same bytes.
    (With the kernels chosen by timing, the post-side and pre-side candidates of this
    symmetric layer were a coin toss per chunk shape: the processes differed from the
    second window on.)"""
    results = [baseline]
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        time.sleep(0.2)  # loaded before the next process starts
        results.append(_fresh("cpu"))
        results.append(_fresh("cpu"))
    finally:
        burner.kill()
        burner.wait()
    first = results[0]
    assert len(first["dw"]) == len(WINDOWS) and len(set(first["dw"])) == len(WINDOWS)
    for other in results[1:]:
        assert other["dw"] == first["dw"]
        assert other["weight"] == first["weight"]
        assert other["kernels"] == first["kernels"]


def test_this_process_gives_the_bits_of_a_fresh_one(baseline):
    """The scenario in this process (whatever ran in it before: other tests, other
    shapes) equals a fresh process: nothing a process has seen changes the kernels."""
    assert run("cpu") == baseline


def test_use_deterministic_algorithms_is_honoured(device, baseline, monkeypatch):
    """Under ``torch.use_deterministic_algorithms(True)`` the scenario runs (no kernel of
    the engine is refused on the device) and gives the bits it gives without the flag,
    with ``CHOOSER.benchmark = True`` too: the flag overrides the opt-in timed choice.
    (CUDA: in fresh processes with ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which torch asks
    for under the flag.)"""
    if device.type != "cpu":
        assert _fresh(device.type, "deterministic", "benchmark") == _fresh(device.type)
        return
    monkeypatch.setattr(CHOOSER, "benchmark", True)
    torch.use_deterministic_algorithms(True)
    try:
        flagged = run("cpu")
    finally:
        torch.use_deterministic_algorithms(False)
    assert flagged == baseline


def test_float64_is_reproducible_too():
    """float64 (event sums as a CSR product on CPU): a fresh process gives this one's
    bits."""
    assert _fresh("cpu", "float64") == run("cpu", torch.float64)


def test_the_cost_model_is_a_pure_function_of_its_inputs(monkeypatch):
    """The choice reads no clock (``time.perf_counter`` and ``time.time`` raise), and the
    same plan, shapes and spike counts give the same choice, whatever was chosen
    before."""

    def clock():
        raise AssertionError("the cost model read a clock")

    fc = nn.Linear(N, N, bias=False)
    rule = pl.STDP(fc, nn.Identity(), a_plus=1.0, a_minus=1.0, tau_plus=20.0, tau_minus=20.0)
    plan = rule.plan
    g = torch.Generator().manual_seed(0)
    chooser = KernelChooser()
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(time, "time", clock)
    seen = {}
    for rate in (0.001, 0.02, 0.05, 0.2, 0.6):
        for steps, batch in ((CHUNK, 16), (7, 1), (200, 4)):
            pre = (torch.rand(steps, batch, N, generator=g) < rate).float()
            post = (torch.rand(steps, batch, N, generator=g) < rate).float()
            nnz = [int(pre.sum()), int(post.sum())]
            first = chooser.choose(plan, {"pre": pre, "post": post},
                                   Kernels(fc.weight, None, None), nnz)  # fmt: skip
            assert first in plan.candidates(conv=False)
            seen[rate, steps, batch] = (nnz, first)
    for (_, steps, batch), (nnz, first) in reversed(seen.items()):  # another order, chooser
        blank = {"pre": torch.zeros(steps, batch, N), "post": torch.zeros(steps, batch, N)}
        # the shapes and counts decide, not the spikes' values, nor anything before
        assert KernelChooser().choose(plan, blank, Kernels(fc.weight, None, None), nnz) == first
    # the activity matters: GEMMs for dense spike trains, events for sparse ones
    assert seen[0.6, 200, 4][1] == plan.candidates(conv=False)[0]
    assert seen[0.001, 200, 4][1] != plan.candidates(conv=False)[0]


def test_the_choice_follows_the_operation_counts():
    """The modelled cost grows with the work: a GEMM's cost with its multiply-adds, an
    event-driven candidate's with the spikes; equal work costs the same."""
    from plasticity.engine import cost

    fc = nn.Linear(400, 300, bias=False)
    plan = pl.STDP(fc, nn.Identity(), a_plus=1.0, a_minus=1.0, tau_plus=20.0,
                   tau_minus=20.0).plan  # fmt: skip
    gemm, post_side = plan.candidates(conv=False)[:2]
    shape = dict(rows=1000, batch=10, n_pre=400, n_post=300, k_in=400, weight=120000,
                 itemsize=4, profile=cost.PROFILES["cpu"])  # fmt: skip
    dense = cost.candidate_cost(plan, gemm, nnz=(0, 0), **shape)
    assert dense == cost.candidate_cost(plan, gemm, nnz=(400_000, 300_000), **shape)
    bigger = dict(shape, rows=2000)
    assert cost.candidate_cost(plan, gemm, nnz=(0, 0), **bigger) > 1.9 * dense
    few, many = (
        cost.candidate_cost(plan, post_side, nnz=(4000, k), **shape) for k in (3000, 30000)
    )
    assert many > few
    assert cost.cheapest(plan, plan.candidates(conv=False), nnz=(4000, 3000), **shape) != gemm
    assert cost.cheapest(plan, plan.candidates(conv=False), nnz=(300_000, 200_000),
                         **shape) == gemm  # fmt: skip


def test_timed_choice_is_an_opt_in(monkeypatch):
    """By default no candidate is timed (the clock is never read by the engine); with
    ``CHOOSER.benchmark = True`` the candidates are timed, as before."""
    calls = []
    real = time.perf_counter

    def counting():
        calls.append(1)
        return real()

    from plasticity.engine import chooser as chooser_module

    monkeypatch.setattr(chooser_module.time, "perf_counter", counting)
    fc = nn.Linear(50, 40, bias=False)
    rule = pl.STDP(fc, nn.Identity(), a_plus=1.0, a_minus=1.0, tau_plus=5.0, tau_minus=5.0)
    g = torch.Generator().manual_seed(0)
    spikes = [(torch.rand(30, 2, n, generator=g) < 0.1).float() for n in (50, 40)]
    rule.observe(*spikes)
    rule.step()
    assert calls == [] and not CHOOSER.benchmark
    monkeypatch.setattr(CHOOSER, "benchmark", True)
    monkeypatch.setattr(CHOOSER, "fastest", {})
    monkeypatch.setattr(CHOOSER, "samples", {})
    rule.observe(*spikes)
    rule.step()
    assert calls  # timed
    calls.clear()
    torch.use_deterministic_algorithms(True)
    try:
        monkeypatch.setattr(CHOOSER, "fastest", {})
        monkeypatch.setattr(CHOOSER, "samples", {})
        rule.observe(*spikes)
        rule.step()
    finally:
        torch.use_deterministic_algorithms(False)
    assert calls == []  # the flag overrides the opt-in


def test_conv_weight_gradients_are_deterministic(device, monkeypatch):
    """A conv rule's weight-gradient gives the same bits call after call, with the user's
    ``torch.backends.cudnn.benchmark = True`` (on CUDA, cuDNN's deterministic algorithms
    run within the call) and leaves cuDNN's settings as they were."""
    from plasticity.functional import conv_correlate

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    g = torch.Generator().manual_seed(0)
    post = (torch.rand(40, 8, 6, 30, 30, generator=g) < 0.1).float().to(device)
    pre = torch.rand(40, 8, 3, 32, 32, generator=g).to(device)
    geometry = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)
    first = conv_correlate(post, pre, (6, 3, 3, 3), **geometry)
    for _ in range(3):
        assert torch.equal(conv_correlate(post, pre, (6, 3, 3, 3), **geometry), first)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
