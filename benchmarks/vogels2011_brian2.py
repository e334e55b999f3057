"""Brian2 reference for ``models/vogels2011.py``: Brian2's own Vogels et al. (2011) example, several seeds.

Brian2's ``examples/frompapers/Vogels_et_al_2011.py`` (F. Zenke, brian-team/brian2 at commit
aec54d2a; the file last changed in 71c84ea8, identical up to whitespace to the one in the
2.9.0 release installed by ``make reference``), run as written, with these changes only:

- ``b2.seed(seed)`` (the only random thing is the connectivity, ``connect(p=0.02)``: the
  membrane potentials start at Brian2's default 0 mV, above threshold, so every neuron
  fires at t = 0 whatever the seed);
- recording added: a SpikeMonitor on the inhibitory population too (the example has one on
  the excitatory population); each of the example's two ``run`` calls is made as 100 ms
  runs in a row (Brian2 continues a run exactly), the I→E weights read between them;
- no plotting; η = 0 for the first second, 10⁻² after, as in the example; each phase timed
  (the loops alone, by Brian2's own clock of a run; the whole; the process CPU; per code
  object with ``profile=True``), after a ``run(0 s)`` that compiles everything;
- ``--ne``, ``--epsilon`` and ``--simtime`` for a reduced-size configuration (``NI = NE/4``
  as in the example, every other number unchanged).

Brian2's runtime device with Cython code generation, the target its default
``codegen.target = 'auto'`` picks where Cython compiles (set explicitly here, so that a
missing compiler fails instead of falling back to numpy; recorded per run); Cython's cache
is put under ``/tmp`` (``--cache-dir``). Recorded per seed: the excitatory and inhibitory
population rates in 100 ms bins, the mean (and median, max) I→E weight every 100 ms
(``--sample-every``), rasters (step, neuron) of the first ``--raster-n`` excitatory
neurons in [0.8, 1.0) s (before plasticity) and in the last 0.2 s (after), for the seeds of
``--raster-seeds`` only (the first, to keep the file small), the settled excitatory rate
(mean over the last 2 s), the timings of each phase per simulated second, the machine's
load average (the machine is shared). Needs ``brian2`` only (``make reference`` makes
``.venv-brian2``; docs/vogels2011_brian2.md describes what the example computes)::

    .venv-brian2/bin/python benchmarks/vogels2011_brian2.py --seeds 0 1 2 3 4 --out benchmarks/results
    .venv-brian2/bin/python benchmarks/vogels2011_brian2.py --ne 800 --epsilon 0.2 \
        --seeds 0 1 2 3 4 --out benchmarks/results

write ``vogels2011_brian2.json`` and ``vogels2011_brian2_ne800_eps0.2.json`` (the reduced
size: 800 + 200 neurons at 20 %, the in-degrees of the full network, 160 E and 40 I).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

BIN_S = 0.1  # rate bins, and the weight sampling unless --sample-every
SETTLED_S = 2.0  # the settled rate: mean over the last SETTLED_S seconds
COMMIT = "aec54d2afae3621f42be2a7030b9bb6f21488571"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_seed(
    seed: int,
    ne: int = 8000,
    simtime_s: float = 10.0,
    raster_n: int = 400,
    eps: float = 0.02,
    sample_s: float = BIN_S,
) -> dict:
    """One run of the example (runtime device, Cython), its recordings as plain lists."""
    import brian2 as b2
    from brian2 import Hz, NeuronGroup, SpikeMonitor, Synapses, ms, mV, nsiemens, pA, pfarad, second

    b2.start_scope()
    b2.seed(seed)
    # ---- the example, verbatim up to the monitors (names kept) ----
    NE = ne  # Number of excitatory cells
    NI = NE / 4  # Number of inhibitory cells
    tau_ampa = 5.0 * ms  # Glutamatergic synaptic time constant
    tau_gaba = 10.0 * ms  # GABAergic synaptic time constant
    epsilon = eps  # Sparseness of synaptic connections (0.02)
    tau_stdp = 20 * ms  # STDP time constant
    simtime = simtime_s * second  # Simulation time
    gl = 10.0 * nsiemens  # Leak conductance
    el = -60 * mV  # Resting potential
    er = -80 * mV  # Inhibitory reversal potential
    vt = -50.0 * mV  # Spiking threshold
    memc = 200.0 * pfarad  # Membrane capacitance
    bgcurrent = 200 * pA  # External current
    eqs_neurons = """
dv/dt=(-gl*(v-el)-(g_ampa*v+g_gaba*(v-er))+bgcurrent)/memc : volt (unless refractory)
dg_ampa/dt = -g_ampa/tau_ampa : siemens
dg_gaba/dt = -g_gaba/tau_gaba : siemens
"""
    neurons = NeuronGroup(
        int(NE + NI), model=eqs_neurons, threshold="v > vt", reset="v=el", refractory=5 * ms,
        method="euler",
    )  # fmt: skip
    Pe = neurons[:NE]
    Pi = neurons[NE:]
    con_e = Synapses(Pe, neurons, on_pre="g_ampa += 0.3*nS")
    con_e.connect(p=epsilon)
    con_ii = Synapses(Pi, Pi, on_pre="g_gaba += 3*nS")
    con_ii.connect(p=epsilon)
    eqs_stdp_inhib = """
