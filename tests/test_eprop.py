"""``pl.EProp`` against a per-step float64 reference written from the paper's equations.

Bellec et al. (2020), Nat Commun 11:3625, Methods: the LIF network
``v^t = α v^{t-1} + W_in x^t + W_rec z^{t-1} + b − z^{t-1} v_th``, ``z^t = H(v^t − v_th)``,
the leaky readout ``y^t = κ y^{t-1} + W_out z^t``, the pseudo-derivative
``ψ = γ/v_th max(0, 1 − |v − v_th| / v_th)``, eligibility traces ``e = ψ z̄`` filtered with κ,
the learning signal ``L = Σ_k B_jk δ_k`` and firing-rate regularization. The reference
simulates the network itself and loops over steps and samples; it shares nothing with
``plasticity``. Two windows (sequences) with an SGD step between them: the gradients of
all three weight matrices and the weights after each window agree to 1e-9.
"""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch
from torch import nn

import plasticity as pl

N_IN, N, K, T = 5, 6, 3, 25
# (leaks exact in float32: snnTorch keeps beta as a float32 tensor until .double())
ALPHA, KAPPA, THETA, GAMMA, LR, DT = 0.875, 0.75, 1.0, 0.3, 0.05, 0.5
WINDOWS = 2


def _network(seed: int = 0):
    """Float64 modules with fixed weights: inputs (with a bias), RLeaky, readout."""
    gen = torch.Generator().manual_seed(seed)
    fc = nn.Linear(N_IN, N).double()
    rlif = snn.RLeaky(beta=ALPHA, threshold=THETA, linear_features=N).double()
    out = nn.Linear(N, K, bias=False).double()
    readout = snn.Leaky(beta=KAPPA, reset_mechanism="none").double()
    with torch.no_grad():
        fc.weight.copy_(torch.rand(N, N_IN, generator=gen, dtype=torch.float64) * 0.7)
        fc.bias.copy_(torch.rand(N, generator=gen, dtype=torch.float64) * 0.1)
        rlif.recurrent.weight.copy_(torch.randn(N, N, generator=gen, dtype=torch.float64) * 0.3)
        rlif.recurrent.bias.copy_(torch.randn(N, generator=gen, dtype=torch.float64) * 0.05)
        out.weight.copy_(torch.randn(K, N, generator=gen, dtype=torch.float64) * 0.5)
    return fc, rlif, out, readout


def _data(batch: int, loss: str, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(WINDOWS, T, batch, N_IN, generator=gen) < 0.35).double()
    if loss == "mse":
        y_star = torch.randn(WINDOWS, T, batch, K, generator=gen, dtype=torch.float64)
    else:
        labels = torch.randint(0, K, (WINDOWS, T, batch), generator=gen)
        y_star = nn.functional.one_hot(labels, K).double()
    return x, y_star


# ------------------------------------------------------------------- reference


