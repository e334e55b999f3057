"""Checkpoint scenarios for tests/test_checkpoint.py, also run as a script in a fresh process.

A small network (``nn.Linear`` -> ``snn.Leaky``) learns with one rule or homeostasis module
and a clamped Adam optimizer. The run is a list of actions (forward steps, per-step rewards
or dopamine, window ends). The parent test runs every action uninterrupted and writes a
checkpoint (``torch.save`` of the model, module and optimizer state dicts and the loop's
membrane) at :data:`CHECKPOINT`, mid-window; then, as a script::

    python tests/checkpoint_cases.py CASE CHECKPOINT_FILE OUT_FILE THREADS

builds fresh modules (other initial weights), loads the checkpoint with
``weights_only=True`` in every load order of :func:`orders`, runs the remaining actions and
saves what it measured for each order. The parent compares them bit for bit.
"""

from __future__ import annotations

import sys
from typing import Any

import snntorch as snn
import torch
from torch import nn

import plasticity as pl

N_IN, N_OUT, BATCH, STEPS = 12, 6, 3, 40
CHUNK = 8
WINDOW = 10  # window 1 ends after this step; window 2 runs to the end
CHECKPOINT_STEP = 23  # the checkpoint comes after this step's forward, before its reward
CASES = (
    "STDP",
    "TripletSTDP",
    "MSTDP",
    "MSTDPET",
    "DopamineSTDP",
    "Oja",
    "BCM",
    "SynapticScaling",
    "AdaptiveThreshold",
    "Clopath",
    "Rule",
)
REWARDED = ("MSTDP", "MSTDPET", "DopamineSTDP")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(N_IN, N_OUT, bias=False)
        nn.init.uniform_(self.fc.weight, 0.0, 0.5)
        self.lif = snn.Leaky(beta=0.8)

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lif(self.fc(x), mem)


def data() -> dict[str, torch.Tensor]:
    """The run's inputs, the same in every process."""
    g = torch.Generator().manual_seed(1234)
    return {
        "x": (torch.rand(STEPS, BATCH, N_IN, generator=g) < 0.35).float(),
        "reward": torch.randn(STEPS, BATCH, generator=g),
        "release": torch.rand(STEPS, generator=g) * (torch.rand(STEPS, generator=g) < 0.3),
    }


def build(case: str, seed: int, *, module: bool = True) -> dict[str, Any]:
    """The network, its optimizer and (``module=True``) the rule or homeostasis module."""
    torch.manual_seed(seed)
    net = Net()
    parts: dict[str, Any] = {"net": net}
    parts["opt"] = pl.ClampedParameterOptimizer(
        [net.fc.weight], torch.optim.Adam, lr=1e-2, clamp_min=0.0, clamp_max=1.0
    )
    if module:
        parts["module"] = make_module(case, net)
    return parts


def make_module(case: str, net: Net) -> nn.Module:
    fc, lif = net.fc, net.lif
    stdp = dict(a_plus=0.02, a_minus=0.021, tau_plus=5.0, tau_minus=6.0, chunk_size=CHUNK)
    if case == "STDP":
        rule: nn.Module = pl.STDP(fc, lif, **stdp)
    elif case == "TripletSTDP":
        rule = pl.TripletSTDP(
            fc, lif, a2_plus=0.01, a3_plus=0.02, a2_minus=0.015, a3_minus=0.001,
            tau_plus=5.0, tau_minus=6.0, tau_x=30.0, tau_y=40.0, chunk_size=CHUNK,
        )  # fmt: skip
    elif case == "MSTDP":
        rule = pl.MSTDP(fc, lif, window_reward=True, per_sample=True, **stdp)
    elif case == "MSTDPET":
        rule = pl.MSTDPET(fc, lif, tau_e=10.0, per_sample=True, **stdp)
    elif case == "DopamineSTDP":
        rule = pl.DopamineSTDP(fc, lif, tau_c=30.0, tau_d=8.0, chunk_size=CHUNK)
    elif case == "Oja":
        rule = pl.Oja(fc, lif, eta=0.05, tau_rate=5.0, chunk_size=CHUNK)
    elif case == "BCM":
        rule = pl.BCM(fc, lif, eta=0.05, tau_theta=4.0, tau_rate=3.0, chunk_size=CHUNK)
    elif case == "SynapticScaling":
        rule = pl.SynapticScaling(
            fc, lif, target_rate=0.05, tau_rate=5.0, eta=0.05, chunk_size=CHUNK
        )
    elif case == "AdaptiveThreshold":
        return pl.AdaptiveThreshold(lif, theta_plus=0.15, tau_theta=20.0)
    elif case == "Clopath":  # the membrane potential, its two low-pass filters, a delay
        rule = pl.Clopath(fc, lif, a_ltd=0.01, a_ltp=0.02, theta_minus=0.1, theta_plus=0.4,
                          tau_minus=6.0, tau_plus=4.0, tau_x=5.0, chunk_size=CHUNK)  # fmt: skip
    elif case == "Rule":  # a user's rule: delays, a nearest trace, a filtered voltage
        from plasticity import post, pre, relu

        rule = pl.Rule(fc, lif, chunk_size=CHUNK,
                       pos=0.02 * post.spike * pre.trace(5.0, nearest=True).delayed(2)
                       + 0.01 * relu(post.voltage.lowpass(4.0) - 0.2) * pre.spike,
                       neg=0.021 * post.trace(6.0).delayed(1) * pre.spike)  # fmt: skip
    else:
        raise ValueError(case)
    rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    return rule


