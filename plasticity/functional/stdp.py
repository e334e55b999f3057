r"""Pair and triplet STDP on a chunk of steps, as pure functions of tensors.

Both take spikes ``pre`` ``[T, B, *in]`` and ``post`` ``[T, B, *out]``, the traces carried
from the previous chunk, the parameters, and a ``correlate(post_side, pre_side, sparse)``
function (dense GEMM or conv weight-grad, see :mod:`plasticity.functional.correlate`).
They return the non-negative magnitudes ``pos`` and ``neg`` of the chunk (weight-shaped,
amplitudes and batch reduction applied) and the traces to carry on.

Pair STDP (all-to-all, ``coincident="ltp"``) equals the pair sums

.. math::
    \mathrm{pos}_{ij} = \frac{A_+}{B}\sum_b \sum_{t^\text{post}_i \ge t^\text{pre}_j}
        e^{-(t^\text{post}_i - t^\text{pre}_j)\,dt/\tau_+},\qquad
    \mathrm{neg}_{ij} = \frac{A_-}{B}\sum_b \sum_{t^\text{pre}_j > t^\text{post}_i}
        e^{-(t^\text{pre}_j - t^\text{post}_i)\,dt/\tau_-}.

``coincident="both"`` also counts same-step pairs as depression (``≥`` in both sums);
``"none"`` counts them in neither (``>`` in both). Nearest-spike traces keep only the
most recent spike on each side (symmetric nearest-spike pairing).

Triplet STDP (Pfister & Gerstner 2006) adds a slow detector on the other side:

.. math::
    \mathrm{pos}_{ij} = \sum_{t^\text{post}} r_{1,j}(t)\,[A_2^+ + A_3^+\,o_{2,i}(t-\epsilon)],
    \qquad
    \mathrm{neg}_{ij} = \sum_{t^\text{pre}} o_{1,i}(t)\,[A_2^- + A_3^-\,r_{2,j}(t-\epsilon)],

with :math:`r_1, o_1` decaying with :math:`\tau_+, \tau_-` and :math:`r_2, o_2` with
:math:`\tau_x, \tau_y`; :math:`t-\epsilon` means before the current spike is added.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .correlate import conv_correlate, conv_event_sum, event_sum, spike_index, spike_rows
from .traces import (
    decay_powers,
    previous_in_blocks,
    previous_trace,
    scan_future_padded,
    scan_in_place_,
    scan_trace,
    unscan_,
    unscan_exact,
)

__all__ = [
    "PairParams",
    "PairState",
    "TripletParams",
    "TripletState",
    "pair_stdp",
    "pair_traces",
    "pair_stdp_post_events",
    "conv_pair_stdp_post_events",
    "conv_pair_stdp_post_side",
    "triplet_stdp",
    "COINCIDENT",
]

COINCIDENT = ("ltp", "both", "none")

Correlate = Callable[..., Tensor]  # (post_side, pre_side, spike_operand, weighted) -> weight-shaped


class PairParams(NamedTuple):
    """Parameters of pair STDP; ``scale`` is the batch reduction (1/B for the mean)."""

    a_plus: float
    a_minus: float
    decay_plus: float
    decay_minus: float
    trace: str = "all-to-all"
    coincident: str = "ltp"
    scale: float = 1.0


class PairState(NamedTuple):
    """Traces after the last processed step: ``x_pre`` ``[B, *in]``, ``y_post`` ``[B, *out]``."""

    x_pre: Tensor
    y_post: Tensor


class TripletParams(NamedTuple):
    a2_plus: float
    a3_plus: float
    a2_minus: float
    a3_minus: float
    decay_plus: float
    decay_minus: float
    decay_x: float
    decay_y: float
    trace: str = "all-to-all"
    coincident: str = "ltp"
    scale: float = 1.0


class TripletState(NamedTuple):
    """``r1``/``r2`` presynaptic (τ₊, τₓ), ``o1``/``o2`` postsynaptic (τ₋, τ_y) traces."""

    r1: Tensor
    r2: Tensor
    o1: Tensor
    o2: Tensor


def _used(
    traces: Tensor, spikes: Tensor, trace0: Tensor, decay: float, include_current: bool, mode: str
) -> Tensor:
    """The trace a pairing reads: with or without the same step's spikes."""
    if include_current:
        return traces
    if mode == "all-to-all":
        return traces - spikes
    return previous_trace(traces, trace0, decay)


def pair_traces(
    pre: Tensor, post: Tensor, state, params, workspace: dict[str, Tensor] | None = None
):
    """The traces pair STDP reads, ``(x_used, y_used, PairState(x_last, y_last))``.

    ``x_used`` includes the same step's pre spikes unless ``coincident="none"``; ``y_used``
    includes the same step's post spikes only with ``coincident="both"``. ``state`` needs
    ``x_pre`` and ``y_post``; ``params`` the decays, ``trace`` and ``coincident``.

    Example:
        >>> import torch
        >>> pre = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)
        >>> post = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)
        >>> x, y, carry = pair_traces(pre, post, PairState(torch.zeros(1, 1), torch.zeros(1, 1)),
        ...                           PairParams(1.0, 1.0, 0.5, 0.5))
        >>> x.flatten(), y.flatten(), carry.x_pre.flatten()
        (tensor([1.0000, 0.5000, 1.2500]), tensor([0.0000, 0.0000, 0.5000]), tensor([1.2500]))
    """
    mode, coincident = params.trace, params.coincident
    steps = pre.shape[0]
    x = scan_trace(
        pre, state.x_pre, params.decay_plus, mode, out=_buffer(workspace, "trace", pre, steps)
    )
    y = scan_trace(
        post,
        state.y_post,
        params.decay_minus,
        mode,
        out=_buffer(workspace, "post_trace", post, steps),
    )
    carry = PairState(x[-1].clone(), y[-1].clone())
    x_used = _used(x, pre, state.x_pre, params.decay_plus, coincident in ("ltp", "both"), mode)
    y_used = _used(y, post, state.y_post, params.decay_minus, coincident == "both", mode)
    return x_used, y_used, carry