def reference(weights, x, y_star, *, feedback, loss, c_reg, f_target, batch):
    """The gradients of each window (``g_in, g_rec, g_out``, batch means) and SGD on
    them between windows; every step and sample in explicit loops (float64)."""
    w_in, b_in, w_rec, b_rec, w_out = (w.clone() for w in weights)
    grads = []
    for window in range(x.shape[0]):
        v, z = torch.zeros(batch, N, dtype=torch.float64), torch.zeros(batch, N, dtype=torch.float64)
        y = torch.zeros(batch, K, dtype=torch.float64)
        x_bar = torch.zeros(batch, N_IN, dtype=torch.float64)  # F_α(x), input synapses
        z_bar = torch.zeros(batch, N, dtype=torch.float64)  # F_α(z^{t-1}), recurrent synapses
        z_out = torch.zeros(batch, N, dtype=torch.float64)  # F_κ(z), readout
        e_in_bar = torch.zeros(batch, N, N_IN, dtype=torch.float64)
        e_rec_bar = torch.zeros(batch, N, N, dtype=torch.float64)
        g_in, g_rec = torch.zeros_like(w_in), torch.zeros_like(w_rec)
        g_out = torch.zeros_like(w_out)
        sum_e_in, sum_e_rec = torch.zeros_like(w_in), torch.zeros_like(w_rec)
        count = torch.zeros(N, dtype=torch.float64)
        for t in range(x.shape[1]):
            z_prev = z
            v = ALPHA * v + x[window, t] @ w_in.T + b_in + z_prev @ w_rec.T + b_rec - z_prev * THETA
            z = (v > THETA).double()
            y = KAPPA * y + z @ w_out.T
            pi = torch.softmax(y, -1) if loss == "cross_entropy" else y
            delta = pi - y_star[window, t]
            b_fb = w_out if feedback is None else feedback  # [K, N]
            x_bar = ALPHA * x_bar + x[window, t]
            z_bar = ALPHA * z_bar + z_prev
            z_out = KAPPA * z_out + z
            count += z.sum(0)
            for b in range(batch):
                psi = GAMMA / THETA * torch.clamp(1 - (v[b] - THETA).abs() / THETA, min=0)
                learning = torch.zeros(N, dtype=torch.float64)
                for j in range(N):
                    learning[j] = sum(b_fb[k, j] * delta[b, k] for k in range(K))
                e_in, e_rec = torch.outer(psi, x_bar[b]), torch.outer(psi, z_bar[b])
                e_in_bar[b] = KAPPA * e_in_bar[b] + e_in
                e_rec_bar[b] = KAPPA * e_rec_bar[b] + e_rec
                g_in += learning[:, None] * e_in_bar[b]
                g_rec += learning[:, None] * e_rec_bar[b]
                g_out += torch.outer(delta[b], z_out[b])
                sum_e_in += e_in
                sum_e_rec += e_rec
        steps = x.shape[1]
        rate = count / (batch * steps)  # f_j, spikes per step, averaged over batch and window
        reg = (c_reg * (rate - f_target * DT) / steps)[:, None]
        g_in, g_rec = g_in + reg * sum_e_in, g_rec + reg * sum_e_rec
        g = [g_in / batch, g_rec / batch, g_out / batch]
        grads.append(g)
        w_in, w_rec, w_out = w_in - LR * g[0], w_rec - LR * g[1], w_out - LR * g[2]
    return grads, (w_in, w_rec, w_out)


# ----------------------------------------------------------------------- runs


