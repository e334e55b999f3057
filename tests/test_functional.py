"""The pure kernels against explicit loops: trace scans, event sums, correlations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from plasticity.functional import (
    dense_correlate,
    event_sum,
    scan_future,
    scan_future_padded,
    scan_trace,
    spike_index,
)


def loop_trace(s, x0, d, mode):
    out, x = [], x0.clone()
    for t in range(s.shape[0]):
        x = torch.where(s[t] != 0, s[t], x * d) if mode == "nearest" else x * d + s[t]
        out.append(x.clone())
    return torch.stack(out)


def loop_future(s, d, include_current):
    T = s.shape[0]
    out = torch.zeros_like(s)
    for t in range(T):
        for u in range(t if include_current else t + 1, T):
            out[t] += d ** (u - t) * s[u]
    return out


@pytest.mark.parametrize("mode", ["all-to-all", "nearest"])
@pytest.mark.parametrize(
    "steps, width", [(3, 2), (5, 3), (16, 4), (40, 7), (70, 5000), (33, 1), (64, 4096), (20, 9000)]
)
def test_scan_trace_equals_loop_on_every_code_path(mode, steps, width):
    g = torch.Generator().manual_seed(steps + width)
    s = (torch.rand(steps, width, generator=g, dtype=torch.float64) < 0.3).double()
    x0 = torch.rand(width, generator=g, dtype=torch.float64)
    d = math.exp(-1 / 7)
    torch.testing.assert_close(
        scan_trace(s, x0, d, mode), loop_trace(s, x0, d, mode), rtol=1e-12, atol=1e-12
    )
    out = torch.empty(steps * width, dtype=torch.float64)  # a reused buffer gives the same
    torch.testing.assert_close(
        scan_trace(s, x0, d, mode, out=out), loop_trace(s, x0, d, mode), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("include_current", [False, True])
@pytest.mark.parametrize("steps, width", [(2, 2), (6, 2), (16, 3), (40, 3), (50, 5000), (20, 9000)])
def test_scan_future_equals_loop(include_current, steps, width):
    g = torch.Generator().manual_seed(steps)
    s = (torch.rand(steps, width, generator=g, dtype=torch.float64) < 0.3).double()
    d = 0.8
    torch.testing.assert_close(
        scan_future(s, d, include_current),
        loop_future(s, d, include_current),
        rtol=1e-12,
        atol=1e-12,
    )
    padded = scan_future_padded(s, d)
    assert padded.shape[0] == steps + 1 and torch.all(padded[-1] == 0)


@given(
    steps=st.integers(1, 90),
    width=st.integers(1, 4),
    decay=st.sampled_from([0.0, 1e-30, 0.3, 0.95, 1.0]),
    seed=st.integers(0, 2**16),
    strided=st.booleans(),
)
def test_blocked_scans_equal_the_recursion_for_any_length_and_decay(
    steps, width, decay, seed, strided
):
    """Both block forms (small matrix products; strided elementwise blocks, which wide
    traces take) against the plain recursion."""
    import plasticity.functional.traces as traces

    limit = traces._BLOCKED_MAX_WIDTH
    traces._BLOCKED_MAX_WIDTH = 0 if strided else limit
    try:
        _check_scans_against_recursion(steps, width, decay, seed)
    finally:
        traces._BLOCKED_MAX_WIDTH = limit


def _check_scans_against_recursion(steps, width, decay, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(steps, width, generator=g, dtype=torch.float64)  # graded values too
    x0 = torch.rand(width, generator=g, dtype=torch.float64)
    forward = torch.empty_like(s)
    prev = x0
    for t in range(steps):
        forward[t] = s[t] + decay * prev
        prev = forward[t]
    torch.testing.assert_close(scan_trace(s, x0, decay), forward, rtol=1e-12, atol=1e-12)
    backward = torch.zeros(steps + 1, width, dtype=torch.float64)
    for t in range(steps - 1, -1, -1):
        backward[t] = s[t] + decay * backward[t + 1]
    torch.testing.assert_close(scan_future_padded(s, decay), backward, rtol=1e-12, atol=1e-12)


@given(
    rows=st.integers(1, 30),
    neurons=st.integers(1, 6),
    width=st.integers(1, 5),
    shift=st.integers(0, 3),
    seed=st.integers(0, 10_000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_event_sum_equals_loop(rows, neurons, width, shift, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(rows, neurons, generator=g) < 0.3).to(dtype)
    table = torch.rand(rows + shift, width, generator=g).to(dtype)
    weights = torch.rand(rows, neurons, generator=g).to(dtype) * spikes
    index = spike_index(spikes)
    expected = torch.zeros(neurons, width, dtype=dtype)
    weighted = torch.zeros(neurons, width, dtype=dtype)
    for r in range(rows):
        for n in range(neurons):
            if spikes[r, n]:
                expected[n] += table[r + shift]
                weighted[n] += weights[r, n] * table[r + shift]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(event_sum(index, table, shift), expected, rtol=tol, atol=tol)
    w = weights[index[0], index[2]]
    torch.testing.assert_close(event_sum(index, table, shift, w), weighted, rtol=tol, atol=tol)


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
@pytest.mark.parametrize("side", ["post", "pre"])
def test_dense_correlate_kernels_equal_the_outer_product_sum(kernel, side):
    g = torch.Generator().manual_seed(1)
    post = (torch.rand(9, 3, 5, generator=g) < 0.3).double()
    pre = (torch.rand(9, 3, 7, generator=g) < 0.3).double()
    dense_post, dense_pre = (
        torch.rand(9, 3, 5, generator=g, dtype=torch.float64),
        torch.rand(9, 3, 7, generator=g, dtype=torch.float64),
    )
    a, b = (post, dense_pre) if side == "post" else (dense_post, pre)
    expected = sum(a[t, k][:, None] * b[t, k][None, :] for t in range(9) for k in range(3))
    torch.testing.assert_close(
        dense_correlate(a, b, side, kernel=kernel), expected, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
def test_post_events_sink_takes_potentiation_before_depression(coincident):
    """With a ``sink`` the kernel hands over the finished potentiation before it computes
    depression (so the two are never alive at once): the same numbers as the pair sums."""
    from reference import dense_reference

    from plasticity.functional import PairParams, PairState, pair_stdp_post_events

    g = torch.Generator().manual_seed(3)
    pre = (torch.rand(25, 2, 5, generator=g) < 0.3).double()
    post = (torch.rand(25, 2, 3, generator=g) < 0.3).double()
    d = math.exp(-1 / 4)
    params = PairParams(1.0, 1.0, d, d, coincident=coincident, scale=0.5)
    state = PairState(torch.zeros(2, 5).double(), torch.zeros(2, 3).double())
    received = []

    def sink(pos):
        assert not received  # potentiation arrives once, before depression exists
        received.append(pos.clone())

    pos, neg, _ = pair_stdp_post_events(pre, post, state, params, sink=sink)
    ref_pos, ref_neg = dense_reference(
        pre, post, dict(a_plus=1.0, a_minus=1.0, tau_plus=4.0, tau_minus=4.0), coincident=coincident
    )
    assert pos is None and len(received) == 1
    torch.testing.assert_close(received[0], ref_pos, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(neg, ref_neg, rtol=1e-9, atol=1e-12)


@given(
    steps=st.integers(1, 60),
    width=st.integers(1, 40),
    tau=st.sampled_from([0.5, 3.0, 20.0, 200.0, 2000.0]),
    rate=st.sampled_from([0.05, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_in_place_scans_and_their_inverse(steps, width, tau, rate, seed, dtype):
    """The in-place forward and future scans equal the out-of-place ones; unscan_ recovers
    the binary spikes exactly from the forward trace (float32 and float64, every decay
    unscan_exact accepts, spikes every step included)."""
    from plasticity.functional.traces import scan_in_place_, unscan_, unscan_exact

    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(steps, width, generator=g) < rate).to(dtype)
    x0 = torch.rand(width, generator=g).to(dtype) * tau
    d = math.exp(-1 / tau)
    assert unscan_exact(d, dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
    x = s.clone()
    assert scan_in_place_(x, x0, d) is x
    torch.testing.assert_close(x, scan_trace(s, x0, d), **tol)
    y = x.clone()
    assert torch.equal(unscan_(x, x0, d), s)
    # with scratch memory for any number of steps at a time (here 0 to all of them)
    scratch = torch.empty(int(torch.randint(0, steps * width + 1, (1,), generator=g)), dtype=dtype)
    assert torch.equal(unscan_(y, x0, d, scratch=scratch), s)
    future = scan_in_place_(s.clone(), torch.zeros(width, dtype=dtype), d, reverse=True)
    torch.testing.assert_close(future, scan_future_padded(s, d)[:-1], **tol)


def test_unscan_exact_refuses_what_it_cannot_recover():
    from plasticity.functional.traces import unscan_exact

    assert unscan_exact(math.exp(-1 / 1000), torch.float32)
    assert not unscan_exact(math.exp(-1 / 10_000), torch.float32)  # traces up to 10^4
    assert unscan_exact(math.exp(-1 / 10_000), torch.float64)
    assert not unscan_exact(0.5, torch.float16) and not unscan_exact(0.5, torch.bfloat16)
    assert not unscan_exact(1.0, torch.float64)  # no decay: traces grow without bound


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("steps", [1, 2, 5, 30])
@pytest.mark.parametrize("graded_post", [False, True])
def test_post_events_on_scratch_spikes_equal_one_gemm_per_component(
    coincident, dtype, steps, graded_post
):
    """``scratch=True`` scans both presynaptic tables into ``pre`` itself (wide enough
    for the in-place form): the same pos, neg and carried traces as :func:`pair_stdp`
    (trace tables and one GEMM per component, itself checked against the pair sums), with
    carried traces on both sides; a caller's index is left as it was."""
    from plasticity.functional import PairParams, PairState, pair_stdp, pair_stdp_post_events

    g = torch.Generator().manual_seed(steps)
    batch, n_in, n_out = 2, 2100, 3  # 4200 presynaptic values per step: in place
    pre = (torch.rand(steps, batch, n_in, generator=g) < 0.2).to(dtype)
    post = (torch.rand(steps, batch, n_out, generator=g) < 0.3).to(dtype)
    if graded_post:
        post = post * torch.rand(steps, batch, n_out, generator=g).to(dtype)
    state = PairState(torch.rand(batch, n_in, generator=g).to(dtype) * 3,
                      torch.rand(batch, n_out, generator=g).to(dtype) * 3)  # fmt: skip
    params = PairParams(1.0, 0.5, math.exp(-1 / 4), math.exp(-1 / 6), coincident=coincident)
    ref_pos, ref_neg, ref_carry = pair_stdp(pre, post, state, params, dense_correlate)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    index = spike_index(post.reshape(steps * batch, n_out))
    saved = [t.clone() for t in index]
    for owned in (False, True):
        scratch = pre.clone()
        pos, neg, carry = pair_stdp_post_events(
            scratch, post.clone(), state, params, post_index=None if owned else index,
            binary_post=not graded_post, scratch=True,
        )  # fmt: skip
        torch.testing.assert_close(pos, ref_pos, **tol)
        torch.testing.assert_close(neg, ref_neg, **tol)
        torch.testing.assert_close(carry.x_pre, ref_carry.x_pre, **tol)
        torch.testing.assert_close(carry.y_post, ref_carry.y_post, **tol)
        # the tables went into pre (except for coincident="none", which allocates them;
        # the future trace of a single step is its spikes)
        if steps > 1:
            assert torch.equal(scratch, pre) == (coincident == "none")
    assert all(torch.equal(a, b) for a, b in zip(index, saved, strict=True))


