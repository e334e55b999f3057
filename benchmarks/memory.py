"""Peak CPU memory of a callable, from the PyTorch profiler's allocation timeline.

Every allocation and free of the CPU allocator while ``fn`` runs is replayed in time
order (operators' internal workspaces included); the peak is the highest total above
what was allocated before ``fn`` started. Used by the benchmarks only (the profiler's
memory timeline is a private API, ``torch.profiler.profile._memory_profile``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def peak_memory(fn: Callable[[], object]) -> dict[str, int]:
    """``{"peak": bytes, "largest": bytes}``: the peak of bytes allocated while ``fn``
    runs (above the level at its start) and the largest single allocation."""
    from torch.profiler._memory_profiler import Action

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        fn()
    current = peak = largest = 0
    for _, action, _, size in prof._memory_profile().timeline:
        if action == Action.CREATE:
            current += size
            largest = max(largest, size)
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return {"peak": peak, "largest": largest}


if __name__ == "__main__":  # a self-check: 4 MB, then 2 MB while the 4 MB are alive

    def demo() -> None:
        a = torch.empty(1_000_000)
        b = torch.empty(500_000)
        del a, b

    print(peak_memory(demo))  # {'peak': 6000000, 'largest': 4000000}
