"""Online learning: ``step()`` after every time step takes the one-step fast path
(:mod:`plasticity.engine.step`). Every built-in and user rules of every signal kind give,
window after window, what the chunk engine gives on the same one-step windows (the
chunk engine's own tests compare it with the slow references), in float64."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn

import plasticity as pl
import plasticity.engine.window as window
import plasticity.rules.online as online
from plasticity import modulator, post, pre, relu, weight

PAIR = dict(a_plus=0.5, a_minus=0.4, tau_plus=3.0, tau_minus=4.0)
CLOPATH = dict(a_ltd=0.3, a_ltp=0.2, theta_minus=0.1, theta_plus=0.5, tau_minus=5.0,
               tau_plus=3.0, tau_x=4.0)  # fmt: skip

RULES = {
    "STDP": lambda fc, n: pl.STDP(fc, n, **PAIR),
    "STDP both nearest": lambda fc, n: pl.STDP(fc, n, **PAIR, coincident="both", trace="nearest"),
    "STDP none": lambda fc, n: pl.STDP(fc, n, **PAIR, coincident="none"),
    "TripletSTDP": lambda fc, n: pl.TripletSTDP(
        fc,
        n,
        a2_plus=0.3,
        a3_plus=0.2,
        a2_minus=0.4,
        a3_minus=0.1,
        tau_plus=3.0,
        tau_minus=4.0,
        tau_x=6.0,
        tau_y=5.0,
    ),  # fmt: skip
    "MSTDP": lambda fc, n: pl.MSTDP(fc, n, **PAIR),
    "MSTDPET": lambda fc, n: pl.MSTDPET(fc, n, **PAIR, tau_e=7.0),
    "DopamineSTDP": lambda fc, n: pl.DopamineSTDP(fc, n, tau_c=9.0, tau_d=5.0),
    "Oja": lambda fc, n: pl.Oja(fc, n, eta=0.1),
    "BCM": lambda fc, n: pl.BCM(fc, n, eta=0.1, tau_theta=6.0),
    "SynapticScaling": lambda fc, n: pl.SynapticScaling(
        fc, n, target_rate=0.2, tau_rate=5.0, eta=0.1
    ),  # fmt: skip
    "Clopath": lambda fc, n: pl.Clopath(fc, n, **CLOPATH),
    "voltage-gated": lambda fc, n: pl.Rule(
        fc,
        n,
        pos=0.3 * relu(post.voltage - 0.4) * pre.trace(5.0),
        neg=0.2 * relu(0.4 - post.voltage) * pre.spike,
    ),  # fmt: skip
    "low-pass, batch mean, weight": lambda fc, n: pl.Rule(
        fc,
        n,
        pos=0.2 * post.voltage.lowpass(4.0, init=0.1) * pre.trace(3.0).batch_mean(),
        neg=0.1 * weight * (post.spike - post.trace(6.0).before) * pre.spike.lowpass(2.0),
    ),
    "third factor, signed sides": lambda fc, n: pl.Rule(
        fc, n, pos=modulator * (post.trace(3.0) - 0.5 * post.spike) * (pre.trace(2.0) ** 2)
    ),
    "delays": lambda fc, n: pl.Rule(
        fc,
        n,
        pos=post.spike * pre.trace(3.0).delayed(2),
        neg=post.spike.lowpass(2.0).previous * pre.spike,
    ),
}
READS_VOLTAGE = {"Clopath", "voltage-gated",
                 "low-pass, batch mean, weight"}  # fmt: skip
MODULATED = {"MSTDP", "MSTDPET", "DopamineSTDP", "third factor, signed sides"}


def _online(name: str, x, y, v, r, fast: bool, monkeypatch) -> tuple[list, list]:
    """Δw of every one-step window, and the kernel each product ran with."""
    g = torch.Generator().manual_seed(5)
    fc = nn.Linear(x.shape[2], y.shape[2], bias=False).double().to(x.device)
    with torch.no_grad():  # signed weights: the weight factor splits by sign
        fc.weight.copy_(torch.rand(fc.weight.shape, generator=g, dtype=torch.float64) - 0.3)
    rule = RULES[name](fc, snn.Leaky(beta=0.5))
    with monkeypatch.context() as m:
        if not fast:  # (the rule's one-step window and the engine's both ask)
            m.setattr(window, "steppable", lambda plan: False)
            m.setattr(online, "steppable", lambda plan: False)
        updates, kernels = [], set()
        for t in range(x.shape[0]):
            rule.observe(x[t : t + 1], y[t : t + 1], voltage=v[t : t + 1] if name in READS_VOLTAGE
                         else None, reward=r[t : t + 1] if name in MODULATED else None)  # fmt: skip
            updates.append(rule.step())
            kernels |= set(rule.kernel_choice.values())
    return updates, sorted(kernels)


@pytest.mark.parametrize("name", list(RULES))
def test_one_step_windows_equal_the_chunk_engine_on_one_step(name, device, monkeypatch):
    g = torch.Generator().manual_seed(2)
    steps, batch, n_in, n_out = 12, 3, 5, 4
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.4).double().to(device)
    y = (torch.rand(steps, batch, n_out, generator=g) < 0.4).double().to(device)
    v = torch.randn(steps, batch, n_out, generator=g, dtype=torch.float64).to(device)
    r = torch.randn(steps, generator=g, dtype=torch.float64).to(device)
    fast, fast_kernels = _online(name, x, y, v, r, True, monkeypatch)
    slow, slow_kernels = _online(name, x, y, v, r, False, monkeypatch)
    assert "one-step" not in slow_kernels
    assert fast_kernels == ["one-step"]
    assert any(u is not None and bool(u.abs().sum() > 0) for u in slow)  # something learned
    for t, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert (a is None) == (b is None), t
        if a is not None:
            assert a.device == x.device and a.dtype == torch.float64
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=f"{name}, window {t}")


def test_a_bad_step_in_an_online_window_changes_nothing():
    """The fast path's one check refuses what the chunk check refuses, before any change."""
    fc, lif = nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
    rule = pl.STDP(fc, lif, **PAIR)
    rule.observe(torch.ones(1, 1, 3), torch.ones(1, 1, 2))
    rule.step()
    state = {k: v.clone() for k, v in rule._state.items()}
    for bad, words in ((0.5, "not binary"), (float("nan"), "NaN"), (float("inf"), "NaN")):
        x = torch.zeros(1, 1, 3)
        x[0, 0, 1] = bad
        with pytest.raises(ValueError, match=words):
            rule.observe(x, torch.zeros(1, 1, 2))
            rule.step()
        assert rule.step() is None
        for k, val in state.items():
            assert torch.equal(rule._state[k], val)
