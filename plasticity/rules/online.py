"""A rule's window of one step (online learning: ``step()`` after every time step).

The step's rows go from the hooks' buffers (their kept row views: no slicing) to the
engine's one-step path (:func:`~plasticity.engine.window.run_one_step`), checked as a
chunk is (the ``spikes`` policy, overflows), without what a chunk of one step does not
need (chunk bounds, spike counts, kernel choice). A step the check refuses, and a plan
the one-step path does not evaluate (per-sample products), go the chunk way
(:meth:`PlasticityRule._process <plasticity.PlasticityRule._process>`), which names
what it refuses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..engine import Sink, run_one_step
from ..engine.run import NotFinite
from ..engine.step import steppable
from ..synapses import ConvSynapse
from .checks import _POST, _PRE, _VOLT, _fed_blocks, _overflow_message, _overflow_risk, _steps_valid

__all__: list[str] = []  # (the rule's plumbing: PlasticityRule.flush and _process call it)


def _overflowed(rule: Any, err: NotFinite, plan: Any, binary: bool, w: Tensor) -> None:
    """Raises the ``ValueError`` of a chunk of ``rule``'s window whose update is not
    finite (the chunks before it count: the state after them is kept)."""
    rule._state = err.state or (None if err.cleared else rule._state)
    h = rule._hooks
    h._window_steps += err.start
    inputs = ["graded spikes"] * (not binary) + ["membrane potentials"] * (
        plan.reads_voltage) + ["rewards"] * plan.reads_mod + ["fed signals"] * bool(
        plan.fed)  # fmt: skip
    raise ValueError(_overflow_message(h._window_steps, err, inputs, w.dtype)) from None


def _rows(hooks: Any, weight: Tensor) -> list[Tensor | None]:
    """The first buffered step of pre, post, voltage and third factor (``[B, ...]``), on
    the weight's device and dtype."""
    dtype, device = weight.dtype, weight.device
    rows = []
    for b in (hooks._pre, hooks._post, hooks._volt, hooks._mod):
        v = None if b is None else b.row(0)
        if v is not None and (v.dtype != dtype or v.device != device):  # (the weight moved)
            v = v.to(device=device, dtype=dtype)
        rows.append(v)
    return rows


def _one_step_window(rule: Any, hooks: Any, fed: dict[str, Tensor] | None) -> bool:
    """Runs ``rule`` on its one buffered step (``fed``: the fed signals' ``[1, B, ...]``
    views); ``False`` (nothing done) where the chunk path must: a plan with per-sample
    products, or a value the ``spikes`` policy refuses."""
    plan = rule.plan
    if not steppable(plan):
        return False
    w = rule._adapter.weight  # (a pruned synapse's weight is computed: once)
    pre, post, volt, mod = _rows(hooks, w)
    signals = None if fed is None else {k: v[0] for k, v in fed.items()}
    binary = rule.spikes == "binary"
    one = [(pre, binary, _PRE), (post, binary, _POST)]
    if volt is not None:
        one.append((volt, False, _VOLT))
    if signals:
        one += _fed_blocks(signals, hooks._signals)
    if hooks._unchecked and not _steps_valid(one):
        return False
    bounded, hold = _overflow_risk(plan, w, binary, one, mod, 1, [], True)
    adapter = rule._adapter
    try:  # (the rule's plain attributes, without nn.Module's __getattr__/__setattr__)
        rule.__dict__["_state"] = run_one_step(
            plan, {"pre": pre, "post": post, "voltage": volt, "mod": mod, **(signals or {})},
            rule._state, weight=w,
            geometry=adapter.geometry() if isinstance(adapter, ConvSynapse) else None,
            compute=torch.bfloat16 if rule.precision == "bf16" else None,
            receiver=Sink(rule._modules["accumulator"], rule._scale, rule._extras, 1, checked=not bounded,
                          hold=hold),
            record=rule._choice,
        )  # fmt: skip
    except NotFinite as err:
        _overflowed(rule, err, plan, binary, w)
    hooks._window_steps += 1
    return True
