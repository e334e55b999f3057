"""A rule's checkpoint: its state (the carried signals, buffered steps, the window's
extra sums) and the configuration that state belongs to, checked when it is loaded.

The state of a rule is keyed by its signals (the filter nodes and eligibility traces,
values equal by their exact fields); a checkpoint stores it by their exact text
(``"post.trace(20)"``, ``"pre.trace(20.000001)"``) in the format
``KEY_FORMAT`` (:mod:`plasticity.language.text`), recorded as ``key_format``. Checkpoints of
format 1 (without ``key_format``: numbers of six digits) still load: their names are
matched with the signals' 6-digit texts. A checkpoint of another configuration would
load without a word and restart what it does not know from zero. Each checkpoint therefore carries the configuration it was made with
(:func:`checkpoint_config`): the rule's class, the weight's shape, ``dt``, ``decay``,
``batch_reduction`` and the names of the state its declaration carries. Loading compares
them, and the names in the saved state, before anything is changed, and refuses a
difference by name. Amplitudes are not state: a checkpoint loads into a rule with other
amplitudes (a learning rate lowered for fine-tuning) wherever they leave the state's names
as they were. Checkpoints made before the configuration was saved carry only the names.
"""

from __future__ import annotations

from typing import Any

from ..buffers import StepBuffer
from ..language.text import KEY_FORMAT

__all__ = ["checkpoint_config", "state_tensor", "extra_state", "check_checkpoint", "load_extra_state",
           "state_holders"]


def state_holders(plan: Any, key_format: int = KEY_FORMAT) -> dict[str, Any]:
    """The signals of ``plan`` that carry state (filters, eligibility traces) by their
    key in checkpoints of ``key_format`` (1: 6-digit names, where two signals may share
    one: the first is kept, as those checkpoints held one state for both)."""
    attr = "key" if key_format >= 2 else "legacy_key"
    out: dict[str, Any] = {}
    for holder in (*plan.filters, *plan.eligibilities):
        out.setdefault(getattr(holder, attr), holder)
    return out


def _join(names: list[str] | set[str]) -> str:
    return ", ".join(sorted(names)) or "nothing"


def checkpoint_config(rule: Any, key_format: int = KEY_FORMAT) -> dict[str, Any]:
    """:meth:`~plasticity.PlasticityRule.checkpoint_config` of ``rule``: its class, the
    weight's shape, ``dt``, ``decay``, ``batch_reduction`` and the names of the state its
    declaration carries, written in ``key_format``.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
        >>> rule = pl.Rule(fc, lif, pos="post.spike * pre.trace(5)")
        >>> checkpoint_config(rule)["state"], checkpoint_config(rule)["weight"]
        (['pre.trace(5)'], [2, 3])
    """
    plan = rule.plan
    targets = {p.target for p in plan.products if p.target != "dw"}
    extras = {t for t in targets if isinstance(t, str)}
    attr = "key" if key_format >= 2 else "legacy_key"
    return {
        "rule": type(rule).__name__,
        "weight": [int(d) for d in rule.weight.shape],
        "dt": float(rule.dt),
        "decay": rule.decay,
        "batch_reduction": rule.batch_reduction,
        "state": sorted({getattr(f, attr) for f in plan.filters})
        + sorted({getattr(e, attr) for e in plan.eligibilities}) + sorted(extras),
    }


def state_tensor(rule: Any, name: Any) -> Any:
    """:meth:`~plasticity.PlasticityRule.state_tensor` of ``rule``."""
    if rule._state is None:
        return None
    if isinstance(name, str):
        names = {**state_holders(rule.plan, 1), **state_holders(rule.plan)}
        name = names.get(name, name)
    return rule._state.get(name)


