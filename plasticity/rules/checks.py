"""Checks of a rule's settings and of the spikes it is given."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..functional.correlate import KERNELS
from ..functional.traces import TRACE_MODES, decay_factor
from ..language.text import _number

__all__ = ["check_positive", "check_amplitude", "spike_count", "check_options", "reduces_across_ranks"]

SPIKE_POLICIES = ("binary", "graded")
PRECISIONS = ("full", "bf16")
COINCIDENT = ("ltp", "both", "none")
_PRE, _POST = "the synapse's input spikes", "the neuron's output spikes"
_VOLT = "the neuron's membrane potential values"
_DISTRIBUTED = torch.distributed.is_available()  # (a build without it never has it)


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

    Binary check: with every value in [0, 1] (``aminmax``), the sum equals the number of
    non-zeros exactly when every non-zero is 1 (each falls short of 1 by ``1 - s``); a
    tiny value such as 1e-6, which a sum of squares would not tell from 0, falls short by
    almost 1. The sum is then the spike count. (Float32 sums of 0/1 are exact below
    2**24; from 2**20 non-zeros on the sum is taken again, of float32 sums of 2**20
    values, in float64. A value within the sum's rounding of 1, e.g. 0.99 among 300,000
    spikes, can still pass as 1.)

    Example:
        >>> import torch
        >>> spike_count(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), binary=True)
        (3, None)
        >>> spike_count(torch.tensor([[1.0, 0.0], [float("nan"), 1.0]]), binary=True)
        (1, 1)
        >>> spike_count(torch.tensor([[1.0, 1e-6]]), binary=True)
        Traceback (most recent call last):
        ...
        ValueError: spikes are not binary (values other than 0 and 1); pass spikes='graded' to use graded values as spike amplitudes
    """
    return _spike_counts([(spikes, binary, what)])[0]


# the integer of each float's size: non-zeros are counted on the bits (~3x faster)
_BITS = {torch.float32: torch.int32, torch.float64: torch.int64}


def _flat(spikes: Tensor) -> Tensor:
    """Binary spikes, flat, in a dtype whose sums of 0/1 are exact: float64 from 2**24
    values on, float32 for half precision (exact only up to 2048)."""
    flat = spikes.reshape(-1)
    if flat.numel() >= 2**24 and flat.dtype != torch.float64:
        return flat.double()
    return flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat


def _binary_numbers(flat: Tensor) -> list[Tensor]:
    """``[min, max, sum, non-zeros]`` of a :func:`_flat` tensor, for :func:`_binary`
    (an empty one: ``[0, 0, 0, 0]``, no spike)."""
    if flat.numel() == 0:  # a zero-size layer or an empty batch (aminmax has no identity)
        return [flat.new_zeros(())] * 4
    bits = _BITS.get(flat.dtype)
    nonzeros = torch.count_nonzero(flat if bits is None else flat.view(bits))
    return [*torch.aminmax(flat), flat.sum(), nonzeros.to(flat.dtype)]


def _binary(flat: Tensor, lo: float, hi: float, total: float, nonzeros: float) -> bool:
    """Whether ``flat``, with these :func:`_binary_numbers`, holds only 0 and 1: every
    value in [0, 1] and the sum equal to the count (False at NaN or infinity)."""
    if not (lo >= 0 and hi <= 1):
        return False
    if total != nonzeros:  # the bits count a -0.0 too: count the values
        nonzeros = float(torch.count_nonzero(flat))
    if nonzeros >= 2**20 and flat.dtype != torch.float64:  # float32 rounding hides 1 - s:
        parts = [flat[i:i + 2**20].sum() for i in range(0, flat.numel(), 2**20)]
        total = float(torch.stack(parts).double().sum())  # sums of < 2**20 values, in float64
    return total == nonzeros


