"""Oja and BCM against loops written from their equations; PCA and selectivity results."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plasticity as pl


def rates_loop(s, tau, dt):
    if tau is None:
        return s.clone()
    d, x, out = math.exp(-dt / tau), torch.zeros_like(s[0]), []
    for t in range(s.shape[0]):
        x = x * d + s[t]
        out.append(x / tau)
    return torch.stack(out)


def oja_loop(x, y, w, eta, reduction="mean"):
    T, B = x.shape[:2]
    dw = torch.zeros_like(w)
    for t in range(T):
        for b in range(B):
            for i in range(w.shape[0]):
                for j in range(w.shape[1]):
                    dw[i, j] += eta * (y[t, b, i] * x[t, b, j] - y[t, b, i] ** 2 * w[i, j])
    return dw / B if reduction == "mean" else dw


def bcm_loop(x, y, eta, tau_theta, dt=1.0, theta0=0.0, reduction="mean"):
    T, B, n_out = y.shape
    a = math.exp(-dt / tau_theta)
    theta = [theta0] * n_out
    dw = torch.zeros(n_out, x.shape[2], dtype=x.dtype)
    for t in range(T):
        for i in range(n_out):
            for b in range(B):
                for j in range(x.shape[2]):
                    dw[i, j] += eta * x[t, b, j] * y[t, b, i] * (y[t, b, i] - theta[i])
        for i in range(n_out):  # the threshold after step t
            theta[i] = a * theta[i] + (1 - a) * float((y[t, :, i] ** 2).mean())
    return dw / B if reduction == "mean" else dw


@pytest.mark.parametrize("tau_rate", [None, 4.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_oja_equals_loop(tau_rate, reduction):
    g = torch.Generator().manual_seed(0)
    fc = nn.Linear(4, 3, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.randn(3, 4, generator=g, dtype=torch.float64))  # signed weights
    T, B = 12, 2
    if tau_rate is None:
        pre = torch.randn(T, B, 4, generator=g, dtype=torch.float64)  # signed, graded input
        post = torch.randn(T, B, 3, generator=g, dtype=torch.float64)
    else:
        pre = (torch.rand(T, B, 4, generator=g) < 0.4).double()
        post = (torch.rand(T, B, 3, generator=g) < 0.4).double()
    rule = pl.Oja(
        fc, nn.Identity(), eta=0.05, tau_rate=tau_rate, batch_reduction=reduction, chunk_size=5
    )
    rule.observe(pre, post)
    dw = rule.step()
    x, y = rates_loop(pre, tau_rate, 1.0), rates_loop(post, tau_rate, 1.0)
    torch.testing.assert_close(
        dw, oja_loop(x, y, fc.weight.detach(), 0.05, reduction), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("tau_rate", [None, 3.0])
def test_bcm_equals_loop(tau_rate):
    g = torch.Generator().manual_seed(1)
    T, B = 15, 3
    pre = (
        (torch.rand(T, B, 4, generator=g) < 0.4).double()
        if tau_rate
        else torch.rand(T, B, 4, generator=g, dtype=torch.float64)
    )
    post = (
        (torch.rand(T, B, 2, generator=g) < 0.4).double()
        if tau_rate
        else torch.rand(T, B, 2, generator=g, dtype=torch.float64) * 2
    )
    rule = pl.BCM(
        nn.Linear(4, 2, bias=False).double(),
        nn.Identity(),
        eta=0.1,
        tau_theta=5.0,
        theta0=0.3,
        tau_rate=tau_rate,
        chunk_size=4,
    )
    rule.observe(pre, post)
    dw = rule.step()
    x, y = rates_loop(pre, tau_rate, 1.0), rates_loop(post, tau_rate, 1.0)
    torch.testing.assert_close(dw, bcm_loop(x, y, 0.1, 5.0, theta0=0.3), rtol=1e-9, atol=1e-12)


def test_conv_oja_equals_the_dense_rule_on_unfolded_patches():
    g = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
    T, B = 6, 2
    pre = torch.randn(T, B, 2, 4, 4, generator=g, dtype=torch.float64)
    post = torch.randn(T, B, 3, 4, 4, generator=g, dtype=torch.float64)
    rule = pl.Oja(conv, nn.Identity(), eta=0.01)
    rule.observe(pre, post)
    dw = rule.step()
    patches = F.unfold(pre.flatten(0, 1), 3, padding=1)
    L = patches.shape[-1]
    x = patches.view(T, B, 18, L).permute(0, 1, 3, 2).reshape(T, B * L, 18)
    y = post.view(T, B, 3, L).permute(0, 1, 3, 2).reshape(T, B * L, 3)
    expected = oja_loop(x, y, conv.weight.detach().view(3, 18), 0.01, "sum") / B
    torch.testing.assert_close(dw, expected.view(conv.weight.shape), rtol=1e-9, atol=1e-12)


def test_conv_bcm_equals_loop_over_patches():
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv1d(2, 2, 3, bias=False).double()
    T, B = 8, 2
    pre = torch.rand(T, B, 2, 6, generator=g, dtype=torch.float64)
    post = torch.rand(T, B, 2, 4, generator=g, dtype=torch.float64) * 2
    rule = pl.BCM(conv, nn.Identity(), eta=0.1, tau_theta=3.0)
    rule.observe(pre, post)
    dw = rule.step()
    # every (channel, position) is a BCM neuron with its own threshold; the weight is shared
    a = math.exp(-1 / 3.0)
    theta = torch.zeros(2, 4, dtype=torch.float64)
    expected = torch.zeros(2, 2, 3, dtype=torch.float64)
    for t in range(T):
        for b in range(B):
            for c in range(2):
                for p in range(4):
                    phi = post[t, b, c, p] * (post[t, b, c, p] - theta[c, p])
                    expected[c] += 0.1 * phi * pre[t, b, :, p : p + 3]
        theta = a * theta + (1 - a) * (post[t] ** 2).mean(0)
    torch.testing.assert_close(dw, expected / B, rtol=1e-9, atol=1e-12)


def test_oja_finds_the_principal_component():
    g = torch.Generator().manual_seed(4)
    # inputs with covariance C = Q diag(4, 1, 0.25) Q^T
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    cov = q @ torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)) @ q.T
    chol = torch.linalg.cholesky(cov)
    fc = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.randn(1, 3, generator=g, dtype=torch.float64) * 0.1)
    neuron = nn.Identity()
    rule = pl.Oja(fc, neuron, eta=0.005)
    opt = torch.optim.SGD([fc.weight], lr=1.0)
    with torch.no_grad():
        for _ in range(4000):
            x = (chol @ torch.randn(3, 1, generator=g, dtype=torch.float64)).T  # [B=1, 3]
            neuron(fc(x))
            rule.step()
            opt.step()
            opt.zero_grad()
    w = fc.weight.detach()[0]
    v1 = q[:, 0]
    assert abs(float(w @ v1)) / float(w.norm()) > 0.99  # aligned with the principal component
    assert float(w.norm()) == pytest.approx(1.0, abs=0.05)  # Oja normalizes the weights


def test_bcm_becomes_selective():
    """Two input patterns, a rectified linear neuron, BCM with a fast sliding threshold: the
    neuron ends up responding to one pattern only (Bienenstock et al. 1982)."""
    g = torch.Generator().manual_seed(5)
    patterns = torch.tensor([[1.0, 0.2], [0.2, 1.0]], dtype=torch.float64)
    fc = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.55, 0.5]], dtype=torch.float64))
    relu = nn.ReLU()
    rule = pl.BCM(fc, relu, eta=0.02, tau_theta=20.0)
    opt = torch.optim.SGD([fc.weight], lr=1.0)
    with torch.no_grad():
        for _ in range(6000):
            k = int(torch.randint(0, 2, (1,), generator=g))
            relu(fc(patterns[k : k + 1]))
            rule.step()
            opt.step()
            opt.zero_grad()
        rule.eval()  # learning off while we probe the responses
        responses = relu(fc(patterns)).flatten()
    strong, weak = float(responses.max()), float(responses.min())
    assert strong > 0.5 and weak < 0.1 * strong, responses


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda fc: pl.Oja(fc, nn.Identity(), eta=-0.1), ValueError, "eta"),
        (lambda fc: pl.Oja(fc, nn.Identity(), eta=0.1, tau_rate=0.0), ValueError, "tau_rate"),
        (lambda fc: pl.BCM(fc, nn.Identity(), eta=0.1, tau_theta=-1.0), ValueError, "tau_theta"),
        (
            lambda fc: pl.BCM(fc, nn.Identity(), eta=0.1, tau_theta=1.0, theta0=-1.0),
            ValueError,
            "theta0",
        ),
    ],
)
def test_bad_rate_rule_arguments(make, exc, words):
    fc = nn.Linear(2, 1, bias=False)
    with pytest.raises(exc, match=words):
        make(fc)
    assert not fc._forward_pre_hooks


def test_rate_rules_on_every_device(device):
    g = torch.Generator().manual_seed(6)
    pre = torch.rand(10, 2, 4, generator=g, dtype=torch.float64)
    post = torch.rand(10, 2, 3, generator=g, dtype=torch.float64)
    fc = nn.Linear(4, 3, bias=False).double().to(device)
    oja, bcm = pl.Oja(fc, nn.Identity(), eta=0.1), pl.BCM(fc, nn.Identity(), eta=0.1, tau_theta=4.0)
    for rule, expected in (
        (oja, oja_loop(pre, post, fc.weight.detach().cpu(), 0.1)),
        (bcm, bcm_loop(pre, post, 0.1, 4.0)),
    ):
        rule.observe(pre.to(device), post.to(device))
        dw = rule.step()
        assert dw.device.type == device.type
        torch.testing.assert_close(dw.cpu(), expected, rtol=1e-9, atol=1e-12)
