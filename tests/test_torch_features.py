"""Rules among torch's features: pruned and parametrized weights, activation checkpointing,
rewards in eval mode, copies (deepcopy, pickle), two adaptive thresholds on one neuron,
torch.compile, inference mode, lazy and meta-device synapses."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.parametrizations import spectral_norm, weight_norm
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

import plasticity as pl

PAIR = dict(a_plus=0.05, a_minus=0.06, tau_plus=3.0, tau_minus=4.0)


def soft_bounds(rule):
    """Bounds that read the weight (so a rule must read the right one)."""
    rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
    rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    return rule


def spikes(T, B, n, p, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < p).double()


def linear(n_in, n_out, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    fc = nn.Linear(n_in, n_out, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.rand(n_out, n_in, generator=g, dtype=torch.float64) * scale)
    return fc


def leaky():  # picklable (snnTorch's default surrogate is a closure)
    return snn.Leaky(beta=0.8, spike_grad=snn.surrogate.StraightThroughEstimator.apply)


def run(fc, lif, x, rule=None, reward=None):
    """Steps ``x`` ``[T, B, n]`` through fc and lif; returns the spikes."""
    mem, out = lif.init_leaky(), []
    with torch.no_grad():
        for t in range(x.shape[0]):
            s, mem = lif(fc(x[t]), mem)
            out.append(s)
            if reward is not None:
                rule.reward(reward[t])
    return torch.stack(out)


# ------------------------------------------------------------------ pruned weights

RULES = {
    "STDP": lambda fc, lif: pl.STDP(fc, lif, **PAIR),
    "TripletSTDP": lambda fc, lif: pl.TripletSTDP(
        fc, lif, a2_plus=0.02, a3_plus=0.01, a2_minus=0.03, a3_minus=0.001, tau_plus=3.0,
        tau_minus=4.0, tau_x=10.0, tau_y=8.0),  # fmt: skip
    "MSTDPET": lambda fc, lif: pl.MSTDPET(fc, lif, tau_e=5.0, **PAIR),
    "Oja": lambda fc, lif: pl.Oja(fc, lif, eta=0.05, tau_rate=4.0),
    "BCM": lambda fc, lif: pl.BCM(fc, lif, eta=0.05, tau_theta=4.0, tau_rate=3.0),
    "SynapticScaling": lambda fc, lif: pl.SynapticScaling(
        fc, lif, target_rate=0.05, tau_rate=4.0, eta=0.05),  # fmt: skip
    "Clopath": lambda fc, lif: pl.Clopath(
        fc, lif, a_ltd=0.01, a_ltp=0.02, theta_minus=0.1, theta_plus=0.4, tau_minus=6.0,
        tau_plus=4.0, tau_x=5.0),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_pruned_synapse_learns_through_weight_orig_and_absent_synapses_stay_zero(name):
    """Every rule on a synapse pruned by torch.nn.utils.prune: Δw is the masked Δw of the
    same rule on a plain synapse holding weight_orig * weight_mask; it goes to
    weight_orig.grad; over several windows (the bounds read the current effective weight)
    the two networks stay equal and the absent synapses stay exactly 0."""
    fc, ref_fc = linear(8, 5, seed=1, scale=0.5), linear(8, 5, seed=1, scale=0.5)
    torch.manual_seed(2)  # prune.random_unstructured draws from the global generator
    prune.random_unstructured(fc, "weight", amount=0.4)
    mask = fc.weight_mask.clone()
    assert 0 < mask.sum() < mask.numel()
    with torch.no_grad():
        ref_fc.weight.mul_(mask)
    orig_absent = fc.weight_orig.detach()[mask == 0].clone()
    lif, ref_lif = leaky(), leaky()
    rule, ref = (soft_bounds(RULES[name](f, n)) for f, n in ((fc, lif), (ref_fc, ref_lif)))
    assert rule.parameter is fc.weight_orig and ref.parameter is ref_fc.weight
    opt = pl.ClampedParameterOptimizer([rule.parameter], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    ref_opt = pl.ClampedParameterOptimizer([ref_fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    reward = torch.linspace(-1.0, 1.0, 30).tolist() if name == "MSTDPET" else None
    learned = 0.0
    for window in range(3):
        x = spikes(30, 2, 8, 0.4, seed=10 + window)
        s = run(fc, lif, x, rule, reward)
        ref_s = run(ref_fc, ref_lif, x, ref, reward)
        assert torch.equal(s, ref_s)
        dw, ref_dw = rule.step(), ref.step()
        expected = ref_dw * mask
        torch.testing.assert_close(dw, expected, rtol=1e-12, atol=1e-15)
        assert torch.all(dw[mask == 0] == 0)
        assert torch.equal(fc.weight_orig.grad, -dw)
        learned += float(dw.abs().sum())
        ref_fc.weight.grad = -expected
        opt.step(), ref_opt.step()
        opt.zero_grad(), ref_opt.zero_grad()
        effective = fc.weight_orig.detach() * fc.weight_mask
        torch.testing.assert_close(effective, ref_fc.weight.detach(), rtol=1e-12, atol=1e-15)
        assert torch.all(effective[mask == 0] == 0)
        assert torch.equal(fc.weight_orig.detach()[mask == 0], orig_absent)  # never changed
        torch.testing.assert_close(rule.weight, effective, rtol=0, atol=0)
    assert learned > 0


def test_a_pruned_synapse_read_by_observe_uses_the_current_effective_weight():
    """observe() runs no forward pass, so the pruned module's `weight` attribute is stale
    after an optimizer step: the bounds must read weight_orig * weight_mask as it is now."""
    fc, ref_fc = linear(6, 4, seed=3, scale=0.5), linear(6, 4, seed=3, scale=0.5)
    prune.l1_unstructured(fc, "weight", amount=0.5)
    mask = fc.weight_mask.clone()
    with torch.no_grad():
        ref_fc.weight.mul_(mask)
    rule = soft_bounds(pl.STDP(fc, leaky(), **PAIR))
    ref = soft_bounds(pl.STDP(ref_fc, leaky(), **PAIR))
    opt = pl.ClampedParameterOptimizer([fc.weight_orig], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    ref_opt = pl.ClampedParameterOptimizer([ref_fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    for window in range(3):
        pre, post = spikes(25, 2, 6, 0.4, 20 + window), spikes(25, 2, 4, 0.4, 30 + window)
        rule.observe(pre, post)
        ref.observe(pre, post)
        dw, ref_dw = rule.step(), ref.step()
        torch.testing.assert_close(dw, ref_dw * mask, rtol=1e-12, atol=1e-15)
        ref_fc.weight.grad = -(ref_dw * mask)
        opt.step(), ref_opt.step()
        opt.zero_grad(), ref_opt.zero_grad()
    torch.testing.assert_close(
        fc.weight_orig.detach() * mask, ref_fc.weight.detach(), rtol=1e-12, atol=1e-15
    )


def test_a_pruned_conv_synapse_learns_with_its_mask():
    conv = nn.Conv2d(2, 3, 3, bias=False).double()
    prune.l1_unstructured(conv, "weight", amount=0.5)
    mask = conv.weight_mask.clone()
    rule = pl.STDP(conv, leaky(), **PAIR)
    g = torch.Generator().manual_seed(4)
    pre = (torch.rand(6, 1, 2, 5, 5, generator=g) < 0.5).double()
    post = (torch.rand(6, 1, 3, 3, 3, generator=g) < 0.5).double()
    rule.observe(pre, post)
    dw = rule.step()
    assert dw.abs().sum() > 0 and torch.all(dw[mask == 0] == 0)
    assert torch.equal(conv.weight_orig.grad, -dw)


@pytest.mark.parametrize("no_grad", [False, True])
def test_the_optimizer_refuses_a_pruned_weight_and_names_weight_orig(no_grad):
    """A pruned module's `weight` is recomputed at every forward pass: an optimizer on it
    changes nothing that lasts (a leaf made under no_grad was accepted silently)."""
    fc = nn.Linear(4, 3, bias=False)
    with torch.no_grad() if no_grad else torch.enable_grad():
        prune.l1_unstructured(fc, "weight", amount=0.5)
    with pytest.raises(ValueError, match="weight_orig"):
        pl.ClampedParameterOptimizer([fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)


def _old_weight_norm(fc):
    return torch.nn.utils.weight_norm(fc)


def _old_spectral_norm(fc):
    return torch.nn.utils.spectral_norm(fc)


class Doubled(nn.Module):
    def forward(self, w):
        return 2 * w


@pytest.mark.parametrize(
    "make, words",
    [
        (weight_norm, "_WeightNorm"),
        (spectral_norm, "_SpectralNorm"),
        (lambda fc: torch.nn.utils.parametrize.register_parametrization(fc, "weight", Doubled()),
         "Doubled"),
        (_old_weight_norm, "WeightNorm"),
        (_old_spectral_norm, "SpectralNorm"),
    ],
    ids=["weight_norm", "spectral_norm", "custom", "old-weight_norm", "old-spectral_norm"],
)
def test_a_parametrized_weight_is_refused_by_name(make, words):
    """Δw is defined on the effective weight; a gradient on the computed tensor never
    reached the parameters (the rule 'learned' nothing). Refused at construction, and at
    step() when the parametrization came after the rule."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old forms are deprecated
        fc = make(nn.Linear(4, 3, bias=False))
    with pytest.raises(TypeError, match=words) as err:
        pl.STDP(fc, leaky(), **PAIR)
    assert "remove" in str(err.value) and "prune" in str(err.value)
    # short-term plasticity only scales the input: it works on any weight
    stp = pl.ShortTermPlasticity(fc, U=0.5, tau_rec=5.0)
    assert fc(torch.ones(2, 4)).shape == (2, 3) and stp.x is not None
    # parametrized after the rule was built: refused before anything is consumed
    fc2 = nn.Linear(4, 3, bias=False)
    rule = pl.STDP(fc2, leaky(), **PAIR)
    rule.observe(torch.ones(3, 1, 4), torch.ones(3, 1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        make(fc2)
    with pytest.raises(TypeError, match=words):
        rule.step()
    assert rule._pre.n == 3  # the window is still there


# ---------------------------------------------------------- activation checkpointing


def checkpointed_run(mode, modules=()):
    """20 steps of fc -> lif with an STDP rule, optionally inside checkpoint(); backward of
    a loss on the membrane potential; returns the rule's Δw."""
    fc, lif = linear(5, 4, seed=5, scale=0.8), leaky()
    rule = pl.STDP(fc, lif, **PAIR)
    for build in modules:
        build(fc, lif)
    x = spikes(20, 3, 5, 0.5, seed=6).requires_grad_()
    mem, loss = lif.init_leaky(), 0.0
    for t in range(20):
        if mode is None:
            _, mem = lif(fc(x[t]), mem)
        else:
            _, mem = checkpoint(lambda a, m: lif(fc(a), m), x[t], mem, use_reentrant=mode)
        loss = loss + mem.pow(2).sum()
    loss.backward()
    assert fc.weight.grad is not None
    fc.weight.grad = None
    return rule.step()


@pytest.mark.parametrize("reentrant, early_stop", [(True, True), (False, True), (False, False)])
def test_activation_checkpointing_does_not_observe_the_recomputation(reentrant, early_stop):
    """torch.utils.checkpoint re-runs the forward pass during backward: those steps were
    counted twice (re-entrant: Δw off by ~80 % here) or left a stray input behind."""
    plain = checkpointed_run(None)
    assert plain.abs().sum() > 0
    with warnings.catch_warnings(record=True) as caught, set_checkpoint_early_stop(early_stop):
        warnings.simplefilter("always")
        dw = checkpointed_run(reentrant)
    assert not [w for w in caught if "synapse" in str(w.message)], [str(w.message) for w in caught]
    torch.testing.assert_close(dw, plain, rtol=0, atol=0)


@pytest.mark.parametrize("reentrant", [True, False])
@pytest.mark.parametrize("which", ["stp", "threshold"])
def test_stateful_modules_in_a_checkpointed_segment_are_refused_at_the_recomputation(
    reentrant, which
):
    """Their state moved on since the step, so a recomputation would differ from the
    forward pass (and adapt again): a clear error, not wrong gradients."""
    build = {
        "stp": lambda fc, lif: pl.ShortTermPlasticity(fc, U=0.5, tau_rec=5.0),
        "threshold": lambda fc, lif: pl.AdaptiveThreshold(lif, theta_plus=0.1, tau_theta=5.0),
    }[which]
    with pytest.raises(RuntimeError, match="checkpoint"):
        checkpointed_run(reentrant, [build])


# ------------------------------------------------------------------ rewards in eval


@pytest.mark.parametrize("switch", ["rule", "synapse"])
def test_rewards_in_eval_mode_are_ignored(switch):
    """Evaluation steps are not observed; their rewards used to be added to the last
    training step (ten eval calls became a reward of 10)."""
    x = spikes(12, 2, 5, 0.5, seed=7)
    results = []
    for evaluate in (False, True):
        fc, lif = linear(5, 3, seed=8, scale=0.8), leaky()
        rule = pl.MSTDP(fc, lif, **PAIR)
        run(fc, lif, x, rule, reward=[1.0] * 12)
        if evaluate:
            module = rule if switch == "rule" else fc
            module.eval()
            assert not rule.learning
            run(fc, lif, x[:10], rule, reward=[1.0] * 10)
            rule.reward(torch.ones(2))
            module.train()
        results.append(rule.step())
    assert results[0].abs().sum() > 0
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)


# ---------------------------------------------------------------------- copies


class Net(nn.Module):
    """A network that holds its plasticity modules."""

    def __init__(self):
        super().__init__()
        self.fc, self.lif = linear(5, 4, seed=9, scale=2.0), leaky()
        self.stdp = pl.STDP(self.fc, self.lif, **PAIR)
        self.stp = pl.ShortTermPlasticity(self.fc, U=0.4, tau_rec=6.0)
        self.threshold = pl.AdaptiveThreshold(self.lif, theta_plus=0.05, tau_theta=10.0)


def hook_counts(net):
    modules = (net.fc, net.lif)
    return [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in modules]


COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda obj: pickle.loads(pickle.dumps(obj))}


