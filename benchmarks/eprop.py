"""e-prop: ``pl.EProp`` through its hooks against a plain per-step torch e-prop loop.

NEST's regression tutorial's network (``eprop_supervised_regression_sine-waves_bsshslm_2020``):
100 frozen-Poisson inputs (5 % per step) → ``snn.RLeaky`` of 100 LIF neurons (τ_m = 30
steps, reset by subtraction) → one leaky readout (κ = e^{-1/30}) learning a sum of four
sines, windows of T = 1000 steps, firing-rate regularization (c_reg = 300, f_target = 10 Hz),
random feedback; the weights scaled from NEST's (N(0, 1)/√100, V_th = 0.03 and the input
factor 1 − α) to snnTorch's threshold 1. B = 1 (the tutorial) and B = 32 different
sequences. Every method runs one window on the same inputs:

* ``forward``: the snnTorch loop alone (``fc`` → ``RLeaky`` → ``out`` → readout ``Leaky``);
* ``ours``: the same loop with ``pl.EProp`` attached, ``rule.target(y*)`` after every
  step and ``rule.step()`` at the end (the three gradients into ``.grad``);
* ``plain``: the same loop with the update written in torch, per step, as the paper writes
  it: the presynaptic traces z̄ (α for the input and recurrent synapses, κ for the readout),
  ψ, the eligibility ``e = ψ z̄`` and the filtered eligibility ``ē = κ ē + e`` kept per
  synapse and per sample (``[B, N_post, N_pre]``, in place), the learning signal
  ``L = δ B`` and ``g += Σ_b L ē`` (a product and a sum over the batch: 3x faster here
  than ``einsum("bj,bji->ji")`` or ``bmm``), ``g_out += δᵀ z̄`` and ``Σ_b e = ψᵀ z̄``
  (``addmm_``) and the spike counts for the regularization; the batch mean and ``.grad``
  at the end.

Before timing, :func:`check` runs ``ours`` and ``plain`` on the same window and compares the
three Δw (largest |difference| / largest |Δw|), in float32 and float64; the benchmark
fails if they differ by more than 1e-5 (float32) or 1e-11 (float64).

Reported: milliseconds per window (minimum of interleaved repeats,
``stdp_dense.interleaved``), the update alone (window − forward) for both, and the ratios.

    python benchmarks/eprop.py [--steps 1000] [--batch 1 32] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import snntorch as snn
import torch
from readme import save_results
from stdp_dense import interleaved, pin_allocator
from torch import nn

import plasticity as pl

N_IN, N_REC, N_OUT = 100, 100, 1
TAU_M = TAU_OUT = 30.0  # steps (ms, dt = 1)
V_TH_NEST = 0.03  # NEST's threshold (mV): its weights are in these units
GAMMA, WIDTH, C_REG, F_TARGET, P_IN = 0.3, 1.0, 300.0, 0.01, 0.05
#: the largest relative difference of Δw allowed between ours and the plain loop
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-11}


class Net:
    """The four modules and the frozen inputs and target of one case."""

    def __init__(self, batch: int, steps: int, dtype: torch.dtype = torch.float32, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        alpha, kappa = math.exp(-1.0 / TAU_M), math.exp(-1.0 / TAU_OUT)
        self.fc = nn.Linear(N_IN, N_REC, bias=False)
        self.rlif = snn.RLeaky(beta=alpha, threshold=1.0, linear_features=N_REC)
        self.out = nn.Linear(N_REC, N_OUT, bias=False)
        self.readout = snn.Leaky(beta=kappa, reset_mechanism="none")
        scale = (1.0 - alpha) / V_TH_NEST  # NEST's v = α v + (1 − α) W z, in units of V_th
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(N_REC, N_IN, generator=g) / 10 * scale)
            w_rec = torch.randn(N_REC, N_REC, generator=g) / 10 * scale
            self.rlif.recurrent.weight.copy_(w_rec.fill_diagonal_(0.0))
            self.rlif.recurrent.bias.zero_()  # (biases do not learn)
            self.out.weight.copy_(torch.randn(N_OUT, N_REC, generator=g) / 10 * (1.0 - kappa))
        for module in (self.fc, self.rlif, self.out, self.readout):
            module.to(dtype)
        self.feedback = (torch.randn(N_OUT, N_REC, generator=g) / 10).to(dtype)
        self.x = (torch.rand(steps, batch, N_IN, generator=g) < P_IN).to(dtype)
        self.y_star = sines(steps, g).to(dtype)[:, None, None].expand(steps, batch, N_OUT)
        self.params = [self.fc.weight, self.rlif.recurrent.weight, self.out.weight]

    def step(self, spk, mem, y, t: int):
        """One step of the network: the spikes, membrane and readout."""
        spk, mem = self.rlif(self.fc(self.x[t]), spk.to(self.x.dtype), mem)
        spk = spk.to(self.x.dtype)  # (snnTorch's spikes are float32)
        _, y = self.readout(self.out(spk), y)
        return spk, mem, y


def sines(steps: int, g: torch.Generator) -> torch.Tensor:
    """NEST's target: four sines (periods 1000, 500, 333, 200 steps, amplitudes U(0.5, 2),
    phases U(0, 2π)), shifted to start at 0 and scaled to max |·| = 1."""
    t = torch.arange(steps, dtype=torch.float64)
    amplitude = 0.5 + 1.5 * torch.rand(4, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(4, generator=g, dtype=torch.float64)
    period = torch.tensor([1000.0, 500.0, 333.0, 200.0], dtype=torch.float64)
    y = (amplitude[:, None] * torch.sin(2 * math.pi * t / period[:, None] + phase[:, None])).sum(0)
    y = y - y[0]
    return (y / y.abs().max()).float()


def forward(net: Net):
    """The network alone, one window."""

    def run():
        spk, mem = net.rlif.init_rleaky()
        y = net.readout.init_leaky()
        with torch.no_grad():
            for t in range(net.x.shape[0]):
                spk, mem, y = net.step(spk, mem, y, t)

    return run


def ours(net: Net):
    """``pl.EProp`` through its hooks: ``target()`` every step, ``step()`` at the end."""
    rule = pl.EProp(net.fc, net.rlif, net.out, net.readout, gamma=GAMMA, width=WIDTH,
                    c_reg=C_REG, f_target=F_TARGET, feedback="random")  # fmt: skip
    rule.feedback.copy_(net.feedback)

    def run():
        for p in net.params:
            p.grad = None
        spk, mem = net.rlif.init_rleaky()
        y = net.readout.init_leaky()
        with torch.no_grad():
            for t in range(net.x.shape[0]):
                spk, mem, y = net.step(spk, mem, y, t)
                rule.target(net.y_star[t])
        return rule.step()

    return run


def split(net: Net, repeats: int) -> dict[str, float]:
    """Where ``ours`` spends a window (CPU ms of the process, the minimum of ``repeats``
    windows each): the forward passes with the hooks, ``target()`` and ``step()``; with the
    forward alone, the hooks' share."""
    rule = pl.EProp(net.fc, net.rlif, net.out, net.readout, gamma=GAMMA, width=WIDTH,
                    c_reg=C_REG, f_target=F_TARGET, feedback="random")  # fmt: skip
    alone = forward(Net(net.x.shape[1], net.x.shape[0]))
    clock = time.process_time
    best: dict[str, float] = {}
    for _ in range(repeats + 1):  # (the first: the warm-up)
        spent = dict.fromkeys(("forward_hooks", "target", "step", "forward"), 0.0)
        spk, mem = net.rlif.init_rleaky()
        y = net.readout.init_leaky()
        with torch.no_grad():
            for t in range(net.x.shape[0]):
                start = clock()
                spk, mem, y = net.step(spk, mem, y, t)
                middle = clock()
                rule.target(net.y_star[t])
                spent["forward_hooks"] += middle - start
                spent["target"] += clock() - middle
        start = clock()
        rule.step()
        spent["step"] = clock() - start
        start = clock()
        alone()
        spent["forward"] = clock() - start
        best = {k: min(best.get(k, math.inf), v * 1e3) for k, v in spent.items()}
    best["hooks"] = best["forward_hooks"] - best["forward"]
    return best


