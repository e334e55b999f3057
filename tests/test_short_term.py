"""Short-term plasticity (Tsodyks–Markram) against the papers' recurrence over interspike intervals."""

from __future__ import annotations

import copy
import io
import math

import pytest
import snntorch as snn
import torch
from hypothesis import given
from hypothesis import strategies as st

import plasticity as pl

# ----------------------------------------------------------------------------- reference


def markram_train(train, *, U, tau_rec, tau_fac, dt):
    """What one presynaptic neuron transmits at each step, and its (u, x) after the last
    step, from Markram, Wang & Tsodyks (1998): the n-th spike releases u_n R_n, with
    u_1 = U, R_1 = 1, u_{n+1} = U + (1 - U) u_n e^{-Δ/τ_fac} and
    R_{n+1} = 1 - (1 - R_n (1 - u_n)) e^{-Δ/τ_rec}, Δ the interspike interval. A spike of
    amplitude s transmits s u_n R_n (graded input); tau_fac None: e^{-Δ/τ_fac} = 0."""

    def decays(gap):
        fac = 0.0 if tau_fac is None else math.exp(-gap / tau_fac)
        return fac, math.exp(-gap / tau_rec)

    out = [0.0] * len(train)
    last = None  # (step, u_n, R_n) of the latest spike
    for k, s in enumerate(train):
        if s == 0:
            continue
        if last is None:
            u_n, r_n = U, 1.0
        else:
            k0, u0, r0 = last
            fac, rec = decays((k - k0) * dt)
            u_n = U + (1.0 - U) * u0 * fac
            r_n = 1.0 - (1.0 - r0 * (1.0 - u0)) * rec
        out[k] = s * u_n * r_n
        last = (k, u_n, r_n)
    if last is None:
        return out, U, 1.0
    k0, u0, r0 = last
    fac, rec = decays((len(train) - 1 - k0) * dt)
    return out, U + (1.0 - U) * u0 * fac, 1.0 - (1.0 - r0 * (1.0 - u0)) * rec


def reference(spikes, **params):
    """``markram_train`` on every presynaptic neuron of ``[T, B, *in]``: (out, u, x)."""
    flat = spikes.reshape(spikes.shape[0], -1).double()
    outs, us, xs = [], [], []
    for j in range(flat.shape[1]):
        o, u, x = markram_train(flat[:, j].tolist(), **params)
        outs.append(o)
        us.append(u)
        xs.append(x)
    out = torch.tensor(outs, dtype=torch.float64).T.reshape(spikes.shape)
    state_shape = spikes.shape[1:]
    u = torch.tensor(us, dtype=torch.float64).reshape(state_shape)
    x = torch.tensor(xs, dtype=torch.float64).reshape(state_shape)
    return out, u, x


def identity_linear(n, dtype=torch.float64):
    fc = torch.nn.Linear(n, n, bias=False).to(dtype)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(n, dtype=dtype))
    return fc


def trains(T, shape, p, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, *shape), generator=g) < p).double()


PARAMS = dict(U=0.2, tau_rec=30.0, tau_fac=50.0, dt=1.0)

params_strategy = st.fixed_dictionaries(
    {
        "U": st.floats(0.01, 1.0),
        "tau_rec": st.floats(0.5, 500.0),
        "tau_fac": st.one_of(st.none(), st.floats(0.5, 1000.0)),
        "dt": st.sampled_from([0.1, 0.5, 1.0, 2.0]),
    }
)


# ------------------------------------------------------------------------- the equations


@given(
    params=params_strategy,
    T=st.integers(1, 40),
    n=st.integers(1, 4),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_dense_step_by_step_equals_the_markram_recurrence(params, T, n, p, seed):
    spikes = trains(T, (1, n), p, seed)
    fc = identity_linear(n)
    stp = pl.ShortTermPlasticity(fc, **params)
    out = torch.stack([fc(spikes[t]) for t in range(T)]).detach()
    ref_out, ref_u, ref_x = reference(spikes, **params)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.x, ref_x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.u, ref_u, rtol=1e-10, atol=1e-12)


@given(params=params_strategy, T=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_graded_input_spikes_where_nonzero_with_their_amplitude(params, T, seed):
    g = torch.Generator().manual_seed(seed)
    amplitude = torch.randn(T, 2, 3, generator=g, dtype=torch.float64)
    spikes = amplitude * (torch.rand(T, 2, 3, generator=g) < 0.4)
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, spikes="graded", **params)
    out = fc(spikes).detach()
    ref_out, ref_u, ref_x = reference(spikes, **params)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.x, ref_x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.u, ref_u, rtol=1e-10, atol=1e-12)