def _run(fc, rlif, out, readout, rule, x, y_star, optimizer=None):
    """Each window through snnTorch's modules with the hooks; ``rule.target`` per step,
    ``step()`` and the optimizer at the end; the grads of each window."""
    params = [fc.weight, rlif.recurrent.weight, out.weight]
    optimizer = optimizer or torch.optim.SGD(params, lr=LR)
    grads = []
    for window in range(x.shape[0]):
        optimizer.zero_grad()
        spk, mem = rlif.init_rleaky()
        y = readout.init_leaky()
        for t in range(x.shape[1]):
            spk, mem = rlif(fc(x[window, t]), spk.double(), mem)  # (snnTorch spikes: float32)
            _, y = readout(out(spk.double()), y)
            rule.target(y_star[window, t])
        dw = rule.step()
        assert set(dw) == {"input", "recurrent", "readout"}
        grads.append([p.grad.clone() for p in params])
        for p, name in zip(params, ("input", "recurrent", "readout"), strict=True):
            torch.testing.assert_close(p.grad, -dw[name], rtol=0, atol=0)
        optimizer.step()
    return grads


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("feedback", ["symmetric", "random"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("c_reg", [0.0, 0.7])
def test_eprop_equals_the_papers_equations_over_two_windows(batch, feedback, loss, c_reg,
                                                           options=None):  # fmt: skip
    x, y_star = _data(batch, loss)
    fc, rlif, out, readout = _network()
    weights = [fc.weight, fc.bias, rlif.recurrent.weight, rlif.recurrent.bias, out.weight]
    weights = [w.detach().clone() for w in weights]
    f_target = 0.05
    rule = pl.EProp(fc, rlif, out, readout, c_reg=c_reg, f_target=f_target, feedback=feedback,
                    loss=loss, generator=torch.Generator().manual_seed(3), dt=DT,
                    **(options or {}))  # fmt: skip
    fb = None if feedback == "symmetric" else rule.feedback.clone()
    if fb is not None:
        assert fb.shape == (K, N) and fb.dtype == torch.float64
    got = _run(fc, rlif, out, readout, rule, x, y_star)
    want, final = reference(weights, x, y_star, feedback=fb, loss=loss, c_reg=c_reg,
                            f_target=f_target, batch=batch)  # fmt: skip
    for g_got, g_want in zip(got, want, strict=True):
        for a, b in zip(g_got, g_want, strict=True):
            assert b.abs().sum() > 0  # every matrix learns something in every window
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for p, w in zip((fc.weight, rlif.recurrent.weight, out.weight), final, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-9, atol=1e-9)
    if fb is not None:  # the random feedback is fixed
        assert torch.equal(rule.feedback, fb)


@pytest.mark.parametrize("options", [{"chunk_size": 1}, {"chunk_size": 4, "kernel": "dense"},
                                     {"chunk_size": 7, "kernel": "sparse"},
                                     {"batch_reduction": "mean", "chunk_size": 30}])
def test_eprop_is_the_same_for_every_chunk_size_and_kernel(options):
    """One-step chunks (the one-step path), chunks that end mid-window, both kernels."""
    test_eprop_equals_the_papers_equations_over_two_windows(3, "random", "mse", 0.7, options)


def test_the_regularization_pulls_rates_to_the_target():
    """c_reg alone (targets equal to the readout): every neuron's input weights move by
    the sign of f_j − f_target."""
    x, _ = _data(2, "mse")
    fc, rlif, out, readout = _network()
    rule = pl.EProp(fc, rlif, out, readout, c_reg=1.0, f_target=0.0)
    spk, mem = rlif.init_rleaky()
    y = readout.init_leaky()
    for t in range(T):
        spk, mem = rlif(fc(x[0, t]), spk.double(), mem)
        _, y = readout(out(spk.double()), y)
        rule.target(y)  # no error: only the regularization learns
    dw = rule.step()
    assert torch.all(dw["input"] <= 0) and dw["input"].sum() < 0  # rates above 0: weaken
    assert dw["readout"] is None or float(dw["readout"].abs().sum()) == 0.0


def test_adam_learns_a_regression_from_the_grads():
    """The gradients go to ``.grad``: Adam on a small regression lowers the loss."""
    torch.manual_seed(0)
    fc, rlif, out, readout = _network(5)
    rule = pl.EProp(fc, rlif, out, readout, feedback="random", generator=torch.Generator().manual_seed(0))
    x = (torch.rand(1, T, 4, N_IN, generator=torch.Generator().manual_seed(7)) < 0.3).double()
    steps = torch.arange(T, dtype=torch.float64)
    y_star = torch.stack([torch.sin(steps / 4), torch.cos(steps / 6), 0.2 * torch.ones(T)], -1)
    y_star = y_star[None, :, None].expand(1, T, 4, K)
    params = [fc.weight, rlif.recurrent.weight, out.weight]
    adam = torch.optim.Adam(params, lr=0.02)

    def loss() -> float:
        with torch.no_grad():
            rule.eval()
            spk, mem = rlif.init_rleaky()
            y, total = readout.init_leaky(), 0.0
            for t in range(T):
                spk, mem = rlif(fc(x[0, t]), spk.double(), mem)
                _, y = readout(out(spk.double()), y)
                total += 0.5 * float(((y - y_star[0, t]) ** 2).sum()) / 4
            rule.train()
            return total

    before = loss()
    for _ in range(30):
        _run(fc, rlif, out, readout, rule, x, y_star, optimizer=adam)
    assert loss() < 0.8 * before  # deterministic: 31.0 -> 22.2 measured


# ------------------------------------------------------------------- bad input


def _partial(rule, fc, rlif, out, readout, x, y_star, steps):
    spk, mem = rlif.init_rleaky()
    y = readout.init_leaky()
    for t in range(steps):
        spk, mem = rlif(fc(x[0, t]), spk.double(), mem)
        _, y = readout(out(spk.double()), y)
        if t < steps - 1:
            rule.target(y_star[0, t])
    return spk, mem, y


def _finish(rule, fc, rlif, out, readout, x, y_star, state, start):
    spk, mem, y = state
    rule.target(y_star[0, start - 1])
    for t in range(start, T):
        spk, mem = rlif(fc(x[0, t]), spk.double(), mem)
        _, y = readout(out(spk.double()), y)
        rule.target(y_star[0, t])
    return rule.step()


def _clean(x, y_star):
    fc, rlif, out, readout = _network()
    rule = pl.EProp(fc, rlif, out, readout, c_reg=0.3)
    state = _partial(rule, fc, rlif, out, readout, x, y_star, 6)
    return _finish(rule, fc, rlif, out, readout, x, y_star, state, 6)


@pytest.mark.parametrize(
    "bad, exc, words",
    [
        (lambda y: y[:, :2], ValueError, r"`y_star` has shape \(3, 2\); expected \[B, K\] = \[3, 3\]"),
        (lambda y: y[None], ValueError, "`y_star` has shape"),
        (lambda y: y * float("nan"), ValueError, "`y_star` contains NaN"),
        (lambda y: y > 0, TypeError, "`y_star` must be"),
        (lambda y: "high", TypeError, "`y_star` must be"),
    ],
)
def test_a_bad_target_names_it_and_changes_nothing(bad, exc, words):
    x, y_star = _data(3, "mse")
    fc, rlif, out, readout = _network()
    rule = pl.EProp(fc, rlif, out, readout, c_reg=0.3)
    state = _partial(rule, fc, rlif, out, readout, x, y_star, 6)
    with pytest.raises(exc, match=words):
        rule.target(bad(y_star[0, 5]))
    dw = _finish(rule, fc, rlif, out, readout, x, y_star, state, 6)
    want = _clean(x, y_star)
    for name in want:
        assert torch.equal(dw[name], want[name])


def test_a_missing_or_early_target_is_refused_and_changes_nothing():
    x, y_star = _data(3, "mse")
    fc, rlif, out, readout = _network()
    rule = pl.EProp(fc, rlif, out, readout, c_reg=0.3)
    with pytest.raises(RuntimeError, match="after the forward pass"):
        rule.target(y_star[0, 0])
    state = _partial(rule, fc, rlif, out, readout, x, y_star, 6)
    with pytest.raises(ValueError, match=r"the last step has no target: call rule.target"):
        rule.step()
    dw = _finish(rule, fc, rlif, out, readout, x, y_star, state, 6)
    want = _clean(x, y_star)
    for name in want:
        assert torch.equal(dw[name], want[name])
    with pytest.raises(RuntimeError, match="once per step"):
        rule.target(y_star[0, 0])  # after step(): no new forward pass


def _layers():
    return nn.Linear(3, 4), nn.Linear(4, 2), snn.Leaky(beta=0.8, reset_mechanism="none")


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda fc, out, ro: pl.EProp(fc, snn.Leaky(beta=0.9), out, ro), TypeError,
         r"`layer` must be an snn.RLeaky\(all_to_all=True"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, all_to_all=False), out, ro),
         TypeError, "`layer` must be an snn.RLeaky"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, linear_features=4,
                                                     reset_mechanism="zero"), out, ro),
         ValueError, "reset by subtraction"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, linear_features=4),
                                      out, snn.Leaky(beta=0.8)), ValueError, "without reset"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, linear_features=5), out, ro),
         ValueError, "`inputs` must have 5 outputs"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, linear_features=4), out, ro,
                                      loss="hinge"), ValueError, "`loss` must be one of"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, linear_features=4), out, ro,
                                      feedback="sym"), ValueError, "`feedback` must be one of"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=0.9, linear_features=4), out, ro,
                                      gamma=0.0), ValueError, "`gamma` must be > 0"),
        (lambda fc, out, ro: pl.EProp(fc, snn.RLeaky(beta=1.0, linear_features=4), out, ro),
         ValueError, r"`layer`.beta must be in \(0, 1\)"),
        (lambda fc, out, ro: pl.EProp(nn.Conv1d(3, 4, 1), snn.RLeaky(beta=0.9, linear_features=4),
                                      out, ro), TypeError, "`inputs` must be an nn.Linear"),
    ],
)
def test_a_network_eprop_cannot_learn_exactly_is_refused_by_name(make, exc, words):
    fc, out, ro = _layers()
    before = [fc.weight.clone(), out.weight.clone()]
    hooks = (len(fc._forward_pre_hooks), len(ro._forward_hooks))
    with pytest.raises(exc, match=words):
        make(fc, out, ro)
    assert torch.equal(fc.weight, before[0]) and torch.equal(out.weight, before[1])
    assert (len(fc._forward_pre_hooks), len(ro._forward_hooks)) == hooks  # nothing attached


