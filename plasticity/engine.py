r"""The rule engine: evaluates a rule's terms on a chunk of steps, exactly.

A rule's declaration (:mod:`plasticity.language`) is compiled once into a :class:`Plan`:
a list of products ``coef · Σ_{t,b} m(t,b) P(i,t,b) Q(j,t,b)`` aimed at a *target*
(``"dw"``: split into the accumulator's non-negative ``pos``/``neg``; or a named
weight-shaped buffer such as an eligibility trace), the filters whose state is carried
from chunk to chunk, and the eligibility traces.

Per chunk, every signal a product reads is computed once (traces scanned in a constant
number of ops, :func:`~plasticity.functional.traces.scan_trace`) and every product is
one GEMM over the chunk's ``T·B`` rows, one event-driven sum over the spikes of one side
(:func:`~plasticity.functional.correlate.event_sum`) or one conv weight-gradient. The
engine may rewrite "trace of spikes × other side" as "spikes × future trace of the other
side" (plus a boundary term from the carried trace), so that one spike index serves
several products. Which of these runs is a :class:`Choice`, picked by timing the
candidates on the first chunks of a shape (:func:`choose`); the numbers are the same
whichever runs, to floating-point rounding.

Signed factors are split exactly: a product of parts of known sign goes to ``pos`` or
``neg`` by the sign of the parts (a factor :math:`x = x^+ - x^-`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .functional.correlate import conv_correlate, event_sum, spike_index
from .functional.traces import decay_factor, decay_powers, scan_future, scan_trace
from .language import ETerm, Signal, Term, Terms, as_terms

__all__ = ["Plan", "Product", "compile_rule"]

Deliver = Callable[[str, Tensor], None]  # (target, signed weight-shaped value)


class Product:
    """``coef · Σ m·P·Q`` into ``target`` (``per_sample``: one result per sample)."""

    __slots__ = ("target", "coef", "post", "pre", "mod", "weight", "per_sample", "label")

    def __init__(self, target: str, coef: float, term: Term, mod: Signal | None = None,
                 per_sample: bool = False, label: str = "") -> None:  # fmt: skip
        self.target, self.coef, self.per_sample = target, coef, per_sample
        self.post, self.pre, self.weight = term.post, term.pre, term.weight
        self.mod = mod if term.mod is None else term.mod if mod is None else term.mod * mod
        self.label = label or repr(term)

    def __repr__(self) -> str:
        parts = [p for p in (self.mod, self.post, self.pre) if p is not None]
        w = ["weight"] if self.weight else []
        return f"{self.target} += {self.coef:g} * " + " * ".join([*w, *map(repr, parts)])


def _future(x: Signal, tau: float, strict: bool) -> Signal:
    """Internal signal: :math:`\\sum_{t' \\ge t} d^{t'-t} x_{t'}` within the chunk (``>``
    with ``strict``)."""
    return Signal("future", x.side, x, tau, strict)


def _powers(tau: float) -> Signal:
    """Internal row factor :math:`d^{T-1-t}`: each step decayed to the chunk's end."""
    return Signal("powers", "mod", tau)


