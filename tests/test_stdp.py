"""Pair and triplet STDP through real snnTorch modules against loops over spike pairs."""

from __future__ import annotations

import copy
import math

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from reference import conv_reference, dense_reference
from torch import nn

import plasticity as pl

PAIR = dict(a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0)
TRIPLET = dict(
    a2_plus=0.3,
    a3_plus=0.2,
    a2_minus=0.25,
    a3_minus=0.15,
    tau_plus=3.0,
    tau_minus=5.0,
    tau_x=7.0,
    tau_y=4.0,
)
MODES = [(tr, co) for tr in ("all-to-all", "nearest") for co in ("ltp", "both", "none")]


def make_rule(kind, synapse, neuron, **options):
    if kind == "pair":
        return pl.STDP(synapse, neuron, **PAIR, **options)
    return pl.TripletSTDP(synapse, neuron, **TRIPLET, **options)


def params_of(kind):
    return PAIR if kind == "pair" else TRIPLET


def run_dense(kind, *, T=40, B=3, n_in=6, n_out=4, seed=0, device="cpu", sequence=False, **options):
    """fc + snn.Leaky in float64 with the rule attached; returns rule, pre and post spikes."""
    g = torch.Generator().manual_seed(seed)
    fc = nn.Linear(n_in, n_out, bias=False).double().to(device)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(n_out, n_in, generator=g, dtype=torch.float64) * 0.6)
    lif = snn.Leaky(beta=0.8)
    rule = make_rule(kind, fc, lif, **options)
    x = (torch.rand(T, B, n_in, generator=g) < 0.3).double().to(device)
    mem = lif.init_leaky()
    posts = []
    if sequence:  # the whole sequence through the synapse at once, then the neuron per step
        current = fc(x)
        for t in range(T):
            spk, mem = lif(current[t], mem)
            posts.append(spk.detach())
    else:
        for t in range(T):
            spk, mem = lif(fc(x[t]), mem)
            posts.append(spk.detach())
    rule.flush()
    post = torch.stack(posts)
    assert post.sum() > 0 and x.sum() > 0
    return rule, x.cpu(), post.cpu()


def check(rule, expected, tol=1e-9):
    pos, neg = expected
    torch.testing.assert_close(rule.accumulator.pos.cpu(), pos, rtol=tol, atol=tol)
    torch.testing.assert_close(rule.accumulator.neg.cpu(), neg, rtol=tol, atol=tol)


# ------------------------------------------------------------ exactness (dense)