def test_eval_mode_learns_nothing_and_detach_removes_every_hook():
    x, y_star = _data(3, "mse")
    fc, rlif, out, readout = _network()
    rule = pl.EProp(fc, rlif, out, readout)
    rule.eval()
    spk, mem = rlif.init_rleaky()
    y = readout.init_leaky()
    for t in range(4):
        spk, mem = rlif(fc(x[0, t]), spk.double(), mem)
        _, y = readout(out(spk.double()), y)
        rule.target(y_star[0, t])  # ignored
    assert all(v is None for v in rule.step().values())
    rule.train()
    rule.detach()
    assert not fc._forward_pre_hooks and not readout._forward_hooks and not rlif._forward_hooks
    assert not math.isnan(rule.kappa) and rule.kappa == pytest.approx(KAPPA)


def test_eprop_follows_the_weights_device_and_dtype(device):
    """Float32 on ``device``: the gradients, the feedback and the traces live there, and
    equal the CPU run's."""
    x, y_star = _data(3, "cross_entropy")
    runs = []
    for where in (torch.device("cpu"), device):
        fc, rlif, out, readout = (m.to(device=where, dtype=torch.float32) for m in _network())
        rule = pl.EProp(fc, rlif, out, readout, loss="cross_entropy", feedback="random",
                        c_reg=0.5, generator=torch.Generator().manual_seed(3))  # fmt: skip
        assert rule.feedback.device.type == where.type and rule.feedback.dtype == torch.float32
        spk, mem = rlif.init_rleaky()
        y = readout.init_leaky()
        for t in range(T):
            spk, mem = rlif(fc(x[0, t].to(where, torch.float32)), spk, mem)
            _, y = readout(out(spk), y)
            rule.target(y_star[0, t].to(where))
        dw = rule.step()
        for d in dw.values():
            assert d.device.type == where.type and d.dtype == torch.float32
        runs.append({k: v.cpu() for k, v in dw.items()})
    for name in runs[0]:
        torch.testing.assert_close(runs[1][name], runs[0][name], rtol=1e-4, atol=1e-5)