class Plan:
    """A rule compiled for one ``dt``, decay method and spike policy.

    Args:
        targets: ``{"dw": (pos, neg), name: (terms, per_sample)}``; ``pos``/``neg`` are
            declarations (see :func:`~plasticity.language.as_terms`), other targets are
            signed sums accumulated unscaled into buffers the rule reads.
        dt, decay: the step and the decay method of traces (``"exact"``/``"euler"``).
        binary: whether spikes are 0/1 (their sign and the event index rely on it).
    """

    def __init__(self, targets: dict[str, Any], *, dt: float, decay: str, binary: bool) -> None:
        self.dt, self.decay, self.binary = dt, decay, binary
        self.products: list[Product] = []
        self.carries: list[tuple[float, Signal | None, Any]] = []  # (coef, mod, eligibility)
        self.eligibilities: dict[str, Any] = {}
        pos, neg = targets.get("dw", (None, None))
        for sign, decl in ((1.0, pos), (-1.0, neg)):
            if decl is not None:
                for term in as_terms(decl).terms:
                    self._add(term, sign)
        for name, (decl, per_sample) in targets.items():
            if name != "dw":
                for term in as_terms(decl).terms:
                    if isinstance(term, ETerm):
                        raise ValueError(f"target {name!r}: eligibility terms go into pos/neg")
                    self.products.append(Product(name, term.coef, term, per_sample=per_sample))
        self.filters = _filters(self)
        reads: set[str] = set()
        for p in self.products:
            for s in (p.post, p.pre, p.mod):
                reads |= set() if s is None else s.leaves()
        for _, mod, _ in self.carries:
            reads |= set() if mod is None else mod.leaves()
        self.reads_voltage, self.reads_mod = "voltage" in reads, "mod" in reads
        self.signature = "; ".join(map(repr, self.products))

    def _add(self, term: Term | ETerm, sign: float) -> None:
        if isinstance(term, Term):
            self.products.append(Product("dw", sign * term.coef, term))
            return
        elig = term.elig
        key = f"elig:{elig!r}"
        self.eligibilities[key] = elig
        self.carries.append((sign * term.coef, term.mod, elig))
        read = term.mod if term.mod is not None else Signal("const", None, 1.0)
        future_mod = _future(read, elig.tau, strict=False)
        for inner in elig.terms.terms:
            self.products.append(Product("dw", sign * term.coef * inner.coef, inner, future_mod))
            self.products.append(
                Product(key, inner.coef, inner, _powers(elig.tau), per_sample=elig.per_sample)
            )

    def decay_of(self, tau: float) -> float:
        return decay_factor(self.dt, tau, self.decay)

    # ------------------------------------------------------------------ candidates

    def rewritable(self, p: Product, side: str) -> bool:
        """Whether ``side``'s factor of ``p`` is an all-to-all trace (or ``.before``) of
        binary spikes, so that the product can read the other side's future trace at
        those spikes instead."""
        s = p.post if side == "post" else p.pre
        other = p.pre if side == "post" else p.post
        if s is None or other is None or p.per_sample or not self.binary:
            return False
        if s.kind == "before":
            s = s.args[0]
        return s.kind == "trace" and not s.args[2] and s.args[0].kind == "spike"

    def spiking(self, s: Signal | None) -> bool:
        """Whether ``s`` is zero wherever its side's spikes are (spikes times others)."""
        if s is None or not self.binary:
            return False
        return s.kind == "spike" or (s.kind == "mul" and any(a.kind == "spike" for a in s.args))

    def candidates(self, conv: bool) -> list[tuple[str, ...]]:
        """Kernel assignments worth timing (one kernel name per product): all GEMMs;
        read at the post spikes (rewriting pre-spike terms); at the pre spikes (the
        mirror); each side's own spikes. Conv synapses: GEMMs (conv weight-gradients),
        with and without the rewrite."""
        out: list[tuple[str, ...]] = [tuple("gemm" for _ in self.products)]
        for side, other in (("post", "pre"), ("pre", "post")):
            with_rewrite = []
            for p in self.products:
                own, theirs = (p.post, p.pre) if side == "post" else (p.pre, p.post)
                if self.spiking(own) and not p.per_sample and not conv:
                    with_rewrite.append(f"{side}-events")
                elif self.rewritable(p, side) and self.spiking(theirs if conv else theirs):
                    with_rewrite.append("gemm" if conv else f"{side}-rewrite")
                elif conv and self.rewritable(p, side):
                    with_rewrite.append(f"{side}-rewrite-gemm")
                else:
                    with_rewrite.append("gemm")
            out.append(tuple(with_rewrite))
        if not conv:
            own = []
            for p in self.products:
                if self.spiking(p.post) and not p.per_sample:
                    own.append("post-events")
                elif self.spiking(p.pre) and not p.per_sample:
                    own.append("pre-events")
                else:
                    own.append("gemm")
            out.append(tuple(own))
        if conv:
            out.append(tuple(
                "post-rewrite-gemm" if self.rewritable(p, "post") else "gemm"
                for p in self.products
            ))  # fmt: skip
        unique: list[tuple[str, ...]] = []
        for c in out:
            if c not in unique:
                unique.append(c)
        return unique


