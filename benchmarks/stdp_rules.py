"""Pair, triplet and reward-modulated (MSTDPET) STDP: ours against per-step loops and peers.

In one process, on the same spikes (784 inputs → 100, 400, 1600 by default, 5 % active
unless ``--rate`` says otherwise, T = 250; the output layer
calibrated to fire at about the same rate, as in ``stdp_dense.py``), for each rule:

* ``forward``: the snnTorch forward pass alone, for scale;
* ``ours (hooks)``: the rule attached inside that loop (MSTDPET: ``rule.reward(r)`` after
  every step) plus ``step()``, minus the forward pass;
* ``ours (kernel)``: the rule on the recorded sequence (``observe`` + ``step``);
* ``per-step``: plain torch, per step, the rule's textbook update: traces, then in-place
  ``addmm_`` into the weight (pair: 2; triplet: 2 with the slow detectors weighting the
  spikes; MSTDPET: 2 into the step's ζ, then the eligibility ``z`` and ``w += γ r z``);
* peers where they implement the rule: snnTorch's learner (pair), SpikingJelly's
  ``mstdpet_linear_step`` + ``mstdpet_reward_step`` (per sample: it takes unbatched
  spikes) and BindsNET's ``MSTDPET`` (its eligibility is ``[B, N_in, N_out]``). No peer
  here implements triplet STDP;
* peak memory of ``ours (kernel)`` and of the per-step loop.

    python benchmarks/stdp_rules.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import math
import platform
from pathlib import Path

import snntorch as snn
import torch
from memory import peak_memory
from peers import bindsnet, bindsnet_connection
from readme import save_results
from snntorch.functional.stdp_learner import stdp_linear_single_step
from stdp_dense import (
    A_MINUS,
    A_PLUS,
    TAU,
    interleaved,
    make_case,
    on_recorded,
    pair_rule,
    per_step_pair,
    pin_allocator,
    run_forward,
)
from torch import nn

import plasticity as pl

TRIPLET = pl.rules.stdp.TRIPLET_PRESETS["visual_cortex_all_to_all_full"]
TRIPLET_TAUS = dict(tau_plus=16.8, tau_minus=33.7)
TAU_E, GAMMA = 25.0, 1.0


def make_rule(kind: str, fc: nn.Module, lif: nn.Module) -> pl.PlasticityRule:
    if kind == "pair":
        return pair_rule(fc, lif)
    if kind == "triplet":
        params = {k: v for k, v in TRIPLET.items() if k != "trace"}
        return pl.TripletSTDP(fc, lif, **params, **TRIPLET_TAUS)
    return pl.MSTDPET(
        fc, lif, a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU, tau_e=TAU_E
    )


def per_step_loop(kind, x, post, reward):
    """The rule's per-step update in plain torch (batch mean), into a fresh weight."""
    if kind == "pair":
        return per_step_pair(x, post)
    steps, batch, n_in = x.shape
    n_out = post.shape[2]
    w = torch.zeros(n_out, n_in)
    d = math.exp(-1.0 / TAU)
    xt, yt = torch.zeros(batch, n_in), torch.zeros(batch, n_out)
    if kind == "triplet":
        dp, dm = math.exp(-1 / TRIPLET_TAUS["tau_plus"]), math.exp(-1 / TRIPLET_TAUS["tau_minus"])
        dx, dy = math.exp(-1 / TRIPLET["tau_x"]), math.exp(-1 / TRIPLET["tau_y"])
        r2, o2 = torch.zeros(batch, n_in), torch.zeros(batch, n_out)
        for t in range(steps):
            xt.mul_(dp).add_(x[t])  # r1
            r2.mul_(dx)
            o2.mul_(dy)
            yt.mul_(dm)  # o1 before this step's post spikes
            post_w = post[t] * (TRIPLET["a2_plus"] + TRIPLET["a3_plus"] * o2)
            pre_w = x[t] * (TRIPLET["a2_minus"] + TRIPLET["a3_minus"] * r2)
            w.addmm_(post_w.t(), xt, alpha=1.0 / batch)
            w.addmm_(yt.t(), pre_w, alpha=-1.0 / batch)
            yt.add_(post[t])
            r2.add_(x[t])
            o2.add_(post[t])
    else:
        de = math.exp(-1.0 / TAU_E)
        zeta, z = torch.zeros(n_out, n_in), torch.zeros(n_out, n_in)
        for t in range(steps):
            xt.mul_(d).add_(x[t])
            yt.mul_(d)
            torch.mm(post[t].t(), xt, out=zeta).mul_(A_PLUS / batch)
            zeta.addmm_(yt.t(), x[t], alpha=-A_MINUS / batch)
            yt.add_(post[t])
            z.mul_(de).add_(zeta, alpha=1.0 / TAU_E)
            w.add_(z, alpha=GAMMA * float(reward[t]))
    return w


