"""Slow, independent references: explicit loops over spike pairs (never traces).

Spikes are ``[T, B, N]`` (dense) or ``[T, B, C, *spatial]`` (conv) float tensors. Each
function returns ``(pos, neg)`` as float64 tensors in the weight's shape, with the batch
reduction applied, for traces that start at zero.
"""

from __future__ import annotations

import itertools
import math

import torch


def kernel(lag: int, tau: float, dt: float, decay: str) -> float:
    if decay == "exact":
        return math.exp(-lag * dt / tau)
    return (1.0 - dt / tau) ** lag


def _times(train: torch.Tensor) -> list[int]:
    return [t for t, s in enumerate(train.tolist()) if s != 0]


def ltp_ok(t_pre: int, t_post: int, coincident: str) -> bool:
    return t_pre < t_post or (t_pre == t_post and coincident in ("ltp", "both"))


def ltd_ok(t_post: int, t_pre: int, coincident: str) -> bool:
    return t_post < t_pre or (t_post == t_pre and coincident == "both")


def pair_train(pre_t, post_t, *, tau_plus, tau_minus, dt, trace, coincident, decay):
    """(sum of LTP pair kernels, sum of LTD pair kernels) for one pre and one post train."""
    pos = neg = 0.0
    if trace == "all-to-all":
        for tp in post_t:
            for tq in pre_t:
                if ltp_ok(tq, tp, coincident):
                    pos += kernel(tp - tq, tau_plus, dt, decay)
                if ltd_ok(tp, tq, coincident):
                    neg += kernel(tq - tp, tau_minus, dt, decay)
    else:  # symmetric nearest spike: each spike pairs with the latest eligible one
        for tp in post_t:
            cands = [tq for tq in pre_t if ltp_ok(tq, tp, coincident)]
            if cands:
                pos += kernel(tp - max(cands), tau_plus, dt, decay)
        for tq in pre_t:
            cands = [tp for tp in post_t if ltd_ok(tp, tq, coincident)]
            if cands:
                neg += kernel(tq - max(cands), tau_minus, dt, decay)
    return pos, neg


def triplet_train(pre_t, post_t, *, p, dt, trace, coincident, decay):
    """Pfister & Gerstner's pos/neg for one pre and one post train, by enumeration."""

    def detector(times, t, tau):  # earlier spikes of the same train, strictly before t
        earlier = [s for s in times if s < t]
        if not earlier:
            return 0.0
        if trace == "nearest":
            return kernel(t - max(earlier), tau, dt, decay)
        return sum(kernel(t - s, tau, dt, decay) for s in earlier)

    pos = neg = 0.0
    for tp in post_t:
        cands = [tq for tq in pre_t if ltp_ok(tq, tp, coincident)]
        if trace == "nearest":
            cands = [max(cands)] if cands else []
        pair = sum(kernel(tp - tq, p["tau_plus"], dt, decay) for tq in cands)
        pos += pair * (p["a2_plus"] + p["a3_plus"] * detector(post_t, tp, p["tau_y"]))
    for tq in pre_t:
        cands = [tp for tp in post_t if ltd_ok(tp, tq, coincident)]
        if trace == "nearest":
            cands = [max(cands)] if cands else []
        pair = sum(kernel(tq - tp, p["tau_minus"], dt, decay) for tp in cands)
        neg += pair * (p["a2_minus"] + p["a3_minus"] * detector(pre_t, tq, p["tau_x"]))
    return pos, neg


def _pair_fn(rule: str, params: dict, dt, trace, coincident, decay):
    if rule == "pair":

        def fn(pre_t, post_t):
            lp, ld = pair_train(
                pre_t,
                post_t,
                tau_plus=params["tau_plus"],
                tau_minus=params["tau_minus"],
                dt=dt,
                trace=trace,
                coincident=coincident,
                decay=decay,
            )
            return params["a_plus"] * lp, params["a_minus"] * ld

        return fn
    return lambda pre_t, post_t: triplet_train(
        pre_t, post_t, p=params, dt=dt, trace=trace, coincident=coincident, decay=decay
    )


def dense_reference(
    pre,
    post,
    params,
    *,
    rule="pair",
    dt=1.0,
    trace="all-to-all",
    coincident="ltp",
    reduction="mean",
    decay="exact",
):
    T, B, n_in = pre.shape
    n_out = post.shape[2]
    fn = _pair_fn(rule, params, dt, trace, coincident, decay)
    pos = torch.zeros(n_out, n_in, dtype=torch.float64)
    neg = torch.zeros(n_out, n_in, dtype=torch.float64)
    for b in range(B):
        pre_times = [_times(pre[:, b, j]) for j in range(n_in)]
        post_times = [_times(post[:, b, i]) for i in range(n_out)]
        for i, j in itertools.product(range(n_out), range(n_in)):
            lp, ld = fn(pre_times[j], post_times[i])
            pos[i, j] += lp
            neg[i, j] += ld
    scale = 1.0 / B if reduction == "mean" else 1.0
    return pos * scale, neg * scale


