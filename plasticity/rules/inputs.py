"""What a rule is given besides the hooks: whole sequences (:meth:`Inputs.observe`), the
third factor (:meth:`Inputs.reward`) and user-fed signals (:meth:`Inputs.feed`), validated
before anything is buffered: the part of :class:`~plasticity.PlasticityRule` (its
``_inputs``) behind its ``observe``, ``reward`` and ``feed``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..hooks import HookPairing, _unfed
from ..synapses import ConvSynapse
from .checks import _POST, _PRE, _VOLT, _first_refused, _refused_message

__all__ = ["Inputs", "check_fed_synapse"]


def _as_values(value: Any, what: str, like: Tensor, expected: str, *, bools: bool = False) -> Tensor:
    """``value`` as a tensor on ``like``'s device and dtype: a tensor, a number, a numpy
    array or a (nested) list of numbers (bool values too with ``bools``: spikes); a
    ``TypeError`` naming ``what`` and ``expected`` for anything else (strings, complex
    numbers, ``None``, ragged lists)."""
    if isinstance(value, Tensor):
        t = value.detach()
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            t = None
    if t is None or t.is_complex() or (t.dtype == torch.bool and not bools):
        kind = type(value).__name__
        if t is not None:
            scalar = t.ndim == 0 and not isinstance(value, Tensor)
            kind += f" {value!r}" if scalar else f" of {t.dtype}"
        raise TypeError(
            f"{what} must be {expected}: a tensor, number, numpy array or list of real "
            f"numbers{' (bool for spikes)' if bools else ''}; got {kind}"
        )
    return t.to(device=like.device, dtype=like.dtype)


def _names(sides: dict[str, str]) -> str:
    return ", ".join(f"{side}.signal({name!r})" for name, side in sides.items())


def check_fed_synapse(adapter: Any, plan: Any) -> None:
    """A conv synapse's eligibility trace is shared by the output positions: a per-neuron
    factor of it does not factor."""
    if isinstance(adapter, ConvSynapse) and any(
        f is not None and f.side == "post" for _, f, _ in plan.carries
    ):
        raise ValueError(
            "a post-side factor of an eligibility trace multiplies its rows per neuron; "
            "a convolution's eligibility trace is shared by the output positions: use "
            "a post-side signal without an eligibility trace, or an nn.Linear synapse"
        )


class Inputs:
    """What :meth:`~plasticity.PlasticityRule.observe`, ``reward`` and ``feed`` do: the
    values are validated (nothing changes at an error), then go into the step buffers of
    ``hooks`` (the rule's :class:`~plasticity.hooks.HookPairing`) or, for a whole
    sequence with nothing buffered, straight to ``rule._process``.

    Args:
        rule: the :class:`~plasticity.PlasticityRule` the values are for: its weight,
            settings (``spikes``, ``per_sample``), mode, chunk size and engine.
        hooks: the rule's hook pairing, which holds the buffered steps.
    """

    def __init__(self, rule: Any, hooks: HookPairing) -> None:
        self._rule, self._hooks = rule, hooks

    # ------------------------------------------------------------------ third factor

    def _rows(self, value: Any, what: str, batch: int | None = None) -> Tensor:
        """A modulator value as a ``[B]`` row on the weight's device (validated)."""
        v = _as_values(value, what, self._rule.weight, "a number or a tensor of shape [B]")
        batch = batch or self._hooks._batch or 1
        if v.ndim == 0:
            v = v.expand(batch)
        elif v.shape != (batch,):
            raise ValueError(
                f"{what} must be a number or have shape [{batch}] (one per sample), got {tuple(v.shape)}"
            )
        self._check_values(v, what)
        return v

    def _check_values(self, v: Tensor, what: str) -> None:
        """Finite, and (without ``per_sample``) equal across the samples (last dimension)."""
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{what} contains NaN or infinity")
        shared = not getattr(self._rule, "per_sample", True)
        if shared and v.shape[-1] > 1 and bool((v != v[..., :1]).any()):
            raise ValueError(
                f"{what} differs between samples; construct the rule with per_sample=True for per-sample rewards"
            )

    def _learning(self) -> bool:
        """Whether the hooks observe steps now (the rule and its synapse train)."""
        return self._rule.training and self._hooks._adapter.module.training

    def reward(self, value: float | Tensor) -> None:
        """Adds to the third factor of the step just simulated (call it after that step's
        forward pass): a number (every sample) or a ``[B]`` tensor (numpy arrays and
        lists are converted; a bool, a string or a complex number is a ``TypeError``).
        Steps without one have 0. In eval mode (the rule's or the synapse's) the hooks
        observe no step, and a reward is ignored: it belongs to no step that is learned
        from."""
        hooks = self._hooks
        if hooks._mod is None:
            raise RuntimeError(
                f"{type(self._rule).__name__} reads no third factor (its terms have no `modulator`)"
            )
        if not self._learning():
            return
        n = hooks._post.n
        if n == 0:
            raise RuntimeError(
                "reward() belongs to the step just simulated, but no step is buffered: call it after the forward pass"
            )
        assert hooks._mod.data is not None
        if type(value) in (float, int):  # the common case, every step: no tensor, no sync
            if not math.isfinite(value):
                raise ValueError("`reward` contains NaN or infinity")
            hooks._mod.data[n - 1].add_(value)
            return
        hooks._mod.data[n - 1].add_(self._rows(value, "`reward`"))

    # ------------------------------------------------------------ user-fed signals

    def feed(self, signals: dict[str, Any]) -> None:
        """Gives the values of user-fed signals (``post.signal(name)``,
        ``pre.signal(name)``) for the step just simulated: call it after that step's
        forward pass, once per step and signal, before the next step. Each value is
        ``[B, *side]`` (``[B, N_out]`` for a post-side signal of a ``Linear``, ``[B,
        N_in]`` for a pre-side one) or a number (every sample and neuron); tensors are
        converted to the weight's device and dtype. A name the rule does not read, a
        second value for the step, a value before any step, a wrong shape, a bool or
        complex value: an error naming it, and nothing is stored. NaN or infinity is
        found with the step's chunk, as for spikes: the call that fills the chunk, or
        ``step()``, names the signal and the step; the steps before it are learned, it
        and the rest of its chunk discarded. A step left without a value is refused
        where it is needed: at the next step's forward pass, ``step()`` or ``flush()``.
        In eval mode the hooks observe no step and ``feed`` is ignored.

        Example:
            >>> import torch, snntorch as snn
            >>> import plasticity as pl
            >>> from plasticity import post, pre
            >>> fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
            >>> rule = pl.Rule(fc, lif, pos=post.signal("L") * pre.spike)
            >>> spk, mem = lif(fc(torch.ones(1, 3)), lif.init_leaky())
            >>> rule.feed(L=torch.tensor([[1.0, -2.0]]))   # [B, N_out]
            >>> rule.step()[:, 0].tolist()                 # Σ_t L_i(t) pre_j(t)
            [1.0, -2.0]
        """
        hooks = self._hooks
        fed = hooks._signals
        if fed is None:
            raise RuntimeError(f"{type(self._rule).__name__} reads no user-fed signal (its "
                               "terms have no post.signal(name) or pre.signal(name))")  # fmt: skip
        if not signals:
            raise TypeError("feed() takes the signals by name: rule.feed(L=values)")
        for name in signals:
            if name not in fed.sides:
                raise ValueError(f"`{name}` is not a signal of this rule; it reads "
                                 f"{_names(fed.sides)}")  # fmt: skip
        if not self._learning():
            return
        n = hooks._post.n
        if n == 0:
            raise RuntimeError("feed() belongs to the step just simulated, but no step is "
                               "buffered: call it after the forward pass")  # fmt: skip
        rows, w = {}, self._rule.weight
        for name, value in signals.items():
            done = fed.buffers[name].n
            if done >= n:
                raise ValueError(f"`{name}` was fed already for this step (step "
                                 f"{hooks._window_steps + n - 1} of the window); feed each "
                                 "signal once per step")  # fmt: skip
            if done < n - 1:
                raise ValueError(_unfed(name, hooks._window_steps + done))
            side = fed.sides[name]
            shape = (hooks._post if side == "post" else hooks._pre).data.shape[1:]  # type: ignore[union-attr]
            rows[name] = self._signal_rows(name, value, tuple(shape), one_step=True, like=w)
        for name, row in rows.items():  # into the row of the step (grown if full)
            if not fed.buffers[name].push(row):
                fed.append(name, row[None], w, hooks._post.data.shape[0])  # type: ignore[union-attr]
        hooks._unchecked = True  # (their values are checked with their chunk)

    def _signal_rows(self, name: str, value: Any, shape: tuple[int, ...], one_step: bool,
                     what: str | None = None, like: Tensor | None = None) -> Tensor:  # fmt: skip
        """``value`` validated as the values of the signal ``name`` of shape ``shape``
        (``one_step``: a number is every sample's and neuron's, and NaN or infinity is
        left to the check of the step's chunk); ``what`` names it."""
        side = self._hooks._signals.sides[name]  # type: ignore[union-attr]
        what = what or f"`{name}`"
        dims = ("B" if one_step else "T, B") + f", *{side}"
        expected = f"[{dims}] = {list(shape)}" + (" or a number" if one_step else "")
        like = self._rule.weight if like is None else like
        if isinstance(value, Tensor) and value.dtype == like.dtype and value.device == like.device:
            v = value.detach()  # (the common case, every step)
        else:
            v = _as_values(value, what, like, expected)
        if one_step and v.ndim == 0:
            v = v.expand(shape)
        if tuple(v.shape) != shape:
            raise ValueError(f"{what} ({side}.signal({name!r})) has shape {tuple(v.shape)}; "
                             f"expected {expected}")  # fmt: skip
        if not one_step and not bool(torch.isfinite(v).all()):
            raise ValueError(f"{what} contains NaN or infinity")
        return v

    # --------------------------------------------------------------------- observe

    def observe(self, pre: Any, post: Any, voltage: Any = None, reward: Any = None,
                signals: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Learns from whole sequences without hooks: ``pre`` ``[T, B, *in]``, ``post``
        ``[T, B, *out]`` (the way to feed a conv synapse a ``[T, B, C, H, W]`` sequence);
        ``voltage`` ``[T, B, *out]`` for rules that read ``post.voltage``; ``reward`` a
        number, ``[T]`` or ``[T, B]`` for rules with a third factor (default 0);
        ``signals`` ``{name: [T, B, *side]}``, every user-fed signal the rule reads
        (``post.signal(name)``: the shape of ``post``; ``pre.signal(name)``: of ``pre``).

        Tensors of any real dtype, numpy arrays and (nested) lists are converted to the
        weight's device and dtype (spikes may be bool; a reward may not). A single
        recording ``[T, N]`` is refused, not guessed (the hooks take ``[B, N]`` as one
        step): pass ``x[:, None]`` (``[T, 1, N]``), or ``x[None]`` for one step of a
        batch. ``voltage`` for a rule that reads none, ``reward`` for one without a third
        factor, strings, complex values and mismatched shapes are errors that name the
        argument and change nothing. ``T = 0`` changes nothing; ``B = 0`` learns nothing.
        The guide's "What observe accepts" has the table.

        Spikes the ``spikes`` policy refuses are reported here: a value other than 0 and 1
        (``spikes="binary"``) refuses the whole call; NaN or infinity at step ``t`` keeps
        the steps before it (as ``observe(pre[:t], post[:t], ...)``) and discards the rest.
        Earlier calls' steps are kept either way.

        With nothing buffered, the sequence is processed straight from ``pre`` and
        ``post`` in chunks (no copy into the step buffers); only a remainder shorter than
        16 steps (or than ``chunk_size``) is buffered for the next call. ``pre`` and
        ``post`` are read, never modified.
        """
        rule = self._rule
        w = rule.weight
        spikes = "spikes: 0/1 values" if rule.spikes == "binary" else "graded spikes"
        pre = _as_values(pre, "`pre`", w, f"[T, B, *in] {spikes}", bools=True)
        post = _as_values(post, "`post`", w, f"[T, B, *out] {spikes}", bools=True)
        pre_block, post_block = self._steps(pre, post)
        v_block = self._observed_voltage(voltage, post)
        r = self._observed_reward(reward, *pre_block.shape[:2])
        fed = self._observed_signals(signals, pre_block, post_block)
        binary = rule.spikes == "binary"
        bad = _first_refused([(pre_block, binary, f"{_PRE} (`pre`)"),
                              (post_block, binary, f"{_POST} (`post`)")]
                             + ([] if v_block is None else [(v_block, False, f"{_VOLT} (`voltage`)")]),
                             steps=rule.chunk_for(pre_block))  # fmt: skip
        if bad is None:
            self._take(pre_block, post_block, v_block, r, fed)
            return
        at, what, finite = bad
        step = self._hooks._window_steps + self._hooks._post.n + at
        if finite:
            raise ValueError(f"{_refused_message(what, step, True)}; nothing of this call "
                             "was learned (the steps of earlier calls are kept)")  # fmt: skip
        if at:  # the steps before it, as a call of their own
            self._take(pre_block[:at], post_block[:at], None if v_block is None else v_block[:at],
                       None if r is None else r[:at],
                       None if fed is None else {k: v[:at] for k, v in fed.items()})  # fmt: skip
        raise ValueError(f"{_refused_message(what, step, False)}; the {step} steps before "
                         "it were kept, that step and the rest of the call discarded")  # fmt: skip

    def _observed_voltage(self, voltage: Any, post: Tensor) -> Tensor | None:
        """``observe``'s ``voltage`` as ``[T, B, *out]`` (where the rule reads it)."""
        if self._hooks._volt is None:
            if voltage is not None:
                raise ValueError(f"{type(self._rule).__name__} reads no membrane potential (no "
                                 "`post.voltage` term): leave `voltage` out")  # fmt: skip
            return None
        if voltage is None:
            raise ValueError("this rule reads post.voltage: pass voltage= ([T, B, *out])")
        voltage = _as_values(voltage, "`voltage`", self._rule.weight, "[T, B, *out] membrane potentials")
        if voltage.shape != post.shape:
            raise ValueError(
                f"`voltage` has shape {tuple(voltage.shape)}; pass the membrane potential "
                f"at each step, of the shape of `post` {tuple(post.shape)}"
            )
        return self._hooks._adapter.post_steps(voltage, None)

    def _observed_reward(self, reward: Any, steps: int, batch: int) -> Tensor | None:
        """``observe``'s ``reward`` as ``[T, B]`` (``None``: none given)."""
        if reward is None:
            return None
        if self._hooks._mod is None:
            raise ValueError(f"{type(self._rule).__name__} takes no reward (no `modulator` term)")
        r = _as_values(reward, "`reward`", self._rule.weight, "a number, [T] or [T, B]")
        if r.ndim == 0:
            r = r.expand(steps)
        if r.ndim == 1 and r.shape[0] == steps:
            r = r[:, None].expand(steps, batch)
        if r.shape != (steps, batch):
            raise ValueError(
                f"`reward` must be a number, [T] or [T, B]; got {tuple(r.shape)} for T={steps}, B={batch}"
            )
        self._check_values(r, "`reward`")
        return r

    def _observed_signals(self, signals: Any, pre_block: Tensor,
                          post_block: Tensor) -> dict[str, Tensor] | None:  # fmt: skip
        """``observe``'s ``signals``, validated: every signal the rule reads, ``[T, B,
        *side]``, finite, after buffered steps that all have theirs."""
        fed = self._hooks._signals
        if fed is None:
            if signals is not None:
                raise ValueError(f"{type(self._rule).__name__} reads no user-fed signal: "
                                 "leave `signals` out")  # fmt: skip
            return None
        if not isinstance(signals, dict):
            raise TypeError(f"this rule reads {_names(fed.sides)}: pass signals={{name: "
                            f"[T, B, *side]}}, got {type(signals).__name__}")  # fmt: skip
        for name in signals:
            if name not in fed.sides:
                raise ValueError(f"signals[{name!r}] is not a signal of this rule; it reads "
                                 f"{_names(fed.sides)}")  # fmt: skip
        missing = [n for n in fed.sides if n not in signals]
        if missing:
            raise ValueError(f"`signals` lacks {', '.join(map(repr, missing))}: pass every "
                             f"signal the rule reads ({_names(fed.sides)})")  # fmt: skip
        self._hooks._check_fed()  # the buffered steps have theirs
        blocks = {"pre": pre_block, "post": post_block}
        return {name: self._signal_rows(name, v, tuple(blocks[fed.sides[name]].shape), False,
                                        f"signals[{name!r}]")
                for name, v in signals.items()}  # fmt: skip

    def _take(self, pre_block: Tensor, post_block: Tensor, v_block: Tensor | None,
              r: Tensor | None, fed: dict[str, Tensor] | None = None) -> None:  # fmt: skip
        """Learns from validated ``[T, B, ...]`` blocks (on the weight's device and dtype):
        into the step buffers, or straight through the engine."""
        hooks = self._hooks
        if pre_block.shape[0] == 0:  # nothing to learn; the batch size is not set either
            return
        if hooks._pending:  # synapse inputs of the hooks that no neuron call took
            hooks._drop_pending(keep_last=False)
        if hooks._pre.n or hooks._post.n or hooks._mod is not None or fed is not None:
            self._buffer(pre_block, post_block, v_block, r, fed)
        else:
            self._direct([b for b in (pre_block, post_block, v_block) if b is not None])

    def _buffer(self, pre_block: Tensor, post_block: Tensor, v_block: Tensor | None,
                r: Tensor | None, fed: dict[str, Tensor] | None) -> None:  # fmt: skip
        """:meth:`_take` after buffered steps, or with a third factor or fed signals."""
        hooks, w = self._hooks, self._rule.weight
        start, steps = hooks._post.n, pre_block.shape[0]
        hooks._pre.append(pre_block, w, self._rule.chunk_for(pre_block))
        hooks._add(hooks._post, post_block, flush=False)
        for name, rows in (fed or {}).items():
            hooks._signals.append(name, rows, w, hooks._post.data.shape[0])  # type: ignore[union-attr]
        if v_block is not None:
            hooks._add(hooks._volt, v_block, flush=False)  # type: ignore[arg-type]
        if r is not None:
            hooks._mod.data[start : start + steps].add_(r)  # type: ignore[union-attr]
        hooks._maybe_flush()

    def _direct(self, blocks: list[Tensor]) -> None:
        """:meth:`_take` with nothing buffered: whole chunks straight from ``blocks`` (pre,
        post and voltage), a remainder shorter than a chunk into buffers just its size."""
        hooks, rule = self._hooks, self._rule
        steps, batch = blocks[0].shape[:2]
        first = hooks._batch is None
        if first:
            hooks._batch = batch
        chunk = rule.chunk_for(blocks[0])
        direct = (steps // chunk) * chunk
        if steps - direct >= min(chunk, 16):  # a remainder worth a kernel call of its own
            direct = steps
        if direct:
            try:
                rule._process(*(b[:direct] for b in blocks[:2]),
                              blocks[2][:direct] if len(blocks) > 2 else None, None, chunk,
                              checked=True)  # fmt: skip
            except ValueError:  # an overflow: the steps before it count
                if first and rule._state is None:
                    hooks._batch = None
                raise
        if direct < steps:  # the remainder, in buffers just its size
            rest = steps - direct
            for buffer, b in zip((hooks._pre, hooks._post, hooks._volt), blocks, strict=False):
                buffer.append(b[direct:], rule.weight, rest)  # type: ignore[union-attr]

    def _steps(self, pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
        """``pre``/``post`` as ``[T, B, ...]`` blocks, checked against the synapse and each other."""
        adapter = self._hooks._adapter
        pre_block = adapter.pre_steps(pre)
        post_block = adapter.post_steps(post, pre_block)
        for name, given, block in (("pre", pre, pre_block), ("post", post, post_block)):
            if block.ndim != given.ndim:  # [N] or [T, N]: a step, or a single recording?
                shape = ", ".join(map(str, block.shape[2:]))
                raise ValueError(
                    f"`{name}` has shape {tuple(given.shape)}; observe() takes whole sequences "
                    f"[T, B, {shape}] and does not guess what a missing dimension is: pass one "
                    f"recording of T steps as {name}[:, None] ([T, 1, {shape}]), one step of a "
                    f"batch as {name}[None] ([1, B, {shape}])"
                )
        if pre_block.shape[:2] != post_block.shape[:2]:
            raise ValueError(
                f"`pre` covers [T, B] = {list(pre_block.shape[:2])} but `post` covers "
                f"{list(post_block.shape[:2])}; pass the same steps and samples"
            )
        self._hooks._check_batch(pre_block.shape[1])
        return pre_block, post_block
