"""Pair STDP and triplet STDP, declared in the rule language (:mod:`plasticity.language`).

``trace`` picks all-to-all or nearest-spike traces, ``coincident`` whether each side
reads its trace with (``.trace``) or without (``.trace.before``) the same step's spikes:

================  =====================================  =====================================
``coincident``    potentiation                           depression
================  =====================================  =====================================
``"ltp"``         ``post.spike * pre.trace(τ₊)``         ``post.trace(τ₋).before * pre.spike``
``"both"``        ``post.spike * pre.trace(τ₊)``         ``post.trace(τ₋) * pre.spike``
``"none"``        ``post.spike * pre.trace(τ₊).before``  ``post.trace(τ₋).before * pre.spike``
================  =====================================  =====================================
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..language import Signal, post, pre
from .base import PlasticityRule
from .checks import check_amplitude, check_positive

__all__ = ["STDP", "TripletSTDP", "TRIPLET_PRESETS", "pair_reads"]


class STDP(PlasticityRule):
    r"""Pair-based STDP on a synapse (``nn.Linear``, ``nn.Conv1d/2d/3d``) and its spiking neuron.

    Every post spike potentiates by the presynaptic trace, every pre spike depresses by the
    postsynaptic trace; over a window the result equals the pair sums (all-to-all,
    ``coincident="ltp"``):

    .. math::
        \mathrm{pos}_{ij} = A_+ \sum_{t^\text{post}_i \ge t^\text{pre}_j}
            e^{-(t^\text{post}_i - t^\text{pre}_j)\,dt/\tau_+},\qquad
        \mathrm{neg}_{ij} = A_- \sum_{t^\text{pre}_j > t^\text{post}_i}
            e^{-(t^\text{pre}_j - t^\text{post}_i)\,dt/\tau_-},

    averaged over the batch, and :meth:`step` applies :math:`\Delta w = f_+(w)\,\mathrm{pos} -
    f_-(w)\,\mathrm{neg}` with the bounds configured on :attr:`accumulator`.

    Args:
        synapse: the module whose ``weight`` learns (for a recurrent ``snn.RLeaky``: its
            ``.recurrent``; the presynaptic spikes are then the neuron's own spikes of the
            previous step).
        neuron: the spiking module the synapse drives (any module returning spikes or
            ``(spikes, ...)``).
        a_plus, a_minus: potentiation / depression amplitudes (>= 0).
        tau_plus, tau_minus: trace time constants, in the units of ``dt`` (> 0).
        dt: the simulation step (> 0). Defaults to 1.
        trace: ``"all-to-all"`` (every pair) or ``"nearest"`` (symmetric nearest spike).
        coincident: same-step pre and post spikes count as ``"ltp"`` (pre before post,
            the default, as in Brian2), ``"both"`` (LTP and LTD) or ``"none"`` (NEST).
        batch_reduction: ``"mean"`` (default: the learning rate does not depend on the
            batch size) or ``"sum"`` over the samples of a batch.
        decay: ``"exact"`` (:math:`e^{-dt/\tau}`, default) or ``"euler"``
            (:math:`1 - dt/\tau`, to reproduce SpikingJelly or snnTorch's learner).
        chunk_size: steps buffered before the kernel runs (memory ``chunk_size·B·N``);
            ``None`` (default) picks about 32 MB of presynaptic spikes, 16 to 2048 steps.
        kernel: ``"auto"``, ``"dense"`` or ``"sparse"`` (event-driven, CPU); same result.
        spikes: ``"binary"`` (default: other values are an error) or ``"graded"`` (values
            are used as spike amplitudes: traces add them, pairs weigh by their product).
        precision: ``"full"`` (default: every product in the weight's dtype) or
            ``"bf16"``: the correlation products (GEMMs, conv weight gradients, event
            gathers) take bfloat16 operands and accumulate in float32 inside the kernel;
            binary spikes are exact in bf16, traces and each chunk's result are rounded
            to 8 significant bits, so each element of ``pos``/``neg`` is off by at most
            2⁻⁷ of its value (user guide, "Reduced precision"). Traces, bounds and the
            accumulator stay in the weight's dtype. Faster only where the hardware has
            bf16 arithmetic (AVX512-BF16/AMX CPUs, GPUs).

    Shape:
        Linear: weight ``[N_out, N_in]``; spikes ``[B, N]`` per step or ``[T, B, N]`` per
        sequence. Conv: weight ``[C_out, C_in/groups, *k]``; spikes ``[B, C, *spatial]``
        (sequences through :meth:`observe`). Potentiation/depression of a conv weight sum
        over output positions and average over the batch.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc = torch.nn.Linear(20, 5, bias=False)
        >>> lif = snn.Leaky(beta=0.9)
        >>> stdp = pl.STDP(fc, lif, a_plus=1e-2, a_minus=1.05e-2, tau_plus=20.0, tau_minus=20.0)
        >>> stdp.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
        >>> mem = lif.init_leaky()
        >>> x = (torch.rand(50, 4, 20) < 0.2).float()
        >>> for t in range(50):
        ...     spk, mem = lif(fc(x[t]), mem)
        >>> dw = stdp.step()       # fc.weight.grad is now -Δw
        >>> dw.shape, torch.equal(fc.weight.grad, -dw)
        (torch.Size([5, 20]), True)
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        a_plus: float,
        a_minus: float,
        tau_plus: float,
        tau_minus: float,
        **options: Any,
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.STDP)``."""
        a_plus, a_minus = check_amplitude("a_plus", a_plus), check_amplitude("a_minus", a_minus)
        tau_plus, tau_minus = (
            check_positive("tau_plus", tau_plus),
            check_positive("tau_minus", tau_minus),
        )
        taus = {"tau_plus": tau_plus, "tau_minus": tau_minus}
        super().__init__(synapse, neuron, time_constants=taus, **options)
        self.a_plus, self.a_minus = a_plus, a_minus
        self.tau_plus, self.tau_minus = tau_plus, tau_minus
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        x, y = pair_reads(self.tau_plus, self.tau_minus, self.trace, self.coincident)
        return {"pos": self.a_plus * post.spike * x, "neg": self.a_minus * y * pre.spike}


def pair_reads(tau_plus: float, tau_minus: float, trace: str, coincident: str):
    """The traces pair STDP reads: the presynaptic one at post spikes (potentiation) and
    the postsynaptic one at pre spikes (depression), with or without the same step's
    spikes as ``coincident`` says (see the module's table).

    Example:
        >>> pair_reads(20.0, 20.0, "all-to-all", "ltp")
        (pre.trace(20), post.trace(20).before)
    """
    nearest = trace == "nearest"
    x: Signal = pre.trace(tau_plus, nearest=nearest)
    y: Signal = post.trace(tau_minus, nearest=nearest)
    return (x if coincident != "none" else x.before), (y if coincident == "both" else y.before)


#: Pfister & Gerstner (2006), Table 4: (trace, tau_x, tau_y, a2_plus, a3_plus, a2_minus, a3_minus);
#: tau_plus = 16.8 ms and tau_minus = 33.7 ms throughout; times in ms. Minimal models set
#: a3_minus = 0 (tau_x then plays no role). hippocampal_all_to_all_full's a3_minus is 1.4e-3 as
#: we read the paper; one public transcription has 1.4e-4: check Table 4 before relying on it.
TRIPLET_PRESETS: dict[str, dict[str, Any]] = {
    "visual_cortex_all_to_all_minimal": dict(trace="all-to-all", tau_x=101.0, tau_y=114.0, a2_plus=0.0, a3_plus=6.5e-3, a2_minus=7.1e-3, a3_minus=0.0),
    "visual_cortex_all_to_all_full": dict(trace="all-to-all", tau_x=101.0, tau_y=125.0, a2_plus=5e-10, a3_plus=6.2e-3, a2_minus=7e-3, a3_minus=2.3e-4),
    "visual_cortex_nearest_minimal": dict(trace="nearest", tau_x=714.0, tau_y=40.0, a2_plus=0.0, a3_plus=5e-2, a2_minus=8e-3, a3_minus=0.0),
    "visual_cortex_nearest_full": dict(trace="nearest", tau_x=714.0, tau_y=40.0, a2_plus=8.8e-11, a3_plus=5.3e-2, a2_minus=6.6e-3, a3_minus=3.1e-3),
    "hippocampal_all_to_all_minimal": dict(trace="all-to-all", tau_x=946.0, tau_y=40.0, a2_plus=5.3e-3, a3_plus=8e-3, a2_minus=3.5e-3, a3_minus=0.0),
    "hippocampal_all_to_all_full": dict(trace="all-to-all", tau_x=946.0, tau_y=27.0, a2_plus=6.1e-3, a3_plus=6.7e-3, a2_minus=1.6e-3, a3_minus=1.4e-3),
    "hippocampal_nearest_minimal": dict(trace="nearest", tau_x=575.0, tau_y=48.0, a2_plus=4.6e-3, a3_plus=9.1e-3, a2_minus=3e-3, a3_minus=0.0),
    "hippocampal_nearest_full": dict(trace="nearest", tau_x=575.0, tau_y=47.0, a2_plus=4.6e-3, a3_plus=9.1e-3, a2_minus=3e-3, a3_minus=7.5e-9),
}  # fmt: skip


class TripletSTDP(PlasticityRule):
    r"""Triplet STDP (Pfister & Gerstner 2006) on a synapse and its spiking neuron.

    Presynaptic traces :math:`r_1` (:math:`\tau_+`) and :math:`r_2` (:math:`\tau_x`, the
    slow presynaptic detector), postsynaptic traces :math:`o_1` (:math:`\tau_-`) and
    :math:`o_2` (:math:`\tau_y`, the slow postsynaptic detector):

    .. math::
        \mathrm{pos}_{ij} = \sum_{t^\text{post}_i} r_{1,j}(t)\,[A_2^+ + A_3^+\,o_{2,i}(t-\epsilon)],
        \qquad
        \mathrm{neg}_{ij} = \sum_{t^\text{pre}_j} o_{1,i}(t)\,[A_2^- + A_3^-\,r_{2,j}(t-\epsilon)],

    where :math:`t-\epsilon` reads a detector before the current spike is added. The pair
    terms follow ``coincident`` as in :class:`STDP`. The paper's parameter sets are in
    :data:`TRIPLET_PRESETS` (:meth:`from_preset`, times in ms).

    Args:
        synapse, neuron: as for :class:`STDP`.
        a2_plus, a3_plus, a2_minus, a3_minus: pair and triplet amplitudes (>= 0).
        tau_plus, tau_minus, tau_x, tau_y: time constants in the units of ``dt`` (> 0).
        **options: ``dt``, ``trace``, ``coincident``, ``batch_reduction``, ``decay``,
            ``chunk_size``, ``kernel``, ``spikes`` as for :class:`STDP`.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc = torch.nn.Linear(10, 3, bias=False)
        >>> lif = snn.Leaky(beta=0.8)
        >>> rule = pl.TripletSTDP.from_preset(fc, lif, "visual_cortex_all_to_all_full")
        >>> rule.tau_y, rule.trace
        (125.0, 'all-to-all')
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        a2_plus: float,
        a3_plus: float,
        a2_minus: float,
        a3_minus: float,
        tau_plus: float,
        tau_minus: float,
        tau_x: float,
        tau_y: float,
        **options: Any,
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.TripletSTDP)``."""
        amps = {
            n: check_amplitude(n, v)
            for n, v in dict(
                a2_plus=a2_plus, a3_plus=a3_plus, a2_minus=a2_minus, a3_minus=a3_minus
            ).items()
        }
        taus = {
            n: check_positive(n, v)
            for n, v in dict(
                tau_plus=tau_plus, tau_minus=tau_minus, tau_x=tau_x, tau_y=tau_y
            ).items()
        }
        super().__init__(synapse, neuron, time_constants=taus, **options)
        for name, value in {**amps, **taus}.items():
            setattr(self, name, value)
        self._finish_init()

    @classmethod
    def from_preset(
        cls, synapse: nn.Module, neuron: nn.Module, preset: str, **options: Any
    ) -> TripletSTDP:
        """A rule with one of :data:`TRIPLET_PRESETS` (times in ms: pass ``dt`` in ms)."""
        if preset not in TRIPLET_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TRIPLET_PRESETS)}")
        params = {**TRIPLET_PRESETS[preset], "tau_plus": 16.8, "tau_minus": 33.7}
        params.update(options)
        return cls(synapse, neuron, **params)

    def declaration(self) -> dict[str, Any]:
        r1, o1 = pair_reads(self.tau_plus, self.tau_minus, self.trace, self.coincident)
        nearest = self.trace == "nearest"
        o2 = post.trace(self.tau_y, nearest=nearest).before  # slow detectors, before the spike
        r2 = pre.trace(self.tau_x, nearest=nearest).before
        pos = self.a2_plus * post.spike * r1 + self.a3_plus * (post.spike * o2) * r1
        neg = self.a2_minus * o1 * pre.spike + self.a3_minus * o1 * (pre.spike * r2)
        return {"pos": pos, "neg": neg}
