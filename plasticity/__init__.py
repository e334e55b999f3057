"""plasticity: STDP-style plasticity for snnTorch: bounded accumulators, clamped optimizers.

Public names:

* :class:`Accumulator` - gathers potentiation (``pos``) and depression (``neg``) for one
  parameter and applies soft or hard weight bounds.
* :mod:`plasticity.bounds` - the weight-dependence functions.
* :mod:`plasticity.optim` - :class:`ClampedParameterOptimizer` and friends, drop-in
  compatible with ``rai_toolbox.optim``.
"""

from . import bounds, optim
from .accumulator import Accumulator
from .optim import (
    ChainedParamTransformingOptimizer,
    ClampedGradientOptimizer,
    ClampedParameterOptimizer,
    L1NormalizedParameterOptimizer,
    ParamTransformingOptimizer,
)

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "bounds",
    "optim",
    "ParamTransformingOptimizer",
    "ChainedParamTransformingOptimizer",
    "ClampedGradientOptimizer",
    "ClampedParameterOptimizer",
    "L1NormalizedParameterOptimizer",
]