@pytest.mark.parametrize("coincident", ["ltp", "both"])
@pytest.mark.parametrize("carried", [False, True])
def test_post_events_deliver_rows_block_by_block(monkeypatch, coincident, carried):
    """With ``sink_rows`` the in-place kernel hands over pos and neg in groups of output
    neurons, in order, each group once (finished values): assembled, the same as
    :func:`pair_stdp`; nothing weight-sized is returned."""
    import plasticity.functional.stdp as fstdp
    from plasticity.functional import PairParams, PairState, pair_stdp, pair_stdp_post_events

    monkeypatch.setattr(fstdp, "_row_blocks", lambda *_: 3)  # 3 groups of 7 neurons: 2, 2, 3
    g = torch.Generator().manual_seed(9)
    pre = (torch.rand(12, 3, 1500, generator=g) < 0.1).double()
    post = (torch.rand(12, 3, 7, generator=g) < 0.3).double()
    state = PairState(torch.rand(3, 1500, generator=g).double() * carried,
                      torch.rand(3, 7, generator=g).double() * carried)  # fmt: skip
    params = PairParams(0.8, 0.6, math.exp(-1 / 4), math.exp(-1 / 6), coincident=coincident,
                        scale=1 / 3)  # fmt: skip
    ref_pos, ref_neg, ref_carry = pair_stdp(pre, post, state, params, dense_correlate)
    got = {"pos": [], "neg": []}
    pos, neg, carry = pair_stdp_post_events(
        pre.clone(), post, state, params, binary_post=True, scratch=True,
        sink_rows=lambda which, value, rows: got[which].append((rows, value.clone())),
    )  # fmt: skip
    assert pos is None and neg is None
    for which, ref in (("pos", ref_pos), ("neg", ref_neg)):
        slices = [rows for rows, _ in got[which]]
        assert [(s.start, s.stop) for s in slices] == [(0, 2), (2, 4), (4, 7)]
        assembled = torch.cat([value for _, value in got[which]])
        torch.testing.assert_close(assembled, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(carry.y_post, ref_carry.y_post, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(carry.x_pre, ref_carry.x_pre, rtol=1e-12, atol=1e-12)


@given(rows=st.integers(1, 50), neurons=st.integers(1, 9), blocks=st.integers(1, 12),
       rate=st.sampled_from([0.0, 0.2, 1.0]), seed=st.integers(0, 10_000))  # fmt: skip
def test_spike_rows_equal_spike_index_for_any_grouping(rows, neurons, blocks, rate, seed):
    from plasticity.functional import spike_rows

    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(rows, neurons, generator=g) < rate).float()
    got, want = spike_rows(s, blocks), spike_index(s)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("trace", ["all-to-all", "nearest"])
@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("steps", [1, 2, 17])
@pytest.mark.parametrize("blocks", [1, 3])
def test_pair_stdp_on_scratch_spikes_equals_the_trace_tables(
    monkeypatch, trace, coincident, steps, blocks
):
    """``pair_stdp(scratch=True)`` scans both traces into the spike tensors and reads
    the step before by slicing: the same pos, neg and carried traces as with the trace
    tables (float64 and float32, carried traces on both sides, whole or in groups)."""
    import plasticity.functional.stdp as fstdp
    from plasticity.functional import PairParams, PairState, pair_stdp

    monkeypatch.setattr(fstdp, "_row_blocks", lambda *_: blocks)
    monkeypatch.setattr(fstdp, "_IN_PLACE_MIN_WIDTH", 0)  # (small tables: in place anyway)
    g = torch.Generator().manual_seed(steps)
    for dtype in (torch.float64, torch.float32):
        pre = (torch.rand(steps, 3, 50, generator=g) < 0.2).to(dtype)
        post = (torch.rand(steps, 3, 7, generator=g) < 0.3).to(dtype)
        state = PairState(torch.rand(3, 50, generator=g).to(dtype),
                          torch.rand(3, 7, generator=g).to(dtype))  # fmt: skip
        params = PairParams(0.8, 0.6, 0.9, 0.7, trace=trace, coincident=coincident, scale=0.5)
        ref = pair_stdp(pre, post, state, params, dense_correlate)
        rows = {"pos": torch.zeros(7, 50, dtype=dtype), "neg": torch.zeros(7, 50, dtype=dtype)}

        def sink_rows(which, value, g_rows, rows=rows):
            rows[which][g_rows] += value

        got = pair_stdp(pre.clone(), post.clone(), state, params, dense_correlate,
                        sink_rows=sink_rows, scratch=True)  # fmt: skip
        pos, neg = (rows["pos"], rows["neg"]) if blocks > 1 else got[:2]
        tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pos, ref[0], **tol)
        torch.testing.assert_close(neg, ref[1], **tol)
        torch.testing.assert_close(got[2].x_pre, ref[2].x_pre, **tol)
        torch.testing.assert_close(got[2].y_post, ref[2].y_post, **tol)


