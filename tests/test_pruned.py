"""Dense layers with masks (issue 25, item 3): a ``torch.nn.utils.prune`` mask on an
``nn.Linear`` is honoured by every rule, through hooks and ``observe``, with every
optimizer of the library and torch's, soft bounds, L1 normalization and checkpoints:
absent synapses never change and stay exactly 0; present ones learn exactly as the same
rule on a plain layer holding ``weight_orig * weight_mask`` (float64, 1e-12)."""

from __future__ import annotations

import io

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.nn.utils import prune

import plasticity as pl
from plasticity import post, pre, weight

N_IN, N_OUT, T, B = 9, 6, 24, 2
PAIR = dict(a_plus=0.05, a_minus=0.06, tau_plus=3.0, tau_minus=4.0)

RULES = {
    "STDP": lambda fc, lif: pl.STDP(fc, lif, **PAIR),
    "STDP-nearest-both": lambda fc, lif: pl.STDP(fc, lif, trace="nearest", coincident="both",
                                                 **PAIR),  # fmt: skip
    "TripletSTDP": lambda fc, lif: pl.TripletSTDP(
        fc, lif, a2_plus=0.02, a3_plus=0.01, a2_minus=0.03, a3_minus=0.001, tau_plus=3.0,
        tau_minus=4.0, tau_x=10.0, tau_y=8.0),  # fmt: skip
    "MSTDP": lambda fc, lif: pl.MSTDP(fc, lif, **PAIR),
    "MSTDPET": lambda fc, lif: pl.MSTDPET(fc, lif, tau_e=5.0, **PAIR),
    "DopamineSTDP": lambda fc, lif: pl.DopamineSTDP(fc, lif, tau_c=6.0, tau_d=4.0, **PAIR),
    "Oja": lambda fc, lif: pl.Oja(fc, lif, eta=0.05, tau_rate=4.0),
    "BCM": lambda fc, lif: pl.BCM(fc, lif, eta=0.05, tau_theta=4.0, tau_rate=3.0),
    "SynapticScaling": lambda fc, lif: pl.SynapticScaling(
        fc, lif, target_rate=0.05, tau_rate=4.0, eta=0.05),  # fmt: skip
    "Clopath": lambda fc, lif: pl.Clopath(
        fc, lif, a_ltd=0.01, a_ltp=0.02, theta_minus=0.1, theta_plus=0.4, tau_minus=6.0,
        tau_plus=4.0, tau_x=5.0),  # fmt: skip
    "VogelsSprekeler": lambda fc, lif: pl.VogelsSprekeler(fc, lif, eta=0.05, alpha=0.2, tau=5.0),
    "Rule": lambda fc, lif: pl.Rule(
        fc, lif, pos=0.04 * post.spike * pre.trace(3.0) + 0.01 * pre.spike,
        neg=0.05 * post.trace(4.0).before * pre.spike + 0.02 * post.spike * weight),  # fmt: skip
}

OPTIMIZERS = {
    "SGD": lambda p, mask: torch.optim.SGD([p], lr=1.0),
    "Adam": lambda p, mask: torch.optim.Adam([p], lr=0.01),
    "Clamped": lambda p, mask: pl.ClampedParameterOptimizer([p], lr=1.0, clamp_min=0.0,
                                                             clamp_max=1.0),  # fmt: skip
    "Clamped-Adam": lambda p, mask: pl.ClampedParameterOptimizer(
        [p], torch.optim.Adam, lr=0.01, clamp_min=0.05, clamp_max=1.0),  # fmt: skip
    "L1": lambda p, mask: pl.L1NormalizedParameterOptimizer([p], lr=1.0, norm=2.0, mask=mask),
}


def leaky():
    return snn.Leaky(beta=0.8, spike_grad=snn.surrogate.StraightThroughEstimator.apply)


def linear(seed):
    g = torch.Generator().manual_seed(seed)
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(0.1 + 0.4 * torch.rand(N_OUT, N_IN, generator=g, dtype=torch.float64))
    return fc


def pruned_pair(seed):
    """A pruned layer and a plain one holding its effective weight."""
    fc, ref = linear(seed), linear(seed)
    g = torch.Generator().manual_seed(seed + 100)
    mask = torch.rand(N_OUT, N_IN, generator=g) < 0.6
    mask[0] = False  # a post neuron with no synapse at all
    mask[1, 0] = True
    prune.custom_from_mask(fc, "weight", mask)
    with torch.no_grad():
        ref.weight.mul_(mask)
    return fc, ref, mask.double()


def soft_bounds(rule):
    rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    return rule


def window(seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.4).double()
    y = (torch.rand(T, B, N_OUT, generator=g) < 0.3).double()
    v = torch.rand(T, B, N_OUT, generator=g, dtype=torch.float64)
    r = torch.linspace(-1.0, 1.0, T, dtype=torch.float64)
    return x, y, v, r


def drive(rule, fc, lif, path, data):
    """One window through the hooks (a forward pass per step) or ``observe``."""
    x, y, v, r = data
    plan = rule.plan
    if path == "observe":
        rule.observe(x, y, voltage=v if plan.reads_voltage else None,
                     reward=r if plan.reads_mod else None)  # fmt: skip
        return
    mem = lif.init_leaky()
    with torch.no_grad():
        for t in range(T):
            _, mem = lif(fc(x[t]), mem)
            if plan.reads_mod:
                rule.reward(float(r[t]))


