r"""Correlation kernels: :math:`\sum_{t,b}` (post-side factor) ⊗ (pre-side factor) -> weight shape.

Every pair-based rule reduces to two of these per chunk of steps: potentiation pairs the
post spikes with the presynaptic trace, depression pairs the postsynaptic trace with the
pre spikes. For a dense synapse the sum over the ``T·B`` rows of a chunk is one GEMM;
for a convolution it is one weight gradient (:func:`torch.nn.grad.conv2d_weight` and
friends), never a loop over kernel positions.

When the spike operand is sparse (CPU, a few percent active), the dense kernel can run
event-driven: the spike operand becomes a CSR matrix and only its non-zeros are touched.
Both paths give the same numbers (to floating-point rounding).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dense_correlate", "conv_correlate", "KERNELS", "SPARSE_DENSITY"]

KERNELS = ("auto", "dense", "sparse")
#: below this fraction of non-zeros, ``kernel="auto"`` runs the event-driven path (CPU)
SPARSE_DENSITY = 0.08
_SPARSE_MIN_ELEMENTS = 1 << 16


def _csr(rows_by_cols: Tensor) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return rows_by_cols.contiguous().to_sparse_csr()


def _use_sparse(kernel: str, spikes: Tensor) -> bool:
    if kernel == "dense":
        return False
    if kernel == "sparse":
        return True
    if spikes.device.type != "cpu" or spikes.numel() < _SPARSE_MIN_ELEMENTS:
        return False
    return int(torch.count_nonzero(spikes)) < SPARSE_DENSITY * spikes.numel()


@torch.no_grad()
def dense_correlate(
    post_side: Tensor, pre_side: Tensor, sparse: str | None = None, *, kernel: str = "auto"
) -> Tensor:
    """``sum_r post_side[r]ᵀ pre_side[r]`` over all leading rows: ``[N_out, N_in]``.

    Args:
        post_side: ``[..., N_out]``.
        pre_side: ``[..., N_in]`` with the same leading shape.
        sparse: which operand holds spikes (``"post"`` or ``"pre"``), so the
            event-driven path knows what to make sparse; ``None`` means dense only.
        kernel: ``"auto"`` (event-driven where the spike operand is sparse on CPU),
            ``"dense"`` or ``"sparse"``.

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
    if sparse == "post" and _use_sparse(kernel, p):
        return torch.sparse.mm(_csr(p.t()), q)
    if sparse == "pre" and _use_sparse(kernel, q):
        return torch.sparse.mm(_csr(q.t()), p).t()
    return p.t() @ q


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
) -> Tensor:
    """Conv weight-shaped correlation, summed over rows (time·batch) and output positions.

    ``post_side``: ``[..., C_out, *out_spatial]``; ``pre_side``: ``[..., C_in, *in_spatial]``
    with the same leading shape. ``pad`` (``F.pad`` order) pre-pads the pre side, for
    string padding or non-zero padding modes; then ``padding`` should be zeros.

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
    return _CONV_WEIGHT[k](
        q, list(weight_shape), p, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
