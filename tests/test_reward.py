"""Reward-modulated STDP against step-by-step references written from the papers' equations."""

from __future__ import annotations

import copy
import math

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from reference import modulated_reference
from torch import nn

import plasticity as pl

PAIR = dict(a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0)


def spikes(seed, T=30, B=3, n_in=5, n_out=4, p=0.3):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, B, n_in, generator=g) < p).double()
    post = (torch.rand(T, B, n_out, generator=g) < p).double()
    reward = torch.randn(T, B, generator=g, dtype=torch.float64)
    return pre, post, reward


def make(kind, n_in=5, n_out=4, **kw):
    fc = nn.Linear(n_in, n_out, bias=False).double()
    lif = snn.Leaky(beta=0.5)
    if kind == "mstdp":
        return pl.MSTDP(fc, lif, **PAIR, **kw)
    if kind == "mstdpet":
        return pl.MSTDPET(fc, lif, **PAIR, tau_e=6.0, **kw)
    return pl.DopamineSTDP(
        fc, lif, a_plus=0.7, a_minus=0.4, tau_plus=3.0, tau_minus=5.0, tau_c=8.0, tau_d=4.0, **kw
    )


def reference(kind, pre, post, mod, **kw):
    if kind == "mstdp":
        return modulated_reference(pre, post, mod, **PAIR, **kw)
    if kind == "mstdpet":
        return modulated_reference(pre, post, mod, **PAIR, tau_e=6.0, kappa=1 / 6.0, **kw)
    return modulated_reference(pre, post, mod, **PAIR, tau_e=8.0, kappa=1.0, tau_d=4.0, **kw)


