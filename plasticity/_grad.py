"""How plasticity code runs among torch's execution modes.

* :func:`no_grad`: :func:`torch.no_grad` as a decorator that costs nothing where gradients
  are already off (a rule's step calls several decorated functions, each once per step);
  inside :func:`torch.inference_mode` it also leaves inference mode, so that the state a
  rule keeps (buffers, traces, accumulators, gradients) is made of normal tensors that
  later calls outside the context may update in place.
* :func:`in_backward`: whether autograd's backward pass is running: activation
  checkpointing (:mod:`torch.utils.checkpoint`) re-runs forward passes then, and a hook
  must not observe a recomputed step a second time.
* :func:`run_eagerly`: makes hook methods run outside ``torch.compile`` graphs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["no_grad", "in_backward", "run_eagerly"]

F = TypeVar("F", bound=Callable[..., Any])


def no_grad(fn: F) -> F:
    """Runs ``fn`` with gradients disabled (entering :func:`torch.no_grad` only if needed)
    and outside inference mode."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if torch.is_inference_mode_enabled():
            with torch.inference_mode(False), torch.no_grad():
                return fn(*args, **kwargs)
        if not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


_graph_task_id = getattr(torch._C, "_current_graph_task_id", lambda: -1)


def in_backward() -> bool:
    """Whether this runs inside autograd's backward pass (where activation checkpointing
    recomputes forward passes: the hooks must not observe those steps again)."""
    return _graph_task_id() != -1


_EAGER: set[tuple[type, str]] = set()


def run_eagerly(cls: type, *names: str) -> None:
    """Makes the methods ``names`` of ``cls`` (module hooks) run outside any
    ``torch.compile`` graph: Dynamo does not trace them but calls them as Python, a graph
    break, and nothing they call is compiled. Without this, Dynamo traces a rule's hooks
    into the network's graph, specializes on the growing step buffers and recompiles at
    every step. Applied once per method, when the first hook is registered (importing
    ``torch._dynamo`` then, as any torch optimizer's first step does, not at import)."""
    for name in names:
        if (cls, name) not in _EAGER:
            _EAGER.add((cls, name))
            setattr(cls, name, torch.compiler.disable(cls.__dict__[name]))
