"""The hooks' pairing protocol: a neuron call is paired with the synapse output that fed it.

A reference pairs the steps by hand (the program below knows which synapse call fed
which neuron call) and computes the pair sums of tests/reference.py per segment between
resets; the rule, fed the same program through its hooks, must agree, whatever stray
calls, sequences and resets the program interleaves, and must warn exactly when a synapse
output is dropped.
"""

from __future__ import annotations

import warnings

import pytest
import snntorch as snn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import dense_reference
from torch import nn

import plasticity as pl

PAIR = dict(a_plus=0.5, a_minus=0.4, tau_plus=3.0, tau_minus=4.0)
N_IN, N_OUT, B = 5, 3, 2


class Program:
    """Runs actions on a real Linear + snn.Leaky pair and records the pairs by hand."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(N_IN, N_OUT, bias=False).double()
        with torch.no_grad():
            self.fc.weight.copy_(torch.rand(N_OUT, N_IN, generator=self.g, dtype=torch.float64))
        self.lif = snn.Leaky(beta=0.7, threshold=0.6)
        self.other = snn.Leaky(beta=0.7)  # a neuron the rule does not watch
        self.mem = self.lif.init_leaky()
        self.segments: list[tuple[list, list]] = [([], [])]
        self.stray = False  # a stray call that the next synapse call shows to be dropped
        self.dropped = False

    def spikes(self, *shape: int) -> torch.Tensor:
        return (torch.rand(*shape, B, N_IN, generator=self.g) < 0.5).double()

    def neuron(self, current: torch.Tensor) -> torch.Tensor:
        spk, self.mem = self.lif(current, self.mem)
        return spk

    def pair(self, x: torch.Tensor, spk: torch.Tensor) -> None:
        self.segments[-1][0].append(x.clone())
        self.segments[-1][1].append(spk.detach().clone())

    def run(self, action: str, rule: pl.PlasticityRule) -> None:
        if action != "reset":  # every other action calls the synapse
            self.dropped |= self.stray
            self.stray = False
        if action == "step":
            x = self.spikes()
            self.pair(x, self.neuron(self.fc(x)))
        elif action == "sequence":  # a [T, B, N] block through the synapse, then T calls
            x = self.spikes(3)
            current = self.fc(x)
            for t in range(3):
                self.pair(x[t], self.neuron(current[t]))
        elif action == "sanity":  # a call whose output never reaches the neuron
            self.fc(torch.zeros(B, N_IN, dtype=torch.float64))
            self.stray = True
        elif action == "other_neuron":  # the synapse feeding a neuron the rule does not watch
            self.other(self.fc(self.spikes()))
            self.stray = True
        elif action == "stray_then_step":  # a stray call, then a normal step
            self.fc(self.spikes())
            x = self.spikes()
            self.pair(x, self.neuron(self.fc(x)))
            self.dropped = True
        elif action == "reset":  # staged inputs are forgotten, silently
            self.stray = False
            rule.reset()
            self.mem = self.lif.init_leaky()
            self.segments.append(([], []))

    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.zeros(N_OUT, N_IN, dtype=torch.float64)
        neg = torch.zeros_like(pos)
        for pres, posts in self.segments:
            if pres:
                p, n = dense_reference(torch.stack(pres), torch.stack(posts), PAIR)
                pos, neg = pos + p, neg + n
        return pos, neg


ACTIONS = ["step", "step", "step", "sequence", "sanity", "other_neuron", "stray_then_step", "reset"]


@settings(max_examples=60, deadline=None)
@given(
    actions=st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=14),
    chunk=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_hooks_pair_each_neuron_call_with_the_synapse_output_that_fed_it(actions, chunk, seed):
    prog = Program(seed)
    rule = pl.STDP(prog.fc, prog.lif, **PAIR, chunk_size=chunk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            for action in [*actions, "step"]:  # a last step shows what was dropped
                prog.run(action, rule)
        rule.flush()
    pos, neg = prog.reference()
    got_pos = rule.accumulator.pos
    got_neg = rule.accumulator.neg
    got_pos = torch.zeros_like(pos) if got_pos is None else got_pos
    got_neg = torch.zeros_like(neg) if got_neg is None else got_neg
    torch.testing.assert_close(got_pos, pos, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got_neg, neg, rtol=1e-9, atol=1e-12)
    stray = [w for w in caught if "never reached" in str(w.message)]
    assert bool(stray) == prog.dropped


def test_a_sanity_call_before_the_loop_does_not_shift_the_pairs():
    """The defect the protocol fixes: one fc(zeros) before the loop shifted every pair."""
    results = []
    for sanity in (False, True):
        prog = Program(3)
        rule = pl.STDP(prog.fc, prog.lif, **PAIR)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if sanity:  # before the loop, with another batch size (as users write it)
                prog.fc(torch.zeros(4, N_IN, dtype=torch.float64))
            for _ in range(30):
                prog.run("step", rule)
        assert len([w for w in caught if "never reached" in str(w.message)]) == int(sanity)
        results.append(rule.step())
    assert torch.count_nonzero(results[0]) > 0
    torch.testing.assert_close(results[1], results[0], rtol=1e-12, atol=0)


def test_weight_sharing_is_a_warning_naming_the_case():
    prog = Program(4)
    rule = pl.STDP(prog.fc, prog.lif, **PAIR)
    x, y = prog.spikes(), prog.spikes()
    with pytest.warns(UserWarning, match="weight sharing"), torch.no_grad():
        prog.neuron(prog.fc(x) + prog.fc(y))
    assert rule._pre.n == rule._post.n == 1 and torch.equal(rule._pre.view(1)[0], y)


def test_a_neuron_called_without_the_synapse_is_ignored_with_a_warning():
    prog = Program(5)
    rule = pl.STDP(prog.fc, prog.lif, **PAIR)
    with pytest.warns(UserWarning, match="without an input"), torch.no_grad():
        prog.neuron(torch.ones(B, N_OUT, dtype=torch.float64))
    assert rule._pre.n == rule._post.n == 0


def test_step_names_a_neuron_that_is_never_called_and_nothing_piles_up():
    """The rule was given another neuron instance than the one in the forward pass."""
    prog = Program(6)
    rule = pl.STDP(prog.fc, snn.Leaky(beta=0.7), **PAIR)  # not prog.lif
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(500):
            prog.neuron(prog.fc(prog.spikes()))
    assert rule._pre.end <= 2  # at most two staged steps, never a growing backlog
    with pytest.warns(UserWarning, match=r"Leaky.*not called.*Linear.*500 unpaired steps"):
        assert rule.step() is None
    with warnings.catch_warnings():  # the next window starts clean
        warnings.simplefilter("error")
        assert rule.step() is None


def test_a_precomputed_sequence_learns_online_across_windows():
    """``cur = fc(x_seq)`` once, then one neuron call and one ``step()`` per step."""
    prog = Program(7)
    rule = pl.STDP(prog.fc, prog.lif, **PAIR)
    x = prog.spikes(12)
    dws = []
    with torch.no_grad():
        current = prog.fc(x)
        posts = []
        for t in range(12):
            posts.append(prog.neuron(current[t]))
            dws.append(rule.step())
    assert not rule._pending
    reference = dense_reference(x, torch.stack(posts), PAIR)
    total = sum(d for d in dws if d is not None)
    torch.testing.assert_close(total, reference[0] - reference[1], rtol=1e-9, atol=1e-12)