@pytest.mark.parametrize("kind", ["pair", "triplet"])
@pytest.mark.parametrize("trace, coincident", MODES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kernel", ["auto", "sparse"])
def test_dense_rule_equals_pair_sums(kind, trace, coincident, reduction, kernel):
    rule, pre, post = run_dense(
        kind,
        trace=trace,
        coincident=coincident,
        batch_reduction=reduction,
        chunk_size=16,
        kernel=kernel,
    )
    ref = dense_reference(
        pre,
        post,
        params_of(kind),
        rule=kind,
        trace=trace,
        coincident=coincident,
        reduction=reduction,
    )
    check(rule, ref)


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_hooks_event_driven_pair_rule_equals_pair_sums(coincident, reduction):
    """Through the hooks, the event-driven kernels (read at the spikes, the rewrite of
    depression as the future presynaptic trace at the post spikes): the same numbers as
    the pair sums, over several chunks and a remainder."""
    rule, pre, post = run_dense(
        "pair", coincident=coincident, batch_reduction=reduction, chunk_size=16, kernel="sparse"
    )
    ref = dense_reference(pre, post, PAIR, coincident=coincident, reduction=reduction)
    check(rule, ref)
    assert any("events" in k or "rewrite" in k for k in rule.kernel_choice.values())


@pytest.mark.parametrize("trace, coincident", MODES)
def test_dense_products_equal_pair_sums_and_step_applies_them(trace, coincident):
    """kernel="dense" through the hooks (one product per term): the same numbers as the
    pair sums, every trace and coincidence mode; step() then gives the same Δw as
    update() would and clears the accumulator."""
    rule, pre, post = run_dense(
        "pair", trace=trace, coincident=coincident, chunk_size=16, kernel="dense"
    )
    check(rule, dense_reference(pre, post, PAIR, trace=trace, coincident=coincident))
    expected = rule.accumulator.update(rule.weight)
    dw = rule.step()
    torch.testing.assert_close(dw, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(rule.weight.grad, -dw) and rule.accumulator.counts == (0, 0)


@pytest.mark.parametrize("coincident", ["ltp", "both"])
def test_hooks_event_driven_triplet_rule_equals_triplet_sums(coincident):
    """Triplet STDP through the hooks on the event-driven kernels: the same numbers as the
    triplet sums, over chunks and a remainder."""
    rule, pre, post = run_dense("triplet", coincident=coincident, chunk_size=16, kernel="sparse")
    check(rule, dense_reference(pre, post, TRIPLET, rule="triplet", coincident=coincident))


def test_wide_pair_rule_reads_the_same_through_hooks_and_never_writes_the_callers_spikes():
    """At a real width (B * N_in > 4096, float32) the hooks path (tables in the step
    buffer) equals observe() on the recorded spikes (tables allocated, the caller's
    tensors read only)."""
    g = torch.Generator().manual_seed(11)
    fc = nn.Linear(1500, 30, bias=False)
    rule = pl.STDP(fc, snn.Leaky(beta=0.9), **PAIR, kernel="sparse", chunk_size=20)
    x = (torch.rand(50, 4, 1500, generator=g) < 0.05).float()
    post = (torch.rand(50, 4, 30, generator=g) < 0.05).float()
    for t in range(50):  # the hooks, fed directly (the neuron's output is replaced)
        rule._on_pre(fc, (x[t],), {})
        rule._on_post(rule.neuron, (), post[t])
    via_hooks = rule.step()
    x_before, post_before = x.clone(), post.clone()
    rule.reset()
    rule.observe(x, post)
    via_observe = rule.step()
    assert torch.equal(x, x_before) and torch.equal(post, post_before)
    torch.testing.assert_close(via_hooks, via_observe, rtol=1e-5, atol=1e-6)
    assert via_hooks.abs().sum() > 0


@pytest.mark.parametrize("kind", ["pair", "triplet"])
def test_dt_and_euler_decay(kind):
    rule, pre, post = run_dense(kind, dt=0.5, chunk_size=9)
    check(rule, dense_reference(pre, post, params_of(kind), rule=kind, dt=0.5))
    rule, pre, post = run_dense(kind, dt=0.5, decay="euler", chunk_size=9)
    check(rule, dense_reference(pre, post, params_of(kind), rule=kind, dt=0.5, decay="euler"))


@pytest.mark.parametrize("kind", ["pair", "triplet"])
@pytest.mark.parametrize("trace", ["all-to-all", "nearest"])
def test_chunked_equals_per_step_and_whole_sequence(kind, trace):
    results = []
    for chunk, seq in [(1, False), (7, False), (1000, False), (5, True)]:
        rule, _, _ = run_dense(kind, trace=trace, chunk_size=chunk, sequence=seq, seed=4)
        results.append((rule.accumulator.pos, rule.accumulator.neg))
    for pos, neg in results[1:]:
        torch.testing.assert_close(pos, results[0][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(neg, results[0][1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["pair", "triplet"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_event_driven_kernel_gives_the_same_result(kind, dtype):
    g = torch.Generator().manual_seed(2)
    pre = (torch.rand(60, 8, 300, generator=g) < 0.04).to(dtype)
    post = (torch.rand(60, 8, 200, generator=g) < 0.04).to(dtype)
    out = {}
    for kernel in ("dense", "sparse", "auto"):
        fc = nn.Linear(300, 200, bias=False).to(dtype)
        rule = make_rule(kind, fc, snn.Leaky(beta=0.9), kernel=kernel, chunk_size=25)
        rule.observe(pre, post)
        rule.flush()
        out[kernel] = (rule.accumulator.pos, rule.accumulator.neg)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for kernel in ("sparse", "auto"):
        torch.testing.assert_close(out[kernel][0], out["dense"][0], rtol=tol, atol=tol)
        torch.testing.assert_close(out[kernel][1], out["dense"][1], rtol=tol, atol=tol)


# ----------------------------------------------------------------- pairing probe


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("trace", ["all-to-all", "nearest"])
def test_classic_pairing_probe(coincident, trace):
    a_plus, a_minus, tau_plus, tau_minus = 1.0, 0.5, 4.0, 8.0
    for lag in range(-5, 6):  # lag = t_post - t_pre
        pre = torch.zeros(20, 1, 1, dtype=torch.float64)
        post = torch.zeros(20, 1, 1, dtype=torch.float64)
        pre[10, 0, 0] = 1
        post[10 + lag, 0, 0] = 1
        rule = pl.STDP(
            nn.Linear(1, 1, bias=False).double(),
            snn.Leaky(beta=0.5),
            a_plus=a_plus,
            a_minus=a_minus,
            tau_plus=tau_plus,
            tau_minus=tau_minus,
            coincident=coincident,
            trace=trace,
        )
        rule.observe(pre, post)
        rule.flush()
        pos = float(rule.accumulator.pos)
        neg = float(rule.accumulator.neg)
        exp_pos = a_plus * math.exp(-lag / tau_plus) if lag > 0 else 0.0
        exp_neg = a_minus * math.exp(lag / tau_minus) if lag < 0 else 0.0
        if lag == 0:
            exp_pos = a_plus if coincident in ("ltp", "both") else 0.0
            exp_neg = a_minus if coincident == "both" else 0.0
        assert pos == pytest.approx(exp_pos, abs=1e-12), (lag, coincident)
        assert neg == pytest.approx(exp_neg, abs=1e-12), (lag, coincident)


# ------------------------------------------------------------------------- conv


CONV_CASES = [
    # (k, stride, padding, dilation, groups, padding_mode)
    (1, 1, 0, 1, 1, "zeros"),
    (1, 2, 1, 2, 2, "zeros"),
    (2, 1, 1, 1, 1, "zeros"),
    (2, 2, 1, 1, 2, "zeros"),
    (2, 1, 2, 2, 1, "zeros"),
    (2, 1, "same", 1, 1, "zeros"),
    (2, 1, 1, 1, 1, "reflect"),
    (2, 1, 1, 1, 1, "circular"),
    (2, 1, 1, 1, 1, "replicate"),
    (1, 1, "valid", 1, 1, "zeros"),
    (1, 1, "same", 2, 2, "reflect"),
]


def conv_module(k, stride, padding, dilation, groups, padding_mode, c_in=2, c_out=4, ksize=3):
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[k]
    return cls(
        c_in,
        c_out,
        ksize,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        bias=False,
    ).double()


def conv_spikes(conv, k, T=10, B=2, size=6, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, B, conv.in_channels, *([size] * k), generator=g) < 0.3).double()
    with torch.no_grad():
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=g, dtype=torch.float64) * 0.5)
    return pre.to(device)


@pytest.mark.parametrize("kind", ["pair", "triplet"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_rule_through_snntorch_equals_pair_sums(kind, case):
    k, stride, padding, dilation, groups, padding_mode = case
    conv = conv_module(*case)
    lif = snn.Leaky(beta=0.7)
    rule = make_rule(kind, conv, lif, chunk_size=4)
    pre = conv_spikes(conv, k)
    mem = lif.init_leaky()
    posts = []
    for t in range(pre.shape[0]):
        spk, mem = lif(conv(pre[t]), mem)
        posts.append(spk.detach())
    rule.flush()
    post = torch.stack(posts)
    assert post.sum() > 0
    # reference on the explicitly padded input (F.pad implements the padding modes)
    if padding_mode != "zeros" or isinstance(padding, str):
        pad = conv._reversed_padding_repeated_twice
        mode = "constant" if padding_mode == "zeros" else padding_mode
        ref_pre = F.pad(pre.flatten(0, 1), list(pad), mode=mode).view(
            *pre.shape[:3], *[s + 2 * pad[0] for s in pre.shape[3:]]
        )
        ref_padding = (0,) * k
    else:
        ref_pre, ref_padding = pre, (padding,) * k
    ref = conv_reference(
        ref_pre,
        post,
        tuple(conv.weight.shape),
        stride=(stride,) * k,
        padding=ref_padding,
        dilation=(dilation,) * k,
        groups=groups,
        params=params_of(kind),
        rule=kind,
    )
    check(rule, ref)


@pytest.mark.parametrize("trace, coincident", MODES)
def test_conv2d_equals_dense_rule_on_unfolded_patches(trace, coincident):
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1, bias=False).double()
    g = torch.Generator().manual_seed(5)
    T, B = 12, 3
    pre = (torch.rand(T, B, 3, 7, 7, generator=g) < 0.3).double()
    post = (torch.rand(T, B, 4, 4, 4, generator=g) < 0.3).double()
    rule = pl.STDP(
        conv, snn.Leaky(beta=0.5), **PAIR, trace=trace, coincident=coincident, chunk_size=5
    )
    rule.observe(pre, post)
    rule.flush()
    # the dense rule on patches: every (sample, output position) is a sample of a Linear synapse
    patches = F.unfold(pre.flatten(0, 1), 3, padding=1, stride=2)  # [T*B, 27, L]
    L = patches.shape[-1]
    dense_pre = patches.view(T, B, 27, L).permute(0, 1, 3, 2).reshape(T, B * L, 27)
    dense_post = post.view(T, B, 4, L).permute(0, 1, 3, 2).reshape(T, B * L, 4)
    dense = pl.STDP(
        nn.Linear(27, 4, bias=False).double(),
        snn.Leaky(beta=0.5),
        **PAIR,
        trace=trace,
        coincident=coincident,
        batch_reduction="sum",
    )
    dense.observe(dense_pre, dense_post)
    dense.flush()
    torch.testing.assert_close(
        rule.accumulator.pos, dense.accumulator.pos.view(4, 3, 3, 3) / B, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(
        rule.accumulator.neg, dense.accumulator.neg.view(4, 3, 3, 3) / B, rtol=1e-10, atol=1e-12
    )


def test_conv3d_runs_and_matches_reference():
    conv = conv_module(3, 1, 1, 1, 1, "zeros", ksize=2)
    pre = conv_spikes(conv, 3, T=5, B=1, size=3)
    post = (torch.rand(5, 1, 4, 4, 4, 4, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    rule = pl.STDP(conv, snn.Leaky(beta=0.5), **PAIR)
    rule.observe(pre, post)
    rule.flush()
    check(
        rule,
        conv_reference(
            pre,
            post,
            tuple(conv.weight.shape),
            stride=(1,) * 3,
            padding=(1,) * 3,
            dilation=(1,) * 3,
            groups=1,
            params=PAIR,
        ),
    )


# ---------------------------------------------------------------- neurons, hooks

NEURONS = {
    "Leaky": lambda **kw: snn.Leaky(beta=0.8, **kw),
    "Synaptic": lambda **kw: snn.Synaptic(alpha=0.6, beta=0.8, **kw),
    "Alpha": lambda **kw: snn.Alpha(alpha=0.8, beta=0.6, **kw),
    "Lapicque": lambda **kw: snn.Lapicque(beta=0.8, **kw),
}


def drive(neuron, fc, x, init_hidden):
    posts = []
    state = None
    if not init_hidden:
        state = getattr(neuron, "init_" + type(neuron).__name__.lower())()
        state = state if isinstance(state, tuple) else (state,)
    for t in range(x.shape[0]):
        if init_hidden:
            out = neuron(fc(x[t]))
        else:
            out = neuron(fc(x[t]), *state)
            state = out[1:]
        spk = out[0] if isinstance(out, tuple) else out
        posts.append(spk.detach())
    return torch.stack(posts)


@pytest.mark.parametrize("name", sorted(NEURONS))
@pytest.mark.parametrize("init_hidden, output", [(False, False), (True, False), (True, True)])
def test_every_snntorch_neuron_type(name, init_hidden, output):
    kw = {"init_hidden": True, "output": output} if init_hidden else {}
    neuron = NEURONS[name](**kw)
    g = torch.Generator().manual_seed(3)
    fc = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.rand(3, 5, generator=g, dtype=torch.float64))
    rule = pl.STDP(fc, neuron, **PAIR)
    x = (torch.rand(30, 2, 5, generator=g) < 0.4).double()
    post = drive(neuron, fc, x, init_hidden)
    rule.flush()
    assert post.sum() > 0
    check(rule, dense_reference(x, post, PAIR))


@pytest.mark.parametrize("cls", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("init_hidden", [False, True])
def test_recurrent_weights_learn_from_the_previous_steps_spikes(cls, init_hidden):
    n = 4
    if cls == "RLeaky":
        neuron = snn.RLeaky(beta=0.8, linear_features=n, init_hidden=init_hidden)
    else:
        neuron = snn.RSynaptic(alpha=0.6, beta=0.8, linear_features=n, init_hidden=init_hidden)
    # snnTorch's spikes are float32 whatever the membrane's dtype, so RLeaky runs in float32
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        neuron.recurrent.weight.copy_(torch.rand(n, n, generator=g) * 0.5)
    rule = pl.STDP(neuron.recurrent, neuron, **PAIR)
    x = (torch.rand(30, 2, n, generator=g) < 0.5).float() * 1.2
    posts = []
    if init_hidden:
        for t in range(30):
            posts.append(neuron(x[t]).detach())
    else:
        state = neuron.init_rleaky() if cls == "RLeaky" else neuron.init_rsynaptic()
        for t in range(30):
            out = neuron(x[t], *state)  # (spk, ..., mem): the next step's state
            posts.append(out[0].detach())
            state = out
    rule.flush()
    post = torch.stack(posts)
    pre = torch.cat([torch.zeros_like(post[:1]), post[:-1]])  # own spikes, one step later
    assert post.sum() > 0 and pre.sum() > 0
    pos, neg = dense_reference(pre, post, PAIR)
    check(rule, (pos.float(), neg.float()), tol=1e-5)


def test_several_rules_in_one_network_each_on_its_own_weight():
    g = torch.Generator().manual_seed(0)
    fc1, fc2 = nn.Linear(6, 5, bias=False).double(), nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        fc1.weight.copy_(torch.rand(5, 6, generator=g, dtype=torch.float64))
        fc2.weight.copy_(torch.rand(3, 5, generator=g, dtype=torch.float64))
    lif1, lif2 = snn.Leaky(beta=0.8), snn.Leaky(beta=0.8)
    r1 = pl.STDP(fc1, lif1, **PAIR)
    r2 = pl.TripletSTDP(fc2, lif2, **TRIPLET, trace="nearest")
    x = (torch.rand(25, 2, 6, generator=g) < 0.4).double()
    m1, m2 = lif1.init_leaky(), lif2.init_leaky()
    s1s, s2s = [], []
    for t in range(25):
        s1, m1 = lif1(fc1(x[t]), m1)
        s2, m2 = lif2(fc2(s1.double()), m2)  # snnTorch spikes are float32
        s1s.append(s1.detach())
        s2s.append(s2.detach())
    r1.flush()
    r2.flush()
    s1, s2 = torch.stack(s1s), torch.stack(s2s)
    assert s2.sum() > 0
    check(r1, dense_reference(x, s1, PAIR))
    check(r2, dense_reference(s1, s2, TRIPLET, rule="triplet", trace="nearest"))


# ------------------------------------------------------------------ step & state


def test_step_writes_minus_delta_w_into_grad_and_clears():
    rule, pre, post = run_dense("pair")
    w = rule.weight
    rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    pos, neg = dense_reference(pre, post, PAIR)
    expected = (1.0 - w.detach()).clamp_min(0) * pos - neg
    dw = rule.step()
    torch.testing.assert_close(dw, expected)
    torch.testing.assert_close(w.grad, -expected)
    assert rule.accumulator.pos is None
    assert rule.step() is None  # nothing new
    # a backprop gradient already there is kept: -Δw is added to it
    w.grad = torch.ones_like(w)
    rule.observe(pre, post)
    rule.reset()
    dw2 = rule.step()
    torch.testing.assert_close(w.grad, 1.0 - dw2)


def test_sgd_through_clamped_optimizer_applies_plus_delta_w():
    rule, _, _ = run_dense("pair")
    w = rule.weight
    before = w.detach().clone()
    opt = pl.ClampedParameterOptimizer([w], lr=1.0, clamp_min=-10.0, clamp_max=10.0)
    dw = rule.step()
    opt.step()
    torch.testing.assert_close(w.detach(), before + dw)


def test_batch_mean_does_not_depend_on_batch_size():
    g = torch.Generator().manual_seed(1)
    pre1 = (torch.rand(30, 1, 6, generator=g) < 0.3).double()
    post1 = (torch.rand(30, 1, 4, generator=g) < 0.3).double()
    out = {}
    for B, red in [(1, "mean"), (8, "mean"), (8, "sum")]:
        rule = pl.STDP(
            nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.5), **PAIR, batch_reduction=red
        )
        rule.observe(pre1.expand(30, B, 6), post1.expand(30, B, 4))
        out[(B, red)] = rule.step()
    torch.testing.assert_close(out[(8, "mean")], out[(1, "mean")])
    torch.testing.assert_close(out[(8, "sum")], 8 * out[(1, "mean")])


def test_reset_zeroes_traces_between_samples():
    g = torch.Generator().manual_seed(2)
    pre = (torch.rand(20, 1, 3, generator=g) < 0.4).double()
    post = (torch.rand(20, 1, 2, generator=g) < 0.4).double()
    rule = pl.STDP(nn.Linear(3, 2, bias=False).double(), snn.Leaky(beta=0.5), **PAIR)
    rule.observe(pre[:10], post[:10])
    rule.reset()  # two independent samples, no pairs across the boundary
    rule.observe(pre[10:], post[10:])
    rule.flush()
    a = dense_reference(pre[:10], post[:10], PAIR)
    b = dense_reference(pre[10:], post[10:], PAIR)
    check(rule, (a[0] + b[0], a[1] + b[1]))


@pytest.mark.parametrize("kind", ["pair", "triplet"])
def test_hooks_learn_every_window_alike_across_resets(kind):
    """Step by step through the hooks (the per-step fast path), window after window with
    reset() between: every window equals the pair sums of its own spikes, batch mean
    included (the batch is set again by each window's first step)."""
    g = torch.Generator().manual_seed(12)
    fc = nn.Linear(6, 4, bias=False).double()
    lif = snn.Leaky(beta=0.8)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(4, 6, generator=g, dtype=torch.float64))
    rule = make_rule(kind, fc, lif, chunk_size=8)
    for _window in range(3):
        x = (torch.rand(20, 3, 6, generator=g) < 0.4).double()
        mem, posts = lif.init_leaky(), []
        for t in range(20):
            spk, mem = lif(fc(x[t]), mem)
            posts.append(spk.detach())
        rule.flush()
        post = torch.stack(posts)
        assert post.sum() > 0
        check(rule, dense_reference(x, post, params_of(kind), rule=kind))
        rule.accumulator.clear()
        rule.reset()


@pytest.mark.parametrize("kind", ["pair", "triplet"])
def test_observe_processes_whole_chunks_in_place_and_buffers_the_rest(kind):
    g = torch.Generator().manual_seed(5)
    pre = (torch.rand(23, 3, 6, generator=g) < 0.3).double()
    post = (torch.rand(23, 3, 4, generator=g) < 0.3).double()
    pre_before, post_before = pre.clone(), post.clone()
    rule = make_rule(kind, nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.5), chunk_size=7)
    rule.observe(pre, post)  # 21 steps straight from the inputs, 2 buffered
    assert rule.accumulator.counts == (21, 21)  # one append per step, in 3 chunks
    assert rule._pre.n == rule._post.n == 2
    rule.observe(pre[:0], post[:0])  # nothing to add
    rule.flush()
    assert torch.equal(pre, pre_before) and torch.equal(post, post_before)
    check(rule, dense_reference(pre, post, params_of(kind), rule=kind))
    # float32 spikes into a float64 rule, and a second call that appends to the buffer
    rule2 = make_rule(kind, nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.5), chunk_size=7)
    rule2.observe(pre[:10].float(), post[:10].float())
    rule2.observe(pre[10:], post[10:])
    rule2.flush()
    check(rule2, dense_reference(pre, post, params_of(kind), rule=kind))
    # automatic chunks (MAX_CHUNK steps here): a 23-step sequence is one chunk, processed at once
    rule3 = make_rule(kind, nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.5))
    rule3.observe(pre, post)
    assert rule3.accumulator.counts == (23, 23) and rule3._pre.n == 0
    check(rule3, dense_reference(pre, post, params_of(kind), rule=kind))


def _pos_neg(rule, pre, post):
    rule.observe(pre, post)
    rule.flush()
    return rule.accumulator.pos, rule.accumulator.neg


@pytest.mark.parametrize("kind", ["pair", "triplet"])
@pytest.mark.parametrize("kernel", ["dense", "sparse"])
@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
def test_bf16_precision_stays_within_its_documented_bound(kind, kernel, coincident):
    g = torch.Generator().manual_seed(7)
    pre = (torch.rand(60, 8, 300, generator=g) < 0.04).float()
    post = (torch.rand(60, 8, 200, generator=g) < 0.04).float()
    out = {}
    for precision in ("full", "bf16"):
        fc = nn.Linear(300, 200, bias=False)
        rule = make_rule(
            kind,
            fc,
            snn.Leaky(beta=0.9),
            kernel=kernel,
            coincident=coincident,
            chunk_size=25,
            precision=precision,
        )
        out[precision] = _pos_neg(rule, pre, post)
    # bf16 keeps 8 significant bits (unit roundoff 2^-8): the trace operand and each chunk's
    # result are rounded once, the triplet's weighted spikes once more
    bound = 2.0**-7 if kind == "pair" else 3 * 2.0**-8
    for full, half in zip(out["full"], out["bf16"], strict=True):
        assert half.dtype == torch.float32
        err = (half - full).abs()
        ratio = (err - 1e-6) / full.abs().clamp_min(1e-30)
        assert torch.all(err <= bound * full.abs() + 1e-6), float(ratio.max())
        assert err.max() > 0  # the switch is in effect


@pytest.mark.parametrize("coincident", ["ltp", "none"])
def test_bf16_precision_on_a_grouped_conv(coincident):
    g = torch.Generator().manual_seed(8)
    pre = (torch.rand(30, 2, 4, 9, 9, generator=g) < 0.1).float()
    post = (torch.rand(30, 2, 6, 9, 9, generator=g) < 0.1).float()
    out = {}
    for precision in ("full", "bf16"):
        conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
        rule = pl.STDP(
            conv, snn.Leaky(beta=0.9), **PAIR, coincident=coincident, precision=precision
        )
        out[precision] = _pos_neg(rule, pre, post)
    for full, half in zip(out["full"], out["bf16"], strict=True):
        err = (half - full).abs()
        assert torch.all(err <= 2.0**-7 * full.abs() + 1e-6)
        assert err.max() > 0


@pytest.mark.parametrize("kind", ["pair", "triplet"])
def test_state_dict_round_trips_mid_window(kind):
    g = torch.Generator().manual_seed(3)
    pre = (torch.rand(40, 2, 6, generator=g) < 0.3).double()
    post = (torch.rand(40, 2, 4, generator=g) < 0.3).double()

    def fresh():
        return make_rule(
            kind, nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.5), chunk_size=8
        )

    whole = fresh()
    whole.observe(pre, post)
    whole.flush()
    a = fresh()
    a.observe(pre[:19], post[:19])  # 16 steps processed, 3 buffered, traces mid-flight
    sd = copy.deepcopy(a.state_dict())
    b = fresh()
    b.load_state_dict(sd)
    b.observe(pre[19:], post[19:])
    b.flush()
    torch.testing.assert_close(b.accumulator.pos, whole.accumulator.pos, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.accumulator.neg, whole.accumulator.neg, rtol=1e-12, atol=1e-12)


@torch.no_grad()
def test_a_deep_copy_mid_window_learns_on_through_its_own_hooks():
    """Steps buffered by the hooks' fast path survive copy.deepcopy: the copy, fed the rest
    of the sequence through its own hooks, learns what the original learns."""
    g = torch.Generator().manual_seed(13)
    fc, lif = nn.Linear(6, 4, bias=False).double(), snn.Leaky(beta=0.8)
    fc.weight.copy_(torch.rand(4, 6, generator=g, dtype=torch.float64))
    # one kernel for both (the measured choice may change between the two flushes, and
    # kernels agree to rounding, not bit for bit)
    rule = make_rule("pair", fc, lif, chunk_size=50, kernel="dense")
    x = (torch.rand(30, 2, 6, generator=g) < 0.4).double()
    mem = lif.init_leaky()
    for t in range(10):
        _, mem = lif(fc(x[t]), mem)
    assert rule._pre.n == 10  # buffered, not yet processed
    fc2, lif2, rule2 = copy.deepcopy((fc, lif, rule))
    mem2 = mem.clone()
    for t in range(10, 30):
        _, mem = lif(fc(x[t]), mem)
        _, mem2 = lif2(fc2(x[t]), mem2)
    rule.flush()
    rule2.flush()
    assert rule.accumulator.pos.abs().sum() > 0
    torch.testing.assert_close(rule2.accumulator.pos, rule.accumulator.pos, rtol=0, atol=0)
    torch.testing.assert_close(rule2.accumulator.neg, rule.accumulator.neg, rtol=0, atol=0)


def test_learning_switches_off_with_eval_and_explicitly_and_detach_removes_hooks():
    rule, _, _ = run_dense("pair", T=5)
    fc, lif = rule.synapse, rule.neuron
    counts = rule.accumulator.counts
    x = torch.ones(3, 6, dtype=torch.float64)
    for switch_off, switch_on in [(fc.eval, fc.train), (rule.eval, rule.train)]:
        switch_off()
        assert not rule.learning
        lif(fc(x), lif.init_leaky())
        rule.flush()
        assert rule.accumulator.counts == counts
        switch_on()
        assert rule.learning
    rule.detach()
    assert not fc._forward_pre_hooks and not lif._forward_hooks and not rule.learning
    rule.attach()
    assert rule.learning and len(fc._forward_pre_hooks) == 1


def test_no_autograd_leaks():
    fc = nn.Linear(6, 4, bias=False)
    lif = snn.Leaky(beta=0.9)
    rule = pl.STDP(fc, lif, **PAIR, chunk_size=4)
    x = (torch.rand(10, 2, 6) < 0.5).float().requires_grad_(True)
    mem = lif.init_leaky()
    for t in range(10):
        spk, mem = lif(fc(x[t]), mem)
    rule.flush()
    for tensor in (
        *rule._state.values(),
        rule.accumulator.pos,
        rule.accumulator.neg,
        *[b for b in (rule._pre.tensor(), rule._post.tensor()) if b is not None],
    ):
        assert not tensor.requires_grad and tensor.grad_fn is None


def test_dtype_and_device_follow_the_weight(device):
    fc = nn.Linear(6, 4, bias=False).to(device=device, dtype=torch.float64)
    lif = snn.Leaky(beta=0.9)
    rule = pl.STDP(fc, lif, **PAIR)
    x = (torch.rand(10, 2, 6, device=device) < 0.5).float()  # float32 spikes into a float64 synapse
    mem = lif.init_leaky()
    for t in range(10):
        spk, mem = lif(fc(x[t].double()), mem)
    dw = rule.step()
    assert dw.dtype == torch.float64 and dw.device.type == device.type
    assert fc.weight.grad.dtype == torch.float64


def test_cuda_matches_cpu_reference(device):
    rule, pre, post = run_dense("triplet", device=device, trace="nearest")
    check(rule, dense_reference(pre, post, TRIPLET, rule="triplet", trace="nearest"))


# ---------------------------------------------------------------------- presets


def test_triplet_presets():
    fc, lif = nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
    for name, values in pl.TRIPLET_PRESETS.items():
        rule = pl.TripletSTDP.from_preset(fc, lif, name)
        assert rule.tau_plus == 16.8 and rule.tau_minus == 33.7 and rule.trace == values["trace"]
        assert rule.a3_plus == values["a3_plus"] and rule.tau_y == values["tau_y"]
        rule.detach()
    assert pl.TRIPLET_PRESETS["visual_cortex_all_to_all_full"]["tau_x"] == 101.0
    rule = pl.TripletSTDP.from_preset(
        fc, lif, "hippocampal_nearest_full", dt=0.1, coincident="both"
    )
    assert rule.dt == 0.1 and rule.coincident == "both"
    with pytest.raises(ValueError, match="preset"):
        pl.TripletSTDP.from_preset(fc, lif, "cortex")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda fc, lif: pl.STDP(nn.ReLU(), lif, **PAIR), TypeError, "weight"),
        (lambda fc, lif: pl.STDP(nn.LSTM(3, 2), lif, **PAIR), TypeError, "weight"),
        (lambda fc, lif: pl.STDP(nn.Bilinear(3, 3, 2), lif, **PAIR), TypeError, "supported"),
        (lambda fc, lif: pl.STDP(fc, "lif", **PAIR), TypeError, "neuron"),
        (lambda fc, lif: pl.STDP(fc, lif, **{**PAIR, "tau_plus": 0.0}), ValueError, "tau_plus"),
        (lambda fc, lif: pl.STDP(fc, lif, **{**PAIR, "tau_minus": -5.0}), ValueError, "tau_minus"),
        (
            lambda fc, lif: pl.STDP(fc, lif, **{**PAIR, "tau_minus": float("nan")}),
            ValueError,
            "tau_minus",
        ),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, dt=0.0), ValueError, "dt"),
        (lambda fc, lif: pl.STDP(fc, lif, **{**PAIR, "a_minus": -1e-2}), ValueError, "a_minus"),
        (lambda fc, lif: pl.STDP(fc, lif, **{**PAIR, "a_plus": "big"}), TypeError, "a_plus"),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, trace="nearest-neighbour"), ValueError, "trace"),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, coincident="ltd"), ValueError, "coincident"),
        (
            lambda fc, lif: pl.STDP(fc, lif, **PAIR, batch_reduction="max"),
            ValueError,
            "batch_reduction",
        ),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, decay="rk4"), ValueError, "decay"),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, decay="euler", dt=5.0), ValueError, "dt < tau"),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, chunk_size=0), ValueError, "chunk_size"),
        (lambda fc, lif: pl.STDP(fc, lif, **PAIR, precision="fp8"), ValueError, "precision"),
        (lambda fc, lif: pl.TripletSTDP(fc, lif, **{**TRIPLET, "tau_x": 0}), ValueError, "tau_x"),
        (
            lambda fc, lif: pl.TripletSTDP(fc, lif, **{**TRIPLET, "a3_minus": -0.1}),
            ValueError,
            "a3_minus",
        ),
    ],
)
def test_bad_construction_raises_and_attaches_nothing(make, exc, words):
    fc, lif = nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
    with pytest.raises(exc, match=words):
        make(fc, lif)
    assert not fc._forward_pre_hooks and not lif._forward_hooks


