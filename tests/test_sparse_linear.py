"""pl.SparseLinear (issue 25, item 1): connectivities drawn or given, checked, stored
sorted and deduplicated; a sparse forward equal to the dense product; gradients; no
dense-shaped tensor; snnTorch networks and sparse recurrence; checkpoints; devices."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import snntorch as snn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import plasticity as pl

ROOT = Path(__file__).resolve().parents[1]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pairs_of(fc: pl.SparseLinear) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in fc.indices.t()}


@st.composite
def layers(draw):
    """A random float64 layer: any kind of connectivity, square or not, with or without
    autapses and bias."""
    n_in, n_out = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    autapses = draw(st.booleans()) if n_in == n_out else True
    kind = draw(st.sampled_from(["probability", "degree", "mask", "pairs"]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = seeded(seed)
    if kind == "probability":
        conn = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    elif kind == "degree":
        conn = draw(st.integers(0, n_in if autapses else n_in - 1))
    else:
        mask = torch.rand(n_out, n_in, generator=g) < draw(st.floats(0.0, 1.0))
        if not autapses:
            mask.fill_diagonal_(False)
        conn = mask
        if kind == "pairs":  # shuffled: the layer sorts them
            idx = torch.nonzero(mask).t()
            conn = idx[:, torch.randperm(idx.shape[1], generator=g)]
    bias = draw(st.booleans())
    fc = pl.SparseLinear(n_in, n_out, conn, generator=g, autapses=autapses, bias=bias,
                         dtype=torch.float64)  # fmt: skip
    return fc, conn, kind


@settings(max_examples=60, deadline=None)
@given(layers(), st.sampled_from([(), (3,), (4, 2)]), st.integers(0, 1000))
def test_forward_and_gradients_equal_the_dense_product(case, lead, seed):
    fc, conn, kind = case
    g = seeded(seed)
    x = torch.rand(*lead, fc.in_features, generator=g, dtype=torch.float64).requires_grad_()
    dense = fc.to_dense().detach().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y = fc(x)
    ref = x2 @ dense.t() + (0 if fc.bias is None else fc.bias.detach())
    assert y.shape == (*lead, fc.out_features)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    # stored: sorted by post then pre, deduplicated, int32, as given or drawn
    rows, cols = fc.indices
    key = rows * fc.in_features + cols
    assert torch.all(key[1:] > key[:-1]) and fc.col_indices.dtype == torch.int32
    if kind in ("mask", "pairs"):
        mask = conn if kind == "mask" else fc.mask()
        assert torch.equal(fc.mask(), mask)
    if not fc.autapses:
        assert torch.all(rows != cols)
    # gradients w.r.t. the values (at the stored pairs) and the input
    up = torch.rand(y.shape, generator=g, dtype=torch.float64)
    (y * up).sum().backward()
    (ref * up).sum().backward()
    torch.testing.assert_close(fc.weight.grad, dense.grad[rows, cols], rtol=0, atol=1e-12)
    torch.testing.assert_close(x.grad, x2.grad, rtol=0, atol=1e-12)


def test_draws_are_reproducible_and_follow_the_seed():
    for conn in (0.05, 7):
        a = pl.SparseLinear(60, 40, conn, generator=seeded(3))
        b = pl.SparseLinear(60, 40, conn, generator=seeded(3))
        c = pl.SparseLinear(60, 40, conn, generator=seeded(4))
        assert torch.equal(a.indices, b.indices) and torch.equal(a.weight, b.weight)
        assert not torch.equal(a.to_dense() != 0, c.to_dense() != 0)


def test_draws_are_the_same_bits_in_another_process():
    code = textwrap.dedent("""
        import hashlib, torch, plasticity as pl
        for conn in (0.03, 9):
            fc = pl.SparseLinear(300, 200, conn, generator=torch.Generator().manual_seed(11),
                                 autapses=True, bias=True)
            h = hashlib.sha256()
            for t in (fc.crow_indices, fc.col_indices, fc.weight.detach(), fc.bias.detach()):
                h.update(t.numpy().tobytes())
            print(h.hexdigest())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}).stdout.split()  # fmt: skip
    for conn, digest in zip((0.03, 9), out, strict=True):
        fc = pl.SparseLinear(300, 200, conn, generator=seeded(11), bias=True)
        h = hashlib.sha256()
        for t in (fc.crow_indices, fc.col_indices, fc.weight.detach(), fc.bias.detach()):
            h.update(t.numpy().tobytes())
        assert h.hexdigest() == digest