def bench(kind: str, batch: int, repeats: int, n_in=784, n_out=400, steps=250, rate=0.05):
    x, post, fc = make_case(n_in, n_out, batch, steps, rate)
    g = torch.Generator().manual_seed(1)
    reward = torch.randint(-1, 2, (steps,), generator=g).float()
    rewards = [float(r) for r in reward]
    lif = snn.Leaky(beta=0.9)
    rule = make_rule(kind, fc, lif)
    modulated = kind == "mstdpet"

    def forward():
        rule.eval()
        run_forward(fc, lif, x)
        rule.train()

    def window(rule, fc, lif):
        """One window through the hooks: the forward loop (a reward after each step for
        modulated rules), then ``step()``."""
        with torch.no_grad():
            mem = lif.init_leaky()
            for t in range(steps):
                spk, mem = lif(fc(x[t]), mem)
                if modulated:
                    rule.reward(rewards[t])
        rule.step()

    def with_rule():
        window(rule, fc, lif)
        rule.reset()
        fc.weight.grad = None

    rewarded = {"reward": reward} if modulated else {}
    kernel_rule = make_rule(kind, nn.Linear(n_in, n_out, bias=False), snn.Leaky(beta=0.9))

    methods = {
        "forward": forward,
        "forward+ours": with_rule,
        "ours (kernel)": on_recorded(kernel_rule, x, post, **rewarded),
        "per-step": lambda: per_step_loop(kind, x, post, reward),
    }
    if kind == "pair":

        def snntorch_learner():
            fc3 = nn.Linear(n_in, n_out, bias=False)
            tp = tq = None
            for t in range(steps):
                tp, tq, dw = stdp_linear_single_step(fc3, x[t], post[t], tp, tq, TAU, TAU)
                fc3.weight.data.add_(dw, alpha=A_PLUS)

        methods["snntorch"] = snntorch_learner
    if modulated:
        try:
            from spikingjelly.activation_based.functional.learning import (
                mstdpet_linear_step,
                mstdpet_reward_step,
            )

            def spikingjelly_learner():
                w = torch.zeros(n_out, n_in)
                traces = [(torch.zeros(n_in), torch.zeros(n_out)) for _ in range(batch)]
                trace_e = torch.zeros(n_out, n_in)
                for t in range(steps):
                    eligibility = torch.zeros(n_out, n_in)
                    for b in range(batch):  # unbatched API: one call per sample
                        e, traces[b] = mstdpet_linear_step(
                            x[t, b], post[t, b], traces[b], w, tau_pre=TAU, tau_post=TAU
                        )
                        eligibility.add_(e, alpha=1.0 / batch)
                    dw, trace_e = mstdpet_reward_step(
                        reward=rewards[t], eligibility=eligibility, trace_e=trace_e, tau_trace=TAU_E
                    )
                    w.add_(dw, alpha=GAMMA)

            methods["spikingjelly"] = spikingjelly_learner
        except ImportError:
            pass
        bn = bindsnet()
        if bn is not None:
            x_bool, post_bool = x.bool(), post.bool()

            def bindsnet_learner():
                conn = bindsnet_connection(
                    bn, n_in, n_out, batch, bn.MSTDPET, nu=GAMMA, tc_plus=TAU, tc_minus=TAU,
                    tc_e_trace=TAU_E, reduction=torch.mean,
                )  # fmt: skip
                for t in range(steps):
                    conn.source.s, conn.target.s = x_bool[t], post_bool[t]
                    conn.update(learning=True, reward=rewards[t], a_plus=A_PLUS, a_minus=-A_MINUS)

            methods["bindsnet"] = bindsnet_learner
    slow = {"snntorch", "spikingjelly", "bindsnet"} if batch > 1 else set()
    times = interleaved(methods, repeats, once=slow)
    times["ours (hooks)"] = max(times["forward+ours"] - times["forward"], 1e-9)
    rule.detach()
    kernel_rule.detach()
    fresh = make_rule(kind, nn.Linear(n_in, n_out, bias=False), snn.Leaky(beta=0.9))
    out = {k: v * 1e3 for k, v in times.items()}
    fc_h, lif_h = nn.Linear(n_in, n_out, bias=False), snn.Leaky(beta=0.9)
    with torch.no_grad():
        fc_h.weight.copy_(fc.weight)
    hooked = make_rule(kind, fc_h, lif_h)  # fresh: its step buffers count in the window
    out["memory"] = {
        "weight": n_out * n_in * 4,
        "ours (hooks)": peak_memory(lambda: window(hooked, fc_h, lif_h))["peak"],
        "spike buffers": hooked.chunk * batch * (n_in + n_out) * 4,
        "ours (kernel)": peak_memory(on_recorded(fresh, x, post, **rewarded))["peak"],
        "per-step": peak_memory(lambda: per_step_loop(kind, x, post, reward))["peak"],
    }
    fresh.detach()
    hooked.detach()
    return out


