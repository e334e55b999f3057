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
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .functional.correlate import Kernels
from .functional.traces import (
    decay_factor,
    decay_powers,
    scan_future,
    scan_future_padded,
    scan_trace,
)
from .language import ETerm, Signal, Term, as_terms

__all__ = ["Plan", "Product", "Chunk", "KernelChooser", "CHOOSER", "compile_rule", "run_plan"]

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
                    if term.coef == 0:
                        continue
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
        if term.coef == 0:  # e.g. a triplet rule's zero pair amplitude
            return
        for t in term.elig.terms.terms if isinstance(term, ETerm) else (term,):
            if t.post is None and t.pre is None:
                raise ValueError(
                    f"{t!r}: a term needs a post-side or a pre-side signal (a spike, trace, "
                    "voltage...); numbers, the modulator and the weight only scale one"
                )
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
            if inner.coef == 0:
                continue
            self.products.append(Product("dw", sign * term.coef * inner.coef, inner, future_mod))
            self.products.append(
                Product(key, inner.coef, inner, _powers(elig.tau), per_sample=elig.per_sample)
            )

    def decay_of(self, tau: float) -> float:
        return decay_factor(self.dt, tau, self.decay)

    def _reads(self, choice: tuple[str, ...]) -> list[set[Signal]]:
        """The signals each product computes from (with the kernels of ``choice``)."""
        cache = self.__dict__.setdefault("_reads_cache", {})
        if choice in cache:
            return cache[choice]
        out = cache[choice] = []
        for p, kernel in zip(self.products, choice, strict=True):
            side = kernel.split("-")[0] if "rewrite" in kernel else None
            read = {"post": [p.mod, p.pre], "pre": [p.mod, p.post]}.get(side, [p.mod, p.pre, p.post])  # type: ignore[arg-type]
            out.append(set().union(*(_signals(s) for s in read if s is not None)))
        return out

    def keeps(self, choice: tuple[str, ...]) -> list[set[str]]:
        """For each product, the signals that the products after it read (with the
        kernels of ``choice``): everything else can be freed once it is done."""
        cached = self.__dict__.setdefault("_keeps", {}).get(choice)
        if cached is None:
            cached, later = [], set()
            for u in reversed(self._reads(choice)):
                cached.append(set(later))
                later |= {repr(s) for s in u} | {"hist:" + repr(s) for s in u if s.kind == "delay"}
            cached.reverse()
            self._keeps[choice] = cached
        return cached

    def table_width(self, n_pre: int, n_post: int) -> int:
        """Elements per step of the tables alive at once (the most over products and
        candidates; ``n_pre``/``n_post``: one step of each side, batch included)."""
        cache = self.__dict__.setdefault("_width_cache", {})
        if (n_pre, n_post) in cache:
            return cache[n_pre, n_post]
        width = {"pre": n_pre, "post": n_post}
        most = 0
        for choice in self.candidates(conv=False) + self.candidates(conv=True):
            reads = self._reads(choice)
            for i, kernel in enumerate(choice):
                later = set().union(set(), *reads[i + 1 :])
                live = {s for s in reads[i] | later if s.kind not in _LEAVES}
                total = sum(width.get(s.side, 0) for s in live)  # type: ignore[arg-type]
                if "rewrite" in kernel:  # the future table of the other side (and Q·m)
                    other = n_pre if kernel.startswith("post") else n_post
                    total += other * (1 if self.products[i].mod is None else 2)
                most = max(most, total)
        cache[n_pre, n_post] = most
        return most

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
        """Kernel assignments worth timing (one kernel name per product): every product a
        GEMM; every product read at the post spikes where it can be (spike-supported
        factors event-driven, post traces rewritten); the same at the pre spikes; each
        side's own spikes event-driven. Conv synapses: conv weight-gradients, with and
        without the rewrite of each side's traces."""

        cache = self.__dict__.setdefault("_candidates", {})
        if conv in cache:
            return cache[conv]

        def own(p: Product, side: str) -> Signal | None:
            return p.post if side == "post" else p.pre

        out = [tuple("gemm" for _ in self.products)]
        for side in ("post", "pre"):
            if conv:
                out.append(tuple(f"{side}-rewrite-gemm" if self.rewritable(p, side) else "gemm"
                                 for p in self.products))  # fmt: skip
                continue
            out.append(tuple(
                f"{side}-events" if self.spiking(own(p, side)) and not p.per_sample
                else f"{side}-rewrite" if self.rewritable(p, side)
                else "gemm"
                for p in self.products
            ))  # fmt: skip
        if not conv:
            out.append(tuple(
                "post-events" if self.spiking(p.post) and not p.per_sample
                else "pre-events" if self.spiking(p.pre) and not p.per_sample
                else "gemm"
                for p in self.products
            ))  # fmt: skip
        cache[conv] = list(dict.fromkeys(out))
        return cache[conv]


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


