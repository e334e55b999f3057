"""What a rule is given besides the hooks: whole sequences (:meth:`RuleInputs.observe`)
and the third factor (:meth:`RuleInputs.reward`), validated before anything is buffered."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._grad import no_grad

__all__ = ["RuleInputs"]


class RuleInputs:
    """The :class:`~plasticity.rules.base.PlasticityRule` methods that take sequences and
    rewards (a mixin: it reads the rule's buffers, adapter and engine)."""

    # ------------------------------------------------------------------ third factor

    def _rows(self, value: Any, what: str, batch: int | None = None) -> Tensor:
        """A modulator value as a ``[B]`` row on the weight's device (validated)."""
        w = self.weight
        if isinstance(value, Tensor):
            v = value.detach().to(device=w.device, dtype=w.dtype)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            v = torch.tensor(float(value), device=w.device, dtype=w.dtype)
        else:
            raise TypeError(
                f"{what} must be a number or a tensor of shape [B], got {type(value).__name__}"
            )
        batch = batch or self._batch or 1
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
        shared = not getattr(self, "per_sample", True)
        if shared and v.shape[-1] > 1 and bool((v != v[..., :1]).any()):
            raise ValueError(
                f"{what} differs between samples; construct the rule with per_sample=True for per-sample rewards"
            )

    @no_grad
    def reward(self, value: float | Tensor) -> None:
        """Adds to the third factor of the step just simulated (call it after that step's
        forward pass): a number (every sample) or a ``[B]`` tensor. Steps without one
        have 0. In eval mode (the rule's or the synapse's) the hooks observe no step, and
        a reward is ignored: it belongs to no step that is learned from."""
        if self._mod is None:
            raise RuntimeError(
                f"{type(self).__name__} reads no third factor (its terms have no `modulator`)"
            )
        if not (self.training and self.synapse.training):
            return
        if self._post.n == 0:
            raise RuntimeError(
                "reward() belongs to the step just simulated, but no step is buffered: call it after the forward pass"
            )
        assert self._mod.data is not None
        if type(value) in (float, int):  # the common case, every step: no tensor, no sync
            if not math.isfinite(value):
                raise ValueError("`reward` contains NaN or infinity")
            self._mod.data[self._post.n - 1].add_(value)
            return
        self._mod.data[self._post.n - 1].add_(self._rows(value, "`reward`"))

    # --------------------------------------------------------------------- observe

    @no_grad
    def observe(
        self, pre: Tensor, post: Tensor, *, voltage: Tensor | None = None, reward: Any = None
    ) -> None:
        """Learns from whole sequences without hooks: ``pre`` ``[T, B, *in]``, ``post``
        ``[T, B, *out]`` (the way to feed a conv synapse a ``[T, B, C, H, W]`` sequence);
        ``voltage`` ``[T, B, *out]`` for rules that read ``post.voltage``; ``reward`` a
        number, ``[T]`` or ``[T, B]`` for rules with a third factor (default 0).

        With nothing buffered, the sequence is processed straight from ``pre`` and
        ``post`` in chunks (no copy into the step buffers); only a remainder shorter than
        16 steps (or than ``chunk_size``) is buffered for the next call. ``pre`` and
        ``post`` are read, never modified.
        """
        if self._pending:  # synapse inputs of the hooks that no neuron call took
            self._drop_pending(keep_last=False)
        pre_block, post_block = self._steps(pre, post)
        w = self.weight
        steps, batch = pre_block.shape[:2]
        v_block = None
        if self._volt is not None:
            if voltage is None:
                raise ValueError("this rule reads post.voltage: pass voltage= ([T, B, *out])")
            if not isinstance(voltage, Tensor):
                raise TypeError(f"`voltage` must be a torch.Tensor, got {type(voltage).__name__}")
            if voltage.shape != post.shape:
                raise ValueError(
                    f"`voltage` has shape {tuple(voltage.shape)}; pass the membrane potential "
                    f"at each step, of the shape of `post` {tuple(post.shape)}"
                )
            v_block = self._adapter.post_steps(voltage, None)
            if v_block.shape != post_block.shape:
                raise ValueError(
                    f"`voltage` has shape {tuple(v_block.shape)}; expected {tuple(post_block.shape)}"
                )
        r = None
        if reward is not None:
            if self._mod is None:
                raise ValueError(f"{type(self).__name__} takes no reward (no `modulator` term)")
            r = torch.as_tensor(reward, device=w.device, dtype=w.dtype)
            if r.ndim == 0:
                r = r.expand(steps)
            if r.ndim == 1 and r.shape[0] == steps:
                r = r[:, None].expand(steps, batch)
            if r.shape != (steps, batch):
                raise ValueError(
                    f"`reward` must be a number, [T] or [T, B]; got {tuple(r.shape)} for T={steps}, B={batch}"
                )
            self._check_values(r, "`reward`")
        if self._pre.n or self._post.n or self._mod is not None:
            start = self._post.n
            self._pre.append(pre_block.detach(), w, self.chunk_for(pre_block))
            self._add(self._post, post_block, flush=False)
            if v_block is not None:
                self._add(self._volt, v_block, flush=False)  # type: ignore[arg-type]
            if r is not None:
                self._mod.data[start : start + steps].add_(r)  # type: ignore[union-attr]
            self._maybe_flush()
            return
        blocks = [b.detach().to(device=w.device, dtype=w.dtype)
                  for b in (pre_block, post_block, v_block) if b is not None]  # fmt: skip
        first = self._batch is None
        if first:
            self._batch = batch
        chunk = self.chunk_for(blocks[0])
        direct = (steps // chunk) * chunk
        if steps - direct >= min(chunk, 16):  # a remainder worth a kernel call of its own
            direct = steps
        if direct:
            try:
                self._process(*(b[:direct] for b in blocks[:2]),
                              blocks[2][:direct] if len(blocks) > 2 else None, None, chunk)  # fmt: skip
            except ValueError:  # spikes that break the policy: the rule stays as it was
                if first and self._state is None:
                    self._batch = None
                raise
        if direct < steps:  # the remainder, in buffers just its size
            rest = steps - direct
            for buffer, b in zip((self._pre, self._post, self._volt), blocks, strict=False):
                buffer.append(b[direct:], w, rest)  # type: ignore[union-attr]

    def _steps(self, pre: Tensor, post: Tensor) -> tuple[Tensor, Tensor]:
        """``pre``/``post`` as ``[T, B, ...]`` blocks, checked against the synapse and each other."""
        pre_block = self._adapter.pre_steps(pre)
        post_block = self._adapter.post_steps(post, pre_block)
        if pre_block.shape[:2] != post_block.shape[:2]:
            raise ValueError(
                f"`pre` covers [T, B] = {list(pre_block.shape[:2])} but `post` covers "
                f"{list(post_block.shape[:2])}; pass the same steps and samples"
            )
        self._check_batch(pre_block.shape[1])
        return pre_block, post_block