def plain(net: Net):
    """The per-step e-prop loop in plain torch (the module's docstring)."""
    batch, dtype = net.x.shape[1], net.x.dtype
    alpha, kappa, theta = float(net.rlif.beta), float(net.readout.beta), 1.0
    feedback = net.feedback

    def zeros(*shape):
        return torch.zeros(*shape, dtype=dtype)

    def run():
        x_bar, z_bar, z_out = zeros(batch, N_IN), zeros(batch, N_REC), zeros(batch, N_REC)
        e_in, e_rec = zeros(batch, N_REC, N_IN), zeros(batch, N_REC, N_REC)
        eb_in, eb_rec = torch.zeros_like(e_in), torch.zeros_like(e_rec)
        g_in, g_rec, g_out = zeros(N_REC, N_IN), zeros(N_REC, N_REC), zeros(N_OUT, N_REC)
        sum_in, sum_rec, count = torch.zeros_like(g_in), torch.zeros_like(g_rec), zeros(N_REC)
        spk, mem = net.rlif.init_rleaky()
        y = net.readout.init_leaky()
        steps = net.x.shape[0]
        with torch.no_grad():
            z_prev = zeros(batch, N_REC)  # (init_rleaky's spikes are an empty tensor)
            for t in range(steps):
                spk, mem, y = net.step(spk, mem, y, t)
                delta = y - net.y_star[t]  # [B, K]
                signal = delta @ feedback  # L_j = Σ_k B_jk δ_k, [B, N]
                psi = (1.0 - (mem - theta).abs_() / (WIDTH * theta)).clamp_(min=0.0)
                psi.mul_(GAMMA / theta)
                x_bar.mul_(alpha).add_(net.x[t])
                z_bar.mul_(alpha).add_(z_prev)
                z_out.mul_(kappa).add_(spk)
                z_prev = spk
                for e, e_bar, pre, g, s in ((e_in, eb_in, x_bar, g_in, sum_in),
                                            (e_rec, eb_rec, z_bar, g_rec, sum_rec)):  # fmt: skip
                    torch.mul(psi[:, :, None], pre[:, None, :], out=e)  # e = ψ z̄
                    e_bar.mul_(kappa).add_(e)  # ē = κ ē + e
                    g.add_((signal[:, :, None] * e_bar).sum(0))  # Σ_b L ē
                    s.addmm_(psi.t(), pre)  # Σ_b e = Σ_b ψ z̄ᵀ, for the regularization
                g_out.addmm_(delta.t(), z_out)  # Σ_b δ z̄_κ
                count.add_(spk.sum(0))
            rate = count / (batch * steps)
            reg = (C_REG * (rate - F_TARGET) / steps)[:, None]
            grads = (g_in + reg * sum_in, g_rec + reg * sum_rec, g_out)
            for p, g in zip(net.params, grads, strict=True):
                p.grad = g / batch
        return {"input": -net.params[0].grad, "recurrent": -net.params[1].grad,
                "readout": -net.params[2].grad}  # fmt: skip

    return run