def test_a_probability_connects_independent_pairs():
    """Counts against the binomial law; every pre neuron and every post neuron as likely."""
    n, p = 400, 0.05
    fc = pl.SparseLinear(n, n, p, generator=seeded(5), autapses=False)
    pairs = n * (n - 1)
    mean, sd = pairs * p, (pairs * p * (1 - p)) ** 0.5
    assert abs(fc.nnz - mean) < 5 * sd
    rows, cols = fc.indices
    assert torch.all(rows != cols)
    for counts in (torch.bincount(rows, minlength=n), torch.bincount(cols, minlength=n)):
        # each neuron's degree is Binomial(n - 1, p): its spread, not a uniform split
        var = float(counts.double().var())
        assert 0.6 * (n - 1) * p * (1 - p) < var < 1.5 * (n - 1) * p * (1 - p)
    # the upper and lower triangles alike (no position bias from the gap draws)
    upper = int((cols > rows).sum())
    assert abs(upper - fc.nnz / 2) < 5 * (fc.nnz / 4) ** 0.5


@pytest.mark.parametrize("k, autapses", [(1, True), (7, False), (30, True), (49, False)])
def test_a_fixed_in_degree_draws_k_distinct_pre_neurons_uniformly(k, autapses):
    n_in = 50
    n_out = 2000 if autapses else n_in  # (no autapses: a square layer)
    fc = pl.SparseLinear(n_in, n_out, k, generator=seeded(k), autapses=autapses)
    rows, cols = fc.indices
    assert torch.equal(torch.bincount(rows, minlength=n_out), torch.full((n_out,), k))
    if not autapses:
        assert torch.all(rows != cols)
    if autapses and k < n_in:  # each pre neuron is drawn k / n_in of the time
        counts = torch.bincount(cols, minlength=n_in).double()
        expected = n_out * k / n_in
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < n_in + 6 * (2 * n_in) ** 0.5  # chi-square, n_in - 1 degrees of freedom


def test_index_pairs_are_sorted_and_rebuild_the_layer():
    pairs = torch.tensor([[2, 0, 1, 0], [1, 3, 0, 0]])
    fc = pl.SparseLinear(4, 3, pairs, generator=seeded(0))
    assert fc.indices.tolist() == [[0, 0, 1, 2], [0, 3, 0, 1]]
    assert fc.crow_indices.tolist() == [0, 2, 3, 4]
    again = pl.SparseLinear(4, 3, fc.indices)
    assert torch.equal(again.mask(), fc.mask())
    from_numpy = pl.SparseLinear(4, 3, pairs.numpy())
    assert torch.equal(from_numpy.indices, fc.indices)


def test_initial_values_follow_each_post_neurons_fan_in():
    fc = pl.SparseLinear(1000, 3, torch.tensor([[0] * 4 + [1] * 400, list(range(4)) +
                                                list(range(400))]), generator=seeded(2))  # fmt: skip
    w = fc.weight.detach()
    assert w[:4].abs().max() <= 0.5 and w[:4].abs().max() > 0.05  # 1/√4
    assert w[4:].abs().max() <= 0.05 and w[4:].abs().max() > 0.045  # 1/√400
    assert fc.nnz == 404 and fc(torch.ones(1000))[2] == 0  # post 2: no synapse


BAD = [
    (dict(connectivity=1.5), ValueError, "probability and must be in"),
    (dict(connectivity=-0.1), ValueError, "probability and must be in"),
    (dict(connectivity=float("nan")), ValueError, "probability and must be in"),
    (dict(connectivity=9), ValueError, "fixed in-degree and must be in"),
    (dict(connectivity=-1), ValueError, "fixed in-degree"),
    (dict(connectivity=8, autapses=False, in_features=8, out_features=8), ValueError,
     "autapses=False"),
    (dict(connectivity=True), TypeError, "must be a probability"),
    (dict(connectivity="0.1"), TypeError, "must be a probability"),
    (dict(connectivity=torch.zeros(5, 8)), TypeError, "bool tensor"),
    (dict(connectivity=torch.zeros(8, 5, dtype=torch.bool)), ValueError, "mask of shape"),
    (dict(connectivity=torch.tensor([[0, 1, 2]])), ValueError, "index pairs are"),
    (dict(connectivity=torch.tensor([[0, 5], [0, 1]])), ValueError, "post index outside"),
    (dict(connectivity=torch.tensor([[0, 1], [8, 1]])), ValueError, "pre index outside"),
    (dict(connectivity=torch.tensor([[0, 1], [-1, 1]])), ValueError, "pre index outside"),
    (dict(connectivity=torch.tensor([[1, 0, 1], [2, 0, 2]])), ValueError,
     r"\(post 1, pre 2\) more than once"),
    (dict(connectivity=torch.tensor([[3], [3]]), in_features=8, out_features=8,
          autapses=False), ValueError, "connects neuron 3 to itself"),
    (dict(connectivity=torch.eye(8, dtype=torch.bool), in_features=8, out_features=8,
          autapses=False), ValueError, "connects neuron 0 to itself"),
    (dict(connectivity=0.1, autapses=False), ValueError, "square layer"),
    (dict(connectivity=0.1, in_features=0), ValueError, "`in_features` must be a positive"),
    (dict(connectivity=0.1, out_features=2.0), TypeError, "`out_features` must be a positive"),
    (dict(connectivity=0.1, generator=0), TypeError, "torch.Generator"),
]


