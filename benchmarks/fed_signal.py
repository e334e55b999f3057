"""A user-fed signal against the same rule reading a built-in signal (issue 23's target: the
fed form adds ≤ 10 %). The rule potentiates by ``relu(g) * pre.trace(10)`` where ``g`` is the
membrane potential, read either as ``post.voltage`` or fed each step as ``post.signal("g")``
with ``rule.feed(g=mem)``; 100→20, B = 1, T = 250 steps through the hooks, ``step()`` at the
end of the window. Prints µs per step (minimum of 7 interleaved repeats, one thread) and the
ratio. Run: ``python benchmarks/fed_signal.py``.
"""

from __future__ import annotations

import time

import snntorch as snn
import torch
from torch import nn

import plasticity as pl
from plasticity.language import post, pre

T, B = 250, 1


def make(fed: bool, x: torch.Tensor):
    fc = nn.Linear(100, 20, bias=False)
    lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)
    g = post.signal("g") if fed else post.voltage
    rule = pl.Rule(fc, lif, pos=0.01 * pl.relu(g) * pre.trace(10.0),
                   neg=0.005 * post.spike * pre.trace(20.0))  # fmt: skip

    def run():
        lif.reset_hidden()
        rule.reset()
        with torch.no_grad():
            for t in range(T):
                _, mem = lif(fc(x[t]))
                if fed:
                    rule.feed(g=mem)
            rule.step()

    return run


def main() -> dict[str, float]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = (torch.rand(T, B, 100) < 0.05).float()
    runs = {"voltage": make(False, x), "fed": make(True, x)}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(7):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    us = {k: v / T * 1e6 for k, v in best.items()}
    print(f"post.voltage {us['voltage']:.1f} µs/step, post.signal + feed() {us['fed']:.1f} "
          f"µs/step: fed / voltage = {best['fed'] / best['voltage']:.3f}")  # fmt: skip
    return us


if __name__ == "__main__":
    main()
