"""Pure kernels: trace scans, dense/conv correlation, rule math (no modules, no hooks)."""

from .correlate import (
    KERNELS,
    SPARSE_DENSITY,
    choose_kernel,
    conv_correlate,
    dense_correlate,
    event_sum,
    spike_index,
    weigh_rows,
)
from .stdp import (
    COINCIDENT,
    PairParams,
    PairState,
    TripletParams,
    TripletState,
    pair_stdp,
    pair_stdp_post_events,
    pair_traces,
    triplet_stdp,
    triplet_stdp_post_events,
)
from .traces import (
    TRACE_MODES,
    decay_factor,
    previous_trace,
    scan_future,
    scan_future_padded,
    scan_trace,
)

__all__ = [
    "KERNELS",
    "SPARSE_DENSITY",
    "COINCIDENT",
    "TRACE_MODES",
    "PairParams",
    "PairState",
    "TripletParams",
    "TripletState",
    "choose_kernel",
    "conv_correlate",
    "event_sum",
    "spike_index",
    "weigh_rows",
    "dense_correlate",
    "decay_factor",
    "pair_stdp",
    "pair_traces",
    "pair_stdp_post_events",
    "previous_trace",
    "scan_future",
    "scan_future_padded",
    "scan_trace",
    "triplet_stdp",
    "triplet_stdp_post_events",
]