def pair_stdp(
    pre: Tensor,
    post: Tensor,
    state: PairState,
    params: PairParams,
    correlate: Correlate,
    workspace: dict[str, Tensor] | None = None,
    sink: Callable[[Tensor], None] | None = None,
    sink_rows: Callable[[str, Tensor, slice], None] | None = None,
    scratch: bool = False,
):
    """Pair STDP over one chunk. Returns ``(pos, neg, new_state)``.

    ``sink``: if given, receives the finished potentiation before depression is computed
    (so that the two are never alive at once); ``pos`` is then returned as ``None``.
    ``sink_rows``: if given, for a large weight, receives both components in groups of
    output neurons (``("pos" | "neg", rows, slice)``, as for
    :func:`pair_stdp_post_events`), one product per group; both are then returned as
    ``None`` (dense synapses). ``scratch``: ``pre`` and ``post`` hold binary spikes the
    caller no longer needs (a rule's own step buffers) on a dense synapse: the traces are
    then scanned into them (pre spikes recovered in between by
    :func:`~plasticity.functional.traces.unscan_`, or as the steps where a nearest-spike
    trace is 1), and same-step exclusion reads the step before (``d·x[t-1]``) by slicing;
    no trace table is allocated, and both are left holding traces.

    Example:
        A pre spike at step 0 and a post spike at step 2 (dt = 1, τ = 1):

        >>> import math, torch
        >>> from plasticity.functional import dense_correlate
        >>> pre = torch.tensor([1.0, 0, 0]).view(3, 1, 1)
        >>> post = torch.tensor([0, 0, 1.0]).view(3, 1, 1)
        >>> d = math.exp(-1.0)
        >>> pos, neg, _ = pair_stdp(pre, post, PairState(torch.zeros(1, 1), torch.zeros(1, 1)),
        ...                         PairParams(1.0, 1.0, d, d), dense_correlate)
        >>> round(float(pos), 6) == round(math.exp(-2.0), 6), float(neg)
        (True, 0.0)
    """
    dense = pre.ndim == 3  # [T, B, N]: output neurons are the last dimension of post
    if (
        scratch
        and dense
        and pre.is_contiguous()
        and post.is_contiguous()
        and pre[0].numel() > _IN_PLACE_MIN_WIDTH  # (narrower tables are small)
        and (
            unscan_exact(params.decay_plus, pre.dtype)
            if params.trace == "all-to-all"
            # a nearest-spike trace is exactly 1 at the spikes and below 1 elsewhere, as
            # long as the decay itself rounds to less than 1 in this dtype
            else torch.tensor(params.decay_plus, dtype=pre.dtype).item() < 1
        )
    ):
        return _pair_stdp_in_place(pre, post, state, params, correlate, sink, sink_rows)
    x_used, y_used, new_state = pair_traces(pre, post, state, params, workspace)
    pos, neg = _two_products(
        correlate,
        False,
        (post, x_used, "post", params.a_plus * params.scale),
        (y_used, pre, "pre", params.a_minus * params.scale),
        sink,
        sink_rows if dense else None,
    )
    return pos, neg, new_state


def _two_products(correlate, weighted: bool, pos_operands, neg_operands, sink, sink_rows):
    """Potentiation, then depression, each ``scale · correlate(post_side, pre_side, sparse,
    weighted)`` from its operands ``(post_side, pre_side, sparse, scale)`` (dense synapses:
    output neurons last): for a large weight, group by group of output neurons into
    ``sink_rows`` (both returned as ``None``); else whole, potentiation handed to ``sink``
    (if given) before depression is computed. Returns ``(pos, neg)``."""
    n_out, n_in = pos_operands[0].shape[-1], pos_operands[1].shape[-1]
    blocks = _row_blocks(0, n_out, n_in) if sink_rows is not None else 1
    if blocks > 1:
        for which, (side, other, sparse, scale) in (("pos", pos_operands), ("neg", neg_operands)):
            for g in _groups(n_out, blocks):
                sink_rows(which, correlate(side[..., g], other, sparse, weighted).mul_(scale), g)
        return None, None
    side, other, sparse, scale = pos_operands
    pos = correlate(side, other, sparse, weighted).mul_(scale)
    if sink is not None:
        sink(pos)
        pos = None
    side, other, sparse, scale = neg_operands
    return pos, correlate(side, other, sparse, weighted).mul_(scale)


def _pair_stdp_in_place(pre, post, state, params, correlate, sink, sink_rows):
    """:func:`pair_stdp` with both traces scanned into the spike tensors themselves."""
    steps = pre.shape[0]
    mode, coincident = params.trace, params.coincident
    n_out, n_in = post.shape[-1], pre.shape[-1]
    blocks = _row_blocks(0, n_out, n_in) if sink_rows is not None else 1
    x0, y0 = state.x_pre, state.y_post

    def scan(spikes, trace0, decay):
        if mode == "all-to-all":
            return scan_in_place_(spikes, trace0, decay)
        return scan_trace(spikes, trace0, decay, "nearest", out=spikes)

    def correlation(side, other, sparse, include, side0, other0, decay, amp, which):
        """``amp·scale·Σ_t side[t]ᵀ other[t]`` with the trace operand (``other`` for
        potentiation, ``side`` for depression) read at the same step (``include``) or one
        step earlier, decayed once (the first step then pairs ``side0`` with ``other0``:
        the carried trace on one side, the first step's spikes on the other); handed to
        ``sink_rows`` group by group, or returned whole."""
        scale = amp * params.scale
        if not include:  # the step before, decayed once: rows shifted by slicing (views)
            tail_side, tail_other = side[1:], other[:-1]
            if which == "neg":  # the trace is the post side here
                tail_side, tail_other = side[:-1], other[1:]
        result = None
        for g in _groups(n_out, blocks):
            if include:
                part = correlate(side[..., g], other, sparse, False)
            else:
                part = (
                    correlate(tail_side[..., g], tail_other, sparse, False) if steps > 1 else None
                )
                first = side0[:, g].t() @ other0  # the chunk's first step, with the carry
                part = first if part is None else part.add_(first)
                part.mul_(decay)
            part.mul_(scale)
            if blocks > 1:
                sink_rows(which, part, g)
            else:
                result = part
        return result

    x = scan(pre, x0, params.decay_plus)
    x_last = x[-1].clone()
    include_pre = coincident in ("ltp", "both")
    # potentiation: post spikes against the presynaptic trace (or the step before)
    pos = correlation(
        post, x, "post", include_pre, post[0], x0, params.decay_plus, params.a_plus, "pos"
    )
    if pos is not None and sink is not None:
        sink(pos)
        pos = None
    if mode == "all-to-all":  # the pre spikes back, exactly
        unscan_(x, x0, params.decay_plus)
    else:  # a nearest-spike trace of binary spikes is 1 exactly at the spikes, below else
        x.eq_(1.0)
    y = scan(post, y0, params.decay_minus)
    y_last = y[-1].clone()
    neg = correlation(
        y, pre, "pre", coincident == "both", y0, pre[0], params.decay_minus, params.a_minus, "neg"
    )
    return pos, neg, PairState(x_last, y_last)


