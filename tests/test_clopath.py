"""Clopath et al. (2010): the slow reference on hand-computed steps, the model's vectorized
terms against it, the AdEx stand-in and the protocol's one-burst shortcut."""

from __future__ import annotations

import math

import pytest
import torch

from models import clopath
from models._adex import ADEX, AdEx
from tests.reference_clopath import clopath_reference

LN2 = math.log(2.0)
HALF = {"tau_minus": 1 / LN2, "tau_plus": 1 / LN2, "tau_x": 1 / LN2}  # every decay is 0.5
HAND = {"a_ltd": 2.0, "a_ltp": 3.0, "theta_minus": -70.0, "theta_plus": -20.0, **HALF, "dt": 1.0}


def three_steps():
    pre = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1)
    u = torch.tensor([-60.0, 0.0, -50.0]).view(3, 1, 1)
    return pre, torch.zeros_like(u), u


# By hand, d = 1/2 for every filter, spike increment 1/τx = ln 2:
#   x̄ = ln2, ln2/2, ln2 (1/4 + 1);  ū(−1) = u(0) = −60, ū = −60, −30, −40
#   LTD: t=0: pre · [ū(−1) + 70] = 10;  t=2: pre · [ū(1) + 70] = 40   -> 2 · 50 = 100
#   LTP: only t=1 has u > θ₊: x̄ · [0 + 20] · [ū(0) + 70] = ln2/2 · 20 · 10 -> 3 · 100 ln2
# init = −50: ū = −55, −27.5, ...: LTD 2 · (20 + 42.5) = 125; LTP 3 · ln2/2 · 20 · 15 = 450 ln2
# delay = 2: LTD reads ū(−2) := ū(−1) = −60 and ū(0) = −60: 2 · (10 + 10) = 40; LTP as delay 1
@pytest.mark.parametrize(
    "kw, ltp, ltd",
    [({}, 300 * LN2, 100.0), ({"init": -50.0}, 450 * LN2, 125.0), ({"delay": 2}, 300 * LN2, 40.0)],
)
def test_reference_on_three_hand_computed_steps(kw, ltp, ltd):
    got_ltp, got_ltd = clopath_reference(*three_steps(), **HAND, **kw)
    assert got_ltp.item() == pytest.approx(ltp, rel=1e-12)
    assert got_ltd.item() == pytest.approx(ltd, rel=1e-12)


def test_reference_potentiation_scales_with_dt_and_batch_is_the_mean():
    pre, post, u = three_steps()
    hand = {**HAND, "dt": 2.0, "tau_minus": 2 / LN2, "tau_plus": 2 / LN2, "tau_x": 2 / LN2}
    ltp, ltd = clopath_reference(pre, post, u, **hand)  # same decays; x̄ halves, × dt = 2
    assert ltp.item() == pytest.approx(300 * LN2, rel=1e-12) and ltd.item() == pytest.approx(100.0)
    silent = torch.zeros_like(pre)  # second sample: no pre spikes, so no change at all
    ltp2, ltd2 = clopath_reference(
        torch.cat([pre, silent], 1), torch.cat([post, post], 1), torch.cat([u, u], 1), **HAND
    )
    assert ltp2.item() == pytest.approx(150 * LN2) and ltd2.item() == pytest.approx(50.0)


def test_adex_spike_is_a_two_ms_plateau_and_stays_below_theta_plus_otherwise():
    current = torch.zeros(120, 1, 1, dtype=torch.float64)
    current[10] = clopath.PULSE_PA
    neuron, no_adp = AdEx(), AdEx(i_sp_pa=0.0)
    trace = torch.stack([neuron(c)[1] for c in current]).flatten()
    flat = torch.stack([no_adp(c)[1] for c in current]).flatten()
    assert trace[10].item() == trace[11].item() == ADEX["v_spike"]
    assert ADEX["e_l"] < trace[12].item() < ADEX["v_reset"]  # reset, then the afterpotential
    rest = torch.cat([trace[:10], trace[12:]])
    assert rest.max() < clopath.VISUAL_CORTEX["theta_plus"]  # LTP only during spikes
    assert trace[60] > flat[60] + 3.0  # the depolarizing afterpotential (z) holds it up
    with pytest.raises(TypeError, match="unknown AdEx parameter"):
        AdEx(tau_m=10.0)


def test_one_burst_stands_for_bursts_ten_seconds_apart():
    pre, current, bursts = clopath.pairing_protocol((20.0,), dt=1.0)
    # each burst after 3 s of silence, which the neuron forgets to 1e-10 (slowest mode
    # ~130 ms), as it forgets the 10 s between bursts. (It starts at E_L; its true rest, where
    # the exponential term balances the leak, is 7e-5 mV above, which the silence reaches.)
    silence = torch.zeros(3000, 1, 2, dtype=pre.dtype)
    one = (torch.cat([silence, pre]), torch.cat([silence, current]))
    two = (torch.cat([silence, pre, silence, pre]), torch.cat([silence, current, silence, current]))
    changes = []
    for p, c in (one, two):
        syn, neuron, spikes, mem = clopath.simulate(p, c)
        ltp, ltd = clopath._clopath_dw(syn, neuron, p, spikes, mem, delay=4, dt=1.0)
        changes.append(torch.diagonal(ltp - ltd))
    assert changes[0].abs().min() > 0
    torch.testing.assert_close(changes[1], 2 * changes[0], rtol=1e-9, atol=0.0)
    assert bursts.tolist() == [15.0, 15.0]


def test_adex_plugs_into_the_rule_hooks():
    import plasticity as pl

    pre, current, _ = clopath.pairing_protocol((50.0,))
    synapse = torch.nn.Linear(2, 2, bias=False, dtype=torch.float64)
    neuron = AdEx()
    stdp = pl.STDP(synapse, neuron, a_plus=1.0, a_minus=1.0, tau_plus=10.0, tau_minus=10.0)
    with torch.no_grad():
        for t in range(pre.shape[0]):
            spk, mem = neuron(0.0 * synapse(pre[t]) + current[t])
            assert neuron.mem is mem
    stdp.step()
    # pre->post pairs (first neuron) potentiate, post->pre pairs (second) depress
    assert synapse.weight.grad[0, 0] < 0 < synapse.weight.grad[1, 1]