def test_first_spike_releases_U_and_a_regular_train_approaches_the_steady_state():
    # the closed form of the papers at a regular interval Δ: u* = U / (1 - (1 - U) e^{-Δ/F}),
    # R* = (1 - e^{-Δ/D}) / (1 - (1 - u*) e^{-Δ/D})
    U, D, F, gap = 0.1, 100.0, 400.0, 20
    fc = identity_linear(1)
    pl.ShortTermPlasticity(fc, U=U, tau_rec=D, tau_fac=F)
    spikes = torch.zeros(gap * 200, 1, 1, dtype=torch.float64)
    spikes[::gap] = 1.0
    out = fc(spikes).detach().flatten()[::gap]
    u_star = U / (1 - (1 - U) * math.exp(-gap / F))
    r_star = (1 - math.exp(-gap / D)) / (1 - (1 - u_star) * math.exp(-gap / D))
    assert out[0].item() == pytest.approx(U, abs=1e-15)
    assert out[-1].item() == pytest.approx(u_star * r_star, rel=1e-9)
    assert out[1] > out[0]  # facilitation first


@pytest.mark.parametrize("tau_fac", [None, 0.0, 1e-3])
def test_depressing_limit_keeps_u_at_U(tau_fac):
    spikes = trains(50, (2, 3), 0.3, seed=1)
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, U=0.4, tau_rec=20.0, tau_fac=tau_fac)
    out = fc(spikes).detach()
    ref_out, _, ref_x = reference(spikes, U=0.4, tau_rec=20.0, tau_fac=None, dt=1.0)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.x, ref_x, rtol=1e-10, atol=1e-12)
    assert stp.facilitating == (tau_fac == 1e-3)
    if not stp.facilitating:
        assert torch.equal(stp.u, torch.full_like(stp.x, 0.4))


# ---------------------------------------------------------------- shapes, batch, sequences


def test_sequence_through_the_synapse_equals_step_by_step_and_chunks():
    spikes = trains(60, (3, 5), 0.3, seed=2)
    fc = torch.nn.Linear(5, 4, bias=False).double()
    received = []
    fc.register_forward_hook(lambda m, args, out: received.append(args[0].detach()))
    scaled, outs = [], []
    for split in ([60], [1] * 60, [7, 20, 33]):
        stp = pl.ShortTermPlasticity(fc, **PARAMS)
        received.clear()
        pieces = torch.split(spikes, split)
        outs.append(torch.cat([fc(p) if len(p) > 1 else fc(p[0])[None] for p in pieces]).detach())
        scaled.append(torch.cat([r if r.ndim == 3 else r[None] for r in received]))
        stp.detach()
    # what the synapse receives is bitwise the same however the sequence is cut
    assert torch.equal(scaled[0], scaled[1]) and torch.equal(scaled[0], scaled[2])
    ref_in, _, _ = reference(spikes, **PARAMS)
    torch.testing.assert_close(scaled[0], ref_in, rtol=1e-10, atol=1e-12)
    for out in outs:
        torch.testing.assert_close(out, ref_in @ fc.weight.detach().T, rtol=1e-10, atol=1e-12)


def test_each_sample_of_a_batch_has_its_own_state():
    spikes = trains(40, (4, 3), 0.4, seed=3)
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    batched = fc(spikes).detach()
    for b in range(4):
        stp.reset()
        assert torch.equal(fc(spikes[:, b : b + 1]).detach(), batched[:, b : b + 1])