def _steps_valid(blocks: list[tuple[Tensor, bool, str]]) -> bool:
    """Whether every ``(values, binary, what)`` block passes (binary ones hold only 0
    and 1, the others are finite): a one-step window's check, which needs no counts
    (:func:`_spike_counts` then names what fails). A binary block equals its Heaviside
    step ``H(x)`` (0 below 0, ``x`` at 0, 1 above; NaN gives 0) only where every value
    is 0 or 1 (-0.0 included): two ops per block, where online learning checks every
    step."""
    for x, b, _ in blocks:
        if b and not torch.equal(torch.heaviside(x, x), x):
            return False
    sums = [x.sum() for x, b, _ in blocks if not b]
    return not sums or all(math.isfinite(v) for v in torch.stack(sums).tolist())


def _spike_counts(blocks: list[tuple[Tensor, bool, str]], count: bool = True,
                  peaks: list[float] | None = None) -> list[tuple[int, int | None]]:  # fmt: skip
    """:func:`spike_count` of several ``(spikes, binary, what)`` blocks with one read-back
    of the numbers (the small ops and the device sync dominate a one-step window).
    ``count=False``: graded blocks are only checked (by their extremes, which are finite
    where every value is), their count is their size (a graded rule has no event-driven
    kernels, which are what the counts choose between, and counting non-zeros costs many
    times a sum); ``peaks``: where given, their largest magnitudes are appended to it
    (for :func:`_huge`, without another pass)."""
    flats = [_flat(spikes) if binary else spikes.reshape(-1) for spikes, binary, _ in blocks]
    numbers = [n for (_, binary, _), flat in zip(blocks, flats, strict=True)
               for n in _block_numbers(flat, binary, count)]  # fmt: skip
    dtype = numbers[0].dtype
    values = torch.stack([n if n.dtype == dtype else n.to(dtype) for n in numbers]).tolist()
    out = []
    for (spikes, binary, what), flat in zip(blocks, flats, strict=True):
        size = 4 if binary else 2
        got, values = values[:size], values[size:]
        seen = _binary_seen(flat, got, what) if binary else _graded_seen(flat, got, count, peaks)
        out.append(_up_to_first_bad(spikes, flat, binary, what, count) if seen is None else seen)
    return out


def _block_numbers(flat: Tensor, binary: bool, count: bool) -> list[Tensor]:
    """What :func:`_spike_counts` reads back of a block: :func:`_binary_numbers`; or, of
    graded values, ``[sum, non-zeros]`` (``count``) or ``[min, max]``."""
    if binary:
        return _binary_numbers(flat)
    if count:
        return [flat.sum(), torch.count_nonzero(flat).to(flat.dtype)]
    return list(torch.aminmax(flat)) if flat.numel() else [flat.new_zeros(())] * 2


def _binary_seen(flat: Tensor, got: list[float], what: str) -> tuple[int, None] | None:
    """A binary block's count from its numbers; ``None`` where they are not finite."""
    lo, hi, total, nonzeros = got
    if not math.isfinite(total):
        return None
    if not _binary(flat, lo, hi, total, nonzeros):
        raise ValueError(
            f"{what} are not binary (values other than 0 and 1); pass "
            "spikes='graded' to use graded values as spike amplitudes"
        )
    return int(total), None


def _graded_seen(flat: Tensor, got: list[float], count: bool,
                 peaks: list[float] | None) -> tuple[int, None] | None:  # fmt: skip
    """A graded block's count (``count``: its non-zeros, else its size) from ``(sum,
    non-zeros)`` or ``(min, max)``; ``None`` where they are not finite."""
    a, b = got
    if not (math.isfinite(a) and math.isfinite(b)):
        return None
    if peaks is not None and not count:
        peaks.append(max(-a, b))
    return (int(b) if count else flat.numel()), None


