"""Running a declaration through the engine (every kernel candidate of its plan, and
one-step windows) beside the slow interpreter of tests/rule_interpreter.py, for the
soundness tests."""

from __future__ import annotations

import contextlib

import pytest
import snntorch as snn
import torch
from rule_interpreter import Interpreter, leaves
from torch import nn

import plasticity as pl
from plasticity.engine import CHOOSER
from plasticity.language import parse

__all__ = ["N_IN", "N_OUT", "check_declaration", "observed"]

N_IN, N_OUT = 4, 3


def _inputs(seed: int, lengths: list[int], batch: int, binary: bool, per_sample: bool):
    g = torch.Generator().manual_seed(seed)
    out = []

    def spikes(steps, n):
        s = (torch.rand(steps, batch, n, generator=g) < 0.35).double()
        if not binary:
            s = s * torch.rand(steps, batch, n, generator=g, dtype=torch.float64) * 2.0
        return s

    for steps in lengths:
        x, y = spikes(steps, N_IN), spikes(steps, N_OUT)
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
    """Every kernel candidate and the one-step path give the interpreter's Δw (``pos``,
    ``neg``: declarations, or their text)."""
    pos, neg = (parse(x) if isinstance(x, str) else x for x in (pos, neg))
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
        if one_step and probe.plan.products and all(not p.per_sample
                                                    for p in probe.plan.products):
            assert kernels == {"one-step"}, kernels
        for k, (a, b) in enumerate(zip(got, expected, strict=True)):
            scale = max(1.0, float(b.abs().max()))
            where = f"{name}, window {k}"
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10 * scale,
                                       msg=lambda m, where=where: f"{where}: {m}")  # fmt: skip


def observed(pos, neg, windows, *, kernel="auto", **options):
    """Δw of every window of a rule (50 -> 30) observing ``windows`` of (pre, post)."""
    fc = nn.Linear(windows[0][0].shape[2], windows[0][1].shape[2], bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(torch.linspace(-0.5, 1.0, fc.weight.numel()).view_as(fc.weight))
    rule = pl.Rule(fc, snn.Leaky(beta=0.9), pos=pos, neg=neg, kernel=kernel, **options)
    out = []
    for x, y in windows:
        rule.observe(x, y)
        out.append(rule.step())
    return out, fc.weight.detach().clone()
