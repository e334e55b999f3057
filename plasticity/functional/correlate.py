r"""Correlation kernels: :math:`\sum_{t,b}` (post-side factor) ⊗ (pre-side factor) -> weight shape.

Every pair-based rule reduces to two of these per chunk of steps: potentiation pairs the
post spikes with the presynaptic trace, depression pairs the postsynaptic trace with the
pre spikes. For a dense synapse the sum over the ``T·B`` rows of a chunk is one GEMM;
for a convolution it is one weight gradient (:func:`torch.nn.grad.conv2d_weight` and
friends), never a loop over kernel positions.

When the spike operand is sparse (CPU, a few percent active), the dense kernel can run
event-driven: the spikes become, per neuron, the list of rows (time·batch) where it
fired, and :func:`torch.nn.functional.embedding_bag` sums the other operand's rows over
each list (float32); float64 uses a CSR matrix product. Only spikes are touched: at 5 %
activity this is several times faster than the GEMM. Both paths give the same numbers to
floating-point rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Kernels",
    "dense_correlate",
    "conv_correlate",
    "conv_event_sum",
    "choose_kernel",
    "spike_index",
    "spike_rows",
    "weigh_rows",
    "event_sum",
    "KERNELS",
    "SPARSE_DENSITY",
]

KERNELS = ("auto", "dense", "sparse")
#: below this fraction of non-zeros, ``kernel="auto"`` runs the event-driven path (CPU)
SPARSE_DENSITY = 0.25  # measured: the event path wins up to ~30 % here (784->400, B = 1 and 32)
_SPARSE_MIN_ELEMENTS = 1 << 16


def spike_index(spikes: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """For ``[R, N]`` spikes: rows where each neuron fired, sorted by neuron, with offsets.

    Returns ``(rows, offsets, neurons)``: ``rows[offsets[n]:offsets[n+1]]`` are the rows of
    neuron ``n``; ``neurons`` gives the neuron of each entry. ``mask`` (``spikes != 0``)
    may be passed if already computed.

    Example:
        >>> import torch
        >>> spikes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # [R=3, N=2]
        >>> rows, offsets, neurons = spike_index(spikes)
        >>> rows.tolist(), offsets.tolist(), neurons.tolist()
        ([0, 1, 1, 2], [0, 2], [0, 0, 1, 1])
    """
    # neuron-major: the mask of the transposed view (bool() keeps its strides: no copy of
    # the spikes' layout), nonzero lists it in logical order, i.e. by neuron; `bool()` is
    # the same as `spikes != 0` (NaN counts as a spike), ~8x faster
    by_neuron = (
        spikes.reshape(-1, spikes.shape[-1]).t().bool()
        if mask is None
        else mask.reshape(-1, mask.shape[-1]).t()
    )
    del mask
    nz = by_neuron.nonzero()
    del by_neuron
    # int32 where positions fit (as fast in embedding_bag, half the memory of nonzero's
    # [nnz, 2] int64, which is freed here)
    dtype = torch.int32 if spikes.numel() < 2**31 else torch.int64
    neurons, rows = nz[:, 0].to(dtype), nz[:, 1].to(dtype)
    del nz
    counts = torch.bincount(neurons, minlength=spikes.shape[-1])
    offsets = (torch.cumsum(counts, 0) - counts).to(dtype)
    return rows, offsets, neurons


def spike_rows(spikes: Tensor, blocks: int = 1) -> tuple[Tensor, Tensor]:
    """``(rows, offsets)`` of :func:`spike_index` for *binary* ``[R, N]`` spikes, built with
    little scratch memory: the counts come from column sums, ``rows`` is allocated once,
    and the neurons are listed ``blocks`` groups at a time (each group's mask and
    ``nonzero`` output are ``1 / blocks`` of the whole).

    Example:
        >>> import torch
        >>> spikes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        >>> rows, offsets = spike_rows(spikes, blocks=2)
        >>> rows.tolist(), offsets.tolist()
        ([0, 1, 1, 2], [0, 2])
    """
    n_rows, n = spikes.shape
    dtype = torch.int32 if spikes.numel() < 2**31 else torch.int64
    if n_rows < {torch.float32: 2**24, torch.float64: 2**53}.get(spikes.dtype, 0):
        counts = spikes.sum(0).to(torch.int64)  # column sums of 0/1: exact, no mask
    else:
        counts = spikes.bool().sum(0)
    ends = torch.cumsum(counts, 0)
    offsets = (ends - counts).to(dtype)
    rows = torch.empty(int(ends[-1]) if n else 0, dtype=dtype, device=spikes.device)
    by_neuron = spikes.t()  # a view: each group's mask is listed by neuron
    blocks = max(blocks, 1)
    edges = [n * k // blocks for k in range(blocks + 1)]
    start = 0
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if a == b:
            continue
        nz = by_neuron[a:b].bool().nonzero()
        stop = start + nz.shape[0]
        rows[start:stop].copy_(nz[:, 1])
        del nz
        start = stop
    return rows, offsets


@torch.no_grad()
def event_sum(
    index: tuple[Tensor, Tensor, Tensor],
    table: Tensor,
    row_shift: int = 0,
    weights: Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """For each neuron ``n`` of a :func:`spike_index`: the sum of ``table[r + row_shift]``
    over the rows ``r`` where it fired (times ``weights`` per event, if given): ``[N, M]``.

    ``table`` is ``[R', M]``; ``row_shift`` reads a later row (e.g. one step later).
    float32/16 run through :func:`torch.nn.functional.embedding_bag`, float64 through a
    CSR matrix product. ``compute_dtype`` (e.g. ``torch.bfloat16``) gathers from a copy of
    the table in that dtype (sums accumulate in float32 inside the kernel); the result is
    returned in ``table``'s dtype.

    Example:
        >>> import torch
        >>> spikes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        >>> table = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
        >>> event_sum(spike_index(spikes), table)  # neuron 0: rows 0, 1; neuron 1: rows 1, 2
        tensor([[ 3., 30.],
                [ 5., 50.]])
    """
    if compute_dtype is not None and compute_dtype != table.dtype:
        # operands rounded to compute_dtype, sums in the table's dtype (CPU gathers in
        # bf16 would also round every partial sum)
        table = table.to(compute_dtype).to(table.dtype)
        weights = None if weights is None else weights.to(compute_dtype).to(table.dtype)
        return event_sum(index, table, row_shift, weights)
    rows, offsets = index[:2]
    if row_shift:  # table[r + shift] is row r of the table from row `shift` on (no index copy)
        table = table[row_shift:]
    if table.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return F.embedding_bag(
            rows, table.contiguous(), offsets, mode="sum", per_sample_weights=weights
        )
    if weights is None:
        weights = torch.ones(rows.numel(), dtype=table.dtype, device=table.device)
    crow = torch.cat([offsets, offsets.new_tensor([rows.numel()])])
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.sparse_csr_tensor(
            crow, rows, weights, size=(offsets.numel(), table.shape[0])
        )
        return torch.sparse.mm(matrix, table)


def weigh_rows(spikes: Tensor, row_weight: Tensor) -> Tensor:
    """``spikes`` (``[*rows, *features]``) times one weight per row (``row_weight``
    ``[*rows]``, e.g. ``[T, B]``), broadcast over the features.

    Example:
        >>> import torch
        >>> weigh_rows(torch.ones(2, 1, 3), torch.tensor([[2.0], [0.5]])).flatten().tolist()
        [2.0, 2.0, 2.0, 0.5, 0.5, 0.5]
    """
    extra = spikes.ndim - row_weight.ndim
    return spikes * row_weight.to(spikes.dtype).view(*row_weight.shape, *([1] * extra))


def _event_correlate(
    spikes: Tensor,
    dense: Tensor,
    weighted: bool = True,
    index: tuple[Tensor, Tensor, Tensor] | None = None,
    compute_dtype: torch.dtype | None = None,
    row_weight: Tensor | None = None,
) -> Tensor:
    """``spikesᵀ @ dense`` touching only the non-zeros of ``spikes`` (``[R, N]``).

    ``weighted=False`` promises that the non-zeros are all 1 (binary spikes), which
    skips reading their values; ``index`` is :func:`spike_index` of a tensor with the same
    non-zero pattern, if already computed; ``row_weight`` (``[R]``) scales every row of
    ``spikes`` (per event: the weight of its row).
    """
    index = spike_index(spikes) if index is None else index
    weights = None
    if weighted:  # the values at the events, through flat positions (faster than 2-D indexing)
        flat = index[0].long() * spikes.shape[1] + index[2]
        weights = spikes.reshape(-1).index_select(0, flat)
    if row_weight is not None:
        per_event = row_weight.reshape(-1)[index[0]].to(dense.dtype)
        weights = per_event if weights is None else weights * per_event
    return event_sum(index, dense, 0, weights, compute_dtype)


def choose_kernel(kernel: str, spikes: Tensor, nnz: int | None = None) -> str:
    """``"dense"`` or ``"sparse"`` for a spike operand: ``kernel="auto"`` picks the
    event-driven path on CPU, in float32/16, for large operands below
    :data:`SPARSE_DENSITY` activity (``nnz``: the non-zeros, if already counted).

    Example:
        >>> import torch
        >>> sparse = (torch.rand(1000, 100) < 0.02).float()
        >>> choose_kernel("auto", sparse), choose_kernel("auto", torch.ones(1000, 100))
        ('sparse', 'dense')
    """
    if kernel != "auto":
        return kernel
    if (
        spikes.device.type != "cpu"
        or spikes.dtype == torch.float64
        or spikes.numel() < _SPARSE_MIN_ELEMENTS
    ):
        return "dense"
    if nnz is None:
        nnz = int(torch.count_nonzero(spikes))
    return "sparse" if nnz < SPARSE_DENSITY * spikes.numel() else "dense"


@torch.no_grad()
def dense_correlate(
    post_side: Tensor,
    pre_side: Tensor,
    sparse: str | None = None,
    weighted: bool = True,
    *,
    kernel: str = "auto",
    index: tuple[Tensor, Tensor, Tensor] | None = None,
    compute_dtype: torch.dtype | None = None,
    row_weight: Tensor | None = None,
) -> Tensor:
    """``sum_r w_r post_side[r]ᵀ pre_side[r]`` over all leading rows: ``[N_out, N_in]``
    (``w_r = 1`` unless ``row_weight`` is given).

    Args:
        post_side: ``[..., N_out]``.
        pre_side: ``[..., N_in]`` with the same leading shape.
        sparse: which operand holds spikes (``"post"`` or ``"pre"``), so the
            event-driven path knows what to make sparse; ``None`` means dense only.
        weighted: ``False`` if the spike operand is binary (its non-zeros are 1).
        index: :func:`spike_index` of the spike operand, if already computed.
        kernel: ``"auto"`` (event-driven where the spike operand is sparse on CPU),
            ``"dense"`` or ``"sparse"``.
        compute_dtype: operand dtype of the product (e.g. ``torch.bfloat16``: binary
            spikes are exact, real operands rounded; accumulation in float32 inside the
            kernel); the result comes back in ``post_side``'s dtype. ``None``: as given.
        row_weight: optional ``w_r``, shaped like the leading dimensions (e.g. ``[T, B]``):
            a weight per row, applied to the spike operand (so that the event-driven path
            keeps the binary spikes' index and reads the weight per event).

    Example:
        >>> import torch
        >>> post = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])      # [T=2, B=1, N_out=2]
        >>> pre = torch.tensor([[[0.5, 1.0, 0.0]], [[1.0, 0.0, 2.0]]])
        >>> dense_correlate(post, pre)
        tensor([[0.5000, 1.0000, 0.0000],
                [1.0000, 0.0000, 2.0000]])
    """
    p = post_side.reshape(-1, post_side.shape[-1])
    q = pre_side.reshape(-1, pre_side.shape[-1])
    if sparse == "post" and choose_kernel(kernel, p) == "sparse":
        return _event_correlate(p, q, weighted, index, compute_dtype, row_weight)
    if sparse == "pre" and choose_kernel(kernel, q) == "sparse":
        return _event_correlate(q, p, weighted, index, compute_dtype, row_weight).t()
    if row_weight is not None:  # dense: weigh the rows of the spike operand
        if sparse == "pre":
            q = weigh_rows(q, row_weight.reshape(-1))
        else:
            p = weigh_rows(p, row_weight.reshape(-1))
    if compute_dtype is not None and compute_dtype != p.dtype:
        return (p.t().to(compute_dtype) @ q.to(compute_dtype)).to(p.dtype)
    return p.t() @ q


@torch.no_grad()
def conv_event_sum(
    post: Tensor,
    table: Tensor,
    weight_shape: Sequence[int],
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    pad: Sequence[int] | None = None,
    padding_mode: str = "zeros",
    row_shift: int = 0,
) -> Tensor:
    """Conv weight-shaped sum of ``table``'s input patches at the post spikes.

    For every non-zero of ``post`` ``[R, C_out, *out]`` at row ``r``, channel ``o`` and
    output position ``p``, adds the receptive-field patch of ``table[r + row_shift]``
    (``[R', C_in, *in]``) under ``p`` to ``out[o]``: the event-driven form of
    :func:`conv_correlate` with the spikes on the post side (only 2-D convolutions,
    through :func:`torch.nn.functional.unfold`). Exact, but on the CPUs measured here
    slower than the dense weight-gradient (unfolding the whole trace costs more than the
    skipped output positions save): used only when a rule is built with ``kernel="sparse"``.

    Example:
        One post spike at the centre of a 3×3 map reads the whole (padded) 3×3 input:

        >>> import torch
        >>> post = torch.zeros(1, 1, 3, 3); post[0, 0, 1, 1] = 1.0  # [R, C_out, H, W]
        >>> table = torch.arange(9.0).view(1, 1, 3, 3)             # [R, C_in, H, W]
        >>> conv_event_sum(post, table, (1, 1, 3, 3), stride=(1, 1), padding=(1, 1),
        ...                dilation=(1, 1), groups=1).flatten().tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    """
    if len(weight_shape) != 4:
        raise ValueError("conv_event_sum supports 2-D convolutions")
    if pad is not None:
        table = F.pad(
            table, list(pad), mode="constant" if padding_mode == "zeros" else padding_mode
        )
    c_out, c_in_g = weight_shape[0], weight_shape[1]
    k = c_in_g * weight_shape[2] * weight_shape[3]
    patches = F.unfold(
        table,
        tuple(weight_shape[2:]),
        dilation=tuple(dilation),
        padding=tuple(padding),
        stride=tuple(stride),
    )
    patches = patches.view(table.shape[0], groups, k, -1)  # [R', groups, C_in/g·kh·kw, L]
    events = post.reshape(post.shape[0], c_out, -1).nonzero()
    rows, chans, pos = events[:, 0] + row_shift, events[:, 1], events[:, 2]
    group = chans // (c_out // groups)
    gathered = patches[rows, group, :, pos]  # [nnz, k]
    values = post.reshape(post.shape[0], c_out, -1)[events[:, 0], chans, pos]
    out = torch.zeros(c_out, k, dtype=table.dtype, device=table.device)
    out.index_add_(0, chans, gathered * values[:, None])
    return out.view(tuple(weight_shape))


_CONV_WEIGHT = {
    1: torch.nn.grad.conv1d_weight,
    2: torch.nn.grad.conv2d_weight,
    3: torch.nn.grad.conv3d_weight,
}


@torch.no_grad()
def conv_correlate(
    post_side: Tensor,
    pre_side: Tensor,
    weight_shape: Sequence[int],
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    pad: Sequence[int] | None = None,
    padding_mode: str = "zeros",
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """Conv weight-shaped correlation, summed over rows (time·batch) and output positions.

    ``post_side``: ``[..., C_out, *out_spatial]``; ``pre_side``: ``[..., C_in, *in_spatial]``
    with the same leading shape. ``pad`` (``F.pad`` order) pre-pads the pre side, for
    string padding or non-zero padding modes; then ``padding`` should be zeros.
    ``compute_dtype``: as for :func:`dense_correlate` (the result is in ``post_side``'s
    dtype).

    Example:
        >>> import torch
        >>> post = torch.zeros(1, 1, 1, 3); post[..., 1] = 1.0        # [B=1, C_out=1, L=3]
        >>> pre = torch.arange(5.0).view(1, 1, 1, 5)
        >>> conv_correlate(post, pre, (1, 1, 3), stride=(1,), padding=(0,), dilation=(1,), groups=1)
        tensor([[[1., 2., 3.]]])
    """
    k = len(weight_shape) - 2
    q = pre_side.reshape(-1, *pre_side.shape[-(k + 1) :])
    p = post_side.reshape(-1, *post_side.shape[-(k + 1) :])
    if pad is not None:
        q = F.pad(q, list(pad), mode="constant" if padding_mode == "zeros" else padding_mode)
    out_dtype = p.dtype
    if compute_dtype is not None:
        p, q = p.to(compute_dtype), q.to(compute_dtype)
        if p.device.type == "cpu":  # CPU kernels may accumulate in bf16: round, then fp32
            p, q = p.to(out_dtype), q.to(out_dtype)
    return _CONV_WEIGHT[k](
        q, list(weight_shape), p, stride=stride, padding=padding, dilation=dilation, groups=groups
    ).to(out_dtype)


class Kernels:
    """The synapse's products, summed over the rows (time and batch) of a chunk:
    ``correlate(post_side [R, *out], pre_side [R, *in])`` (a GEMM, or a conv
    weight-gradient), the event-driven sums, and one-sided sums broadcast to the weight."""

    def __init__(self, weight: Tensor, conv: dict | None, compute_dtype: torch.dtype | None):
        self.weight, self.conv, self.compute_dtype = weight, conv, compute_dtype
        self.indices: dict[int, tuple[Tensor, tuple]] = {}

    def correlate(self, post: Tensor, pre: Tensor) -> Tensor:
        cd = self.compute_dtype
        if self.conv is None:
            p, q = post.reshape(-1, post.shape[-1]), pre.reshape(-1, pre.shape[-1])
            if cd is not None and cd != p.dtype:
                if p.device.type == "cpu":  # CPU GEMMs may accumulate in bf16: round, then fp32
                    return p.t().to(cd).to(p.dtype) @ q.to(cd).to(p.dtype)
                return (p.t().to(cd) @ q.to(cd)).to(p.dtype)
            return p.t() @ q
        g = self.conv
        return conv_correlate(post, pre, g["weight_shape"], stride=g["stride"],
                              padding=g["padding"], dilation=g["dilation"], groups=g["groups"],
                              pad=g["pad"], padding_mode=g["padding_mode"],
                              compute_dtype=cd)  # fmt: skip

    def correlate_into(self, out: Tensor, post: Tensor, pre: Tensor) -> Tensor:
        """``out += correlate(post, pre)`` (dense: in place, no weight-sized temporary)."""
        if self.conv is None and self.compute_dtype is None:
            return out.addmm_(post.reshape(-1, post.shape[-1]).t(), pre.reshape(-1, pre.shape[-1]))
        return out.add_(self.correlate(post, pre))

    def one_sided(self, x: Tensor, side: str) -> Tensor:
        """``Σ`` over rows (and conv positions) of one side, broadcast to the weight."""
        shape = self.weight.shape
        channels = x.reshape(-1, *x.shape[2:]).sum(0)  # [C, *spatial] or [N]
        if self.conv is not None:
            channels = channels.reshape(channels.shape[0], -1).sum(1)
        if side == "post":
            return channels.view(-1, *([1] * (len(shape) - 1))).expand(shape)
        if self.conv is None:
            return channels.view(1, -1).expand(shape)
        groups = self.conv["groups"]
        per_group = channels.view(groups, -1)  # [groups, C_in/groups]
        rows = per_group.repeat_interleave(shape[0] // groups, 0)  # [C_out, C_in/groups]
        return rows.view(*rows.shape, *([1] * (len(shape) - 2))).expand(shape)

    def events(self, spikes: Tensor, weights: Tensor | None, table: Tensor) -> Tensor:
        """``Σ`` of ``table`` rows at each neuron's spikes: ``[N_spikes, N_table]``."""
        return event_sum(self.index(spikes), table.reshape(-1, table.shape[-1]), 0, weights,
                         self.compute_dtype)  # fmt: skip

    def index(self, spikes: Tensor) -> tuple:
        """The spike index of ``spikes`` (built once per chunk, shared by products)."""
        cached = self.indices.get(id(spikes))
        if cached is None or cached[0] is not spikes:
            index = spike_index(spikes.reshape(-1, spikes.shape[-1]))
            cached = self.indices[id(spikes)] = (spikes, index)
        return cached[1]