@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_copy_of_a_network_has_one_set_of_hooks_reported_truly(how):
    """deepcopy/pickle of a network with rules: the copies are attached to the copied
    modules exactly once (hooks used to be there while `attached` said False, and
    attach() added a second set: STP scaled its input twice); detach removes them all."""
    net = Net()
    x = spikes(16, 2, 5, 0.5, seed=11)
    run(net.fc, net.lif, x[:6])  # mid-window, mid-adaptation
    counts = hook_counts(net)
    twin = COPIES[how](net)
    assert twin.stdp.synapse is twin.fc and twin.stp.synapse is twin.fc
    assert twin.stdp.neuron is twin.lif and twin.threshold.neuron is twin.lif
    assert twin.stdp.attached and twin.stp.attached and twin.threshold.attached
    assert hook_counts(twin) == counts
    twin.stdp.attach(), twin.stp.attach()  # already attached: nothing more
    assert hook_counts(twin) == counts
    # the copy learns and transmits as the original, and leaves the original alone
    s, s_twin = run(net.fc, net.lif, x[6:]), run(twin.fc, twin.lif, x[6:])
    assert torch.equal(s, s_twin) and s.sum() > 0
    torch.testing.assert_close(twin.lif.threshold, net.lif.threshold, rtol=0, atol=0)
    torch.testing.assert_close(twin.stdp.step(), net.stdp.step(), rtol=0, atol=0)
    for module in (twin.stdp, twin.stp, twin.threshold):
        module.detach()
        assert not module.attached
    assert hook_counts(twin) == [(0, 0), (0, 0)] and hook_counts(net) == counts
    assert torch.equal(twin.lif.threshold, twin.threshold.base)  # restored on detach
    twin.stp.attach()
    twin.stp.reset()
    assert len(twin.fc._forward_pre_hooks) == 1
    ones = torch.ones(1, 5, dtype=torch.float64)
    assert torch.equal(twin.fc(ones), nn.functional.linear(0.4 * ones, twin.fc.weight))


