"""Sparse connectivities: checked, drawn and stored as CSR index arrays.

:class:`~plasticity.SparseLinear` stores its synapses sorted by post neuron, then pre
neuron, without duplicates: ``crow`` (``[N_out + 1]``, row pointers) and ``col``
(``[nnz]``, the pre neuron of each synapse). Every draw runs on the CPU with a CPU
``torch.Generator`` (or the global one), so a seed gives the same indices, bit for bit, in
every process and for every device the layer is then moved to. Draws take O(nnz) time and
memory: a probability draws the gaps between successive connected pairs (geometric), a
fixed in-degree draws each row's pre neurons with rejection of repeats (or, above half of
the candidates, the top ``k`` of uniform keys).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_features", "check_generator", "connectivity_indices", "index_dtype"]

#: the elements drawn per block of rows (bounds the draws' temporary memory)
_BLOCK = 1 << 22


def check_features(name: str, value: Any) -> int:
    """``value`` as a positive ``int``, or a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value}")
    return int(value)


def check_generator(generator: Any) -> torch.Generator | None:
    """A CPU ``torch.Generator`` (draws are made on the CPU, then moved), or ``None``."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"`generator` must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
            f"got {type(generator).__name__}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"`generator` is on {generator.device}; connectivities are drawn on the CPU (the "
            "same bits on every device): pass a CPU generator, torch.Generator().manual_seed(seed)"
        )
    return generator


def index_dtype(nnz: int, n_in: int, n_out: int) -> torch.dtype:
    """``int32`` (4 bytes per synapse) unless a count needs more than 31 bits."""
    return torch.int32 if max(nnz, n_in, n_out) < 2**31 - 1 else torch.int64


def _csr(rows: Tensor, cols: Tensor, n_out: int) -> tuple[Tensor, Tensor]:
    """Row pointers and column indices of sorted (row, col) pairs."""
    counts = torch.bincount(rows, minlength=n_out)
    crow = torch.zeros(n_out + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=crow[1:])
    return crow, cols


def _probability(p: float, n_out: int, n_in: int, autapses: bool,
                 generator: torch.Generator | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Independent pairs: the flat positions of connected pairs, by geometric gaps."""
    total = n_out * n_in
    if p == 0.0:
        flat = torch.zeros(0, dtype=torch.int64)
    elif p == 1.0:
        flat = torch.arange(total, dtype=torch.int64)
    else:
        log_q = math.log1p(-p)
        found, start = [], -1  # the last connected position so far
        while start < total:
            mean = (total - start) * p
            n = int(mean + 6.0 * math.sqrt(mean) + 16)
            u = torch.rand(n, dtype=torch.float64, generator=generator)
            gaps = torch.floor(torch.log1p(-u) / log_q).clamp_(max=float(total))
            pos = start + torch.cumsum(gaps.to(torch.int64) + 1, 0)
            found.append(pos[pos < total])
            start = int(pos[-1])
        flat = torch.cat(found)
    rows, cols = flat // n_in, flat % n_in
    if not autapses:
        keep = rows != cols
        rows, cols = rows[keep], cols[keep]
    return _csr(rows, cols, n_out)