_LEAVES = ("spike", "voltage", "mod", "const")


def _signals(s: Signal) -> set[Signal]:
    """``s`` and every signal it is computed from."""
    out = {s}
    for a in s.args:
        if isinstance(a, Signal):
            out |= _signals(a)
    return out


def _filters(plan: Plan) -> dict[str, Signal]:
    """Every stateful signal (trace, low-pass) the plan reads, by name."""
    found: dict[str, Signal] = {}

    def walk(s: Signal | None) -> None:
        if s is None:
            return
        if s.kind in ("trace", "lowpass", "delay"):
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
        self.finals: dict[str, Tensor] = {}  # last rows of released filter tables
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
        if k == "before":
            f = a[0]
            table, d = v(f), self.plan.decay_of(f.args[1])
            carry = self._carry_tensor(f, table)[None]
            if self.steps == 1:
                return carry * d
            return torch.cat([carry, table[:-1]]).mul_(d)
        if k == "delay":
            return self._history(s)[: self.steps]
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

    def _history(self, s: Signal) -> Tensor:
        """``[k + T, ...]``: the ``k`` values of a filter before the chunk, then its table."""
        key = "hist:" + repr(s)
        if key not in self.memo:
            f, k = s.args
            table = self.value(f)
            past = self.state.get(repr(s))
            if past is None:
                past = self._carry_tensor(f, table)[None].expand(k, *table.shape[1:])
            self.memo[key] = torch.cat([past, table])
        return self.memo[key]

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

    def release(self, keep: set[str]) -> None:
        """Frees every computed signal not in ``keep`` (keeping what the state needs)."""
        for key in [k for k in self.memo if k not in keep]:
            value = self.memo.pop(key)
            if key in self.plan.filters and key not in self.finals:
                self.finals[key] = _last(value)
            elif key.startswith("hist:"):
                f = self.plan.filters[key[5:]]
                self.finals[key[5:]] = value[-f.args[1] :].clone()

    def new_state(self) -> dict[str, Tensor]:
        """Every filter's value after the chunk (from its table if computed, else from
        its input decayed to the end: no table needed)."""
        out: dict[str, Tensor] = dict(self.finals)
        for key, f in self.plan.filters.items():
            if key in out:
                continue
            if f.kind == "delay":
                out[key] = self._history(f)[-f.args[1] :].clone()
                continue
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
                out[key] = _last(table if table is not None else self.value(f))
        return out


def _last(table: Tensor) -> Tensor:
    """The last row of a filter's fresh table (the table itself, for a one-step chunk)."""
    return table[0] if table.shape[0] == 1 else table[-1].clone()


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
    parts = []
    for sign in (1.0, -1.0):
        part = (x if sign > 0 else -x).clamp_min(0)
        if bool(part.any()):
            parts.append((sign, part))
    return parts