def conv_reference(
    pre,
    post,
    weight_shape,
    *,
    stride,
    padding,
    dilation,
    groups,
    params,
    rule="pair",
    dt=1.0,
    trace="all-to-all",
    coincident="ltp",
    reduction="mean",
    decay="exact",
):
    """Zero padding by index arithmetic: a tap outside the input has no spikes."""
    T, B, c_in = pre.shape[:3]
    in_sp = pre.shape[3:]
    c_out = post.shape[2]
    out_sp = post.shape[3:]
    k = len(in_sp)
    ksz = weight_shape[2:]
    cin_g, cout_g = c_in // groups, c_out // groups
    fn = _pair_fn(rule, params, dt, trace, coincident, decay)
    pos = torch.zeros(weight_shape, dtype=torch.float64)
    neg = torch.zeros(weight_shape, dtype=torch.float64)
    for b in range(B):
        pre_times = {}
        for o in range(c_out):
            g = o // cout_g
            for opos in itertools.product(*[range(n) for n in out_sp]):
                post_t = _times(post[(slice(None), b, o, *opos)])
                for c in range(cin_g):
                    ci = g * cin_g + c
                    for kpos in itertools.product(*[range(n) for n in ksz]):
                        ipos = tuple(
                            opos[d] * stride[d] - padding[d] + kpos[d] * dilation[d]
                            for d in range(k)
                        )
                        if any(ipos[d] < 0 or ipos[d] >= in_sp[d] for d in range(k)):
                            continue
                        key = (ci, ipos)
                        if key not in pre_times:
                            pre_times[key] = _times(pre[(slice(None), b, ci, *ipos)])
                        lp, ld = fn(pre_times[key], post_t)
                        pos[(o, c, *kpos)] += lp
                        neg[(o, c, *kpos)] += ld
    scale = 1.0 / B if reduction == "mean" else 1.0
    return pos * scale, neg * scale


def zeta_step(
    pre_t, post_t, t, *, a_plus, a_minus, tau_plus, tau_minus, dt, trace, coincident, decay
):
    """The pair-STDP signal ζ(t) of one synapse at step t, by enumerating pairs."""
    z = 0.0
    if t in post_t:  # potentiation: this post spike with earlier (eligible) pre spikes
        cands = [tq for tq in pre_t if ltp_ok(tq, t, coincident)]
        if trace == "nearest":
            cands = [max(cands)] if cands else []
        z += a_plus * sum(kernel(t - tq, tau_plus, dt, decay) for tq in cands)
    if t in pre_t:  # depression: this pre spike with earlier (eligible) post spikes
        cands = [tp for tp in post_t if ltd_ok(tp, t, coincident)]
        if trace == "nearest":
            cands = [max(cands)] if cands else []
        z -= a_minus * sum(kernel(t - tp, tau_minus, dt, decay) for tp in cands)
    return z


def modulated_reference(
    pre,
    post,
    modulator,
    *,
    a_plus,
    a_minus,
    tau_plus,
    tau_minus,
    gamma=1.0,
    dt=1.0,
    trace="all-to-all",
    coincident="ltp",
    reduction="mean",
    tau_e=None,
    kappa=None,
    tau_d=None,
    window_reward=None,
):
    """Δw of MSTDP (tau_e None), MSTDPET (tau_e, kappa = 1/tau_e) or dopamine STDP
    (tau_d: modulator = release events, d(t) = d(t-1) e^(-dt/tau_d) + release(t), kappa = 1),
    step by step from the papers' equations. ``window_reward`` [B]: the reward of the whole
    window (MSTDP: R Σ_t ζ(t); MSTDPET: R z(T) dt)."""
    T, B, n_in = pre.shape
    n_out = post.shape[2]
    dw = torch.zeros(n_out, n_in, dtype=torch.float64)
    for b in range(B):
        mod = modulator[:, b].tolist()
        if tau_d is not None:
            d, conc = 0.0, []
            for t in range(T):
                d = d * math.exp(-dt / tau_d) + mod[t]
                conc.append(d)
            mod = conc
        pre_times = [_times(pre[:, b, j]) for j in range(n_in)]
        post_times = [_times(post[:, b, i]) for i in range(n_out)]
        for i, j in itertools.product(range(n_out), range(n_in)):
            z = total = 0.0
            for t in range(T):
                zeta = zeta_step(
                    pre_times[j],
                    post_times[i],
                    t,
                    a_plus=a_plus,
                    a_minus=a_minus,
                    tau_plus=tau_plus,
                    tau_minus=tau_minus,
                    dt=dt,
                    trace=trace,
                    coincident=coincident,
                    decay="exact",
                )
                if tau_e is None:
                    total += gamma * mod[t] * zeta
                    z += zeta
                else:
                    z = z * math.exp(-dt / tau_e) + kappa * zeta
                    total += gamma * mod[t] * z * dt
            if window_reward is not None:
                total += gamma * float(window_reward[b]) * z * (1.0 if tau_e is None else dt)
            dw[i, j] += total
    return dw / B if reduction == "mean" else dw