def actions(case: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for t in range(STEPS):
        out.append(("forward", t))
        if case in REWARDED:
            out.append(("reward", t))
        if t == WINDOW - 1 or t == STEPS - 1:
            out.append(("end", t))
    return out


def checkpoint_index(case: str) -> int:
    """Where the checkpoint is written: after the forward of CHECKPOINT_STEP (before its reward)."""
    return actions(case).index(("forward", CHECKPOINT_STEP)) + 1


def run(case: str, parts: dict[str, Any], todo: list[tuple[str, int]], loop: dict) -> dict:
    """Runs ``todo``; ``loop`` holds the membrane. Returns what was measured."""
    net, opt, module = parts["net"], parts["opt"], parts["module"]
    inputs = data()
    spikes, updates = [], []
    for kind, t in todo:
        if kind == "forward":
            spk, loop["mem"] = net(inputs["x"][t], loop["mem"])
            spikes.append(spk.detach().clone())
        elif kind == "reward":
            if case == "DopamineSTDP":
                module.release(float(inputs["release"][t]))
            elif case == "MSTDP" and t % 3:  # some steps without a per-step reward
                pass
            else:
                module.reward(inputs["reward"][t])
        elif kind == "end" and case != "AdaptiveThreshold":
            dw = module.step(reward=inputs["reward"][t]) if case == "MSTDP" else module.step()
            updates.append(dw.clone())
            opt.step()
            opt.zero_grad()
    out = {
        "spikes": torch.stack(spikes),
        "weight": net.fc.weight.detach().clone(),
        "threshold": net.lif.threshold.detach().clone(),
        "mem": loop["mem"].detach().clone(),
    }
    if updates:
        out["dw"] = updates[-1]
    extra = {"BCM": "theta", "DopamineSTDP": "dopamine", "AdaptiveThreshold": "theta"}
    if case in extra:
        out[extra[case]] = getattr(module, extra[case]).detach().clone()
    return out


def uninterrupted(case: str, checkpoint_file: str) -> tuple[dict, dict]:
    """Runs every action, saving a checkpoint mid-window; returns (results, state at the
    checkpoint)."""
    parts = build(case, seed=0)
    loop = {"mem": parts["net"].lif.init_leaky()}
    todo, cut = actions(case), checkpoint_index(case)
    run(case, parts, todo[:cut], loop)
    checkpoint = {
        "model": parts["net"].state_dict(),
        "module": parts["module"].state_dict(),
        "optimizer": parts["opt"].state_dict(),
        "mem": loop["mem"],
    }
    torch.save(checkpoint, checkpoint_file)
    module = parts["module"]
    probe = {  # what the checkpoint holds, read through the public API
        "counts": getattr(getattr(module, "accumulator", None), "counts", None),
        "theta": None if getattr(module, "theta", None) is None else module.theta.clone(),
        "pending_steps": len(todo) - cut,
    }
    return run(case, parts, todo[cut:], loop), probe


def orders(case: str) -> tuple[str, ...]:
    """Load orders; "model-only" (a fresh module, its state not loaded) must differ."""
    base = ("model-then-module", "module-then-model", "model-only")
    return (*base, "module-built-after-model-loaded") if case == "AdaptiveThreshold" else base


def resume(case: str, checkpoint_file: str, order: str) -> dict:
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    parts = build(case, seed=1, module=order != "module-built-after-model-loaded")
    net = parts["net"]
    if order == "model-then-module":
        net.load_state_dict(checkpoint["model"])
        parts["module"].load_state_dict(checkpoint["module"])
    elif order == "module-then-model":
        parts["module"].load_state_dict(checkpoint["module"])
        net.load_state_dict(checkpoint["model"])
    elif order == "model-only":
        net.load_state_dict(checkpoint["model"])
    else:
        net.load_state_dict(checkpoint["model"])
        parts["module"] = make_module(case, net)
        parts["module"].load_state_dict(checkpoint["module"])
    parts["opt"].load_state_dict(checkpoint["optimizer"])
    loop = {"mem": checkpoint["mem"]}
    return run(case, parts, actions(case)[checkpoint_index(case) :], loop)


def main(argv: list[str]) -> None:
    case, checkpoint_file, out_file, threads = argv
    torch.set_num_threads(int(threads))
    results: dict[str, Any] = {}
    for order in orders(case):
        try:
            results[order] = resume(case, checkpoint_file, order)
        except Exception as err:  # reported by the parent test, with the load order
            results[order] = f"{type(err).__name__}: {err}"
    torch.save(results, out_file)


if __name__ == "__main__":
    main(sys.argv[1:])
