"""Checkpoints: every rule and homeostasis module resumes bit-exactly in a fresh process.

Each test saves a network mid-window (steps buffered, traces non-zero, rewards pending,
BCM's threshold and the adaptive threshold adapted) with ``torch.save``, loads it with
``torch.load(..., weights_only=True)`` into fresh modules in a new Python process, in each
load order, and compares what follows with the uninterrupted run: ``torch.equal`` on the
spikes, weights, the last window's Δw, thresholds and the membrane. Loading the model
alone (the module's state left out) must not reproduce the run: the module's state matters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoint_cases import CASES, CHUNK, orders, uninterrupted

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("checkpoint_cases.py")


def _resume_in_fresh_process(case: str, checkpoint: Path, out: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    threads = str(torch.get_num_threads())
    proc = subprocess.run(
        [sys.executable, str(WORKER), case, str(checkpoint), str(out), threads],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_mid_window_resumes_bit_exactly_in_a_fresh_process(case, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    expected, probe = uninterrupted(case, str(checkpoint))
    # the checkpoint is mid-window: the window's first chunk accumulated, steps still to come
    if case != "AdaptiveThreshold":
        assert sum(probe["counts"]) >= 1 and "dw" in expected  # pos, neg or both
    if case in ("BCM", "AdaptiveThreshold"):
        assert bool((probe["theta"] > 0).all())  # the threshold has adapted
    assert probe["pending_steps"] > CHUNK and bool(expected["spikes"].sum() > 0)

    results = _resume_in_fresh_process(case, checkpoint, tmp_path / "resumed.pt")
    assert set(results) == set(orders(case))
    for order, got in results.items():
        if order == "model-only" and isinstance(got, str):
            continue  # e.g. reward() with no step buffered: the module's state matters
        assert not isinstance(got, str), f"{case}, {order}: {got}"
        assert set(got) == set(expected), order
        same = {key: torch.equal(got[key], value) for key, value in expected.items()}
        if order == "model-only":  # negative control: the module's state matters
            assert not all(same.values()), f"{case}: resumed without the module's state"
        else:
            assert all(same.values()), (
                f"{case}, {order}: {[k for k, v in same.items() if not v]} differ"
            )