def _live_rule():
    g = torch.Generator().manual_seed(0)
    fc = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(3, 4, generator=g))
    lif = snn.Leaky(beta=0.8)
    rule = pl.STDP(fc, lif, **PAIR, chunk_size=2)
    mem = lif.init_leaky()
    for _ in range(5):
        _, mem = lif(fc((torch.rand(2, 4, generator=g) < 0.5).float()), mem)
    return rule, fc, lif, mem


def _snapshot(rule):
    buffered = [rule._pre.tensor(), rule._post.tensor()]
    return (
        rule.accumulator.counts,
        rule.accumulator.pos.clone(),
        [s.clone() for s in rule._state.values()],
        rule.weight.detach().clone(),
        [None if b is None else b.clone() for b in buffered],
    )


def _assert_same(a, b, buffers=True):
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and torch.equal(a[3], b[3])
    assert all(torch.equal(x, y) for x, y in zip(a[2], b[2], strict=True))
    if buffers:
        for x, y in zip(a[4], b[4], strict=True):
            assert (x is None and y is None) or torch.equal(x, y)


@pytest.mark.parametrize(
    "action, exc, words",
    [
        ("wrong_post_shape", ValueError, "out_features"),
        ("wrong_pre_shape", ValueError, "in_features"),
        ("graded_pre", ValueError, "binary"),
        ("graded_post", ValueError, "binary"),
        ("batch_change", ValueError, "batch size"),
        ("no_spikes_module", TypeError, "spikes"),
        ("observe_mismatch", ValueError, "same steps"),
    ],
)
def test_bad_input_raises_and_changes_nothing(action, exc, words):
    rule, fc, lif, mem = _live_rule()
    before = _snapshot(rule)
    with pytest.raises(exc, match=words):
        if action == "wrong_post_shape":
            lif(torch.ones(2, 5), mem)  # a neuron of another layer width
        elif action == "wrong_pre_shape":
            fc(torch.ones(2, 3))
        elif action == "graded_pre":  # checked with the chunk that the neuron call fills
            lif(fc(torch.full((2, 4), 0.5)), mem)
        elif action == "graded_post":
            fc(torch.ones(2, 4))
            rule._on_post(lif, (), torch.full((2, 3), 2.0))
        elif action == "batch_change":
            fc(torch.ones(5, 4))
        elif action == "no_spikes_module":
            rule._on_post(lif, (), {"spk": torch.ones(2, 3)})
        elif action == "observe_mismatch":
            rule.observe(torch.zeros(4, 2, 4), torch.zeros(5, 2, 3))
    if action.startswith("graded"):  # found with its chunk, which this call filled:
        clean, *_ = _live_rule()  # the step before it learned, the bad one discarded
        clean.flush()
        _assert_same(_snapshot(clean), _snapshot(rule))
        assert rule._pre.n == rule._post.n == 0
        return
    # the call is refused; state, weights and the steps buffered before it are kept
    _assert_same(before, _snapshot(rule))
    assert rule._pre.n == rule._post.n == 1 and rule._pre.end == 1


