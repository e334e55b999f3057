r"""Rate-based Hebbian rules on the STDP machinery: Oja's rule and BCM with a sliding threshold.

Rates are filtered from the same traces as STDP, :math:`\nu(t) = x(t)/\tau_r` with
:math:`x(t) = e^{-dt/\tau_r} x(t-1) + s(t)` (exact decay), or the activity itself when
``tau_rate=None`` (graded inputs, e.g. a linear neuron's output).

* **Oja** (1982): :math:`\Delta w_{ij} = \eta \sum_t \left(y_i x_j - y_i^2 w_{ij}\right)`;
  the weight vector of a linear neuron converges to the principal component of its input.
* **BCM** (Bienenstock, Cooper & Munro 1982; Intrator & Cooper 1992):
  :math:`\Delta w_{ij} = \eta \sum_t x_j\,y_i\,(y_i - \theta_i)` with the sliding threshold
  :math:`\tau_\theta \dot\theta_i = \langle y_i^2\rangle - \theta_i` (batch mean, exact decay;
  step :math:`t` uses the threshold before its own activity).

Weights are frozen in a window, as for STDP. Products of signed rates are split exactly into
non-negative potentiation and depression, so bounds apply.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..language import Signal, post, pre, weight
from .base import PlasticityRule
from .checks import check_amplitude, check_positive

__all__ = ["Oja", "BCM"]


class _RateRule(PlasticityRule):
    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        eta: float,
        tau_rate: float | None,
        **options: Any,
    ):
        eta = check_amplitude("eta", eta)
        taus = {} if tau_rate is None else {"tau_rate": tau_rate}
        options.setdefault("spikes", "graded" if tau_rate is None else "binary")
        super().__init__(synapse, neuron, time_constants=taus, **options)
        self.eta = eta
        self.tau_rate = None if tau_rate is None else check_positive("tau_rate", tau_rate)

    def _rates(self) -> tuple[Signal, Signal]:
        """``(x, y)``: the filtered rates ``trace / tau_rate``, or the activity itself."""
        if self.tau_rate is None:
            return pre.spike, post.spike
        return pre.rate(self.tau_rate), post.rate(self.tau_rate)


class Oja(_RateRule):
    r"""Oja's rule: :math:`\Delta w_{ij} = \eta \sum_t (y_i x_j - y_i^2 w_{ij})`.

    Args:
        synapse, neuron: as for :class:`~plasticity.STDP` (the neuron may be any module,
            e.g. ``nn.Identity()`` after the synapse for a linear neuron).
        eta: learning rate (>= 0).
        tau_rate: rate filter time constant in units of ``dt``; ``None`` uses the
            activity itself (then ``spikes="graded"`` by default).
        **options: ``dt``, ``batch_reduction``, ``chunk_size``, ... as for STDP.

    Example:
        >>> import torch
        >>> import plasticity as pl
        >>> fc, linear = torch.nn.Linear(2, 1, bias=False), torch.nn.Identity()
        >>> with torch.no_grad():
        ...     _ = fc.weight.copy_(torch.tensor([[0.6, 0.8]]))
        >>> rule = pl.Oja(fc, linear, eta=0.1)
        >>> _ = linear(fc(torch.tensor([[1.0, 0.0]])))   # x = (1, 0), y = 0.6
        >>> rule.step()                                    # 0.1 * (y x - y^2 w)
        tensor([[ 0.0384, -0.0288]])
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        eta: float,
        tau_rate: float | None = None,
        **options: Any,
    ):
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.Oja)``."""
        super().__init__(synapse, neuron, eta=eta, tau_rate=tau_rate, **options)
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        x, y = self._rates()
        # -y^2 w: depression where w > 0, potentiation where w < 0 (conv: y^2 summed over
        # output positions, as the correlation sums them)
        return {"pos": self.eta * y * x, "neg": self.eta * (y**2) * weight}

class BCM(_RateRule):
    r"""BCM with a sliding threshold: :math:`\Delta w_{ij} = \eta \sum_t x_j\,y_i\,(y_i - \theta_i)`.

    :math:`\theta_i` follows :math:`\tau_\theta \dot\theta_i = \langle y_i^2\rangle_\text{batch}
    - \theta_i` (exact decay per step); step :math:`t` is compared with the threshold
    before its own activity. ``rule.theta`` is the current threshold (one per post neuron).

    Args:
        eta: learning rate (>= 0).
        tau_theta: time constant of the sliding threshold, in units of ``dt``.
        theta0: initial threshold (default 0).
        tau_rate: as for :class:`Oja`.

    Example:
        >>> import torch
        >>> import plasticity as pl
        >>> rule = pl.BCM(torch.nn.Linear(2, 1, bias=False), torch.nn.Identity(), eta=0.1, tau_theta=10.0)
        >>> rule.tau_theta
        10.0
    """

    def __init__(
        self,
        synapse: nn.Module,
        neuron: nn.Module,
        *,
        eta: float,
        tau_theta: float,
        theta0: float = 0.0,
        tau_rate: float | None = None,
        **options: Any,
    ):
        """Builds the rule and registers its hooks on the synapse and the neuron;
        arguments: ``help(plasticity.BCM)``."""
        check_positive("tau_theta", tau_theta)
        if isinstance(theta0, bool) or not isinstance(theta0, (int, float)) or not theta0 >= 0:
            raise ValueError(f"`theta0` must be a number >= 0, got {theta0!r}")
        super().__init__(synapse, neuron, eta=eta, tau_rate=tau_rate, **options)
        self.tau_theta, self.theta0 = float(tau_theta), float(theta0)
        self._finish_init()

    def _theta(self) -> Signal:
        """The sliding threshold: a low-pass filter of the batch-mean ``y²``."""
        y = self._rates()[1]
        return (y * y).batch_mean().lowpass(self.tau_theta, init=self.theta0)

    def declaration(self) -> dict[str, Any]:
        x, y = self._rates()
        phi = y * (y - self._theta().previous)  # the threshold before the step's activity
        return {"pos": self.eta * phi * x}

    @property
    def theta(self) -> Tensor | None:
        """The sliding threshold after the last processed step (``[N_out]`` or ``[C, *spatial]``)."""
        theta = self.state_tensor(self._theta())
        return None if theta is None else theta[0]
