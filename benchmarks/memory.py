"""Peak CPU memory of a callable, from the PyTorch profiler's allocation records.

With ``profile_memory=True`` the profiler records every allocation and free of the CPU
allocator while ``fn`` runs (operators' internal workspaces included), each with its size
and time. Replaying them in time order gives the peak of bytes allocated above the level
at the start. Used by the benchmarks only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch  # noqa: F401  (the docstring example uses it)
from torch.profiler import ProfilerActivity, profile


def peak_memory(fn: Callable[[], object]) -> dict[str, int]:
    """``{"peak": bytes, "largest": bytes}``: the peak of bytes allocated while ``fn``
    runs (above the level at its start) and the largest single allocation.

    Example:
        >>> def two_buffers():
        ...     a = torch.empty(1_000_000)  # 4 MB
        ...     b = torch.empty(500_000)    # 2 MB while a is alive
        >>> peak_memory(two_buffers)
        {'peak': 6000000, 'largest': 4000000}
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type().name == "CPU"
    )
    current = peak = largest = 0
    for _, size in records:
        current += size
        peak = max(peak, current)
        largest = max(largest, size)
    return {"peak": peak, "largest": largest}