def check(batch: int, steps: int) -> dict[str, float]:
    """The largest |Δw_ours − Δw_plain| / max |Δw_plain| over the three matrices, in
    float32 and float64; an error beyond :data:`TOLERANCE`."""
    out = {}
    for dtype in (torch.float32, torch.float64):
        got = ours(Net(batch, steps, dtype))()
        want = plain(Net(batch, steps, dtype))()
        worst = 0.0
        for name, w in want.items():
            scale = float(w.abs().max())
            assert scale > 0, f"{name}: nothing learned"
            worst = max(worst, float((got[name] - w).abs().max()) / scale)
        if worst > TOLERANCE[dtype]:
            raise AssertionError(f"ours and the plain loop differ by {worst:.1e} ({dtype})")
        out[str(dtype).removeprefix("torch.")] = worst
    return out


def measure(batch: int, steps: int, repeats: int) -> dict:
    nets = {name: Net(batch, steps) for name in ("forward", "ours", "plain")}
    methods = {"forward": forward(nets["forward"]), "ours": ours(nets["ours"]),
               "plain": plain(nets["plain"])}  # fmt: skip
    rate = _rate(nets["forward"])
    agree = check(batch, min(steps, 200))
    best = {k: v * 1e3 for k, v in interleaved(methods, repeats).items()}
    row = {"n_in": N_IN, "n_rec": N_REC, "n_out": N_OUT, "batch": batch, "steps": steps,
           "recurrent_rate_hz": rate, **{f"{k}_ms": v for k, v in best.items()},
           "ours_update_ms": best["ours"] - best["forward"],
           "plain_update_ms": best["plain"] - best["forward"],
           "relative_difference": agree}  # fmt: skip
    cpu = cpu_times(methods, repeats)
    row.update({f"{k}_cpu_ms": v for k, v in cpu.items()})
    row["plain_over_ours_cpu_update"] = (cpu["plain"] - cpu["forward"]) / max(
        cpu["ours"] - cpu["forward"], 1e-9
    )
    row["aten_ops_per_step"] = aten_ops(batch, min(steps, 100))
    row["ours_split_ms"] = split(Net(batch, steps), repeats)
    row["plain_over_ours"] = best["plain"] / best["ours"]
    row["plain_over_ours_update"] = row["plain_update_ms"] / max(row["ours_update_ms"], 1e-9)
    return row


