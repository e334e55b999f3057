"""The rule engine's targets, as ratios measured in one run.

At 784 → 400 (5 % input and output spikes, ``stdp_dense.make_case``), windows of
T = 250 steps fed step by step to the rule's hook callbacks (the synapse's input, then
the neuron's output, then ``step()``): the rule alone, without the forward pass, on the
same spikes as the per-step loops:

* **declared vs built-in**: pair STDP declared with ``pl.Rule`` against ``pl.STDP``
  through the hooks, B = 1 and 32;
* **against the per-step loop**: pair, triplet and MSTDPET STDP through the hooks against
  the plain per-step ``addmm_`` loop of the same update (``stdp_rules.per_step_loop``);
* **against the old engine** (``--old PATH``: a checkout of the commit before the
  rewrite): every built-in through the hooks, each version in its own process, the
  processes alternated so that both see the same machine.

Run: ``python benchmarks/engine_targets.py [--old PATH] [--out benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import snntorch as snn
import torch
from stdp_dense import A_MINUS, A_PLUS, TAU, interleaved, make_case, pin_allocator
from stdp_rules import TRIPLET, TRIPLET_TAUS, per_step_loop

import plasticity as pl

HERE = Path(__file__).resolve().parent
N_IN, N_OUT, STEPS, RATE = 784, 400, 250, 0.05
PAIR = dict(a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU, tau_minus=TAU)
BUILT_INS = ["STDP", "TripletSTDP", "MSTDP", "MSTDPET", "DopamineSTDP", "Oja", "BCM",
             "SynapticScaling"]  # fmt: skip
MODULATED = {"MSTDP", "MSTDPET", "DopamineSTDP"}


def built_in(name: str, fc, lif):
    """A built-in with the settings of the other benchmarks (constructors unchanged by the
    rewrite, so both versions build the same rule)."""
    if name == "STDP":
        return pl.STDP(fc, lif, **PAIR)
    if name == "TripletSTDP":
        return pl.TripletSTDP(fc, lif, **{k: v for k, v in TRIPLET.items() if k != "trace"},
                              **TRIPLET_TAUS)  # fmt: skip
    if name == "MSTDP":
        return pl.MSTDP(fc, lif, **PAIR)
    if name == "MSTDPET":
        return pl.MSTDPET(fc, lif, **PAIR, tau_e=25.0)
    if name == "DopamineSTDP":
        return pl.DopamineSTDP(fc, lif)
    if name == "Oja":
        return pl.Oja(fc, lif, eta=1e-3)
    if name == "BCM":
        return pl.BCM(fc, lif, eta=1e-3, tau_theta=100.0)
    return pl.SynapticScaling(fc, lif, target_rate=0.05, tau_rate=100.0, eta=1e-3)


def declared_pair(fc, lif):
    """Pair STDP in the rule language (the README's example)."""
    from plasticity import post, pre

    return pl.Rule(fc, lif, pos=A_PLUS * post.spike * pre.trace(TAU),
                   neg=A_MINUS * post.trace(TAU).before * pre.spike)  # fmt: skip


def hooks_methods(rules: dict, batch: int) -> tuple[dict, tuple]:
    """``{name: one window of the rule through its hooks}`` on one case: the input and
    output spikes fed step by step to the rule's hook callbacks (a reward after each
    step for modulated rules), then ``step()``; the per-step loops run on the same
    spikes."""
    x, post, fc = make_case(N_IN, N_OUT, batch, STEPS, RATE)
    rewards = [float(r) for r in torch.randint(-1, 2, (STEPS,), generator=torch.Generator().manual_seed(1))]
    methods = {}
    for name, make in rules.items():
        layer = torch.nn.Linear(N_IN, N_OUT, bias=False)
        with torch.no_grad():
            layer.weight.copy_(fc.weight)
        lif = snn.Leaky(beta=0.9)
        rule = make(name, layer, lif)
        modulated = any(m in name for m in MODULATED)

        def window(rule=rule, layer=layer, lif=lif, modulated=modulated):
            with torch.no_grad():
                for t in range(STEPS):
                    rule._on_pre(layer, (x[t],), {})
                    rule._on_post(lif, (), post[t])
                    if modulated:
                        rule.reward(rewards[t])
            rule.step()
            rule.reset()
            layer.weight.grad = None

        methods[name] = window
    return methods, (x, post)


def child(batch: int, repeats: int) -> None:
    """One process of the old-vs-new comparison: ms per window of every built-in."""
    pin_allocator()
    torch.set_num_threads(1)
    methods, _ = hooks_methods({n: built_in for n in BUILT_INS}, batch)
    best = interleaved(methods, repeats)
    print(json.dumps({k: v * 1e3 for k, v in best.items()}))


def against_old(old: Path, rounds: int, repeats: int) -> list[dict]:
    rows = []
    for batch in (1, 32):
        times: dict[str, dict[str, list[float]]] = {"new": {}, "old": {}}
        for _ in range(rounds):
            for version, root in (("old", old), ("new", HERE.parent)):
                env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{HERE}")
                out = subprocess.run(
                    [sys.executable, str(HERE / "engine_targets.py"), "--child", str(batch),
                     "--repeats", str(repeats)],
                    env=env, capture_output=True, text=True, check=True, cwd=root,
                )  # fmt: skip
                for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
                    times[version].setdefault(k, []).append(v)
        for name in BUILT_INS:
            new, old_ms = min(times["new"][name]), min(times["old"][name])
            rows.append({"rule": name, "batch": batch, "old_ms": old_ms, "new_ms": new,
                         "new_over_old": new / old_ms})  # fmt: skip
    return rows


def in_process(repeats: int) -> tuple[list[dict], list[dict]]:
    torch.set_num_threads(1)
    declared, loops = [], []
    for batch in (1, 32):
        rules = {"pl.STDP": lambda n, fc, lif: built_in("STDP", fc, lif),
                 "pl.Rule": lambda n, fc, lif: declared_pair(fc, lif),
                 "TripletSTDP": lambda n, fc, lif: built_in("TripletSTDP", fc, lif),
                 "MSTDPET": lambda n, fc, lif: built_in("MSTDPET", fc, lif)}  # fmt: skip
        methods, (x, post) = hooks_methods(rules, batch)
        reward = torch.tensor([1.0] * STEPS)
        for kind in ("pair", "triplet", "mstdpet"):
            methods[f"loop {kind}"] = lambda k=kind, x=x, p=post, r=reward: per_step_loop(k, x, p, r)
        best = interleaved(methods, repeats)
        hooks = {k: best[k] for k in rules}
        declared.append({"batch": batch, "stdp_ms": hooks["pl.STDP"] * 1e3,
                         "rule_ms": hooks["pl.Rule"] * 1e3,
                         "rule_over_stdp": hooks["pl.Rule"] / hooks["pl.STDP"]})  # fmt: skip
        for name, loop in (("pl.STDP", "loop pair"), ("TripletSTDP", "loop triplet"),
                           ("MSTDPET", "loop mstdpet")):  # fmt: skip
            loops.append({"rule": name, "batch": batch, "hooks_ms": hooks[name] * 1e3,
                          "loop_ms": best[loop] * 1e3, "speedup": best[loop] / hooks[name]})  # fmt: skip
    return declared, loops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, default=None, help="checkout of the old engine")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.child, args.repeats)
    pin_allocator()
    declared, loops = in_process(args.repeats)
    lines = ["| B | pl.STDP (ms/window) | pl.Rule (ms/window) | pl.Rule / pl.STDP |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['stdp_ms']:.1f} | {r['rule_ms']:.1f} | {r['rule_over_stdp']:.2f} |"
              for r in declared]  # fmt: skip
    lines += ["", "| rule | B | hooks (ms/window) | per-step loop (ms/window) | loop / hooks |",
              "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['rule']} | {r['batch']} | {r['hooks_ms']:.1f} | {r['loop_ms']:.1f} | "
              f"{r['speedup']:.2f} |" for r in loops]  # fmt: skip
    old = []
    if args.old is not None:
        old = against_old(args.old, args.rounds, args.repeats)
        lines += ["", "| rule | B | old engine (ms/window) | new engine (ms/window) | new / old |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['rule']} | {r['batch']} | {r['old_ms']:.1f} | {r['new_ms']:.1f} | "
                  f"{r['new_over_old']:.2f} |" for r in old]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        from readme import save_results

        save_results(args.out, "engine_targets", text, {"declared": declared, "loops": loops,
                                                         "old": old})  # fmt: skip


if __name__ == "__main__":
    main()