def test_observe_straight_from_the_inputs_rejects_graded_spikes_before_learning():
    rule = pl.STDP(nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.8), **PAIR, chunk_size=8)
    pre = torch.zeros(20, 2, 4)
    pre[10, 1, 2] = 0.5  # in the second of two whole chunks: not even the first may learn
    post = torch.ones(20, 2, 3)
    with pytest.raises(ValueError, match="binary"):
        rule.observe(pre, post)
    assert rule.accumulator.counts == (0, 0) and rule._state is None and rule._batch is None
    assert rule._pre.n == rule._post.n == 0 and torch.equal(
        pre[10, 1], torch.tensor([0, 0, 0.5, 0])
    )
    rule.observe(torch.zeros(20, 5, 4), torch.zeros(20, 5, 3))  # another batch size: fine


def test_graded_spikes_policy():
    pre = torch.tensor([0.5, 0.0, 0.0]).view(3, 1, 1).double()
    post = torch.tensor([0.0, 0.0, 2.0]).view(3, 1, 1).double()
    rule = pl.STDP(
        nn.Linear(1, 1, bias=False).double(),
        snn.Leaky(beta=0.5),
        a_plus=1.0,
        a_minus=1.0,
        tau_plus=2.0,
        tau_minus=2.0,
        spikes="graded",
    )
    rule.observe(pre, post)
    rule.flush()
    assert float(rule.accumulator.pos) == pytest.approx(0.5 * 2.0 * math.exp(-1.0))


