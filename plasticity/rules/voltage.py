r"""Voltage-based STDP (Clopath et al. 2010), declared in the rule language.

.. math::
    \tau_x \dot{\bar x} = -\bar x + X(t), \qquad
    \tau_\pm \dot{\bar u}_\pm = -\bar u_\pm + u,

    \frac{dw^-}{dt} = A_\text{LTD}\,X(t)\,[\bar u_-(t - \delta) - \theta_-]_+, \qquad
    \frac{dw^+}{dt} = A_\text{LTP}\,\bar x(t)\,[u(t) - \theta_+]_+\,[\bar u_+(t - \delta) - \theta_-]_+,

with the presynaptic spike train :math:`X`, the postsynaptic membrane potential
:math:`u` (snnTorch's ``mem``, with the model's spike shape in it) and a read-back delay
:math:`\delta` of the filtered potentials (the authors' code reads them 4 ms back, so
that a spike's own depolarization does not gate its own potentiation; NEST's
``delay_u_bars``). The homeostatic scaling of :math:`A_\text{LTD}` by the mean
depolarization is not included.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..language import post, pre, relu
from .base import PlasticityRule
from .checks import _real, check_amplitude, check_positive

__all__ = ["Clopath"]


class Clopath(PlasticityRule):
    r"""Clopath et al. (2010) voltage-based STDP on a synapse and its neuron.

    Discretization, exponential integrator per step (:math:`d = e^{-dt/\tau}`):

    * :math:`\bar x(t) = d_x \bar x(t-1) + s^\text{pre}(t)/\tau_x` (this step's spike
      included): ``pre.trace(tau_x) / tau_x``;
    * :math:`\bar u_\pm(t) = d_\pm \bar u_\pm(t-1) + (1 - d_\pm)\,u(t)`, starting at the
      first potential observed (``post.voltage.lowpass(tau)``);
    * depression at step :math:`t`: :math:`A_\text{LTD}\,s^\text{pre}_j(t)\,[\bar u_{-,i}(t - k) - \theta_-]_+`;
    * potentiation: :math:`A_\text{LTP}\,\bar x_j(t)\,[u_i(t) - \theta_+]_+\,[\bar u_{+,i}(t - k) - \theta_-]_+\,dt`,

    with :math:`k` = ``delay / dt`` steps (``.delayed(k)``; the filters' initial value
    before the first step). Potentials and thresholds in mV, times in the units of ``dt``
    (ms for the paper's values); the batch is reduced as ``batch_reduction`` says.

    Args:
        synapse, neuron: as for :class:`~plasticity.STDP`; the neuron's membrane potential
            is the last element of its output tuple or ``neuron.mem``
            (:func:`~plasticity.hooks.output_voltage`).
        a_ltd: :math:`A_\text{LTD}` (mV⁻¹, >= 0).
        a_ltp: :math:`A_\text{LTP}` (mV⁻², >= 0).
        theta_minus, theta_plus: :math:`\theta_-`, :math:`\theta_+` (mV).
        tau_minus, tau_plus, tau_x: filter time constants (> 0).
        delay: read-back delay of :math:`\bar u_\pm` (>= dt; rounded to whole steps).
            Defaults to 4 (ms at ``dt`` in ms), the authors' code.
        **options: ``dt``, ``batch_reduction``, ``chunk_size``, ``kernel``, ... as for
            :class:`~plasticity.STDP`.

    Example:
        The paper's visual-cortex parameters; learning from a recorded potential:

        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc, lif = torch.nn.Linear(2, 1, bias=False), snn.Leaky(beta=0.9)
        >>> rule = pl.Clopath(fc, lif, a_ltd=14e-5, a_ltp=8e-5, theta_minus=-70.6,
        ...                   theta_plus=-45.3, tau_minus=10.0, tau_plus=7.0, tau_x=15.0)
        >>> u = torch.full((30, 1, 1), -65.0); u[10:12] = 29.4   # a 2-ms spike at 10 ms
        >>> pre = torch.zeros(30, 1, 2); pre[5, 0, 0] = 1.0      # input 0 fires at 5 ms
        >>> post = (u > 0).float()
        >>> rule.observe(pre, post, voltage=u)
        >>> dw = rule.step()
        >>> bool(dw[0, 0] > 0), float(dw[0, 1])                  # pre before post: LTP
        (True, 0.0)
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        a_ltd: float,
        a_ltp: float,
        theta_minus: float,
        theta_plus: float,
        tau_minus: float,
        tau_plus: float,
        tau_x: float,
        delay: float = 4.0,
        **options: Any,
    ) -> None:
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.Clopath)``."""
        a_ltd, a_ltp = check_amplitude("a_ltd", a_ltd), check_amplitude("a_ltp", a_ltp)
        theta_minus, theta_plus = _real("theta_minus", theta_minus), _real("theta_plus", theta_plus)
        taus = {n: check_positive(n, v) for n, v in
                dict(tau_minus=tau_minus, tau_plus=tau_plus, tau_x=tau_x).items()}  # fmt: skip
        delay = check_positive("delay", delay)
        options.setdefault("spikes", "binary")
        super().__init__(synapse, neuron, time_constants=taus, **options)
        if round(delay / self.dt) < 1:
            raise ValueError(f"`delay` ({delay}) must be at least one step (dt = {self.dt})")
        self.a_ltd, self.a_ltp = a_ltd, a_ltp
        self.theta_minus, self.theta_plus = theta_minus, theta_plus
        self.tau_minus, self.tau_plus, self.tau_x = taus["tau_minus"], taus["tau_plus"], tau_x
        self.delay = delay
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        k = round(self.delay / self.dt)
        u = post.voltage
        u_minus = u.lowpass(self.tau_minus).delayed(k)
        u_plus = u.lowpass(self.tau_plus).delayed(k)
        x_bar = pre.trace(self.tau_x) / self.tau_x
        gate = relu(u - self.theta_plus) * relu(u_plus - self.theta_minus)
        return {
            "pos": self.a_ltp * self.dt * gate * x_bar,
            "neg": self.a_ltd * relu(u_minus - self.theta_minus) * pre.spike,
        }

    def extra_repr(self) -> str:
        return (
            f"a_ltd={self.a_ltd}, a_ltp={self.a_ltp}, theta_minus={self.theta_minus}, "
            f"theta_plus={self.theta_plus}, delay={self.delay}, dt={self.dt}"
        )