def test_post_events_use_the_post_spikes_as_scratch_once_listed():
    """With ``scratch=True`` and a post chunk larger than a few presynaptic steps, the
    recovery of the pre spikes runs in the post spikes' memory (the carried postsynaptic
    trace is taken before): still the same numbers as :func:`pair_stdp`."""
    from plasticity.functional import PairParams, PairState, pair_stdp, pair_stdp_post_events

    g = torch.Generator().manual_seed(4)
    pre = (torch.rand(12, 4, 1100, generator=g) < 0.1).double()
    post = (torch.rand(12, 4, 3000, generator=g) < 0.05).double()
    state = PairState(torch.rand(4, 1100, generator=g).double(),
                      torch.rand(4, 3000, generator=g).double())  # fmt: skip
    params = PairParams(0.8, 0.6, math.exp(-1 / 4), math.exp(-1 / 6), scale=0.25)
    ref = pair_stdp(pre, post, state, params, dense_correlate)
    scratch_post = post.clone()
    got = pair_stdp_post_events(pre.clone(), scratch_post, state, params, binary_post=True,
                                scratch=True)  # fmt: skip
    assert not torch.equal(scratch_post, post)  # it served as scratch memory
    for a, b in zip((*got[:2], *got[2]), (*ref[:2], *ref[2]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("coincident", ["ltp", "both"])
@pytest.mark.parametrize("steps", [1, 2, 17])
@pytest.mark.parametrize("blocks", [1, 3])
@pytest.mark.parametrize("graded_post", [False, True])
def test_triplet_post_events_on_scratch_spikes_equal_the_trace_tables(
    monkeypatch, coincident, steps, blocks, graded_post
):
    """``triplet_stdp_post_events(scratch=True)`` scans r1, r2 (turned into the weighted
    pre spikes) and their future trace into ``pre`` and o2 (turned into the weighted post
    spikes) into ``post``: the same pos, neg and carried traces as :func:`triplet_stdp`
    with its four trace tables (float64 and float32, carried traces, whole or in groups)."""
    import plasticity.functional.stdp as fstdp
    from plasticity.functional import TripletParams, TripletState, triplet_stdp
    from plasticity.functional import triplet_stdp_post_events as events

    monkeypatch.setattr(fstdp, "_row_blocks", lambda *_: blocks)
    monkeypatch.setattr(fstdp, "_IN_PLACE_MIN_WIDTH", 0)  # (small tables: in place anyway)
    g = torch.Generator().manual_seed(steps + 10 * blocks)
    for dtype in (torch.float64, torch.float32):
        pre = (torch.rand(steps, 3, 40, generator=g) < 0.3).to(dtype)
        post = (torch.rand(steps, 3, 7, generator=g) < 0.3).to(dtype)
        if graded_post:
            post = post * torch.rand(steps, 3, 7, generator=g).to(dtype)
        state = TripletState(*(torch.rand(3, n, generator=g).to(dtype) for n in (40, 40, 7, 7)))
        params = TripletParams(0.5, 1.0, 0.7, 0.2, 0.9, 0.8, 0.95, 0.85, coincident=coincident,
                               scale=0.5)  # fmt: skip
        ref = triplet_stdp(pre, post, state, params, dense_correlate)
        rows = {"pos": torch.zeros(7, 40, dtype=dtype), "neg": torch.zeros(7, 40, dtype=dtype)}

        def sink_rows(which, value, g_rows, rows=rows):
            rows[which][g_rows] += value

        got = events(pre.clone(), post.clone(), state, params, binary_post=not graded_post,
                     scratch=True, sink_rows=sink_rows if blocks > 1 else None)  # fmt: skip
        pos, neg = (rows["pos"], rows["neg"]) if blocks > 1 else got[:2]
        tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pos, ref[0], **tol)
        torch.testing.assert_close(neg, ref[1], **tol)
        for a, b in zip(got[2], ref[2], strict=True):
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("width", [300, 1500])
@pytest.mark.parametrize("graded_post", [False, True])
def test_triplet_post_events_reuse_one_table_and_leave_the_inputs(coincident, width, graded_post):
    """On the caller's spikes, triplet STDP read at the post spikes keeps one pre-sized
    table for o2, r1, the weighted pre spikes and (wide layers: 3 x 1500 > 4096 values per
    step) their future trace in place: the same numbers as :func:`triplet_stdp`, and the
    inputs unchanged."""
    from plasticity.functional import TripletParams, TripletState, triplet_stdp
    from plasticity.functional import triplet_stdp_post_events as events

    g = torch.Generator().manual_seed(width)
    pre = (torch.rand(20, 3, width, generator=g) < 0.1).double()
    post = (torch.rand(20, 3, 6, generator=g) < 0.3).double()
    if graded_post:
        post = post * torch.rand(20, 3, 6, generator=g, dtype=torch.float64)
    state = TripletState(*(torch.rand(3, n, generator=g).double() for n in (width, width, 6, 6)))
    params = TripletParams(0.5, 1.0, 0.7, 0.2, 0.9, 0.8, 0.95, 0.85, coincident=coincident)
    ref = triplet_stdp(pre, post, state, params, dense_correlate)
    pre_before, post_before = pre.clone(), post.clone()
    workspace = {}
    for _ in range(2):  # a second chunk reuses the workspace's table
        got = events(pre, post, state, params, workspace=workspace)
        for a, b in zip((*got[:2], *got[2]), (*ref[:2], *ref[2]), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(pre, pre_before) and torch.equal(post, post_before)


def test_nearest_traces_stay_in_tables_where_the_decay_rounds_to_one(monkeypatch):
    """A nearest-spike trace marks its spikes by being exactly 1 only while the decay is
    below 1 in the trace's dtype; a decay that rounds to 1 (float32, tau ~ 1e9 steps)
    keeps the tables: still the numbers of :func:`pair_stdp`."""
    import plasticity.functional.stdp as fstdp
    from plasticity.functional import PairParams, PairState, pair_stdp

    monkeypatch.setattr(fstdp, "_IN_PLACE_MIN_WIDTH", 0)
    g = torch.Generator().manual_seed(5)
    pre = (torch.rand(30, 2, 50, generator=g) < 0.2).float()
    post = (torch.rand(30, 2, 7, generator=g) < 0.3).float()
    state = PairState(torch.zeros(2, 50), torch.zeros(2, 7))
    params = PairParams(1.0, 1.0, 1 - 1e-9, 0.9, trace="nearest")
    ref = pair_stdp(pre, post, state, params, dense_correlate)
    got = pair_stdp(pre.clone(), post.clone(), state, params, dense_correlate, scratch=True)
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])