KINDS = ["mstdp", "mstdpet", "dopamine"]
MODES = [(tr, co) for tr in ("all-to-all", "nearest") for co in ("ltp", "both", "none")]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("trace, coincident", MODES)
def test_per_sample_rewards_equal_the_reference(kind, trace, coincident):
    pre, post, reward = spikes(1)
    if kind == "dopamine":
        reward = reward.abs() * (
            torch.rand(reward.shape, generator=torch.Generator().manual_seed(2)) < 0.2
        )
    rule = (
        make(kind, per_sample=True, trace=trace, coincident=coincident, chunk_size=7, gamma=1.3)
        if kind != "dopamine"
        else make(kind, per_sample=True, trace=trace, coincident=coincident, chunk_size=7)
    )
    rule.observe(pre, post, reward=reward)
    dw = rule.step()
    gamma = 1.3 if kind != "dopamine" else 1.0
    expected = reference(kind, pre, post, reward, trace=trace, coincident=coincident, gamma=gamma)
    torch.testing.assert_close(dw, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("trace, coincident", MODES)
@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_shared_eligibility_equals_the_reference_on_both_kernels(kind, trace, coincident, kernel):
    """One eligibility for the batch (a shared reward per step): the GEMM path and the
    event-driven path (all-to-all: every signal read at the post spikes) against the
    step-by-step reference, graded post amplitudes included on the event path."""
    pre, post, reward = spikes(4, B=2)
    reward = reward[:, :1].expand(-1, 2)  # shared by the batch
    if kind == "dopamine":
        reward = reward.abs() * (reward > 0.5)
    kw = dict(trace=trace, coincident=coincident, chunk_size=7, kernel=kernel)
    rule = make(kind, **kw) if kind == "dopamine" else make(kind, gamma=1.3, **kw)
    rule.observe(pre, post, reward=reward)
    dw = rule.step()
    gamma = 1.0 if kind == "dopamine" else 1.3
    expected = reference(kind, pre, post, reward, trace=trace, coincident=coincident, gamma=gamma)
    torch.testing.assert_close(dw, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_shared_reward_through_snntorch_hooks_step_by_step(kind, reduction):
    g = torch.Generator().manual_seed(3)
    fc = nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.rand(4, 6, generator=g, dtype=torch.float64))
    lif = snn.Leaky(beta=0.8)
    kw = dict(batch_reduction=reduction, chunk_size=5)
    if kind == "mstdp":
        rule = pl.MSTDP(fc, lif, **PAIR, **kw)
    elif kind == "mstdpet":
        rule = pl.MSTDPET(fc, lif, **PAIR, tau_e=6.0, **kw)
    else:
        rule = pl.DopamineSTDP(
            fc,
            lif,
            a_plus=0.7,
            a_minus=0.4,
            tau_plus=3.0,
            tau_minus=5.0,
            tau_c=8.0,
            tau_d=4.0,
            **kw,
        )
    x = (torch.rand(25, 2, 6, generator=g) < 0.4).double()
    rewards = torch.randn(25, generator=g, dtype=torch.float64)
    if kind == "dopamine":
        rewards = (rewards > 1.0).double() * 0.5  # release events
    mem = lif.init_leaky()
    posts = []
    for t in range(25):
        spk, mem = lif(fc(x[t]), mem)
        posts.append(spk.detach().double())
        if kind == "dopamine":
            rule.release(float(rewards[t]))
        else:
            rule.reward(float(rewards[t]))  # after the step's forward pass: multiplies this step
    dw = rule.step()
    post = torch.stack(posts)
    assert post.sum() > 0
    expected = reference(kind, x, post, rewards[:, None].expand(25, 2), reduction=reduction)
    torch.testing.assert_close(dw, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["mstdp", "mstdpet"])
def test_window_reward(kind):
    pre, post, _ = spikes(4)
    window = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    rule = make(
        kind, per_sample=True, chunk_size=8, **({"window_reward": True} if kind == "mstdp" else {})
    )
    rule.observe(pre, post)  # no per-step reward
    dw = rule.step(reward=window)
    expected = reference(
        kind, pre, post, torch.zeros(30, 3, dtype=torch.float64), window_reward=window
    )
    torch.testing.assert_close(dw, expected, rtol=1e-9, atol=1e-12)


def test_mstdp_window_reward_equals_the_same_reward_at_every_step():
    pre, post, _ = spikes(5)
    a = make("mstdp", window_reward=True)
    a.observe(pre, post)
    b = make("mstdp")
    b.observe(pre, post, reward=0.7)
    torch.testing.assert_close(a.step(reward=0.7), b.step())


def test_eligibility_carries_across_windows():
    pre, post, reward = spikes(6)
    whole = make("mstdpet", per_sample=True)
    whole.observe(pre, post, reward=reward)
    total = whole.step()
    split = make("mstdpet", per_sample=True)
    split.observe(pre[:12], post[:12], reward=reward[:12])
    first = split.step()  # the weights would change here; the eligibility goes on
    split.observe(pre[12:], post[12:], reward=reward[12:])
    torch.testing.assert_close(first + split.step(), total)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_two_neuron_reward_experiment(sign):
    """One pre->post pair (lag 3) rewarded at the post spike: Δw = γ r A₊ e^(-3/τ₊); a
    punished pair depresses by the same amount. Bounds see a positive reward's LTP as pos."""
    pre = torch.zeros(10, 1, 1, dtype=torch.float64)
    post = torch.zeros(10, 1, 1, dtype=torch.float64)
    pre[2], post[5] = 1.0, 1.0
    reward = torch.zeros(10, dtype=torch.float64)
    reward[5] = 2.0 * sign
    rule = pl.MSTDP(
        nn.Linear(1, 1, bias=False).double(),
        snn.Leaky(beta=0.5),
        a_plus=0.1,
        a_minus=0.12,
        tau_plus=20.0,
        tau_minus=20.0,
        gamma=0.5,
    )
    rule.observe(pre, post, reward=reward)
    rule.flush()
    expected = 0.5 * 2.0 * 0.1 * math.exp(-3 / 20)
    if sign > 0:
        assert (
            float(rule.accumulator.pos) == pytest.approx(expected)
            and float(rule.accumulator.neg) == 0
        )
    else:
        assert (
            float(rule.accumulator.neg) == pytest.approx(expected)
            and float(rule.accumulator.pos) == 0
        )
    assert float(rule.step()) == pytest.approx(sign * expected)


@pytest.mark.parametrize("delay_ms", [1000, 2000, 3000])
def test_izhikevich_distal_reward(delay_ms):
    """A pre->post pairing followed by dopamine 1-3 s later is potentiated; the same pairing
    without dopamine is not (Izhikevich 2007, dt = 1 ms)."""
    T = delay_ms + 400
    pre = torch.zeros(T, 1, 1, dtype=torch.float64)
    post = torch.zeros(T, 1, 1, dtype=torch.float64)
    pre[100], post[110] = 1.0, 1.0
    release = torch.zeros(T, dtype=torch.float64)
    release[110 + delay_ms] = 0.5
    outcomes = {}
    for name, rel in {"dopamine": release, "none": torch.zeros_like(release)}.items():
        rule = pl.DopamineSTDP(nn.Linear(1, 1, bias=False).double(), snn.Leaky(beta=0.9))
        rule.observe(pre, post, reward=rel)
        outcomes[name] = float(rule.step())
    assert outcomes["none"] == 0.0
    assert outcomes["dopamine"] > 0.0
    # magnitude from the equations: c = A+ e^(-10/20) decays with tau_c; d decays with tau_d
    c0 = 1.0 * math.exp(-10 / 20)
    expected = sum(
        c0 * math.exp(-(t - 110) / 1000) * 0.5 * math.exp(-(t - 110 - delay_ms) / 200)
        for t in range(110 + delay_ms, T)
    )
    assert outcomes["dopamine"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_conv_rules_equal_the_dense_rule_on_unfolded_patches(kind, per_sample):
    g = torch.Generator().manual_seed(7)
    T, B = 10, 2
    pre = (torch.rand(T, B, 2, 5, 5, generator=g) < 0.3).double()
    post = (torch.rand(T, B, 3, 5, 5, generator=g) < 0.3).double()
    reward = torch.randn(T, B, generator=g, dtype=torch.float64)
    if kind == "dopamine":
        reward = reward.abs()
    if not per_sample:
        reward = reward[:, :1].expand(T, B)

    def build(synapse, **kw):
        lif = snn.Leaky(beta=0.5)
        if kind == "mstdp":
            return pl.MSTDP(synapse, lif, **PAIR, per_sample=per_sample, **kw)
        if kind == "mstdpet":
            return pl.MSTDPET(synapse, lif, **PAIR, tau_e=6.0, per_sample=per_sample, **kw)
        return pl.DopamineSTDP(
            synapse,
            lif,
            a_plus=0.7,
            a_minus=0.4,
            tau_plus=3.0,
            tau_minus=5.0,
            tau_c=8.0,
            tau_d=4.0,
            per_sample=per_sample,
            **kw,
        )

    rule = build(nn.Conv2d(2, 3, 3, padding=1, bias=False).double(), chunk_size=4)
    rule.observe(pre, post, reward=reward)
    dw = rule.step()
    patches = F.unfold(pre.flatten(0, 1), 3, padding=1)  # [T*B, 18, 25]
    L = patches.shape[-1]
    dense_pre = patches.view(T, B, 18, L).permute(0, 1, 3, 2).reshape(T, B * L, 18)
    dense_post = post.view(T, B, 3, L).permute(0, 1, 3, 2).reshape(T, B * L, 3)
    dense = build(nn.Linear(18, 3, bias=False).double(), batch_reduction="sum")
    dense.observe(dense_pre, dense_post, reward=reward.repeat_interleave(L, dim=1))
    torch.testing.assert_close(dw, dense.step().view(3, 2, 3, 3) / B, rtol=1e-9, atol=1e-12)


def test_state_dict_round_trips_mid_window_with_rewards():
    pre, post, reward = spikes(8)
    whole = make("mstdpet", per_sample=True, chunk_size=6)
    whole.observe(pre, post, reward=reward)
    total = whole.step()
    a = make("mstdpet", per_sample=True, chunk_size=6)
    a.observe(pre[:17], post[:17], reward=reward[:17])
    sd = copy.deepcopy(a.state_dict())
    b = make("mstdpet", per_sample=True, chunk_size=6)
    b.load_state_dict(sd)
    b.observe(pre[17:], post[17:], reward=reward[17:])
    torch.testing.assert_close(b.step(), total)


@pytest.mark.parametrize(
    "action, exc, words",
    [
        ("reward_before_step", RuntimeError, "after the forward"),
        ("per_sample_values", ValueError, "per_sample=True"),
        ("nan_reward", ValueError, "NaN"),
        ("reward_shape", ValueError, "reward"),
        ("observe_reward_shape", ValueError, "reward"),
        ("observe_nan_reward", ValueError, "NaN"),
        ("observe_per_sample_values", ValueError, "per_sample=True"),
        ("window_without_tracking", ValueError, "window_reward"),
    ],
)
def test_bad_rewards_raise_and_change_nothing(action, exc, words):
    rule = make("mstdp", chunk_size=100)
    pre, post, _ = spikes(9, T=5)
    if action != "reward_before_step":
        rule.observe(pre, post)
    before = (rule._mod.tensor(), rule._pre.n, rule._post.n)
    with pytest.raises(exc, match=words):
        if action == "reward_before_step":
            rule.reward(1.0)
        elif action == "per_sample_values":
            rule.reward(torch.tensor([1.0, 2.0, 3.0]))
        elif action == "nan_reward":
            rule.reward(float("nan"))
        elif action == "reward_shape":
            rule.reward(torch.ones(5))
        elif action == "observe_reward_shape":
            rule.observe(pre, post, reward=torch.ones(4))
        elif action == "observe_nan_reward":
            rule.observe(pre, post, reward=torch.tensor([1.0, 0.0, float("nan"), 0.0, 0.0]))
        elif action == "observe_per_sample_values":
            rule.observe(pre, post, reward=torch.arange(15.0).view(5, 3))
        elif action == "window_without_tracking":
            rule.step(reward=1.0)
    after = (rule._mod.tensor(), rule._pre.n, rule._post.n)
    assert after[1:] == before[1:]
    assert (before[0] is None and after[0] is None) or torch.equal(before[0], after[0])


@pytest.mark.parametrize(
    "make_rule, exc, words",
    [
        (lambda fc, lif: pl.MSTDP(fc, lif, **PAIR, gamma=-1.0), ValueError, "gamma"),
        (lambda fc, lif: pl.MSTDPET(fc, lif, **PAIR, tau_e=0.0), ValueError, "tau_e"),
        (lambda fc, lif: pl.DopamineSTDP(fc, lif, tau_d=-5.0), ValueError, "tau_d"),
        (lambda fc, lif: pl.MSTDP(fc, lif, **PAIR, per_sample="yes"), TypeError, "per_sample"),
    ],
)
def test_bad_construction(make_rule, exc, words):
    fc, lif = nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
    with pytest.raises(exc, match=words):
        make_rule(fc, lif)
    assert not fc._forward_pre_hooks


@pytest.mark.parametrize("kind", KINDS)
def test_modulated_rules_on_every_device(kind, device):
    pre, post, reward = spikes(10)
    if kind == "dopamine":
        reward = reward.abs()
    rule = make(kind, per_sample=True, chunk_size=6)
    rule.to(device)
    rule.synapse.to(device)
    rule.observe(pre.to(device), post.to(device), reward=reward.to(device))
    dw = rule.step()
    assert dw.device.type == device.type
    torch.testing.assert_close(dw.cpu(), reference(kind, pre, post, reward), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
def test_graded_spikes_same_on_both_kernels(kind, coincident):
    """Graded amplitudes weigh each event alike on the GEMM and the post-events paths."""
    pre, post, reward = spikes(8, B=2)
    g = torch.Generator().manual_seed(9)
    pre = pre * torch.rand(pre.shape, generator=g, dtype=torch.float64) * 2
    post = post * torch.rand(post.shape, generator=g, dtype=torch.float64) * 2
    reward = reward[:, :1].expand(-1, 2).abs()
    out = []
    for kernel in ("dense", "sparse"):
        rule = make(kind, coincident=coincident, chunk_size=7, kernel=kernel, spikes="graded")
        rule.observe(pre, post, reward=reward)
        out.append(rule.step())
    torch.testing.assert_close(out[1], out[0], rtol=1e-10, atol=1e-12)
