"""Running a declaration through the engine (every kernel candidate of its plan, and
one-step windows; the steps given to ``rule.observe`` or through the hooks, user-fed
signals with them) beside the slow interpreter of tests/rule_interpreter.py, for the
soundness tests."""

from __future__ import annotations

import contextlib

import pytest
import snntorch as snn
import torch
from rule_interpreter import Interpreter, fed_signals, leaves
from torch import nn

import plasticity as pl
from plasticity.engine import CHOOSER
from plasticity.language import parse

__all__ = ["N_IN", "N_OUT", "check_declaration", "observed"]

N_IN, N_OUT = 4, 3


def _inputs(seed: int, lengths: list[int], batch: int, binary: bool, per_sample: bool,
            fed: dict[str, str]):  # fmt: skip
    """The windows' (pre, post, voltage, reward, fed values by name)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.Generator().manual_seed(seed + 2)  # the fed values (the rest as without them)
    out = []

    def spikes(steps, n):
        s = (torch.rand(steps, batch, n, generator=g) < 0.35).double()
        if not binary:
            s = s * torch.rand(steps, batch, n, generator=g, dtype=torch.float64) * 2.0
        return s

    def values(steps, side):  # signed, some of them sparse
        v = torch.randn(steps, batch, N_OUT if side == "post" else N_IN, generator=h,
                        dtype=torch.float64)  # fmt: skip
        return v * (torch.rand(v.shape, generator=h) < 0.4) if torch.rand(1, generator=h) < 0.3 else v

    for steps in lengths:
        x, y = spikes(steps, N_IN), spikes(steps, N_OUT)
        v = torch.randn(steps, batch, N_OUT, generator=g, dtype=torch.float64)
        r = torch.randn(steps, batch if per_sample else 1, generator=g, dtype=torch.float64)
        out.append((x, y, v, r.expand(steps, batch),
                    {name: values(steps, side) for name, side in sorted(fed.items())}))  # fmt: skip
    return out


@contextlib.contextmanager
def _forced(index: int):
    """The engine's kernel choice forced to the plan's candidate ``index``."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(CHOOSER, "choose", lambda plan, inputs, kernels, nnz:
                  plan.candidates(conv=kernels.conv is not None)[index])  # fmt: skip
        yield


class _Replay(nn.Module):
    """A neuron that returns the recorded post spikes (and membrane potentials: ``(spk,
    mem)``) of the next step, whatever its input."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list = []

    def forward(self, current: torch.Tensor):
        spikes, voltage = self.rows.pop(0)
        return spikes if voltage is None else (spikes, voltage)


def _run(make, w0, windows, reads, one_step: bool, hooks: bool):
    """Δw of every window (one-step windows summed per window with ``one_step``), and
    the kernels that ran; the steps given through the hooks (``rule.feed``,
    ``rule.reward`` after each forward pass) or to ``rule.observe`` (``signals=``)."""
    fc = nn.Linear(N_IN, N_OUT, bias=False).double()
    with torch.no_grad():
        fc.weight.copy_(w0)
    neuron = _Replay()
    rule = make(fc, neuron)
    out, kernels = [], set()
    for x, y, v, r, fed in windows:
        parts = [slice(t, t + 1) for t in range(x.shape[0])] if one_step else [slice(None)]
        total = torch.zeros_like(w0)
        for part in parts:
            if hooks:
                for t in range(x.shape[0])[part]:
                    neuron.rows.append((y[t], v[t] if "voltage" in reads else None))
                    neuron(fc(x[t]))
                    if fed:
                        rule.feed(**{name: values[t] for name, values in fed.items()})
                    if "mod" in reads:
                        rule.reward(r[t] if rule.per_sample else float(r[t, 0]))
            else:
                rule.observe(x[part], y[part], voltage=v[part] if "voltage" in reads else None,
                             reward=(r[part] if rule.per_sample else r[part, 0])
                             if "mod" in reads else None,
                             signals={name: values[part] for name, values in fed.items()}
                             if fed else None)  # fmt: skip
            dw = rule.step()
            kernels |= set(rule.kernel_choice.values())
            total += 0 if dw is None else dw
        out.append(total)
    return out, kernels


def check_declaration(pos, neg, *, seed=0, lengths=(5, 1, 12), batch=2, binary=True,
                      dt=1.0, decay="exact", reduction="mean", chunk_size=None,
                      every_path=True):  # fmt: skip
    """Every kernel candidate and the one-step path give the interpreter's Δw (``pos``,
    ``neg``: declarations, or their text), the steps given to ``rule.observe`` on
    recordings and through the hooks (with ``rule.feed``/``rule.reward``); without
    ``every_path``, the candidates alternate between the two (from the parity of
    ``seed``) and the one-step path takes both."""
    pos, neg = (parse(x) if isinstance(x, str) else x for x in (pos, neg))
    options = dict(dt=dt, decay=decay, batch_reduction=reduction, chunk_size=chunk_size,
                   spikes="binary" if binary else "graded")  # fmt: skip

    def make(fc, neuron):
        return pl.Rule(fc, neuron, pos=pos, neg=neg, **options)

    probe = make(nn.Linear(N_IN, N_OUT, bias=False).double(), snn.Leaky(beta=0.5))
    reads = leaves(pos) | leaves(neg)
    fed = fed_signals(pos) | fed_signals(neg)
    windows = _inputs(seed, list(lengths), batch, binary, probe.per_sample, fed)
    g = torch.Generator().manual_seed(seed + 1)
    w0 = torch.rand(N_OUT, N_IN, generator=g, dtype=torch.float64) - 0.4  # signed weights
    ref = Interpreter(pos, neg, dt=dt, decay=decay, batch_reduction=reduction)
    expected = [ref.window(w0, x, y, v if "voltage" in reads else None,
                           r if "mod" in reads else None, f) for x, y, v, r, f in windows]  # fmt: skip
    candidates = probe.plan.candidates(conv=False)
    runs = {}
    for p, path in enumerate(("observe", "hooks")):
        runs |= {f"{path}, candidate {c}": (i, False, path) for i, c in enumerate(candidates)
                 if every_path or (i + seed) % 2 == p}  # fmt: skip
        runs[f"{path}, one-step"] = (0, True, path)
    for name, (index, one_step, path) in runs.items():
        with _forced(index):
            got, kernels = _run(make, w0, windows, reads, one_step, path == "hooks")
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
