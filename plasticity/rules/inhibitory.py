r"""Inhibitory STDP (Vogels, Sprekeler, Zenke, Clopath & Gerstner 2011), declared in the
rule language.

A symmetric window plus a constant depression at every presynaptic spike: with traces
:math:`x_j` (pre) and :math:`x_i` (post) of time constant :math:`\tau_\text{STDP}`,

.. math::
    w_{ij} \leftarrow w_{ij} + \eta\,x_j \ \text{at post spikes},\qquad
    w_{ij} \leftarrow w_{ij} + \eta\,(x_i - \alpha) \ \text{at pre spikes},

with :math:`\alpha = 2\rho_0\tau_\text{STDP}` for a target postsynaptic rate
:math:`\rho_0`: on average an inhibitory synapse grows while its post neuron fires above
:math:`\rho_0` and shrinks below.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..language import post, pre
from .base import PlasticityRule
from .checks import check_amplitude, check_positive
from .stdp import pair_reads

__all__ = ["VogelsSprekeler"]


class VogelsSprekeler(PlasticityRule):
    r"""Inhibitory STDP of Vogels et al. (2011) on a synapse and its spiking neuron.

    .. math::
        \mathrm{pos}_{ij} = \eta \sum_{t^\text{post}_i} x_j(t) + \eta \sum_{t^\text{pre}_j} x_i(t-\epsilon),
        \qquad
        \mathrm{neg}_{ij} = \eta\,\alpha \sum_{t^\text{pre}_j} 1,

    where :math:`x = \sum_k e^{-(t - t_k)/\tau}` are the traces of each side (time constant
    ``tau``, exact decay, increment 1). A pre and a post spike in the same step count once,
    as pre before post (``coincident="ltp"``, the default; ``"both"``: twice; ``"none"``:
    not at all, as NEST's ``vogels_sprekeler_synapse``), exactly as in
    :class:`~plasticity.STDP`. The paper's values (times in ms, so pass ``dt`` in ms):
    :math:`\eta = 10^{-4}`, :math:`\tau_\text{STDP} = 20` ms and a target rate
    :math:`\rho_0 = 3` Hz, so :math:`\alpha = 2\rho_0\tau_\text{STDP} = 0.12`.

    The paper keeps the (inhibitory, positive) weights in :math:`[0, w_\text{max}]`: bound
    them with ``rule.accumulator`` (e.g. ``upper_sharp``/``lower_sharp``) or a clamped
    optimizer (:class:`~plasticity.optim.ClampedParameterOptimizer`).

    Args:
        synapse, neuron: as for :class:`~plasticity.STDP` (the synapse's weights are the
            inhibitory conductances, non-negative).
        eta: learning rate :math:`\eta` (>= 0). Defaults to 1e-4.
        alpha: the depression per presynaptic spike in units of the trace,
            :math:`\alpha = 2\rho_0\tau` (>= 0). Defaults to 0.12 (:math:`\rho_0` = 3 Hz).
        tau: :math:`\tau_\text{STDP}` of both traces, in the units of ``dt`` (> 0).
            Defaults to 20.
        **options: ``dt``, ``trace``, ``coincident``, ``batch_reduction``, ``decay``,
            ``chunk_size``, ``kernel``, ``spikes`` as for :class:`~plasticity.STDP`.

    Example:
        Every pre spike depresses by :math:`\eta\alpha`; one 5 steps after a post spike
        also potentiates by :math:`\eta e^{-5/20}` (``dt`` = 1):

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(2, 1, bias=False), snn.Leaky(beta=0.9)
        >>> rule = pl.VogelsSprekeler(fc, lif, eta=1.0, alpha=0.12, tau=20.0)
        >>> pre = torch.zeros(10, 1, 2); pre[7, 0, 0] = 1.0     # input 0 fires at step 7
        >>> post = torch.zeros(10, 1, 1); post[2, 0, 0] = 1.0   # the neuron at step 2
        >>> rule.observe(pre, post)
        >>> dw = rule.step()
        >>> round(float(dw[0, 0]), 5), float(dw[0, 1])          # exp(-5/20) - 0.12; input 1 silent
        (0.6588, 0.0)
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        eta: float = 1e-4,
        alpha: float = 0.12,
        tau: float = 20.0,
        **options: Any,
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.VogelsSprekeler)``."""
        eta, alpha = check_amplitude("eta", eta), check_amplitude("alpha", alpha)
        tau = check_positive("tau", tau)
        super().__init__(synapse, neuron, time_constants={"tau": tau}, **options)
        self.eta, self.alpha, self.tau = eta, alpha, tau
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        x_pre, x_post = pair_reads(self.tau, self.tau, self.trace, self.coincident)
        return {
            "pos": self.eta * post.spike * x_pre + self.eta * x_post * pre.spike,
            "neg": self.eta * self.alpha * pre.spike,
        }

    def extra_repr(self) -> str:
        return f"eta={self.eta}, alpha={self.alpha}, tau={self.tau}, {super().extra_repr()}"
