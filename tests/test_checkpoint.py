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


# ------------------------------------------------- a checkpoint of another configuration


def _stdp(n_out=6, cls="STDP", **kw):
    import snntorch as snn

    import plasticity as pl

    fc = torch.nn.Linear(12, n_out, bias=False)
    with torch.no_grad():  # the same weights in every build
        fc.weight.uniform_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    opts = dict(a_plus=0.02, a_minus=0.021, tau_plus=5.0, tau_minus=6.0, chunk_size=4) | kw
    if cls == "TripletSTDP":
        return pl.TripletSTDP(fc, snn.Leaky(beta=0.8), a2_plus=0.01, a3_plus=0.02, a2_minus=0.015,
                              a3_minus=0.001, tau_plus=5.0, tau_minus=6.0, tau_x=30.0, tau_y=40.0,
                              chunk_size=4)  # fmt: skip
    return pl.STDP(fc, snn.Leaky(beta=0.8), **opts)


def _mid_window(rule, seed=0):
    """Observes 10 steps (chunks of 4: traces carried, a window held, 2 steps buffered)."""
    g = torch.Generator().manual_seed(seed)
    n_out = rule.weight.shape[0]
    rule.observe((torch.rand(10, 3, 12, generator=g) < 0.4).float(),
                 (torch.rand(10, 3, n_out, generator=g) < 0.4).float())  # fmt: skip
    return rule


def _saved(rule) -> dict:
    """``rule.state_dict()`` through ``torch.save`` and ``torch.load(weights_only=True)``."""
    import io

    buffer = io.BytesIO()
    torch.save(rule.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _snapshot(rule):
    extra = rule.get_extra_state()
    acc = rule.accumulator
    return [extra["state"], extra["pre"], extra["post"], extra["batch"], acc.pos, acc.neg,
            acc.counts]  # fmt: skip


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("other, words", [
    (dict(tau_plus=10.0), ["state: saved pre.trace(5), here pre.trace(10)"]),
    (dict(trace="nearest"), ["pre.trace(5, nearest=True)", "post.trace(6, nearest=True)"]),
    (dict(cls="TripletSTDP"), ["rule: saved 'STDP', here 'TripletSTDP'"]),
    (dict(n_out=5), ["weight: saved [6, 12], here [5, 12]"]),
    (dict(dt=0.5), ["dt: saved 1.0, here 0.5"]),
    (dict(batch_reduction="sum"), ["batch_reduction: saved 'mean', here 'sum'"]),
])  # fmt: skip
@pytest.mark.parametrize("saved_by_main", [False, True])
def test_a_checkpoint_of_another_configuration_is_refused_by_name(other, words, saved_by_main):
    """``STDP(tau=5)`` into ``tau=10``, another trace mode, class, layer size, ``dt`` or
    batch reduction: refused at ``load_state_dict`` naming what differs, before anything
    changes (the rule loaded into keeps its own window). A checkpoint saved before the
    configuration was (main at 1976b05: no ``config``) is checked by its state's names and
    its window's shape."""
    ckpt = _saved(_mid_window(_stdp()))
    if saved_by_main:
        ckpt["_extra_state"].pop("config", None)
    target = _mid_window(_stdp(**other), seed=1)
    before = _snapshot(target)
    if saved_by_main and set(other) <= {"cls", "dt", "batch_reduction"}:
        target.load_state_dict(ckpt)  # nothing in the old checkpoint tells these apart
        return
    with pytest.raises(ValueError, match="another configuration|the saved window's") as info:
        target.load_state_dict(ckpt)
    if not saved_by_main:
        for w in words:
            assert w in str(info.value), str(info.value)
    assert _same(_snapshot(target), before)


@pytest.mark.parametrize("saved_by_main", [False, True])
def test_a_checkpoint_of_the_same_configuration_loads_also_with_other_amplitudes(saved_by_main):
    """Amplitudes are not state (a learning rate lowered for fine-tuning loads); a
    checkpoint without the configuration (saved by main at 1976b05) still loads, and the
    window continues as the uninterrupted one."""
    g = torch.Generator().manual_seed(2)
    pre = (torch.rand(20, 3, 12, generator=g) < 0.4).float()
    post = (torch.rand(20, 3, 6, generator=g) < 0.4).float()
    run = _stdp()
    run.observe(pre[:10], post[:10])
    ckpt = _saved(run)
    if saved_by_main:
        ckpt["_extra_state"].pop("config", None)
    run.observe(pre[10:], post[10:])
    expected = run.step()
    resumed = _stdp()
    resumed.load_state_dict(ckpt)
    resumed.observe(pre[10:], post[10:])
    assert torch.equal(resumed.step(), expected)
    lowered = _stdp(a_plus=0.01, a_minus=0.01)
    lowered.load_state_dict(ckpt)
    assert _same(lowered.get_extra_state()["state"], ckpt["_extra_state"]["state"])