def _up_to_first_bad(spikes: Tensor, flat: Tensor, binary: bool, what: str,
                     count: bool) -> tuple[int, int | None]:  # fmt: skip
    """The count of the steps before the first one with NaN or infinity, and that step
    (``None``: every value is finite, their sum overflowed)."""
    finite = torch.isfinite(spikes.reshape(spikes.shape[0], -1)).all(1)
    if bool(finite.all()):  # graded values whose sum overflows, each one finite
        return (int(torch.count_nonzero(flat)) if count else flat.numel()), None
    bad = int((~finite).nonzero()[0, 0])
    nnz = spike_count(spikes[:bad], binary=binary, what=what)[0] if bad else 0
    return nnz, bad


def _refused_steps(values: Tensor, binary: bool) -> Tensor:
    """Per step of ``[T, ...]`` values: whether it holds one the policy refuses."""
    rows = values.reshape(values.shape[0], -1)
    if binary:  # x - x*x is 0 exactly at 0 and 1 (NaN at NaN, infinite at +-inf)
        return torch.addcmul(rows, rows, rows, value=-1).ne(0).any(1)
    return torch.isfinite(rows).all(1).logical_not()


def _first_refused(blocks: list[tuple[Tensor, bool, str]],
                  steps: int | None = None) -> tuple[int, str, bool] | None:  # fmt: skip
    """The first step of ``(values [T, ...], binary, what)`` blocks (the same ``T``) with
    a value that the spike policy refuses: NaN or infinity, or with ``binary`` a value
    other than 0 and 1. ``(step, what, finite)`` (``finite``: that step holds no NaN or
    infinity, only values that are not binary; ``what`` names the block, one with NaN or
    infinity first), or ``None``. One cheap pass per block where all pass, ``steps``
    steps at a time (the temporaries of a binary check are that size).

    Example:
        >>> import torch
        >>> _first_refused([(torch.tensor([[1.0], [0.0], [0.5]]), True, "spikes")])
        (2, 'spikes', True)
    """
    total = blocks[0][0].shape[0] if blocks else 0
    size = steps or total
    for a in range(0, total, size):
        found = _first_in([(v if size >= total else v[a:a + size], b, what)
                           for v, b, what in blocks])  # fmt: skip
        if found is not None:
            return found[0] + a, found[1], found[2]
    return None


def _first_in(blocks: list[tuple[Tensor, bool, str]]) -> tuple[int, str, bool] | None:
    """:func:`_first_refused` of one slice."""
    flagged = []
    for values, binary, what in blocks:
        if binary:
            flag = bool(torch.addcmul(values, values, values, value=-1).any())
        else:  # a finite sum: every value is finite
            flag = not bool(torch.isfinite(values.sum()))
        if flag:
            flagged.append((values, binary, what))
    found: list[tuple[int, int, str]] = []  # (step, 0 if not finite there, what)
    for values, binary, what in flagged:
        steps = _refused_steps(values, binary).nonzero()
        if steps.numel():
            step = int(steps[0, 0])
            found.append((step, int(bool(torch.isfinite(values[step]).all())), what))
    if not found:  # graded values whose sum overflows, each one finite
        return None
    step, finite, what = min(found)
    return step, what, bool(finite)


def _fed_blocks(fed: dict[str, Tensor] | None, signals: Any) -> list[tuple[Tensor, bool, str]]:
    """The ``(values, binary, what)`` blocks of user-fed signals (``fed``: keyed
    ``"signal:name"``; ``signals``: the rule's :class:`~plasticity.buffers.SignalBuffers`),
    checked per chunk like membrane potentials (finite)."""
    out = []
    for key, values in (fed or {}).items():
        name = key.partition(":")[2]
        out.append((values, False, f"the values fed to {signals.sides[name]}.signal({name!r})"))
    return out


def _refused_message(what: str, step: int, finite: bool) -> str:
    """The start of the error for a refused step (:func:`first_refused`), counted in the
    window."""
    where = f"at step {step} of this window (counted from 0 since the last step())"
    if finite:
        return (f"{what} are not binary (values other than 0 and 1) {where}; pass "
                "spikes='graded' to use graded values as spike amplitudes")  # fmt: skip
    return f"{what} contain NaN or infinity {where}"


