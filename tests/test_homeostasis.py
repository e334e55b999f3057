"""Adaptive threshold, synaptic scaling and per-step weight normalization."""

from __future__ import annotations

import functools
import math

import pytest
import snntorch as snn
import torch
from torch import nn

import plasticity as pl


@pytest.mark.parametrize("init_hidden", [False, True])
def test_adaptive_threshold_equals_loop_and_works_through_snntorch(init_hidden):
    g = torch.Generator().manual_seed(0)
    lif = snn.Leaky(beta=0.8, init_hidden=init_hidden)
    adapt = pl.AdaptiveThreshold(lif, theta_plus=0.2, tau_theta=30.0)
    x = torch.rand(60, 4, 5, generator=g) * 0.9
    spikes = []
    mem = None if init_hidden else lif.init_leaky()
    theta = torch.zeros(5)
    threshold_seen = []
    for t in range(60):
        threshold_seen.append(
            lif.threshold.detach().clone().expand(5)
            if lif.threshold.ndim == 0
            else lif.threshold.clone()
        )
        if init_hidden:
            spk = lif(x[t])
        else:
            spk, mem = lif(x[t], mem)
        spikes.append(spk.detach())
        theta = theta * math.exp(-1 / 30.0) + 0.2 * spk.detach().mean(0)
    assert torch.stack(spikes).sum() > 0
    torch.testing.assert_close(adapt.theta, theta)
    torch.testing.assert_close(lif.threshold, 1.0 + theta)
    # the step's spikes raise the threshold used from the next step on
    torch.testing.assert_close(threshold_seen[1], 1.0 + 0.2 * spikes[0].mean(0))


def test_adaptive_threshold_lowers_the_rate_and_can_be_switched_off():
    x = torch.full((200, 1, 3), 0.6)

    def rate(adapting):
        lif = snn.Leaky(beta=0.9, init_hidden=True)
        adapt = pl.AdaptiveThreshold(lif, theta_plus=0.1, tau_theta=1e4) if adapting else None
        total = sum(float(lif(x[t]).mean()) for t in range(200))
        return total / 200, lif, adapt

    plain, _, _ = rate(False)
    adapted, lif, adapt = rate(True)
    assert adapted < 0.5 * plain
    adapt.eval()
    frozen = lif.threshold.clone()
    lif(x[0])
    torch.testing.assert_close(lif.threshold, frozen)
    adapt.detach()
    assert float(lif.threshold) == 1.0 and not lif._forward_hooks


def test_adaptive_threshold_bad_input():
    with pytest.raises(TypeError, match="threshold"):
        pl.AdaptiveThreshold(nn.ReLU(), theta_plus=0.1, tau_theta=10.0)
    with pytest.raises(ValueError, match="tau_theta"):
        pl.AdaptiveThreshold(snn.Leaky(beta=0.5), theta_plus=0.1, tau_theta=0.0)
    with pytest.raises(ValueError, match="theta_plus"):
        pl.AdaptiveThreshold(snn.Leaky(beta=0.5), theta_plus=-0.1, tau_theta=10.0)


def test_synaptic_scaling_equals_loop():
    g = torch.Generator().manual_seed(1)
    fc = nn.Linear(4, 3, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.randn(3, 4, generator=g, dtype=torch.float64))
    T, B = 20, 2
    pre = torch.rand(T, B, 4, generator=g, dtype=torch.float64)
    post = (torch.rand(T, B, 3, generator=g) < 0.3).double()
    rule = pl.SynapticScaling(
        fc, snn.Leaky(beta=0.5), target_rate=0.1, tau_rate=5.0, eta=0.05, chunk_size=6
    )
    rule.observe(pre, post)
    dw = rule.step()
    d, x = math.exp(-1 / 5.0), torch.zeros(B, 3, dtype=torch.float64)
    expected = torch.zeros(3, 4, dtype=torch.float64)
    for t in range(T):
        x = x * d + post[t]
        for b in range(B):
            expected += 0.05 * (0.1 - x[b] / 5.0)[:, None] * fc.weight.detach()
    torch.testing.assert_close(dw, expected / B, rtol=1e-9, atol=1e-12)


def test_conv_synaptic_scaling_sums_over_output_positions():
    g = torch.Generator().manual_seed(4)
    conv = nn.Conv1d(2, 3, 3, bias=False).double()
    T, B = 8, 2
    post = (torch.rand(T, B, 3, 4, generator=g) < 0.4).double()
    rule = pl.SynapticScaling(conv, snn.Leaky(beta=0.5), target_rate=0.2, tau_rate=4.0, eta=0.1)
    rule.observe(torch.rand(T, B, 2, 6, generator=g, dtype=torch.float64), post)
    dw = rule.step()
    d, x, gap = (
        math.exp(-1 / 4.0),
        torch.zeros(B, 3, 4, dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
    )
    for t in range(T):
        x = x * d + post[t]
        gap += (0.2 - x / 4.0).sum(dim=(0, 2))
    torch.testing.assert_close(
        dw, 0.1 * gap.view(3, 1, 1) * conv.weight.detach() / B, rtol=1e-9, atol=1e-12
    )


def test_synaptic_scaling_moves_the_rate_toward_the_target():
    g = torch.Generator().manual_seed(2)
    fc = nn.Linear(50, 1, bias=False)
    with torch.no_grad():
        fc.weight.fill_(0.2)
    lif = snn.Leaky(beta=0.9)
    rule = pl.SynapticScaling(fc, lif, target_rate=0.05, tau_rate=50.0, eta=0.02)
    opt = torch.optim.SGD([fc.weight], lr=1.0)
    rates = []
    with torch.no_grad():
        for _ in range(40):  # windows of 100 steps
            mem, count = lif.init_leaky(), 0.0
            for _ in range(100):
                spk, mem = lif(fc((torch.rand(1, 50, generator=g) < 0.1).float()), mem)
                count += float(spk.sum())
            rates.append(count / 100)
            rule.step()
            opt.step()
            opt.zero_grad()
    assert rates[0] > 0.2  # far above the target at first
    assert abs(sum(rates[-5:]) / 5 - 0.05) < 0.03


def test_weight_normalization_every_step_with_stdp():
    g = torch.Generator().manual_seed(3)
    fc = nn.Linear(20, 4, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.rand(4, 20, generator=g))
    lif = snn.Leaky(beta=0.8)
    stdp = pl.STDP(fc, lif, a_plus=0.05, a_minus=0.05, tau_plus=5.0, tau_minus=5.0)
    opt = pl.ChainedParamTransformingOptimizer(
        functools.partial(pl.ClampedParameterOptimizer, clamp_min=0.0, clamp_max=1.0),
        functools.partial(pl.L1NormalizedParameterOptimizer, norm=5.0),
        params=[fc.weight],
        lr=1.0,
    )
    mem = lif.init_leaky()
    with torch.no_grad():
        for _ in range(30):  # online: one window per step
            spk, mem = lif(fc((torch.rand(2, 20, generator=g) < 0.3).float()), mem)
            stdp.step()
            opt.step()
            opt.zero_grad()
            torch.testing.assert_close(fc.weight.abs().sum(1), torch.full((4,), 5.0))