@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_copy_of_a_rule_alone_and_of_a_detached_rule(how):
    fc, lif = linear(5, 4, seed=12), leaky()
    rule = pl.STDP(fc, lif, **PAIR)
    twin = COPIES[how](rule)  # copies its synapse and neuron with it
    assert twin.attached and twin.synapse is not fc and twin.neuron is not lif
    assert len(twin.synapse._forward_pre_hooks) == 1 and len(fc._forward_pre_hooks) == 1
    x = spikes(10, 2, 5, 0.5, seed=13)
    run(twin.synapse, twin.neuron, x)
    assert twin._post.n == 10 and rule._post.n == 0
    twin.detach()
    assert not twin.synapse._forward_pre_hooks and not twin.neuron._forward_hooks
    rule.detach()
    again = COPIES[how](rule)
    assert not again.attached and not again.synapse._forward_pre_hooks
    again.attach()
    assert len(again.synapse._forward_pre_hooks) == 1


# ---------------------------------------------------------- two adaptive thresholds


def test_a_second_adaptive_threshold_on_a_neuron_is_refused_and_detach_restores():
    lif = snn.Leaky(beta=0.9, init_hidden=True)
    first = pl.AdaptiveThreshold(lif, theta_plus=0.1, tau_theta=100.0)
    for _ in range(5):
        lif(torch.full((1, 3), 2.0))
    assert bool((lif.threshold > 1.0).all())
    with pytest.raises(ValueError, match="already has an AdaptiveThreshold"):
        pl.AdaptiveThreshold(lif, theta_plus=0.1, tau_theta=100.0)
    first.detach()
    assert torch.equal(lif.threshold, torch.ones(()))
    second = pl.AdaptiveThreshold(lif, theta_plus=0.1, tau_theta=100.0)  # a replacement
    assert torch.equal(second.base, torch.ones(()))
    second.detach()
    assert torch.equal(lif.threshold, torch.ones(()))


