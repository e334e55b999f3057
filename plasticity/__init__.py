"""plasticity: STDP-style plasticity for snnTorch: bounded accumulators, clamped optimizers.

Public names:

* :class:`Accumulator` - gathers potentiation (``pos``) and depression (``neg``) for one
  parameter and applies soft or hard weight bounds.
* :mod:`plasticity.bounds` - the weight-dependence functions.
* :mod:`plasticity.optim` - :class:`ClampedParameterOptimizer` and friends, drop-in
  compatible with ``rai_toolbox.optim``.
* :class:`ShortTermPlasticity` - Tsodyks–Markram depression and facilitation of a
  synapse's input.
"""

from . import bounds, functional, monitor, optim, plot
from .accumulator import Accumulator
from .optim import (
    ChainedParamTransformingOptimizer,
    ClampedGradientOptimizer,
    ClampedParameterOptimizer,
    L1NormalizedParameterOptimizer,
    ParamTransformingOptimizer,
)
from .rules import (
    BCM,
    MSTDP,
    MSTDPET,
    STDP,
    TRIPLET_PRESETS,
    AdaptiveThreshold,
    DopamineSTDP,
    Oja,
    PlasticityRule,
    SynapticScaling,
    TripletSTDP,
)
from .short_term import ShortTermPlasticity

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "STDP",
    "TripletSTDP",
    "TRIPLET_PRESETS",
    "MSTDP",
    "MSTDPET",
    "DopamineSTDP",
    "Oja",
    "BCM",
    "AdaptiveThreshold",
    "SynapticScaling",
    "PlasticityRule",
    "ShortTermPlasticity",
    "bounds",
    "functional",
    "monitor",
    "plot",
    "optim",
    "ParamTransformingOptimizer",
    "ChainedParamTransformingOptimizer",
    "ClampedGradientOptimizer",
    "ClampedParameterOptimizer",
    "L1NormalizedParameterOptimizer",
]