def _overflow_message(start: int, err: Any, inputs: list[str], dtype: torch.dtype) -> str:
    """The error for a chunk from window step ``start`` whose update is not finite
    (``err``: the engine's :class:`~plasticity.engine.run.NotFinite`)."""
    kept = (f"the {start} steps before them were learned from" if not err.partial else
            "part of their update had been added to rule.accumulator before the overflow "
            "was found: call rule.accumulator.clear() to start the window over")  # fmt: skip
    if err.cleared:
        kept += "; the eligibility traces, which these steps had changed, were reset to 0"
    too_large = ", ".join(inputs) or "the rule's amplitudes"
    return (
        f"the update of steps {start} to {start + err.end - err.start - 1} of this window "
        f"(counted from 0 since the last step()) is not finite: the inputs are finite, their "
        f"products overflow {dtype} ({too_large} too large); scale them down. Those steps and "
        f"the unprocessed ones after them were discarded; {kept}"
    )


def _chunks(blocks: list[tuple[Tensor, bool, str]], chunk: int, checked: bool = False,
            peaks: list[float] | None = None) -> tuple[list, list, Any]:  # fmt: skip
    """``(bounds, counts, bad)`` of ``(values [n, ...], binary, what)`` blocks (the
    first two: pre and post spikes) cut into chunks of ``chunk`` steps: each chunk's
    ``(start, end)`` and spike counts, up to the first step whose values the policy
    refuses (the chunk's valid steps before it still count), and ``bad``, that step
    as ``(step, what, finite)`` (:func:`first_refused`), or ``None``. ``checked``: the
    values passed the policy already (binary spikes are counted by their sum);
    ``peaks``: see :func:`_spike_counts` (graded values of every chunk checked here)."""
    n = blocks[0][0].shape[0]
    binary = blocks[0][1]
    bounds, counts = [], []
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        # (no slicing: a one-step window is one chunk)
        part = blocks if a == 0 and b == n else [(x[a:b], p, what) for x, p, what in blocks]
        seen = _checked_counts(part, binary) if checked else _chunk_counts(part, binary, peaks)
        if seen is None:  # a value the policy refuses: which step
            bad = _first_refused(part)
            assert bad is not None
            if bad[0]:  # the valid steps before it still count
                bounds.append((a, a + bad[0]))
                counts.append([spike_count(x[a:a + bad[0]], binary=binary)[0]
                               for x, _, _ in blocks[:2]])  # fmt: skip
            return bounds, counts, (a + bad[0], bad[1], bad[2])
        bounds.append((a, b))
        counts.append(seen)
    return bounds, counts, None


def _checked_counts(part: list[tuple[Tensor, bool, str]], binary: bool) -> list[int]:
    """The pre and post spike counts of checked values (binary: the sum is the count;
    graded: no counts needed, their size)."""
    sums = [_flat(x).sum().double() if binary else x.new_tensor(x.numel(), dtype=torch.float64)
            for x, _, _ in part[:2]]  # fmt: skip
    return [int(c) for c in torch.stack(sums).tolist()]


def _chunk_counts(part: list[tuple[Tensor, bool, str]], binary: bool,
                  peaks: list[float] | None) -> list[int] | None:  # fmt: skip
    """The pre and post spike counts of a chunk whose values pass the policy, else ``None``."""
    try:
        seen = _spike_counts(part, count=binary, peaks=peaks)
    except ValueError:  # not binary
        return None
    if any(s[1] is not None for s in seen):
        return None
    return [s[0] for s in seen[:2]]


def _huge(values: list[Tensor], dtype: torch.dtype) -> bool:
    """Whether a value of ``values`` reaches ``finfo(dtype).max ** 0.25`` in magnitude
    (4e9 in float32): products of a few such inputs overflow (one pass each, no copy)."""
    ends = [torch.stack(torch.aminmax(v.reshape(-1))) for v in values if v.numel()]
    if not ends:
        return False
    return float(torch.stack(ends).abs().amax()) >= torch.finfo(dtype).max ** 0.25


