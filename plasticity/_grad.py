"""``no_grad``: :func:`torch.no_grad` as a decorator that costs nothing where gradients
are already off (a rule's step calls several decorated functions, each once per step)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["no_grad"]

F = TypeVar("F", bound=Callable[..., Any])


def no_grad(fn: F) -> F:
    """Runs ``fn`` with gradients disabled (entering :func:`torch.no_grad` only if needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