def compile_rule(pos: Any, neg: Any, *, dt: float = 1.0, decay: str = "exact",
                 binary: bool = True, extra: dict[str, Any] | None = None) -> Plan:  # fmt: skip
    """A :class:`Plan` for ``pos``/``neg`` (and ``extra`` signed targets,
    ``{name: (terms, per_sample)}``).

    Example:
        >>> from plasticity.language import post, pre
        >>> plan = compile_rule(0.1 * post.spike * pre.trace(5.0),
        ...                     0.1 * post.trace(5.0).before * pre.spike)
        >>> plan.products
        [dw += 0.1 * post.spike * pre.trace(5), dw += -0.1 * post.trace(5).before * pre.spike]
    """
    return Plan({"dw": (pos, neg), **(extra or {})}, dt=dt, decay=decay, binary=binary)


def _filters(plan: Plan) -> dict[str, Signal]:
    """Every stateful signal (trace, low-pass) the plan reads, by name."""
    found: dict[str, Signal] = {}

    def walk(s: Signal | None) -> None:
        if s is None:
            return
        if s.kind in ("trace", "lowpass"):
            found[repr(s)] = s
        for a in s.args:
            if isinstance(a, Signal):
                walk(a)

    for p in plan.products:
        for s in (p.post, p.pre, p.mod):
            walk(s)
    for _, mod, _ in plan.carries:
        walk(mod)
    return found


def _align(x: Tensor | float, like: Tensor) -> Tensor | float:
    """A ``[T, B]`` row factor viewed to broadcast against ``like`` (``[T, B, *S]``)."""
    if isinstance(x, Tensor) and x.ndim < like.ndim:
        return x.view(*x.shape, *([1] * (like.ndim - x.ndim)))
    return x


