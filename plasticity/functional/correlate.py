r"""Correlation kernels: :math:`\sum_{t,b}` (post-side factor) ⊗ (pre-side factor) -> weight shape.

Every term of a rule (:mod:`plasticity.engine`) is one of these per chunk of steps: for a
dense synapse the sum over the ``T·B`` rows of a chunk is one GEMM
(:func:`dense_correlate`); for a convolution it is one weight gradient
(:func:`conv_correlate`, :func:`torch.nn.grad.conv2d_weight` and friends), never a loop
over kernel positions.

Where one factor is a sparse spike train, the product can run event-driven: the spikes
become, per neuron, the list of rows (time·batch) where it fired (:func:`spike_index`),
and :func:`event_sum` sums the other factor's rows over each list
(:func:`torch.nn.functional.embedding_bag`; on CPU a CSR product in float64). Only
spikes are touched. Both give the same numbers to floating-point rounding; which is
faster depends on the shapes and the activity, which the engine's cost model weighs
(:mod:`plasticity.engine.cost`).

Every kernel here is deterministic: the same inputs give the same bits on the same
machine and thread count. Event sums add each neuron's rows in the order of its spikes
(one thread per neuron and column on CUDA, no atomics); conv weight-gradients on CUDA run
with cuDNN's deterministic algorithms (``deterministic=True``), whatever
``torch.backends.cudnn``'s settings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from .._grad import no_grad

__all__ = ["Kernels", "KERNELS", "dense_correlate", "conv_correlate", "event_sum", "spike_index"]

#: a rule's ``kernel`` option: ``"auto"`` (the engine's choice: a cost model, or timed on
#: request, :class:`~plasticity.engine.KernelChooser`), ``"dense"`` (GEMMs / conv
#: weight-gradients), ``"sparse"`` (event-driven where a factor is a spike train)
KERNELS = ("auto", "dense", "sparse")


def spike_index(spikes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For ``[R, N]`` spikes: rows where each neuron fired, sorted by neuron, with offsets.

    Every non-zero counts as a whole spike: pass binary spikes (the rules check theirs,
    and run graded ones through GEMMs).

    Returns ``(rows, offsets, neurons)``: ``rows[offsets[n]:offsets[n+1]]`` are the rows of
    neuron ``n``; ``neurons`` gives the neuron of each entry.

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
    by_neuron = spikes.reshape(-1, spikes.shape[-1]).t().bool()
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


@no_grad
def event_sum(
    index: tuple[Tensor, Tensor, Tensor],
    table: Tensor,
    *,
    row_shift: int = 0,
    weights: Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """For each neuron ``n`` of a :func:`spike_index`: the sum of ``table[r + row_shift]``
    over the rows ``r`` where it fired (times ``weights`` per event, if given): ``[N, M]``.

    ``table`` is ``[R', M]``; ``row_shift`` reads a later row (e.g. one step later).
    Sums run through :func:`torch.nn.functional.embedding_bag` (each neuron's rows added
    in order, deterministic on every device), float64 on CPU through a CSR matrix
    product. ``compute_dtype`` (e.g. ``torch.bfloat16``) gathers from a copy of
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
        return event_sum(index, table, row_shift=row_shift, weights=weights)
    rows, offsets = index[:2]
    if row_shift:  # table[r + shift] is row r of the table from row `shift` on (no index copy)
        table = table[row_shift:]
    if table.dtype in (torch.float32, torch.float16, torch.bfloat16) or table.device.type != "cpu":
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


@no_grad
def dense_correlate(
    post_side: Tensor, pre_side: Tensor, *, compute_dtype: torch.dtype | None = None
) -> Tensor:
    """``Σ_r post_side[r]ᵀ pre_side[r]`` over all leading rows: one GEMM, ``[N_out, N_in]``.

    ``compute_dtype`` (e.g. ``torch.bfloat16``): the operands are rounded to it (binary
    spikes are exact); products are summed in float32 (on CPUs whose bf16 GEMMs would
    round partial sums too, by computing on the rounded values in the operands' dtype).

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
    cd = compute_dtype
    if cd is None or cd == p.dtype:
        return p.t() @ q
    if p.device.type == "cpu":
        return p.t().to(cd).to(p.dtype) @ q.to(cd).to(p.dtype)
    return (p.t().to(cd) @ q.to(cd)).to(p.dtype)


_CONV_WEIGHT = {
    1: torch.nn.grad.conv1d_weight,
    2: torch.nn.grad.conv2d_weight,
    3: torch.nn.grad.conv3d_weight,
}


@no_grad
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
    deterministic: bool = True,
) -> Tensor:
    """Conv weight-shaped correlation, summed over rows (time·batch) and output positions.

    ``post_side``: ``[..., C_out, *out_spatial]``; ``pre_side``: ``[..., C_in, *in_spatial]``
    with the same leading shape. ``pad`` (``F.pad`` order) pre-pads the pre side, for
    string padding or non-zero padding modes; then ``padding`` should be zeros.
    ``compute_dtype``: as for :func:`dense_correlate` (the result is in ``post_side``'s
    dtype). ``deterministic``: on CUDA, cuDNN's deterministic algorithms (no timed
    algorithm search), whatever ``torch.backends.cudnn.benchmark`` says; ``False``
    leaves cuDNN's settings as they are.

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
    args = (q, list(weight_shape), p)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if deterministic and p.is_cuda:
        with _cudnn_deterministic():
            return _CONV_WEIGHT[k](*args, **geometry).to(out_dtype)
    return _CONV_WEIGHT[k](*args, **geometry).to(out_dtype)


