"""A rule's checkpoint: its state (the carried signals, buffered steps, the window's
extra sums) and the configuration that state belongs to, checked when it is loaded.

The state of a rule is keyed by its signals (the filter nodes and eligibility traces,
values equal by their exact fields); a checkpoint stores it by their exact text
(``"post.trace(20)"``, ``"pre.trace(20.000001)"``) in the format
``KEY_FORMAT`` (:mod:`plasticity.language.text`), recorded as ``key_format``. Checkpoints of
format 1 (without ``key_format``: numbers of six digits) still load: their names are
matched with the signals' 6-digit texts. A checkpoint of another configuration would
load without a word and restart what it does not know from zero. Each checkpoint therefore carries the configuration it was made with
(:meth:`RuleState.checkpoint_config`): the rule's class, the weight's shape, ``dt``, ``decay``,
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

__all__ = ["RuleState", "state_holders"]


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


class RuleState:
    """``get_extra_state``/``set_extra_state`` of :class:`~plasticity.PlasticityRule` and the
    configuration check of ``load_state_dict`` (a mixin: it reads the rule's plan, weight,
    step buffers and options)."""

    def checkpoint_config(self, key_format: int = KEY_FORMAT) -> dict[str, Any]:
        """What a checkpoint of this rule must match to load: the class, the weight's
        shape, ``dt``, ``decay``, ``batch_reduction`` and the carried ``state``'s names
        (traces, filters, delays, eligibility traces, extra sums; their time constants
        are in the names), written in ``key_format``."""
        plan = self.plan
        targets = {p.target for p in plan.products if p.target != "dw"}
        extras = {t for t in targets if isinstance(t, str)}
        attr = "key" if key_format >= 2 else "legacy_key"
        return {
            "rule": type(self).__name__,
            "weight": [int(d) for d in self.weight.shape],
            "dt": float(self.dt),
            "decay": self.decay,
            "batch_reduction": self.batch_reduction,
            "state": sorted({getattr(f, attr) for f in plan.filters})
            + sorted({getattr(e, attr) for e in plan.eligibilities}) + sorted(extras),
        }

    def state_tensor(self, name: Any) -> Any:
        """The carried state of a signal of the declaration (a filter such as
        ``post.trace(20.0)`` or an eligibility trace), or of its text (e.g.
        ``"post.trace(20)"``, ``"elig:eligibility(...)"``), after the last processed
        step; ``None`` before any."""
        if self._state is None:
            return None
        if isinstance(name, str):
            names = {**state_holders(self.plan, 1), **state_holders(self.plan)}
            name = names.get(name, name)
        return self._state.get(name)

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "state": None
            if self._state is None
            else {k.key: v.clone() for k, v in self._state.items()},
            "key_format": KEY_FORMAT,
            "pre": self._pre.tensor(),
            "post": self._post.tensor(),
            "voltage": None if self._volt is None else self._volt.tensor(),
            "modulator": None if self._mod is None else self._mod.tensor(),
            "signals": None if self._signals is None else self._signals.state(),
            "batch": self._batch,
            "extras": {k: v.clone() for k, v in self._extras.items()},
            "kernels": {k: list(v) for k, v in self._kernels.items()},
            "config": self.checkpoint_config(),
        }

    def _check_checkpoint(self, state: Any) -> None:
        """Refuses a rule's extra state of another configuration, naming what differs."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict) or not {"state", "pre", "post", "batch"} <= state.keys():
            raise ValueError(f"{where}: the extra state is not a rule's")
        saved = state["state"]
        if saved is not None and not isinstance(saved, dict):
            raise ValueError(f"{where}: the state was saved by another version")
        key_format = state.get("key_format", 1)
        if not isinstance(key_format, int) or key_format > KEY_FORMAT:
            raise ValueError(f"{where}: the state's keys are of format {key_format!r}, of a "
                             f"newer version (this one reads formats 1 to {KEY_FORMAT})")  # fmt: skip
        mine, theirs = self.checkpoint_config(key_format), state.get("config")
        diffs = []
        if isinstance(theirs, dict):
            for key in ("rule", "weight", "dt", "decay", "batch_reduction"):
                if key in theirs and theirs[key] != mine[key]:
                    diffs.append(f"{key}: saved {theirs[key]!r}, here {mine[key]!r}")
            names = set(theirs.get("state", ()))
        else:  # saved before the configuration was: the names of the saved state only
            names = set(saved or ()) | set(state.get("extras") or ())
        known = set(mine["state"])
        if (names - known) or (isinstance(theirs, dict) and names != known):
            diffs.append(f"state: saved {_join(names - known)}, here {_join(known - names)}")
        if diffs:
            raise ValueError(
                f"{where}: the checkpoint was saved by a rule of another configuration "
                f"({'; '.join(diffs)}); build the rule as it was when saved, then load"
            )

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._check_checkpoint(state)
        saved = state["state"]
        holders = state_holders(self.plan, state.get("key_format", 1))
        self._state = None if saved is None else {
            holders.get(k, k): v.clone() for k, v in saved.items()
        }  # fmt: skip
        self._pre, self._post = StepBuffer(), StepBuffer()
        self._volt = None if self._volt is None else StepBuffer()
        self._mod = None if self._mod is None else StepBuffer()
        for buffer, key in ((self._pre, "pre"), (self._post, "post"), (self._volt, "voltage"),
                            (self._mod, "modulator")):  # fmt: skip
            saved_rows = state.get(key)
            if saved_rows is not None and buffer is not None:
                buffer.append(saved_rows, saved_rows, self.chunk)
        if self._signals is not None:  # the fed rows of the buffered steps
            self._signals.load(state.get("signals") or {}, self.chunk)
        self._batch = state["batch"]
        self._unchecked = self._post.n > 0  # (checked when they are processed)
        self._extras = {k: v.clone() for k, v in (state.get("extras") or {}).items()}
        self._kernels = {k: tuple(v) for k, v in (state.get("kernels") or {}).items()}
        self._pending = []

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # validate before anything changes: this rule's configuration, then its
        # accumulator's window (loaded after this module, as a child)
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None:
            self._check_checkpoint(extra)
        self.accumulator._check_loadable(state_dict, prefix + "accumulator.")
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
