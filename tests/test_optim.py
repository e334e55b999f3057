"""plasticity.optim: rai_toolbox behaviours, clamping invariants, state, validation."""

from __future__ import annotations

import copy
import functools
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import plasticity as pl
from plasticity.optim import (
    ChainedParamTransformingOptimizer,
    ClampedGradientOptimizer,
    ClampedParameterOptimizer,
    L1NormalizedParameterOptimizer,
    ParamTransformingOptimizer,
    normalize_,
)

# ------------------------------------------------------------- rai's own behaviours


def test_rai_docstring_example():
    x = torch.ones(2, requires_grad=True)
    optim = ClampedParameterOptimizer(params=[x], lr=1.0, clamp_min=-1.0, clamp_max=3.0)
    x.backward(gradient=torch.tensor([0.5, -10.0]))
    optim.step()
    torch.testing.assert_close(x.detach(), torch.tensor([0.5, 3.0]))
    assert pl.ClampedParameterOptimizer is ClampedParameterOptimizer


def test_signed_gradient_subclass_equals_adamw_on_sign_of_grad():
    class SignedGradientOptim(ParamTransformingOptimizer):
        def _pre_step_transform_(self, param, **_kw):
            torch.sign(param.grad, out=param.grad)

    x = torch.tensor([-10.0, 10.0], requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    ours = SignedGradientOptim([x], InnerOpt=torch.optim.AdamW, lr=0.1)
    ref = torch.optim.AdamW([y], lr=0.1)
    for _ in range(3):
        (10_000 * x).sum().backward()
        y.grad = torch.sign(10_000 * torch.ones(2))
        ours.step()
        ref.step()
        ours.zero_grad()
        ref.zero_grad()
    torch.testing.assert_close(x, y)


def test_param_ndim_broadcasting_as_rai():
    class MaxNormedGradientOptim(ParamTransformingOptimizer):
        def _pre_step_transform_(self, param, **_kw):
            g = param.grad.flatten(1)
            max_norms = torch.max(g, dim=1).values.view(-1, *([1] * (param.ndim - 1)))
            param.grad /= torch.clamp(max_norms, 1e-20, None)

    x = torch.tensor([[1.0, 2.0], [20.0, 10.0]], requires_grad=True)
    expected = {
        0: [[1.0, 1.0], [1.0, 1.0]],
        1: [[0.5, 1.0], [1.0, 0.5]],
        2: [[0.05, 0.1], [1.0, 0.5]],
    }
    for ndim, exp in expected.items():
        optim = MaxNormedGradientOptim([x], param_ndim=ndim, InnerOpt=torch.optim.SGD, lr=0.0)
        (x * x).sum().backward()
        optim.step()
        torch.testing.assert_close(x.grad, torch.tensor(exp))
        optim.zero_grad()


def test_gradient_replaced_instead_of_in_place_is_an_error():
    class Bad(ParamTransformingOptimizer):
        def _pre_step_transform_(self, param, **_kw):
            param.grad = param.grad * 2

    x = torch.ones(2, requires_grad=True)
    x.grad = torch.ones(2)
    with pytest.raises(ValueError, match="in-place"):
        Bad([x], lr=1.0).step()


def test_clamped_gradient_optimizer_example():
    x = torch.ones(2, requires_grad=True)
    optim = ClampedGradientOptimizer(params=[x], lr=1.0, clamp_min=-1.0, clamp_max=3.0)
    x.backward(gradient=torch.tensor([-0.5, 10]))
    optim.step()
    torch.testing.assert_close(x.grad, torch.tensor([-0.5, 3.0]))
    torch.testing.assert_close(x.detach(), torch.tensor([1.5, -2.0]))


def test_every_parameter_is_clamped_after_each_step_with_or_without_grad():
    a = torch.full((3,), 5.0, requires_grad=True)
    b = torch.full((3,), -5.0, requires_grad=True)  # never gets a gradient
    opt = ClampedParameterOptimizer([a, b], lr=0.1, clamp_min=0.0, clamp_max=1.0)
    a.grad = torch.zeros(3)
    opt.step()
    assert torch.equal(a.detach(), torch.ones(3)) and torch.equal(b.detach(), torch.zeros(3))


def test_per_group_bounds_and_settings():
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = ClampedParameterOptimizer(
        [{"params": [a]}, {"params": [b], "clamp_min": -0.5, "clamp_max": 0.5, "lr": 10.0}],
        lr=1.0,
        clamp_min=0.0,
        clamp_max=2.0,
    )
    a.grad = torch.tensor([-5.0, 5.0])
    b.grad = torch.tensor([-5.0, 5.0])
    opt.step()
    torch.testing.assert_close(a.detach(), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(b.detach(), torch.tensor([0.5, -0.5]))


def test_grad_scale_and_grad_bias():
    x = torch.zeros(2, requires_grad=True)
    opt = ClampedGradientOptimizer([x], lr=1.0, clamp_max=10.0, grad_scale=2.0, grad_bias=0.5)
    x.grad = torch.tensor([1.0, 100.0])
    opt.step()  # clamp to 10, then *2 + 0.5
    torch.testing.assert_close(x.detach(), -torch.tensor([2.5, 20.5]))


def _three_ways(inner_cls, **kw):
    xs = [torch.linspace(-1, 1, 5, requires_grad=True) for _ in range(3)]
    opts = [
        ClampedParameterOptimizer([xs[0]], inner_cls, clamp_min=-0.5, clamp_max=0.5, **kw),
        ClampedParameterOptimizer(
            [xs[1]], functools.partial(inner_cls, **kw), clamp_min=-0.5, clamp_max=0.5
        ),
        ClampedParameterOptimizer(InnerOpt=inner_cls([xs[2]], **kw), clamp_min=-0.5, clamp_max=0.5),
    ]
    return xs, opts


@pytest.mark.parametrize(
    "inner_cls, kw",
    [(torch.optim.SGD, {"lr": 0.3, "momentum": 0.9}), (torch.optim.Adam, {"lr": 0.1})],
)
def test_inner_opt_as_class_partial_or_instance_agree(inner_cls, kw):
    xs, opts = _three_ways(inner_cls, **kw)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        grad = torch.randn(5, generator=g)
        for x, o in zip(xs, opts, strict=True):
            x.grad = grad.clone()
            o.step()
    torch.testing.assert_close(xs[0], xs[1])
    torch.testing.assert_close(xs[0], xs[2])


def test_closure_returns_loss_and_result_is_clamped():
    x = torch.tensor([0.0, 0.9], requires_grad=True)
    opt = ClampedParameterOptimizer([x], lr=1.0, clamp_min=0.0, clamp_max=1.0)

    def closure():
        opt.zero_grad()
        loss = -(x * torch.tensor([1.0, 1.0])).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == pytest.approx(-0.9)
    torch.testing.assert_close(x.detach(), torch.tensor([1.0, 1.0]))


def test_state_is_shared_with_the_inner_optimizer():
    x = torch.zeros(2, requires_grad=True)
    opt = ClampedParameterOptimizer([x], torch.optim.Adam, lr=0.1, clamp_min=-1.0)
    assert opt.param_groups is opt.inner_opt.param_groups
    assert opt.state is opt.inner_opt.state
    assert opt.defaults is opt.inner_opt.defaults
    x.grad = torch.ones(2)
    opt.step()
    assert "exp_avg" in opt.state[x]
    assert "SGD" not in repr(opt) and "[Adam]" in repr(opt)


def test_lr_scheduler_drives_the_inner_step():
    x = torch.zeros(1, requires_grad=True)
    y = torch.zeros(1, requires_grad=True)
    ours = ClampedParameterOptimizer([x], lr=1.0, clamp_min=-100.0, clamp_max=100.0)
    ref = torch.optim.SGD([y], lr=1.0)
    s1 = torch.optim.lr_scheduler.StepLR(ours, step_size=1, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(ref, step_size=1, gamma=0.5)
    for _ in range(4):
        x.grad, y.grad = -torch.ones(1), -torch.ones(1)
        ours.step()
        ref.step()
        s1.step()
        s2.step()
    torch.testing.assert_close(x, y)  # 1 + 0.5 + 0.25 + 0.125
    assert float(x.detach()) == pytest.approx(1.875)


def test_load_state_dict_restores_adam_state_and_settings():
    def run(opt, x, grads):
        for g in grads:
            x.grad = g.clone()
            opt.step()

    grads = [torch.randn(4, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    x1 = torch.zeros(4, requires_grad=True)
    o1 = ClampedParameterOptimizer([x1], torch.optim.Adam, lr=0.05, clamp_min=-1.0, clamp_max=1.0)
    run(o1, x1, grads)  # uninterrupted

    x2 = torch.zeros(4, requires_grad=True)
    o2 = ClampedParameterOptimizer([x2], torch.optim.Adam, lr=0.05, clamp_min=-1.0, clamp_max=1.0)
    run(o2, x2, grads[:3])
    sd = copy.deepcopy(o2.state_dict())
    x3 = x2.detach().clone().requires_grad_(True)
    o3 = ClampedParameterOptimizer([x3], torch.optim.Adam, lr=999.0, clamp_min=-1.0, clamp_max=1.0)
    o3.load_state_dict(sd)
    assert o3.param_groups[0]["lr"] == 0.05 and o3.param_groups is o3.inner_opt.param_groups
    run(o3, x3, grads[3:])
    torch.testing.assert_close(x3, x1)


def test_add_param_group_is_validated_and_shared():
    x = torch.zeros(2, requires_grad=True)
    opt = ClampedParameterOptimizer([x], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    for bad, exc in [
        ({"clamp_min": 2.0, "clamp_max": 1.0}, ValueError),
        ({"clamp_min": float("nan")}, ValueError),
        ({"clamp_max": "1"}, TypeError),
        ({"clamp_min": None, "clamp_max": None}, ValueError),
    ]:
        with pytest.raises(exc):
            opt.add_param_group({"params": torch.zeros(2, requires_grad=True), **bad})
        assert len(opt.param_groups) == 1 == len(opt.inner_opt.param_groups)
    y = torch.full((2,), 9.0, requires_grad=True)
    opt.add_param_group({"params": y, "clamp_max": 3.0})
    assert len(opt.inner_opt.param_groups) == 2
    opt.step()
    torch.testing.assert_close(y.detach(), torch.full((2,), 3.0))


@pytest.mark.parametrize(
    "kw, exc",
    [
        ({}, ValueError),
        ({"clamp_min": float("nan")}, ValueError),
        ({"clamp_max": float("nan")}, ValueError),
        ({"clamp_min": "0"}, TypeError),
        ({"clamp_max": True}, TypeError),
        ({"clamp_min": 1.0, "clamp_max": 0.0}, ValueError),
        ({"clamp_min": 0.0, "param_ndim": 1.5}, TypeError),
        ({"clamp_min": 0.0, "param_ndim": 5}, ValueError),
        ({"clamp_min": 0.0, "grad_scale": None}, ValueError),
    ],
)
def test_construction_validates_every_setting(kw, exc):
    with pytest.raises(exc):
        ClampedParameterOptimizer([torch.zeros(2, 2, requires_grad=True)], lr=1.0, **kw)


def test_bad_inner_opt_and_params():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="InnerOpt"):
        ClampedParameterOptimizer([x], InnerOpt="SGD", clamp_min=0.0)
    with pytest.raises(TypeError, match="params"):
        ClampedParameterOptimizer(None, clamp_min=0.0, lr=1.0)
    with pytest.raises(TypeError, match="instance"):
        ClampedParameterOptimizer(InnerOpt=torch.optim.SGD([x], lr=1.0), clamp_min=0.0, lr=2.0)


def test_settings_edited_after_construction_are_checked_before_any_change():
    x = torch.full((2,), 0.5, requires_grad=True)
    opt = ClampedParameterOptimizer([x], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    opt.param_groups[0]["clamp_min"] = float("nan")
    x.grad = torch.ones(2)
    with pytest.raises(ValueError, match="NaN"):
        opt.step()
    torch.testing.assert_close(x.detach(), torch.full((2,), 0.5))  # untouched


def test_settings_edited_between_steps_are_checked_again():
    x = torch.full((2,), 0.5, requires_grad=True)
    opt = ClampedParameterOptimizer([x], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    x.grad = torch.full((2,), 0.1)
    opt.step()  # valid settings, remembered as validated
    opt.param_groups[0]["clamp_min"] = 2.0  # now above clamp_max
    x.grad = torch.ones(2)
    with pytest.raises(ValueError, match="exceeds"):
        opt.step()
    torch.testing.assert_close(x.detach(), torch.full((2,), 0.4))  # untouched by the bad step


def test_step_hooks_run_as_for_any_torch_optimizer():
    x = torch.full((2,), 0.5, requires_grad=True)
    opt = ClampedParameterOptimizer([x], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(("pre", x.detach().clone())))
    opt.register_step_post_hook(lambda o, a, k: seen.append(("post", x.detach().clone())))
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(
        lambda o, a, k: seen.append(("global", None))
    )
    try:
        x.grad = torch.full((2,), 1.0)
        opt.step()
    finally:
        handle.remove()
    # torch's global hook runs for the inner optimizer's step too (as with rai_toolbox)
    assert [k for k, _ in seen] == ["pre", "global", "post", "global"]
    torch.testing.assert_close(seen[0][1], torch.full((2,), 0.5))
    torch.testing.assert_close(seen[2][1], torch.zeros(2))  # after the step and the clamp
    opt.zero_grad()
    assert x.grad is None


def test_callers_defaults_are_not_mutated():
    defaults = {"clamp_min": 0.0}
    ClampedParameterOptimizer([torch.zeros(2, requires_grad=True)], lr=1.0, defaults=defaults)
    assert defaults == {"clamp_min": 0.0}
    group = {"params": [torch.zeros(2, requires_grad=True)]}
    ClampedParameterOptimizer([group], lr=1.0, clamp_max=1.0)
    assert set(group) == {"params"}


@pytest.mark.parametrize("dup", [copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))])
def test_deepcopy_and_pickle(dup):
    x = torch.full((3,), 0.5, requires_grad=True)
    opt = ClampedParameterOptimizer([x], torch.optim.Adam, lr=0.1, clamp_min=0.0, clamp_max=1.0)
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)  # patches opt.step on the instance
    x.grad = torch.ones(3)
    opt.step()
    twin = dup(opt)
    assert twin.param_groups is twin.inner_opt.param_groups and twin.state is twin.inner_opt.state
    px = twin.param_groups[0]["params"][0]
    assert px is not x and "exp_avg" in twin.state[px]
    px.grad = -torch.ones(3) * 100
    twin.step()
    torch.testing.assert_close(x.detach(), torch.full((3,), 0.4))  # original untouched
    assert torch.all(px <= 1.0)


# --------------------------------------------------------------------- invariants

INNER = {
    "sgd": (torch.optim.SGD, {"lr": 0.7}),
    "momentum": (torch.optim.SGD, {"lr": 0.7, "momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {"lr": 0.5}),
}
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(
    inner=st.sampled_from(sorted(INNER)),
    lo=st.floats(-10, 10),
    width=st.floats(0, 10),
    init=st.lists(finite, min_size=4, max_size=4),
    grads=st.lists(st.lists(finite, min_size=4, max_size=4), min_size=1, max_size=5),
)
def test_weights_never_leave_the_clamp_range(inner, lo, width, init, grads):
    hi = lo + width
    cls, kw = INNER[inner]
    x = torch.tensor(init, dtype=torch.float64, requires_grad=True)
    opt = ClampedParameterOptimizer([x], cls, clamp_min=lo, clamp_max=hi, **kw)
    for g in grads:
        x.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        assert torch.all(x >= lo) and torch.all(x <= hi), (x, lo, hi)


@given(
    lo=st.floats(-1, 0),
    hi=st.floats(0.01, 1),
    grads=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=1, max_size=4),
)
def test_one_sided_clamp_holds(lo, hi, grads):
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    oa = ClampedParameterOptimizer([a], lr=1.0, clamp_min=lo)
    ob = ClampedParameterOptimizer([b], lr=1.0, clamp_max=hi)
    for g in grads:
        a.grad = torch.tensor(g, dtype=torch.float64)
        b.grad = torch.tensor(g, dtype=torch.float64)
        oa.step()
        ob.step()
        assert torch.all(a >= lo) and torch.all(b <= hi)


def test_clamping_on_device(device):
    x = torch.full((4, 4), 0.5, device=device, requires_grad=True)
    opt = ClampedParameterOptimizer([x], lr=1.0, clamp_min=0.0, clamp_max=1.0)
    x.grad = torch.randn(4, 4, device=device) * 10
    opt.step()
    assert x.device.type == device.type and torch.all((x >= 0) & (x <= 1))


# ------------------------------------------------------------------- normalization


def test_normalize_rows_to_l1_target(device):
    w = torch.rand(10, 784, device=device, dtype=torch.float64)
    w[3] = 0.0
    normalize_(w, 78.0)
    sums = w.abs().sum(1)
    torch.testing.assert_close(
        sums[[i for i in range(10) if i != 3]],
        torch.full((9,), 78.0, device=device, dtype=torch.float64),
    )
    assert torch.all(w[3] == 0)  # a silent row is left alone, no NaN


def test_l1_normalized_optimizer_per_output_channel_for_conv_weights():
    w = torch.rand(4, 2, 3, 3, requires_grad=True)
    opt = L1NormalizedParameterOptimizer([w], lr=0.0, norm=5.0)
    opt.step()
    torch.testing.assert_close(w.detach().abs().sum((1, 2, 3)), torch.full((4,), 5.0))
    with pytest.raises(ValueError, match="norm"):
        L1NormalizedParameterOptimizer([torch.ones(2, requires_grad=True)], lr=1.0, norm=0.0)
    with pytest.raises(ValueError, match="norm"):
        L1NormalizedParameterOptimizer([torch.ones(2, requires_grad=True)], lr=1.0)


def test_chain_normalize_then_clamp_and_validation():
    w = torch.tensor([[0.2, 0.2, 0.6], [1.0, 1.0, 2.0]], requires_grad=True)
    opt = ChainedParamTransformingOptimizer(
        functools.partial(L1NormalizedParameterOptimizer, norm=1.0),
        functools.partial(ClampedParameterOptimizer, clamp_min=0.0, clamp_max=0.4),
        params=[w],
        lr=1.0,
    )
    w.grad = torch.zeros_like(w)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([[0.2, 0.2, 0.4], [0.25, 0.25, 0.4]]))
    assert "ClampedParameterOptimizer ○ L1NormalizedParameterOptimizer [SGD]" in repr(opt)
    with pytest.raises(ValueError, match="norm"):
        opt.add_param_group({"params": torch.ones(2, 2, requires_grad=True), "norm": -1.0})
    with pytest.raises(ValueError, match="clamp"):
        opt.add_param_group(
            {"params": torch.ones(2, 2, requires_grad=True), "clamp_min": 1.0, "clamp_max": 0.0}
        )
    assert len(opt.param_groups) == 1
    with pytest.raises(TypeError):
        ChainedParamTransformingOptimizer(torch.optim.SGD, params=[w], lr=1.0)


def test_chain_of_rai_style_gradient_clamp():
    x1 = torch.ones(3, requires_grad=True)
    optim = ChainedParamTransformingOptimizer(
        functools.partial(ClampedGradientOptimizer, clamp_max=2.8),
        params=[x1],
        lr=1.0,
        param_ndim=None,
    )
    (torch.tensor([1.0, 2.0, 3.0]) * x1).sum().backward()
    optim.step()
    torch.testing.assert_close(x1.grad, torch.tensor([1.0, 2.0, 2.8]))
    torch.testing.assert_close(x1.detach(), torch.tensor([0.0, -1.0, -1.8]))
    c = copy.deepcopy(optim)
    assert c._chain[0].param_groups is c.inner_opt.param_groups


@pytest.mark.parametrize(
    "make, header",
    [
        (lambda x: ParamTransformingOptimizer([x], lr=0.1), "ParamTransformingOptimizer [SGD]("),
        (
            lambda x: ClampedParameterOptimizer([x], lr=0.1, clamp_min=0.0, clamp_max=1.0),
            "ClampedParameterOptimizer [SGD](",
        ),
        (
            lambda x: ClampedParameterOptimizer([x], torch.optim.Adam, lr=0.1, clamp_min=0.0),
            "ClampedParameterOptimizer [Adam](",
        ),
        (
            lambda x: ClampedGradientOptimizer([x], lr=0.1, clamp_max=1.0),
            "ClampedGradientOptimizer [SGD](",
        ),
        (
            lambda x: L1NormalizedParameterOptimizer([x], lr=0.1, norm=1.0),
            "L1NormalizedParameterOptimizer [SGD](",
        ),
        (
            lambda x: ChainedParamTransformingOptimizer(
                functools.partial(L1NormalizedParameterOptimizer, norm=1.0),
                functools.partial(ClampedParameterOptimizer, clamp_min=0.0, clamp_max=0.4),
                params=[x],
                lr=1.0,
            ),
            "ClampedParameterOptimizer ○ L1NormalizedParameterOptimizer [SGD](",
        ),
    ],
)
def test_repr_header_is_rai_toolboxs(make, header):
    """rai_toolbox: ``Optimizer.__repr__`` with its first "(" replaced by "[Inner](", so
    torch's "Name (" becomes "Name [SGD](" (one space, none before the parenthesis); the
    parameter groups follow as torch prints them."""
    opt = make(torch.ones(2, 3, requires_grad=True))
    text = repr(opt)
    assert text.split("\n", 1)[0] == header
    assert text.split("\n", 1)[1] == torch.optim.Optimizer.__repr__(opt).split("\n", 1)[1]