def cpu_times(methods: dict, repeats: int) -> dict[str, float]:
    """The process's CPU time per call of each method (ms, the minimum over ``repeats``
    turns; one thread): on a shared machine it moves less with the other processes' load
    than the wall time does (caches and memory bandwidth are still shared)."""
    best = dict.fromkeys(methods, math.inf)
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], (time.process_time() - start) * 1e3)
    return best


def aten_ops(batch: int, steps: int = 100) -> dict[str, float]:
    """Top-level aten operators per step of each method (``torch.profiler``; counts do
    not depend on the load)."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, make in (("forward", forward), ("ours", ours), ("plain", plain)):
        run = make(Net(batch, steps))
        run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        top = [e for e in prof.events() if e.name.startswith("aten::") and (
            e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]  # fmt: skip
        out[name] = len(top) / steps
    return out


def _rate(net: Net) -> float:
    """The recurrent neurons' mean rate (Hz at dt = 1 ms) in the window."""
    spk, mem = net.rlif.init_rleaky()
    y = net.readout.init_leaky()
    total = 0.0
    with torch.no_grad():
        for t in range(net.x.shape[0]):
            spk, mem, y = net.step(spk, mem, y, t)
            total += float(spk.mean())
    return total / net.x.shape[0] * 1e3


def table(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| size | B | T | recurrent rate | forward (ms) | ours, hooks (ms) | plain per-step "
             "(ms) | update alone: ours, plain (ms) | plain / ours: window, update | "
             "Δw: ours − plain (float32, float64) |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        d = r["relative_difference"]
        lines.append(
            f"| {r['n_in']}→{r['n_rec']}→{r['n_out']} | {r['batch']} | {r['steps']} "
            f"| {r['recurrent_rate_hz']:.0f} Hz | {r['forward_ms']:.0f} | {r['ours_ms']:.0f} "
            f"| {r['plain_ms']:.0f} | {r['ours_update_ms']:.0f}, {r['plain_update_ms']:.0f} "
            f"| {r['plain_over_ours']:.1f}x, {r['plain_over_ours_update']:.1f}x "
            f"| {d['float32']:.0e}, {d['float64']:.0e} |"
        )
    lines += ["", "CPU time of the process (ms per window, minimum of the repeats; less "
              "sensitive to the machine's load than the wall time) and top-level aten "
              "operators per step (`torch.profiler`):", "",
              "| B | CPU: forward, ours, plain | CPU, update alone: plain / ours | aten ops per "
              "step: forward, ours, plain |", "|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ops = r["aten_ops_per_step"]
        lines.append(
            f"| {r['batch']} | {r['forward_cpu_ms']:.0f}, {r['ours_cpu_ms']:.0f}, "
            f"{r['plain_cpu_ms']:.0f} | {r['plain_over_ours_cpu_update']:.1f}x "
            f"| {ops['forward']:.0f}, {ops['ours']:.0f}, {ops['plain']:.0f} |"
        )
    lines += ["", "Where `ours` spends a window (CPU ms of the process; each part the minimum "
              "over the repeats, timed inside the loop): the hooks (forward passes with the hooks − the forward "
              "alone), `target()` every step (error, learning signal, three `feed`s) and "
              "`step()` (the engine on the buffered steps, the regularization, `.grad`):", "",
              "| B | hooks | target() | step() | sum | ours − forward (CPU, above) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        s = r["ours_split_ms"]
        lines.append(
            f"| {r['batch']} | {s['hooks']:.0f} | {s['target']:.0f} | {s['step']:.0f} "
            f"| {s['hooks'] + s['target'] + s['step']:.0f} "
            f"| {r['ours_cpu_ms'] - r['forward_cpu_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per window")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine, 2 threads of these "
                        "per-step loops of small ops spin and stall)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pinned = pin_allocator()
    header = (f"e-prop, {N_IN} inputs → {N_REC} recurrent LIF → {N_OUT} readout, one window "
              f"of {args.steps} steps (times in ms per window); torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
              f"{', glibc mmap threshold pinned' if pinned else ''}")  # fmt: skip
    print(header, flush=True)
    rows = []
    for batch in args.batch:
        rows.append(measure(batch, args.steps, args.repeats))
        print(rows[-1], flush=True)
    text = table(rows, header)
    print(text)
    save_results(args.out, "eprop", text, rows)
    return rows


if __name__ == "__main__":
    main()
