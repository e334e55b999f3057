"""NEST 3.10's e-prop (``eprop_*_bsshslm_2020``) as the referee: its numbers written to
``tests/data/nest_eprop.json`` for the e-prop tests and the reproduction to read without NEST.

Two parts:

* ``tutorial``: NEST's own example ``eprop_supervised_regression_sine-waves_bsshslm_2020.py``
  (shipped in the wheel under ``nest/doc/examples/pynest/eprop_plasticity/``), run unchanged
  except ``rng_seed`` (seeds 1-5) and with the plotting cut off (the script is executed from
  its text up to ``do_plotting = True``; its ``nest.Simulate`` call is wrapped in a timer;
  ``IPython.display`` is stubbed, the script only uses it to show a schematic). Each seed runs in a fresh process, one virtual process (the
  script's own setting). Recorded per seed: the loss per iteration (the script's ``loss``,
  ½ Σ_t (y_t − y*_t)² over one 1000-step sequence) and the wall time of its
  ``nest.Simulate`` call (the 200 iterations) and of the whole script.
* ``cases``: short networks for an exact comparison (3 inputs, 4 recurrent neurons, 1
  readout, sequences of ``T`` = 30 steps of 1 ms, fixed input spike times, fixed initial
  weights, gradient descent), run for 3 sequences so that the updates after window 1 and
  window 2 are both applied (a weight changes when the first presynaptic spike after its
  window passes the synapse: a final forced spike of every input and recurrent neuron,
  as in NEST's tutorial, triggers the last one). Cases ``lif`` (``eprop_iaf_bsshslm_2020``),
  ``lif_reg`` (firing-rate regularization, ``t_ref`` = 3 ms, ``regular_spike_arrival``,
  learning window 20 of the 30 steps, ``average_gradient``) and ``alif``
  (``eprop_iaf_adapt_bsshslm_2020``, Adam). The weights after window 1 come from a run of
  one window, those after window 2 and the per-step recordings from a run of two.

Needs ``nest-simulator`` (3.10.0: ``pip install nest-simulator==3.10.0 numpy`` in its own
virtual environment, which ``make reference-nest`` makes)::

    python benchmarks/nest_eprop.py --out tests/data            # both parts (~3-5 min)
    python benchmarks/nest_eprop.py --out tests/data --skip-tutorial   # keep the tutorial part

JSON layout (``nest_eprop.json``; times in ms, resolution 1 ms, so a time is also a step)::

    {"nest_version": "3.10.0", "machine": {"platform", "cpu", "cores", "python"},
     "tutorial": {
        "script": file name, "config": {n_in, n_rec, n_out, n_iter, batch_size, steps_sequence,
            steps_learning_window, resolution_ms, params_nrn_rec, params_nrn_out, optimizer,
            average_gradient, input_spike_prob, kernel},
        "seeds": {"1": {"loss": [n_iter floats], "wall_simulate_s": float,
                        "wall_script_s": float}, ...},
        "seed1": {"target": [1000], "readout_first": [1000], "readout_last": [1000]
                    (readout signal y of iteration 1 and iteration n_iter, as recorded),
                  "input_spike_steps": [n_in lists of step indices 0..999 within a sequence;
                    the generator emits at index + 1 + 1000 k ms, the parrot at + 1 more],
                  "W_in": [n_rec][n_in], "W_rec": [n_rec][n_rec], "W_out": [n_out][n_rec],
                  "B": [n_rec][n_out]   (float32 values as shortest repr: np.float32(v)
                    recovers NEST's weights exactly),
                  "raster_first" / "raster_last": [[recurrent index, time ms], ...] of the
                    first and the last iteration}},
     "cases": {name: {
        "neuron_model", "params_rec", "params_out" (NEST parameters), "T" (steps per window =
        eprop_update_interval), "learning_window" (steps), "optimizer" {...},
        "average_gradient", "seed", "p_spike", "w_scale", "first_index" (the inputs' first
        allowed sequence index: 1 lets NEST's late learning signal show, note §7.3),
        "n_in", "n_rec", "n_out", "resolution_ms", "sim_ms" (of the 2-window run),
        "input_spike_steps": [n_in lists of sequence indices, the same in every window; index
            i reaches the recurrent neurons at window position i],
        "target": [T floats], "W_in" [n_rec][n_in], "W_rec" [n_rec][n_rec] (zero diagonal),
        "W_out" [n_out][n_rec], "B" [n_rec][n_out]  (initial, float64),
        "weights": {"after_1": {"in", "rec", "out"}: GetConnections after a run of 1 window
                                 (+ the forced final spikes that apply its update),
                    "after_2": the same after a run of 2 windows},
        "rec": {"times": [ms], "V_m", "surrogate_gradient", "learning_signal" (alif also
                "V_th_adapt", "adaptation"): [n_rec][n_times]}: multimeter of the recurrent
                neurons every step of the 2-window run (a sample at t ms is NEST's step t-1),
        "out": {"times", "V_m", "readout_signal", "readout_signal_unnorm", "target_signal",
                "error_signal"}: multimeter of the readout,
        "rec_spikes": [[index, time ms], ...], "input_spike_times": [n_in lists of the
            parrots' spike times, ms]}}}

``tests/eprop_nest_case.py`` reads it into float64 tensors in window coordinates.
Documented in ``docs/eprop_nest_equations.md`` (the equations NEST computes, with the
source lines), which ``tests/eprop_reference.py`` implements and
``tests/test_eprop_nest_reference.py`` checks against these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

SCRIPT = "eprop_supervised_regression_sine-waves_bsshslm_2020.py"
SEEDS = (1, 2, 3, 4, 5)


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def f32(a) -> list:
    """float32 values as their shortest repr (np.float32(v) recovers them exactly)."""
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 0:
        return float(str(arr))
    return [f32(x) for x in arr]


# --------------------------------------------------------------------------- tutorial


def tutorial_source(seed: int) -> tuple[str, str]:
    import nest

    path = Path(nest.__file__).parent / "doc" / "examples" / "pynest" / "eprop_plasticity" / SCRIPT
    text = path.read_text()
    old = "rng_seed = 1  # numpy random seed"
    assert text.count(old) == 1, "the tutorial's seed line changed"
    text = text.replace(old, f"rng_seed = {seed}  # numpy random seed")
    call = 'nest.Simulate(duration["sim"])'
    assert text.count(call) == 1, "the tutorial's Simulate call changed"
    text = text.replace(call, '__timed_simulate__(duration["sim"])')  # the timing of the 200 iterations
    cut = text.index("do_plotting = True")
    return str(path), text[:cut]


def run_seed(seed: int) -> dict:
    """One seed of NEST's tutorial in this process; returns what the JSON keeps."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    ipy = types.ModuleType("IPython")
    ipy_display = types.ModuleType("IPython.display")

    def image(*_a, **_k):  # the script only shows a schematic with it
        raise RuntimeError("no IPython here")

    ipy_display.Image = image
    ipy.display = ipy_display
    sys.modules.setdefault("IPython", ipy)
    sys.modules.setdefault("IPython.display", ipy_display)

    import nest

    path, src = tutorial_source(seed)
    timing: dict[str, float] = {}

    def timed_simulate(t):
        t0 = time.perf_counter()
        nest.Simulate(t)
        timing["simulate"] = time.perf_counter() - t0

    ns: dict = {"__name__": "__nest_tutorial__", "__file__": path, "__timed_simulate__": timed_simulate}
    t0 = time.perf_counter()
    exec(compile(src, path, "exec"), ns)  # noqa: S102 - NEST's own example script
    wall_script = time.perf_counter() - t0
    out = {
        "loss": [float(x) for x in ns["loss"]],
        "wall_simulate_s": round(timing["simulate"], 3),
        "wall_script_s": round(wall_script, 3),
    }
    if seed == 1:
        out["seed1"] = seed1_details(ns)
    out["config"] = {
        "n_in": ns["n_in"], "n_rec": ns["n_rec"], "n_out": ns["n_out"], "n_iter": ns["n_iter"],
        "batch_size": ns["batch_size"], "steps_sequence": ns["steps"]["sequence"],
        "steps_learning_window": ns["steps"]["learning_window"],
        "resolution_ms": ns["duration"]["step"],
        "params_nrn_rec": {k: v for k, v in ns["params_nrn_rec"].items()},
        "params_nrn_out": dict(ns["params_nrn_out"]),
        "optimizer": dict(ns["params_common_syn_eprop"]["optimizer"]),
        "average_gradient": ns["params_common_syn_eprop"]["average_gradient"],
        "input_spike_prob": ns["input_spike_prob"],
        "kernel": {k: v for k, v in ns["params_setup"].items() if k != "print_time"},
    }
    return out