# --------------------------------------------------------------------- torch.compile


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lif = linear(6, 4, seed=14, scale=0.8), leaky()

    def forward(self, x, mem):
        return self.lif(self.fc(x), mem)


def compiled_run(backend, T=30, others=True):
    """A network with a rule (and with ``others`` STP and an adaptive threshold), compiled
    (or not: backend None); returns Δw of two windows, the spikes, the threshold and the
    number of graphs made after each step."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net = Small()
    rule = soft_bounds(pl.STDP(net.fc, net.lif, **PAIR, chunk_size=7))
    if others:
        pl.ShortTermPlasticity(net.fc, U=0.6, tau_rec=4.0)
        pl.AdaptiveThreshold(net.lif, theta_plus=0.05, tau_theta=10.0)
    graphs = []

    def counting(gm, inputs):
        graphs.append(gm)
        return gm.forward

    step = net if backend is None else torch.compile(net, backend=backend or counting)
    x = spikes(T, 2, 6, 0.5, seed=15)
    out, dws, seen = [], [], []
    with torch.no_grad():
        for _ in range(2):
            mem = net.lif.init_leaky()
            for t in range(T):
                s, mem = step(x[t], mem)
                out.append(s)
                seen.append(len(graphs) or counters["stats"]["unique_graphs"])
            dws.append(rule.step())
    torch._dynamo.reset()
    return dws, torch.stack(out), net.lif.threshold.clone(), seen


def test_a_compiled_network_learns_as_the_eager_one_and_compiles_a_few_graphs_once():
    """torch.compile traced the hooks and recompiled at every step as the step buffers grew
    (570 s without a second step, with inductor); the hooks now run outside the graphs."""
    dws, s, threshold, _ = compiled_run(None)
    c_dws, c_s, c_threshold, seen = compiled_run("")  # a counting backend: the FX graphs
    assert s.sum() > 0 and torch.equal(c_s, s)
    torch.testing.assert_close(c_threshold, threshold, rtol=0, atol=0)
    for c_dw, dw in zip(c_dws, dws, strict=True):
        assert dw.abs().sum() > 0
        torch.testing.assert_close(c_dw, dw, rtol=0, atol=0)
    assert seen[2] == seen[-1] <= 8  # nothing compiled after the second step


@pytest.mark.slow
def test_a_compiled_network_learns_with_the_default_backend():
    """The default backend (inductor) at a small size, the rule alone (the eager backend
    above has STP and an adaptive threshold too): 5-25 s of compiling on 2 busy cores."""
    dws, s, threshold, _ = compiled_run(None, T=10, others=False)
    c_dws, c_s, c_threshold, seen = compiled_run("inductor", T=10, others=False)
    assert seen[2] == seen[-1] > 0  # nothing compiled after the second step
    assert torch.equal(c_s, s)
    torch.testing.assert_close(c_threshold, threshold, rtol=1e-12, atol=1e-12)
    for c_dw, dw in zip(c_dws, dws, strict=True):
        torch.testing.assert_close(c_dw, dw, rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------------- inference mode


def test_observe_and_hooks_inside_inference_mode_learn_and_later_calls_work():
    """Buffers, traces and state made inside torch.inference_mode were inference tensors:
    every later in-place update outside it failed."""
    x = spikes(24, 2, 5, 0.5, seed=16)
    results = []
    for inference in (False, True):
        fc, lif = linear(5, 3, seed=17, scale=0.8), leaky()
        rule = soft_bounds(pl.MSTDP(fc, lif, **PAIR, chunk_size=5))
        stp = pl.ShortTermPlasticity(fc, U=0.5, tau_rec=5.0)
        adapt = pl.AdaptiveThreshold(lif, theta_plus=0.05, tau_theta=10.0)
        mode = torch.inference_mode if inference else torch.no_grad
        with mode():  # the first part: through the hooks, buffers and states made here
            s1 = run(fc, lif, x[:12], rule, reward=[0.5] * 12)
            rule.observe(x[:4], s1[:4], reward=1.0)
        s2 = run(fc, lif, x[12:], rule, reward=[0.5] * 12)  # outside: in place on them
        rule.observe(x[4:9], s2[4:9], reward=-1.0)
        dw = rule.step()
        with mode():
            dw2 = rule.step()
        results.append((dw, torch.cat([s1, s2]), stp.x, adapt.theta, fc.weight.grad.clone()))
        assert dw2 is None and not fc.weight.grad.is_inference()
        assert not any(v.is_inference() for v in (stp.x, adapt.theta, lif.threshold))
    assert results[0][0].abs().sum() > 0
    for got, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


# ---------------------------------------------------------------- lazy and meta synapses


@pytest.mark.parametrize("build", [
    lambda: pl.STDP(nn.LazyLinear(3, bias=False), leaky(), **PAIR),
    lambda: pl.ShortTermPlasticity(nn.LazyConv2d(3, 3), U=0.5, tau_rec=5.0),
], ids=["rule", "stp"])  # fmt: skip
def test_a_lazy_synapse_is_refused_until_materialized(build):
    with pytest.raises(ValueError, match="lazy.*forward pass"):
        build()


def test_a_materialized_lazy_synapse_learns():
    fc = nn.LazyLinear(3, bias=False)
    fc(torch.zeros(1, 5))  # materialized: a Linear(5, 3)
    rule = pl.STDP(fc, leaky(), **PAIR)
    rule.observe(torch.ones(4, 1, 5), torch.ones(4, 1, 3))
    assert rule.step().shape == (3, 5)


@pytest.mark.parametrize("make", [
    lambda fc: pl.STDP(fc, leaky(), **PAIR),
    lambda fc: pl.ShortTermPlasticity(fc, U=0.5, tau_rec=5.0),
], ids=["rule", "stp"])  # fmt: skip
def test_a_meta_device_synapse_is_refused_with_what_to_do(make):
    fc = nn.Linear(4, 3, bias=False, device="meta")
    with pytest.raises(ValueError, match="meta device.*to_empty"):
        make(fc)


# ------------------------------------------------------------------------ monitors


def test_a_spike_monitor_records_each_step_once_under_checkpointing_and_inference_mode():
    """The monitor's hook is a hook like the rules': a checkpoint recomputation is not
    recorded again, and its columns made inside inference mode outlive it."""
    fc, lif = linear(5, 4, seed=18, scale=0.8), leaky()
    mon = pl.monitor.SpikeMonitor(lif)
    x = spikes(8, 1, 5, 0.5, seed=19).requires_grad_()
    mem, loss = lif.init_leaky(), 0.0
    for t in range(8):
        s, mem = checkpoint(lambda a, m: lif(fc(a), m), x[t], mem, use_reentrant=True)
        loss = loss + mem.sum()
    loss.backward()
    assert mon.numpy()["steps"].tolist() == list(range(8))
    fresh = pl.monitor.SpikeMonitor(lif)
    with torch.inference_mode():  # the first record: its columns are made here
        lif(fc(x[0].detach()), lif.init_leaky())
    lif(fc(x[1].detach()), lif.init_leaky())
    assert fresh.numpy()["steps"].tolist() == [0, 1]