def run_plan(
    plan: Plan,
    choice: tuple[str, ...],
    inputs: dict[str, Tensor],
    state: dict[str, Tensor],
    kernels: Kernels,
    deliver: Deliver,
    inplace: bool = True,
) -> dict[str, Tensor]:
    """Evaluates every product of ``plan`` on one chunk with the kernels of ``choice``
    and returns the state after the chunk (filters, delays, eligibility traces; with
    ``inplace``, the weight-shaped eligibility traces of ``state`` are updated in place).

    ``deliver(target, value)`` receives each result: ``"pos"``/``"neg"`` non-negative
    magnitudes of the rule's update (unscaled by the batch), other targets signed.
    """
    chunk = Chunk(plan, inputs, state)
    new_elig: dict[str, Tensor] = {}
    for coef, mod, elig in plan.carries:  # read-out of the eligibility carried in
        e0 = state.get(f"elig:{elig!r}")
        if e0 is None:
            continue
        d = plan.decay_of(elig.tau)
        m = chunk.value(mod) if mod is not None else 1.0
        m = m if isinstance(m, Tensor) else chunk._full_rows(m)
        c = decay_powers(d, chunk.steps, m) @ m  # [B]: Σ_t d^(t+1) m(t)
        if elig.per_sample:  # split elementwise by sign
            value = (c.view(-1, *([1] * (e0.ndim - 1))) * e0).sum(0).mul_(coef)
            deliver("pos", value.clamp_min(0))
            deliver("neg", value.neg_().clamp_min_(0))
        else:  # k·e0 by the signs of k and of e0, one weight-sized part at a time
            k = float(c[0]) * coef
            deliver("pos" if k > 0 else "neg", e0.clamp_min(0).mul_(abs(k)))
            deliver("neg" if k > 0 else "pos", e0.clamp_max(0).mul_(-abs(k)))
    for key, elig in plan.eligibilities.items():
        e0 = state.get(key)
        if e0 is not None:  # decayed over the chunk (in place: the state is the caller's)
            d_chunk = plan.decay_of(elig.tau) ** chunk.steps
            new_elig[key] = e0.mul_(d_chunk) if inplace else e0 * d_chunk
    keeps = plan.keeps(choice)
    for i, (p, kernel) in enumerate(zip(plan.products, choice, strict=True)):
        signed = p.target != "dw"
        for sign, value in _pieces(plan, chunk, p, kernel, kernels):
            if not signed:
                deliver("pos" if sign * p.coef > 0 else "neg", value.mul_(abs(p.coef)))
                del value
                continue
            value.mul_(sign * p.coef)
            if p.target.startswith("elig:"):
                e = new_elig.get(p.target)
                new_elig[p.target] = value if e is None else e.add_(value)
            else:
                deliver(p.target, value)
            del value  # not alive while the next piece is computed
        chunk.release(keeps[i])  # tables no later product reads
    out = chunk.new_state()
    out.update(new_elig)
    return out


def _pieces(plan: Plan, chunk: Chunk, p: Product, kernel: str, kernels: Kernels):
    """``(sign, Σ m·P·Q)`` for every combination of the factors' signed parts."""
    binary = plan.binary
    rewrite = "rewrite" in kernel
    side = kernel.split("-")[0]
    f_post = None if p.post is None or (rewrite and side == "post") else chunk.value(p.post)
    f_pre = None if p.pre is None or (rewrite and side == "pre") else chunk.value(p.pre)
    mod = None if p.mod is None else chunk.value(p.mod)
    for sp, a in signed_parts(f_post, p.post is None or p.post.nonnegative(binary)):
        for sq, b in signed_parts(f_pre, p.pre is None or p.pre.nonnegative(binary)):
            for sm, m in signed_parts(mod, p.mod is None or p.mod.nonnegative(binary)):
                sign = sp * sq * sm
                if rewrite:
                    value = _rewritten(plan, chunk, p, side, a if side == "pre" else b, m,
                                       kernel.endswith("gemm"), kernels)  # fmt: skip
                else:
                    value = _one(p, kernel, a, b, m, chunk, kernels)
                if p.weight:  # the weight's sign splits the piece elementwise
                    w = kernels.weight.detach()
                    yield sign, w.clamp_min(0).mul_(value)
                    yield -sign, w.clamp_max(0).neg_().mul_(value)
                else:  # one-sided sums come as broadcast views
                    yield sign, value if value.is_contiguous() else value.contiguous()
                del value  # not alive while the next piece is computed


def _with_mod(x: Tensor | None, m: Any) -> Tensor | None:
    if x is None or m is None:
        return x
    return x * _align(m, x)


