"""Evaluating a plan on one chunk: every product as one GEMM, one event-driven sum or one
conv weight-gradient (:class:`~plasticity.functional.correlate.Kernels`), signed factors
split exactly, results delivered per target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..functional.correlate import Kernels
from ..functional.traces import decay_powers, scan_future_padded
from ..language import Before, Signal, Spike
from .chunk import Chunk, _align
from .kernel import Kernel
from .plan import Plan, Product

__all__ = ["run_plan", "signed_parts", "Sink", "NotFinite", "finite"]

Deliver = Callable[[str, Tensor, float], None]  # (target, weight-shaped value, its factor)


def signed_parts(x: Tensor | float | None, nonnegative: bool) -> list[tuple[float, Any]]:
    """``[(sign, part)]`` with ``x = Σ sign·part`` and every part >= 0 (parts that are all
    zero are left out; ``None`` is the factor 1).

    Example:
        >>> import torch
        >>> signed_parts(torch.tensor([1.0, -2.0]), nonnegative=False)
        [(1.0, tensor([1., 0.])), (-1.0, tensor([0., 2.]))]
    """
    if x is None:
        return [(1.0, None)]
    if not isinstance(x, Tensor):
        return [(1.0 if x >= 0 else -1.0, abs(x))] if x != 0 else []
    if nonnegative:
        return [(1.0, x)]
    if x.numel() == 0:
        return []
    lo, hi = (float(v) for v in torch.aminmax(x))  # one pass, one read-back
    if lo >= 0:  # e.g. a difference of traces that stays positive: no copy
        return [(1.0, x)] if hi > 0 else []
    if hi <= 0:
        return [(-1.0, -x)]
    return [(1.0, x.clamp_min(0)), (-1.0, x.neg().clamp_min_(0))]


def run_plan(
    plan: Plan,
    choice: tuple[Kernel, ...],
    inputs: dict[str, Tensor],
    state: dict[str, Tensor],
    kernels: Kernels,
    deliver: Deliver,
    inplace: bool = True,
    scale: float = 1.0,
) -> dict[str, Tensor]:
    """Evaluates every product of ``plan`` on one chunk with the kernels of ``choice``
    and returns the state after the chunk (filters, delays, eligibility traces; with
    ``inplace``, the weight-shaped eligibility traces of ``state`` are updated in place).

    ``deliver(target, value, alpha)`` receives each result (to be scaled by ``alpha``):
    ``"pos"``/``"neg"`` non-negative magnitudes of the rule's update, times ``scale`` (the
    batch reduction), other targets signed. Coefficients are folded into the smaller
    operand of each product where that is cheaper than scaling its weight-sized result.
    """
    chunk = Chunk(plan, inputs, state)
    for coef, mod, elig in plan.carries:  # read-out of the eligibility carried in
        e0 = state.get(elig)
        if e0 is not None:
            _read_out(plan, chunk, coef, mod, elig, e0, deliver, scale)
    new_elig = _decayed(plan, chunk, state, inplace)
    keeps = plan.keeps(choice)
    for i, (p, kernel) in enumerate(zip(plan.products, choice, strict=True)):
        _run_product(plan, chunk, p, kernel, kernels, deliver, new_elig, scale)
        chunk.release(keeps[i])  # tables no later product reads
    out = chunk.new_state()
    out.update(new_elig)
    return out


def _read_out(plan: Plan, chunk: Chunk, coef: float, mod: Signal | None, elig: Any,
              e0: Tensor, deliver: Deliver, scale: float) -> None:  # fmt: skip
    """Delivers the read-out over the chunk of the eligibility trace ``e0`` carried in:
    ``coef · Σ_t d^(t+1) m(t) · e0``, into ``pos``/``neg`` by sign."""
    d = plan.decay_of(elig.tau)
    m = chunk.value(mod) if mod is not None else 1.0
    m = m if isinstance(m, Tensor) else chunk.full_rows(m)
    # [B] (or [B, N_post] for a per-neuron factor): Σ_t d^(t+1) m(t)
    c = torch.tensordot(decay_powers(d, chunk.steps, m), m, dims=1)
    if elig.per_sample:  # split elementwise by sign (a per-neuron factor: row i by c_i)
        value = (c.view(*c.shape, *([1] * (e0.ndim - c.ndim))) * e0).sum(0).mul_(coef * scale)
        deliver("pos", value.clamp_min(0), 1.0)
        deliver("neg", value.neg_().clamp_min_(0), 1.0)
    else:  # k·e0 by the signs of k and of e0, one weight-sized part at a time
        k = float(c[0]) * coef * scale
        deliver("pos" if k > 0 else "neg", e0.clamp_min(0), abs(k))
        deliver("neg" if k > 0 else "pos", e0.clamp_max(0), -abs(k))


def _decayed(plan: Plan, chunk: Chunk, state: dict[str, Tensor],
             inplace: bool) -> dict[str, Tensor]:  # fmt: skip
    """The eligibility traces carried in, decayed over the chunk (in place with
    ``inplace``: the state is the caller's)."""
    new_elig: dict[str, Tensor] = {}
    for key, elig in plan.eligibilities.items():
        e0 = state.get(key)
        if e0 is not None:
            d_chunk = plan.decay_of(elig.tau) ** chunk.steps
            new_elig[key] = e0.mul_(d_chunk) if inplace else e0 * d_chunk
    return new_elig


def _run_product(plan: Plan, chunk: Chunk, p: Product, kernel: Kernel, kernels: Kernels,
                 deliver: Deliver, new_elig: dict, scale: float) -> None:  # fmt: skip
    """Evaluates product ``p`` with ``kernel``: its pieces delivered (``dw``: by sign into
    ``pos``/``neg``, times ``scale``), or summed into its eligibility trace."""
    signed = p.target != "dw"
    alpha = p.coef if signed else abs(p.coef) * scale
    for sign, value in _pieces(plan, chunk, p, kernel, kernels, alpha, signed):
        if not signed:
            deliver("pos" if sign * p.coef > 0 else "neg", value, 1.0)
        elif p.target in plan.eligibilities:
            e = new_elig.get(p.target)
            new_elig[p.target] = value if e is None else e.add_(value)
        else:
            deliver(p.target, value, 1.0)
        del value  # not alive while the next piece is computed


def _pieces(plan: Plan, chunk: Chunk, p: Product, kernel: Kernel, kernels: Kernels,
            alpha: float, signed: bool):  # fmt: skip
    """``(sign, alpha · Σ m·P·Q)`` for every combination of the factors' signed parts
    (``signed``: times the sign too)."""
    binary = plan.binary
    f_post, f_pre, mod = _factors(chunk, p, kernel)
    for sp, a in signed_parts(f_post, _nonnegative(p.post, binary)):
        for sq, b in signed_parts(f_pre, _nonnegative(p.pre, binary)):
            for sm, m in signed_parts(mod, _nonnegative(p.mod, binary)):
                sign = sp * sq * sm
                fold = alpha * sign if signed else alpha  # the piece's number, to fold in
                if fold != 1.0:
                    m = fold if m is None else m * fold
                value = _evaluated(plan, chunk, p, kernel, a, b, m, kernels)
                yield from _weighted(p, sign, value, kernels, signed)
                del value  # not alive while the next piece is computed


def _nonnegative(s: Signal | None, binary: bool) -> bool:
    """Whether the factor ``s`` is >= 0 (``None``: the factor 1)."""
    return s is None or s.nonnegative(binary)


def _evaluated(plan: Plan, chunk: Chunk, p: Product, kernel: Kernel, post, pre, mod,
               kernels: Kernels) -> Tensor:  # fmt: skip
    """``Σ m·P·Q`` of non-negative parts with ``kernel`` (a rewrite: with the other side's
    part; the rewritten side's is ``None``)."""
    if kernel.rewrite:
        other = post if kernel.side == "pre" else pre
        return _rewritten(plan, chunk, p, kernel, other, mod, kernels)
    return _one(p, kernel, post, pre, mod, chunk, kernels)


def _factors(chunk: Chunk, p: Product, kernel: Kernel):
    """The tables of ``p``'s post, pre and row factors (``None``: the factor 1, or the
    side whose trace the kernel rewrites)."""
    rewrite, side = kernel.rewrite, kernel.side
    f_post = None if p.post is None or (rewrite and side == "post") else chunk.value(p.post)
    f_pre = None if p.pre is None or (rewrite and side == "pre") else chunk.value(p.pre)
    mod = None if p.mod is None else chunk.value(p.mod)
    return f_post, f_pre, mod


def _weighted(p: Product, sign: float, value: Tensor, kernels: Kernels, signed: bool):
    """``(sign, piece)``: ``value``, times the weight for a product with the weight
    factor (whose sign splits a magnitude's piece elementwise)."""
    if p.weight:
        w = kernels.weight.detach()
        if signed or kernels.weight_nonnegative():  # signed: no split needed
            yield sign, w * value
        else:
            yield sign, w.clamp_min(0).mul_(value)
            yield -sign, w.clamp_max(0).neg_().mul_(value)
    else:  # one-sided sums come as broadcast views
        yield sign, value if value.is_contiguous() else value.contiguous()


def _with_mod(x: Tensor | None, m: Any) -> Tensor | None:
    if x is None or m is None:
        return x
    return x * _align(m, x)


def _one(p: Product, kernel: Kernel, post, pre, mod, chunk: Chunk, kernels: Kernels) -> Tensor:
    """``Σ m·P·Q`` of non-negative parts (``None``: the factor 1; ``mod`` may be a
    number: folded into the event weights, the one-sided sum or the smaller operand)."""
    number, mod = _number_apart(mod)
    if kernel.events:
        return _events(p, kernel.side == "post", post, pre, mod, number, chunk, kernels)
    if post is None and pre is None:
        return _constant(p, mod, number, chunk, kernels)
    if pre is None or post is None:
        return _one_sided(p, post, pre, mod, number, chunk, kernels)
    return _correlated(p, post, pre, mod, number, chunk, kernels)


def _events(p: Product, on_post: bool, post, pre, mod, number: float, chunk: Chunk,
            kernels: Kernels) -> Tensor:  # fmt: skip
    """The event-driven sum of the other side's rows at the spikes of one side."""
    s_expr, own, other = (p.post, post, pre) if on_post else (p.pre, pre, post)
    spikes = chunk.inputs["post" if on_post else "pre"]
    index = kernels.index(spikes)
    weights = _event_weights(s_expr, own, spikes, mod, index)
    if number != 1.0:
        weights = (torch.full(index[0].shape, number, dtype=spikes.dtype, device=spikes.device)
                   if weights is None else weights.mul_(number))  # fmt: skip
    value = kernels.events(spikes, weights, other)
    return value if on_post else value.t()


def _constant(p: Product, mod, number: float, chunk: Chunk, kernels: Kernels) -> Tensor:
    """A constant term: ``Σ_{t,b} m`` (or ``T·B``), per synapse."""
    rows = chunk.full_rows(1.0) if mod is None else mod
    total = rows.sum(0) if p.per_sample else rows.sum()  # [B] or []
    total = total.mul_(number) if number != 1.0 else total
    shape = kernels.weight.shape
    return total.view(*total.shape, *([1] * len(shape))).expand(*total.shape, *shape)


def _one_sided(p: Product, post, pre, mod, number: float, chunk: Chunk,
               kernels: Kernels) -> Tensor:  # fmt: skip
    """A product of one side's factor (and the row factor): a sum over rows."""
    x = _with_mod(post if pre is None else pre, mod)
    if mod is not None and x is None:
        x = mod
    x = x.expand_as(chunk.inputs["post" if pre is None else "pre"])
    side = "post" if pre is None else "pre"
    if p.per_sample:
        return torch.stack([kernels.one_sided(x[:, b : b + 1], side, alpha=number)
                            for b in range(x.shape[1])])  # fmt: skip
    return kernels.one_sided(x, side, alpha=number)


def _correlated(p: Product, post: Tensor, pre: Tensor, mod, number: float, chunk: Chunk,
                kernels: Kernels) -> Tensor:  # fmt: skip
    """A GEMM (or conv weight-gradient) of both sides' factors; the row factor and the
    number go into the smaller operand (the number after, where the result is smaller)."""
    inputs = chunk.inputs
    if mod is not None:  # the row factor goes to the smaller operand
        if post.numel() <= pre.numel():
            post = _with_mod(post, mod)
        else:
            pre = _with_mod(pre, mod)
    post = post.expand_as(inputs["post"]) if post.shape != inputs["post"].shape else post
    pre = pre.expand_as(inputs["pre"]) if pre.shape != inputs["pre"].shape else pre
    after = number != 1.0 and min(post.numel(), pre.numel()) > kernels.weight.numel()
    if number != 1.0 and not after:  # into the smaller operand
        if post.numel() <= pre.numel():
            post = post * number
        else:
            pre = pre * number
    if p.per_sample:
        value = torch.stack(
            [kernels.correlate(post[:, b], pre[:, b]) for b in range(post.shape[1])]
        )
    else:
        value = kernels.correlate(post, pre)
    return value.mul_(number) if after else value


def _event_weights(s_expr: Signal, own: Tensor, spikes: Tensor, mod, index) -> Tensor | None:
    """Per-event weights of a spike-supported factor: its value at the events (nothing
    for bare binary spikes), times the row factor of the event's row."""
    weights = None
    rows = index[0].long()
    if not isinstance(s_expr, Spike):  # spikes times other factors: read them at the events
        flat = rows * own.shape[-1] + index[2]
        weights = own.reshape(-1).index_select(0, flat)
    if mod is not None:
        per_event = mod.reshape(-1)[rows].to(spikes.dtype)
        weights = per_event if weights is None else weights * per_event
    return weights


def _rewritten(plan: Plan, chunk: Chunk, p: Product, kernel: Kernel, other: Tensor, mod,
               kernels: Kernels) -> Tensor:  # fmt: skip
    """``trace_d(s) × Q`` summed over the chunk, as ``s × future_d(Q)`` plus the pairs of
    the trace carried in with this chunk's ``Q`` (``x0 ⊗ Σ_t d^{t+1} Q(t)``): the trace of
    ``kernel.side`` is never tabulated, and ``s``'s spike index serves the product
    (``other``: the other side's factor ``Q``)."""
    side = kernel.side
    f = p.factor(side)
    strict = isinstance(f, Before)
    trace = f.x if strict else f
    d = plan.decay_of(trace.tau)
    # a number scales the result in place (a scaled copy of Q: one more table)
    number, mod = _number_apart(mod)
    q = other if mod is None else other * _align(mod, other)
    padded = scan_future_padded(q, d)  # F[t] = Σ_{t' >= t} d^(t'-t) q(t'), F[T] = 0
    future = padded[1:] if strict else padded[:-1]  # strictly later: d F[t + 1]
    value = _at_spikes(kernels, chunk.inputs[side], future, side == "post", kernel.gemm)
    del padded, future
    if strict:
        value.mul_(d)
    x0 = chunk.state.get(trace)
    if x0 is not None and bool(x0.any()):  # the pairs of the trace carried in
        seen = torch.tensordot(decay_powers(d, chunk.steps, q), q, dims=1)  # [B, *other]
        pair = (x0[None], seen[None]) if side == "post" else (seen[None], x0[None])
        kernels.correlate_into(value, *pair)
    return value.mul_(number) if number != 1.0 else value


def _at_spikes(kernels: Kernels, spikes: Tensor, future: Tensor, on_post: bool,
               gemm: bool) -> Tensor:  # fmt: skip
    """``Σ_t s(t) ⊗ future(t)`` in the weight's layout: a GEMM (or conv weight-gradient),
    or an event-driven sum of ``future``'s rows at the ``spikes``."""
    if gemm:
        return kernels.correlate(spikes, future) if on_post else kernels.correlate(future, spikes)
    value = kernels.events(spikes, None, future)
    return value if on_post else value.t()


def _number_apart(mod: Any) -> tuple[float, Tensor | None]:
    """``(number, table)`` of a row factor: a number (folded as a scale) or a table."""
    if mod is not None and not isinstance(mod, Tensor):
        return mod, None
    return 1.0, mod


class NotFinite(ValueError):
    """A chunk's update is not finite: finite inputs whose products overflow the weight's
    dtype. :func:`~plasticity.engine.window.run_window` sets ``start``/``end`` (the
    chunk's steps), ``state`` (the state before the chunk, less the eligibility traces)
    and ``cleared`` (whether there were eligibility traces); ``partial``: part of the
    chunk's update had been added before the overflow was found."""

    def __init__(self, target: str, partial: bool) -> None:
        super().__init__(f"the update ({target}) is not finite")
        self.target, self.partial, self.cleared = target, partial, False
        self.start = self.end = 0
        self.state: dict[str, Tensor] = {}


def finite(value: Tensor) -> bool:
    """Whether every element of ``value`` is finite: its sum is (one reduction; a sum is
    not finite where an element is not), or, where the sum overflows, every element."""
    return bool(torch.isfinite(value.sum())) or bool(torch.isfinite(value).all())


class Sink:
    """Where the engine's results of one chunk of ``steps`` steps go: ``pos``/``neg`` into
    the accumulator as one append per step, summed (``add_(count=steps)``; a component the
    chunk gave nothing appends zeros), other targets summed into the rule's window buffers
    (``scale``: the batch reduction, which the engine folds into ``pos``/``neg``).

    ``checked``: the inputs are not bounded (graded spikes, membrane potentials,
    rewards), so their products may overflow: every result is checked before it is
    added (:class:`NotFinite`). ``hold``: inputs so large that an overflow is likely:
    the chunk's results are summed here and added by ``close()`` only if all are
    finite (one weight's memory more per target), so that the accumulator never holds
    part of a chunk. Results of binary spikes and traces are finite by construction
    and go straight in."""

    def __init__(self, acc: Any, scale: float, extras: dict[str, Tensor], steps: int = 1,
                 checked: bool = False, hold: bool = False) -> None:  # fmt: skip
        self.acc, self.scale, self.extras, self.steps = acc, scale, extras, steps
        self.checked, self.hold = checked or hold, hold
        self.merge = acc.merges and not hold
        self.started: set[str] = set()
        self.local: dict[str, Tensor] = {}

    def _check(self, target: str, value: Tensor, alpha: float) -> Tensor:
        """``alpha * value`` (in place), checked: :class:`NotFinite` says whether part of
        the chunk was added already."""
        if alpha != 1.0:
            value = value.mul_(alpha)
        if not finite(value):
            raise NotFinite(target, partial=bool(self.started))
        return value

    def deliver(self, target: str, value: Tensor, alpha: float = 1.0) -> None:
        """Adds ``alpha * value`` to ``target`` (``value`` is handed over)."""
        extra = target not in ("pos", "neg")
        if self.hold or (not self.merge and not extra):  # summed here first
            held = self.local.get(target)
            if held is None:
                self.local[target] = value if alpha == 1.0 else value.mul_(alpha)
            else:
                held.add_(value, alpha=alpha)
            return
        if self.checked:
            value, alpha = self._check(target, value, alpha), 1.0
        if extra:
            if target in self.extras:
                self.extras[target].add_(value, alpha=alpha)
            else:
                self.extras[target] = value if alpha == 1.0 else value.mul_(alpha)
        elif target in self.started:
            self.acc.add_(target, value, merge=True, finite=True, alpha=alpha, count=self.steps)
        elif alpha != 1.0 or not self.acc._hand_over(target, value, self.steps):
            self.acc.add_(target, value, finite=True, alpha=alpha, count=self.steps)
        self.started.add(target)

    def close(self) -> None:
        """Adds the results summed here (checked first, where ``checked``); a component
        the chunk gave nothing gets its steps' appends of zeros."""
        if self.checked:  # the sums of the chunk, checked before any is added
            for target, value in self.local.items():
                self._check(target, value, 1.0)
        for target, value in self.local.items():
            if target in ("pos", "neg"):
                self.acc.add_(target, value, finite=True, count=self.steps)
            elif target in self.extras:
                self.extras[target].add_(value)
            else:
                self.extras[target] = value
        for target in ("pos", "neg"):  # every step appends to both components
            if target not in self.started and target not in self.local:
                self.acc.add_(target, None, count=self.steps)
