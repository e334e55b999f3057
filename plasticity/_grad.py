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

__all__ = ["no_grad", "in_backward", "run_eagerly", "traced", "eagerly"]

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


_EAGER: dict[Callable, Callable] = {}
traced = torch.compiler.is_dynamo_compiling  # True while Dynamo traces the caller


def run_eagerly(cls: type, *names: str) -> None:
    """Prepares the methods ``names`` of ``cls`` (module hooks) to run outside any
    ``torch.compile`` graph: each begins with ``if traced(): return eagerly(...)``, so
    that Dynamo does not trace it but calls it as Python, a graph break, and nothing it
    calls is compiled. Without this, Dynamo traces a rule's hooks into the network's
    graph, specializes on the growing step buffers and recompiles at every step. Done
    once per method, when the first hook is registered (importing ``torch._dynamo``
    then, as any torch optimizer's first step does, not at import). The check is in the
    hook itself, not in a wrapper: a wrapper costs about 0.6 µs per call, a tenth of a
    hook's work at batch size 1."""
    for name in names:
        fn = cls.__dict__[name]
        if fn not in _EAGER:
            _EAGER[fn] = torch.compiler.disable(fn)


def eagerly(fn: Callable, *args: Any) -> Any:
    """Calls ``fn`` (prepared by :func:`run_eagerly`) outside the graph being traced."""
    return _EAGER[fn](*args)