# every rule through both paths with the clamping optimizer (soft bounds read the weight);
# every optimizer with a rule of each kind: pair, weight-dependent, declared
CASES = [(name, path, "Clamped") for name in sorted(RULES) for path in ("hooks", "observe")] + [
    (name, path, opt) for name in ("STDP", "Oja", "Rule") for path in ("hooks", "observe")
    for opt in sorted(OPTIMIZERS) if opt != "Clamped"]  # fmt: skip


@pytest.mark.parametrize("name, path, optimizer", CASES)
def test_every_rule_and_optimizer_honours_a_pruning_mask(name, path, optimizer):
    fc, ref_fc, mask = pruned_pair(seed=len(name) + len(optimizer))
    rule = soft_bounds(RULES[name](fc, leaky()))
    ref = soft_bounds(RULES[name](ref_fc, leaky()))
    assert rule.parameter is fc.weight_orig
    opt = OPTIMIZERS[optimizer](rule.parameter, fc.weight_mask)
    ref_opt = OPTIMIZERS[optimizer](ref_fc.weight, None)
    absent = mask == 0
    orig_absent = fc.weight_orig.detach()[absent].clone()
    learned = 0.0
    for w in range(3):
        data = window(10 * w + 1)
        drive(rule, fc, rule.neuron, path, data)
        drive(ref, ref_fc, ref.neuron, path, data)
        dw, ref_dw = rule.step(), ref.step()
        torch.testing.assert_close(dw, ref_dw * mask, rtol=1e-12, atol=1e-15)
        assert torch.all(dw[absent] == 0) and torch.equal(fc.weight_orig.grad, -dw)
        learned += float(dw.abs().sum())
        ref_fc.weight.grad = -(ref_dw * mask)  # the plain layer: its absent weights are 0
        opt.step(), ref_opt.step()
        opt.zero_grad(), ref_opt.zero_grad()
        with torch.no_grad():  # (clamp_min > 0 would give the plain layer's absent weights)
            ref_fc.weight.mul_(mask)
        effective = fc.weight_orig.detach() * fc.weight_mask
        assert torch.all(effective[absent] == 0)
        torch.testing.assert_close(effective, ref_fc.weight.detach(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(rule.weight, effective, rtol=0, atol=0)
        if optimizer in ("SGD", "Adam"):  # nothing but the rule's gradient moves them
            assert torch.equal(fc.weight_orig.detach()[absent], orig_absent)
    assert learned > 0
    if optimizer == "L1":  # each post neuron's stored weights sum to the norm
        rows = (effective.abs().sum(1))[mask.sum(1) > 0]
        torch.testing.assert_close(rows, torch.full_like(rows, 2.0), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["STDP", "MSTDPET", "Clopath", "Rule"])
def test_a_pruned_network_resumes_from_a_checkpoint_mid_window(name):
    """The rule's and the pruned layer's state_dicts (weight_orig, weight_mask) through
    torch.save / torch.load(weights_only=True) mid-window: the resumed copy ends the
    window with the same Δw, bit for bit, and absent synapses stay 0."""
    fc, _, mask = pruned_pair(seed=3)
    rule = soft_bounds(RULES[name](fc, leaky()))
    x, y, v, r = window(5)
    half = slice(0, T // 2), slice(T // 2, T)
    reads_v, reads_r = rule.plan.reads_voltage, rule.plan.reads_mod

    def part(target, s):
        target.observe(x[s], y[s], voltage=v[s] if reads_v else None,
                       reward=r[s] if reads_r else None)  # fmt: skip

    part(rule, half[0])
    buffer = io.BytesIO()
    torch.save({"rule": rule.state_dict(), "fc": fc.state_dict()}, buffer)
    part(rule, half[1])
    dw = rule.step()
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fc2 = linear(seed=77)
    prune.identity(fc2, "weight")
    fc2.load_state_dict(saved["fc"])
    assert torch.equal(fc2.weight_mask, fc.weight_mask)
    resumed = soft_bounds(RULES[name](fc2, leaky()))
    resumed.load_state_dict(saved["rule"])
    part(resumed, half[1])
    dw2 = resumed.step()
    assert torch.equal(dw, dw2) and torch.all(dw2[mask == 0] == 0) and dw2.abs().sum() > 0


def test_l1_normalization_with_a_mask_is_checked():
    w = torch.ones(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="`mask` has shape"):
        pl.L1NormalizedParameterOptimizer([w], lr=1.0, norm=2.0, mask=torch.ones(4, 3))
    with pytest.raises(TypeError, match="`mask` must be a tensor"):
        pl.L1NormalizedParameterOptimizer([w], lr=1.0, norm=2.0, mask=[[1, 0]])


def test_normalize_with_a_mask_against_a_loop():
    """Each row's stored entries scaled to an L1 sum of ``norm``; absent ones untouched;
    a row with nothing stored unchanged."""
    from plasticity.optim import normalize_

    g = torch.Generator().manual_seed(4)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 7, generator=g) < 0.5
    mask[2] = False
    expected = w.clone()
    for i in range(5):
        total = sum(abs(float(w[i, j])) for j in range(7) if mask[i, j])
        for j in range(7):
            if mask[i, j]:
                expected[i, j] = w[i, j] * 3.0 / total
    torch.testing.assert_close(normalize_(w, 3.0, mask=mask), expected, rtol=1e-14, atol=0)