def _scratch(
    workspace: dict[str, Tensor] | None,
    name: str,
    shape: tuple[int, ...],
    like: Tensor,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """A ``shape`` buffer on ``like``'s device (``dtype``, default ``like``'s), reused from
    ``workspace`` when the one there is large enough (``None``: a fresh one)."""
    dtype = dtype or like.dtype
    if workspace is None:
        return like.new_empty(shape, dtype=dtype)
    size = math.prod(shape)
    buf = workspace.get(name)
    if buf is None or buf.numel() < size or buf.dtype != dtype or buf.device != like.device:
        buf = workspace[name] = like.new_empty(shape, dtype=dtype)
    return buf.view(-1)[:size].view(shape)


def _buffer(workspace: dict[str, Tensor] | None, name: str, like: Tensor, steps: int) -> Tensor:
    """A ``[steps, *like.shape[1:]]`` buffer like ``like``'s steps (see :func:`_scratch`)."""
    return _scratch(workspace, name, (steps, *like.shape[1:]), like)


def _pre_trace_read(pre, x0, decay: float, coincident: str, workspace):
    """The all-to-all presynaptic trace as potentiation reads it (without the same step's
    spikes for ``coincident="none"``), in the workspace's trace buffer (one step longer, so
    that the future trace can reuse it), and the trace to carry."""
    steps = pre.shape[0]
    x = scan_trace(pre, x0, decay, out=_buffer(workspace, "trace", pre, steps + 1)[:steps])
    x_last = x[-1].clone()
    if coincident == "none":
        x.sub_(pre)
    return x, x_last


def _future_at_post(
    spikes, decay: float, coincident: str, gather, workspace, like, buffer: str = "trace"
):
    r"""Depression read at the post spikes: ``gather(rows, row_shift)`` of the future trace
    of ``spikes`` (the pre spikes, or weighted ones): at or after each post spike for
    ``coincident="both"``, else strictly after (one step later, decayed once). Returns it
    with ``seen`` = :math:`\sum_t d^{t+1}` ``spikes[t]``, what the carried postsynaptic
    trace pairs with. Uses the workspace's ``buffer`` shaped like ``like`` (by default the
    trace buffer, freed by the potentiation)."""
    steps, batch = spikes.shape[:2]
    future = scan_future_padded(spikes, decay, out=_buffer(workspace, buffer, like, steps + 1))
    seen = future[0] * decay
    rows = future.reshape((steps + 1) * batch, *spikes.shape[2:])
    if coincident == "both":
        return gather(rows, 0), seen
    return gather(rows, batch).mul_(decay), seen


def _post_events(
    pre, post, state: PairState, params: PairParams, gather, boundary, workspace, sink=None
):
    """The shared body of the post-events kernels: ``gather(table_rows, row_shift)`` sums the
    presynaptic table's entries at the post spikes, ``boundary(neg, y0, pre_seen)`` adds the
    carried postsynaptic trace correlated with this chunk's decayed pre spikes to ``neg``.
    ``sink(pos)``, if given, takes the finished potentiation as soon as it is ready (before
    depression is computed, so that both are never alive at once); ``pos`` is then returned
    as ``None``."""
    if params.trace != "all-to-all":
        raise ValueError("the post-events kernels need trace='all-to-all'")
    steps, batch = pre.shape[:2]
    # one trace buffer serves both tables in turn: the trace, then the future trace
    x, x_last = _pre_trace_read(pre, state.x_pre, params.decay_plus, params.coincident, workspace)
    pos = gather(x.reshape(steps * batch, *pre.shape[2:]), 0)
    del x
    if sink is not None:
        sink(pos.mul_(params.a_plus * params.scale))
        pos = None
    neg, pre_seen = _future_at_post(
        pre, params.decay_minus, params.coincident, gather, workspace, pre
    )
    return _post_side_finish(pre, post, state, params, pos, neg, boundary, x_last, pre_seen)


def _post_amplitudes(post: Tensor, index, binary: bool | None) -> Tensor | None:
    """The post spikes' values at their events (graded spikes weigh each event), or
    ``None`` for binary spikes (``binary=None``: checked on those values)."""
    if binary:
        return None
    flat = index[0].long() * post.shape[-1] + index[2]
    values = post.reshape(-1).index_select(0, flat)
    if binary is None and bool((values == 1).all()):
        return None
    return values


def _dense_boundary(neg: Tensor, y0: Tensor, pre_seen: Tensor) -> None:
    """``neg += y0ᵀ pre_seen`` in place (no weight-sized temporary): ``[B, N_out]`` by
    ``[B, N_in]``."""
    neg.addmm_(y0.t(), pre_seen)


def _carry_post_trace(neg, post, y0, decay: float, pre_seen, boundary) -> Tensor:
    """Adds the pairs of the carried postsynaptic trace ``y0`` with this chunk's pre spikes
    to ``neg`` (``boundary(neg, y0, pre_seen)``, skipped for a fresh zero trace) and returns
    the trace after the chunk's last step."""
    steps = post.shape[0]
    carried = bool(y0.any())  # a fresh (zero) trace pairs with nothing
    if carried:
        boundary(neg, y0, pre_seen)
    # d^(T-1) .. d^0: each step's post spikes decayed to the chunk's last step (cached)
    to_last = decay_powers(decay, steps, post, offset=-1, reverse=True)
    y_last = torch.tensordot(to_last, post, dims=1)
    if carried:
        y_last.add_(y0, alpha=decay**steps)
    return y_last


def _post_side_finish(
    pre, post, state: PairState, params: PairParams, pos, neg, boundary, x_last, pre_seen
):
    r"""What every post-side kernel adds after its two tables: the pairs of this chunk's pre
    spikes with post spikes of earlier chunks (``boundary(neg, y0, pre_seen)`` adds them
    to ``neg`` in place: always depression; ``pre_seen`` = :math:`\sum_t d_-^{t+1}`
    ``pre[t]``, the future trace at the chunk's start decayed once), the postsynaptic
    trace to carry, and the amplitudes."""
    y_last = _carry_post_trace(neg, post, state.y_post, params.decay_minus, pre_seen, boundary)
    if pos is not None:
        pos.mul_(params.a_plus * params.scale)
    neg.mul_(params.a_minus * params.scale)
    return pos, neg, PairState(x_last, y_last)


def pair_stdp_post_events(
    pre: Tensor,
    post: Tensor,
    state: PairState,
    params: PairParams,
    post_index: tuple[Tensor, Tensor, Tensor] | None = None,
    workspace: dict[str, Tensor] | None = None,
    compute_dtype: torch.dtype | None = None,
    sink: Callable[[Tensor], None] | None = None,
    binary_post: bool | None = None,
    scratch: bool = False,
    sink_rows: Callable[[str, Tensor, slice], None] | None = None,
):
    r"""All-to-all pair STDP on a dense synapse with both components read at the post spikes.

    Potentiation reads the presynaptic trace at each post spike; depression reads the
    *future* presynaptic trace (decay :math:`\tau_-`) at each post spike, plus the pairs
    of this chunk's pre spikes with post spikes of earlier chunks (a rank-B term from the
    carried postsynaptic trace). The same numbers as :func:`pair_stdp` (all-to-all only:
    nearest-spike traces are not linear), with one event index, the post spikes
    (:func:`~plasticity.functional.correlate.spike_index`), instead of a GEMM per side.

    Shape: ``pre`` ``[T, B, N_in]``, ``post`` ``[T, B, N_out]``; returns ``[N_out, N_in]``.
    ``workspace``: a dict the caller keeps between chunks; trace buffers are reused from it.
    ``compute_dtype`` (e.g. ``torch.bfloat16``): the dtype the trace tables are gathered in.
    ``sink``: if given, receives the finished potentiation before depression is computed
    (e.g. to add it to an accumulator, so that the two are never alive at once); ``pos`` is
    then returned as ``None``. ``binary_post``: whether the post spikes are all 0 or 1
    (``None``: read from the values at the events); graded amplitudes weigh their events.
    ``scratch``: ``pre`` (binary spikes) and ``post`` are the caller's to overwrite (a
    rule's own step buffers): the two presynaptic tables are then scanned into ``pre`` itself, the
    spikes recovered in between by :func:`~plasticity.functional.traces.unscan_` (exact
    for binary spikes), so that no trace table is allocated; ``pre`` is left holding the
    future trace, and ``post`` serves as scratch memory once its events are listed.
    Ignored (the tables are allocated) for ``coincident="none"`` and where
    the recovery would not be exact (see
    :func:`~plasticity.functional.traces.unscan_exact`). ``sink_rows``: with
    ``scratch``, receives ``("pos" | "neg", rows of the component, slice of its rows)``
    block by block, in order (finished values: amplitudes and batch reduction applied), so
    that no weight-sized result is allocated; both are then returned as ``None``.

    Example:
        The same numbers as :func:`pair_stdp` with one GEMM per component:

        >>> import torch
        >>> from plasticity.functional import dense_correlate
        >>> g = torch.Generator().manual_seed(0)
        >>> pre = (torch.rand(30, 2, 6, generator=g) < 0.3).double()
        >>> post = (torch.rand(30, 2, 4, generator=g) < 0.3).double()
        >>> state = PairState(torch.zeros(2, 6).double(), torch.zeros(2, 4).double())
        >>> params = PairParams(1.0, 1.0, 0.9, 0.8)
        >>> pos, neg, _ = pair_stdp_post_events(pre, post, state, params)
        >>> ref_pos, ref_neg, _ = pair_stdp(pre, post, state, params, dense_correlate)
        >>> torch.allclose(pos, ref_pos), torch.allclose(neg, ref_neg)
        (True, True)
    """
    steps, batch = pre.shape[:2]
    post_rows = post.reshape(steps * batch, -1)
    if (
        scratch
        and params.trace == "all-to-all"
        and params.coincident != "none"
        and pre.is_contiguous()
        and pre[0].numel() > _IN_PLACE_MIN_WIDTH
        and unscan_exact(params.decay_plus, pre.dtype)
    ):
        return _post_events_in_place(
            pre, post, state, params, post_index, binary_post, compute_dtype, sink, sink_rows
        )
    index = spike_index(post_rows) if post_index is None else post_index
    weights = _post_amplitudes(post, index, binary_post)
    return _post_events(
        pre,
        post,
        state,
        params,
        lambda table, shift: event_sum(index, table, shift, weights, compute_dtype),
        _dense_boundary,
        workspace,
        sink,
    )


#: narrower tables (B·N_in per step) are small, and their separate scans are faster
_IN_PLACE_MIN_WIDTH = 4096
_BLOCKS = 8


def _row_blocks(post_values: int, n_out: int, n_in: int) -> int:
    """Groups of output neurons in which results go to a ``sink_rows`` (and the in-place
    kernel lists the post spikes): 8 from 2**20 post values per chunk or 2**16 weights on
    (scratch memory 1/8 of a weight-sized result and of the spike mask), else 1."""
    large = post_values >= 2**20 or n_out * n_in >= 2**16
    return min(_BLOCKS, n_out) if large else 1


def _groups(n: int, blocks: int) -> list[slice]:
    """``blocks`` consecutive slices covering ``range(n)``."""
    return [slice(n * k // blocks, n * (k + 1) // blocks) for k in range(blocks)]


def _post_events_in_place(
    pre, post, state, params, post_index, binary_post, compute_dtype, sink, sink_rows
):
    """:func:`pair_stdp_post_events` with both presynaptic tables scanned into ``pre``:
    the trace (potentiation), the spikes recovered, their future trace (depression);
    results to ``sink_rows`` in groups of output neurons, if given."""
    steps, batch = pre.shape[:2]
    rows = pre.view(steps * batch, -1)
    post_rows = post.reshape(steps * batch, -1)
    blocks = _row_blocks(post_rows.numel(), post.shape[-1], pre.shape[-1])
    if post_index is None and binary_post:  # (rows, offsets), little scratch memory
        index, weights = spike_rows(post_rows, blocks), None
    else:
        index = spike_index(post_rows) if post_index is None else post_index
        weights = _post_amplitudes(post, index, binary_post)
    groups = _groups(post.shape[-1], blocks if sink_rows is not None else 1)
    events, offsets = index[:2]
    owned_index = post_index is None  # (ours: the events' rows may be shifted in place)

    def weight_of(g: slice, a: int, b: int) -> Tensor | None:
        return None if weights is None else weights[a:b]

    # the postsynaptic trace to carry, first: the post spikes are scratch memory after it
    y0 = state.y_post
    decay = params.decay_minus
    y_last = _carry_post_trace(None, post, y0, decay, None, lambda *_: None)
    x = scan_in_place_(pre, state.x_pre, params.decay_plus)
    x_last = x[-1].clone()
    scale_pos = params.a_plus * params.scale
    sums = _group_sums(events, offsets, rows, groups, weight_of, compute_dtype)
    pos = _deliver(sums, "pos", sink_rows, lambda g, part: part.mul_(scale_pos))
    if pos is not None and sink is not None:
        sink(pos)
        pos = None
    unscan_(x, state.x_pre, params.decay_plus, scratch=post)
    shifted, factor, pre_seen = _future_at_post_in_place(
        pre, state.x_pre, decay, params.coincident, events, owned_index
    )
    finish = _depression_finish(factor, y0, pre_seen, params.a_minus * params.scale)
    sums = _group_sums(shifted, offsets, rows, groups, weight_of, compute_dtype)
    neg = _deliver(sums, "neg", sink_rows, finish)
    return pos, neg, PairState(x_last, y_last)


def _group_sums(events, offsets, rows, groups, weight_of, compute_dtype):
    """The event sums (:func:`~plasticity.functional.correlate.event_sum` over ``rows``) of
    each group of output neurons in turn, ``(group, sum)``; ``weight_of(group, a, b)``
    gives the weights of the group's events ``a:b`` (or ``None``)."""
    if len(groups) == 1:
        yield (
            groups[0],
            event_sum(
                (events, offsets), rows, 0, weight_of(groups[0], 0, events.numel()), compute_dtype
            ),
        )
        return
    ends = offsets.tolist() + [events.numel()]
    for g in groups:
        a, b = ends[g.start], ends[g.stop]
        sub = (events[a:b], offsets[g] - a)
        yield g, event_sum(sub, rows, 0, weight_of(g, a, b), compute_dtype)


def _deliver(sums, which: str, sink_rows, finish):
    """Finishes each group's sum in place (``finish(group, sum)``) and hands it to
    ``sink_rows``, or returns the one whole sum (a single group, no ``sink_rows``)."""
    result = None
    for g, part in sums:
        finish(g, part)
        if sink_rows is not None:
            sink_rows(which, part, g)
        else:
            result = part
    return result


def _depression_finish(factor: float, trace0: Tensor, seen: Tensor, scale: float):
    """``finish(group, sum)`` for :func:`_deliver`: a group's depression sum times
    ``factor`` (the one-step decay), plus the pairs of the carried postsynaptic trace
    ``trace0`` (``[B, N_out]``) with this chunk's pre spikes (``seen``: rank B; skipped for a
    fresh zero trace), times ``scale`` (amplitude and batch reduction)."""
    carried = bool(trace0.any())

    def finish(g: slice, part: Tensor) -> None:
        if factor != 1.0:
            part.mul_(factor)
        if carried:
            part.addmm_(trace0[:, g].t(), seen)
        part.mul_(scale)

    return finish


def _future_at_post_in_place(spikes, like, decay: float, coincident: str, events, owned: bool):
    r"""The in-place kernels' depression table: the future trace of ``spikes`` (pre spikes,
    or weighted ones; ``[T, B, N_in]``, overwritten) scanned into them, and how to read it
    at the post events. Returns ``(event rows, factor, seen)``: for ``coincident="both"``
    the events' own rows; else one step later (row ``r + B``), times ``factor`` (the decay),
    where the last step's events (nothing after them) read row 0, zeroed once ``seen`` =
    :math:`\sum_t d^{t+1}` ``spikes[t]`` has it. ``owned``: ``events`` may be modified."""
    steps, batch = spikes.shape[:2]
    future = scan_in_place_(spikes, torch.zeros_like(like), decay, reverse=True)
    seen = future[0] * decay
    if coincident == "both":
        return events, 1.0, seen
    shifted = events.add_(batch) if owned else events + batch
    shifted.masked_fill_(shifted >= steps * batch, 0)
    future.view(steps * batch, -1)[0].zero_()
    return shifted, decay, seen


def _split_geometry(geometry: dict) -> tuple[tuple[int, ...], dict]:
    """``(weight_shape, the conv_correlate keywords)`` of a conv synapse's ``geometry``."""
    conv = {k: v for k, v in geometry.items() if k != "weight_shape"}
    return tuple(geometry["weight_shape"]), conv


def conv_pair_stdp_post_events(
    pre: Tensor,
    post: Tensor,
    state: PairState,
    params: PairParams,
    geometry: dict,
    workspace: dict[str, Tensor] | None = None,
):
    """:func:`pair_stdp_post_events` for a 2-D convolution: both components gathered from
    the presynaptic traces' receptive-field patches at the post spikes
    (:func:`~plasticity.functional.correlate.conv_event_sum`). ``geometry``: the keywords
    of :func:`~plasticity.functional.correlate.conv_correlate` plus ``weight_shape``.

    Example:
        >>> import torch
        >>> from plasticity.functional import conv_correlate
        >>> g = torch.Generator().manual_seed(1)
        >>> pre = (torch.rand(10, 1, 1, 6, 6, generator=g) < 0.3).double()   # [T, B, C_in, H, W]
        >>> post = (torch.rand(10, 1, 2, 6, 6, generator=g) < 0.3).double()  # [T, B, C_out, H, W]
        >>> conv = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
        >>> state = PairState(torch.zeros(1, 1, 6, 6).double(), torch.zeros(1, 2, 6, 6).double())
        >>> params = PairParams(1.0, 1.0, 0.9, 0.8)
        >>> pos, neg, _ = conv_pair_stdp_post_events(
        ...     pre, post, state, params, dict(weight_shape=(2, 1, 3, 3), **conv))
        >>> corr = lambda p, q, *_: conv_correlate(p, q, (2, 1, 3, 3), **conv)
        >>> ref_pos, ref_neg, _ = pair_stdp(pre, post, state, params, corr)
        >>> torch.allclose(pos, ref_pos), torch.allclose(neg, ref_neg)
        (True, True)
    """
    steps, batch = pre.shape[:2]
    post_rows = post.reshape(steps * batch, *post.shape[2:])
    weight_shape, conv = _split_geometry(geometry)
    return _post_events(
        pre,
        post,
        state,
        params,
        lambda table, shift: conv_event_sum(
            post_rows, table, weight_shape, **conv, row_shift=shift
        ),
        lambda neg, y0, seen: neg.add_(conv_correlate(y0, seen, weight_shape, **conv)),
        workspace,
    )


def conv_pair_stdp_post_side(
    pre: Tensor,
    post: Tensor,
    state: PairState,
    params: PairParams,
    geometry: dict,
    workspace: dict[str, Tensor] | None = None,
    compute_dtype: torch.dtype | None = None,
):
    """All-to-all pair STDP on a convolution with both components read at the post spikes,
    in one weight gradient: the presynaptic trace and the future presynaptic trace are
    stacked as two halves of every group's input channels, so that a single
    ``conv{1,2,3}d_weight`` against the post spikes gives ``pos`` and ``neg`` together.

    No postsynaptic trace is scanned over the chunk (for a conv layer it is ``C_out``
    times larger than the presynaptic one). The same numbers as :func:`pair_stdp`;
    ``geometry`` as for :func:`conv_pair_stdp_post_events`. ``compute_dtype`` (e.g.
    ``torch.bfloat16``): the dtype of the stacked tables and of the weight gradient's
    operands (the rounding happens while stacking: no extra pass).

    Example:
        A Conv1d with padding, against :func:`pair_stdp` with two weight gradients:

        >>> import torch
        >>> from plasticity.functional import conv_correlate
        >>> g = torch.Generator().manual_seed(2)
        >>> pre = (torch.rand(20, 2, 2, 9, generator=g) < 0.3).double()   # [T, B, C_in, L]
        >>> post = (torch.rand(20, 2, 3, 9, generator=g) < 0.3).double()  # [T, B, C_out, L]
        >>> conv = dict(stride=(1,), padding=(1,), dilation=(1,), groups=1)
        >>> state = PairState(torch.zeros(2, 2, 9).double(), torch.zeros(2, 3, 9).double())
        >>> params = PairParams(1.0, 1.0, 0.9, 0.8)
        >>> pos, neg, _ = conv_pair_stdp_post_side(
        ...     pre, post, state, params, dict(weight_shape=(3, 2, 3), **conv))
        >>> corr = lambda p, q, *_: conv_correlate(p, q, (3, 2, 3), **conv)
        >>> ref_pos, ref_neg, _ = pair_stdp(pre, post, state, params, corr)
        >>> torch.allclose(pos, ref_pos), torch.allclose(neg, ref_neg)
        (True, True)
    """
    if params.trace != "all-to-all":
        raise ValueError("the post-side kernels need trace='all-to-all'")
    steps, batch, c_in = pre.shape[:3]
    spatial = pre.shape[3:]
    weight_shape, conv = _split_geometry(geometry)
    groups = conv["groups"]
    per_group = c_in // groups
    shape = (steps, batch, groups, 2, per_group, *spatial)
    tables = _scratch(workspace, "tables", shape, pre, compute_dtype)
    grouped = (steps, batch, groups, per_group, *spatial)
    x, x_last = _pre_trace_read(pre, state.x_pre, params.decay_plus, params.coincident, workspace)
    tables[:, :, :, 0].copy_(x.view(grouped))
    future = scan_future_padded(
        pre, params.decay_minus, out=_buffer(workspace, "trace", pre, steps + 1)
    )
    pre_seen = future[0] * params.decay_minus  # sum_t d^(t+1) pre[t]
    if params.coincident == "both":  # pre spikes at or after each post spike
        tables[:, :, :, 1].copy_(future[:steps].view(grouped))
    else:  # strictly after: the inclusive trace one step later, decayed once
        torch.mul(future[1:].view(grouped), params.decay_minus, out=tables[:, :, :, 1])
    both = conv_correlate(
        post,
        tables.view(steps, batch, 2 * c_in, *spatial),
        (weight_shape[0], 2 * weight_shape[1], *weight_shape[2:]),
        **conv,
        compute_dtype=compute_dtype,
    ).to(pre.dtype)
    pos = both[:, : weight_shape[1]].contiguous()
    neg = both[:, weight_shape[1] :].contiguous()
    return _post_side_finish(
        pre,
        post,
        state,
        params,
        pos,
        neg,
        lambda neg, y0, seen: neg.add_(conv_correlate(y0, seen, weight_shape, **conv)),
        x_last,
        pre_seen,
    )


def triplet_stdp(
    pre: Tensor,
    post: Tensor,
    state: TripletState,
    params: TripletParams,
    correlate: Correlate,
    workspace: dict[str, Tensor] | None = None,
    sink: Callable[[Tensor], None] | None = None,
    sink_rows: Callable[[str, Tensor, slice], None] | None = None,
):
    """Triplet STDP over one chunk. Returns ``(pos, neg, new_state)``. ``workspace``: a
    dict kept between chunks, whose buffers the four traces are scanned into. ``sink``
    and ``sink_rows``: as for :func:`pair_stdp`.

    Example:
        A pre spike at step 0, post spikes at steps 2 and 3 (all decays 0.5): the first post
        spike pairs by A2+ alone, the second also by A3+ times the slow detector o2 of the
        first (0.5), each with the pre trace r1 (0.25, then 0.125):

        >>> import torch
        >>> from plasticity.functional import dense_correlate
        >>> pre = torch.tensor([1.0, 0, 0, 0]).view(4, 1, 1)
        >>> post = torch.tensor([0, 0, 1.0, 1.0]).view(4, 1, 1)
        >>> zero = torch.zeros(1, 1)
        >>> params = TripletParams(1.0, 2.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5)
        >>> pos, neg, _ = triplet_stdp(pre, post, TripletState(zero, zero, zero, zero), params,
        ...                            dense_correlate)
        >>> float(pos), float(neg)  # 0.25 * 1 + 0.125 * (1 + 2 * 0.5)
        (0.5, 0.0)
    """
    mode, coincident = params.trace, params.coincident
    steps = pre.shape[0]
    r1 = scan_trace(pre, state.r1, params.decay_plus, mode, _buffer(workspace, "r1", pre, steps))
    r2 = scan_trace(pre, state.r2, params.decay_x, mode, _buffer(workspace, "r2", pre, steps))
    o1 = scan_trace(post, state.o1, params.decay_minus, mode, _buffer(workspace, "o1", post, steps))
    o2 = scan_trace(post, state.o2, params.decay_y, mode, _buffer(workspace, "o2", post, steps))
    new_state = TripletState(r1[-1].clone(), r2[-1].clone(), o1[-1].clone(), o2[-1].clone())
    r1_used = _used(r1, pre, state.r1, params.decay_plus, coincident in ("ltp", "both"), mode)
    o1_used = _used(o1, post, state.o1, params.decay_minus, coincident == "both", mode)
    # the slow detectors are read just before the current spike (t - ε)
    o2_before = previous_trace(o2, state.o2, params.decay_y)
    r2_before = previous_trace(r2, state.r2, params.decay_x)
    # the weighted spikes, in place over the (fresh) detector reads
    post_w = o2_before.mul_(params.a3_plus).add_(params.a2_plus).mul_(post)
    pre_w = r2_before.mul_(params.a3_minus).add_(params.a2_minus).mul_(pre)
    pos, neg = _two_products(
        correlate,
        True,
        (post_w, r1_used, "post", params.scale),
        (o1_used, pre_w, "pre", params.scale),
        sink,
        sink_rows if pre.ndim == 3 else None,  # dense synapses: output neurons last
    )
    return pos, neg, new_state


def triplet_stdp_post_events(
    pre: Tensor,
    post: Tensor,
    state: TripletState,
    params: TripletParams,
    post_index: tuple[Tensor, Tensor, Tensor] | None = None,
    workspace: dict[str, Tensor] | None = None,
    sink: Callable[[Tensor], None] | None = None,
    compute_dtype: torch.dtype | None = None,
    binary_post: bool | None = None,
    scratch: bool = False,
    sink_rows: Callable[[str, Tensor, slice], None] | None = None,
):
    r"""All-to-all triplet STDP on a dense synapse with both components read at the post spikes.

    Potentiation reads :math:`r_1` at each post spike, weighted by
    :math:`A_2^+ + A_3^+ o_2(t - \epsilon)`. Depression, a sum over pre spikes of
    :math:`o_1` times :math:`A_2^- + A_3^- r_2(t - \epsilon)`, is read the other way round:
    the *future* trace (decay :math:`\tau_-`) of those weighted pre spikes at each post
    spike, plus the pairs with post spikes of earlier chunks (a rank-B term from the
    carried :math:`o_1`). The same numbers as :func:`triplet_stdp`, with one event index
    (the post spikes) instead of one per side: no index over the (usually wider, busier)
    presynaptic spikes, no :math:`o_1` trace over the chunk. ``sink``: as for
    :func:`pair_stdp_post_events`; ``compute_dtype``: the dtype the tables are gathered in;
    ``binary_post``, ``scratch`` and ``sink_rows``: as for :func:`pair_stdp_post_events`
    (with ``scratch``, :math:`o_2` is scanned into ``post`` and :math:`r_1`, :math:`r_2` and
    the weighted pre spikes' future trace into ``pre``, for ``coincident`` "ltp" or "both").

    Example:
        >>> import torch
        >>> from plasticity.functional import dense_correlate
        >>> g = torch.Generator().manual_seed(0)
        >>> pre = (torch.rand(30, 2, 6, generator=g) < 0.3).double()
        >>> post = (torch.rand(30, 2, 4, generator=g) < 0.3).double()
        >>> state = TripletState(*(torch.rand(2, n, generator=g).double() for n in (6, 6, 4, 4)))
        >>> params = TripletParams(0.5, 1.0, 0.7, 0.2, 0.9, 0.8, 0.95, 0.85)
        >>> pos, neg, new = triplet_stdp_post_events(pre, post, state, params)
        >>> ref_pos, ref_neg, ref_new = triplet_stdp(pre, post, state, params, dense_correlate)
        >>> torch.allclose(pos, ref_pos), torch.allclose(neg, ref_neg)
        (True, True)
        >>> all(torch.allclose(a, b) for a, b in zip(new, ref_new))
        True
    """
    if params.trace != "all-to-all":
        raise ValueError("the post-events kernels need trace='all-to-all'")
    steps, batch = pre.shape[:2]
    n_out = post.shape[-1]
    post_rows = post.reshape(steps * batch, -1)
    if (
        scratch
        and params.coincident != "none"
        and pre.is_contiguous()
        and post.is_contiguous()
        and pre[0].numel() > _IN_PLACE_MIN_WIDTH
        and unscan_exact(params.decay_plus, pre.dtype)  # r1, then the pre spikes from r2
        and unscan_exact(params.decay_x, pre.dtype)
        and unscan_exact(params.decay_y, post.dtype)  # the post spikes from o2
    ):
        binary = bool(binary_post)
        if post_index is not None:
            index = post_index
        elif binary:  # (rows, offsets) with little scratch memory, instead of the whole index
            index = spike_rows(post_rows, _row_blocks(post.numel(), n_out, pre.shape[-1]))
        else:
            index = spike_index(post_rows)
        return _triplet_in_place(
            pre, post, state, params, index, sink, sink_rows, compute_dtype, binary
        )
    index = spike_index(post_rows) if post_index is None else post_index
    amplitudes = _post_amplitudes(post, index, binary_post)  # graded post spikes weigh events
    # one buffer (pre-sized, one step longer) holds o2 (when it fits), then r1, then r2
    # turned into the weighted pre spikes, then their future trace
    table = _buffer(workspace, "trace", pre, steps + 1)
    fits = table.numel() >= post.numel()
    o2_out = table.view(-1)[: post.numel()] if fits else _buffer(workspace, "o2", post, steps)
    o2 = scan_trace(post, state.o2, params.decay_y, out=o2_out)
    o2_last = o2[-1].clone()
    # potentiation weighs each post spike by A2+ + A3+ o2 just before it (times its amplitude)
    weights = _before_at_events(o2, state.o2, index, batch)
    weights.mul_(params.a3_plus * params.decay_y).add_(params.a2_plus)
    if amplitudes is not None:
        weights.mul_(amplitudes)
    del o2
    r1, r1_last = _pre_trace_read(pre, state.r1, params.decay_plus, params.coincident, workspace)
    pos = event_sum(
        index, r1.reshape(steps * batch, -1), weights=weights, compute_dtype=compute_dtype
    ).mul_(params.scale)
    del r1, weights
    if sink is not None:
        sink(pos)
        pos = None
    # depression: the pre spikes weighted by A2- + A3- r2 just before each (in place over r2),
    # their future trace read at the post spikes
    r2 = scan_trace(pre, state.r2, params.decay_x, out=table[:steps])
    r2_last = r2[-1].clone()
    _weigh_by_previous_(r2, state.r2, params.decay_x, params.a2_minus, params.a3_minus, None, pre)

    def gather(rows, shift):
        return event_sum(index, rows, shift, amplitudes, compute_dtype)

    if pre[0].numel() > _IN_PLACE_MIN_WIDTH:  # wide: the future trace in place (strided blocks)
        table[steps].zero_()
        scan_in_place_(table[:steps], torch.zeros_like(state.r2), params.decay_minus, reverse=True)
        seen = table[0] * params.decay_minus
        rows = table.reshape((steps + 1) * batch, -1)
        neg = (
            gather(rows, 0)
            if params.coincident == "both"
            else gather(rows, batch).mul_(params.decay_minus)
        )
    else:  # narrow (small tables): the future trace in a buffer of its own (matrix-product scans)
        weighted = r2
        neg, seen = _future_at_post(
            weighted, params.decay_minus, params.coincident, gather, workspace, pre, "future"
        )
    o1_last = _carry_post_trace(neg, post, state.o1, params.decay_minus, seen, _dense_boundary)
    neg.mul_(params.scale)
    return pos, neg, TripletState(r1_last, r2_last, o1_last, o2_last)


def _before_at_events(trace: Tensor, trace0: Tensor, index, batch: int) -> Tensor:
    """The post trace one step before each event of a
    :func:`~plasticity.functional.correlate.spike_index` (``trace0`` for the chunk's first
    step): ``trace[t - 1, b, n]`` at the event ``(t·B + b, n)``."""
    n_out = trace.shape[-1]
    at = index[0].long() * n_out + index[2].long()
    first = index[0] < batch
    return torch.where(
        first,
        trace0.reshape(-1).index_select(0, at.clamp(max=batch * n_out - 1)),
        trace.reshape(-1).index_select(0, (at - batch * n_out).clamp_(min=0)),
    )


def _triplet_in_place(pre, post, state, params, index, sink, sink_rows, compute_dtype, binary):
    """:func:`triplet_stdp_post_events` with every table scanned into ``pre`` or ``post``.
    ``index``: ``(rows, offsets)`` for binary post spikes (``binary``), else a whole
    :func:`~plasticity.functional.correlate.spike_index`."""
    steps, batch = pre.shape[:2]
    n_out, n_in = post.shape[-1], pre.shape[-1]
    rows = pre.view(steps * batch, n_in)
    events, offsets = index[:2]
    groups = _groups(n_out, _row_blocks(0, n_out, n_in) if sink_rows is not None else 1)
    o1_0 = state.o1
    o1_last = _carry_post_trace(None, post, o1_0, params.decay_minus, None, lambda *_: None)
    # potentiation weighs each post spike by A2+ + A3+ o2 just before it: o2 is scanned into
    # the post spikes, then (binary spikes) turned into the weighted spikes in place
    amplitudes = None if binary else _post_amplitudes(post, index, False)
    o2 = scan_in_place_(post, state.o2, params.decay_y)
    o2_last = o2[-1].clone()
    if binary:
        _weigh_by_previous_(o2, state.o2, params.decay_y, params.a2_plus, params.a3_plus, None)
        table = o2.reshape(-1)

        def pos_weights(g: slice, a: int, b: int) -> Tensor:  # the weighted spikes, per event
            counts = torch.diff(offsets[g], append=offsets.new_tensor([b])).cpu()
            neurons = torch.repeat_interleave(torch.arange(g.start, g.stop), counts)
            return table.index_select(0, events[a:b].long() * n_out + neurons.to(events.device))

    else:  # graded: the trace one step back at each event (the carry at step 0)
        weights = _before_at_events(o2, state.o2, index, batch)
        weights.mul_(params.a3_plus * params.decay_y).add_(params.a2_plus).mul_(amplitudes)

        def pos_weights(g: slice, a: int, b: int) -> Tensor:
            return weights[a:b]

    r1 = scan_in_place_(pre, state.r1, params.decay_plus)
    r1_last = r1[-1].clone()
    sums = _group_sums(events, offsets, rows, groups, pos_weights, compute_dtype)
    pos = _deliver(sums, "pos", sink_rows, lambda g, part: part.mul_(params.scale))
    pos_weights = None  # (frees the graded weights; post is scratch memory from here on)
    if pos is not None and sink is not None:
        sink(pos)
        pos = None
    unscan_(r1, state.r1, params.decay_plus, scratch=post)
    # depression: the pre spikes weighted by A2- + A3- r2 before each, then their future trace
    r2 = scan_in_place_(pre, state.r2, params.decay_x)
    r2_last = r2[-1].clone()
    _weigh_by_previous_(r2, state.r2, params.decay_x, params.a2_minus, params.a3_minus, post)
    shifted, factor, seen = _future_at_post_in_place(
        pre, state.r2, params.decay_minus, params.coincident, events, False
    )

    def neg_weights(g: slice, a: int, b: int) -> Tensor | None:  # graded post: amplitudes
        return None if amplitudes is None else amplitudes[a:b]

    finish = _depression_finish(factor, o1_0, seen, params.scale)
    sums = _group_sums(shifted, offsets, rows, groups, neg_weights, compute_dtype)
    neg = _deliver(sums, "neg", sink_rows, finish)
    return pos, neg, TripletState(r1_last, r2_last, o1_last, o2_last)


@torch.no_grad()
def _weigh_by_previous_(traces, trace0, decay, a2, a3, scratch, spikes=None):
    """Turns a trace of binary spikes, in place, into the spikes weighted by
    ``a2 + a3·(the trace just before each)``: ``s_t (a2 + a3 d x_{t-1})`` (``x[-1]`` is
    ``trace0``), with ``s_t = round(x_t - d x_{t-1})`` recovered from the trace, or the
    given ``spikes`` (then any values). From the last step back, as many steps at a time
    as ``scratch`` holds (``None``, or too small: ``sqrt(T)`` steps at a time with given
    spikes, else one, in a temporary)."""
    steps = traces.shape[0]
    given = None if spikes is None else spikes.reshape(steps, -1)
    length = math.isqrt(steps) if given is not None else 1
    stop = steps
    for block, before in previous_in_blocks(traces, trace0, decay, length, scratch):
        if given is None:
            block.sub_(before).round_()  # s_t
            block.mul_(before.mul_(a3).add_(a2))  # (a2 + a3 d x_{t-1}) s_t
        else:
            torch.mul(given[stop - block.shape[0] : stop], before.mul_(a3).add_(a2), out=block)
        stop -= block.shape[0]
    return traces
