"""Compiling a declaration into a :class:`Plan`: its products, filters and eligibility
traces, and the kernel candidates of each product."""

from __future__ import annotations

from typing import Any

from ..functional.traces import decay_factor
from ..language import Before, Const, Eligibility, ETerm, Fed, Signal, Term, Trace, as_terms
from ..language.terms import _join
from ..language.text import _atom, _fmt
from .kernel import GEMM, Kernel
from .signals import Future, Powers

__all__ = ["Plan", "Product", "compile_rule"]


class Product:
    """``coef · Σ m·P·Q`` into ``target`` (``"dw"``, a named buffer, or an
    :class:`~plasticity.language.Eligibility`; ``per_sample``: one result per sample; a
    missing factor is 1: a constant product is ``coef · Σ m`` for every synapse)."""

    __slots__ = ("target", "coef", "post", "pre", "mod", "weight", "per_sample", "label")

    def __init__(self, target: str | Eligibility, coef: float, term: Term, mod: Signal | None = None,
                 per_sample: bool = False, label: str = "") -> None:  # fmt: skip
        self.target, self.coef, self.per_sample = target, coef, per_sample
        self.post, self.pre, self.weight = term.post, term.pre, term.weight
        self.mod = mod if term.mod is None else term.mod if mod is None else term.mod * mod
        self.label = label or repr(term)

    def factor(self, side: str) -> Signal | None:
        """The factor of ``side`` (``"post"``/``"pre"``; ``None``: the factor 1)."""
        return self.post if side == "post" else self.pre

    def __repr__(self) -> str:
        parts = [p for p in (self.mod, self.post, self.pre) if p is not None]
        w = ["weight"] if self.weight else []
        target = self.target if isinstance(self.target, str) else f"elig:{self.target!r}"
        return f"{target} += {_fmt(self.coef)} * " + (" * ".join([*w, *map(_atom, parts)]) or "1")


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
        self._decays: dict[float, float] = {}
        self.products: list[Product] = []
        self.carries: list[tuple[float, Signal | None, Any]] = []  # (coef, mod, eligibility)
        self.eligibilities: dict[Eligibility, Eligibility] = {}  # (keys of the state)
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
        self.products = _merged(self.products)
        self.filters = _filters(self)
        self.direct = _direct(self)
        reads: set[str] = set().union(*(s.leaves() for s in _roots(self)))
        self.reads_voltage, self.reads_mod = "voltage" in reads, "mod" in reads
        #: the user-fed signals read, ``{name: side}`` (``rule.feed``, issue 23)
        self.fed = _fed(self)
        #: whether a signal may exceed the floats on bounded inputs (an exponential)
        self.unbounded = any(x.unbounded for s in _roots(self) for x in s.walk())
        self.signature = "; ".join(map(repr, self.products))

    def _add(self, term: Term | ETerm, sign: float) -> None:
        if term.coef == 0:  # e.g. a triplet rule's zero pair amplitude
            return
        if isinstance(term, Term):
            self.products.append(Product("dw", sign * term.coef, term))
            return
        elig = term.elig
        first = elig not in self.eligibilities  # one trace, however many read-outs read it
        self.eligibilities[elig] = elig
        factor = _join(term.mod, term.post)  # the read-out's row (or per-neuron) factor
        self.carries.append((sign * term.coef, factor, elig))
        future = Future(factor if factor is not None else Const(1.0), elig.tau, False)
        for inner in elig.terms.terms:
            if inner.coef == 0:
                continue
            coef = sign * term.coef * inner.coef
            if term.post is not None:  # per neuron: Σ_t L_i(t) e_ij(t) reads future(L) at i
                rows = Term(inner.coef, _join(inner.post, future), inner.pre, inner.mod)
                self.products.append(Product("dw", coef, rows))
            else:
                self.products.append(Product("dw", coef, inner, future))
            if first:
                self.products.append(
                    Product(elig, inner.coef, inner, Powers(elig.tau), per_sample=elig.per_sample)
                )

    def decay_of(self, tau: float) -> float:
        d = self._decays.get(tau)
        if d is None:
            d = self._decays[tau] = decay_factor(self.dt, tau, self.decay)
        return d

    def _reads(self, choice: tuple[Kernel, ...]) -> list[set[Signal]]:
        """The signals each product computes from (with the kernels of ``choice``)."""
        cache = self.__dict__.setdefault("_reads_cache", {})
        if choice in cache:
            return cache[choice]
        out = cache[choice] = []
        for p, kernel in zip(self.products, choice, strict=True):
            rewritten = kernel.side if kernel.rewrite else None  # its trace: not tabulated
            read = [p.mod] + [p.factor(side) for side in ("pre", "post") if side != rewritten]
            out.append(set().union(*(_signals(s) for s in read if s is not None)))
        return out

    def keeps(self, choice: tuple[Kernel, ...]) -> list[set[Signal]]:
        """For each product, the signals that the products after it read (with the
        kernels of ``choice``): everything else can be freed once it is done."""
        cached = self.__dict__.setdefault("_keeps", {}).get(choice)
        if cached is None:
            cached, later = [], set()
            for u in reversed(self._reads(choice)):
                cached.append(set(later))
                later |= u
            cached.reverse()
            self._keeps[choice] = cached
        return cached

    def table_width(self, n_pre: int, n_post: int) -> int:
        """Elements per step of the tables alive at once (the most over products and
        candidates; ``n_pre``/``n_post``: one step of each side, batch included)."""
        cache = self.__dict__.setdefault("_width_cache", {})
        if (n_pre, n_post) in cache:
            return cache[n_pre, n_post]
        width: dict[Any, int] = {"pre": n_pre, "post": n_post}
        most = 0
        for choice in self.candidates(conv=False) + self.candidates(conv=True):
            reads = self._reads(choice)
            for i, kernel in enumerate(choice):
                most = max(most, self._live_width(reads, i, kernel, width))
        cache[n_pre, n_post] = most
        return most

    def _live_width(self, reads: list[set[Signal]], i: int, kernel: Kernel,
                    width: dict[Any, int]) -> int:  # fmt: skip
        """Elements per step of the tables alive while product ``i`` runs with ``kernel``
        (``reads``: what each product reads; ``width``: elements per step of each side)."""
        # alive: what this product reads, and what the ones before it computed that a
        # later one reads (tables are computed when first read)
        later = set().union(set(), *reads[i + 1 :])
        done = set().union(set(), *reads[:i])
        live = {s for s in reads[i] | (done & later)
                if not s.leaf and (not isinstance(s, Trace) or s in self.direct)}  # fmt: skip
        total = sum(width.get(s.side, 0) for s in live)
        # an elementwise factor is built with one temporary of its side alive
        total += max([width.get(s.side, 0) for s in reads[i] if s.elementwise], default=0)
        if kernel.rewrite:  # the future table of the other side (and Q·m)
            total += width[kernel.other] * (1 if self.products[i].mod is None else 2)
        return total

    # ------------------------------------------------------------------ candidates

    def rewritable(self, p: Product, side: str) -> bool:
        """Whether ``side``'s factor of ``p`` is an all-to-all trace (or ``.before``) of
        binary spikes, so that the product can read the other side's future trace at
        those spikes instead."""
        s, other = p.factor(side), p.factor("pre" if side == "post" else "post")
        if s is None or other is None or p.per_sample or not self.binary:
            return False
        trace = s.x if isinstance(s, Before) else s
        return isinstance(trace, Trace) and trace.all_to_all() is not None

    def spiking(self, s: Signal | None) -> bool:
        """Whether ``s`` is zero wherever its side's spikes are (spikes times others)."""
        return s is not None and self.binary and s.spiking()

    def candidates(self, conv: bool) -> list[tuple[Kernel, ...]]:
        """Kernel assignments worth weighing (one :class:`Kernel` per product): every product a
        GEMM; every product read at the post spikes where it can be (spike-supported
        factors event-driven, post traces rewritten); the same at the pre spikes; each
        side's own spikes event-driven. Conv synapses: conv weight-gradients, with and
        without the rewrite of each side's traces."""

        cache = self.__dict__.setdefault("_candidates", {})
        if conv in cache:
            return cache[conv]
        out = [tuple(GEMM for _ in self.products)]
        for side in ("post", "pre"):
            out.append(tuple(self._read_at(p, side, conv) for p in self.products))
        if not conv:
            out.append(tuple(self._own_events(p) for p in self.products))
        cache[conv] = list(dict.fromkeys(out))
        return cache[conv]

    def _read_at(self, p: Product, side: str, conv: bool) -> Kernel:
        """``p``'s kernel read at ``side``'s spikes where it can be (a spike-supported
        factor event-driven, a trace rewritten; conv: a trace rewritten into a conv
        weight-gradient), else a GEMM."""
        if conv:
            return Kernel(side, rewrite=True, gemm=True) if self.rewritable(p, side) else GEMM
        if self._events(p, side):
            return Kernel(side, rewrite=False, gemm=False)
        if self.rewritable(p, side):
            return Kernel(side, rewrite=True, gemm=False)
        return GEMM

    def _own_events(self, p: Product) -> Kernel:
        """``p``'s kernel with each side's own spikes event-driven (the post side first),
        else a GEMM."""
        for side in ("post", "pre"):
            if self._events(p, side):
                return Kernel(side, rewrite=False, gemm=False)
        return GEMM

    def _events(self, p: Product, side: str) -> bool:
        """Whether ``p`` can be an event-driven sum at ``side``'s spikes. A one-sided or
        constant product has no other side to sum at the spikes: it is a sum over rows
        (``Kernels.one_sided``), run as its "gemm"."""
        if p.post is None or p.pre is None:
            return False
        return self.spiking(p.factor(side)) and not p.per_sample


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


