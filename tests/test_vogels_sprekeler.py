"""pl.VogelsSprekeler (Vogels et al. 2011 inhibitory STDP) against an explicit loop over
spike pairs in float64, written from the paper's equations (not from the engine)."""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch

import plasticity as pl


def pair_reference(pre, post, *, eta, alpha, tau, dt, coincident, nearest):
    """Δw [N_out, N_in] of one window, batch mean: η x_pre at every post spike, η (x_post − α)
    at every pre spike, the traces summed over spike pairs (all-to-all) or read from the
    latest spike of the other side (nearest). A same-step pair counts as pre-before-post
    ("ltp"), as both orders ("both") or not at all ("none")."""
    T, B, n_in = pre.shape
    n_out = post.shape[2]
    dw = torch.zeros(n_out, n_in, dtype=torch.float64)
    lag_ok_ltp = (lambda lag: lag >= 0) if coincident in ("ltp", "both") else (lambda lag: lag > 0)
    lag_ok_ltd = (lambda lag: lag >= 0) if coincident == "both" else (lambda lag: lag > 0)
    for b in range(B):
        for i in range(n_out):
            t_post = [t for t in range(T) if post[t, b, i]]
            for j in range(n_in):
                t_pre = [t for t in range(T) if pre[t, b, j]]
                total = 0.0
                for tp in t_post:  # potentiation by the presynaptic trace
                    lags = [tp - tq for tq in t_pre if lag_ok_ltp(tp - tq)]
                    if nearest:
                        lags = [min(lags)] if lags else []
                    total += eta * sum(math.exp(-lag * dt / tau) for lag in lags)
                for tq in t_pre:  # potentiation by the postsynaptic trace, constant depression
                    lags = [tq - tp for tp in t_post if lag_ok_ltd(tq - tp)]
                    if nearest:
                        lags = [min(lags)] if lags else []
                    total += eta * sum(math.exp(-lag * dt / tau) for lag in lags) - eta * alpha
                dw[i, j] += total
    return dw / B


def _trains(seed, T=120, B=3, n_in=5, n_out=4, p=0.08):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(T, B, n_in, generator=g, dtype=torch.float64) < p).double()
    post = (torch.rand(T, B, n_out, generator=g, dtype=torch.float64) < p).double()
    post[10, :, :] = 1.0  # same-step pairs, where the conventions differ
    pre[10, :, 0] = 1.0
    return pre, post


@pytest.mark.parametrize("coincident", ["ltp", "both", "none"])
@pytest.mark.parametrize("trace", ["all-to-all", "nearest"])
@pytest.mark.parametrize("kernel", ["dense", "sparse", "auto"])
def test_matches_spike_pair_loop(coincident, trace, kernel):
    pre, post = _trains(1)
    params = dict(eta=1e-3, alpha=0.12, tau=20.0)
    fc = torch.nn.Linear(5, 4, bias=False).double()
    rule = pl.VogelsSprekeler(fc, snn.Leaky(beta=0.9), **params, dt=0.5, coincident=coincident,
                              trace=trace, kernel=kernel, chunk_size=17)  # fmt: skip
    # two windows: the traces carry over exactly
    rule.observe(pre[:50], post[:50])
    dw = rule.step().clone()
    rule.observe(pre[50:], post[50:])
    dw += rule.step()
    ref = pair_reference(pre, post, **params, dt=0.5, coincident=coincident,
                         nearest=trace == "nearest")  # fmt: skip
    torch.testing.assert_close(dw, ref, rtol=0, atol=1e-15)


def test_paper_defaults_and_declaration():
    fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.9)
    rule = pl.VogelsSprekeler(fc, lif)
    # eta = 1e-4, tau_STDP = 20 ms, alpha = 2 * rho0 * tau with rho0 = 3 Hz = 0.003 / ms
    assert (rule.eta, rule.tau) == (1e-4, 20.0)
    assert rule.alpha == pytest.approx(2 * 0.003 * 20.0)
    decl = rule.declaration()
    assert str(decl["pos"]) == (
        "0.0001 * post.spike * pre.trace(20) + 0.0001 * post.trace(20).before * pre.spike"
    )
    assert str(decl["neg"]) == f"{1e-4 * 0.12} * pre.spike"


