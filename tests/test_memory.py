"""Memory: no rule ever materializes a ``[B, N_out, N_in]`` tensor.

Every tensor any aten operator returns while a rule learns (hooks, chunk kernels,
``step()``) is watched through a ``TorchDispatchMode``; the largest must stay far below
``B·N_out·N_in`` elements. The same watcher sees snnTorch's learner build exactly such a
tensor, so the check can fail.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from snntorch.functional.stdp_learner import stdp_linear_single_step
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import plasticity as pl

T, B, N_IN, N_OUT = 24, 16, 100, 80
OUTER = B * N_OUT * N_IN  # 128 000 elements
# the largest legitimate tensors: a chunk of pre spikes or traces, and an event index of
# (row, neuron) pairs of one chunk's spikes (chunk_size=T here, so that step buffers stay
# well below the outer product they must never be confused with)
LEGITIMATE = 2 * (T + 1) * B * N_IN  # 80 000 < OUTER


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in elements) returned by any operator."""

    def __init__(self) -> None:
        super().__init__()
        self.numel, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), func
        return out


PAIR = dict(a_plus=0.01, a_minus=0.012, tau_plus=10.0, tau_minus=12.0)
RULES = {
    "stdp": lambda fc, lif: pl.STDP(fc, lif, **PAIR),
    "stdp_nearest_dense": lambda fc, lif: pl.STDP(fc, lif, trace="nearest", kernel="dense", **PAIR),
    "stdp_sparse": lambda fc, lif: pl.STDP(fc, lif, kernel="sparse", **PAIR),
    "triplet": lambda fc, lif: pl.TripletSTDP.from_preset(fc, lif, "visual_cortex_all_to_all_full"),
    "mstdp": lambda fc, lif: pl.MSTDP(fc, lif, **PAIR),
    "mstdpet": lambda fc, lif: pl.MSTDPET(fc, lif, tau_e=50.0, **PAIR),
    "dopamine": lambda fc, lif: pl.DopamineSTDP(fc, lif),
    "oja": lambda fc, lif: pl.Oja(fc, lif, eta=0.01, tau_rate=10.0),
    "bcm": lambda fc, lif: pl.BCM(fc, lif, eta=0.01, tau_theta=50.0, tau_rate=10.0),
    "scaling": lambda fc, lif: pl.SynapticScaling(
        fc, lif, target_rate=0.05, tau_rate=10.0, eta=0.01
    ),
}


@pytest.mark.parametrize("name", list(RULES))
def test_no_rule_builds_a_batch_outer_product(name):
    g = torch.Generator().manual_seed(0)
    fc = nn.Linear(N_IN, N_OUT, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(N_OUT, N_IN, generator=g) * 0.2)
    lif = snn.Leaky(beta=0.9)
    rule = RULES[name](fc, lif)
    rule.chunk_size = T
    x = (torch.rand(T, B, N_IN, generator=g) < 0.2).float()
    watcher = LargestTensor()
    with watcher:
        mem = lif.init_leaky()
        spikes = 0.0
        for t in range(T):
            spk, mem = lif(fc(x[t]), mem)
            spikes += float(spk.detach().sum())
            if rule.plan.reads_mod:  # a rule with a third factor
                rule.reward(float(torch.randn(1, generator=g)))
            if hasattr(rule, "release"):
                rule.release(0.5)
        update = rule.step()
    assert spikes > 0 and update is not None and torch.count_nonzero(update) > 0
    assert watcher.numel <= LEGITIMATE < OUTER, (watcher.numel, watcher.op)


def test_the_watcher_sees_snntorchs_learner_build_one():
    """The check above can fail: snnTorch's learner makes a [B, N_out, N_in] tensor per step."""
    g = torch.Generator().manual_seed(1)
    fc = nn.Linear(N_IN, N_OUT, bias=False)
    pre = (torch.rand(B, N_IN, generator=g) < 0.2).float()
    post = (torch.rand(B, N_OUT, generator=g) < 0.2).float()
    watcher = LargestTensor()
    with watcher:
        stdp_linear_single_step(fc, pre, post, None, None, 10.0, 12.0)
    assert watcher.numel >= OUTER