def _one(p: Product, kernel: str, post, pre, mod, chunk: Chunk, kernels: Kernels) -> Tensor:
    """``Σ m·P·Q`` of non-negative parts (``None``: the factor 1)."""
    inputs = chunk.inputs
    if not isinstance(mod, Tensor) and mod is not None:  # a number
        post, pre, mod = (post * mod if post is not None else None), (
            pre if post is not None else pre * mod
        ), None
    if kernel in ("post-events", "pre-events"):
        on_post = kernel == "post-events"
        s_expr, own, other = (p.post, post, pre) if on_post else (p.pre, pre, post)
        spikes = inputs["post" if on_post else "pre"]
        weights = _event_weights(s_expr, own, spikes, mod, kernels.index(spikes))
        value = kernels.events(spikes, weights, other)
        return value if on_post else value.t()
    if post is None and pre is None:
        raise ValueError(f"{p!r}: a term needs a post-side or a pre-side signal")
    if pre is None or post is None:
        x = _with_mod(post if pre is None else pre, mod)
        if mod is not None and x is None:
            x = mod
        x = x.expand_as(inputs["post" if pre is None else "pre"])
        if p.per_sample:
            return torch.stack([kernels.one_sided(x[:, b : b + 1], "post" if pre is None else "pre")
                                for b in range(x.shape[1])])  # fmt: skip
        return kernels.one_sided(x, "post" if pre is None else "pre")
    if mod is not None:  # the row factor goes to the smaller operand
        if post.numel() <= pre.numel():
            post = _with_mod(post, mod)
        else:
            pre = _with_mod(pre, mod)
    post = post.expand_as(inputs["post"]) if post.shape != inputs["post"].shape else post
    pre = pre.expand_as(inputs["pre"]) if pre.shape != inputs["pre"].shape else pre
    if p.per_sample:
        return torch.stack(
            [kernels.correlate(post[:, b], pre[:, b]) for b in range(post.shape[1])]
        )
    return kernels.correlate(post, pre)


def _event_weights(s_expr: Signal, own: Tensor, spikes: Tensor, mod, index) -> Tensor | None:
    """Per-event weights of a spike-supported factor: its value at the events (nothing
    for bare binary spikes), times the row factor of the event's row."""
    weights = None
    rows = index[0].long()
    if s_expr.kind != "spike":  # spikes times other factors: read them at the events
        flat = rows * own.shape[-1] + index[2]
        weights = own.reshape(-1).index_select(0, flat)
    if mod is not None:
        per_event = mod.reshape(-1)[rows].to(spikes.dtype)
        weights = per_event if weights is None else weights * per_event
    return weights


def _rewritten(plan, chunk, p, side, other, mod, gemm: bool, kernels: Kernels) -> Tensor:
    """``trace_d(s) × Q`` summed over the chunk, as ``s × future_d(Q)`` plus the pairs of
    the trace carried in with this chunk's ``Q`` (``x0 ⊗ Σ_t d^{t+1} Q(t)``): the trace of
    ``side`` is never tabulated, and ``s``'s spike index serves the product."""
    f = p.post if side == "post" else p.pre
    strict = f.kind == "before"
    trace = f.args[0] if strict else f
    d = plan.decay_of(trace.args[1])
    spikes = chunk.inputs[side]
    q = other if mod is None else other * _align(mod, other)
    padded = scan_future_padded(q, d)  # F[t] = Σ_{t' >= t} d^(t'-t) q(t'), F[T] = 0
    future = padded[1:] if strict else padded[:-1]  # strictly later: d F[t + 1]
    if gemm:
        value = kernels.correlate(spikes, future) if side == "post" else kernels.correlate(
            future, spikes)  # fmt: skip
    else:
        value = kernels.events(spikes, None, future)
        value = value if side == "post" else value.t()
    del padded, future
    if strict:
        value.mul_(d)
    x0 = chunk.state.get(repr(trace))
    if x0 is not None and bool(x0.any()):
        seen = torch.tensordot(decay_powers(d, chunk.steps, q), q, dims=1)  # [B, *other]
        pair = (x0[None], seen[None]) if side == "post" else (seen[None], x0[None])
        kernels.correlate_into(value, *pair)
    return value


