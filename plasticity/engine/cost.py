r"""The kernel cost model: what each candidate assignment of a plan
(:meth:`Plan.candidates <plasticity.engine.Plan.candidates>`) costs on one chunk, counted
from the chunk's shapes and spike counts, so that the engine's choice is a pure function
of its inputs: the same chunk gives the same kernels, and so the same bits, in every run
and process, whatever the machine's load.

The work of a candidate is counted in three kinds of operations:

* **multiply-adds of a GEMM** (or conv weight-gradient): ``T·B · N_out · N_in`` per
  dense product, compute-bound, running at the FMA units' rate;
* **element passes**: one element streamed through a vectorised memory-bound operation.
  An event-driven sum reads one row element per spike and adds it (1 pass per element:
  ``spikes · N_other``); scanning a table (trace, future trace, filter: small decay-matrix
  products and elementwise updates, :func:`~plasticity.functional.scan_trace`) is about
  4 passes per element; indexing a spike train (the mask and ``nonzero``) 2 passes per
  element; the transposing copy of a weight-sized result read at the presynaptic spikes
  2 passes per weight element;
* **tensor operations**, each with a fixed cost (dispatch, a kernel launch), and on
  accelerators a host synchronisation per spike index (``nonzero``'s count).

These counts are properties of the code. What converts between them is a property of
the hardware, taken per device type from its architecture, never from timings of the
machine at hand (:data:`PROFILES`): how many GEMM multiply-adds cost as much as one
element pass (``element``), and what one operation and one synchronisation cost in
multiply-adds. The cheapest candidate wins; a tie goes to the earlier one (the GEMMs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..language import Spike, Trace
from .kernel import Kernel
from .plan import Plan, Product

__all__ = ["Profile", "PROFILES", "profile_for", "Work", "work", "candidate_cost", "cheapest"]


@dataclass(frozen=True)
class Profile:
    """Relative costs on one device type, in multiply-adds of a GEMM.

    Attributes:
        element: one element of a vectorised memory-bound operation (read, combined,
            written).
        op: the fixed cost of one tensor operation.
        sync: the fixed cost of one host synchronisation (a spike index's ``nonzero``).
        cache: bytes of the last-level cache: rows gathered at spikes from a table
            larger than it miss in proportion (each miss one more element pass).
    """

    element: float
    op: float
    sync: float
    cache: float


#: Per device type. CPU: a core runs 16 (AVX2) to 32 (AVX-512) float32 multiply-adds
#: per cycle in a GEMM (two FMA units, operands reused from registers) and streams about
#: 2 to 4 elements per cycle through an elementwise operation or a gather of rows from
#: cache: ``element = 8``. An operation costs a few microseconds of dispatch and thread
#: start (about 2**18 multiply-adds of a core at 3 GHz); there is no synchronisation.
#: CUDA: float32 GEMMs run at tens of TFLOP/s, memory at one to a few TB/s, about 2 to 8
#: bytes per element pass: ``element = 64``; a kernel launch about 1 µs (2**24
#: multiply-adds), a synchronisation about 10 µs (2**28). Other accelerators use the
#: CUDA profile.
PROFILES: dict[str, Profile] = {
    "cpu": Profile(element=8.0, op=float(2**18), sync=0.0, cache=float(2**25)),
    "cuda": Profile(element=64.0, op=float(2**24), sync=float(2**28), cache=float(2**25)),
}

#: element passes per element of each kind of memory-bound work (properties of the code)
GATHER, SCAN, INDEX, INDEX_SPIKE, TRANSPOSE, EVENT_WEIGHT = 1 / 3, 6.0, 12.0, 64.0, 2.0, 4.0
#: tensor operations of each kind of work (orders of magnitude, from the code)
OPS_GEMM, OPS_EVENTS, OPS_SCAN, OPS_INDEX, OPS_BOUNDARY = 2, 2, 8, 8, 6

def profile_for(device_type: str) -> Profile:
    """The :data:`PROFILES` entry of a device type (``"cpu"``, ``"cuda"``, ...)."""
    return PROFILES.get(device_type, PROFILES["cuda"])


class Work:
    """The work of one candidate assignment, per unit of the chunk's sizes (computed once
    per plan and candidate, :func:`work`): element passes over each side's tables, GEMMs,
    spike indices, rows gathered at each side's spikes, transposing copies, operations."""

    __slots__ = ("tables", "gemms", "gemm_mods", "indexed", "rewrites", "conv_gemms",
                 "gathers", "event_reads", "transposes", "ops", "syncs")  # fmt: skip

    def __init__(self) -> None:
        self.tables = {"pre": 0.0, "post": 0.0, "mod": 0.0}  # passes over a side's table
        self.gemms = self.gemm_mods = self.rewrites = self.conv_gemms = self.transposes = 0
        self.indexed: list[str] = []
        self.gathers = {"pre": 0, "post": 0}  # event-driven sums at a side's spikes
        self.event_reads = {"pre": 0, "post": 0}  # values read per event (factor, row factor)
        self.ops = self.syncs = 0

    def add_tables(self, plan: Plan, choice: tuple[Kernel, ...]) -> None:
        """The tables the products read with the kernels of ``choice``, each scanned (or
        combined elementwise) once."""
        tables: set = set()
        for reads in plan._reads(choice):
            for s in reads:
                if s.leaf or s in tables:
                    continue
                if isinstance(s, Trace) and s not in plan.direct:
                    continue  # read only through .before: scanned as that table
                tables.add(s)
                if s.side in self.tables:
                    self.tables[s.side] += 1.0 if s.elementwise else SCAN
                self.ops += 1 if s.elementwise else OPS_SCAN

    def add_product(self, p: Product, kernel: Kernel) -> None:
        """The work of product ``p`` with ``kernel``."""
        if kernel.side is None:  # a GEMM (a row factor multiplies the smaller operand)
            self.gemms += 1
            self.gemm_mods += p.mod is not None
            self.ops += OPS_GEMM
            return
        self._add_index(kernel.side)
        if kernel.rewrite:  # the other side's future trace, and the carried pairs
            # (times the row factor)
            self.tables[kernel.other] += SCAN + (0.0 if p.mod is None else 1.0)
            self.rewrites += 1
            self.ops += OPS_SCAN + OPS_BOUNDARY
        if kernel.gemm:  # conv: the weight-gradient reads the future trace
            self.conv_gemms += 1
            self.ops += OPS_GEMM
        else:
            self._add_events(p, kernel.side)

    def _add_index(self, side: str) -> None:
        """One spike index per side and chunk, shared by the products read at its spikes."""
        if side not in self.indexed:
            self.indexed.append(side)
            self.ops += OPS_INDEX
            self.syncs += 1

    def _add_events(self, p: Product, side: str) -> None:
        """An event-driven sum of the other side's rows at ``side``'s spikes."""
        self.gathers[side] += 1
        own = p.factor(side)
        valued = own is not None and not isinstance(own, Spike)  # spikes times others
        self.event_reads[side] += valued + (p.mod is not None)
        self.ops += OPS_EVENTS
        if side == "pre":  # [N_in, N_out] results: a transposing copy to the weight's layout
            self.transposes += 1
            self.ops += 1