@pytest.mark.parametrize("kwargs, error, words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_connectivity_is_refused_by_name_and_draws_nothing(kwargs, error, words):
    args = dict(in_features=8, out_features=5) | kwargs
    g = seeded(1)
    state, global_state = g.get_state(), torch.get_rng_state()
    if isinstance(args.get("generator"), torch.Generator) and args["generator"].device.type == "cpu":
        g = args["generator"]
    args.setdefault("generator", g)
    with pytest.raises(error, match=words):
        pl.SparseLinear(args.pop("in_features"), args.pop("out_features"), args.pop("connectivity"),
                        **args)  # fmt: skip
    assert torch.equal(g.get_state(), state) and torch.equal(torch.get_rng_state(), global_state)


def test_empty_and_full_connectivities():
    empty = pl.SparseLinear(6, 4, 0.0, bias=True)
    x = torch.rand(3, 6, requires_grad=True)
    y = empty(x)
    torch.testing.assert_close(y, empty.bias.expand(3, 4))
    y.sum().backward()
    assert empty.weight.grad.shape == (0,) and torch.equal(x.grad, torch.zeros(3, 6))
    full = pl.SparseLinear(6, 4, 1.0)
    assert full.nnz == 24 and torch.all(full.mask())
    assert pl.SparseLinear(6, 4, 6).nnz == 24
    assert "nnz=0 (0%)" in repr(empty) and "bias=True" in repr(empty)


def test_bad_input_shape_is_refused():
    fc = pl.SparseLinear(6, 4, 0.5)
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 6\]"):
        fc(torch.ones(3, 5))


def test_state_dict_round_trip():
    a = pl.SparseLinear(40, 30, 0.1, generator=seeded(7), bias=True)
    with torch.no_grad():
        a.weight.mul_(3.0)
    b = pl.SparseLinear(40, 30, a.indices, bias=True)
    b.load_state_dict(a.state_dict())
    x = torch.rand(5, 40)
    assert torch.equal(a(x), b(x))
    assert set(a.state_dict()) == {"weight", "bias", "crow_indices", "col_indices"}
    other = pl.SparseLinear(40, 30, 0.2, generator=seeded(8), bias=True)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(RuntimeError, match=f"stores {a.nnz} synapses, this layer {other.nnz}"):
        other.load_state_dict(a.state_dict())
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())
    # indices that are not a CSR layout are refused (a product would read out of bounds)
    for key, bad in (("col_indices", lambda c: c.flip(0)), ("crow_indices", lambda c: c - 1),
                     ("col_indices", lambda c: c + 40)):  # fmt: skip
        state = a.state_dict()
        state[key] = bad(state[key])
        with pytest.raises(RuntimeError, match="cannot load: its"):
            b.load_state_dict(state)
        assert torch.equal(b(x), a(x))


class LargestTensor(TorchDispatchMode):
    """The largest tensor any operator returns, in stored elements (a sparse tensor
    counts its stored values, not its dense shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.numel, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                n = t.numel() if t.layout == torch.strided else t.values().numel()
                if n > self.numel:
                    self.numel, self.op = n, func
        return out


def test_no_dense_shaped_tensor_forward_or_backward(monkeypatch):
    """The largest temporaries: the input, the output, nnz values, one block of the
    input's gradient (made smaller here, so that the layer can stay small)."""
    n_in, n_out, T, B = 600, 500, 4, 8
    monkeypatch.setattr(pl.sparse, "_GRAD_BLOCK", 4096)
    fc = pl.SparseLinear(n_in, n_out, 0.02, generator=seeded(9), bias=True)
    x = (torch.rand(T, B, n_in, generator=seeded(10)) < 0.2).float().requires_grad_()
    watcher = LargestTensor()
    with watcher:
        fc(x).square().sum().backward()
    assert fc.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    assert watcher.numel < n_in * n_out / 10, (watcher.numel, watcher.op)
    # the watcher sees a dense product do it
    with watcher:
        (x @ fc.to_dense().t()).sum().backward()
    assert watcher.numel >= n_in * n_out


