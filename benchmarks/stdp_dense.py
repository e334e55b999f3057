"""Dense pair-STDP benchmark: plasticity's rule against snnTorch's learner and a per-step baseline.

All in one process, on the same spikes (784 inputs, 5 % active, T = 250 steps):

* ``forward``: the snnTorch forward pass alone (``nn.Linear`` + ``snn.Leaky`` per step),
  for scale.
* ``ours (hooks)``: the same loop with ``pl.STDP`` attached, plus ``rule.step()``, minus
  the forward pass: what plasticity costs a user inside their own loop.
* ``ours (observe)``: the rule on recorded ``[T, B, N]`` spikes (``rule.observe``), the
  kernel without the per-step hook overhead.
* ``snntorch``: snnTorch's own ``stdp_linear_single_step`` called every step (it builds a
  ``[B, N_out, N_in]`` tensor per step).
* ``per-step``: plain torch, per step: two trace updates and two in-place ``addmm_``.
* ``spikingjelly`` / ``norse`` / ``bindsnet`` (optional, ``make bench`` installs them): their
  per-step STDP (``stdp_linear_step``, ``stdp_step_linear``, ``PostPre`` on a
  ``Connection`` whose nodes' spikes and traces are set each step); "n/a" where not
  installed.
* ``ours (observe, bf16)``: the kernel with ``precision="bf16"``, and its error against a
  float64 run (largest deviation of Δw relative to max |Δw|).
* hardware floors: one in-place add over the weight, and one GEMM of the chunk's shape
  (``[N_out, T·B] @ [T·B, N_in]``), the dense compute a chunked rule cannot avoid.
* peak memory (``--memory``, from the profiler's allocation timeline, see ``memory.py``):
  ours through hooks and on recorded spikes (fresh rules, so that step buffers and scratch
  space count), snnTorch's learner and the per-step loop, against the weight ``W`` and one
  chunk of buffered spikes ``S``.

Prints Markdown tables of times, ratios (higher ratio = plasticity is faster) and memory,
and writes them with a JSON copy to ``--out``. Timings are the minimum over ``--repeats``
runs.

    python benchmarks/stdp_dense.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import snntorch as snn
import torch
from memory import peak_memory
from peers import bindsnet, bindsnet_connection
from readme import save_results
from snntorch.functional.stdp_learner import stdp_linear_single_step
from torch import nn

import plasticity as pl

A_PLUS, A_MINUS, TAU = 1e-2, 1.05e-2, 20.0


def pin_allocator() -> bool:
    """Makes glibc keep freed memory (no mmap/munmap per large temporary).

    Otherwise a method's time depends on the allocator's history: glibc raises its mmap
    threshold after large frees, so the same per-step temporaries are either reused or
    page-faulted anew (seen here: snnTorch's learner 72 ms or 540 ms for the same work).
    Pinning applies to every method alike. Returns whether it was applied (glibc only).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 1 << 31)
        )
    except (OSError, AttributeError):
        return False


#: a timed turn of a fast method lasts at least this long (back-to-back calls, as timeit)
TURN_SECONDS = 0.02
#: at most this many back-to-back calls per turn
MAX_CALLS = 20


def interleaved(methods: dict, repeats: int, once: set[str] = frozenset()) -> dict[str, float]:
    """Per-call time of each method, the minimum over ``repeats`` turns; the methods take
    turns so that drift of a shared machine hits all of them alike.

    Like :mod:`timeit`, a turn of a fast method is several back-to-back calls (as many as
    fill :data:`TURN_SECONDS`, at most :data:`MAX_CALLS`), each timed, so that a
    millisecond method is measured in steady state rather than right after another
    method evicted its caches; methods slower than a turn run once per turn. Methods in
    ``once`` (the slow peers, whose seconds dwarf any warm-up effect) are timed on their
    single warm-up run and once more."""
    best = {name: float("inf") for name in methods}
    calls = {}
    for name, fn in methods.items():
        start = time.perf_counter()
        fn()  # warm-up (twice for the fast ones: the first run of a process is cold)
        if name in once:
            best[name] = time.perf_counter() - start
            calls[name] = 1
            continue
        start = time.perf_counter()
        fn()
        calls[name] = max(1, min(MAX_CALLS, int(TURN_SECONDS / (time.perf_counter() - start))))
    for r in range(repeats):
        for name, fn in methods.items():
            if r and name in once:
                continue
            for _ in range(calls[name]):
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def output_rate(fc: nn.Linear, x: torch.Tensor) -> float:
    lif = snn.Leaky(beta=0.9)
    total = 0.0
    with torch.no_grad():
        mem = lif.init_leaky()
        for t in range(x.shape[0]):
            spk, mem = lif(fc(x[t]), mem)
            total += float(spk.mean())
    return total / x.shape[0]


