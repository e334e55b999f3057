"""Learning rules: one small class per rule family, wiring = hooks + kernels + accumulator."""

from .base import PlasticityRule
from .homeostasis import AdaptiveThreshold, SynapticScaling
from .rate import BCM, Oja
from .reward import MSTDP, MSTDPET, DopamineSTDP
from .stdp import STDP, TRIPLET_PRESETS, TripletSTDP

__all__ = [
    "PlasticityRule",
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
]
