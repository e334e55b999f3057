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

from . import bounds, engine, functional, language, monitor, optim, plot
from .accumulator import Accumulator
from .language import eligibility, modulator, post, pre, relu, weight
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
    Clopath,
    DopamineSTDP,
    Oja,
    PlasticityRule,
    Rule,
    SynapticScaling,
    TripletSTDP,
)
from .short_term import ShortTermPlasticity

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "Rule",
    "Clopath",
    "pre",
    "post",
    "modulator",
    "weight",
    "relu",
    "eligibility",
    "language",
    "engine",
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