def _first_k_distinct(samples: Tensor, n: int, k: int) -> tuple[Tensor, Tensor]:
    """Per row of ``samples`` ``[R, M]``: the first ``k`` distinct values in draw order
    (a uniform ``k``-subset), as ``[R', k]`` for the ``R'`` rows that drew ``k`` distinct
    values, and which rows those are (``[R]`` bool)."""
    r, m = samples.shape
    key = torch.arange(r, dtype=torch.int64)[:, None] * n + samples
    sorted_key, order = torch.sort(key.reshape(-1), stable=True)
    first = torch.ones_like(sorted_key, dtype=torch.bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    new = torch.zeros(r * m, dtype=torch.bool)
    new[order[first]] = True  # a value's first draw (stable sort: the earliest)
    new = new.reshape(r, m)
    rank = torch.cumsum(new, 1)
    ok = rank[:, -1] >= k
    keep = new & (rank <= k) & ok[:, None]
    return samples[keep].reshape(-1, k), ok


def _row_draws(rows: int, n: int, k: int, generator: torch.Generator | None) -> Tensor:
    """``[rows, k]`` distinct values in ``[0, n)`` per row, uniformly, sorted."""
    if k > n // 2:  # dense enough: the top k of uniform keys (O(n) per row, O(nnz))
        keys = torch.rand(rows, n, generator=generator)
        return torch.topk(keys, k, dim=1).indices.sort(dim=1).values
    expected = n * (math.log(n) - math.log(n - k))  # draws until k distinct, on average
    m = int(expected + 4.0 * math.sqrt(expected) + 8)
    out = torch.empty(rows, k, dtype=torch.int64)
    todo = torch.arange(rows)
    while todo.numel():  # rows short of k distinct values draw again, with more
        samples = torch.randint(n, (todo.numel(), m), generator=generator)
        values, ok = _first_k_distinct(samples, n, k)
        out[todo[ok]] = values
        todo, m = todo[~ok], 2 * m
    return out.sort(dim=1).values


def _in_degree(k: int, n_out: int, n_in: int, autapses: bool,
               generator: torch.Generator | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each post neuron draws ``k`` distinct pre neurons (not itself without autapses)."""
    n = n_in if autapses else n_in - 1
    if k == 0:
        return torch.zeros(n_out + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    block = max(1, _BLOCK // max(n if k > n // 2 else 4 * k, 1))
    parts = []
    for r0 in range(0, n_out, block):
        rows = min(block, n_out - r0)
        cols = _row_draws(rows, n, k, generator)
        if not autapses:  # [0, n_in - 1) skipping the post neuron's own index
            own = torch.arange(r0, r0 + rows)[:, None]
            cols = cols + (cols >= own).to(torch.int64)
        parts.append(cols.reshape(-1))
    crow = torch.arange(n_out + 1, dtype=torch.int64) * k
    return crow, torch.cat(parts)


def _check_autapses(rows: Tensor, cols: Tensor, what: str) -> None:
    own = torch.nonzero(rows == cols).reshape(-1)
    if own.numel():
        i = int(rows[own[0]])
        raise ValueError(
            f"`connectivity` ({what}) connects neuron {i} to itself (post {i}, pre {i}) but "
            "autapses=False; remove the diagonal or pass autapses=True"
        )


def _from_mask(mask: Tensor, n_out: int, n_in: int, autapses: bool) -> tuple[Tensor, Tensor]:
    if tuple(mask.shape) != (n_out, n_in):
        raise ValueError(
            f"`connectivity` is a mask of shape {tuple(mask.shape)}; expected [out_features, "
            f"in_features] = [{n_out}, {n_in}] (True: the synapse exists)"
        )
    rows, cols = torch.nonzero(mask.cpu(), as_tuple=True)  # row-major: sorted
    if not autapses:
        _check_autapses(rows, cols, "a mask")
    return _csr(rows, cols, n_out)


def _from_pairs(pairs: Tensor, n_out: int, n_in: int, autapses: bool) -> tuple[Tensor, Tensor]:
    if pairs.ndim != 2 or pairs.shape[0] != 2:
        raise ValueError(
            f"`connectivity` is an integer tensor of shape {tuple(pairs.shape)}; index pairs are "
            "[2, nnz]: row 0 the post neurons, row 1 the pre neurons"
        )
    rows, cols = pairs.cpu().to(torch.int64).unbind(0)
    for name, idx, n in (("post", rows, n_out), ("pre", cols, n_in)):
        bad = torch.nonzero((idx < 0) | (idx >= n)).reshape(-1)
        if bad.numel():
            j = int(bad[0])
            raise ValueError(
                f"`connectivity` pair {j} (post {int(rows[j])}, pre {int(cols[j])}) has a {name} "
                f"index outside [0, {n}) ({'out' if name == 'post' else 'in'}_features={n})"
            )
    key, order = torch.sort(rows * n_in + cols)
    dup = torch.nonzero(key[1:] == key[:-1]).reshape(-1)
    if dup.numel():
        k = int(key[dup[0]])
        raise ValueError(
            f"`connectivity` lists the pair (post {k // n_in}, pre {k % n_in}) more than once; "
            "each synapse must appear once"
        )
    if not autapses:
        _check_autapses(rows, cols, "index pairs")
    return _csr(rows[order], cols[order], n_out)


def _as_tensor(connectivity: Any) -> Tensor | None:
    if isinstance(connectivity, np.ndarray):
        return torch.from_numpy(connectivity)
    return connectivity if isinstance(connectivity, Tensor) else None


def _check_drawn(connectivity: Any, n_in: int, autapses: bool) -> None:
    """Checks a probability or an in-degree (before anything is drawn)."""
    if isinstance(connectivity, (float, np.floating)):
        if not 0.0 <= connectivity <= 1.0:  # (NaN too)
            raise ValueError(
                f"`connectivity` is a probability and must be in [0, 1], got {connectivity}"
            )
        return
    n = n_in if autapses else n_in - 1
    if not 0 <= connectivity <= n:
        where = "in_features" if autapses else "in_features - 1 (autapses=False)"
        raise ValueError(
            f"`connectivity` is a fixed in-degree and must be in [0, {n}] ({where}), got "
            f"{connectivity}; a probability is a float (e.g. 0.02)"
        )


def connectivity_indices(
    connectivity: Any, n_out: int, n_in: int, autapses: bool, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(crow, col)`` (CPU, ``int64``) of a probability (``float``), a fixed in-degree
    (``int``), a bool mask ``[n_out, n_in]`` or index pairs ``[2, nnz]`` (post, pre);
    a ``TypeError``/``ValueError`` before anything is drawn."""
    if not autapses and n_in != n_out:
        raise ValueError(
            f"autapses=False excludes each neuron's synapse onto itself, which needs a square "
            f"layer (in_features == out_features), got in_features={n_in}, out_features={n_out}"
        )
    tensor = _as_tensor(connectivity)
    if tensor is not None:
        if tensor.dtype == torch.bool:
            return _from_mask(tensor, n_out, n_in, autapses)
        if not tensor.dtype.is_floating_point and not tensor.dtype.is_complex:
            return _from_pairs(tensor, n_out, n_in, autapses)
        raise TypeError(
            f"`connectivity` is a {tensor.dtype} tensor; a mask is a bool tensor [out, in] and "
            "index pairs an integer tensor [2, nnz] (post, pre)"
        )
    if isinstance(connectivity, bool) or not isinstance(
        connectivity, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            "`connectivity` must be a probability (float), a fixed in-degree (int), a bool mask "
            f"[out, in] or index pairs [2, nnz] (a tensor), got {type(connectivity).__name__}"
        )
    _check_drawn(connectivity, n_in, autapses)
    if isinstance(connectivity, (float, np.floating)):
        return _probability(float(connectivity), n_out, n_in, autapses, generator)
    return _in_degree(int(connectivity), n_out, n_in, autapses, generator)