def work(plan: Plan, choice: tuple[Kernel, ...]) -> Work:
    """The :class:`Work` of ``plan`` with the kernels of ``choice`` (cached on the plan)."""
    cache = plan.__dict__.setdefault("_work_cache", {})
    found = cache.get(choice)
    if found is None:
        found = Work()
        found.add_tables(plan, choice)
        for p, kernel in zip(plan.products, choice, strict=True):
            found.add_product(p, kernel)
        cache[choice] = found
    return found


def candidate_cost(plan: Plan, choice: tuple[Kernel, ...], *, rows: int, batch: int,
                   n_pre: int, n_post: int, k_in: int, weight: int, nnz: tuple[int, int],
                   itemsize: int, profile: Profile) -> float:  # fmt: skip
    """The modelled cost of running ``plan`` with the kernels of ``choice`` on one chunk,
    in multiply-adds of a GEMM.

    Args:
        plan: the compiled rule.
        choice: one :class:`~plasticity.engine.kernel.Kernel` per product (one of ``plan.candidates(...)``).
        rows: the chunk's ``T·B`` rows; ``batch``: ``B``.
        n_pre, n_post: elements of one step of each side per sample (conv: channels
            times positions).
        k_in: multiply-adds per post element and row of one product (dense: ``N_in``;
            conv: ``C_in / groups`` times the kernel size); ``weight``: the weight's
            number of elements.
        nnz: the chunk's spike counts ``(pre, post)``.
        itemsize: bytes per element of the tables.
        profile: the device type's :class:`Profile`.
    """
    w = work(plan, choice)
    e, cache = profile.element, profile.cache
    width = {"pre": n_pre, "post": n_post, "mod": 1}
    spikes = {"pre": nnz[0], "post": nnz[1]}
    # a side's tables: element passes cost up to twice as much beyond the cache
    size = {k: rows * n for k, n in width.items()}
    miss = {k: 1.0 + min(1.0, n * itemsize / cache) for k, n in size.items()}
    macs = rows * n_post * k_in  # one GEMM or conv weight-gradient over the chunk
    cost = (w.gemms + w.conv_gemms) * macs + w.rewrites * batch * n_post * k_in
    cost += e * sum(w.tables[k] * size[k] * miss[k] for k in w.tables)
    if w.gemm_mods:
        small = "pre" if n_pre <= n_post else "post"
        cost += e * w.gemm_mods * size[small] * miss[small]
    for side in w.indexed:
        cost += e * (INDEX * size[side] + INDEX_SPIKE * spikes[side]) * miss[side]
    for side, other in (("pre", "post"), ("post", "pre")):
        if w.gathers[side]:  # the other side's rows, read at this side's spikes
            cost += e * w.gathers[side] * GATHER * spikes[side] * width[other] * miss[other]
            cost += e * w.event_reads[side] * EVENT_WEIGHT * spikes[side] * miss[side]
    if w.transposes:
        cost += e * w.transposes * TRANSPOSE * weight * (1.0 + min(1.0, weight * itemsize / cache))
    return cost + w.ops * profile.op + w.syncs * profile.sync


def cheapest(plan: Plan, candidates: list[tuple[Kernel, ...]], **shape) -> tuple[Kernel, ...]:
    """The candidate of least :func:`candidate_cost` (the earliest of equal ones);
    ``shape``: the keywords of :func:`candidate_cost`."""
    best, least = candidates[0], math.inf
    for c in candidates:
        cost = candidate_cost(plan, c, **shape)
        if cost < least:
            best, least = c, cost
    return best