class Chunk:
    """The signals of one chunk: ``inputs`` (``pre``, ``post``: ``[T, B, *side]``;
    ``voltage`` ``[T, B, *out]`` and ``mod`` ``[T, B]`` where the plan reads them) and the
    state carried in (filters by name, eligibility traces), memoized per signal."""

    def __init__(self, plan: Plan, inputs: dict[str, Tensor], state: dict[str, Tensor]) -> None:
        self.plan, self.inputs, self.state = plan, inputs, state
        self.memo: dict[str, Any] = {}
        self.steps, self.batch = inputs["pre"].shape[:2]

    def carried(self, s: Signal) -> Tensor | float:
        """A filter's value before the chunk."""
        key = repr(s)
        if key in self.state:
            return self.state[key]
        if s.kind == "lowpass":
            init = s.args[2]
            if init is not None:
                return init
            first = self.value(s.args[0])
            return first[0] if isinstance(first, Tensor) else first
        return 0.0

    def value(self, s: Signal) -> Tensor | float:
        key = repr(s)
        memo = self.memo
        if key in memo:
            return memo[key]
        out = self._compute(s)
        memo[key] = out
        return out

    def _compute(self, s: Signal) -> Tensor | float:
        k, a, v = s.kind, s.args, self.value
        if k == "spike":
            return self.inputs[s.side]  # type: ignore[index]
        if k == "voltage":
            return self.inputs["voltage"]
        if k == "mod":
            return self.inputs["mod"]
        if k == "const":
            return a[0]
        if k == "scale":
            return v(a[0]) * a[1]
        if k in ("add", "mul"):
            parts = [v(x) for x in a]
            like = max((p for p in parts if isinstance(p, Tensor)), key=lambda t: t.ndim)
            out = _align(parts[0], like)
            for p in parts[1:]:
                p = _align(p, like)
                out = out + p if k == "add" else out * p
            return out
        if k == "relu":
            x = v(a[0])
            return x.clamp_min(0) if isinstance(x, Tensor) else max(x, 0.0)
        if k == "pow":
            return v(a[0]) ** a[1]
        if k == "batch_mean":
            x = v(a[0])
            return x.mean(1, keepdim=True).expand_as(x) if isinstance(x, Tensor) else x
        if k == "trace":
            x, d = v(a[0]), self.plan.decay_of(a[1])
            carry = self._carry_tensor(s, x)
            return scan_trace(x, carry, d, "nearest" if a[2] else "all-to-all")
        if k == "lowpass":
            x, d = v(a[0]), self.plan.decay_of(a[1])
            carry = self._carry_tensor(s, x)
            return scan_trace(x * (1.0 - d), carry, d)
        if k in ("before", "previous"):
            f = a[0]
            table = v(f)
            prev = torch.cat([self._carry_tensor(f, table)[None], table[:-1]])
            return prev.mul_(self.plan.decay_of(f.args[1])) if k == "before" else prev
        if k == "future":
            x, d = v(a[0]), self.plan.decay_of(a[1])
            x = x if isinstance(x, Tensor) else self._full_rows(x)
            return scan_future(x, d, include_current=not a[2])
        if k == "powers":
            d = self.plan.decay_of(a[0])
            like = self.inputs["pre"]
            return decay_powers(d, self.steps, like, offset=-1, reverse=True)[:, None].expand(
                self.steps, self.batch
            )
        raise AssertionError(k)

    def _full_rows(self, x: float) -> Tensor:
        like = self.inputs["pre"]
        return torch.full((self.steps, self.batch), x, dtype=like.dtype, device=like.device)

    def _carry_tensor(self, f: Signal, table: Tensor | float) -> Tensor:
        c = self.carried(f)
        if isinstance(c, Tensor):
            return c
        like = table if isinstance(table, Tensor) else self._full_rows(0.0)
        return torch.full_like(like[0], c)

    # ------------------------------------------------------------------------ state

    def new_state(self) -> dict[str, Tensor]:
        """Every filter's value after the chunk (from its table if computed, else from
        its input decayed to the end: no table needed)."""
        out: dict[str, Tensor] = {}
        for key, f in self.plan.filters.items():
            table = self.memo.get(key)
            if table is None and (f.kind == "lowpass" or not f.args[2]):
                x = self.value(f.args[0])
                d = self.plan.decay_of(f.args[1])
                x = x if isinstance(x, Tensor) else self._full_rows(x)
                to_end = decay_powers(d, self.steps, x, offset=-1, reverse=True)
                end = torch.tensordot(to_end, x, dims=1)
                if f.kind == "lowpass":
                    end.mul_(1.0 - d)
                out[key] = end.add_(self._carry_tensor(f, x), alpha=d**self.steps)
            else:
                out[key] = (table if table is not None else self.value(f))[-1].clone()
        return out


def signed_parts(x: Tensor | float | None, nonnegative: bool) -> list[tuple[float, Any]]:
    """``[(sign, part)]`` with ``x = Σ sign·part`` and every part >= 0 (parts that are all
    zero are left out; ``None`` is the factor 1)."""
    if x is None:
        return [(1.0, None)]
    if not isinstance(x, Tensor):
        return [(1.0 if x >= 0 else -1.0, abs(x))] if x != 0 else []
    if nonnegative:
        return [(1.0, x)]
    parts = []
    for sign in (1.0, -1.0):
        part = (x if sign > 0 else -x).clamp_min(0)
        if bool(part.any()):
            parts.append((sign, part))
    return parts


def _conv_all_rows(fn, post: Tensor, pre: Tensor) -> Tensor:
    return fn(post, pre)