def test_unbatched_step_is_a_batch_of_one():
    spikes = trains(10, (3,), 0.5, seed=4)
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    out = torch.stack([fc(spikes[t]) for t in range(10)]).detach()
    assert out.shape == (10, 3) and stp.x.shape == (1, 3)
    ref_out, _, _ = reference(spikes[:, None], **PARAMS)
    torch.testing.assert_close(out, ref_out[:, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("conv", ["conv1d_unbatched", "conv2d", "conv3d"])
def test_conv_has_one_state_per_input_channel_and_position(conv):
    torch.manual_seed(0)
    if conv == "conv1d_unbatched":
        layer, shape = torch.nn.Conv1d(2, 3, 3, padding=1), (2, 6)
    elif conv == "conv2d":
        layer, shape = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 5, 5)
    else:
        layer, shape = torch.nn.Conv3d(1, 2, 2), (2, 1, 3, 3, 3)
    layer = layer.double()
    spikes = trains(25, shape, 0.3, seed=5)
    stp = pl.ShortTermPlasticity(layer, **PARAMS)
    out = torch.stack([layer(spikes[t]) for t in range(25)]).detach()
    block = spikes if conv != "conv1d_unbatched" else spikes[:, None]
    ref_in, ref_u, ref_x = reference(block, **PARAMS)
    stp.detach()
    expected = torch.stack([layer(ref_in[t].reshape(shape)) for t in range(25)]).detach()
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.x, ref_x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(stp.u, ref_u, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------ composition with learning


@pytest.mark.parametrize("stp_first", [True, False])
def test_stdp_sees_the_raw_spikes_and_the_neuron_the_scaled_ones(stp_first):
    torch.manual_seed(1)
    spikes = trains(80, (2, 6), 0.3, seed=6)
    fc = torch.nn.Linear(6, 3, bias=False).double()
    with torch.no_grad():
        fc.weight.uniform_(0.5, 1.5)
    lif = snn.Leaky(beta=0.8, threshold=0.3)
    kw = dict(a_plus=1e-2, a_minus=1.2e-2, tau_plus=10.0, tau_minus=15.0)
    if stp_first:
        stp = pl.ShortTermPlasticity(fc, **PARAMS)
        stdp = pl.STDP(fc, lif, **kw)
    else:
        stdp = pl.STDP(fc, lif, **kw)
        stp = pl.ShortTermPlasticity(fc, **PARAMS)
    received = []
    fc.register_forward_hook(lambda m, args, out: received.append(args[0].detach()))
    mem, post = lif.init_leaky(), []
    with torch.no_grad():
        for t in range(80):
            spk, mem = lif(fc(spikes[t]), mem)
            post.append(spk)
    post = torch.stack(post)
    assert post.sum() > 5  # the neuron spikes, so STDP has pairs
    ref_in, _, _ = reference(spikes, **PARAMS)
    torch.testing.assert_close(torch.stack(received), ref_in, rtol=1e-10, atol=1e-12)
    dw = stdp.step()
    raw = pl.STDP(torch.nn.Linear(6, 3, bias=False).double(), snn.Leaky(beta=0.8), **kw)
    raw.observe(spikes, post)
    torch.testing.assert_close(dw, raw.step(), rtol=1e-12, atol=1e-15)
    assert stp.attached


def test_gradients_flow_through_the_spikes_not_the_state():
    fc = identity_linear(2)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    spikes = torch.ones(4, 1, 2, dtype=torch.float64, requires_grad=True)
    fc(spikes).sum().backward()
    ref_out, _, _ = reference(spikes.detach(), **PARAMS)
    torch.testing.assert_close(spikes.grad, ref_out)  # d(s u x)/ds = u x
    assert not stp.x.requires_grad and not stp.u.requires_grad


# -------------------------------------------------------------------------- state, modes


def test_state_dict_round_trips_mid_sequence_with_weights_only_load():
    spikes = trains(50, (2, 4), 0.4, seed=7)
    fc = identity_linear(4)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    fc(spikes[:23])
    buffer = io.BytesIO()
    torch.save(stp.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rest = fc(spikes[23:]).detach()
    fc2 = identity_linear(4)
    stp2 = pl.ShortTermPlasticity(fc2, **PARAMS)
    stp2.load_state_dict(saved)
    assert torch.equal(fc2(spikes[23:]).detach(), rest)
    assert torch.equal(stp2.x, stp.x) and torch.equal(stp2.u, stp.u)
    # a state at rest round-trips too
    stp2.reset()
    stp.load_state_dict(stp2.state_dict())
    assert stp.x is None


def test_load_state_dict_rejects_a_bad_state_and_keeps_its_own():
    fc = identity_linear(2)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    fc(torch.ones(3, 1, 2, dtype=torch.float64))
    before = stp.state_dict()["_extra_state"]
    for bad in (
        {"u": torch.full((1, 2), 1.5), "x": torch.ones(1, 2)},
        {"u": torch.ones(1, 2), "x": torch.full((1, 2), float("nan"))},
        {"u": torch.ones(1, 2), "x": torch.ones(1, 3)},
        {"u": None, "x": torch.ones(1, 2)},
        {"x": torch.ones(1, 2)},
    ):
        with pytest.raises(ValueError, match="load_state_dict"):
            stp.load_state_dict({"_extra_state": bad})
        assert torch.equal(stp.x, before["x"]) and torch.equal(stp.u, before["u"])


def test_reset_detach_attach_and_eval():
    spikes = trains(30, (1, 3), 0.5, seed=8)
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    first = fc(spikes).detach()
    stp.reset()
    stp.eval()
    fc.eval()
    assert torch.equal(fc(spikes).detach(), first)  # dynamics, not learning: eval alike
    stp.detach()
    assert not stp.attached and torch.equal(fc(spikes).detach(), spikes)
    stp.attach()
    stp.reset()
    assert torch.equal(fc(spikes).detach(), first)
    clone = copy.deepcopy(stp)  # attached to its own copy of the synapse, as the original
    assert clone.attached and clone.synapse is not fc and torch.equal(clone.x, stp.x)


def test_state_follows_the_weight_dtype_and_device(device):
    fc = torch.nn.Linear(3, 2, bias=False).to(device=device, dtype=torch.float64)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    spikes = trains(10, (2, 3), 0.5, seed=9).float().to(device)  # float32 input
    out = fc(spikes)
    assert out.dtype == torch.float64 and stp.x.dtype == torch.float64
    assert stp.x.device.type == device.type and stp.u.device.type == device.type
    fc.float()
    fc(spikes[0])
    assert stp.x.dtype == torch.float32
    ref_out, _, ref_x = reference(torch.cat([spikes, spikes[:1]]).cpu(), **PARAMS)
    torch.testing.assert_close(stp.x.cpu().double(), ref_x, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(U=0.0), ValueError, "U"),
        (dict(U=1.5), ValueError, "U"),
        (dict(U=-0.1), ValueError, "U"),
        (dict(U=float("nan")), ValueError, "U"),
        (dict(U=True), TypeError, "U"),
        (dict(tau_rec=0.0), ValueError, "tau_rec"),
        (dict(tau_rec=-5.0), ValueError, "tau_rec"),
        (dict(tau_rec=float("inf")), ValueError, "tau_rec"),
        (dict(tau_rec=None), TypeError, "tau_rec"),
        (dict(tau_fac=-1.0), ValueError, "tau_fac"),
        (dict(tau_fac=float("nan")), ValueError, "tau_fac"),
        (dict(dt=0.0), ValueError, "dt"),
        (dict(spikes="float"), ValueError, "spikes"),
    ],
)
def test_bad_parameters_are_named_and_attach_nothing(kwargs, error, name):
    fc = torch.nn.Linear(2, 2)
    with pytest.raises(error, match=f"`{name}`"):
        pl.ShortTermPlasticity(fc, **{**PARAMS, **kwargs})
    assert not fc._forward_pre_hooks


def test_bad_synapse_is_a_type_error():
    with pytest.raises(TypeError, match="synapse"):
        pl.ShortTermPlasticity(torch.nn.ReLU(), **PARAMS)


@pytest.mark.parametrize(
    ("policy", "value"),
    [
        ("binary", 0.5),
        ("binary", 2.0),
        ("binary", float("nan")),
        ("graded", float("nan")),
        ("graded", float("inf")),
    ],
)
def test_bad_spikes_raise_with_nothing_changed(policy, value):
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, spikes=policy, **PARAMS)
    fc(torch.ones(2, 1, 3, dtype=torch.float64))
    x, u = stp.x, stp.u
    bad = torch.ones(4, 1, 3, dtype=torch.float64)
    bad[2, 0, 1] = value
    with pytest.raises(ValueError, match="graded" if policy == "binary" else "NaN"):
        fc(bad)
    assert torch.equal(stp.x, x) and torch.equal(stp.u, u)


