r"""Reward-modulated pair STDP on a chunk of steps (Florian 2007; Izhikevich 2007).

The plasticity signal of pair STDP at step :math:`t` (per sample, per synapse) is

.. math:: \zeta_{ij}(t) = A_+\,s^\text{post}_i(t)\,x_j(t) - A_-\,y_i(t)\,s^\text{pre}_j(t)

with the traces and same-step conventions of :func:`~plasticity.functional.stdp.pair_stdp`.

* **MSTDP**: :math:`\Delta w = \gamma \sum_t r(t)\,\zeta(t)`.
* **MSTDPET**: an eligibility trace :math:`z(t) = e^{-dt/\tau_e} z(t-1) + \kappa\,\zeta(t)`
  (:math:`\kappa = 1/\tau_e` for Florian's :math:`dz/dt = -z/\tau_e + \zeta/\tau_e`;
  :math:`\kappa = 1` for Izhikevich's eligibility :math:`c`), and
  :math:`\Delta w = \gamma \sum_t r(t)\,z(t)`.

Timing: the modulator of step :math:`t` multiplies :math:`\zeta(t)` and :math:`z(t)`,
which already include the spikes of step :math:`t` (no one-step lag).

Everything is computed per chunk as correlations with *modulator-weighted* spikes, never
as a ``[B, N_out, N_in]`` tensor per step: :math:`\sum_t r(t)\zeta(t)` is
:math:`A_+ \sum_t (r\,s^\text{post})^\top x - A_- \sum_t (r\,y)^\top s^\text{pre}`. For
MSTDPET, :math:`\sum_t r(t) z(t) = c\,z_0 + \kappa \sum_t R(t)\,\zeta(t)` with
:math:`R(t) = \sum_{t' \ge t} e^{-(t'-t)dt/\tau_e} r(t')` (the modulator filtered backwards
within the chunk), :math:`c = \sum_t e^{-(t+1)dt/\tau_e} r(t)` and :math:`z_0` the
eligibility carried from the previous chunk.

Positive and negative modulation are split so that bounds apply as for STDP: with
:math:`r \ge 0`, :math:`r\zeta^+` potentiates and :math:`r\zeta^-` depresses; with
:math:`r < 0` the roles swap. The carried term is split elementwise by sign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .stdp import pair_traces
from .traces import decay_powers, scan_future_padded

__all__ = ["ModulatedParams", "ModulatedState", "modulated_stdp", "signal_parts"]

Correlate = Callable[..., Tensor]
PerSample = Callable[[Tensor, Tensor], Tensor]  # (post_side, pre_side) -> [B, *weight]


class ModulatedParams(NamedTuple):
    """``decay_e=None``: MSTDP (no eligibility trace); else MSTDPET with ``kappa``."""

    a_plus: float
    a_minus: float
    decay_plus: float
    decay_minus: float
    trace: str = "all-to-all"
    coincident: str = "ltp"
    scale: float = 1.0
    gamma: float = 1.0
    decay_e: float | None = None
    kappa: float = 1.0
    per_sample: bool = False


class ModulatedState(NamedTuple):
    """Traces after the last step and the eligibility ``z`` (``[*w]``, or ``[B, *w]`` per
    sample; zeros for MSTDP)."""

    x_pre: Tensor
    y_post: Tensor
    z: Tensor


def signal_parts(pre, post, x_used, y_used, params, correlate, weight: Tensor):
    """``(Σ_t weight·ζ⁺, Σ_t weight·ζ⁻)``, summed over the batch (``correlate``) or per
    sample (a per-sample correlation). ``weight`` is ``[T, B]``.

    Example:
        A pre spike at step 0, a post spike at step 1 (decays 0.5): ζ⁺ at step 1 is the
        pre trace 0.5, weighted by that step's 3:

        >>> import torch
        >>> from plasticity.functional import dense_correlate
        >>> from plasticity.functional.stdp import PairParams, PairState, pair_traces
        >>> pre, post = torch.tensor([1.0, 0]).view(2, 1, 1), torch.tensor([0, 1.0]).view(2, 1, 1)
        >>> params = ModulatedParams(1.0, 1.0, 0.5, 0.5)
        >>> x, y, _ = pair_traces(pre, post, PairState(torch.zeros(1, 1), torch.zeros(1, 1)), params)
        >>> plus, minus = signal_parts(pre, post, x, y, params, dense_correlate,
        ...                            torch.tensor([[2.0], [3.0]]))
        >>> float(plus), float(minus)
        (1.5, 0.0)
    """
    plus = correlate(post, x_used, "post", False, row_weight=weight).mul_(params.a_plus)
    minus = correlate(y_used, pre, "pre", False, row_weight=weight).mul_(params.a_minus)
    return plus, minus


def modulated_stdp(
    pre: Tensor,
    post: Tensor,
    modulator: Tensor,
    state: ModulatedState,
    params: ModulatedParams,
    correlate: Correlate,
    per_sample: PerSample | None = None,
):
    """MSTDP / MSTDPET over one chunk. ``modulator`` is ``[T, B]`` (reward per step and
    sample). Returns ``(pos, neg, new_state)``; ``pos``/``neg`` include ``gamma`` and the
    batch scale. ``per_sample(post_side, pre_side, spikes, weighted)`` gives per-sample
    correlations ``[B, *w]`` (needed for a per-sample eligibility).

    Example:
        With a reward of 1 at every step, MSTDP is pair STDP:

        >>> import torch
        >>> from plasticity.functional import dense_correlate
        >>> from plasticity.functional.stdp import PairParams, PairState, pair_stdp
        >>> g = torch.Generator().manual_seed(0)
        >>> pre = (torch.rand(20, 1, 3, generator=g) < 0.3).double()
        >>> post = (torch.rand(20, 1, 2, generator=g) < 0.3).double()
        >>> x0, y0 = torch.zeros(1, 3).double(), torch.zeros(1, 2).double()
        >>> state = ModulatedState(x0, y0, torch.zeros(2, 3).double())
        >>> pos, neg, _ = modulated_stdp(pre, post, torch.ones(20, 1).double(), state,
        ...                              ModulatedParams(1.0, 1.0, 0.8, 0.8), dense_correlate)
        >>> ref_pos, ref_neg, _ = pair_stdp(pre, post, PairState(x0, y0),
        ...                                 PairParams(1.0, 1.0, 0.8, 0.8), dense_correlate)
        >>> torch.allclose(pos, ref_pos), torch.allclose(neg, ref_neg)
        (True, True)
    """
    r = modulator.to(pre.dtype)
    steps = pre.shape[0]
    x_used, y_used, traces = pair_traces(pre, post, state, params)
    if params.decay_e is None:
        drive = r
    else:
        drive = scan_future_padded(r, params.decay_e)[:steps].mul_(params.kappa)
    z = state.z
    weight_shape = z.shape[1:] if params.per_sample else z.shape
    pos = torch.zeros(weight_shape, dtype=pre.dtype, device=pre.device)
    neg = torch.zeros_like(pos)
    for sign in (1.0, -1.0):
        w = (sign * drive).clamp_min(0)
        if not bool(w.any()):
            continue
        plus, minus = signal_parts(pre, post, x_used, y_used, params, correlate, w)
        # r >= 0: r·ζ⁺ potentiates, r·ζ⁻ depresses; r < 0: the roles swap
        pos.add_(plus if sign > 0 else minus)
        neg.add_(minus if sign > 0 else plus)
    if params.decay_e is not None:
        de = params.decay_e
        powers = decay_powers(de, steps, pre)  # d_e^1 .. d_e^T (cached, read-only)
        carry = powers @ r  # [B]: sum_t d_e^(t+1) r(t)
        if params.per_sample:
            term = (carry.view(-1, *([1] * (z.ndim - 1))) * z).sum(0)
        else:
            term = z * carry[0]
        pos.add_(term.clamp_min(0))
        neg.sub_(term.clamp_max_(0))  # in place: term is ours
        # eligibility at the end of the chunk: d_e^T z0 + kappa * sum_t d_e^(T-1-t) zeta(t)
        tw = (powers.flip(0) / de * params.kappa).view(steps, 1).expand(steps, pre.shape[1])
        corr = per_sample if params.per_sample else correlate
        assert corr is not None
        zeta_plus, zeta_minus = signal_parts(pre, post, x_used, y_used, params, corr, tw)
        z = torch.add(zeta_plus, z, alpha=float(powers[-1])).sub_(zeta_minus)
        del zeta_plus, zeta_minus
    pos.mul_(params.gamma * params.scale)
    neg.mul_(params.gamma * params.scale)
    return pos, neg, ModulatedState(traces.x_pre, traces.y_post, z)