def _octave(nnz: int, numel: int) -> int:
    """The activity's power of two (the kernel choice is cached per octave)."""
    return -99 if nnz == 0 or numel == 0 else max(-20, math.floor(math.log2(nnz / numel)))


class KernelChooser:
    """Chooses each plan's kernels by timing the candidates (:meth:`Plan.candidates`) on
    the first chunks of a shape, device, dtype and activity octave, then caches the
    fastest (like ``torch.backends.cudnn.benchmark``). While measuring, the first
    candidate (every product a GEMM) delivers the results; the others run on the same
    chunk and are discarded. :attr:`choices` shows what was chosen.
    """

    rounds = 2  # chunks timed per candidate before choosing

    def __init__(self) -> None:
        self.choices: dict[tuple, tuple[str, ...]] = {}
        self.samples: dict[tuple, dict[tuple[str, ...], list[float]]] = {}

    def key(self, plan: Plan, inputs: dict[str, Tensor], kernels: Kernels,
            nnz: list[int]) -> tuple:  # fmt: skip
        pre, post = inputs["pre"], inputs["post"]
        steps = 1 << max(0, pre.shape[0] - 1).bit_length()  # T rounded up to a power of 2
        conv = None if kernels.conv is None else tuple(sorted(kernels.conv.items()))
        return (plan.signature, conv, steps, tuple(pre.shape[1:]), tuple(post.shape[1:]),
                pre.dtype, str(pre.device), kernels.compute_dtype,
                _octave(nnz[0], pre.numel()), _octave(nnz[1], post.numel()))  # fmt: skip

    def run(self, option: str, plan: Plan, inputs: dict[str, Tensor], state: dict[str, Tensor],
            kernels: Kernels, deliver: Deliver, nnz: list[int], record: dict[str, str],
            remembered: dict[str, tuple[str, ...]]):  # fmt: skip
        """``run_plan`` with the kernels of ``option`` (``"dense"``: GEMMs; ``"sparse"``:
        the first event-driven candidate; ``"auto"``: measured); the products' kernels
        go into ``record``. ``remembered`` (a rule's own, saved with its state) holds the
        choices the rule has used, so that a rule loaded from a checkpoint runs the same
        kernels (and gives the same numbers, bit for bit) as the one saved."""
        candidates = plan.candidates(conv=kernels.conv is not None)
        if option == "dense" or len(candidates) == 1:
            choice = candidates[0]
        elif option == "sparse":
            choice = candidates[1]
        else:
            key = self.key(plan, inputs, kernels, nnz)
            name = repr(key)
            choice = remembered.get(name) or self.choices.get(key)  # type: ignore[assignment]
            if choice is None or tuple(choice) not in candidates:
                return self._measure(key, candidates, plan, inputs, state, kernels, deliver, record)
            choice = remembered[name] = tuple(choice)
        record.clear()
        record.update((p.label, k) for p, k in zip(plan.products, choice, strict=True))
        return run_plan(plan, choice, inputs, state, kernels, deliver)

    def _measure(self, key, candidates, plan, inputs, state, kernels, deliver, record):
        times = self.samples.setdefault(key, {c: [] for c in candidates})
        sync = torch.cuda.synchronize if inputs["pre"].is_cuda else (lambda: None)
        result = state
        for i, c in reversed(list(enumerate(candidates))):  # the delivering one last
            fresh = Kernels(kernels.weight, kernels.conv, kernels.compute_dtype)  # no shared index
            sync()
            start = time.perf_counter()
            new = run_plan(plan, c, inputs, state, fresh, deliver if i == 0 else _discard,
                           inplace=i == 0)  # fmt: skip
            sync()
            times[c].append(time.perf_counter() - start)
            if i == 0:
                result = new
            del new, fresh  # a discarded run's state and index are freed at once
        if all(len(t) >= self.rounds for t in times.values()):
            self.choices[key] = min(candidates, key=lambda c: min(times[c]))
            del self.samples[key]
        record.clear()
        record.update((p.label, k) for p, k in zip(plan.products, candidates[0], strict=True))
        return result


def _discard(target: str, value: Tensor) -> None:
    return None


#: the process-wide kernel choices (``CHOOSER.choices``: key -> kernel per product)
CHOOSER = KernelChooser()