def test_triplet_tables_stay_allocated_where_a_slow_detector_is_too_slow_to_invert(monkeypatch):
    """In float32 the spikes are recovered from a trace only while 1/(1 - d) < 2**12: with
    tau_y = 10**5 steps the post spikes cannot be read back from o2, so the kernel keeps
    its tables (and the numbers of :func:`triplet_stdp`)."""
    import plasticity.functional.stdp as fstdp
    from plasticity.functional import TripletParams, TripletState, triplet_stdp
    from plasticity.functional import triplet_stdp_post_events as events

    calls = []
    monkeypatch.setattr(fstdp, "_IN_PLACE_MIN_WIDTH", 0)
    monkeypatch.setattr(fstdp, "_triplet_in_place", lambda *a: calls.append(1))
    g = torch.Generator().manual_seed(6)
    pre = (torch.rand(20, 2, 30, generator=g) < 0.3).float()
    post = (torch.rand(20, 2, 5, generator=g) < 0.3).float()
    state = TripletState(*(torch.rand(2, n, generator=g) for n in (30, 30, 5, 5)))
    params = TripletParams(0.5, 1.0, 0.7, 0.2, 0.9, 0.8, 0.95, math.exp(-1e-5))
    ref = triplet_stdp(pre, post, state, params, dense_correlate)
    got = events(pre.clone(), post.clone(), state, params, binary_post=True, scratch=True)
    assert not calls
    torch.testing.assert_close(got[0], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-5)


def test_in_place_scans_reject_what_they_cannot_overwrite():
    from plasticity.functional.traces import scan_in_place_, unscan_

    s = torch.zeros(6, 4)
    before = s.clone()
    with pytest.raises(ValueError, match="`spikes` must be contiguous"):
        scan_in_place_(s.t(), torch.zeros(6), 0.5)
    with pytest.raises(ValueError, match="`traces` must be contiguous"):
        unscan_(s.t(), torch.zeros(6), 0.5)
    with pytest.raises(TypeError, match="`spikes` must be a floating-point tensor"):
        scan_in_place_(torch.zeros(6, 4, dtype=torch.int64), torch.zeros(4), 0.5)
    assert torch.equal(s, before)
