"""torch.distributed: N gloo ranks equal one process on the union of their batches."""

from __future__ import annotations

import os

import pytest
import snntorch as snn
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import plasticity as pl

PAIR = dict(a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0)


def free_address() -> str:
    """A TCP rendezvous on a free loopback port (more robust than a file store)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def spawn(fn, args, results):
    """Runs ``fn`` on 2 ranks. gloo can abort a process while tearing down after the work is
    done (seen here rarely as 'terminate called without an active exception'); that case is
    accepted with a warning only if every rank wrote its result file, anything else fails."""
    import warnings

    try:
        mp.spawn(fn, args=args, nprocs=2, join=True)
    except mp.ProcessExitedException as err:
        if err.signal_name != "SIGABRT" or not all(os.path.exists(r) for r in results):
            raise
        warnings.warn(
            f"gloo aborted a rank during teardown after its work was done: {err}", stacklevel=2
        )


def data(batch=4, T=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, batch, 6, generator=g) < 0.3).double()
    post = (torch.rand(T, batch, 4, generator=g) < 0.3).double()
    reward = torch.randn(T, batch, generator=g, dtype=torch.float64)
    return pre, post, reward


def make(kind, **kw):
    fc = nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        fc.weight.fill_(0.5)
    if kind == "stdp":
        rule = pl.STDP(fc, snn.Leaky(beta=0.5), **PAIR, **kw)
        rule.accumulator.upperbound(
            pl.bounds.upper_multiplicative, 1.0
        )  # bounds after the reduction
    else:
        rule = pl.MSTDPET(fc, snn.Leaky(beta=0.5), **PAIR, tau_e=6.0, per_sample=True, **kw)
    return rule


def _worker(rank, world, store, out, splits, kind, reduction):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    torch.set_num_threads(1)
    pre, post, reward = data()
    lo, hi = splits[rank], splits[rank + 1]
    rule = make(kind, batch_reduction=reduction, chunk_size=7)
    if kind == "stdp":
        rule.observe(pre[:, lo:hi], post[:, lo:hi])
    else:
        rule.observe(pre[:, lo:hi], post[:, lo:hi], reward=reward[:, lo:hi])
    torch.save(rule.step(), os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()  # leave together: a rank tearing down gloo while its peer still runs can abort
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["stdp", "mstdpet"])
@pytest.mark.parametrize(
    "splits, reduction", [([0, 2, 4], "mean"), ([0, 3, 4], "mean"), ([0, 1, 4], "sum")]
)
def test_two_ranks_equal_one_process_on_the_union(tmp_path, kind, splits, reduction):
    results = [str(tmp_path / f"rank{r}.pt") for r in range(2)]
    spawn(_worker, (2, free_address(), str(tmp_path), splits, kind, reduction), results)
    pre, post, reward = data()
    single = make(kind, batch_reduction=reduction, chunk_size=7, distributed=False)
    if kind == "stdp":
        single.observe(pre, post)
    else:
        single.observe(pre, post, reward=reward)
    expected = single.step()
    for rank in range(2):
        torch.testing.assert_close(
            torch.load(tmp_path / f"rank{rank}.pt"), expected, rtol=1e-12, atol=1e-12
        )


def _idle_worker(rank, world, store, out):
    """Two windows; rank 1 observes its samples in the first only (its batch size is
    still set: no reset()), then calls step() with nothing observed."""
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    torch.set_num_threads(1)
    pre, post, _ = data(T=30)
    rule = make("stdp", chunk_size=7)
    lo, hi = 2 * rank, 2 * rank + 2
    rule.observe(pre[:15, lo:hi], post[:15, lo:hi])
    first = rule.step()
    if rank == 0:
        rule.observe(pre[15:, lo:hi], post[15:, lo:hi])
    torch.save([first, rule.step()], os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_a_rank_that_observed_nothing_in_a_window_has_no_weight_in_its_mean(tmp_path):
    """The union of a window where rank 1 observed nothing is rank 0's samples alone: its
    Δw is theirs, not halved by rank 1's batch size of the window before."""
    results = [str(tmp_path / f"rank{r}.pt") for r in range(2)]
    spawn(_idle_worker, (2, free_address(), str(tmp_path)), results)
    pre, post, _ = data(T=30)
    union = make("stdp", chunk_size=7, distributed=False)  # window 1: the 4 samples
    union.observe(pre[:15], post[:15])
    first = union.step()
    alone = make("stdp", chunk_size=7, distributed=False)  # window 2: rank 0's 2 samples
    alone.observe(pre[:15, :2], post[:15, :2])
    alone.step()
    alone.observe(pre[15:, :2], post[15:, :2])
    second = alone.step()
    assert second.abs().sum() > 0
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got[0], first, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got[1], second, rtol=1e-12, atol=1e-12)


def _ddp_worker(rank, world, store, out):
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # float32: snnTorch's spikes are float32 whatever the membrane's dtype
    model = nn.Sequential(
        nn.Linear(6, 4, bias=False), snn.Leaky(beta=0.5, init_hidden=True), nn.Linear(4, 2)
    )
    # snnTorch keeps init_hidden state in buffers: DDP must not overwrite them with rank 0's
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    stdp = pl.STDP(model[0], model[1], **PAIR)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pre, _, _ = data(batch=4, T=10, seed=1)
    pre = pre.float()
    target = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    x = pre[:, 2 * rank : 2 * rank + 2]
    model[1].reset_hidden()
    out_sum = sum(ddp(x[t]) for t in range(10))
    loss = ((out_sum - target[2 * rank : 2 * rank + 2]) ** 2).mean()
    loss.backward()  # DDP averages the backprop gradients
    stdp.step()  # adds -Δw of the union batch
    opt.step()
    torch.save([p.detach() for p in model.parameters()], os.path.join(out, f"ddp{rank}.pt"))
    dist.barrier()  # leave together: a rank tearing down gloo while its peer still runs can abort
    dist.destroy_process_group()


def test_hybrid_stdp_and_backprop_under_ddp(tmp_path):
    spawn(
        _ddp_worker,
        (2, free_address(), str(tmp_path)),
        [str(tmp_path / f"ddp{r}.pt") for r in range(2)],
    )
    a, b = torch.load(tmp_path / "ddp0.pt"), torch.load(tmp_path / "ddp1.pt")
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb)  # every rank holds the same model
    # one process, union batch: the same step
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 4, bias=False), snn.Leaky(beta=0.5, init_hidden=True), nn.Linear(4, 2)
    )
    stdp = pl.STDP(model[0], model[1], **PAIR)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pre, _, _ = data(batch=4, T=10, seed=1)
    pre = pre.float()
    target = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    model[1].reset_hidden()
    out_sum = sum(model(pre[t]) for t in range(10))
    ((out_sum - target) ** 2).mean().backward()
    stdp.step()
    opt.step()
    for pa, p in zip(a, model.parameters(), strict=True):
        torch.testing.assert_close(pa, p.detach(), rtol=1e-5, atol=1e-6)


def test_distributed_flag():
    fc = nn.Linear(2, 2, bias=False)
    with pytest.raises(RuntimeError, match="not initialized"):
        rule = pl.STDP(fc, snn.Leaky(beta=0.5), **PAIR, distributed=True)
        rule.observe(torch.ones(2, 1, 2), torch.ones(2, 1, 2))
        rule.step()
    with pytest.raises(TypeError, match="distributed"):
        pl.STDP(nn.Linear(2, 2), snn.Leaky(beta=0.5), **PAIR, distributed="yes")
