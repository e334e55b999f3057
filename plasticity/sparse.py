"""A sparse synapse: :class:`SparseLinear`, a linear layer over stored (post, pre) pairs only.

Networks of computational neuroscience connect 1–10 % of their pairs; a dense
``[N_out, N_in]`` weight spends the rest on synapses that do not exist. A
:class:`SparseLinear` stores one value per existing synapse (its ``weight``, shape
``[nnz]``) and the synapses' indices in compressed-row form (``crow_indices``,
``col_indices``: sorted by post neuron, then pre neuron). Its forward pass is a sparse
product; no tensor of the dense shape is made, forward or backward.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ._connectivity import check_features, check_generator, connectivity_indices, index_dtype

__all__ = ["SparseLinear"]

#: elements of the temporaries of one block of the input's gradient (1 MiB of float32)
_GRAD_BLOCK = 1 << 18


def _csr(values: Tensor, crow: Tensor, col: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # torch: "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _rows(crow: Tensor, nnz: int) -> Tensor:
    """The post neuron (row) of each stored synapse, ``int64`` ``[nnz]``."""
    counts = crow[1:] - crow[:-1]
    rows = torch.arange(crow.numel() - 1, device=crow.device)
    return torch.repeat_interleave(rows, counts.to(torch.int64), output_size=nnz)


def _index_problem(crow: Tensor, col: Tensor, n_out: int, n_in: int) -> str | None:
    """What is wrong with CSR indices for an ``[n_out, n_in]`` layer, or ``None``."""
    if crow.shape != (n_out + 1,) or col.ndim != 1:
        return f"its crow_indices have shape {tuple(crow.shape)}, expected ({n_out + 1},)"
    crow, col = crow.cpu().to(torch.int64), col.cpu().to(torch.int64)
    counts = crow[1:] - crow[:-1]
    if int(crow[0]) != 0 or int(crow[-1]) != col.numel() or bool((counts < 0).any()):
        return "its crow_indices are not row pointers of its col_indices"
    if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n_in):
        return f"its col_indices go outside [0, {n_in})"
    new_row = torch.zeros(col.numel(), dtype=torch.bool)
    new_row[crow[1:-1][counts[1:] > 0]] = True  # the first synapse of each row after the first
    if bool(((col[1:] <= col[:-1]) & ~new_row[1:]).any()):
        return "its col_indices are not increasing within a row"
    return None


class _SparseProduct(torch.autograd.Function):
    """``y = x Wᵀ`` for ``x`` ``[M, in]`` and the CSR ``W`` ``[out, in]``; gradients w.r.t.
    the values (a sampled product at the stored pairs) and the input."""

    @staticmethod
    def forward(ctx: Any, values: Tensor, x: Tensor, crow: Tensor, col: Tensor,
                shape: tuple[int, int]) -> Tensor:  # fmt: skip
        ctx.save_for_backward(values, x, crow, col)
        ctx.shape = shape
        if values.numel() == 0 or x.shape[0] == 0:
            return x.new_zeros(x.shape[0], shape[0])
        return torch.mm(_csr(values, crow, col, shape), x.t()).t().contiguous()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        values, x, crow, col = ctx.saved_tensors
        shape, nnz = ctx.shape, values.numel()
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:
            if nnz == 0 or x.shape[0] == 0:
                grad_values = torch.zeros_like(values)
            else:  # Σ_m grad[m, i] x[m, j] at the stored (i, j) only
                pattern = _csr(values.detach(), crow, col, shape)
                grad_values = torch.sparse.sampled_addmm(
                    pattern, grad.t().contiguous(), x.contiguous(), beta=0.0
                ).values()
        if ctx.needs_input_grad[1]:  # grad_x[m, j] = Σ_i grad[m, i] W[i, j], by blocks of nnz
            grad_t = grad.t().contiguous()  # [out, M]
            out = grad.new_zeros(shape[1], grad.shape[0])
            rows, cols = _rows(crow, nnz), col.to(torch.int64)
            step = max(1, _GRAD_BLOCK // max(grad.shape[0], 1))
            for s in range(0, nnz, step):
                e = min(nnz, s + step)
                out.index_add_(0, cols[s:e], grad_t[rows[s:e]] * values[s:e, None])
            grad_x = out.t()
        return grad_values, grad_x, None, None, None


class SparseLinear(nn.Module):
    """A linear synapse over a sparse connectivity: ``y_i = Σ_j w_ij x_j (+ b_i)`` summed
    over the stored pairs ``(i, j)`` only.

    Args:
        in_features: pre neurons (the input's last dimension).
        out_features: post neurons.
        connectivity: which synapses exist:

            * a probability, a ``float`` in ``[0, 1]``: each (post, pre) pair independently
              (``1.0``: all pairs);
            * a fixed in-degree, an ``int``: each post neuron draws that many distinct pre
              neurons (Brunel's ``C_E``);
            * a bool mask ``[out_features, in_features]`` (True: the synapse exists);
            * index pairs, an integer tensor ``[2, nnz]``: row 0 the post neurons, row 1
              the pre neurons (any order; each pair once).
        generator: a CPU ``torch.Generator`` for the draws (the connectivity, then the
            initial values): the same seed gives the same synapses and values, bit for bit,
            in every process and on every device. ``None``: torch's global generator.
        autapses: ``False`` (square layers: recurrent use) excludes each neuron's synapse
            onto itself; an explicit mask or index pairs must then have no ``i == j`` pair.
        bias: adds a learnable bias ``[out_features]``.
        device, dtype: of the values (the indices follow the device).

    Attributes:
        weight: the values, one per stored synapse, ``[nnz]`` (an ``nn.Parameter``),
            initialised like ``nn.Linear``'s ``U(-1/√fan_in, 1/√fan_in)`` with each post
            neuron's own fan-in (its number of stored inputs), so a post neuron's summed
            input has the variance of a dense layer of the same fan-in. ``bias`` likewise.
        crow_indices: ``[out_features + 1]`` row pointers: post neuron ``i``'s synapses are
            ``crow_indices[i]:crow_indices[i + 1]``.
        col_indices: ``[nnz]`` the pre neuron of each synapse, increasing within a row.

    Both index buffers are ``int32`` (4 bytes per synapse; ``int64`` only past 2³¹ − 1
    synapses): with a float32 value and a two-component accumulator that is 16 bytes per
    synapse. :attr:`indices` gives the ``[2, nnz]`` (post, pre) pairs as ``int64``.

    Inputs ``[in]``, ``[B, in]`` or ``[T, B, in]`` (any leading dimensions); the output
    has ``out_features`` in place of ``in_features``. Gradients reach the values and the
    input. ``snn.RLeaky`` takes only a dense ``nn.Linear``: for sparse recurrence, feed
    the previous step's spikes through a square ``SparseLinear(n, n, p, autapses=False)``
    and add it to the feed-forward input of an ``snn.Leaky`` (guide: "Sparse connectivity").

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> g = torch.Generator().manual_seed(0)
        >>> fc = pl.SparseLinear(100, 50, 0.1, generator=g)
        >>> fc.weight.shape == (fc.nnz,), fc.col_indices.dtype
        (True, torch.int32)
        >>> lif = snn.Leaky(beta=0.9)
        >>> spk, mem = lif(fc(torch.ones(8, 100)), lif.init_leaky())
        >>> spk.shape
        torch.Size([8, 50])
        >>> torch.allclose(fc(torch.ones(8, 100)), torch.ones(8, 100) @ fc.to_dense().T)
        True
    """

    __constants__ = ["in_features", "out_features"]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        connectivity: float | int | Tensor,
        *,
        generator: torch.Generator | None = None,
        autapses: bool = True,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Draws or checks the connectivity, then the initial values; arguments:
        ``help(plasticity.SparseLinear)``."""
        n_in = check_features("in_features", in_features)
        n_out = check_features("out_features", out_features)
        generator = check_generator(generator)
        if not isinstance(autapses, bool) or not isinstance(bias, bool):
            raise TypeError("`autapses` and `bias` must be True or False")
        crow, col = connectivity_indices(connectivity, n_out, n_in, autapses, generator)
        super().__init__()
        self.in_features, self.out_features, self.autapses = n_in, n_out, autapses
        idx = index_dtype(col.numel(), n_in, n_out)
        self.register_buffer("crow_indices", crow.to(device=device, dtype=idx))
        self.register_buffer("col_indices", col.to(device=device, dtype=idx))
        dtype = dtype or torch.get_default_dtype()
        fan_in = (crow[1:] - crow[:-1]).to(torch.float64)
        bound = 1.0 / fan_in.clamp(min=1.0).sqrt()  # per post neuron
        u = torch.rand(col.numel(), dtype=torch.float64, generator=generator)
        values = (2.0 * u - 1.0) * torch.repeat_interleave(bound, crow[1:] - crow[:-1])
        self.weight = nn.Parameter(values.to(device=device, dtype=dtype))
        if bias:
            u = torch.rand(n_out, dtype=torch.float64, generator=generator)
            self.bias = nn.Parameter(((2.0 * u - 1.0) * bound).to(device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    @property
    def nnz(self) -> int:
        """The number of stored synapses."""
        return self.col_indices.numel()

    @property
    def indices(self) -> Tensor:
        """The stored synapses as ``int64`` ``[2, nnz]`` pairs (row 0: post, row 1: pre),
        sorted by post then pre: the ``connectivity`` that rebuilds this layer."""
        rows = _rows(self.crow_indices, self.nnz)
        return torch.stack((rows, self.col_indices.to(torch.int64)))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[..., in_features]`` → ``[..., out_features]``."""
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"the input has shape {tuple(x.shape)}; expected [..., {self.in_features}] "
                "(in_features), e.g. [B, N] or [T, B, N]"
            )
        flat = x.reshape(-1, self.in_features)
        y = _SparseProduct.apply(self.weight, flat, self.crow_indices, self.col_indices,
                                 (self.out_features, self.in_features))  # fmt: skip
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def to_dense(self) -> Tensor:
        """The weight as a dense ``[out_features, in_features]`` tensor (0 where no synapse
        exists), for inspection and plots; differentiable w.r.t. :attr:`weight`."""
        dense = self.weight.new_zeros(self.out_features, self.in_features)
        rows, cols = self.indices.unbind(0)
        return dense.index_put((rows, cols), self.weight)

    def mask(self) -> Tensor:
        """Which synapses exist, a bool ``[out_features, in_features]`` tensor (e.g. for
        ``torch.nn.utils.prune.custom_from_mask`` on a dense layer of the same network)."""
        mask = torch.zeros(self.out_features, self.in_features, dtype=torch.bool,
                           device=self.col_indices.device)  # fmt: skip
        rows, cols = self.indices.unbind(0)
        return mask.index_put_((rows, cols), torch.ones_like(rows, dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:  # fmt: skip
        # all or nothing: a row-pointer array copied without its column indices would
        # describe synapses that do not exist (a CSR product then reads out of bounds)
        crow, col = state_dict.get(prefix + "crow_indices"), state_dict.get(prefix + "col_indices")
        if crow is not None and col is not None:
            problem = _index_problem(crow, col, self.out_features, self.in_features)
            if problem is None and col.numel() != self.nnz:
                problem = (
                    f"it stores {col.numel()} synapses, this layer {self.nnz}: build the layer "
                    "with the checkpoint's connectivity, SparseLinear(in_features, "
                    f"out_features, indices) (see `.indices`), then load"
                )
            if problem is not None:
                error_msgs.append(f"SparseLinear {prefix or '(root)'}: cannot load: {problem}")
                return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)  # fmt: skip

    def extra_repr(self) -> str:
        density = self.nnz / (self.in_features * self.out_features)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz} ({100 * density:.3g}%), autapses={self.autapses}, "
            f"bias={self.bias is not None}"
        )