def _mb(m: dict, key: str) -> str:
    return f"{m[key] / 1e6:.1f}" if key in m else "n/a"


def _budget(m: dict) -> str:
    """Hooks peak over 3 W + S (the weight, one chunk of buffered spikes)."""
    if "ours (hooks)" not in m:
        return "n/a"
    return f"{m['ours (hooks)'] / (3 * m['weight'] + m['spike buffers']):.2f}"


def table(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| rule | N_out | B | activity | forward | ours, hooks | ours, kernel | per-step | snnTorch "
        "| SpikingJelly | BindsNET | per-step / ours (hooks, kernel) | best peer / kernel "
        "| ours (hooks) / forward | peak MB: hooks (forward included), kernel, per-step "
        "| hooks / (3W + S) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kernel, hooks = r["ours (kernel)"], r["ours (hooks)"]
        peers = {k: r[k] for k in ("snntorch", "spikingjelly", "bindsnet") if k in r}
        best = f"{min(peers.values()) / kernel:.0f}x" if peers else "no peer"

        def cell(name, r=r):
            return f"{r[name]:.1f}" if name in r else "n/a"

        m = r["memory"]
        lines.append(
            f"| {r['rule']} | {r['n_out']} | {r['batch']} | {r['rate']:.0%} | {r['forward']:.1f} "
            f"| {hooks:.1f} | {kernel:.1f} "
            f"| {r['per-step']:.1f} | {cell('snntorch')} | {cell('spikingjelly')} "
            f"| {cell('bindsnet')} | {r['per-step'] / hooks:.1f}x, {r['per-step'] / kernel:.1f}x "
            f"| {best} | {hooks / r['forward']:.2f}x | {_mb(m, 'ours (hooks)')}, "
            f"{m['ours (kernel)'] / 1e6:.1f}, {m['per-step'] / 1e6:.1f} "
            f"| {_budget(m)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", default=["pair", "triplet", "mstdpet"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-in", type=int, default=784)
    parser.add_argument("--n-out", type=int, nargs="+", default=[100, 400, 1600])
    parser.add_argument("--rate", type=float, nargs="+", default=[0.05])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    pinned = pin_allocator()
    header = (
        f"Pair, triplet and MSTDPET STDP, {args.n_in} inputs, T = {args.steps} (times in ms); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}"
        f"{', glibc mmap threshold pinned' if pinned else ''}"
    )
    print(header, flush=True)
    rows = []
    for rate in args.rate:
        for kind in args.rules:
            for n_out in args.n_out:
                for batch in args.batch:
                    result = bench(kind, batch, args.repeats, args.n_in, n_out, args.steps, rate)
                    rows.append(
                        {"rule": kind, "n_out": n_out, "batch": batch, "rate": rate, **result}
                    )
                    print(table(rows[-1:], "").splitlines()[-1], flush=True)
    text = table(rows, header)
    print(text)
    save_results(args.out, "stdp_rules", text, rows)
    return rows


if __name__ == "__main__":
    main()
