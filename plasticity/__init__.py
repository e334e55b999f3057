"""plasticity: STDP-style synaptic plasticity for snnTorch.

The distribution is ``snntorch-plasticity``; the package is ``import plasticity``. Its parts,
in the order data flows through them:

* **Rules** attach to a synapse (``nn.Linear``, ``nn.Conv1d/2d/3d``, a recurrent
  ``.recurrent``) and the neuron it drives: :class:`STDP`, :class:`TripletSTDP`,
  :class:`MSTDP`, :class:`MSTDPET`, :class:`DopamineSTDP`, :class:`Oja`, :class:`BCM`,
  :class:`Clopath`, :class:`SynapticScaling`, :class:`VogelsSprekeler`,
  :class:`EProp` (a recurrent layer and its readout);
  :class:`AdaptiveThreshold` (a neuron's threshold); :class:`PlasticityRule`, what they
  all are.
* **The rule language**: :class:`Rule` takes ``pos``/``neg`` terms built from the signals
  :data:`pre`, :data:`post`, :data:`modulator`, :data:`weight`, the functions
  :func:`relu`, :func:`sigmoid`, :func:`exp`, :func:`tanh`, :func:`heaviside` (and
  Python's ``abs``) and :func:`eligibility` (:mod:`plasticity.language`); every built-in
  rule is such a declaration.
* :mod:`plasticity.engine` evaluates a rule's terms per chunk of steps (one GEMM,
  event-driven sum or conv weight-gradient per term, chosen by a cost model);
  :mod:`plasticity.functional` holds its pure kernels (trace scans, products).
* :class:`Accumulator` gathers potentiation (``pos``) and depression (``neg``) over a window
  and applies the weight bounds of :mod:`plasticity.bounds`.
* :mod:`plasticity.optim`: :class:`ClampedParameterOptimizer` and friends
  (:class:`ParamTransformingOptimizer`, :class:`ChainedParamTransformingOptimizer`,
  :class:`ClampedGradientOptimizer`, :class:`L1NormalizedParameterOptimizer`), drop-in
  compatible with ``rai_toolbox.optim``, apply the update and keep weights in range.
* :class:`ShortTermPlasticity`: Tsodyks–Markram depression and facilitation of a
  synapse's input.
* :class:`SparseLinear`: a synapse over a sparse connectivity (a probability, a fixed
  in-degree, a mask or index pairs), one value per stored synapse.
* :mod:`plasticity.monitor` (bounded recorders) and :mod:`plasticity.plot` (figures).

``help(plasticity.STDP)`` and the other classes show their arguments and an example; the
documentation site (``make docs``) has the user guide and the API reference.
"""

from . import bounds, engine, functional, language, monitor, optim, plot
from .accumulator import Accumulator
from .language import eligibility, exp, heaviside, modulator, post, pre, relu, sigmoid, tanh, weight
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
    EProp,
    Oja,
    PlasticityRule,
    Rule,
    SynapticScaling,
    TripletSTDP,
    VogelsSprekeler,
)
from .short_term import ShortTermPlasticity
from .sparse import SparseLinear

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "Rule",
    "Clopath",
    "VogelsSprekeler",
    "EProp",
    "pre",
    "post",
    "modulator",
    "weight",
    "relu",
    "sigmoid",
    "exp",
    "tanh",
    "heaviside",
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
    "SparseLinear",
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
