"""Soundness of the rule language: every declaration the language accepts runs on every
kernel candidate of the engine and on the one-step path, and gives, window after window,
what an independent slow interpreter of the declaration gives (tests/rule_interpreter.py:
per-step loops in float64 from the language's equations)."""

from __future__ import annotations

import contextlib

import pytest
import snntorch as snn
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import plasticity as pl
from plasticity import eligibility, modulator, post, pre, relu, weight
from plasticity.engine import CHOOSER

from rule_interpreter import Interpreter, leaves

N_IN, N_OUT = 4, 3
TAUS = st.sampled_from([2.0, 3.5, 6.0])
NUMBERS = st.sampled_from([0.5, -0.3, 1.25, 2.0])


# ---------------------------------------------------------------------- declarations
@st.composite
def side_signal(draw, side: str, depth: int = 2, binary: bool = True):
    """A signal of one side drawn from the whole grammar of signals."""
    factory = post if side == "post" else pre
    leaves_ = ["spike", "trace", "nearest"] + (["voltage"] * (side == "post"))
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(leaves_))
        if kind == "spike":
            return factory.spike
        if kind == "voltage":
            return factory.voltage
        tau = draw(TAUS)
        return factory.trace(tau, nearest=kind == "nearest" and binary)
    x = draw(side_signal(side, depth - 1, binary))
    op = draw(st.sampled_from(["trace", "lowpass", "before", "delayed", "rate", "relu", "pow",
                               "batch_mean", "add", "sub", "mul", "scale", "div", "mod",
                               "modtrace"]))  # fmt: skip
    if op == "trace":
        return x.trace(draw(TAUS))
    if op == "lowpass":
        return x.lowpass(draw(TAUS), init=draw(st.sampled_from([None, 0.0, 0.4])))
    if op == "before":
        return (x if x.kind == "trace" else x.trace(draw(TAUS))).before
    if op == "delayed":
        f = x if x.kind in ("trace", "lowpass") else x.lowpass(draw(TAUS))
        return f.previous if draw(st.booleans()) else f.delayed(draw(st.integers(1, 3)))
    if op == "rate":
        return factory.rate(draw(TAUS))
    if op == "relu":
        return relu(x - draw(NUMBERS))
    if op == "pow":
        return x ** draw(st.integers(1, 3))
    if op == "batch_mean":
        return x.batch_mean()
    if op in ("add", "sub", "mul"):
        y = draw(side_signal(side, depth - 1, binary))
        return x + y if op == "add" else x - y if op == "sub" else x * y
    if op == "scale":
        return draw(NUMBERS) * x
    if op == "div":
        return x / draw(NUMBERS)
    if op == "mod":
        return x * modulator if draw(st.booleans()) else x + modulator
    return x * modulator.trace(draw(TAUS))


@st.composite
def mod_signal(draw):
    """A third factor: the modulator and what is built from it alone."""
    return draw(st.sampled_from([
        modulator, modulator.trace(3.0), modulator ** 2, relu(modulator - 0.2),
        modulator.lowpass(2.0, init=0.0), modulator.trace(2.0).before, 0.5 * modulator,
        modulator.batch_mean(),
    ]))  # fmt: skip


@st.composite
def term(draw, binary: bool = True, weighted: bool = True, constant: bool = True):
    """A term: a number, optionally the weight, a third factor, a post- and a pre-side
    signal (either or both may be missing where ``constant``)."""
    parts = [draw(NUMBERS)]
    sides = draw(st.sampled_from(["both", "both", "post", "pre"] + ["none"] * constant))
    if sides in ("both", "post"):
        parts.append(draw(side_signal("post", 2, binary)))
    if sides in ("both", "pre"):
        parts.append(draw(side_signal("pre", 2, binary)))
    if draw(st.integers(0, 3)) == 0:
        parts.append(draw(mod_signal()))
    if weighted and draw(st.integers(0, 3)) == 0:
        parts.append(weight)
    out = parts[0]
    for p in draw(st.permutations(parts[1:])):
        out = out * p
    return out


@st.composite
def side_of_rule(draw, binary: bool, constant: bool):
    """What ``pos=`` or ``neg=`` holds: ``None``, or a sum of terms and eligibility terms."""
    n = draw(st.integers(0, 3))
    if n == 0:
        return None
    out = 0
    for _ in range(n):
        if draw(st.integers(0, 4)) == 0:
            inner = sum(draw(st.lists(term(binary, weighted=False, constant=constant),
                                      min_size=1, max_size=2)))  # fmt: skip
            e = eligibility(inner, draw(TAUS), per_sample=draw(st.booleans()))
            out = out + draw(NUMBERS) * draw(mod_signal()) * e
        else:
            out = out + draw(term(binary, constant=constant))
    return out


