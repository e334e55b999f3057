"""Brian2 reference for ``models/song2000.py``: Brian2's own STDP example, several seeds.

Brian2's ``examples/synapses/STDP.py`` ("adapted from Song, Miller and Abbott (2000) and
Song and Abbott (2001)") with its settings: 1000 Poisson inputs at 15 Hz onto one
conductance-based integrate-and-fire neuron, ``dv/dt = (ge (Ee − v) + El − v)/taum``,
``dge/dt = −ge/taue`` (forward Euler, Brian2's default dt = 0.1 ms), ``taum`` = 10 ms,
``El`` = −74 mV, ``Ee`` = 0 mV, threshold −54 mV, reset −60 mV, ``taue`` = 5 ms,
``gmax`` = 0.01, all-to-all pair STDP with ``dApre`` = 0.01·gmax, ``dApost`` = −1.05·dApre,
τ = 20 ms, weights clipped to [0, gmax] at every spike, initial weights uniform in
[0, gmax], 100 s.

The example has one neuron with additive STDP. A second neuron, fed by the same
PoissonGroup (so by the same spikes) and starting from the same weights, learns with soft
bounds instead (``Apost·w/gmax`` on a presynaptic spike, ``Apre·(gmax − w)/gmax`` on a
postsynaptic one): the ``multiplicative`` condition of our model.

Recorded per seed and condition: the final weight histogram (20 bins on [0, gmax]), the
fractions of weights below 0.1·gmax and above 0.9·gmax, the output rate over the last
10 s and per second. Needs ``brian2`` (extra ``reference``; on Python 3.11 Brian2 2.9
needs ``numpy < 2.4``, so a separate environment may be simplest), nothing else of ours::

    python benchmarks/song2000_brian2.py --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results

writes ``song2000_brian2.json``, which ``python -m models.song2000`` plots beside its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

CONDITIONS = ("additive", "multiplicative")

EQUATIONS = """
dv/dt = (ge * (Ee - v) + El - v) / taum : volt
dge/dt = -ge / taue : 1
"""
SYNAPSE = """w : 1
dApre/dt = -Apre / taupre : 1 (event-driven)
dApost/dt = -Apost / taupost : 1 (event-driven)"""
# the example's additive rule, and soft (multiplicative) bounds on the same amplitudes
ON_PRE = {
    "additive": "ge += w\nApre += dApre\nw = clip(w + Apost, 0, gmax)",
    "multiplicative": "ge += w\nApre += dApre\nw = clip(w + Apost * w / gmax, 0, gmax)",
}
ON_POST = {
    "additive": "Apost += dApost\nw = clip(w + Apre, 0, gmax)",
    "multiplicative": "Apost += dApost\nw = clip(w + Apre * (gmax - w) / gmax, 0, gmax)",
}


def run_seed(seed: int, duration_s: float = 100.0, n_inputs: int = 1000) -> dict:
    """One run of both conditions (Brian2's runtime device, Cython where it compiles)."""
    import brian2 as b2

    b2.start_scope()
    b2.seed(seed)
    ms, mV, Hz, second = b2.ms, b2.mV, b2.Hz, b2.second
    gmax = 0.01
    dapre = 0.01 * gmax
    namespace = {
        "taum": 10 * ms, "taupre": 20 * ms, "taupost": 20 * ms, "Ee": 0 * mV,
        "vt": -54 * mV, "vr": -60 * mV, "El": -74 * mV, "taue": 5 * ms, "gmax": gmax,
        "dApre": dapre, "dApost": -dapre * 1.05,
    }  # fmt: skip
    inputs = b2.PoissonGroup(n_inputs, rates=15 * Hz)
    neurons = b2.NeuronGroup(
        2, EQUATIONS, threshold="v > vt", reset="v = vr", method="euler", namespace=namespace
    )
    synapses = {}
    for k, name in enumerate(CONDITIONS):
        s = b2.Synapses(
            inputs, neurons, SYNAPSE, on_pre=ON_PRE[name], on_post=ON_POST[name],
            namespace=namespace, name=f"stdp_{name}",
        )  # fmt: skip
        s.connect(condition=f"j == {k}")  # every input onto neuron k
        synapses[name] = s
    w0 = np.random.default_rng(seed).uniform(0.0, gmax, n_inputs)
    for s in synapses.values():
        s.w = w0
    spikes = b2.SpikeMonitor(neurons)
    net = b2.Network(inputs, neurons, *synapses.values(), spikes)
    start = time.perf_counter()
    net.run(duration_s * second)
    wall = time.perf_counter() - start
    edges = np.linspace(0.0, gmax, 21)
    out: dict = {"seed": seed, "wall_s": wall}
    trains = spikes.spike_trains()
    for k, name in enumerate(CONDITIONS):
        w = np.asarray(synapses[name].w[:])
        t = np.asarray(trains[k] / second)
        per_second = np.histogram(t, bins=np.arange(0.0, duration_s + 1e-9, 1.0))[0]
        out[name] = {
            "hist": np.histogram(w, bins=edges)[0].tolist(),
            "frac_near_zero": float(np.mean(w < 0.1 * gmax)),
            "frac_near_max": float(np.mean(w > 0.9 * gmax)),
            "rate_end_hz": float(np.sum(t >= duration_s - 10.0) / 10.0),
            "rate_per_second_hz": per_second.tolist(),
            "mean_w_over_gmax": float(np.mean(w) / gmax),
        }
    return out


def summarize(runs: list[dict]) -> dict:
    """[min, max] over the seeds of each headline number."""
    return {
        name: {
            key: [min(r[name][key] for r in runs), max(r[name][key] for r in runs)]
            for key in ("frac_near_zero", "frac_near_max", "rate_end_hz")
        }
        for name in CONDITIONS
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--duration", type=float, default=100.0, help="simulated seconds")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--append", action="store_true", help="keep the other seeds of an existing result file"
    )
    args = parser.parse_args(argv)
    import brian2 as b2

    path = Path(args.out) / "song2000_brian2.json"
    runs = []
    if args.append and path.exists():
        old = json.loads(path.read_text())
        if old["duration_s"] != args.duration:
            raise SystemExit(f"{path} holds {old['duration_s']} s runs, not {args.duration} s")
        runs = [r for r in old["runs"] if r["seed"] not in args.seeds]
    for seed in args.seeds:
        r = run_seed(seed, args.duration)
        runs.append(r)
        print(
            f"seed {seed}: "
            + "; ".join(
                f"{name} {100 * r[name]['frac_near_zero']:.1f} % < 0.1 gmax, "
                f"{100 * r[name]['frac_near_max']:.1f} % > 0.9 gmax, "
                f"{r[name]['rate_end_hz']:.1f} Hz (last 10 s)"
                for name in CONDITIONS
            )
            + f" [{r['wall_s']:.0f} s]"
        )
    runs.sort(key=lambda r: r["seed"])
    result = {
        "what": "Brian2 examples/synapses/STDP.py settings (+ soft-bound neuron), per seed",
        "brian2": b2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "dt_ms": float(b2.defaultclock.dt / b2.ms),
        "duration_s": args.duration,
        "g_max": 0.01,
        "edges_over_gmax": np.linspace(0.0, 1.0, 21).tolist(),
        "runs": runs,
        "range": summarize(runs),  # [min, max] over seeds
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
