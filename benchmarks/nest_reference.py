"""NEST 3.10 as the referee: its synapse models driven by fixed spike trains, the weights
recorded, for ``tests/test_nest_reference.py`` to check our rules against without NEST.

Each case is one NEST network, built afresh (``ResetKernel``) at resolution 0.1 ms:
``spike_generator`` s with spike times on the grid drive ``parrot_neuron`` s (the pre
side, and the post side where the post neuron only has to spike); every pre parrot
connects to every post neuron through the synapse model under test (to a parrot on
``receptor_type`` 1, which does not make it fire). A ``weight_recorder`` records the
weight each synapse delivers at every presynaptic spike, a ``spike_recorder`` the times
the parrots actually fire (the times the synapses see), and ``GetConnections`` the final
weights. The spike trains are drawn once (numpy, fixed seed) and written out with NEST's
numbers, so the comparison needs neither NEST nor the random draw.

Cases: ``stdp_synapse`` (additive with clipping at ``Wmax``; multiplicative, μ = 1; power
law, μ = 0.4), ``stdp_nn_symm_synapse``, ``stdp_triplet_synapse``,
``vogels_sprekeler_synapse``, ``stdp_dopamine_synapse`` (dopamine spikes through a
``volume_transmitter``), ``tsodyks2_synapse`` (depressing and facilitating; the recorded
"weight" is the delivered ``weight·u·x``) and ``clopath_synapse`` onto an
``aeif_psc_delta_clopath`` neuron driven by a current (its membrane potential recorded
every step by a ``multimeter``, for our rule to read).

Needs ``nest-simulator`` (3.10.0: ``pip install nest-simulator==3.10.0 numpy`` in its own
virtual environment, which ``make reference-nest`` makes)::

    python benchmarks/nest_reference.py --out tests/data

writes ``nest_reference.json``. Documented in ``docs/matching_nest.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

H = 0.1  # ms, NEST's resolution here and our dt
T_SIM = 1000.0  # ms
N_PRE, N_POST = 4, 2


def grid(times) -> list[float]:
    """Times (ms) rounded to the 0.1 ms grid, sorted, unique, as exact decimals."""
    steps = sorted({int(round(t / H)) for t in times})
    return [round(s * H, 1) for s in steps]


def poisson(rng, rate_hz: float, start: float, stop: float) -> list[float]:
    n = rng.poisson(rate_hz * (stop - start) / 1000.0)
    return grid(rng.uniform(start, stop, n))


def draw_trains(seed: int, delay: float, apart: bool = False) -> tuple[list[list[float]], list[list[float]]]:
    """Pre trains (first spike at 2 ms, before any post spike reaches a synapse: NEST's
    ``stdp_nn_symm_synapse`` pairs a post spike before any pre spike with a pre spike at
    t = 0) and post trains, with a few post spikes placed so that they reach the synapse
    in the very step of a pre spike (``t_post + delay = t_pre``: NEST counts such a pair
    neither way) and a few 1 ms after a pre spike (causal pairs). ``apart``: no post spike
    reaches a synapse in the step of a pre spike (NEST then facilitates before it
    depresses; a step of ours applies both to the same weight)."""
    rng = np.random.default_rng(seed)
    pre = [[2.0] + poisson(rng, 25.0, 10.0, T_SIM - 60.0) for _ in range(N_PRE)]
    post = []
    for i in range(N_POST):
        times = poisson(rng, 20.0, 20.0, T_SIM - 60.0)
        times += [t - delay for t in pre[i][3:6]]  # coincident at the synapse
        times += [t + 1.0 for t in pre[i + 1][6:9]]  # causal
        if apart:
            at_pre = {round(t / H) for p in pre for t in p}
            times = [t for t in times if round((t + delay) / H) not in at_pre]
        post.append(grid(t for t in times if t > 15.0))
    return pre, post


def recorded_times(recorder, nodes) -> list[list[float]]:
    ev = recorder.get("events")
    ids = list(nodes.tolist())
    out: list[list[float]] = [[] for _ in ids]
    for sender, t in zip(ev["senders"], ev["times"], strict=True):
        if int(sender) in ids:
            out[ids.index(int(sender))].append(round(float(t), 1))
    return [sorted(x) for x in out]


def run_case(nest, case: dict, pre_times, post_times, dopa_times=None) -> dict:
    """Builds and runs one case; returns what it recorded."""
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": H, "local_num_threads": 1})
    delay = case["delay"]
    # a generator's spike at t reaches its parrot, which fires, at t + H
    pre_gen = nest.Create("spike_generator", N_PRE,
                          params=[{"spike_times": [round(t - H, 1) for t in p]} for p in pre_times])  # fmt: skip
    pre = nest.Create("parrot_neuron", N_PRE)
    nest.Connect(pre_gen, pre, "one_to_one", {"delay": H})
    rec = nest.Create("spike_recorder")
    nest.Connect(pre, rec)
    mm = None
    if case.get("post_model") == "aeif_psc_delta_clopath":
        post = nest.Create("aeif_psc_delta_clopath", N_POST, params=case["post_params"])
        post.I_e = case["I_e"]  # one value per neuron
        mm = nest.Create("multimeter", params={"interval": H,
                                               "record_from": ["V_m"]})  # fmt: skip
        nest.Connect(mm, post)
        receptor = 0
    else:
        post_gen = nest.Create("spike_generator", N_POST,
                               params=[{"spike_times": [round(t - H, 1) for t in p]} for p in post_times])  # fmt: skip
        post = nest.Create("parrot_neuron", N_POST, params=case.get("post_params", {}))
        nest.Connect(post_gen, post, "one_to_one", {"delay": H})
        receptor = 1
    nest.Connect(post, rec)
    wr = nest.Create("weight_recorder")
    model = case["synapse_model"]
    defaults = {**case["params"], "weight_recorder": wr}
    if dopa_times is not None:
        dopa_gen = nest.Create("spike_generator", params={"spike_times": [round(t - H, 1) for t in dopa_times]})
        dopa = nest.Create("parrot_neuron")
        nest.Connect(dopa_gen, dopa, syn_spec={"delay": H})
        vt = nest.Create("volume_transmitter")
        nest.Connect(dopa, vt, syn_spec={"delay": case["dopa_delay"]})
        nest.Connect(dopa, rec)
        defaults["volume_transmitter"] = vt
    nest.CopyModel(model, "tested", defaults)
    nest.Connect(pre, post, "all_to_all",
                 {"synapse_model": "tested", "weight": case["w0"], "delay": delay, "receptor_type": receptor})  # fmt: skip
    nest.Simulate(T_SIM)
    ids_pre, ids_post = list(pre.tolist()), list(post.tolist())
    ev = wr.get("events")
    events = [
        [ids_pre.index(int(s)), ids_post.index(int(r)), round(float(t), 1), float(w)]
        for s, r, t, w in zip(ev["senders"], ev["targets"], ev["times"], ev["weights"], strict=True)
    ]
    final = np.zeros((N_POST, N_PRE))
    conns = nest.GetConnections(pre, post)
    for s, r, w in zip(conns.get("source"), conns.get("target"), conns.get("weight"), strict=True):
        final[ids_post.index(int(r)), ids_pre.index(int(s))] = float(w)
    out = {
        "pre_times": recorded_times(rec, pre),
        "post_times": recorded_times(rec, post),
        "weight_events": events,
        "final_weights": final.tolist(),
    }
    if dopa_times is not None:
        out["dopa_times"] = recorded_times(rec, dopa)[0]
    if mm is not None:
        mev = mm.get("events")
        v = np.full((N_POST, int(round(T_SIM / H))), np.nan)
        for s, t, x in zip(mev["senders"], mev["times"], mev["V_m"], strict=True):
            v[ids_post.index(int(s)), int(round(t / H)) - 1] = x  # the value after step t
        out["V_m"] = np.round(v, 6).tolist()
    return out


CASES: dict[str, dict] = {
    "stdp_additive": dict(synapse_model="stdp_synapse", delay=1.5, w0=0.55,
                          params=dict(tau_plus=20.0, **{"lambda": 0.02}, alpha=0.9, mu_plus=0.0,
                                      mu_minus=0.0, Wmax=0.6),
                          post_params=dict(tau_minus=30.0)),
    "stdp_multiplicative": dict(synapse_model="stdp_synapse", delay=1.5, w0=0.5,
                                params=dict(tau_plus=20.0, **{"lambda": 0.05}, alpha=1.05,
                                            mu_plus=1.0, mu_minus=1.0, Wmax=1.0),
                                post_params=dict(tau_minus=30.0)),
    "stdp_multiplicative_apart": dict(synapse_model="stdp_synapse", delay=1.5, w0=0.5, apart=True,
                                      params=dict(tau_plus=20.0, **{"lambda": 0.05}, alpha=1.05,
                                                  mu_plus=1.0, mu_minus=1.0, Wmax=1.0),
                                      post_params=dict(tau_minus=30.0)),
    "stdp_power_apart": dict(synapse_model="stdp_synapse", delay=1.0, w0=1.0, apart=True,
                             params=dict(tau_plus=15.0, **{"lambda": 0.03}, alpha=1.2, mu_plus=0.4,
                                         mu_minus=0.4, Wmax=2.0),
                             post_params=dict(tau_minus=25.0)),
    "stdp_power": dict(synapse_model="stdp_synapse", delay=1.0, w0=1.0,
                       params=dict(tau_plus=15.0, **{"lambda": 0.03}, alpha=1.2, mu_plus=0.4,
                                   mu_minus=0.4, Wmax=2.0),
                       post_params=dict(tau_minus=25.0)),
    "stdp_nn_symm": dict(synapse_model="stdp_nn_symm_synapse", delay=1.5, w0=5.0,
                         params=dict(tau_plus=20.0, **{"lambda": 0.001}, alpha=1.1, mu_plus=0.0,
                                     mu_minus=0.0, Wmax=100.0),
                         post_params=dict(tau_minus=30.0)),
    "stdp_triplet": dict(synapse_model="stdp_triplet_synapse", delay=1.5, w0=1.0,
                         params=dict(tau_plus=16.8, tau_plus_triplet=101.0, Aplus=5e-3,
                                     Aplus_triplet=6.2e-3, Aminus=7e-3, Aminus_triplet=2.3e-4,
                                     Wmax=100.0),
                         post_params=dict(tau_minus=33.7, tau_minus_triplet=125.0)),
    "vogels_sprekeler": dict(synapse_model="vogels_sprekeler_synapse", delay=1.5, w0=0.5,
                             params=dict(tau=20.0, eta=0.01, alpha=0.12, Wmax=10.0),
                             post_params=dict(tau_minus=20.0)),
    "stdp_dopamine": dict(synapse_model="stdp_dopamine_synapse", delay=1.5, w0=0.0,
                          dopa_delay=1.0,
                          params=dict(tau_plus=20.0, A_plus=1.0, A_minus=1.5, tau_c=1000.0,
                                      tau_n=200.0, b=0.0, Wmin=-1e6, Wmax=1e6),
                          post_params=dict(tau_minus=20.0)),
    "tsodyks2_depressing": dict(synapse_model="tsodyks2_synapse", delay=1.0, w0=1.0,
                                params=dict(U=0.5, u=0.5, x=1.0, tau_rec=800.0, tau_fac=0.0)),
    "tsodyks2_facilitating": dict(synapse_model="tsodyks2_synapse", delay=1.0, w0=1.0,
                                  params=dict(U=0.1, u=0.1, x=1.0, tau_rec=100.0, tau_fac=1000.0)),
    "clopath": dict(synapse_model="clopath_synapse", post_model="aeif_psc_delta_clopath",
                    delay=1.0, w0=0.5, I_e=[700.0, 800.0],
                    params=dict(tau_x=15.0, Wmin=0.0, Wmax=100.0),
                    post_params=dict(A_LTD=14e-5, A_LTP=8e-5, theta_minus=-70.6, theta_plus=-45.3,
                                     tau_u_bar_minus=10.0, tau_u_bar_plus=7.0, delay_u_bars=4.0,
                                     A_LTD_const=True)),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="tests/data")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    import nest

    nest.verbosity = nest.VerbosityLevel.ERROR
    results = {}
    for name, case in CASES.items():
        pre, post = draw_trains(args.seed + len(results), case["delay"], case.get("apart", False))
        dopa = None
        if case["synapse_model"] == "clopath_synapse":  # NEST's delayed filters start at 0 mV
            pre = [[t for t in p if t >= 10.0] for p in pre]
        if case["synapse_model"] == "stdp_dopamine_synapse":
            rng = np.random.default_rng(args.seed + 100)
            dopa = poisson(rng, 5.0, 50.0, T_SIM - 60.0)
        out = run_case(nest, case, pre, post, dopa)
        results[name] = {**case, **out}
        print(f"{name}: {len(out['weight_events'])} weight events, final {out['final_weights']}")
    payload = {
        "nest_version": nest.__version__,
        "resolution_ms": H,
        "t_sim_ms": T_SIM,
        "python": platform.python_version(),
        "cases": results,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "nest_reference.json"
    path.write_text(json.dumps(payload, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
