"""Checks of a rule's settings and of the spikes it is given."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..language.text import _number

__all__ = ["check_positive", "check_amplitude", "spike_count"]

SPIKE_POLICIES = ("binary", "graded")
PRECISIONS = ("full", "bf16")
COINCIDENT = ("ltp", "both", "none")
_PRE, _POST = "the synapse's input spikes", "the neuron's output spikes"


def _real(name: str, value: Any) -> float:
    """A finite real number, or a clear error naming ``name``."""
    return _number(value, f"`{name}`")


def check_positive(name: str, value: Any) -> float:
    """A finite number > 0 (time constants, dt), or a clear error naming ``name``."""
    value = _real(name, value)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")
    return value


def check_amplitude(name: str, value: Any) -> float:
    """A finite number >= 0: amplitudes are magnitudes; depression is subtracted by the rule."""
    value = _real(name, value)
    if value < 0:
        raise ValueError(
            f"`{name}` must be >= 0, got {value}: amplitudes are magnitudes (the rule subtracts "
            "depression itself); for anti-Hebbian learning swap the amplitudes explicitly"
        )
    return value


def _choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(o) for o in options)}; got {value!r}"
        )
    return value


def spike_count(spikes: Tensor, *, binary: bool, what: str = "spikes") -> tuple[int, int | None]:
    """``(non-zeros, first step with NaN/inf or None)`` of ``[T, ...]`` spikes; with
    ``binary``, values other than 0 and 1 (before a non-finite step) are a ``ValueError``.

    Binary check: with every value in [0, 1] (``aminmax``), the sum equals the sum of
    squares exactly when every value is 0 or 1, since the sum of s(1 - s) is zero only
    then; the sum is then the spike count. (Float32 sums of 0/1 are exact below 2**24.)

    Example:
        >>> import torch
        >>> spike_count(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), binary=True)
        (3, None)
        >>> spike_count(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), binary=True)
        (1, 1)
    """
    return _spike_counts([(spikes, binary, what)])[0]


def _steps_valid(blocks: list[tuple[Tensor, bool, str]]) -> bool:
    """Whether every ``(values, binary, what)`` block passes (binary ones hold only 0
    and 1, the others are finite), the binary ones checked together as in
    :func:`_spike_counts`, with one read-back: a one-step window's check, which needs no
    counts (:func:`_spike_counts` then names what fails)."""
    binary = [x.reshape(-1) for x, b, _ in blocks if b]
    numbers = [x.sum() for x, b, _ in blocks if not b]
    if binary:
        flat = torch.cat(binary) if len(binary) > 1 else binary[0]
        numbers += [*torch.aminmax(flat), flat.sum(), torch.dot(flat, flat)]
    values = torch.stack(numbers).tolist()
    if binary:
        *values, lo, hi, total, squares = values
        if not (lo >= 0 and hi <= 1 and total == squares):  # (False at NaN or infinity)
            return False
    return all(math.isfinite(v) for v in values)


def _spike_counts(blocks: list[tuple[Tensor, bool, str]],
                  count: bool = True) -> list[tuple[int, int | None]]:  # fmt: skip
    """:func:`spike_count` of several ``(spikes, binary, what)`` blocks with one read-back
    of the numbers (the small ops and the device sync dominate a one-step window).
    ``count=False``: graded blocks are only checked, their count is their size (a graded
    rule has no event-driven kernels, which are what the counts choose between, and
    counting non-zeros costs many times a sum)."""
    numbers = []
    for spikes, binary, _ in blocks:
        flat = spikes.reshape(-1)
        if not binary:
            numbers += [flat.sum(), torch.count_nonzero(flat).to(flat.dtype) if count
                        else flat.new_tensor(float(flat.numel()))]  # fmt: skip
            continue
        if flat.numel() >= 2**24 and flat.dtype != torch.float64:
            flat = flat.double()
        lo, hi = torch.aminmax(flat)
        numbers += [lo, hi, flat.sum(), torch.dot(flat, flat)]
    dtype = numbers[0].dtype
    values = torch.stack([n if n.dtype == dtype else n.to(dtype) for n in numbers]).tolist()
    out = []
    for spikes, binary, what in blocks:
        if not binary:
            (total, nnz), values = values[:2], values[2:]
            if math.isfinite(total):
                out.append((int(nnz), None))
                continue
        else:
            (lo, hi, total, squares), values = values[:4], values[4:]
            if math.isfinite(total) and math.isfinite(squares):
                if not (lo >= 0 and hi <= 1 and total == squares):
                    raise ValueError(
                        f"{what} are not binary (values other than 0 and 1); pass "
                        "spikes='graded' to use graded values as spike amplitudes"
                    )
                out.append((int(total), None))
                continue
        finite = torch.isfinite(spikes.reshape(spikes.shape[0], -1)).all(1)
        bad = int((~finite).nonzero()[0, 0])
        nnz = spike_count(spikes[:bad], binary=binary, what=what)[0] if bad else 0
        out.append((nnz, bad))
    return out
