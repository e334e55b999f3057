"""``pl.Rule``: a rule declared in the language of :mod:`plasticity.language`."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..engine import Plan
from ..functional.traces import decay_factor
from ..language import Lowpass, Trace, parse
from .base import PlasticityRule

__all__ = ["Rule"]


class Rule(PlasticityRule):
    r"""A rule declared in the language of :mod:`plasticity.language`.

    ``pos`` and ``neg`` are sums of terms (either may be ``None``); ``Δw = f₊(w)·pos −
    f₋(w)·neg`` with the accumulator's bounds. A term whose value can be negative is split
    exactly into both components by the signs of its factors. A string is read by
    :func:`plasticity.language.parse` (numbers written out; for named values call
    ``parse`` with them).

    Args:
        synapse, neuron: as for :class:`~plasticity.STDP`.
        pos, neg: the potentiation and depression terms (or their text).
        **options: ``dt``, ``batch_reduction``, ``decay``, ``chunk_size``, ``kernel``,
            ``spikes``, ``precision``, ``process_group``, ``distributed`` as for
            :class:`~plasticity.STDP`; ``per_sample``: whether the third factor may
            differ between the samples of a batch (default: unless an eligibility trace
            is shared by the batch; ``True`` with a shared trace times the modulator is a
            ``ValueError``: such a trace has one third factor).

    Example:
        Pair STDP in four lines, and its first update:

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> from plasticity import post, pre
        >>> fc, lif = torch.nn.Linear(3, 2, bias=False), snn.Leaky(beta=0.5)
        >>> stdp = pl.Rule(fc, lif, pos=0.1 * post.spike * pre.trace(5.0),
        ...                neg=0.1 * post.trace(5.0).before * pre.spike)
        >>> x = torch.tensor([[[1.0, 0, 0]], [[0, 0, 0]]])   # input 0 fires at step 0
        >>> s = torch.tensor([[[0.0, 0]], [[1.0, 0]]])       # neuron 0 fires at step 1
        >>> stdp.observe(x, s)
        >>> round(float(stdp.step()[0, 0]), 6)               # 0.1 * exp(-1/5)
        0.081873

        The same rule as text, as Brian2 and Lava users write it:

        >>> pl.Rule(fc, lif, pos="0.1 * post.spike * pre.trace(5)",
        ...         neg="0.1 * post.trace(5).before * pre.spike").declaration()["neg"]
        0.1 * post.trace(5).before * pre.spike
    """

    def __init__(self, synapse: nn.Module, neuron: nn.Module, *, pos: Any = None,
                 neg: Any = None, per_sample: bool | None = None, **options: Any) -> None:  # fmt: skip
        """Builds a Rule from its ``pos`` and ``neg`` terms on ``synapse`` and ``neuron``
        (a term that does not factor into post × pre is a ``ValueError`` here)."""
        for name in ("trace", "coincident"):
            if name in options:
                raise TypeError(
                    f"pl.Rule takes no `{name}`: write the trace forms in the terms "
                    "(pre.trace(tau, nearest=True), post.trace(tau).before)"
                )
        pos, neg = (parse(x) if isinstance(x, str) else x for x in (pos, neg))
        super().__init__(synapse, neuron, **options)
        self._pos, self._neg = pos, neg
        plan = self.plan  # errors of the declaration now, before any hook is attached
        shared = any(not e.per_sample for e in plan.eligibilities.values())
        self.per_sample = (not shared) if per_sample is None else bool(per_sample)
        for _, mod, elig in plan.carries if self.per_sample else ():
            if mod is not None and not elig.per_sample:
                raise ValueError(
                    f"per_sample=True: {elig!r} is one trace shared by the batch, read with "
                    f"one third factor ({mod!r}); for rewards that differ between samples "
                    "write eligibility(..., per_sample=True)"
                )
        for tau in _time_constants(plan):
            decay_factor(self.dt, tau, self.decay)
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        return {"pos": self._pos, "neg": self._neg}

    def extra_repr(self) -> str:
        return f"pos={self._pos!r}, neg={self._neg!r}, dt={self.dt}"


def _time_constants(plan: Plan) -> set[float]:
    taus = {e.tau for e in plan.eligibilities.values()}
    taus |= {f.tau for f in plan.filters if isinstance(f, (Trace, Lowpass))}
    return taus