def run_plan(
    plan: Plan,
    choice: tuple[str, ...],
    inputs: dict[str, Tensor],
    state: dict[str, Tensor],
    correlate: Callable[[Tensor, Tensor], Tensor],
    deliver: Deliver,
    weight: Tensor,
    conv: bool,
) -> dict[str, Tensor]:
    """Evaluates every product of ``plan`` on one chunk with the kernels of ``choice``,
    hands each signed result to ``deliver(target, value)`` and returns the state after
    the chunk (filters and eligibility traces).

    ``correlate(post_side, pre_side)``: the synapse's dense product summed over rows
    (GEMM, or conv weight-gradient) of ``[R, *out]`` and ``[R, *in]`` operands.
    """
    chunk = Chunk(plan, inputs, state)
    indices: dict[int, tuple[Tensor, tuple]] = {}
    new_elig = {}
    for coef, mod, elig in plan.carries:  # read-out of the eligibility carried in
        e0 = state.get(f"elig:{elig!r}")
        if e0 is None:
            continue
        d = plan.decay_of(elig.tau)
        m = chunk.value(mod) if mod is not None else 1.0
        m = m if isinstance(m, Tensor) else chunk._full_rows(m)
        c = decay_powers(d, chunk.steps, m) @ m  # [B]: Σ_t d^(t+1) m(t)
        if elig.per_sample:
            value = (c.view(-1, *([1] * (e0.ndim - 1))) * e0).sum(0)
        else:
            value = e0 * c[0]
        deliver("dw", value.mul_(coef))
    for key, elig in plan.eligibilities.items():
        e0 = state.get(key)
        if e0 is not None:
            new_elig[key] = e0 * plan.decay_of(elig.tau) ** chunk.steps
    for p, kernel in zip(plan.products, choice, strict=True):
        value = _product(plan, chunk, p, kernel, correlate, weight, conv, indices)
        if value is None:
            continue
        if p.target.startswith("elig:"):
            e = new_elig.get(p.target)
            new_elig[p.target] = value if e is None else e.add_(value)
        else:
            deliver(p.target, value)
    out = chunk.new_state()
    out.update(new_elig)
    return out


def _product(plan, chunk: Chunk, p: Product, kernel: str, correlate, weight, conv, indices):
    """``coef · Σ m·P·Q`` of one product (signed, weight-shaped; per sample if asked)."""
    if kernel.endswith("rewrite") or kernel.endswith("rewrite-gemm"):
        return _rewritten(plan, chunk, p, kernel, correlate, weight, conv, indices)
    binary = plan.binary
    post = None if p.post is None else chunk.value(p.post)
    pre = None if p.pre is None else chunk.value(p.pre)
    mod = None if p.mod is None else chunk.value(p.mod)
    total = None
    post_parts = signed_parts(post, p.post is None or p.post.nonnegative(binary))
    pre_parts = signed_parts(pre, p.pre is None or p.pre.nonnegative(binary))
    mod_parts = signed_parts(mod, p.mod is None or p.mod.nonnegative(binary))
    for sp, a in post_parts:
        for sq, b in pre_parts:
            for sm, m in mod_parts:
                part = _one(p, kernel, a, b, m, chunk, correlate, conv, indices)
                part = part.mul_(sp * sq * sm) if sp * sq * sm != 1.0 else part
                total = part if total is None else total.add_(part)
    if total is None:
        return None
    if p.weight:
        total = total * weight.detach()
    return total.mul_(p.coef) if p.coef != 1.0 else total


