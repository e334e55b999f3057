"""Kernel choice: by the cost model (:mod:`plasticity.engine.cost`) from the chunk's
shapes, dtype, device and spike counts, by default; by timing the candidates on the first
chunks of a shape only on request (:attr:`KernelChooser.benchmark`)."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..functional.correlate import Kernels
from .cost import cheapest, profile_for
from .kernel import Kernel
from .plan import Plan
from .run import Deliver, run_plan

__all__ = ["KernelChooser", "CHOOSER"]


def _octave(nnz: int, numel: int) -> int:
    """The activity's power of two (timed choices are cached per octave)."""
    return -99 if nnz == 0 or numel == 0 else max(-20, math.floor(math.log2(nnz / numel)))


class KernelChooser:
    """Chooses the kernels of each chunk among the candidates of its plan
    (:meth:`Plan.candidates`).

    By default (``benchmark = False``) the choice is the cheapest candidate by the cost
    model (:func:`~plasticity.engine.cost.candidate_cost`): a pure function of the plan,
    the chunk's shapes, the device type and the spike counts, with no clock involved, so
    the same inputs run the same kernels and give the same bits in every run and process,
    whatever the machine's load. :attr:`choices` shows the latest choice per shape key.

    ``benchmark = True`` (``plasticity.engine.CHOOSER.benchmark = True``, like
    ``torch.backends.cudnn.benchmark``) trades that reproducibility for speed: the
    candidates are timed on the first chunks of a shape, device, dtype and activity
    octave and the fastest is cached, so which kernels run (and the last bits of the
    results) depends on the machine's load at the time. While measuring, the first
    candidate (every product a GEMM) delivers the results; the others run on the same
    chunk and are discarded. Conv weight-gradients then also leave cuDNN's settings as
    they are (by default they run with its deterministic algorithms). ``benchmark`` is
    ignored while ``torch.use_deterministic_algorithms(True)`` is in effect.
    """

    rounds = 2  # chunks timed per candidate before choosing (benchmark mode)

    def __init__(self, benchmark: bool = False) -> None:
        #: time the candidates instead of the cost model (not reproducible; opt-in)
        self.benchmark = benchmark
        #: the latest choice per shape key (``key()``), for inspection
        self.choices: dict[tuple, tuple[Kernel, ...]] = {}
        #: benchmark mode: the fastest candidate per key, once timed
        self.fastest: dict[tuple, tuple[Kernel, ...]] = {}
        self.samples: dict[tuple, dict[tuple[Kernel, ...], list[float]]] = {}
        self.names: dict[tuple, str] = {}  # each key's text (how rules remember choices)

    def timed(self) -> bool:
        """Whether choices are timed now: :attr:`benchmark`, unless
        ``torch.use_deterministic_algorithms(True)`` is in effect."""
        return bool(self.benchmark) and not torch.are_deterministic_algorithms_enabled()

    def choose(self, plan: Plan, inputs: dict[str, Tensor], kernels: Kernels,
               nnz: list[int]) -> tuple[Kernel, ...]:  # fmt: skip
        """The cost model's choice for one chunk (``inputs``: ``pre``/``post`` ``[T, B,
        ...]``; ``nnz``: their spike counts): the same arguments give the same choice."""
        candidates = plan.candidates(conv=kernels.conv is not None)
        if len(candidates) == 1:
            return candidates[0]
        pre, post, w = inputs["pre"], inputs["post"], kernels.weight
        steps, batch = pre.shape[:2]
        return cheapest(plan, candidates, rows=steps * batch, batch=batch,
                        n_pre=math.prod(pre.shape[2:]), n_post=math.prod(post.shape[2:]),
                        k_in=math.prod(w.shape[1:]), weight=w.numel(),
                        nnz=(int(nnz[0]), int(nnz[1])), itemsize=w.element_size(),
                        profile=profile_for(pre.device.type))  # fmt: skip

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
            remembered: dict[str, tuple[str, ...]], scale: float = 1.0):  # fmt: skip
        """``run_plan`` with the kernels of ``option`` (``"dense"``: GEMMs; ``"sparse"``:
        the first event-driven candidate; ``"auto"``: :meth:`choose`, or timed with
        :attr:`benchmark`); the products' kernels' names go into ``record``. ``remembered``
        (a rule's own, saved with its state) holds the timed choices the rule has used (by
        name), so
        that a rule loaded from a checkpoint runs the same kernels (and gives the same
        numbers, bit for bit) as the one saved; the cost model needs no memory (its
        choice is a function of the chunk). ``scale``: as for
        :func:`~plasticity.engine.run.run_plan`."""
        candidates = plan.candidates(conv=kernels.conv is not None)
        if option == "dense" or len(candidates) == 1:
            choice = candidates[0]
        elif option == "sparse":
            choice = candidates[1]
        elif not self.timed():
            choice = self.choices[self.key(plan, inputs, kernels, nnz)] = self.choose(
                plan, inputs, kernels, nnz)  # fmt: skip
        else:
            kernels.deterministic = False  # cuDNN as the user set it (e.g. its benchmark)
            key = self.key(plan, inputs, kernels, nnz)
            name = self.names.get(key)
            if name is None:
                name = self.names[key] = repr(key)
            choice = _named(remembered.get(name)) or self.fastest.get(key)
            if choice is None or choice not in candidates:
                return self._measure(key, candidates, plan, inputs, state, kernels, deliver,
                                     record, scale)  # fmt: skip
            self.choices[key] = choice
            remembered[name] = tuple(k.name for k in choice)
        _record(record, plan, choice)
        return run_plan(plan, choice, inputs, state, kernels, deliver, scale=scale)

    def _measure(self, key, candidates, plan, inputs, state, kernels, deliver, record, scale):
        times = self.samples.setdefault(key, {c: [] for c in candidates})
        sync = torch.cuda.synchronize if inputs["pre"].is_cuda else (lambda: None)
        result = state
        for i, c in reversed(list(enumerate(candidates))):  # the delivering one last
            fresh = Kernels(kernels.weight, kernels.conv, kernels.compute_dtype,
                            deterministic=False)  # no shared index
            sync()
            start = time.perf_counter()
            new = run_plan(plan, c, inputs, state, fresh, deliver if i == 0 else _discard,
                           inplace=i == 0, scale=scale)  # fmt: skip
            sync()
            times[c].append(time.perf_counter() - start)
            if i == 0:
                result = new
            del new, fresh  # a discarded run's state and index are freed at once
        if all(len(t) >= self.rounds for t in times.values()):
            self.fastest[key] = min(candidates, key=lambda c: min(times[c]))
            del self.samples[key]
        _record(record, plan, candidates[0])
        return result


def _record(record: dict[str, str], plan: Plan, choice: tuple[Kernel, ...]) -> None:
    """``record`` (``rule.kernel_choice``): each product's kernel's name."""
    record.clear()
    record.update((p.label, k.name) for p, k in zip(plan.products, choice, strict=True))


def _named(names) -> tuple[Kernel, ...] | None:
    """The kernels of a remembered choice (names, as a checkpoint saves them; ``None``
    for none, or for names no kernel has: the choice is timed again)."""
    try:
        return None if not names else tuple(Kernel.named(n) for n in names)
    except ValueError:
        return None


def _discard(target: str, value: Tensor, alpha: float = 1.0) -> None:
    return None


#: the process-wide kernel choices (``CHOOSER.choices``: key -> kernel per product)
CHOOSER = KernelChooser()
