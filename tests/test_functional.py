"""The pure kernels against explicit loops: trace scans, event sums, correlations."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from plasticity.functional import (
    Kernels,
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
    torch.testing.assert_close(
        event_sum(index, table, row_shift=shift), expected, rtol=tol, atol=tol
    )
    w = weights[index[0], index[2]]
    torch.testing.assert_close(
        event_sum(index, table, row_shift=shift, weights=w), weighted, rtol=tol, atol=tol
    )


def test_dense_correlate_equals_the_outer_product_sum():
    g = torch.Generator().manual_seed(1)
    post = torch.rand(9, 3, 5, generator=g, dtype=torch.float64)
    pre = torch.rand(9, 3, 7, generator=g, dtype=torch.float64)
    expected = sum(post[t, k][:, None] * pre[t, k][None, :] for t in range(9) for k in range(3))
    torch.testing.assert_close(dense_correlate(post, pre), expected, rtol=1e-12, atol=1e-12)
    bf16 = dense_correlate(post.float(), pre.float(), compute_dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16.double(), expected, rtol=2.0**-7, atol=0)


def test_kernels_one_sided_sums_broadcast_over_the_other_side():
    """A one-sided term sums its side over rows (and conv positions) and broadcasts: a
    dense post-side sum over N_in, a grouped conv's pre-side sum to its group's outputs."""
    k = Kernels(torch.zeros(2, 3), None, None)
    x = torch.arange(12.0).view(2, 3, 2)  # [T, B, N_out]
    torch.testing.assert_close(k.one_sided(x, "post"), x.sum((0, 1))[:, None].expand(2, 3))
    conv = dict(weight_shape=(4, 1, 3), stride=(1,), padding=(0,), dilation=(1,), groups=2,
                pad=None, padding_mode="zeros")  # fmt: skip
    kc = Kernels(torch.zeros(4, 1, 3), conv, None)
    pre = torch.arange(2 * 1 * 2 * 5.0).view(2, 1, 2, 5)  # [T, B, C_in=2, L]
    sums = pre.sum((0, 1, 3))  # per input channel
    got = kc.one_sided(pre, "pre")
    assert got.shape == (4, 1, 3)
    assert torch.equal(got[:2], sums[0].expand(2, 1, 3)) and torch.equal(
        got[2:], sums[1].expand(2, 1, 3)
    )
