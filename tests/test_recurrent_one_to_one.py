"""snnTorch's one-to-one recurrence (RLeaky/RSynaptic with all_to_all=False) is refused clearly."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch

import plasticity as pl

PAIR = dict(a_plus=0.01, a_minus=0.01, tau_plus=5.0, tau_minus=5.0)


def _neuron(cls: str, **kw):
    if cls == "RLeaky":
        return snn.RLeaky(beta=0.9, **kw)
    return snn.RSynaptic(alpha=0.5, beta=0.9, **kw)


@pytest.mark.parametrize("cls", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("V", [None, "per-neuron"])
@pytest.mark.parametrize("what", ["recurrent", "neuron"])
def test_one_to_one_recurrence_is_refused_with_what_to_do_instead(cls, V, what):
    kw = {"all_to_all": False}
    if V is not None:
        kw["V"] = torch.rand(4)
    neuron = _neuron(cls, **kw)
    synapse = neuron.recurrent if what == "recurrent" else neuron
    hooks = (dict(neuron._forward_hooks), dict(neuron.recurrent._forward_pre_hooks))
    with pytest.raises(TypeError) as info:
        pl.STDP(synapse, neuron, **PAIR)
    message = str(info.value)
    for words in (
        "all_to_all=False",
        "elementwise",
        "not supported",
        "all_to_all=True",
        ".recurrent",
    ):
        assert words in message, words
    assert "its `.recurrent`)" not in message  # not the advice the user already followed
    assert (dict(neuron._forward_hooks), dict(neuron.recurrent._forward_pre_hooks)) == hooks


@pytest.mark.parametrize("cls", ["RLeaky", "RSynaptic"])
def test_the_all_to_all_recurrence_it_points_to_learns(cls):
    neuron = _neuron(cls, all_to_all=True, linear_features=4)
    rule = pl.STDP(neuron.recurrent, neuron, **PAIR)
    assert rule.weight is neuron.recurrent.weight
    # the neuron itself has no weight: the message names `.recurrent`
    with pytest.raises(TypeError, match=r"\.recurrent"):
        pl.STDP(neuron, neuron, **PAIR)