def make_case(n_in: int, n_out: int, batch: int, steps: int, rate: float, seed: int = 0):
    """Input spikes at ``rate``; weights scaled (bisection) so the Leaky layer fires at ~``rate``;
    ``post``: recorded-style random spikes at ``rate`` for the kernel-only timing."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, n_in, generator=g) < rate).float()
    post = (torch.rand(steps, batch, n_out, generator=g) < rate).float()
    fc = nn.Linear(n_in, n_out, bias=False)
    base = torch.rand(n_out, n_in, generator=g) / (n_in * rate)
    lo, hi = 0.0, 4.0
    probe = x[: min(steps, 100)]
    for _ in range(12):
        mid = (lo + hi) / 2
        with torch.no_grad():
            fc.weight.copy_(base * mid)
        if output_rate(fc, probe) < rate:
            lo = mid
        else:
            hi = mid
    with torch.no_grad():
        fc.weight.copy_(base * (lo + hi) / 2)
    return x, post, fc


def run_forward(fc, lif, x):
    with torch.no_grad():
        mem = lif.init_leaky()
        for t in range(x.shape[0]):
            spk, mem = lif(fc(x[t]), mem)


def pair_rule(fc: nn.Linear, lif: nn.Module | None = None, **options) -> pl.STDP:
    """The benchmarked pair STDP rule on ``fc`` (and a fresh ``snn.Leaky`` by default)."""
    lif = snn.Leaky(beta=0.9) if lif is None else lif
    return pl.STDP(fc, lif, a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU, **options)


def per_step_pair(x: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """The plain-torch baseline: per step, two trace updates and two in-place ``addmm_``
    (batch mean) into a fresh weight."""
    steps, batch, n_in = x.shape
    n_out = post.shape[2]
    decay = math.exp(-1.0 / TAU)
    w = torch.zeros(n_out, n_in)
    xt, yt = torch.zeros(batch, n_in), torch.zeros(batch, n_out)
    for t in range(steps):
        xt.mul_(decay).add_(x[t])
        yt.mul_(decay)
        w.addmm_(post[t].t(), xt, alpha=A_PLUS / batch)
        w.addmm_(yt.t(), x[t], alpha=-A_MINUS / batch)
        yt.add_(post[t])
    return w


def on_recorded(rule: pl.PlasticityRule, x: torch.Tensor, post: torch.Tensor, **observe):
    """A timed function: ``rule`` learns one window from the recorded spikes, then resets."""

    def run():
        rule.observe(x, post, **observe)
        rule.step()
        rule.reset()
        rule.weight.grad = None

    return run


def bench_case(n_in, n_out, batch, steps, rate, repeats, memory=True) -> dict:
    x, post, fc = make_case(n_in, n_out, batch, steps, rate)
    lif = snn.Leaky(beta=0.9)
    decay = math.exp(-1.0 / TAU)
    out: dict[str, float] = {"post_rate": output_rate(fc, x)}

    rule = pair_rule(fc, lif)

    def forward():
        rule.eval()  # attached but idle: the plain forward pass
        run_forward(fc, lif, x)
        rule.train()

    def with_rule():
        run_forward(fc, lif, x)
        rule.step()
        rule.reset()
        fc.weight.grad = None

    kernel_rule = pair_rule(nn.Linear(n_in, n_out, bias=False))

    def snntorch_learner():
        trace_pre = trace_post = None
        fc3 = nn.Linear(n_in, n_out, bias=False)
        for t in range(steps):
            trace_pre, trace_post, dw = stdp_linear_single_step(
                fc3, x[t], post[t], trace_pre, trace_post, TAU, TAU
            )
            fc3.weight.data.add_(dw, alpha=A_PLUS)

    def per_step():
        per_step_pair(x, post)

    peers = {}
    try:
        from spikingjelly.activation_based.functional.learning import stdp_linear_step

        def spikingjelly_learner():
            w3 = torch.zeros(n_out, n_in)
            tr = (torch.zeros(batch, n_in), torch.zeros(batch, n_out))
            for t in range(steps):
                dw, tr = stdp_linear_step(x[t], post[t], tr, w3, tau_pre=TAU, tau_post=TAU)
                w3.add_(dw, alpha=A_PLUS)

        peers["spikingjelly"] = spikingjelly_learner
    except ImportError:
        pass
    try:
        from norse.torch.functional.stdp import STDPParameters, STDPState, stdp_step_linear

        def norse_learner():
            w4 = torch.zeros(n_out, n_in)
            state = STDPState(t_pre=torch.zeros(batch, n_in), t_post=torch.zeros(batch, n_out))
            params = STDPParameters(
                tau_pre_inv=1.0 / TAU, tau_post_inv=1.0 / TAU, eta_plus=A_PLUS, eta_minus=A_MINUS
            )
            for t in range(steps):
                w4, state = stdp_step_linear(x[t], post[t], w4, state, params, dt=1.0)

        peers["norse"] = norse_learner
    except ImportError:
        pass

    bn = bindsnet()
    if bn is not None:
        x_bool, post_bool = x.bool(), post.bool()

        def bindsnet_learner():
            conn = bindsnet_connection(
                bn, n_in, n_out, batch, bn.PostPre, nu=(A_MINUS, A_PLUS), tc_trace=TAU
            )
            source, target = conn.source, conn.target
            for t in range(steps):
                source.s, target.s = x_bool[t], post_bool[t]
                source.x.mul_(decay).add_(x[t])  # what BindsNET's nodes do in forward()
                target.x.mul_(decay).add_(post[t])
                conn.update(learning=True)

        peers["bindsnet"] = bindsnet_learner

    bf16_rule = pair_rule(nn.Linear(n_in, n_out, bias=False), precision="bf16")

    w_floor = torch.zeros(n_out, n_in)
    rows_post, rows_pre = post.reshape(-1, n_out), x.reshape(-1, n_in)

    def floor_add():
        w_floor.add_(1.0)

    def floor_gemm():
        torch.mm(rows_post.t(), rows_pre)

    methods = {
        "forward": forward,
        "forward+ours": with_rule,
        "ours (observe)": on_recorded(kernel_rule, x, post),
        "ours (observe, bf16)": on_recorded(bf16_rule, x, post),
        "per-step": per_step,
        "snntorch": snntorch_learner,
        **peers,
        "floor: one add": floor_add,
        "floor: one GEMM": floor_gemm,
    }
    slow = {"snntorch", "spikingjelly", "norse"} if n_out * batch > 3200 else set()
    out.update(interleaved(methods, repeats, once=slow))
    out["ours (hooks)"] = max(out["forward+ours"] - out["forward"], 1e-9)
    out["bf16 error"] = bf16_error(x, post, n_in, n_out)
    rule.detach()
    kernel_rule.detach()
    bf16_rule.detach()
    if memory:
        out["memory"] = memory_case(x, post, fc, snntorch_learner, per_step)
    return out


def _components(x, post, n_in, n_out, dtype, precision="full"):
    """``(pos, neg, Δw)`` of one window, in float64."""
    rule = pair_rule(nn.Linear(n_in, n_out, bias=False).to(dtype), precision=precision)
    rule.observe(x.to(dtype), post.to(dtype))
    rule.flush()
    pos, neg = rule.accumulator.pos.double(), rule.accumulator.neg.double()
    dw = rule.step().double()
    rule.detach()
    return pos, neg, dw


def bf16_error(x, post, n_in, n_out) -> dict[str, float]:
    """Deviations from a float64 run: of each component (pos, neg) elementwise relative to
    its exact value (the documented bound, 2^-7), and of Δw = pos - neg relative to
    max |Δw| (cancellation between the components makes this the larger number), for
    float32 and ``precision="bf16"``."""
    exact = _components(x, post, n_in, n_out, torch.float64)
    out = {}
    for name, dtype, precision in (
        ("float32", torch.float32, "full"),
        ("bf16", torch.float32, "bf16"),
    ):
        approx = _components(x, post, n_in, n_out, dtype, precision)
        comp = 0.0
        for a, e in zip(approx[:2], exact[:2], strict=True):
            nz = e != 0
            comp = max(comp, float(((a - e).abs()[nz] / e.abs()[nz]).max()))
        out[name] = float((approx[2] - exact[2]).abs().max() / exact[2].abs().max())
        out[f"{name} components"] = comp
    return out


def memory_case(x, post, fc, snntorch_learner, per_step) -> dict[str, float]:
    """Peak bytes (profiler allocation timeline) of ours through hooks and on recorded
    spikes (fresh rules: step buffers and scratch space count), of snnTorch's learner and
    of the per-step loop; with the weight's bytes and one chunk of buffered spikes."""
    n_out, n_in = fc.weight.shape
    batch = x.shape[1]

    def fresh():
        fc_m = nn.Linear(n_in, n_out, bias=False)
        with torch.no_grad():
            fc_m.weight.copy_(fc.weight)
        lif = snn.Leaky(beta=0.9)
        return fc_m, lif, pair_rule(fc_m, lif)

    fc_h, lif_h, hooks_rule = fresh()

    def forward_only():
        hooks_rule.eval()
        run_forward(fc_h, lif_h, x)
        hooks_rule.train()

    forward_peak = peak_memory(forward_only)
    hooks_peak = peak_memory(lambda: (run_forward(fc_h, lif_h, x), hooks_rule.step()))
    chunk = hooks_rule.chunk
    hooks_rule.detach()
    _, _, kernel_rule = fresh()
    kernel_peak = peak_memory(on_recorded(kernel_rule, x, post))
    kernel_rule.detach()
    return {
        "weight": n_out * n_in * 4,
        "spike buffers": chunk * batch * (n_in + n_out) * 4,
        "chunk": chunk,
        "forward": forward_peak["peak"],
        "ours (hooks)": hooks_peak["peak"],
        "ours (kernel)": kernel_peak["peak"],
        "ours (kernel) largest": kernel_peak["largest"],
        "snntorch": peak_memory(snntorch_learner)["peak"],
        "per-step": peak_memory(per_step)["peak"],
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(peer: float | None, ours: float) -> str:
    return "n/a" if peer is None else f"{peer / ours:.0f}x"


def tables(rows: list[dict], header: str) -> str:
    """Markdown: times (ms), ratios (> 1: plasticity is faster), bf16 error, memory."""
    times = [
        header,
        "",
        "Times (ms, minimum of interleaved repeats):",
        "",
        "| N_out | B | activity (in / out) | forward | ours, hooks | ours, kernel | ours, kernel bf16 "
        "| snnTorch learner | SpikingJelly | Norse | BindsNET | per-step addmm_ | floor: one add "
        "| floor: one GEMM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = [
        "",
        "Ratios (peer time / our time; hooks = inside the snnTorch loop, kernel = on recorded "
        'spikes, bf16 = the kernel with `precision="bf16"`):',
        "",
        "| N_out | B | activity | snnTorch / ours (hooks, kernel, bf16) | SpikingJelly / kernel "
        "| Norse / kernel | BindsNET / kernel | per-step / ours (hooks, kernel, bf16) "
        "| ours (hooks) / forward | kernel / one GEMM | bf16 error: components, Δw (float32) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    memory = [
        "",
        "Peak memory (MB, allocations while the method runs; W = the weight, S = one chunk of "
        "buffered pre and post spikes, float32):",
        "",
        "| N_out | B | activity | W | S (chunk) | forward | ours, hooks (forward included) "
        "| ours, kernel | hooks / (3W + S) | kernel / (3W + S) | largest tensor, kernel "
        "| snnTorch learner | per-step addmm_ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        act = f"{r['rate']:.0%} / {r['post_rate']:.1%}"
        sj, no, bn = r.get("spikingjelly"), r.get("norse"), r.get("bindsnet")
        kernel, bf16, hooks = r["ours (observe)"], r["ours (observe, bf16)"], r["ours (hooks)"]
        times.append(
            f"| {r['n_out']} | {r['batch']} | {act} | {r['forward']:.1f} | {hooks:.1f} "
            f"| {kernel:.1f} | {bf16:.1f} | {r['snntorch']:.1f} | {_fmt(sj, '.1f')} "
            f"| {_fmt(no, '.1f')} | {_fmt(bn, '.1f')} | {r['per-step']:.1f} "
            f"| {r['floor: one add']:.3f} | {r['floor: one GEMM']:.1f} |"
        )
        err = r["bf16 error"]
        ratios.append(
            f"| {r['n_out']} | {r['batch']} | {r['rate']:.0%} "
            f"| {r['snntorch'] / hooks:.0f}x, {r['snntorch'] / kernel:.0f}x, {r['snntorch'] / bf16:.0f}x "
            f"| {_ratio(sj, kernel)} | {_ratio(no, kernel)} | {_ratio(bn, kernel)} "
            f"| {r['per-step'] / hooks:.1f}x, {r['per-step'] / kernel:.1f}x, {r['per-step'] / bf16:.1f}x "
            f"| {hooks / r['forward']:.2f}x | {kernel / r['floor: one GEMM']:.2f}x "
            f"| {err['bf16 components']:.1e}, {err['bf16']:.1e} ({err['float32']:.0e}) |"
        )
        m = r.get("memory")
        if m:
            mb = 1e6
            target = 3 * m["weight"] + m["spike buffers"]
            memory.append(
                f"| {r['n_out']} | {r['batch']} | {r['rate']:.0%} | {m['weight'] / mb:.2f} "
                f"| {m['spike buffers'] / mb:.1f} ({m['chunk']} steps) | {m['forward'] / mb:.1f} "
                f"| {m['ours (hooks)'] / mb:.1f} | {m['ours (kernel)'] / mb:.1f} "
                f"| {m['ours (hooks)'] / target:.2f} | {m['ours (kernel)'] / target:.2f} "
                f"| {m['ours (kernel) largest'] / mb:.1f} "
                f"| {m['snntorch'] / mb:.1f} | {m['per-step'] / mb:.1f} |"
            )
    parts = times + ratios + (memory if len(memory) > 5 else [])
    return "\n".join(parts) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['n_out']}\nB={r['batch']}\n{r['rate']:.0%}" for r in rows]
    series = {
        "snnTorch learner": [r["snntorch"] / r["ours (observe)"] for r in rows],
        "SpikingJelly": [
            r["spikingjelly"] / r["ours (observe)"] if r.get("spikingjelly") else np.nan
            for r in rows
        ],
        "Norse": [r["norse"] / r["ours (observe)"] if r.get("norse") else np.nan for r in rows],
        "BindsNET": [
            r["bindsnet"] / r["ours (observe)"] if r.get("bindsnet") else np.nan for r in rows
        ],
        "per-step addmm_": [r["per-step"] / r["ours (observe)"] for r in rows],
    }
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.2), constrained_layout=True)
    width = 0.8 / len(series)
    x = np.arange(len(rows))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels)
    ax.set(
        xlabel="784 → N_out, batch, input activity",
        ylabel="speed-up of plasticity's kernel (×, log)",
        title="Dense pair STDP, T = 250: how much faster than each peer",
    )
    ax.legend(frameon=False, ncol=2)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-in", type=int, default=784)
    parser.add_argument("--n-out", type=int, nargs="+", default=[100, 400, 1600])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--rate", type=float, nargs="+", default=[0.05])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak-memory pass"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for stdp_dense.md / .json / .png"
    )
    args = parser.parse_args(argv)
    pinned = pin_allocator()
    header = (
        f"Dense pair STDP, {args.n_in} inputs, T = {args.steps}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
        f"{', glibc mmap threshold pinned' if pinned else ''}"
    )
    print(header, flush=True)
    rows = []
    for rate in args.rate:
        for n_out in args.n_out:
            for batch in args.batch:
                r = bench_case(args.n_in, n_out, batch, args.steps, rate, args.repeats, args.memory)
                ours = r["ours (hooks)"]
                extra = ("post_rate", "bf16 error", "memory")
                row = {
                    "n_in": args.n_in,
                    "n_out": n_out,
                    "batch": batch,
                    "rate": rate,
                    **{k: v * 1e3 for k, v in r.items() if k not in extra},
                    **{k: r[k] for k in extra if k in r},
                    "snntorch_over_ours": r["snntorch"] / ours,
                    "per_step_over_ours": r["per-step"] / ours,
                    "ours_over_forward": ours / r["forward"],
                    "snntorch_over_kernel": r["snntorch"] / r["ours (observe)"],
                    "per_step_over_kernel": r["per-step"] / r["ours (observe)"],
                }
                rows.append(row)
                print(tables([row], "").splitlines()[6], flush=True)
    text = tables(rows, header)
    print(text)
    save_results(args.out, "stdp_dense", text, rows)
    if args.out is not None:
        figure(rows, args.out / "stdp_dense.png")
    return rows


if __name__ == "__main__":
    main()