def _merged(products: list[Product]) -> list[Product]:
    """The products with those that share a target, a row factor, the weight factor and
    one side's factor merged into one, the other side's factors summed: ``a·P·Q + b·P'·Q
    = (a·P + b·P')·Q``, one GEMM or event sum instead of two (the triplet rule's pair and
    triplet terms). Products of ``dw`` merge only with the same sign: potentiation and
    depression are accumulated apart."""
    out: list[Product] = []
    for p in products:
        for i, q in enumerate(out):
            merged = _merge(q, p)
            if merged is not None:
                out[i] = merged
                break
        else:
            out.append(p)
    return out


def _merge(q: Product, p: Product) -> Product | None:
    """``q`` and ``p`` as one product, where they share a target, a row factor, the weight
    factor and one side's factor (``dw``: and a sign); else ``None``."""
    same = (q.target, q.per_sample, q.weight, q.mod) == (p.target, p.per_sample, p.weight, p.mod)
    if not same or (q.target == "dw" and (q.coef > 0) != (p.coef > 0)):
        return None
    for side, other in (("pre", "post"), ("post", "pre")):
        shared, a, b = q.factor(side), q.factor(other), p.factor(other)
        if shared is None or a is None or b is None or shared != p.factor(side):
            continue
        sign = 1.0 if q.coef > 0 else -1.0
        merged = Product.__new__(Product)
        merged.target, merged.per_sample, merged.weight = q.target, q.per_sample, q.weight
        merged.mod, merged.coef, merged.label = q.mod, sign, f"{q.label} + {p.label}"
        setattr(merged, side, shared)
        setattr(merged, other, a * abs(q.coef) + b * (p.coef * sign))
        return merged
    return None


