"""NaN or infinity in spikes: a named error with the step, and nothing lost before it.

The steps observed before the bad one count in the window (pair sums of exactly those
steps, tests/reference.py); traces, accumulator and weights are as they were before the
bad step, so learning continues as if the bad step and the discarded ones after it had
never been fed.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from reference import dense_reference
from torch import nn

import plasticity as pl

PAIR = dict(a_plus=0.5, a_minus=0.4, tau_plus=3.0, tau_minus=4.0)


def _spikes(seed: int, steps: int = 20, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    pre = (torch.rand(steps, batch, 5, generator=g) < 0.4).double()
    post = (torch.rand(steps, batch, 3, generator=g) < 0.4).double()
    return pre, post


def _pos_neg(rule):
    rule.flush()
    return rule.accumulator.pos, rule.accumulator.neg


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("side", ["pre", "post"])
@pytest.mark.parametrize("how", ["hooks", "observe"])
@pytest.mark.parametrize("spikes", ["binary", "graded"])
def test_a_bad_step_is_named_and_the_steps_before_it_count(value, side, how, spikes):
    pre, post = _spikes(1)
    bad_step, chunk = 11, 4  # in the middle of the third chunk
    bad_pre, bad_post = pre.clone(), post.clone()
    (bad_pre if side == "pre" else bad_post)[bad_step, 1, 2] = value
    fc = nn.Linear(5, 3, bias=False).double()
    weight = fc.weight.detach().clone()
    lif = snn.Leaky(beta=0.5)
    rule = pl.STDP(fc, lif, **PAIR, chunk_size=chunk, spikes=spikes)
    with pytest.raises(ValueError, match=rf"NaN or infinity at step {bad_step}\b") as err:
        if how == "observe":
            rule.observe(bad_pre, bad_post)
        else:
            for t in range(pre.shape[0]):
                rule._on_pre(fc, (bad_pre[t],), {})
                rule._on_post(lif, (), bad_post[t])
    assert "graded" not in str(err.value)  # not the advice for a non-binary value
    assert ("synapse's input" in str(err.value)) == (side == "pre")
    want = dense_reference(pre[:bad_step], post[:bad_step], PAIR)
    for got, ref in zip(_pos_neg(rule), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    assert torch.equal(fc.weight, weight)
    # learning continues from the traces before the bad step
    more_pre, more_post = _spikes(2, steps=9)
    rule.observe(more_pre, more_post)
    want = dense_reference(
        torch.cat([pre[:bad_step], more_pre]), torch.cat([post[:bad_step], more_post]), PAIR
    )
    for got, ref in zip(_pos_neg(rule), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


def test_a_bad_first_step_learns_nothing_and_step_counts_restart_each_window():
    pre, post = _spikes(3, steps=6)
    rule = pl.STDP(nn.Linear(5, 3, bias=False).double(), snn.Leaky(beta=0.5), **PAIR)
    rule.observe(pre, post)
    rule.step()
    bad = pre.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="at step 0 of this window"):
        rule.observe(bad, post)  # 6 steps are buffered: checked when they are processed
        rule.flush()
    assert rule.accumulator.counts == (0, 0)


def test_non_binary_values_still_discard_the_whole_call():
    """A value other than 0/1 under spikes='binary' is a configuration error (pass
    spikes='graded'): the whole call is refused, as before."""
    pre, post = _spikes(4)
    pre[15, 0, 0] = 0.5
    rule = pl.STDP(nn.Linear(5, 3, bias=False).double(), snn.Leaky(beta=0.5), **PAIR, chunk_size=4)
    with pytest.raises(ValueError, match="spikes='graded'"):
        rule.observe(pre, post)
    assert rule.accumulator.counts == (0, 0) and rule._state is None


@pytest.mark.parametrize("value", [1e-6, 1e-30, 0.5, 0.9])
@pytest.mark.parametrize("steps", [1, 40])
def test_a_tiny_or_fractional_spike_is_not_taken_for_binary(value, steps):
    """A value such as 1e-6 among many spikes: a sum of squares does not tell it from 0,
    and an event-driven kernel would count it as a whole spike (Δw then depends on the
    kernel). It is refused like any non-binary value, also in a one-step window."""
    g = torch.Generator().manual_seed(3)
    pre = (torch.rand(steps, 4, 200, generator=g) < 0.3).float()
    post = (torch.rand(steps, 4, 3, generator=g) < 0.3).float()
    pre[steps // 2, 1, 7] = value
    for kernel in ("dense", "sparse"):
        rule = pl.STDP(nn.Linear(200, 3, bias=False), snn.Leaky(beta=0.5), **PAIR, kernel=kernel)
        with pytest.raises(ValueError, match="not binary"):
            rule.observe(pre, post)
            rule.flush()  # a short sequence waits in the step buffers until then
        assert rule.accumulator.counts == (0, 0) and rule._state is None
