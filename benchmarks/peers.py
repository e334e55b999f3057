"""Optional peer libraries for the benchmarks, each ``None`` where it is not installed.

``make bench`` installs SpikingJelly, Norse and BindsNET with ``--no-deps`` so that pip keeps
the CPU torch (their declared dependencies pull CUDA builds, and BindsNET 0.3.4 declares
torch >= 2.14 although the parts benchmarked here run on 2.13). BindsNET's package
``__init__`` imports its datasets, environments and analysis modules (OpenCV, gymnasium,
pandas, torchvision); :func:`bindsnet` loads only ``bindsnet.network`` and
``bindsnet.learning``, which need nothing beyond torch and numpy.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from types import SimpleNamespace


def bindsnet() -> SimpleNamespace | None:
    """``Network``, ``Input``, ``LIFNodes``, ``Connection``, ``PostPre``,
    ``WeightDependentPostPre``, ``MSTDPET`` from BindsNET, or None."""
    if "bindsnet" not in sys.modules:  # the package without its heavy __init__
        try:
            spec = importlib.util.find_spec("bindsnet")
        except (ImportError, ValueError):
            return None
        if spec is None or spec.submodule_search_locations is None:
            return None
        package = types.ModuleType("bindsnet")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["bindsnet"] = package
    try:
        import bindsnet.network  # noqa: F401  (first: learning and network import each other)
        from bindsnet.learning import MSTDPET, PostPre, WeightDependentPostPre
        from bindsnet.network import Network
        from bindsnet.network.nodes import Input, LIFNodes
        from bindsnet.network.topology import Connection
    except ImportError:
        return None
    return SimpleNamespace(
        Network=Network, Input=Input, LIFNodes=LIFNodes, Connection=Connection, PostPre=PostPre,
        WeightDependentPostPre=WeightDependentPostPre, MSTDPET=MSTDPET,
    )


def bindsnet_connection(bn: SimpleNamespace, n_in: int, n_out: int, batch: int, rule, **kwargs):
    """A BindsNET ``Connection`` with trace-recording nodes (dt = 1), ready for per-step
    ``update()`` calls with the nodes' ``s`` (spikes) and ``x`` (traces) set by hand."""
    import torch

    additive = kwargs.pop("traces_additive", True)
    tau = kwargs.pop("tc_trace", 20.0)
    source = bn.Input(n=n_in, traces=True, traces_additive=additive, tc_trace=tau)
    target = bn.LIFNodes(n=n_out, traces=True, traces_additive=additive, tc_trace=tau)
    for nodes in (source, target):
        nodes.dt = 1.0
        nodes.compute_decays(1.0)
        nodes.set_batch_size(batch)
    connection = bn.Connection(
        source, target, w=torch.zeros(n_in, n_out), update_rule=rule, **kwargs
    )
    connection.dt = 1.0  # normally set by Network.add_connection
    return connection