def seed1_details(ns: dict) -> dict:
    n_iter, seq = ns["n_iter"], ns["steps"]["sequence"]
    readout = np.asarray(ns["readout_signal"])[0, :, 0, :]
    target = np.asarray(ns["params_gen_rate_target"]["amplitude_values"])[:seq]
    ev = ns["events_sr_rec"]
    first_id = int(ns["nrns_rec"].tolist()[0])
    senders, times = np.asarray(ev["senders"]), np.asarray(ev["times"])
    t_last = (n_iter - 1) * seq

    def raster(lo, hi):
        keep = (times > lo) & (times <= hi + ns["steps"]["total_offset"])
        return [[int(s) - first_id, float(t)] for s, t in zip(senders[keep], times[keep], strict=True)]

    return {
        "target": [float(x) for x in target],
        "readout_first": [float(x) for x in readout[0]],
        "readout_last": [float(x) for x in readout[n_iter - 1]],
        "input_spike_steps": [np.flatnonzero(b).tolist() for b in ns["input_spike_bools"]],
        "W_in": f32(ns["weights_in_rec"]),
        "W_rec": f32(ns["weights_rec_rec"]),
        "W_out": f32(ns["weights_rec_out"]),
        "B": f32(ns["weights_out_rec"]),
        "raster_first": raster(0, seq),
        "raster_last": raster(t_last, t_last + seq),
    }


