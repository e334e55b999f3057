"""Learning rules: the built-ins as declarations in the rule language, and ``Rule`` for your own."""

from .base import PlasticityRule
from .eprop import EProp
from .homeostasis import AdaptiveThreshold, SynapticScaling
from .inhibitory import VogelsSprekeler
from .rate import BCM, Oja
from .reward import MSTDP, MSTDPET, DopamineSTDP
from .rule import Rule
from .stdp import STDP, TRIPLET_PRESETS, TripletSTDP
from .voltage import Clopath

__all__ = [
    "PlasticityRule",
    "Rule",
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
    "Clopath",
    "VogelsSprekeler",
    "EProp",
]
