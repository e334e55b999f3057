"""Kernel choice by measurement: the candidates of a plan timed on the first chunks of a
shape, device, dtype and activity octave, the fastest cached."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..functional.correlate import Kernels
from .plan import Plan
from .run import Deliver, run_plan

__all__ = ["KernelChooser", "CHOOSER"]


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
        self.names: dict[tuple, str] = {}  # each key's text (how rules remember choices)

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
        the first event-driven candidate; ``"auto"``: measured); the products' kernels
        go into ``record``. ``remembered`` (a rule's own, saved with its state) holds the
        choices the rule has used, so that a rule loaded from a checkpoint runs the same
        kernels (and gives the same numbers, bit for bit) as the one saved. ``scale``:
        as for :func:`~plasticity.engine.run.run_plan`."""
        candidates = plan.candidates(conv=kernels.conv is not None)
        if option == "dense" or len(candidates) == 1:
            choice = candidates[0]
        elif option == "sparse":
            choice = candidates[1]
        else:
            key = self.key(plan, inputs, kernels, nnz)
            name = self.names.get(key)
            if name is None:
                name = self.names[key] = repr(key)
            choice = remembered.get(name) or self.choices.get(key)  # type: ignore[assignment]
            if choice is None or tuple(choice) not in candidates:
                return self._measure(key, candidates, plan, inputs, state, kernels, deliver,
                                     record, scale)  # fmt: skip
            choice = remembered[name] = tuple(choice)
        record.clear()
        record.update((p.label, k) for p, k in zip(plan.products, choice, strict=True))
        return run_plan(plan, choice, inputs, state, kernels, deliver, scale=scale)

    def _measure(self, key, candidates, plan, inputs, state, kernels, deliver, record, scale):
        times = self.samples.setdefault(key, {c: [] for c in candidates})
        sync = torch.cuda.synchronize if inputs["pre"].is_cuda else (lambda: None)
        result = state
        for i, c in reversed(list(enumerate(candidates))):  # the delivering one last
            fresh = Kernels(kernels.weight, kernels.conv, kernels.compute_dtype)  # no shared index
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
            self.choices[key] = min(candidates, key=lambda c: min(times[c]))
            del self.samples[key]
        record.clear()
        record.update((p.label, k) for p, k in zip(plan.products, candidates[0], strict=True))
        return result


def _discard(target: str, value: Tensor, alpha: float = 1.0) -> None:
    return None


#: the process-wide kernel choices (``CHOOSER.choices``: key -> kernel per product)
CHOOSER = KernelChooser()