def _one(p, kernel, post, pre, mod, chunk, correlate, conv, indices) -> Tensor:
    """One product of non-negative parts (``None``: the factor 1)."""
    inputs = chunk.inputs
    if post is None and pre is None:
        raise ValueError(f"{p!r}: a term needs a post-side or a pre-side signal")
    if isinstance(mod, float) or isinstance(mod, int):
        post = post * mod if post is not None else None
        pre = pre * mod if post is None else pre
        mod = None
    if kernel in ("post-events", "pre-events") and not p.per_sample:
        spikes_side = "post" if kernel == "post-events" else "pre"
        s_expr = p.post if spikes_side == "post" else p.pre
        spikes = inputs[spikes_side]
        own = post if spikes_side == "post" else pre
        other = pre if spikes_side == "post" else post
        index = _index(indices, spikes)
        weights = _event_weights(s_expr, own, spikes, mod, index)
        table = other.reshape(-1, other.shape[-1])
        value = event_sum(index, table, 0, weights)
        return value if spikes_side == "post" else value.t()
    if mod is not None:
        if post is not None and (pre is None or post.numel() <= pre.numel()):
            post = post * _align(mod, post)
        else:
            pre = pre * _align(mod, pre)
    if post is None:
        post = torch.ones_like(inputs["post"])
    if pre is None:
        pre = torch.ones_like(inputs["pre"])
    post = post.expand_as(inputs["post"]) if post.shape != inputs["post"].shape else post
    pre = pre.expand_as(inputs["pre"]) if pre.shape != inputs["pre"].shape else pre
    if p.per_sample:
        return torch.stack([correlate(post[:, b], pre[:, b]) for b in range(post.shape[1])])
    return correlate(post, pre)


def _index(indices: dict, spikes: Tensor) -> tuple:
    cached = indices.get(id(spikes))
    if cached is None or cached[0] is not spikes:
        cached = indices[id(spikes)] = (spikes, spike_index(spikes.reshape(-1, spikes.shape[-1])))
    return cached[1]


def _event_weights(s_expr: Signal, own: Tensor, spikes: Tensor, mod, index) -> Tensor | None:
    """Per-event weights of a spike-supported factor: its value at the events (1 for
    bare binary spikes), times the row factor of the event's row."""
    weights = None
    rows = index[0].long()
    if s_expr.kind != "spike":  # spikes times other factors: read them at the events
        flat = rows * own.shape[-1] + index[2]
        weights = own.reshape(-1).index_select(0, flat)
    if mod is not None:
        per_event = mod.reshape(-1)[rows]
        weights = per_event if weights is None else weights * per_event
    return weights


def _rewritten(plan, chunk, p, kernel, correlate, weight, conv, indices):
    """``trace_d(spikes) × Q`` summed over the chunk as ``spikes × future_d(Q)`` plus the
    pairs of the carried trace with this chunk's ``Q`` (``x0 ⊗ Σ_t d^{t+1} Q(t)``)."""
    side = "post" if kernel.startswith("post") else "pre"
    f = p.post if side == "post" else p.pre
    other = p.pre if side == "post" else p.post
    strict = f.kind == "before"
    trace = f.args[0] if strict else f
    tau = trace.args[1]
    spikes = trace.args[0]
    q = other if p.mod is None else other * p.mod
    fut = _future(q, tau, strict)
    new = Term(1.0, **({"post": spikes, "pre": fut} if side == "post" else {"post": fut, "pre": spikes}))
    inner = Product(p.target, p.coef, new, per_sample=p.per_sample)
    value = _product(plan, chunk, inner, "gemm" if kernel.endswith("gemm") else f"{side}-events",
                     correlate, weight, conv, indices)  # fmt: skip
    x0 = chunk.state.get(repr(trace))
    if x0 is not None and bool(x0.any()):
        d = plan.decay_of(tau)
        qv = chunk.value(q)
        qv = qv if isinstance(qv, Tensor) else chunk._full_rows(qv)
        seen = torch.tensordot(decay_powers(d, chunk.steps, qv), _align(qv, qv), dims=1)
        pair = (x0[None], seen[None]) if side == "post" else (seen[None], x0[None])
        boundary = correlate(*pair).mul_(p.coef)
        if p.weight:
            boundary = boundary * weight.detach()
        value = boundary if value is None else value.add_(boundary)
    return value