w : 1
dApre/dt=-Apre/tau_stdp : 1 (event-driven)
dApost/dt=-Apost/tau_stdp : 1 (event-driven)
"""
    alpha = 3 * Hz * tau_stdp * 2  # Target rate parameter
    gmax = 100  # Maximum inhibitory weight
    con_ie = Synapses(
        Pi, Pe, model=eqs_stdp_inhib,
        on_pre="""Apre += 1.
                         w = clip(w+(Apost-alpha)*eta, 0, gmax)
                         g_gaba += w*nS""",
        on_post="""Apost += 1.
                          w = clip(w+Apre*eta, 0, gmax)
                       """,
    )  # fmt: skip
    con_ie.connect(p=epsilon)
    con_ie.w = 1e-10
    sm = SpikeMonitor(Pe)
    # ---- recording added ----
    sm_i = SpikeMonitor(Pi)
    from brian2.devices.device import get_device

    w_stats: list[list[float]] = []

    def sample_w() -> None:  # reads the I->E weights between two runs; changes nothing
        w = np.asarray(con_ie.w[:])
        w_stats.append([float(w.mean()), float(np.median(w)), float(w.max())])

    def phase(seconds: float) -> dict:
        """The example's ``run(seconds)`` as 100 ms runs (Brian2 continues a run exactly:
        state, spike queues and event-driven traces carry over), the weights read between
        them. Timed: the simulation loops alone (Brian2's own clock of a run, without its
        ``before_run`` preparation), the whole, the process CPU, and per code object."""
        loop_s, prof = 0.0, {}
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(round(seconds / sample_s)):
            net.run(sample_s * second, namespace=namespace, profile=True)
            loop_s += get_device()._last_run_time
            for obj, spent in net.profiling_info:
                prof[obj] = prof.get(obj, 0.0) + float(spent / second)
            sample_w()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "loop_s_per_sim_s": loop_s / seconds, "wall_s_per_sim_s": wall / seconds,
            "cpu_s_per_sim_s": cpu / seconds,
            "per_object_s_per_sim_s": {k: round(v / seconds, 4) for k, v in sorted(prof.items())},
        }  # fmt: skip

    eta = 0  # Learning rate
    net = b2.Network(b2.collect())
    namespace = dict(locals())  # the example's names, as its run() would find them
    t0 = time.perf_counter()
    net.run(0 * second, namespace=namespace)  # compiles (or loads from the cache) every object
    compile_s = time.perf_counter() - t0
    load_before = _load()
    sample_w()  # t = 0
    timing_off = phase(1.0)
    eta = 1e-2  # Learning rate
    namespace["eta"] = eta
    # Brian2 freezes scalar constants such as eta into the generated code: a new eta is
    # new code, compiled (or loaded from the cache) here, not inside the timed runs
    t0 = time.perf_counter()
    net.run(0 * second, namespace=namespace)
    compile_s += time.perf_counter() - t0
    timing_on = phase(simtime_s - 1.0)
    load_after = _load()

    targets = sorted(
        {type(o.codeobj).__name__ for o in net.sorted_objects if getattr(o, "codeobj", None)}
    )
    t_e = np.asarray(sm.t / second)
    i_e = np.asarray(sm.i[:])
    t_i = np.asarray(sm_i.t / second)
    edges = np.arange(0.0, simtime_s + 1e-9, BIN_S)
    n_i = int(NI)
    rate_e = np.histogram(t_e, bins=edges)[0] / (NE * BIN_S)
    rate_i = np.histogram(t_i, bins=edges)[0] / (n_i * BIN_S)
    dt = float(b2.defaultclock.dt / second)

    def raster(start: float, stop: float) -> dict:
        keep = (t_e >= start - 1e-9) & (t_e < stop - 1e-9) & (i_e < raster_n)
        return {
            "t0_s": start, "t1_s": stop,
            "step": np.rint(t_e[keep] / dt).astype(int).tolist(), "neuron": i_e[keep].tolist(),
        }  # fmt: skip

    settled = t_e >= simtime_s - SETTLED_S - 1e-9
    w_final = np.asarray(con_ie.w[:])
    return {
        "seed": seed,
        "n_synapses": {"e": len(con_e), "ii": len(con_ii), "ie": len(con_ie)},
        # Brian2 numbers its objects' names per process: the profile's keys per projection
        "object_names": {"e": con_e.name, "ii": con_ii.name, "ie": con_ie.name},
        "settled_rate_e_hz": float(settled.sum() / (NE * SETTLED_S)),
        "settled_rate_i_hz": float((t_i >= simtime_s - SETTLED_S - 1e-9).sum() / (n_i * SETTLED_S)),
        "rate_e_first_s_hz": float((t_e < 1.0 - 1e-9).sum() / NE),
        "rate_e_hz": np.round(rate_e, 4).tolist(),
        "rate_i_hz": np.round(rate_i, 4).tolist(),
        "w_ie_t_s": [round(k * sample_s, 3) for k in range(len(w_stats))],
        "w_ie_mean": [x[0] for x in w_stats],
        "w_ie_median": [x[1] for x in w_stats],
        "w_ie_max": [x[2] for x in w_stats],
        "w_ie_final_mean": float(w_final.mean()),
        "raster_before": raster(0.8, 1.0),
        "raster_after": raster(simtime_s - 0.2, simtime_s),
        "compile_or_load_s": compile_s,
        "timing_no_plasticity_phase": timing_off,
        "timing_plasticity_phase": timing_on,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "codeobj_classes": targets,
        "device": type(get_device()).__name__,
    }


def summarize(runs: list[dict]) -> dict:
    """Mean and [min, max] over the seeds of the headline numbers."""
    out = {}
    for key in (
        "settled_rate_e_hz", "settled_rate_i_hz", "rate_e_first_s_hz", "w_ie_final_mean",
    ):  # fmt: skip
        v = [r[key] for r in runs]
        out[key] = {"mean": float(np.mean(v)), "min": float(min(v)), "max": float(max(v))}
    for name in ("no_plasticity", "plasticity"):
        for key in ("loop_s_per_sim_s", "wall_s_per_sim_s", "cpu_s_per_sim_s"):
            v = [r[f"timing_{name}_phase"][key] for r in runs]
            out[f"{name}_phase_{key}"] = {
                "mean": float(np.mean(v)),
                "min": float(min(v)),
                "max": float(max(v)),
            }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--ne", type=int, default=8000, help="excitatory neurons (NI = NE/4)")
    parser.add_argument("--simtime", type=float, default=10.0, help="simulated seconds")
    parser.add_argument("--epsilon", type=float, default=0.02, help="connection probability")
    parser.add_argument(
        "--sample-every", type=float, default=BIN_S, help="seconds between weight samples"
    )
    parser.add_argument("--raster-n", type=int, default=400, help="excitatory neurons in rasters")
    parser.add_argument(
        "--raster-seeds", type=int, nargs="*", default=[0], help="the seeds whose rasters are kept"
    )
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--cache-dir", default="/tmp/brian2-cython-cache")
    parser.add_argument(
        "--append", action="store_true", help="keep the other seeds of an existing result file"
    )
    args = parser.parse_args(argv)
    import brian2 as b2

    b2.prefs.codegen.target = "cython"  # what 'auto' picks where Cython compiles; fail otherwise
    b2.prefs.codegen.runtime.cython.cache_dir = args.cache_dir
    b2.prefs.codegen.runtime.cython.multiprocess_safe = False
    name = "vogels2011_brian2"
    name += "" if args.ne == 8000 else f"_ne{args.ne}"
    name += "" if args.epsilon == 0.02 else f"_eps{args.epsilon:g}"
    name += "" if args.simtime == 10.0 else f"_{args.simtime:g}s"
    path = Path(args.out) / f"{name}.json"
    runs = []
    if args.append and path.exists():
        old = json.loads(path.read_text())
        runs = [r for r in old["runs"] if r["seed"] not in args.seeds]
    for seed in args.seeds:
        raster_n = args.raster_n if seed in args.raster_seeds else 0  # keeps the file small
        r = run_seed(seed, args.ne, args.simtime, raster_n, args.epsilon, args.sample_every)
        runs.append(r)
        print(
            f"seed {seed}: settled E rate {r['settled_rate_e_hz']:.2f} Hz "
            f"(first second {r['rate_e_first_s_hz']:.1f} Hz), mean w_IE {r['w_ie_final_mean']:.2f}; "
            f"{r['timing_no_plasticity_phase']['loop_s_per_sim_s']:.1f} s/s (eta=0), "
            f"{r['timing_plasticity_phase']['loop_s_per_sim_s']:.1f} s/s (eta=1e-2), "
            f"load {r['load_avg_before'][0]}..{r['load_avg_after'][0]}",
            flush=True,
        )
        runs.sort(key=lambda r: r["seed"])
        result = {
            "what": "Brian2 examples/frompapers/Vogels_et_al_2011.py, per seed",
            "example_commit": COMMIT,
            "brian2": b2.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": {
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
            },
            "codegen_target": "cython (runtime device)",
            "dt_ms": float(b2.defaultclock.dt / b2.ms),
            "ne": args.ne,
            "ni": args.ne // 4,
            "epsilon": args.epsilon,
            "simtime_s": args.simtime,
            "plasticity_on_s": 1.0,
            "bin_s": BIN_S,
            "w_sample_s": args.sample_every,
            "settled_window_s": [args.simtime - SETTLED_S, args.simtime],
            "raster_neurons": args.raster_n,
            "runs": runs,
            "summary": summarize(runs),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, separators=(",", ":")) + "\n")  # after every seed
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
