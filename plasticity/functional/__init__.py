"""Pure kernels: trace scans and the products of two factors (no modules, no hooks)."""

from .correlate import KERNELS, Kernels, conv_correlate, dense_correlate, event_sum, spike_index
from .traces import (
    TRACE_MODES,
    decay_factor,
    decay_powers,
    scan_future,
    scan_future_padded,
    scan_trace,
)

__all__ = [
    "KERNELS",
    "TRACE_MODES",
    "Kernels",
    "conv_correlate",
    "dense_correlate",
    "event_sum",
    "spike_index",
    "decay_factor",
    "decay_powers",
    "scan_future",
    "scan_future_padded",
    "scan_trace",
]