def _overflow_risk(plan: Any, w: Tensor, binary: bool, one: list, mod: Tensor | None,
                   chunks: int, peaks: list[float], whole: bool) -> tuple[bool, bool]:  # fmt: skip
    """``(bounded, hold)`` for a window of ``chunks`` chunks: whether its products are
    finite by construction (binary spikes and traces), and whether an overflow is likely
    (``one``: ``[(steps, binary, name)]``, with the user-fed signals' values;
    ``peaks``: graded values' largest magnitudes
    from the check, every chunk's where ``whole``)."""
    bounded = binary and not (  # products of binary spikes and traces are finite
        plan.reads_voltage or plan.reads_mod or plan.unbounded or plan.fed
    ) and torch.finfo(w.dtype).max > 1e38  # fmt: skip
    unbounded = [x for x, p, _ in one if not p]
    if peaks and len(peaks) == len(unbounded) * chunks and whole:  # all seen
        unbounded = [torch.tensor(max(peaks), dtype=torch.float64)]
    unbounded += [] if mod is None else [mod]
    return bounded, not bounded and _huge(unbounded, w.dtype)  # an overflow is likely


def _check_wiring(synapse: Any, neuron: Any, adapter: Any) -> None:
    """A synapse with weights an update can reach, and a neuron module that is not it."""
    adapter.parameter  # noqa: B018 (a weight no update can reach is refused here)
    if adapter.weight.numel() == 0:
        raise ValueError(
            f"`synapse` ({type(synapse).__name__}) has no weights (weight shape "
            f"{tuple(adapter.weight.shape)}): there is nothing to learn; pass a layer "
            "with at least one input and one output"
        )
    if not isinstance(neuron, torch.nn.Module):
        raise TypeError(
            f"`neuron` must be a torch.nn.Module (e.g. snn.Leaky), got {type(neuron).__name__}"
        )
    if neuron is synapse:
        raise ValueError(
            "`neuron` is the synapse itself; pass the spiking module the synapse drives"
        )


def check_options(synapse: Any, neuron: Any, adapter: Any, *, dt: Any, trace: str,
                  coincident: str, batch_reduction: str, decay: str, chunk_size: Any,
                  kernel: str, spikes: str, precision: str, distributed: Any,
                  time_constants: dict[str, float] | None) -> float:  # fmt: skip
    """The checks of :class:`~plasticity.PlasticityRule`'s constructor, before anything is
    set: a clear error naming the first bad argument; returns ``dt`` as a float."""
    _check_wiring(synapse, neuron, adapter)
    dt = check_positive("dt", dt)
    for name, value, options in (
        ("trace", trace, TRACE_MODES), ("coincident", coincident, COINCIDENT),
        ("batch_reduction", batch_reduction, ("mean", "sum")),
        ("decay", decay, ("exact", "euler")), ("kernel", kernel, KERNELS),
        ("spikes", spikes, SPIKE_POLICIES), ("precision", precision, PRECISIONS),
    ):  # fmt: skip
        _choice(name, value, options)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"`chunk_size` must be an int >= 1 or None (automatic), got {chunk_size!r}"
        )
    for name, tau in (time_constants or {}).items():
        try:  # forward-Euler decay needs dt < tau
            decay_factor(dt, check_positive(name, tau), decay)
        except ValueError as err:
            raise ValueError(f"`{name}`: {err}") from err
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(
            f"`distributed` must be True, False or None (automatic), got {distributed!r}"
        )
    return dt


def reduces_across_ranks(distributed: bool | None) -> bool:
    """Whether a rule's ``step()`` combines the window across a process group: when
    ``torch.distributed`` is initialized (``distributed=None``, the default) or forced."""
    if distributed is False:
        return False
    initialized = _DISTRIBUTED and torch.distributed.is_initialized()
    if distributed and not initialized:
        raise RuntimeError("distributed=True but torch.distributed is not initialized")
    return initialized
