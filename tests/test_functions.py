"""``abs``, ``sigmoid``, ``exp``, ``tanh`` and ``heaviside`` of one side's signals: on
every kernel and on the one-step path, against per-step loops in float64 written from the
equations (``math`` functions, no engine)."""

from __future__ import annotations

import math

import pytest
import torch

import plasticity as pl
from plasticity import modulator, post, pre, relu
from plasticity.language import parse


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _traces(s: torch.Tensor, tau: float) -> list[list[list[float]]]:
    """``x_t = e^{-1/tau} x_{t-1} + s_t`` (dt = 1) of ``s`` ``[T, B, N]``, element by element."""
    d = math.exp(-1.0 / tau)
    steps, batch, n = s.shape
    out, x = [], [[0.0] * n for _ in range(batch)]
    for t in range(steps):
        x = [[d * x[b][k] + float(s[t, b, k]) for k in range(n)] for b in range(batch)]
        out.append(x)
    return out


def _reference(x, y, v) -> torch.Tensor:
    """Δw of :data:`RULE` (batch mean), step by step."""
    steps, batch, n_in = x.shape
    n_out = y.shape[2]
    x3, x4, y2 = _traces(x, 3.0), _traces(x, 4.0), _traces(y, 2.0)
    dw = torch.zeros(n_out, n_in, dtype=torch.float64)
    for t in range(steps):
        for b in range(batch):
            for i in range(n_out):
                u = float(v[t, b, i])
                for j in range(n_in):
                    pos = 0.3 * _sigmoid(u - 0.2) * abs(x3[t][b][j] - 0.5)
                    pos += 0.2 * (1.0 if y2[t][b][i] - 0.6 > 0 else 0.0) * float(x[t, b, j])
                    pseudo = max(1.0 - abs(u - 0.5) / 0.5, 0.0)  # e-prop's pseudo-derivative
                    pos += 0.05 * pseudo * x3[t][b][j]
                    neg = 0.1 * math.tanh(u) * math.exp(-x4[t][b][j])
                    dw[i, j] += (pos - neg) / batch
    return dw


RULE = dict(
    pos=0.3 * pl.sigmoid(post.voltage - 0.2) * abs(pre.trace(3.0) - 0.5)
    + 0.2 * pl.heaviside(post.trace(2.0) - 0.6) * pre.spike
    + 0.05 * relu(1.0 - abs(post.voltage - 0.5) / 0.5) * pre.trace(3.0),
    neg=0.1 * pl.tanh(post.voltage) * pl.exp(-pre.trace(4.0)),
)


def _data(seed=0, steps=20, batch=2, n_in=3, n_out=2):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.4).double()
    y = (torch.rand(steps, batch, n_out, generator=g) < 0.4).double()
    v = torch.randn(steps, batch, n_out, generator=g, dtype=torch.float64)
    return x, y, v


def _rule(kernel="auto", device="cpu", **decl):
    fc = torch.nn.Linear(3, 2, bias=False).double().to(device)
    return pl.Rule(fc, torch.nn.Identity(), kernel=kernel, chunk_size=8, **(decl or RULE))


@pytest.mark.parametrize("kernel", ["auto", "dense", "sparse"])
def test_functions_on_every_kernel_equal_the_per_step_loop(kernel, device):
    x, y, v = _data()
    rule = _rule(kernel, device)
    rule.observe(x.to(device), y.to(device), voltage=v.to(device))
    torch.testing.assert_close(rule.step().cpu(), _reference(x, y, v), rtol=1e-12, atol=1e-14)


def test_functions_on_the_one_step_path_equal_the_per_step_loop(device):
    x, y, v = _data(1)
    rule = _rule(device=device)
    total = torch.zeros(2, 3, dtype=torch.float64)
    for t in range(x.shape[0]):
        rule.observe(x[t : t + 1].to(device), y[t : t + 1].to(device), voltage=v[t : t + 1].to(device))
        total += rule.step().cpu()
    assert set(rule.kernel_choice.values()) == {"one-step"}
    torch.testing.assert_close(total, _reference(x, y, v), rtol=1e-12, atol=1e-14)


def test_functions_of_the_modulator_and_inside_filters_and_eligibility():
    """``sigmoid(modulator)`` as a third factor, ``tanh`` inside a low-pass, ``heaviside``
    inside an eligibility trace: every kernel agrees with the one-step path."""
    decl = dict(pos=pl.sigmoid(modulator) * pl.tanh(post.voltage).lowpass(3.0) * pre.trace(2.0)
                + modulator * pl.eligibility(pl.heaviside(post.trace(2.0) - 0.5) * pre.spike, 5.0))  # fmt: skip
    x, y, v = _data(2)
    r = torch.randn(x.shape[0], 1, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64).expand(-1, x.shape[1])  # fmt: skip
    results = []
    for kernel in ("dense", "sparse", "auto"):
        rule = _rule(kernel, **decl)
        rule.observe(x, y, voltage=v, reward=r)
        results.append(rule.step())
    rule = _rule(**decl)
    online = torch.zeros(2, 3, dtype=torch.float64)
    for t in range(x.shape[0]):
        rule.observe(x[t : t + 1], y[t : t + 1], voltage=v[t : t + 1], reward=r[t : t + 1])
        online += rule.step()
    assert float(online.abs().sum()) > 0
    for got in results:
        torch.testing.assert_close(got, online, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("f", [abs, pl.sigmoid, pl.exp, pl.tanh, pl.heaviside, relu])
def test_a_function_of_both_sides_is_a_value_error_naming_it(f):
    with pytest.raises(ValueError, match="does not factor into a post-side signal times"):
        f(post.voltage * pre.trace(10.0))
    with pytest.raises(ValueError, match="does not factor into a post-side signal times"):
        f(post.voltage + pre.trace(10.0))


@pytest.mark.parametrize("name, f, value", [
    ("abs", abs, 2.5), ("sigmoid", pl.sigmoid, _sigmoid(-2.5)), ("exp", pl.exp, math.exp(-2.5)),
    ("tanh", pl.tanh, math.tanh(-2.5)), ("heaviside", pl.heaviside, 0.0),
])  # fmt: skip
def test_functions_in_the_text_form_and_of_numbers(name, f, value):
    text = f"0.5 * {name}(post.voltage - 1) * pre.trace(20)"
    assert parse(text) == 0.5 * f(post.voltage - 1.0) * pre.trace(20.0)
    assert repr(parse(text)) == text
    folded = parse(f"{name}(-2.5) * post.spike * pre.spike").terms[0]
    assert folded.coef == pytest.approx(value, rel=1e-15, abs=0) and folded.post == post.spike
    assert pl.language.parse(f"{name}(post.spike)") == f(post.spike)


def test_functions_are_exported_from_plasticity_and_the_language():
    import plasticity.language as lang

    for name in ("sigmoid", "exp", "tanh", "heaviside", "relu"):
        assert getattr(pl, name) is getattr(lang, name) and name in pl.__all__
