"""NEST 3.10's e-prop numbers (``tests/data/nest_eprop.json``, written by
``benchmarks/nest_eprop.py`` under ``make reference-nest``) as float64 tensors, for the e-prop
tests to check against without NEST. The equations and the time frames are in
``docs/eprop_nest_equations.md``.

A case is a network of 3 inputs, 4 recurrent neurons and 1 readout run for two windows
(sequences) of ``T`` steps of 1 ms, with the same frozen inputs and target in each:

    >>> from tests.eprop_nest_case import load_case
    >>> case = load_case("lif")
    >>> case.x.shape, case.W_in.shape, case.W_rec.shape, case.W_out.shape, case.B.shape
    (torch.Size([30, 3]), torch.Size([4, 3]), torch.Size([4, 4]), torch.Size([1, 4]), torch.Size([4, 1]))
    >>> sorted(case.weights_after[0])
    ['in', 'out', 'rec']
    >>> case.rec_v.shape, case.rec_z.shape, case.y.shape   # window 1, per position p
    (torch.Size([30, 4]), torch.Size([30, 4]), torch.Size([30, 1]))

Window coordinates (position ``p`` = 0..T-1 of window ``k``): ``x[p, i]`` = 1 where input ``i``
reaches the recurrent neurons at position ``p`` (its sequence index; NEST's drops index 0, so
no spike is there); ``rec_v``/``rec_z``/``rec_psi`` are the recurrent neurons' membrane
potential, spikes and pseudo-derivative at ``p`` of window 1 (NEST step ``t = kT + 2 + p``);
``y`` is the readout's potential at ``p`` (NEST step ``kT + 3 + p``), ``error`` the readout's
error ``y − y*`` at ``p`` (zero before the learning window), ``L`` the learning signal NEST
pairs with the eligibility at ``p``. ``weights_after[0]`` / ``[1]`` are the weights after
window 1 / 2 (``"in"`` (n_rec, n_in), ``"rec"`` (n_rec, n_rec), ``"out"`` (n_out, n_rec)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data" / "nest_eprop.json"
CASES = ("lif", "lif_reg", "alif")


@lru_cache(maxsize=1)
def load() -> dict:
    """The whole JSON (see ``benchmarks/nest_eprop.py`` for its layout)."""
    return json.loads(DATA.read_text())


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


@dataclass
class NestEpropCase:
    """One short configuration and NEST's results for it (float64 tensors)."""

    name: str
    config: dict  #: the JSON entry as written (parameters, inputs, NEST's raw recordings)
    T: int
    learning_window: int
    x: torch.Tensor  #: (T, n_in) input spikes reaching the recurrent neurons, per position
    target: torch.Tensor  #: (T,) y* per position
    W_in: torch.Tensor
    W_rec: torch.Tensor  #: zero diagonal (no autapses)
    W_out: torch.Tensor
    B: torch.Tensor  #: (n_rec, n_out) feedback weights
    weights_after: list[dict[str, torch.Tensor]]  #: after window 1, after window 2
    rec_v: torch.Tensor  #: (T, n_rec) window 1
    rec_z: torch.Tensor
    rec_psi: torch.Tensor
    y: torch.Tensor  #: (T, n_out) readout potential, window 1
    error: torch.Tensor  #: (T, n_out) y − y*, zero before the learning window
    L: torch.Tensor  #: (T, n_rec) learning signal paired with position p
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  #: ALIF: "v_th_adapt", "adaptation"


