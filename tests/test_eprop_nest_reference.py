"""The float64 reference of ``docs/eprop_nest_equations.md`` (``tests/eprop_reference.py``)
against NEST 3.10's ``eprop_*_bsshslm_2020`` numbers (``tests/data/nest_eprop.json``, written
by ``make reference-nest``; NEST is not needed here): the recurrent neurons' membrane
potentials, spikes and pseudo-derivatives, the readout and its error, the learning signal
per step, and the three weight matrices after window 1 and window 2, to 1e-9 relative."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.eprop_nest_case import CASES, load, load_case, window_traces
from tests.eprop_reference import run

RTOL = 1e-9


def close(ours, nest, what):
    ours, nest = np.asarray(ours, float), np.asarray(nest, float)
    keep = ~np.isnan(nest)
    np.testing.assert_allclose(ours[keep], nest[keep], rtol=RTOL, atol=1e-12, err_msg=what)


def test_reference_file():
    data = load()
    assert data["nest_version"] == "3.10.0"
    assert set(CASES) <= set(data["cases"])


@pytest.mark.parametrize("name", CASES)
def test_traces_per_step(name):
    """Window 1 and window 2 step by step: a mismatch here says which term differs."""
    case = load_case(name)
    res = run(case.config, n_seq=2)
    for window in (0, 1):
        ours, nest = res["windows"][window], window_traces(case.config, window)
        close(ours["v"], nest["rec_v"], f"{name} window {window + 1}: V_m")
        close(ours["z"], nest["rec_z"], f"{name} window {window + 1}: spikes")
        close(ours["psi"], nest["rec_psi"], f"{name} window {window + 1}: surrogate gradient")
        close(ours["y"], nest["y"], f"{name} window {window + 1}: readout")
        close(ours["E"], nest["error"], f"{name} window {window + 1}: error signal")
        close(ours["L"], nest["L"], f"{name} window {window + 1}: learning signal")
        if "V_th_adapt" in nest:
            close(ours["v_th_adapt"], nest["V_th_adapt"], f"{name}: adaptive threshold")
            close(ours["a"], nest["adaptation"], f"{name}: adaptation")
    assert case.rec_z.sum() > 5 and (case.rec_psi > 0).sum() > 5  # the neurons spike, ψ is not all zero


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("window", [1, 2])
def test_weights_after_window(name, window):
    """All three matrices after each window, and their changes (which moved)."""
    case = load_case(name)
    res = run(case.config, n_seq=window)
    for key, w0 in (("in", case.W_in), ("rec", case.W_rec), ("out", case.W_out)):
        nest = case.weights_after[window - 1][key].numpy()
        ours = res["weights"][window - 1][key]
        close(ours, nest, f"{name} after window {window}: W_{key}")
        dw_nest = nest - w0.numpy()
        assert np.abs(dw_nest).max() > 1e-3, (name, key)  # the weights moved
        np.testing.assert_allclose(ours - w0.numpy(), dw_nest, rtol=1e-7, atol=1e-12)


def test_late_learning_signal_is_needed():
    """``lif``'s input 1 spikes at sequence index 1: NEST computes window 1's gradient of its
    synapses when that spike arrives, before the learning signal of window 1's last step has
    reached the neurons (note §7.3). Without that the window-2 weights part from NEST's."""
    case = load_case("lif")
    assert any(1 in s for s in case.config["input_spike_steps"])
    full = run(case.config, n_seq=2, late_learning_signal=False)["weights"][1]["in"]
    assert np.abs(full - case.weights_after[1]["in"].numpy()).max() > 1e-5


@pytest.mark.parametrize("change", ["c_reg", "t_ref", "kappa"])
def test_terms_are_exercised(change):
    """Each of regularization, refractoriness and the readout filter κ moves ``lif_reg``'s
    weights: the cases would catch an error in it."""
    case = load_case("lif_reg")
    cfg = copy.deepcopy(case.config)
    if change == "c_reg":
        cfg["params_rec"]["c_reg"] = 0.0
    elif change == "t_ref":
        cfg["params_rec"]["t_ref"] = 1.0
    else:
        cfg["tau_m_readout"] = 2 * cfg["params_out"]["tau_m"]
    moved = run(cfg, n_seq=1)["weights"][0]["in"]
    assert np.abs(moved - case.weights_after[0]["in"].numpy()).max() > 1e-4


def test_tutorial_record():
    """NEST's regression tutorial, 5 seeds: the loss curves, and seed 1's committed inputs are
    the tutorial's own draws (regenerated here from ``np.random.seed(1)`` in its order)."""
    from tests.eprop_nest_case import tutorial

    tut = tutorial()
    n_iter, n_in, n_rec, seq = (tut["config"][k] for k in ("n_iter", "n_in", "n_rec", "steps_sequence"))
    assert tut["seeds"] == [1, 2, 3, 4, 5] and tut["losses"].shape == (5, n_iter)
    assert (tut["losses"][:, -1] < tut["losses"][:, 0]).all()  # every seed learns
    rs = np.random.RandomState(1)
    W_in = np.array(rs.randn(n_in, n_rec).T / np.sqrt(n_in), dtype=np.float32)
    W_rec = np.array(rs.randn(n_rec, n_rec).T / np.sqrt(n_rec), dtype=np.float32)
    np.fill_diagonal(W_rec, 0.0)
    W_out = np.array(rs.randn(n_rec, 1).T / np.sqrt(n_rec), dtype=np.float32)
    B = np.array(rs.randn(n_rec, 1) / np.sqrt(n_rec), dtype=np.float32)
    x = (rs.rand(seq, n_in) < tut["config"]["input_spike_prob"])
    x[0, :] = False
    s1 = tut["seed1"]
    for ours, key in ((W_in, "W_in"), (W_rec, "W_rec"), (W_out, "W_out"), (B, "B")):
        np.testing.assert_array_equal(ours.astype(np.float64), s1[key].numpy(), err_msg=key)
    np.testing.assert_array_equal(x.astype(float), s1["x"].numpy())
    # the readout learned the target: closer after than before
    err = [float(((s1[k] - s1["target"]) ** 2).sum()) for k in ("readout_first", "readout_last")]
    assert err[1] < err[0]
