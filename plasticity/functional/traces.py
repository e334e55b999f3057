r"""Spike traces: exact exponential decay, all-to-all or nearest spike, scanned over time.

A trace low-pass filters a spike train. Per step of length ``dt`` it decays by
:math:`d = e^{-dt/\tau}` (exact) and then takes the step's spikes:

* all-to-all: :math:`x_t = d\,x_{t-1} + s_t` (every earlier spike is remembered),
* nearest spike: :math:`x_t = s_t` where :math:`s_t \ne 0`, else :math:`d\,x_{t-1}`
  (only the most recent spike is remembered).

Forward-Euler decay :math:`d = 1 - dt/\tau` (SpikingJelly, snnTorch's learner) is only
used when asked for with ``method="euler"``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._grad import no_grad

__all__ = [
    "TRACE_MODES",
    "decay_factor",
    "decay_powers",
    "scan_trace",
    "scan_future",
    "scan_future_padded",
]

TRACE_MODES = ("all-to-all", "nearest")


def decay_factor(dt: float, tau: float, method: str = "exact") -> float:
    r"""Per-step decay of a trace with time constant ``tau`` and step ``dt``.

    ``method="exact"`` gives :math:`e^{-dt/\tau}`; ``"euler"`` gives :math:`1 - dt/\tau`
    (which needs ``dt < tau``).

    Example:
        >>> round(decay_factor(1.0, 20.0), 6), decay_factor(1.0, 20.0, "euler")
        (0.951229, 0.95)
    """
    if method == "exact":
        return math.exp(-dt / tau)
    if method == "euler":
        if dt >= tau:
            raise ValueError(f"forward-Euler decay needs dt < tau, got dt={dt}, tau={tau}")
        return 1.0 - dt / tau
    raise ValueError(f"`decay` must be 'exact' or 'euler', got {method!r}")


_BLOCK = 16  # steps per block of the all-to-all scan
_BLOCKED_MAX_WIDTH = 4096  # wider traces scan faster in strided blocks (_strided_scan)
_BLOCKED_MIN_STEPS = 4  # shorter chunks: a few adds


_CONSTANTS: dict[tuple, Tensor] = {}  # decay matrices and powers, read-only, by shape/dtype


def _constant(key: tuple, make) -> Tensor:
    value = _CONSTANTS.get(key)
    if value is None:
        if len(_CONSTANTS) > 256:  # many distinct decays (e.g. a parameter sweep): start over
            _CONSTANTS.clear()
        value = _CONSTANTS[key] = make()
    return value


def _decay_matrix(length: int, decay: float, like: Tensor) -> Tensor:
    """``M[i, j] = decay**(i - j)`` for ``i >= j`` else 0 (``[length, length]``, cached)."""

    def make() -> Tensor:
        idx = torch.arange(length, device=like.device)
        lag = (idx[:, None] - idx[None, :]).to(like.dtype)
        return torch.where(
            lag >= 0, torch.full_like(lag, decay).pow(lag.clamp_min(0)), torch.zeros_like(lag)
        )

    return _constant(("matrix", length, decay, like.dtype, like.device), make)


def decay_powers(
    decay: float, n: int, like: Tensor, offset: int = 0, reverse: bool = False
) -> Tensor:
    """``[decay**(1 + offset), ..., decay**(n + offset)]`` in ``like``'s dtype and device,
    in reverse order with ``reverse=True`` (cached: read-only).

    Example:
        >>> import torch
        >>> decay_powers(0.5, 3, torch.zeros(1))
        tensor([0.5000, 0.2500, 0.1250])
        >>> decay_powers(0.5, 3, torch.zeros(1), offset=-1, reverse=True)
        tensor([0.2500, 0.5000, 1.0000])
    """

    def make() -> Tensor:
        exponents = torch.arange(1 + offset, n + 1 + offset, device=like.device, dtype=like.dtype)
        powers = torch.full((n,), decay, dtype=like.dtype, device=like.device).pow(exponents)
        return powers.flip(0) if reverse else powers

    return _constant(("powers", n, decay, offset, reverse, like.dtype, like.device), make)


def _blocked_scan(
    flat: Tensor, carry: Tensor, decay: float, out: Tensor, reverse: bool = False
) -> Tensor:
    """All-to-all scan of ``[T, M]`` into ``out`` (``[T, M]``) in a constant number of ops.

    Full blocks of 16 steps: one batched product with the decay matrix (the scan inside
    each block from zero); the blocks' end values, combined by one more small product
    with the block-level decay matrix (:math:`d^{16}` powers), give every block's
    incoming carry, added as one batched outer product. The last partial block is one
    more product. ``reverse`` scans from the last step back (``carry``: the value after
    the end). Exact: the same sums, grouped differently.
    """
    steps, width = flat.shape
    length = _BLOCK
    full, rest = divmod(steps, length)
    head = full * length
    block_decay = decay**length
    if reverse and rest:  # the tail comes first when scanning backwards
        tail = out[head:]
        torch.matmul(_decay_matrix(rest, decay, flat).t(), flat[head:], out=tail)
        tail.addr_(decay_powers(decay, rest, flat, reverse=True), carry)
        carry = tail[0]
    if full:
        blocks = out[:head].view(full, length, width)
        matrix = _decay_matrix(length, decay, flat)
        torch.matmul(
            matrix.t() if reverse else matrix, flat[:head].view(full, length, -1), out=blocks
        )
        carries = flat.new_empty(full, width)
        if reverse:  # block k receives the true start value of block k + 1
            carries[-1] = carry
            if full > 1:
                starts = blocks[1:, 0, :]
                torch.matmul(
                    _decay_matrix(full - 1, block_decay, flat).t(), starts, out=carries[:-1]
                )
                carries[:-1].addr_(decay_powers(block_decay, full - 1, flat, reverse=True), carry)
            # distance to the next block's start
            within = decay_powers(decay, length, flat, reverse=True)
        else:  # block k receives the true end value of block k - 1
            carries[0] = carry
            if full > 1:
                ends = blocks[:-1, -1, :]
                torch.matmul(_decay_matrix(full - 1, block_decay, flat), ends, out=carries[1:])
                carries[1:].addr_(decay_powers(block_decay, full - 1, flat), carry)
            within = decay_powers(decay, length, flat)  # distance from the previous block's end
        blocks.baddbmm_(within.view(1, length, 1).expand(full, length, 1), carries.unsqueeze(1))
        if not reverse:
            carry = out[head - 1]
    if not reverse and rest:
        tail = out[head:]
        torch.matmul(_decay_matrix(rest, decay, flat), flat[head:], out=tail)
        tail.addr_(decay_powers(decay, rest, flat), carry)
    return out


def _strided_scan(
    flat: Tensor, carry: Tensor, decay: float, out: Tensor, reverse: bool = False
) -> Tensor:
    """All-to-all scan of a wide ``[T, M]`` into ``out`` in about ``2 sqrt(T)`` elementwise ops.

    The steps form ``full`` blocks of ``L ~ sqrt(T)``; the blocks are scanned side by side
    from zero (``L - 1`` ops, each over all blocks at once), then block by block, in scan
    order, one rank-1 update adds the decayed true value leaving the previous block
    (``full`` ops; no scratch memory, so ``out`` may be ``flat`` itself). The few steps
    left over are scanned step by step (first when scanning backwards). For traces too
    wide for the small matrix products of :func:`_blocked_scan`. Exact: the same sums,
    grouped differently.
    """
    steps, width = flat.shape
    length = max(2, math.isqrt(steps))
    full, rest = divmod(steps, length)
    head = full * length
    if reverse:  # the tail first: it gives the carry into the last block
        for t in range(steps - 1, head - 1, -1):
            torch.add(flat[t], carry, alpha=decay, out=out[t])
            carry = out[t]
    if full:
        source = flat[:head].view(full, length, width)
        blocks = out[:head].view(full, length, width)
        order = range(length - 2, -1, -1) if reverse else range(1, length)
        first = length - 1 if reverse else 0
        blocks[:, first].copy_(source[:, first])
        for i in order:  # every block from zero, side by side
            torch.add(source[:, i], blocks[:, i + 1 if reverse else i - 1], alpha=decay,
                      out=blocks[:, i])  # fmt: skip
        # d^(distance to the carry's step): L..1 backwards, 1..L forwards
        powers = decay_powers(decay, length, flat, reverse=reverse)
        # block by block in scan order, each takes the true value leaving the one before
        # (already corrected) as its carry: one rank-1 update each, no scratch memory
        for k in range(full - 1, -1, -1) if reverse else range(full):
            blocks[k].addr_(powers, carry)
            carry = blocks[k, 0] if reverse else blocks[k, -1]
    if not reverse:
        for t in range(head, steps):
            torch.add(flat[t], carry, alpha=decay, out=out[t])
            carry = out[t]
    return out


@no_grad
def scan_trace(
    spikes: Tensor, trace: Tensor, decay: float, mode: str = "all-to-all", out: Tensor | None = None
) -> Tensor:
    """Traces after each step, each including that step's spikes.

    Args:
        spikes: ``[T, *S]`` spikes (binary, or graded values).
        trace: ``[*S]`` trace before the first step.
        decay: per-step decay factor (see :func:`decay_factor`).
        mode: ``"all-to-all"`` or ``"nearest"``.
        out: optional buffer with ``spikes``' number of elements to write into (reusing
            memory across chunks avoids page faults on large chunks).

    Returns:
        ``[T, *S]`` traces; the last one is the state to carry to the next chunk.

    For traces up to ``B·N = 4096`` wide the all-to-all scan runs in blocks of 16 steps:
    inside a block one small matrix product with the decay matrix :math:`d^{i-j}`, across
    blocks one more product at the block level (:math:`d^{16}`), a constant number of ops
    whatever ``T`` (exact: the same sums grouped differently). Wider traces run in
    ``sqrt(T)`` blocks scanned side by side by elementwise ops (about ``2 sqrt(T)`` of
    them), which is faster there than the small products or a loop over steps.

    Example:
        >>> import torch
        >>> s = torch.tensor([[1.0], [0.0], [1.0]])
        >>> scan_trace(s, torch.zeros(1), 0.5).flatten()
        tensor([1.0000, 0.5000, 1.2500])
        >>> scan_trace(s, torch.zeros(1), 0.5, "nearest").flatten()
        tensor([1.0000, 0.5000, 1.0000])
    """
    if mode not in TRACE_MODES:
        raise ValueError(f"`trace` must be one of {TRACE_MODES}, got {mode!r}")
    steps = spikes.shape[0]
    if steps == 1 and out is None:  # one step (online learning): one op
        if mode == "nearest":
            return torch.where(spikes != 0, spikes, trace * decay)
        return torch.add(spikes, trace, alpha=decay)
    if out is not None:
        out = out.view(spikes.shape)
    if mode == "nearest":
        out = torch.empty_like(spikes) if out is None else out
        prev = trace
        for t in range(steps):
            s = spikes[t]
            torch.where(s != 0, s, prev * decay, out=out[t])
            prev = out[t]
        return out
    flat = spikes.reshape(steps, -1)
    out = torch.empty_like(flat) if out is None else out.view(flat.shape)
    return _scan(flat, trace.reshape(-1), decay, out).view(spikes.shape)


def _scan(flat: Tensor, carry: Tensor, decay: float, out: Tensor, reverse: bool = False) -> Tensor:
    """The all-to-all scan of ``[T, M]`` into ``out`` by the fastest of three exact forms."""
    steps, width = flat.shape
    if steps < _BLOCKED_MIN_STEPS:  # a few adds
        ts = range(steps - 1, -1, -1) if reverse else range(steps)
        for t in ts:
            torch.add(flat[t], carry, alpha=decay, out=out[t])
            carry = out[t]
        return out
    if width > _BLOCKED_MAX_WIDTH:
        return _strided_scan(flat, carry, decay, out, reverse)
    return _blocked_scan(flat, carry, decay, out, reverse)


@no_grad
def scan_future_padded(spikes: Tensor, decay: float, out: Tensor | None = None) -> Tensor:
    r"""Inclusive future trace :math:`F_t = s_t + d\,F_{t+1}` with a zero step appended:
    ``[T + 1, *S]``, ``F[T] = 0``. The exclusive future trace is ``d * F[t + 1]``.
    ``out``: optional buffer of ``(T + 1) * prod(S)`` elements to write into.

    Example:
        >>> import torch
        >>> s = torch.tensor([[1.0], [0.0], [1.0]])
        >>> scan_future_padded(s, 0.5).flatten()
        tensor([1.2500, 0.5000, 1.0000, 0.0000])
    """
    steps = spikes.shape[0]
    flat = spikes.reshape(steps, -1)
    out = (
        flat.new_empty((steps + 1, flat.shape[1]))
        if out is None
        else out.view(steps + 1, flat.shape[1])
    )
    out[steps].zero_()
    _scan(flat, out[steps], decay, out[:steps], reverse=True)
    return out.view(steps + 1, *spikes.shape[1:])


def scan_future(spikes: Tensor, decay: float, include_current: bool = False) -> Tensor:
    r"""All-to-all trace of the *later* spikes of a chunk, seen from each step:
    :math:`\sum_{t' > t} d^{t'-t} s_{t'}` (``t' >= t`` with ``include_current``).

    The time-reversed counterpart of :func:`scan_trace` (starting from zero at the end of
    the chunk): depression of pair STDP can read it at the post spikes, so potentiation
    and depression share one event index.

    Example:
        >>> import torch
        >>> s = torch.tensor([[1.0], [0.0], [1.0]])
        >>> scan_future(s, 0.5).flatten()
        tensor([0.2500, 0.5000, 0.0000])
        >>> scan_future(s, 0.5, include_current=True).flatten()
        tensor([1.2500, 0.5000, 1.0000])
    """
    padded = scan_future_padded(spikes, decay)
    return padded[:-1].clone() if include_current else padded[1:].mul(decay)
