"""STDP across processes: every rank learns from its share of the batch, all ranks stay equal.

    torchrun --nproc_per_node=2 examples/distributed_stdp.py

(gloo backend, CPU). Each rank simulates its own samples; ``stdp.step()`` combines the
window's potentiation and depression across the ranks before the bounds are applied, so
the update equals one process on the union of the ranks' batches, and every rank applies
the same update. At the end the script checks that all ranks hold the same weights.
"""

from __future__ import annotations

import snntorch as snn
import torch
import torch.distributed as dist

import plasticity as pl


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # same initial weights everywhere
    fc = torch.nn.Linear(784, 100, bias=False)
    torch.nn.init.uniform_(fc.weight, 0.0, 0.05)
    lif = snn.Leaky(beta=0.9)
    stdp = pl.STDP(fc, lif, a_plus=1e-2, a_minus=1.05e-2, tau_plus=20.0, tau_minus=20.0)
    stdp.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    stdp.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    opt = pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    data = torch.Generator().manual_seed(1 + rank)  # each rank its own samples
    for _ in range(5):
        x = (torch.rand(100, 16, 784, generator=data) < 0.05).float()
        mem = lif.init_leaky()
        with torch.no_grad():
            for t in range(x.shape[0]):
                spk, mem = lif(fc(x[t]), mem)
        stdp.step()  # all-reduce of the window across ranks, then bounds
        opt.step()
        opt.zero_grad()
        stdp.reset()
    weights = [torch.empty_like(fc.weight) for _ in range(world)]
    dist.all_gather(weights, fc.weight.detach())
    same = all(torch.equal(weights[0], w) for w in weights)
    if rank == 0:
        print(
            f"{world} ranks, mean weight {float(fc.weight.detach().mean()):.5f}, identical on every rank: {same}"
        )
    dist.barrier()  # leave together: a rank tearing down gloo while its peer still runs can abort
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