def leaky():
    return snn.Leaky(beta=0.8, spike_grad=snn.surrogate.StraightThroughEstimator.apply)


def test_in_an_snntorch_network_and_as_sparse_recurrence():
    """snn.Leaky after a SparseLinear; and the documented recurrent equivalent (a square
    SparseLinear over the previous step's spikes added to the input of snn.Leaky) equals
    snn.RLeaky with the same weights as a dense recurrent nn.Linear."""
    n, T, B = 30, 25, 3
    g = seeded(12)
    ff = pl.SparseLinear(20, n, 0.3, generator=g)
    rec = pl.SparseLinear(n, n, 0.2, generator=g, autapses=False)
    with torch.no_grad():
        ff.weight.mul_(4.0), rec.weight.mul_(2.0)
    x = (torch.rand(T, B, 20, generator=g) < 0.3).float()
    lif = leaky()
    rlif = snn.RLeaky(beta=0.8, linear_features=n, all_to_all=True,
                      spike_grad=snn.surrogate.StraightThroughEstimator.apply)  # fmt: skip
    with torch.no_grad():
        rlif.recurrent.weight.copy_(rec.to_dense())
        rlif.recurrent.bias.zero_()
    mem, spk = lif.init_leaky(), torch.zeros(B, n)
    rspk, rmem = rlif.init_rleaky()
    total = 0.0
    with torch.no_grad():
        for t in range(T):  # (float32: snnTorch's straight-through spikes are float32)
            spk, mem = lif(ff(x[t]) + rec(spk), mem)
            rspk, rmem = rlif(ff(x[t]), rspk, rmem)
            assert torch.equal(spk, rspk)
            torch.testing.assert_close(mem, rmem, rtol=0, atol=1e-5)
            total += float(spk.sum())
    assert total > 0


def test_monitors_read_the_values():
    fc = pl.SparseLinear(20, 10, 0.3, generator=seeded(13))
    mon = pl.monitor.WeightMonitor(fc.weight, select=3, stats=("mean",))
    mon.record()
    with torch.no_grad():
        fc.weight.add_(1.0)
    mon.record()
    assert mon.n == 2


def test_devices_and_dtypes(device):
    cpu = pl.SparseLinear(50, 40, 0.1, generator=seeded(14), dtype=torch.float64)
    moved = pl.SparseLinear(50, 40, 0.1, generator=seeded(14), dtype=torch.float64, device=device)
    assert moved.weight.device.type == device.type == moved.col_indices.device.type
    assert torch.equal(moved.weight.cpu(), cpu.weight)
    x = torch.rand(3, 7, 50, generator=seeded(15), dtype=torch.float64)
    xd = x.to(device).requires_grad_()
    y = moved(xd)
    torch.testing.assert_close(y.cpu(), cpu(x), rtol=0, atol=1e-12)
    y.sum().backward()
    assert xd.grad.device.type == device.type and moved.weight.grad.device.type == device.type
    if device.type != "cpu":  # draws are made on the CPU (the same bits everywhere)
        with pytest.raises(ValueError, match="CPU generator"):
            pl.SparseLinear(50, 40, 0.1, generator=torch.Generator(device=device))
    half = pl.SparseLinear(50, 40, 0.1, generator=seeded(14)).to(device)
    assert half(x.float().to(device)).dtype == torch.float32
    same = pl.SparseLinear(50, 40, 0.1, generator=seeded(14))
    assert torch.equal(half.to_dense().detach().cpu(), same.to_dense().detach())
    assert torch.equal(half.mask().cpu(), same.mask())


def test_a_rule_on_a_sparse_linear_is_refused_with_the_pruned_equivalent():
    """Rules learn on a SparseLinear in a later step; until then the message names the
    dense equivalent, and that equivalent learns (absent synapses stay 0)."""
    from torch.nn.utils import prune

    sparse = pl.SparseLinear(12, 6, 0.3, generator=seeded(16))
    with pytest.raises(TypeError, match="custom_from_mask"):
        pl.STDP(sparse, leaky(), a_plus=0.1, a_minus=0.1, tau_plus=5.0, tau_minus=5.0)
    fc = torch.nn.Linear(12, 6, bias=False)
    with torch.no_grad():
        fc.weight.copy_(sparse.to_dense())
    prune.custom_from_mask(fc, "weight", sparse.mask())
    rule = pl.STDP(fc, leaky(), a_plus=0.1, a_minus=0.1, tau_plus=5.0, tau_minus=5.0)
    rule.observe(torch.ones(5, 1, 12), torch.ones(5, 1, 6))
    dw = rule.step()
    assert torch.all(dw[~sparse.mask()] == 0) and torch.all(dw[sparse.mask()] != 0)