@pytest.mark.parametrize("kind", ["pair", "triplet"])
@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
def test_graded_spikes_same_on_the_event_driven_kernel(kind, coincident):
    """Graded amplitudes weigh each event the same way on the GEMM and event-driven paths
    (the post-events kernels read the post amplitude as a per-event weight)."""
    g = torch.Generator().manual_seed(11)
    pre = (torch.rand(30, 3, 7, generator=g) < 0.3) * torch.rand(30, 3, 7, generator=g) * 2
    post = (torch.rand(30, 3, 5, generator=g) < 0.3) * torch.rand(30, 3, 5, generator=g) * 2
    out = {}
    for kernel in ("dense", "sparse"):
        fc = nn.Linear(7, 5, bias=False).double()
        rule = make_rule(
            kind, fc, snn.Leaky(beta=0.9), kernel=kernel, coincident=coincident,
            spikes="graded", chunk_size=12,
        )  # fmt: skip
        out[kernel] = _pos_neg(rule, pre.double(), post.double())
    for got, want in zip(out["sparse"], out["dense"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[0] == 2])
def test_event_driven_conv2d_equals_pair_sums(case, coincident):
    """All-to-all pair STDP on Conv2d reads both components at the post spikes (patches of
    the forward and future presynaptic traces): the same pair sums."""
    k, stride, padding, dilation, groups, padding_mode = case
    conv = conv_module(*case)
    pre = conv_spikes(conv, k, T=12, B=2)
    with torch.no_grad():
        out_shape = conv(pre[0]).shape
    post = (torch.rand(12, *out_shape, generator=torch.Generator().manual_seed(9)) < 0.25).double()
    rule = pl.STDP(
        conv, snn.Leaky(beta=0.5), **PAIR, coincident=coincident, kernel="sparse", chunk_size=5
    )
    rule.observe(pre, post)
    rule.flush()
    dense = pl.STDP(
        conv_module(*case),
        snn.Leaky(beta=0.5),
        **PAIR,
        coincident=coincident,
        kernel="dense",
        chunk_size=5,
    )
    dense.observe(pre, post)
    dense.flush()
    check(rule, (dense.accumulator.pos, dense.accumulator.neg), tol=1e-10)
    if padding_mode == "zeros" and not isinstance(padding, str):
        ref = conv_reference(
            pre,
            post,
            tuple(conv.weight.shape),
            stride=(stride,) * 2,
            padding=(padding,) * 2,
            dilation=(dilation,) * 2,
            groups=groups,
            params=PAIR,
            coincident=coincident,
        )
        check(rule, ref)