def test_a_batch_size_change_within_a_sequence_is_rejected_until_reset():
    fc = identity_linear(3)
    stp = pl.ShortTermPlasticity(fc, **PARAMS)
    fc(torch.ones(2, 3, dtype=torch.float64))
    x = stp.x
    with pytest.raises(ValueError, match="reset"):
        fc(torch.ones(5, 3, dtype=torch.float64))
    assert torch.equal(stp.x, x)
    stp.reset()
    fc(torch.ones(5, 3, dtype=torch.float64))
    assert stp.x.shape == (5, 3)


def test_a_conv_sequence_is_rejected_before_anything_changes():
    conv = torch.nn.Conv2d(2, 3, 3).double()
    stp = pl.ShortTermPlasticity(conv, **PARAMS)
    conv(torch.ones(1, 2, 5, 5, dtype=torch.float64))
    x = stp.x
    with pytest.raises(ValueError, match="step by step"):
        conv(torch.ones(4, 1, 2, 5, 5, dtype=torch.float64))
    assert torch.equal(stp.x, x)


def test_wrong_feature_count_is_named_by_the_adapter():
    fc = identity_linear(3)
    pl.ShortTermPlasticity(fc, **PARAMS)
    with pytest.raises(ValueError, match="in_features"):
        fc(torch.ones(2, 4, dtype=torch.float64))
