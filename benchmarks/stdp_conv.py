"""Conv2d pair STDP: plasticity's conv weight-gradient kernel against the peers' conv learners.

In one process, on the same recorded spikes (a 1→16 channel 5×5 convolution with padding 2
on 28×28 inputs, 5 % activity, T = 100): ``pl.STDP`` on the whole sequence (``observe`` +
``step``: traces scanned, one ``conv2d_weight`` per component and chunk), snnTorch's
``stdp_conv2d_single_step``, SpikingJelly's ``stdp_conv2d_step`` and Norse's
``stdp_step_conv2d`` (an unfold of the trace per step) called every step. Peers that are
not installed are "n/a" (``make bench`` installs them).

    python benchmarks/stdp_conv.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import snntorch as snn
import torch
import torch.nn.functional as F
from readme import save_results
from snntorch.functional.stdp_learner import stdp_conv2d_single_step
from stdp_dense import TAU, interleaved, pin_allocator
from torch import nn

import plasticity as pl


def bench(
    batch: int, steps: int, rate: float, repeats: int, c_out: int = 16, size: int = 28
) -> dict:
    g = torch.Generator().manual_seed(0)
    pre = (torch.rand(steps, batch, 1, size, size, generator=g) < rate).float()
    post = (torch.rand(steps, batch, c_out, size, size, generator=g) < rate).float()
    conv = nn.Conv2d(1, c_out, 5, padding=2, bias=False)
    rule = pl.STDP(
        conv, snn.Leaky(beta=0.9), a_plus=1e-3, a_minus=1e-3, tau_plus=TAU, tau_minus=TAU
    )

    def ours():
        rule.observe(pre, post)
        rule.step()
        rule.reset()
        conv.weight.grad = None

    def snntorch_learner():
        c = nn.Conv2d(1, c_out, 5, padding=2, bias=False)
        tp = tq = None
        for t in range(steps):
            tp, tq, dw = stdp_conv2d_single_step(c, pre[t], post[t], tp, tq, TAU, TAU)
            c.weight.data.add_(dw, alpha=1e-3)

    methods = {"ours (kernel)": ours, "snntorch": snntorch_learner}
    try:
        from spikingjelly.activation_based.functional.learning import stdp_conv2d_step

        def spikingjelly_learner():
            w = torch.zeros(c_out, 1, 5, 5)
            padded = F.pad(pre, (2, 2, 2, 2))
            tr = (torch.zeros_like(padded[0]), torch.zeros_like(post[0]))
            for t in range(steps):
                dw, tr = stdp_conv2d_step(
                    padded[t], post[t], tr, w, stride=(1, 1), tau_pre=TAU, tau_post=TAU
                )
                w.add_(dw, alpha=1e-3)

        methods["spikingjelly"] = spikingjelly_learner
    except ImportError:
        pass
    try:
        from norse.torch.functional.stdp import STDPParameters, STDPState, stdp_step_conv2d

        def norse_learner():
            w = torch.zeros(c_out, 1, 5, 5)
            state = STDPState(t_pre=torch.zeros_like(pre[0]), t_post=torch.zeros_like(post[0]))
            params = STDPParameters(
                tau_pre_inv=1.0 / TAU,
                tau_post_inv=1.0 / TAU,
                convolutional=True,
                padding=2,
                stride=1,
                dilation=1,
            )
            for t in range(steps):
                w, state = stdp_step_conv2d(pre[t], post[t], w, state, params, dt=1.0)

        methods["norse"] = norse_learner
    except ImportError:
        pass
    slow = {name for name in methods if name != "ours (kernel)"}
    times = interleaved(methods, repeats, once=slow if batch > 4 else set())
    rule.detach()
    return {k: v * 1e3 for k, v in times.items()}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    pinned = pin_allocator()
    lines = [
        f"Conv2d pair STDP, 1→16 channels, 5×5, padding 2, 28×28, {args.rate:.0%} spikes, T = {args.steps}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}"
        f"{', glibc mmap threshold pinned' if pinned else ''}",
        "",
        "| B | ours, kernel (ms) | snnTorch (ms) | SpikingJelly (ms) | Norse unfold (ms) | snnTorch / ours | SpikingJelly / ours | Norse / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for batch in args.batch:
        r = bench(batch, args.steps, args.rate, args.repeats)
        r["batch"] = batch
        rows.append(r)
        ours = r["ours (kernel)"]

        def cell(name, r=r):
            return "n/a" if name not in r else f"{r[name]:.1f}"

        def ratio(name, r=r, ours=ours):
            return "n/a" if name not in r else f"{r[name] / ours:.0f}x"

        lines.append(
            f"| {batch} | {ours:.1f} | {cell('snntorch')} | {cell('spikingjelly')} | {cell('norse')} "
            f"| {ratio('snntorch')} | {ratio('spikingjelly')} | {ratio('norse')} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    save_results(args.out, "stdp_conv", text, rows)
    return rows


if __name__ == "__main__":
    main()