def extra_state(rule: Any) -> dict[str, Any]:
    """What ``rule``'s ``get_extra_state`` saves: its carried state, buffered steps, the
    window's extra sums and kernel choices, and its :func:`checkpoint_config`."""
    hooks = rule._hooks
    return {
        "state": None if rule._state is None else {k.key: v.clone() for k, v in rule._state.items()},
        "key_format": KEY_FORMAT,
        "pre": hooks._pre.tensor(),
        "post": hooks._post.tensor(),
        "voltage": None if hooks._volt is None else hooks._volt.tensor(),
        "modulator": None if hooks._mod is None else hooks._mod.tensor(),
        "signals": None if hooks._signals is None else hooks._signals.state(),
        "batch": hooks._batch,
        "extras": {k: v.clone() for k, v in rule._extras.items()},
        "kernels": {k: list(v) for k, v in rule._kernels.items()},
        "config": checkpoint_config(rule),
    }


def _key_format(state: Any, where: str) -> int:
    """The key format of a rule's extra state, or an error if it is not one this reads."""
    if not isinstance(state, dict) or not {"state", "pre", "post", "batch"} <= state.keys():
        raise ValueError(f"{where}: the extra state is not a rule's")
    saved = state["state"]
    if saved is not None and not isinstance(saved, dict):
        raise ValueError(f"{where}: the state was saved by another version")
    key_format = state.get("key_format", 1)
    if not isinstance(key_format, int) or key_format > KEY_FORMAT:
        raise ValueError(f"{where}: the state's keys are of format {key_format!r}, of a "
                         f"newer version (this one reads formats 1 to {KEY_FORMAT})")  # fmt: skip
    return key_format


def _differences(mine: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """What differs between this rule's configuration ``mine`` and a saved ``state``'s."""
    theirs, diffs = state.get("config"), []
    if isinstance(theirs, dict):
        for key in ("rule", "weight", "dt", "decay", "batch_reduction"):
            if key in theirs and theirs[key] != mine[key]:
                diffs.append(f"{key}: saved {theirs[key]!r}, here {mine[key]!r}")
        names = set(theirs.get("state", ()))
    else:  # saved before the configuration was: the names of the saved state only
        names = set(state["state"] or ()) | set(state.get("extras") or ())
    known = set(mine["state"])
    if (names - known) or (isinstance(theirs, dict) and names != known):
        diffs.append(f"state: saved {_join(names - known)}, here {_join(known - names)}")
    return diffs


def check_checkpoint(rule: Any, state: Any) -> None:
    """Refuses a rule's extra state of another configuration than ``rule``'s, naming what
    differs."""
    where = f"{type(rule).__name__}.load_state_dict"
    diffs = _differences(checkpoint_config(rule, _key_format(state, where)), state)
    if diffs:
        raise ValueError(
            f"{where}: the checkpoint was saved by a rule of another configuration "
            f"({'; '.join(diffs)}); build the rule as it was when saved, then load"
        )


def load_extra_state(rule: Any, state: dict[str, Any]) -> None:
    """``rule``'s ``set_extra_state``: checks ``state`` (:func:`check_checkpoint`), then
    restores the carried state and the buffered steps."""
    check_checkpoint(rule, state)
    saved = state["state"]
    holders = state_holders(rule.plan, state.get("key_format", 1))
    rule._state = None if saved is None else {holders.get(k, k): v.clone() for k, v in saved.items()}
    hooks, plan = rule._hooks, rule.plan
    hooks._pre, hooks._post = StepBuffer(), StepBuffer()
    hooks.reads(plan.reads_voltage, plan.reads_mod, plan.fed)
    chunk = rule.chunk  # (for no buffered steps)
    for buffer, key in ((hooks._pre, "pre"), (hooks._post, "post"), (hooks._volt, "voltage"),
                        (hooks._mod, "modulator")):  # fmt: skip
        saved_rows = state.get(key)
        if saved_rows is not None and buffer is not None:
            buffer.append(saved_rows, saved_rows, chunk)
    if hooks._signals is not None:  # the fed rows of the buffered steps
        hooks._signals.load(state.get("signals") or {}, chunk)
    hooks._batch = state["batch"]
    hooks._unchecked = hooks._post.n > 0  # (checked when they are processed)
    hooks._pending = []
    rule._extras = {k: v.clone() for k, v in (state.get("extras") or {}).items()}
    rule._kernels = {k: tuple(v) for k, v in (state.get("kernels") or {}).items()}