# ------------------------------------------------------------------------------ runs
def _inputs(seed: int, lengths: list[int], batch: int, binary: bool, per_sample: bool):
    g = torch.Generator().manual_seed(seed)
    out = []
    for steps in lengths:
        def spikes(n):
            s = (torch.rand(steps, batch, n, generator=g) < 0.35).double()
            if not binary:
                s = s * torch.rand(steps, batch, n, generator=g, dtype=torch.float64) * 2.0
            return s

        x, y = spikes(N_IN), spikes(N_OUT)
        v = torch.randn(steps, batch, N_OUT, generator=g, dtype=torch.float64)
        r = torch.randn(steps, batch if per_sample else 1, generator=g, dtype=torch.float64)
        out.append((x, y, v, r.expand(steps, batch)))
    return out


@contextlib.contextmanager
def _forced(index: int):
    """The engine's kernel choice forced to the plan's candidate ``index``."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(CHOOSER, "choose", lambda plan, inputs, kernels, nnz:
                  plan.candidates(conv=kernels.conv is not None)[index])  # fmt: skip
        yield


def _run(make, w0, windows, reads, one_step: bool):
    """Δw of every window (one-step windows summed per window with ``one_step``), and
    the kernels that ran."""
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(w0)
    rule = make(fc)
    out, kernels = [], set()
    for x, y, v, r in windows:
        parts = [slice(t, t + 1) for t in range(x.shape[0])] if one_step else [slice(None)]
        total = torch.zeros_like(w0)
        for part in parts:
            rule.observe(x[part], y[part], voltage=v[part] if "voltage" in reads else None,
                         reward=(r[part] if rule.per_sample else r[part, 0]) if "mod" in reads
                         else None)  # fmt: skip
            dw = rule.step()
            kernels |= set(rule.kernel_choice.values())
            total += 0 if dw is None else dw
        out.append(total)
    return out, kernels


def check_declaration(pos, neg, *, seed=0, lengths=(5, 1, 12), batch=2, binary=True,
                      dt=1.0, decay="exact", reduction="mean", chunk_size=None):  # fmt: skip
    """Every kernel candidate and the one-step path give the interpreter's Δw."""
    options = dict(dt=dt, decay=decay, batch_reduction=reduction, chunk_size=chunk_size,
                   spikes="binary" if binary else "graded")  # fmt: skip

    def make(fc):
        return pl.Rule(fc, snn.Leaky(beta=0.5), pos=pos, neg=neg, **options)

    probe = make(nn.Linear(N_IN, N_OUT, bias=False).double())
    reads = leaves(pos) | leaves(neg)
    windows = _inputs(seed, list(lengths), batch, binary, probe.per_sample)
    g = torch.Generator().manual_seed(seed + 1)
    w0 = torch.rand(N_OUT, N_IN, generator=g, dtype=torch.float64) - 0.4  # signed weights
    ref = Interpreter(pos, neg, dt=dt, decay=decay, batch_reduction=reduction)
    expected = [ref.window(w0, x, y, v if "voltage" in reads else None,
                           r if "mod" in reads else None) for x, y, v, r in windows]  # fmt: skip
    candidates = probe.plan.candidates(conv=False)
    runs = {f"candidate {c}": (i, False) for i, c in enumerate(candidates)}
    runs["one-step"] = (0, True)
    for name, (index, one_step) in runs.items():
        with _forced(index):
            got, kernels = _run(make, w0, windows, reads, one_step)
        if one_step and all(not p.per_sample for p in probe.plan.products):
            assert kernels == {"one-step"}, kernels
        for k, (a, b) in enumerate(zip(got, expected, strict=True)):
            scale = max(1.0, float(b.abs().max()))
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10 * scale,
                                       msg=lambda m: f"{name}, window {k}: {m}")  # fmt: skip


@st.composite
def case(draw, constant: bool = True):
    binary = draw(st.booleans()) or draw(st.booleans())
    pos = draw(side_of_rule(binary, constant))
    neg = draw(side_of_rule(binary, constant))
    options = dict(
        seed=draw(st.integers(0, 2**16)),
        lengths=tuple(draw(st.lists(st.sampled_from([1, 2, 5, 9, 17]), min_size=2, max_size=3))),
        batch=draw(st.integers(1, 3)),
        binary=binary,
        dt=draw(st.sampled_from([1.0, 0.5])),
        decay=draw(st.sampled_from(["exact", "euler"])),
        reduction=draw(st.sampled_from(["mean", "sum"])),
        chunk_size=draw(st.sampled_from([None, 3, 8])),
    )
    return pos, neg, options


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_every_declaration_runs_on_every_kernel_and_equals_the_interpreter(drawn):
    pos, neg, options = drawn
    check_declaration(pos, neg, **options)