def tutorial(seeds) -> dict:
    out: dict = {"script": SCRIPT, "seeds": {}}
    for seed in seeds:
        proc = subprocess.run([sys.executable, __file__, "--run-seed", str(seed)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"seed {seed} failed:\n{proc.stderr[-4000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out["config"] = res.pop("config")
        if "seed1" in res:
            out["seed1"] = res.pop("seed1")
        out["seeds"][str(seed)] = res
        print(f"seed {seed}: loss {res['loss'][0]:.1f} -> {res['loss'][-1]:.2f}, simulate {res['wall_simulate_s']:.1f} s",
              file=sys.stderr)
    return out


# --------------------------------------------------------------------------- cases

N_IN, N_REC, N_OUT = 3, 4, 1
OFFSET_GEN, DELAY_IN_REC, DELAY_REC_OUT, DELAY_OUT_NORM = 1, 1, 1, 1  # steps, as NEST's examples


def case_inputs(seed: int, T: int, p_spike: float, w_scale: dict, first_index: int) -> dict:
    """Frozen input spikes (sequence indices ``first_index``..T-1: the tutorial drops index 0;
    a spike at index 1 makes NEST compute the previous window's gradient of that input's
    synapses before the last learning signal arrived), initial weights and the target, drawn
    once (numpy, fixed seed) and written out with NEST's numbers."""
    rng = np.random.default_rng(seed)
    spikes = [sorted(np.flatnonzero(rng.random(T) < p_spike).tolist()) for _ in range(N_IN)]
    spikes = [[int(i) for i in s if i >= first_index] for s in spikes]
    W_in = rng.normal(size=(N_REC, N_IN)) * w_scale["in"]
    W_rec = rng.normal(size=(N_REC, N_REC)) * w_scale["rec"]
    np.fill_diagonal(W_rec, 0.0)
    W_out = rng.normal(size=(N_OUT, N_REC)) * w_scale["out"]
    B = rng.normal(size=(N_REC, N_OUT)) * w_scale["B"]
    phase = rng.uniform(0, 2 * np.pi)
    target = np.sin(2 * np.pi * np.arange(T) / T + phase) + 0.5 * np.sin(6 * np.pi * np.arange(T) / T)
    return {"input_spike_steps": spikes, "W_in": W_in, "W_rec": W_rec, "W_out": W_out, "B": B, "target": target}


def weight_matrix(pre, post) -> np.ndarray:
    conns = nest_module().GetConnections(pre, post)
    ids_pre, ids_post = list(pre.tolist()), list(post.tolist())
    w = np.zeros((len(ids_post), len(ids_pre)))
    for s, r, x in zip(conns.get("source"), conns.get("target"), conns.get("weight"), strict=True):
        w[ids_post.index(int(r)), ids_pre.index(int(s))] = float(x)
    return w


def nest_module():
    import nest

    return nest


def simulate_case(spec: dict, inp: dict, n_seq: int, record: bool) -> dict:
    """One NEST network as the tutorial wires it (generators → parrots → recurrent → readout,
    feedback B, target through a ``step_rate_generator``), ``n_seq`` sequences of ``T`` steps,
    then the tutorial's forced final spike of every input and recurrent neuron that applies
    the last window's update."""
    nest = nest_module()
    T = spec["T"]
    nest.ResetKernel()
    nest.set(resolution=1.0, total_num_virtual_procs=1, print_time=False, eprop_update_interval=float(T),
             eprop_learning_window=float(spec["learning_window"]), eprop_reset_neurons_on_update=True)
    gen_in = nest.Create("spike_generator", N_IN)
    nrns_in = nest.Create("parrot_neuron", N_IN)
    nrns_rec = nest.Create(spec["neuron_model"], N_REC, spec["params_rec"])
    nrns_out = nest.Create("eprop_readout_bsshslm_2020", N_OUT, spec["params_out"])
    gen_target = nest.Create("step_rate_generator", N_OUT)
    static = {"synapse_model": "static_synapse", "delay": 1.0}
    nest.SetDefaults("eprop_synapse_bsshslm_2020", {"optimizer": dict(spec["optimizer"]),
                                                    "average_gradient": spec["average_gradient"]})
    base = {"synapse_model": "eprop_synapse_bsshslm_2020", "delay": 1.0,
            "tau_m_readout": spec["params_out"]["tau_m"]}
    nest.Connect(gen_in, nrns_in, "one_to_one", static)
    nest.Connect(nrns_in, nrns_rec, "all_to_all", {**base, "weight": inp["W_in"]})
    nest.Connect(nrns_rec, nrns_rec, {"rule": "all_to_all", "allow_autapses": False},
                 {**base, "weight": inp["W_rec"]})
    nest.Connect(nrns_rec, nrns_out, "all_to_all", {**base, "weight": inp["W_out"]})
    nest.Connect(nrns_out, nrns_rec, "all_to_all", {"synapse_model": "eprop_learning_signal_connection_bsshslm_2020",
                                                    "delay": 1.0, "weight": inp["B"]})
    nest.Connect(gen_target, nrns_out, "one_to_one", {"synapse_model": "rate_connection_delayed", "delay": 1.0,
                                                      "receptor_type": 2})
    starts = np.arange(n_seq) * T + OFFSET_GEN
    gen_in.set([{"spike_times": np.hstack([np.asarray(s, float) + t0 for t0 in starts])}
                for s in inp["input_spike_steps"]])
    total_offset = OFFSET_GEN + DELAY_IN_REC + DELAY_REC_OUT + DELAY_OUT_NORM
    gen_target.set({"amplitude_times": np.arange(0.0, n_seq * T) + total_offset,
                    "amplitude_values": np.tile(inp["target"], n_seq)})
    delays = DELAY_IN_REC + DELAY_REC_OUT + DELAY_OUT_NORM
    gen_final = nest.Create("spike_generator", 1, {"spike_times": [float(n_seq * T + delays)]})
    nest.Connect(gen_final, nrns_in + nrns_rec, "all_to_all", {"weight": 1000.0})
    # the weights NEST was given (checks the wiring above)
    w0 = {"in": weight_matrix(nrns_in, nrns_rec), "rec": weight_matrix(nrns_rec, nrns_rec),
          "out": weight_matrix(nrns_rec, nrns_out)}
    for k, key in (("in", "W_in"), ("rec", "W_rec"), ("out", "W_out")):
        assert np.array_equal(w0[k], inp[key]), k
    sim_ms = n_seq * T + total_offset + 1
    if record:
        rec_vars = ["V_m", "surrogate_gradient", "learning_signal"] + spec.get("extra_rec", [])
        mm_rec = nest.Create("multimeter", {"interval": 1.0, "record_from": rec_vars})
        mm_out = nest.Create("multimeter", {"interval": 1.0, "record_from": [
            "V_m", "readout_signal", "readout_signal_unnorm", "target_signal", "error_signal"]})
        sr_rec = nest.Create("spike_recorder")
        sr_in = nest.Create("spike_recorder")
        nest.Connect(mm_rec, nrns_rec)
        nest.Connect(mm_out, nrns_out)
        nest.Connect(nrns_rec, sr_rec)
        nest.Connect(nrns_in, sr_in)
    nest.Simulate(float(sim_ms))
    out = {"sim_ms": sim_ms, "final": {"in": weight_matrix(nrns_in, nrns_rec), "rec": weight_matrix(nrns_rec, nrns_rec),
                                       "out": weight_matrix(nrns_rec, nrns_out)}}
    if record:
        out["rec"] = multimeter(mm_rec, nrns_rec, rec_vars)
        out["out"] = multimeter(mm_out, nrns_out, ["V_m", "readout_signal", "readout_signal_unnorm", "target_signal",
                                                   "error_signal"])
        out["rec_spikes"] = spikes(sr_rec, nrns_rec)
        out["input_spike_times"] = [[t for i, t in spikes(sr_in, nrns_in) if i == j] for j in range(N_IN)]
    return out


def multimeter(mm, nodes, names) -> dict:
    ev = mm.get("events")
    ids = list(nodes.tolist())
    times = sorted(set(float(t) for t in ev["times"]))
    col = {t: k for k, t in enumerate(times)}
    res: dict = {"times": times}
    for name in names:
        arr = np.full((len(ids), len(times)), np.nan)
        for s, t, x in zip(ev["senders"], ev["times"], ev[name], strict=True):
            arr[ids.index(int(s)), col[float(t)]] = float(x)
        res[name] = arr.tolist()
    return res


def spikes(sr, nodes) -> list:
    ev = sr.get("events")
    ids = list(nodes.tolist())
    pairs = sorted((float(t), ids.index(int(s))) for s, t in zip(ev["senders"], ev["times"], strict=True))
    return [[i, t] for t, i in pairs]


def run_case(**spec) -> dict:
    inp = case_inputs(spec["seed"], spec["T"], spec["p_spike"], spec["w_scale"], spec["first_index"])
    one = simulate_case(spec, inp, 1, record=False)
    two = simulate_case(spec, inp, 2, record=True)
    out = {k: v for k, v in spec.items()}
    out.update({
        "n_in": N_IN, "n_rec": N_REC, "n_out": N_OUT, "resolution_ms": 1.0,
        "input_spike_steps": inp["input_spike_steps"], "target": inp["target"].tolist(),
        "W_in": inp["W_in"].tolist(), "W_rec": inp["W_rec"].tolist(), "W_out": inp["W_out"].tolist(),
        "B": inp["B"].tolist(),
        "weights": {"after_1": {k: v.tolist() for k, v in one["final"].items()},
                    "after_2": {k: v.tolist() for k, v in two["final"].items()}},
        "sim_ms": two["sim_ms"], "rec": two["rec"], "out": two["out"], "rec_spikes": two["rec_spikes"],
        "input_spike_times": two["input_spike_times"],
    })
    n_sp = len([1 for _, t in two["rec_spikes"] if t <= 2 * spec["T"] + 2])
    print(f"case {spec['neuron_model']}: {n_sp} recurrent spikes in 2 sequences", file=sys.stderr)
    return out


LIF = {"C_m": 1.0, "E_L": 0.0, "I_e": 0.0, "regular_spike_arrival": False, "surrogate_gradient_function":
       "piecewise_linear", "surrogate_gradient_height": 0.3 / 0.03, "surrogate_gradient_width": 0.03,
       "t_ref": 0.0, "tau_m": 20.0, "V_m": 0.0, "V_th": 0.03, "c_reg": 0.0, "f_target": 10.0}
READOUT = {"C_m": 1.0, "E_L": 0.0, "I_e": 0.0, "loss": "mean_squared_error", "regular_spike_arrival": False,
           "tau_m": 25.0, "V_m": 0.0}
W_SCALE = {"in": 1.0, "rec": 0.5, "out": 0.5, "B": 0.5}
CASES: dict[str, dict] = {
    "lif": dict(neuron_model="eprop_iaf_bsshslm_2020", params_rec=LIF, params_out=READOUT, T=30, learning_window=30,
                optimizer={"type": "gradient_descent", "batch_size": 1, "eta": 0.05, "Wmin": -100.0, "Wmax": 100.0},
                average_gradient=False, seed=11, p_spike=0.3, w_scale=W_SCALE, first_index=1),
    "lif_reg": dict(neuron_model="eprop_iaf_bsshslm_2020",
                    params_rec={**LIF, "c_reg": 2.0, "f_target": 10.0, "t_ref": 3.0, "regular_spike_arrival": True},
                    params_out={**READOUT, "regular_spike_arrival": True}, T=30, learning_window=20,
                    optimizer={"type": "gradient_descent", "batch_size": 1, "eta": 0.02, "Wmin": -100.0, "Wmax": 100.0},
                    average_gradient=True, seed=12, p_spike=0.3, first_index=2,
                    w_scale={"in": 0.04, "rec": 0.02, "out": 0.5, "B": 0.5}),
    "alif": dict(neuron_model="eprop_iaf_adapt_bsshslm_2020",
                 params_rec={**LIF, "adapt_beta": 0.02, "adapt_tau": 15.0, "c_reg": 1.0},
                 params_out=READOUT, T=30, learning_window=30,
                 optimizer={"type": "adam", "batch_size": 1, "eta": 0.01, "beta_1": 0.9, "beta_2": 0.999,
                            "epsilon": 1e-8, "Wmin": -100.0, "Wmax": 100.0},
                 average_gradient=False, seed=13, p_spike=0.3, w_scale=W_SCALE, first_index=2, extra_rec=["V_th_adapt", "adaptation"]),
}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--skip-tutorial", action="store_true", help="keep the tutorial part of the existing JSON")
    parser.add_argument("--skip-cases", action="store_true", help="keep the cases part of the existing JSON")
    parser.add_argument("--run-seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_seed is not None:
        print(json.dumps(run_seed(args.run_seed)))
        return
    import nest

    path = args.out / "nest_eprop.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    payload = {"nest_version": nest.__version__, "machine": machine()}
    payload["tutorial"] = old.get("tutorial", {}) if args.skip_tutorial else tutorial(args.seeds)
    payload["cases"] = old.get("cases", {}) if args.skip_cases else {name: run_case(**spec) for name, spec in CASES.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=None, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
