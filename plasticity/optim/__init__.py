r"""Parameter-transforming optimizers, drop-in compatible with ``rai_toolbox.optim``.

A :class:`ParamTransformingOptimizer` wraps any torch optimizer (``InnerOpt``) and
applies in-place transforms around its step::

    _pre_step_transform_(param)      # e.g. clamp or rescale the gradient
    InnerOpt.step()                  # SGD, Adam, ... (shares param_groups and state)
    _post_step_transform_(param)     # e.g. clamp or normalize the parameter

For plasticity, a rule writes :math:`-\Delta w` into ``weight.grad``; with the default
``InnerOpt=SGD`` and ``lr=1`` the step adds :math:`\Delta w`, then
:class:`ClampedParameterOptimizer` keeps every weight inside ``[clamp_min, clamp_max]``
and :class:`L1NormalizedParameterOptimizer` rescales each post-neuron's incoming weights
(Diehl & Cook 2015). :class:`ChainedParamTransformingOptimizer` composes them.

Beyond ``rai_toolbox``: settings are validated in ``add_param_group`` and before every
step (not only at construction), a single bound is checked for type and NaN, the
caller's ``defaults`` dict is never mutated, and ``copy.deepcopy``/``pickle`` work.
"""

from .chained import ChainedParamTransformingOptimizer
from .clamped import (
    ClampedGradientOptimizer,
    ClampedParameterOptimizer,
    L1NormalizedParameterOptimizer,
    normalize_,
)
from .transforming import InnerOptLike as InnerOptLike  # re-exported: the type of `InnerOpt`
from .transforming import ParamTransformingOptimizer

__all__ = [
    "ParamTransformingOptimizer",
    "ChainedParamTransformingOptimizer",
    "ClampedGradientOptimizer",
    "ClampedParameterOptimizer",
    "L1NormalizedParameterOptimizer",
    "normalize_",
]