def _peak_bytes(fn) -> int:
    """Peak of bytes allocated while ``fn`` runs: benchmarks/memory.py's profiler replay."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"
    spec = importlib.util.spec_from_file_location("_benchmarks_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.peak_memory(fn)["peak"]


@pytest.mark.parametrize("candidate", range(4))
@pytest.mark.parametrize("name", list(RULES))
def test_hooks_path_stays_within_three_weights_and_one_and_a_half_step_buffers(
    name, candidate, monkeypatch
):
    """Through the hooks, every built-in rule (fresh, its step buffers allocated within
    the window: buffers filled, three chunks, step()) peaks within 3 W + 1.5 S: the two
    running sums and one result (3 W), the step buffers (S), and the tables of a
    sub-chunk (at most S / 2, however many traces the rule reads, less the eligibility
    trace of MSTDPET and dopamine STDP). Whichever kernels the measurement picks: each
    candidate of the plan is forced in turn."""
    from plasticity.engine import chooser
    from plasticity.engine.run import run_plan

    def forced(self, option, plan, inputs, state, kernels, deliver, *args, scale=1.0):
        found = plan.candidates(conv=kernels.conv is not None)
        choice = found[min(candidate, len(found) - 1)]
        return run_plan(plan, choice, inputs, state, kernels, deliver, scale=scale)

    monkeypatch.setattr(chooser.KernelChooser, "run", forced)
    steps, batch, n_in, n_out, chunk = 120, 16, 2000, 100, 40
    g = torch.Generator().manual_seed(0)
    pre = (torch.rand(steps, batch, n_in, generator=g) < 0.05).float()
    post = (torch.rand(steps, batch, n_out, generator=g) < 0.05).float()
    rewards = torch.randn(steps, generator=g).tolist()
    fc = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        fc.weight.uniform_(0.0, 0.2, generator=g)

    def window():  # a fresh rule: its step buffers are allocated within the window
        rule = RULES[name](fc, snn.Leaky(beta=0.9))
        rule.chunk_size = chunk
        for t in range(steps):  # the hooks, fed the recorded spikes
            rule._on_pre(fc, (pre[t],), {})
            rule._on_post(rule.neuron, (), post[t])
            if rule.plan.reads_mod:
                rule.reward(rewards[t])
        rule.step()
        rule.detach()

    window()  # two windows fill the caches (decay powers, kernels timed on two chunks each)
    window()
    fc.weight.grad = None
    peak = _peak_bytes(window)
    w_bytes = n_out * n_in * 4
    s_bytes = chunk * batch * (n_in + n_out) * 4
    assert fc.weight.grad.abs().sum() > 0
    assert peak <= 3 * w_bytes + 1.5 * s_bytes, (peak / (3 * w_bytes + s_bytes))


@pytest.mark.parametrize("kind", ["pair", "triplet"])
def test_recorded_spikes_path_keeps_one_pre_sized_table(kind):
    """On recorded spikes (``observe()``: the caller's tensors, never written) pair and
    triplet STDP keep one pre-sized table (triplet: o2, r1, the weighted pre spikes and
    their future trace in turn): a window peaks within 3 W + one chunk of spikes (the
    table) and a few per-step rows (sqrt(T) of them for the triplet weighting), where a
    table per trace would add another S_pre or more."""
    steps, batch, n_in, n_out, chunk = 60, 16, 2000, 100, 20
    g = torch.Generator().manual_seed(1)
    pre = (torch.rand(steps, batch, n_in, generator=g) < 0.05).float()
    post = (torch.rand(steps, batch, n_out, generator=g) < 0.05).float()
    fc = nn.Linear(n_in, n_out, bias=False)

    def window():
        lif = snn.Leaky(beta=0.9)
        rule = (
            pl.STDP(fc, lif, **PAIR, chunk_size=chunk, kernel="sparse")
            if kind == "pair"
            else pl.TripletSTDP.from_preset(
                fc, lif, "visual_cortex_all_to_all_full", chunk_size=chunk, kernel="sparse"
            )
        )
        rule.observe(pre, post)
        rule.step()
        rule.detach()

    window()
    fc.weight.grad = None
    pre_before = pre.clone()
    peak = _peak_bytes(window)
    assert torch.equal(pre, pre_before) and fc.weight.grad.abs().sum() > 0
    w_bytes = n_out * n_in * 4
    s_bytes = chunk * batch * (n_in + n_out) * 4
    rows = 6 * batch * n_in * 4
    assert peak <= 3 * w_bytes + s_bytes + rows, (peak, 3 * w_bytes + s_bytes)
    assert peak < 3 * w_bytes + s_bytes + chunk * batch * n_in * 4 // 2  # one table only