def window_traces(cfg: dict, window: int = 0) -> dict[str, np.ndarray]:
    """NEST's multimeter and spike recordings moved to window coordinates.

    A multimeter sample at time ``t + 1`` ms is NEST's step ``t``. Recurrent step
    ``t = kT + 2 + p``; readout step ``u = kT + 3 + p``; the readout records at ``u`` the error
    of ``p − 1`` (``readout_signal`` = its potential one step earlier); the recurrent neurons
    record at ``t`` the learning signal of ``p − 3`` (it arrives three steps late and NEST
    writes it back into the history at ``p``)."""
    T = cfg["T"]
    rec, out = cfg["rec"], cfg["out"]
    times_rec = {int(round(t)) - 1: n for n, t in enumerate(rec["times"])}
    times_out = {int(round(t)) - 1: n for n, t in enumerate(out["times"])}
    n_rec = len(rec["V_m"])
    res: dict[str, np.ndarray] = {}
    k0 = window * T
    cols = [times_rec[k0 + 2 + p] for p in range(T)]
    for key, name in (("rec_v", "V_m"), ("rec_psi", "surrogate_gradient")):
        res[key] = np.array(rec[name])[:, cols].T
    for name in ("V_th_adapt", "adaptation"):
        if name in rec:
            res[name] = np.array(rec[name])[:, cols].T
    z = np.zeros((T, n_rec))
    for j, t_ms in cfg["rec_spikes"]:
        t = int(round(t_ms)) - 1  # the spike's stamp is step + 1
        p = t - k0 - 2
        if 0 <= p < T:
            z[p, j] = 1.0
    res["rec_z"] = z
    ls = np.array(rec["learning_signal"])
    res["L"] = np.array([[ls[j, times_rec[t]] if (t := k0 + 5 + p) in times_rec else np.nan for j in range(n_rec)]
                         for p in range(T)])  # NaN past the end of the simulation
    res["y"] = np.array(out["V_m"])[:, [times_out[k0 + 3 + p] for p in range(T)]].T
    es = np.array(out["error_signal"])
    res["error"] = np.array([[es[k, times_out[u]] if (u := k0 + 4 + p) in times_out else np.nan
                              for k in range(len(es))] for p in range(T)])
    return res


def load_case(name: str) -> NestEpropCase:
    """The case ``name`` (one of ``CASES``) as float64 tensors."""
    cfg = load()["cases"][name]
    T = cfg["T"]
    x = np.zeros((T, cfg["n_in"]))
    for i, steps in enumerate(cfg["input_spike_steps"]):
        x[steps, i] = 1.0
    tr = window_traces(cfg, 0)
    after = [{k: _t(v) for k, v in cfg["weights"][key].items()} for key in ("after_1", "after_2")]
    extra = {k: _t(tr[k]) for k in ("V_th_adapt", "adaptation") if k in tr}
    return NestEpropCase(
        name=name, config=cfg, T=T, learning_window=cfg["learning_window"], x=_t(x), target=_t(cfg["target"]),
        W_in=_t(cfg["W_in"]), W_rec=_t(cfg["W_rec"]), W_out=_t(cfg["W_out"]), B=_t(cfg["B"]),
        weights_after=after, rec_v=_t(tr["rec_v"]), rec_z=_t(tr["rec_z"]), rec_psi=_t(tr["rec_psi"]),
        y=_t(tr["y"]), error=_t(tr["error"]), L=_t(tr["L"]), extra=extra,
    )


def tutorial() -> dict:
    """NEST's regression tutorial: ``{"config", "losses" (n_seeds, n_iter), "seeds",
    "wall_simulate_s" (n_seeds,), "seed1": {"target", "readout_first", "readout_last" (1000,),
    "x" (1000, n_in) input spikes per sequence index, "W_in", "W_rec", "W_out", "B" (NEST's
    float32 weights, exactly, as float64)}}``, everything as float64 tensors."""
    tut = load()["tutorial"]
    seeds = sorted(tut["seeds"], key=int)
    s1 = tut["seed1"]
    n_in, seq = tut["config"]["n_in"], tut["config"]["steps_sequence"]
    x = np.zeros((seq, n_in))
    for i, steps in enumerate(s1["input_spike_steps"]):
        x[steps, i] = 1.0
    w = {k: _t(np.asarray(s1[k], dtype=np.float32).astype(np.float64)) for k in ("W_in", "W_rec", "W_out", "B")}
    return {
        "config": tut["config"], "seeds": [int(s) for s in seeds],
        "losses": _t([tut["seeds"][s]["loss"] for s in seeds]),
        "wall_simulate_s": _t([tut["seeds"][s]["wall_simulate_s"] for s in seeds]),
        "seed1": {"target": _t(s1["target"]), "readout_first": _t(s1["readout_first"]),
                  "readout_last": _t(s1["readout_last"]), "x": _t(x), **w},
    }