def test_rate_homeostasis_sign():
    """The drift is η ν_pre (2 ν_post τ − α) per unit time on independent trains: inhibition
    grows onto a neuron above the target rate and shrinks below it."""
    g = torch.Generator().manual_seed(3)
    T, B = 4000, 4
    pre = (torch.rand(T, B, 8, generator=g, dtype=torch.float64) < 0.01).double()  # 10 Hz
    fast = (torch.rand(T, B, 1, generator=g, dtype=torch.float64) < 0.01).double()  # 10 Hz
    slow = (torch.rand(T, B, 1, generator=g, dtype=torch.float64) < 0.001).double()  # 1 Hz
    out = []
    for post in (fast, slow):
        fc = torch.nn.Linear(8, 1, bias=False).double()
        rule = pl.VogelsSprekeler(fc, snn.Leaky(beta=0.9), eta=1e-3, dt=1.0)  # rho0 = 3 Hz
        rule.observe(pre, post)
        out.append(float(rule.step().mean()))
    assert out[0] > 0 > out[1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eta=-1e-4), "eta"),
        (dict(alpha=-0.1), "alpha"),
        (dict(tau=0.0), "tau"),
        (dict(tau=float("nan")), "tau"),
        (dict(eta="fast"), "eta"),
    ],
)
def test_bad_parameters(kwargs, match):
    fc = torch.nn.Linear(3, 2, bias=False)
    before = fc.weight.detach().clone()
    with pytest.raises((ValueError, TypeError), match=match):
        pl.VogelsSprekeler(fc, snn.Leaky(beta=0.9), **kwargs)
    assert torch.equal(fc.weight, before) and not fc._forward_pre_hooks


def test_hooks_match_observe():
    """Attached to a running snnTorch network, the rule sees what observe() is given."""
    torch.manual_seed(0)
    fc, lif = torch.nn.Linear(6, 3, bias=False).double(), snn.Leaky(beta=0.8)
    torch.nn.init.uniform_(fc.weight, 0.0, 1.0)
    rule = pl.VogelsSprekeler(fc, lif, eta=1e-2, tau=5.0)
    x = (torch.rand(60, 2, 6, dtype=torch.float64) < 0.3).double()
    mem, spikes = lif.init_leaky(), []
    with torch.no_grad():
        for t in range(60):
            spk, mem = lif(fc(x[t]), mem)
            spikes.append(spk)
    dw = rule.step()
    ref = pair_reference(x, torch.stack(spikes), eta=1e-2, alpha=0.12, tau=5.0, dt=1.0,
                         coincident="ltp", nearest=False)  # fmt: skip
    torch.testing.assert_close(dw, ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kernel", ["dense", "sparse", "auto"])
def test_one_step_windows(kernel):
    """step() after every step (the one-step path): the windows add up to the pair sums."""
    torch.manual_seed(1)
    fc, lif = torch.nn.Linear(6, 3, bias=False).double(), snn.Leaky(beta=0.8)
    torch.nn.init.uniform_(fc.weight, 0.0, 1.0)
    rule = pl.VogelsSprekeler(fc, lif, eta=1e-2, tau=5.0, kernel=kernel)
    x = (torch.rand(40, 2, 6, dtype=torch.float64) < 0.3).double()
    mem, spikes, total = lif.init_leaky(), [], torch.zeros(3, 6, dtype=torch.float64)
    with torch.no_grad():
        for t in range(40):
            spk, mem = lif(fc(x[t]), mem)
            spikes.append(spk)
            total += rule.step()
    ref = pair_reference(x, torch.stack(spikes), eta=1e-2, alpha=0.12, tau=5.0, dt=1.0,
                         coincident="ltp", nearest=False)  # fmt: skip
    torch.testing.assert_close(total, ref, rtol=0, atol=1e-14)