def test_reset_starts_a_new_sequence_within_the_window():
    """Two sequences with ``reset()`` between them, one ``step()``: the sum of the two
    sequences' gradients, each from zero traces."""
    x, y_star = _data(2, "mse")

    def sequence(rule, fc, rlif, out, readout, w):
        spk, mem = rlif.init_rleaky()
        y = readout.init_leaky()
        for t in range(T):
            spk, mem = rlif(fc(x[w, t]), spk.double(), mem)
            _, y = readout(out(spk.double()), y)
            rule.target(y_star[w, t])

    fc, rlif, out, readout = net = _network()
    rule = pl.EProp(*net)
    sequence(rule, *net, 0)
    rule.reset()
    sequence(rule, *net, 1)
    together = rule.step()
    fc, rlif, out, readout = net = _network()
    rule = pl.EProp(*net)
    apart = []
    for w in range(2):
        sequence(rule, *net, w)
        apart.append(rule.step())
    for name in together:
        torch.testing.assert_close(together[name], apart[0][name] + apart[1][name],
                                   rtol=1e-12, atol=1e-12)  # fmt: skip


def test_a_per_sample_mask_drops_those_samples_errors():
    """``target(y_star, mask)`` with a ``[B]`` mask, summed over the batch: the samples
    masked out contribute nothing (no regularization here), the others what they would
    alone; a mask of ``False`` at every step learns nothing."""
    x, y_star = _data(3, "mse")

    def window(keep, mask):
        fc, rlif, out, readout = net = _network()
        rule = pl.EProp(*net, batch_reduction="sum")
        spk, mem = rlif.init_rleaky()
        y = readout.init_leaky()
        for t in range(T):
            spk, mem = rlif(fc(x[0, t, keep]), spk.double(), mem)
            _, y = readout(out(spk.double()), y)
            rule.target(y_star[0, t, keep], mask=mask)
        return rule.step()

    masked = window([0, 1, 2], torch.tensor([True, False, True]))
    kept = window([0, 2], True)
    for name in kept:
        assert kept[name].abs().sum() > 0
        torch.testing.assert_close(masked[name], kept[name], rtol=1e-12, atol=1e-12)
    assert all(d is None or float(d.abs().sum()) == 0.0 for d in window([0, 1], False).values())