@contextmanager
def _cudnn_deterministic() -> Iterator[None]:
    """cuDNN's deterministic algorithms, without a timed search, within the block."""
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


class Kernels:
    """The products of one synapse, summed over the rows (time and batch) of a chunk:
    ``correlate(post_side [R, *out], pre_side [R, *in])`` (a GEMM, or a conv
    weight-gradient), the event-driven sums (spike indices built once per chunk and
    shared), and one-sided sums broadcast to the weight.

    Args:
        weight: the synapse's weight (its shape, and the weight factor of terms).
        conv: the convolution's geometry (``weight_shape``, ``stride``, ``padding``,
            ``dilation``, ``groups``, ``pad``, ``padding_mode``), or ``None`` (dense).
        compute_dtype: operand dtype of the products (``None``: the operands').
        deterministic: conv weight-gradients on CUDA with cuDNN's deterministic
            algorithms (:func:`conv_correlate`).

    Example:
        >>> import torch
        >>> k = Kernels(torch.zeros(2, 3), None, None)
        >>> k.correlate(torch.ones(4, 1, 2), torch.ones(4, 1, 3))
        tensor([[4., 4., 4.],
                [4., 4., 4.]])
    """

    def __init__(self, weight: Tensor, conv: dict | None, compute_dtype: torch.dtype | None,
                 deterministic: bool = True):  # fmt: skip
        self.weight, self.conv, self.compute_dtype = weight, conv, compute_dtype
        self.deterministic = deterministic
        self.indices: dict[int, tuple[Tensor, tuple]] = {}
        self._nonnegative: bool | None = None

    def weight_nonnegative(self) -> bool:
        """Whether every weight is >= 0 (checked once per chunk: terms with the weight
        as a factor then need no split by its sign)."""
        if self._nonnegative is None:
            self._nonnegative = bool((self.weight >= 0).all())
        return self._nonnegative

    def correlate(self, post: Tensor, pre: Tensor) -> Tensor:
        """The synapse's product of ``[R, *out]`` and ``[R, *in]``, summed over rows."""
        cd = self.compute_dtype
        if self.conv is None:
            return dense_correlate(post, pre, compute_dtype=cd)
        g = self.conv
        return conv_correlate(post, pre, g["weight_shape"], stride=g["stride"],
                              padding=g["padding"], dilation=g["dilation"], groups=g["groups"],
                              pad=g["pad"], padding_mode=g["padding_mode"],
                              compute_dtype=cd, deterministic=self.deterministic)  # fmt: skip

    def correlate_into(self, out: Tensor, post: Tensor, pre: Tensor) -> Tensor:
        """``out += correlate(post, pre)`` (dense: in place, no weight-sized temporary)."""
        if self.conv is None and self.compute_dtype is None:
            return out.addmm_(post.reshape(-1, post.shape[-1]).t(), pre.reshape(-1, pre.shape[-1]))
        return out.add_(self.correlate(post, pre))

    def one_sided(self, x: Tensor, side: str, *, alpha: float = 1.0) -> Tensor:
        """``alpha · Σ`` over rows (and conv positions) of one side, broadcast to the weight."""
        shape = self.weight.shape
        channels = x.reshape(-1, *x.shape[2:]).sum(0)  # [C, *spatial] or [N]
        if self.conv is not None:
            channels = channels.reshape(channels.shape[0], -1).sum(1)
        if alpha != 1.0:
            channels = channels.mul_(alpha)
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
        return event_sum(self.index(spikes), table.reshape(-1, table.shape[-1]),
                         weights=weights, compute_dtype=self.compute_dtype)  # fmt: skip

    def index(self, spikes: Tensor) -> tuple:
        """The spike index of ``spikes`` (built once per chunk, shared by products)."""
        cached = self.indices.get(id(spikes))
        if cached is None or cached[0] is not spikes:
            index = spike_index(spikes.reshape(-1, spikes.shape[-1]))
            cached = self.indices[id(spikes)] = (spikes, index)
        return cached[1]