def _signals(s: Signal, kept: bool = True) -> set[Signal]:
    """``s`` and every signal it is computed from that is kept as a table (``kept``:
    whether ``s`` itself is: the operands of elementwise combinations
    (:attr:`Signal.elementwise`) are not)."""
    out = {s} if kept or not s.elementwise else set()
    for a in s.operands():
        out |= _signals(a, not s.elementwise)
    return out


def _roots(plan: Plan) -> list[Signal]:
    """The signals the plan's products and eligibility read-outs read directly."""
    out = [s for p in plan.products for s in (p.post, p.pre, p.mod) if s is not None]
    return out + [mod for _, mod, _ in plan.carries if mod is not None]


def _walk(s: Signal, visit, direct: bool = True) -> None:
    """Calls ``visit(signal, direct)`` on ``s`` and every signal it is computed from
    (``direct``: read other than through ``.before``)."""
    visit(s, direct)
    for a in s.operands():
        _walk(a, visit, not isinstance(s, Before))


def _direct(plan: Plan) -> set[Signal]:
    """The signals read other than through ``.before`` (the others need no table of
    their own: :meth:`~plasticity.engine.chunk.Chunk.value` scans their ``.before``)."""
    found: set[Signal] = set()
    for root in _roots(plan):
        _walk(root, lambda s, direct: found.add(s) if direct else None)
    return found


def _filters(plan: Plan) -> dict[Signal, Signal]:
    """Every stateful signal (trace, low-pass, delay) the plan reads (keys: the nodes,
    which key their state)."""
    found: dict[Signal, Signal] = {}
    for root in _roots(plan):
        _walk(root, lambda s, _: found.setdefault(s, s) if s.stateful else None)
    return found


def _fed(plan: Plan) -> dict[str, str]:
    """The user-fed signals the plan reads, ``{name: side}``; a name is fed by
    ``rule.feed(name=...)`` and so may name a signal of one side only."""
    found: dict[str, str] = {}
    for s in (x for root in _roots(plan) for x in root.walk() if isinstance(x, Fed)):
        if found.setdefault(s.name, s.side) != s.side:
            raise ValueError(
                f"pre.signal({s.name!r}) and post.signal({s.name!r}): a name is fed by "
                "rule.feed(name=...) and so names a signal of one side; give the presynaptic "
                "and the postsynaptic signal different names"
            )
    return found