def test_average_gradient_divides_by_the_learning_steps():
    """``average_gradient``: the sums of the window divided by the steps whose mask was
    not all 0 (here 15 of 25), regularization included."""
    x, y_star = _data(2, "mse")

    def window(**options):
        fc, rlif, out, readout = net = _network()
        rule = pl.EProp(*net, c_reg=0.5, **options)
        spk, mem = rlif.init_rleaky()
        y = readout.init_leaky()
        for t in range(T):
            spk, mem = rlif(fc(x[0, t]), spk.double(), mem)
            _, y = readout(out(spk.double()), y)
            rule.target(y_star[0, t], mask=t >= 10)
        return rule.step()

    summed, averaged = window(), window(average_gradient=True)
    for name in summed:
        torch.testing.assert_close(averaged[name], summed[name] / 15, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mask, exc, words", [
    (torch.ones(2), ValueError, r"`mask` must be True, False or a tensor of shape \[3\]"),
    (torch.tensor([0.0, 2.0, 1.0]), ValueError, "`mask` must hold 0/1"),
    ("yes", TypeError, "`mask` must be True, False"),
])  # fmt: skip
def test_a_bad_mask_names_it_and_changes_nothing(mask, exc, words):
    x, y_star = _data(3, "mse")
    fc, rlif, out, readout = _network()
    rule = pl.EProp(fc, rlif, out, readout, c_reg=0.3)
    state = _partial(rule, fc, rlif, out, readout, x, y_star, 6)
    with pytest.raises(exc, match=words):
        rule.target(y_star[0, 5], mask=mask)
    dw = _finish(rule, fc, rlif, out, readout, x, y_star, state, 6)
    want = _clean(x, y_star)
    for name in want:
        assert torch.equal(dw[name], want[name])
