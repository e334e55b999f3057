r"""e-prop (Bellec et al. 2020, Nat Commun 11:3625) for an ``snn.RLeaky`` and a leaky readout.

Three rules in the rule language learn the three weight matrices of a recurrent network
together, from a learning signal computed from the readout's error at every step:

* input ``nn.Linear`` and recurrent ``.recurrent`` synapses: the eligibility trace of a
  LIF neuron, :math:`e_{ji}^t = \psi_j^t \bar z_i^{t}` (:math:`\bar z` the presynaptic
  spikes low-passed with the membrane's leak :math:`\alpha`), filtered with the readout's
  leak :math:`\kappa` and read out by the learning signal :math:`L_j^t`;
* readout ``nn.Linear``: the error times the spikes low-passed with :math:`\kappa`.

In snnTorch's indexing (the input :math:`x^t` and the recurrent spikes of the previous
step :math:`z^{t-1}` both enter :math:`v^t`), the presynaptic trace of a synapse at step
:math:`t` is the paper's :math:`\bar z^{t-1}` for the recurrent weights and its
:math:`\bar x^{t}` for the inputs: ``pre.trace(tau_m)`` of each synapse, no offset.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .._grad import no_grad
from ..hooks import output_spikes, output_voltage
from ..language import eligibility, post, pre, relu
from .base import PlasticityRule
from .checks import _choice, check_amplitude, check_positive
from .inputs import _as_values

__all__ = ["EProp"]


def _leak(neuron: nn.Module, what: str) -> float:
    """The neuron's scalar ``beta`` in (0, 1), or a clear error naming ``what``."""
    beta = getattr(neuron, "beta", None)
    if not isinstance(beta, Tensor) or beta.numel() != 1:
        raise ValueError(f"`{what}` needs one scalar `beta` (the leak), got {beta!r}")
    value = float(beta.detach().clamp(0, 1))
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{what}`.beta must be in (0, 1) (a leak), got {value}")
    return value


def _check_layer(layer: nn.Module) -> float:
    """A recurrent LIF layer whose ψ e-prop computes exactly; its threshold."""
    import snntorch as snn

    if not isinstance(layer, snn.RLeaky) or not isinstance(
        getattr(layer, "recurrent", None), nn.Linear
    ):
        raise TypeError(
            f"`layer` must be an snn.RLeaky(all_to_all=True, linear_features=N), got "
            f"{type(layer).__name__}: e-prop learns a recurrent layer's input and recurrent "
            "weights (an adaptive-threshold layer, ALIF, is not in snnTorch)"
        )
    if layer.reset_mechanism != "subtract" or not layer.reset_delay:
        raise ValueError(
            "`layer` must reset by subtraction one step after a spike (the paper's "
            "v^t = α v^{t-1} + ... − z^{t-1} v_th): build it with reset_mechanism='subtract' "
            f"and reset_delay=True, got {layer.reset_mechanism!r}, reset_delay={layer.reset_delay}"
        )
    if layer.inhibition or layer.state_quant or float(layer.graded_spikes_factor) != 1.0:
        raise ValueError("`layer` must fire plain 0/1 spikes (no inhibition, state_quant or "
                         "graded_spikes_factor)")  # fmt: skip
    threshold = layer.threshold
    if not isinstance(threshold, Tensor) or threshold.numel() != 1 or float(threshold) <= 0:
        raise ValueError(f"`layer` needs one scalar threshold > 0, got {threshold!r}")
    return float(threshold)


def _mask(mask: bool | Tensor, y: Tensor) -> Tensor:
    """``target()``'s ``mask`` as a ``[B, 1]`` column of 0/1 in ``y``'s dtype, or a clear
    error naming ``mask``."""
    if isinstance(mask, bool):
        return y.new_full((1, 1), float(mask))
    batch = y.shape[0]
    what = f"True, False or a tensor of shape [{batch}] (one per sample)"
    if not isinstance(mask, Tensor):
        raise TypeError(f"`mask` must be {what}, got {type(mask).__name__}")
    if tuple(mask.shape) != (batch,):
        raise ValueError(f"`mask` must be {what}, got shape {tuple(mask.shape)}")
    m = mask.detach().to(device=y.device, dtype=y.dtype)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("`mask` must hold 0/1 (or bool) values")
    return m[:, None]


def _scale_window(rule: PlasticityRule, factor: float) -> None:
    """Multiplies what ``rule``'s accumulator holds for the window by ``factor`` > 0 (exact
    for every positively homogeneous reduction: sum, mean, max, min, median)."""
    acc = rule.accumulator
    for which in ("pos", "neg"):
        buf = acc._buffers[f"{which}_acc"]
        if buf is not None:
            buf.mul_(factor)
        for value in acc._lists[which]:
            value.mul_(factor)


class _Synapses(PlasticityRule):
    r"""The input or recurrent synapses of the layer: :math:`g_{ji} = \sum_t L_j^t \bar e_{ji}^t`
    (``neg``, so that ``step()`` writes :math:`g` into ``.grad``), and, with ``c_reg``,
    :math:`\sum_t e_{ji}^t` of the window (the extra ``"reg"``)."""

    def __init__(self, synapse: nn.Module, neuron: nn.Module, *, gamma: float, width: float,
                 threshold: float, tau_m: float, tau_out: float, reg: bool, gain: float,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(synapse, neuron, time_constants={"tau_m": tau_m, "tau_out": tau_out},
                         **options)  # fmt: skip
        self.gamma, self.width, self.threshold = gamma, width, threshold
        self.tau_m, self.tau_out, self.reg, self.gain = tau_m, tau_out, reg, gain
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        theta = self.threshold
        # ψ_j^t = (γ / v_th) max(0, 1 − |v_j^t − v_th| / (width · v_th))
        psi = (self.gamma / theta) * relu(1.0 - abs(post.voltage - theta) / (self.width * theta))
        e = psi * pre.trace(self.tau_m)  # e_ji^t = ψ_j^t z̄_i
        # ē = κ ē + e (gain 1), or NEST's κ ē + (1 − κ) e (normalize_filter: gain 1 − κ)
        out: dict[str, Any] = {
            "neg": self.gain * post.signal("L") * eligibility(e, self.tau_out, per_sample=True)
        }
        if self.reg:
            out["extra"] = {"reg": (e, False)}  # Σ_b Σ_t e_bji^t
        return out


class _Readout(PlasticityRule):
    r"""The readout synapses: :math:`g_{kj} = \sum_t \delta_k^t \bar z_j^t` with
    :math:`\bar z` low-passed with :math:`\kappa` (``neg``)."""

    def __init__(self, synapse: nn.Module, neuron: nn.Module, *, tau_out: float,
                 **options: Any) -> None:  # fmt: skip
        super().__init__(synapse, neuron, time_constants={"tau_out": tau_out}, **options)
        self.tau_out = tau_out
        self._finish_init()

    def declaration(self) -> dict[str, Any]:
        return {"neg": post.signal("error") * pre.trace(self.tau_out)}


class EProp(nn.Module):
    r"""e-prop (Bellec et al. 2020) on a recurrent snnTorch layer and a leaky readout.

    The network, per step :math:`t` (snnTorch's ``RLeaky``, reset by subtraction, and a
    leaky readout without reset, ``snn.Leaky(beta=kappa, reset_mechanism="none")``):

    .. math::
        v_j^t = \alpha v_j^{t-1} + \sum_i W^\text{in}_{ji} x_i^t
            + \sum_i W^\text{rec}_{ji} z_i^{t-1} - z_j^{t-1} v_\text{th}, \quad
        z_j^t = H(v_j^t - v_\text{th}), \quad
        y_k^t = \kappa y_k^{t-1} + \sum_j W^\text{out}_{kj} z_j^t.

    After each step's forward pass, ``rule.target(y_star)`` gives the target
    :math:`y^{*t}` ([B, K]); the rule computes the error :math:`\delta_k^t = y_k^t - y_k^{*t}`
    (``loss="mse"``) or :math:`\pi_k^t - \pi_k^{*t}`, :math:`\pi^t = \mathrm{softmax}(y^t)`
    (``loss="cross_entropy"``, ``y_star`` the target probabilities), and feeds the learning
    signal :math:`L_j^t = \sum_k B_{jk} \delta_k^t` to the input and recurrent rules, whose
    eligibility traces are per sample:

    .. math::
        \psi_j^t = \frac{\gamma}{v_\text{th}} \max\Big(0, 1 - \frac{|v_j^t - v_\text{th}|}
            {\text{width}\cdot v_\text{th}}\Big), \quad
        e_{ji}^t = \psi_j^t \bar z_i^{t}, \quad
        \bar e_{ji}^t = \kappa \bar e_{ji}^{t-1} + e_{ji}^t,

    .. math::
        g^\text{in/rec}_{ji} = \sum_t L_j^t \bar e_{ji}^t
            + c_\text{reg} \frac{f_j - f^\text{target} dt}{T} \sum_t e_{ji}^t, \qquad
        g^\text{out}_{kj} = \sum_t \delta_k^t \bar z_j^t,

    :math:`\bar z` the presynaptic spikes low-passed with :math:`\alpha` (``beta`` of the
    layer; for the readout with :math:`\kappa`), :math:`f_j` the neuron's spikes per step
    in the window (averaged over the batch; NEST's form), each sum over the samples reduced
    by ``batch_reduction``; ``target(y_star, mask)`` zeroes :math:`\delta^t` where the step
    is outside the learning window. ``step()`` ends the window (a sequence): it adds
    :math:`g` to the three weights' ``.grad`` (any torch optimizer applies them: SGD, Adam)
    and starts the next window from zero traces (NEST's ``_bsshslm_2020`` models); biases do not learn.

    Args:
        inputs: the input ``nn.Linear`` into ``layer``.
        layer: ``snn.RLeaky(all_to_all=True, linear_features=N)``, reset by subtraction.
        readout: the readout ``nn.Linear(N, K)``.
        readout_neuron: ``snn.Leaky(beta=kappa, reset_mechanism="none")``: its membrane is
            :math:`y`, its ``beta`` is :math:`\kappa`.
        gamma: the pseudo-derivative's height :math:`\gamma` (> 0), 0.3 in the paper.
        width: its half-width in units of :math:`v_\text{th}` (> 0), 1 in the paper.
        c_reg: the firing-rate regularization coefficient (>= 0; 0: none).
        f_target: the target rate, spikes per unit of ``dt`` (0.01: 10 Hz with ``dt`` in ms).
        feedback: ``"symmetric"`` (:math:`B = W^{\text{out}\top}`, the weights of the window)
            or ``"random"`` (fixed, :math:`\mathcal N(0, 1/N)`, drawn with ``generator``;
            ``rule.feedback`` [K, N] holds it; copy your own B into it to fix another).
        loss: ``"mse"`` or ``"cross_entropy"``.
        normalize_filter: filter the eligibility with unit gain,
            :math:`\bar e^t = \kappa \bar e^{t-1} + (1 - \kappa) e^t` (NEST's form: the
            learning-signal term times :math:`1 - \kappa`) instead of the paper's sum.
        average_gradient: divide the window's three gradients (with the regularization) by
            its number of learning steps, the steps whose ``target()`` mask was not all 0
            (NEST's ``average_gradient``: by its learning window); default: sums.
        **options: ``dt``, ``batch_reduction``, ``chunk_size``, ``kernel`` as for
            :class:`~plasticity.STDP`.

    Example:
        >>> import torch, snntorch as snn
        >>> import plasticity as pl
        >>> fc = torch.nn.Linear(3, 4, bias=False)
        >>> rlif = snn.RLeaky(beta=0.9, linear_features=4)
        >>> out, readout = torch.nn.Linear(4, 1, bias=False), snn.Leaky(beta=0.8, reset_mechanism="none")
        >>> rule = pl.EProp(fc, rlif, out, readout)
        >>> spk, mem = rlif.init_rleaky()
        >>> y = readout.init_leaky()
        >>> for t in range(5):
        ...     spk, mem = rlif(fc(torch.ones(2, 3)), spk, mem)
        ...     _, y = readout(out(spk), y)
        ...     rule.target(torch.zeros(2, 1))          # y*(t), after the forward pass
        >>> sorted(rule.step())                          # the three Δw; .grad holds −Δw
        ['input', 'readout', 'recurrent']
    """

    def __init__(self, inputs: nn.Linear, layer: nn.Module, readout: nn.Linear,
                 readout_neuron: nn.Module, *, gamma: float = 0.3, width: float = 1.0,
                 c_reg: float = 0.0, f_target: float = 0.01, feedback: str = "symmetric",
                 loss: str = "mse", normalize_filter: bool = False,
                 average_gradient: bool = False, generator: torch.Generator | None = None,
                 **options: Any) -> None:  # fmt: skip
        """Builds the three rules and registers their hooks; arguments: ``help(pl.EProp)``."""
        theta = _check_layer(layer)
        for name, module in (("inputs", inputs), ("readout", readout)):
            if not isinstance(module, nn.Linear):
                raise TypeError(f"`{name}` must be an nn.Linear, got {type(module).__name__}")
        n = layer.recurrent.in_features
        if inputs.out_features != n or readout.in_features != n:
            raise ValueError(f"`inputs` must have {n} outputs and `readout` {n} inputs (the "
                             f"layer's neurons), got {inputs.out_features} and {readout.in_features}")  # fmt: skip
        if getattr(readout_neuron, "reset_mechanism", None) != "none":
            raise ValueError("`readout_neuron` must integrate without reset: "
                             "snn.Leaky(beta=kappa, reset_mechanism='none')")  # fmt: skip
        gamma, width = check_positive("gamma", gamma), check_positive("width", width)
        c_reg, f_target = check_amplitude("c_reg", c_reg), check_amplitude("f_target", f_target)
        _choice("feedback", feedback, ("symmetric", "random"))
        _choice("loss", loss, ("mse", "cross_entropy"))
        for name, flag in (("normalize_filter", normalize_filter),
                           ("average_gradient", average_gradient)):  # fmt: skip
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be True or False, got {flag!r}")
        dt = check_positive("dt", options.get("dt", 1.0))
        alpha, kappa = _leak(layer, "layer"), _leak(readout_neuron, "readout_neuron")
        tau_m, tau_out = -dt / math.log(alpha), -dt / math.log(kappa)
        super().__init__()
        common = dict(gamma=gamma, width=width, threshold=theta, tau_m=tau_m, tau_out=tau_out,
                      reg=c_reg > 0, gain=1.0 - kappa if normalize_filter else 1.0, **options)  # fmt: skip
        self.input_rule = _Synapses(inputs, layer, **common)
        self.recurrent_rule = _Synapses(layer.recurrent, layer, **common)
        self.readout_rule = _Readout(readout, readout_neuron, tau_out=tau_out, **options)
        self.gamma, self.width, self.c_reg, self.f_target = gamma, width, c_reg, f_target
        self.loss, self.dt, self.kappa, self.alpha = loss, dt, kappa, alpha
        self.normalize_filter, self.average_gradient = normalize_filter, average_gradient
        w = readout.weight
        if feedback == "random":
            b = torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(n)
            self.register_buffer("feedback", b.to(w.device))
        else:
            self.feedback = None
        self.__dict__["_readout"], self.__dict__["_layer"] = readout, layer
        self._y: Tensor | None = None  # the readout of the step just simulated, until target()
        self._counts: Tensor | None = None  # spikes per neuron in the window (all samples)
        self._steps = 0
        self._learning_steps = 0  # steps of the window whose error counted (mask not all 0)
        self._handles: list = []
        self.attach()

    # ------------------------------------------------------------------------ hooks

    @property
    def rules(self) -> dict[str, PlasticityRule]:
        """The rules of the three synapses: ``input``, ``recurrent``, ``readout``."""
        return {"input": self.input_rule, "recurrent": self.recurrent_rule,
                "readout": self.readout_rule}  # fmt: skip

    def attach(self) -> None:
        """Registers the hooks (again, after :meth:`detach`)."""
        for rule in self.rules.values():
            rule.attach()
        if not self._handles:
            self._handles = [self._readout_neuron().register_forward_hook(self._on_readout),
                             self._layer.register_forward_hook(self._on_layer)]  # fmt: skip

    def detach(self) -> None:
        """Removes every hook; ``step()`` still applies what was accumulated."""
        for rule in self.rules.values():
            rule.detach()
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _readout_neuron(self) -> nn.Module:
        return self.readout_rule.neuron

    def _on_layer(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self.input_rule.learning:
            return
        s = output_spikes(output, "layer").detach()
        counts = s.reshape(-1, s.shape[-1]).sum(0)
        self._counts = counts if self._counts is None else self._counts + counts
        self._steps += 1

    def _on_readout(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.readout_rule.learning:
            self._y = output_voltage(output, module)

    # ------------------------------------------------------------------- learning

    @no_grad
    def target(self, y_star: Any, mask: bool | Tensor = True) -> None:
        """The target :math:`y^{*t}` of the step just simulated (``[B, K]``; with
        ``loss="cross_entropy"`` the target probabilities, e.g. one-hot): call it after
        the step's forward pass, once per step. ``mask``: whether this step's error counts
        (``False`` outside the learning window, e.g. before a classification's recall
        phase: the error, and so the learning signal, is zero there, whatever ``y_star``
        holds), or a ``[B]`` tensor of 0/1 per sample. A wrong shape, a bool ``y_star``,
        NaN or infinity is an error naming the argument, and nothing is changed. Ignored in
        eval mode."""
        if not self.readout_rule.learning:
            return
        y = self._y
        if y is None:
            raise RuntimeError("target() belongs to the step just simulated, and the readout "
                               "has not run since the last target(): call it once per step, "
                               "after the forward pass")  # fmt: skip
        t = _as_values(y_star, "`y_star`", y, f"a [B, K] = {list(y.shape)} tensor")
        if tuple(t.shape) != tuple(y.shape):
            raise ValueError(f"`y_star` has shape {tuple(t.shape)}; expected [B, K] = "
                             f"{list(y.shape)} (the readout's shape)")  # fmt: skip
        if not bool(torch.isfinite(t).all()):
            raise ValueError("`y_star` contains NaN or infinity")
        m = _mask(mask, y)
        error = ((torch.softmax(y, -1) if self.loss == "cross_entropy" else y) - t) * m
        self._learning_steps += bool(m.any())
        b = self._readout.weight if self.feedback is None else self.feedback
        signal = error @ b.detach().to(error.dtype)  # L_j = Σ_k B_jk δ_k
        self.readout_rule.feed(error=error)
        self.input_rule.feed(L=signal)
        self.recurrent_rule.feed(L=signal)
        self._y = None

    @no_grad
    def step(self) -> dict[str, Tensor | None]:
        """Ends the window: adds each weight's gradient estimate to its ``.grad`` and
        returns the three ``Δw`` (``-g``; ``None`` where nothing was learned); the next
        window starts from zero traces and eligibility traces."""
        if self._y is not None:
            raise ValueError("the last step has no target: call rule.target(y_star) after "
                             "its forward pass, before step()")  # fmt: skip
        for rule in (self.input_rule, self.recurrent_rule):
            rule.flush()
            self._regularize(rule)
        if self.average_gradient and self._learning_steps:
            for rule in self.rules.values():
                rule.flush()
                _scale_window(rule, 1.0 / self._learning_steps)
        out = {name: rule.step() for name, rule in self.rules.items()}
        self._clear()
        return out

    def _regularize(self, rule: PlasticityRule) -> None:
        """Adds the firing-rate term :math:`c_\\text{reg} (f_j - f^\\text{target} dt) / T
        \\sum_t e_{ji}^t` of the window (reduced over the batch) to the rule's gradient."""
        reg = rule._extras.pop("reg", None)
        if reg is None or self._counts is None or not self._steps:
            return
        batch = rule._batch or 1
        rate = self._counts.to(reg) / (batch * self._steps)  # f_j, spikes per step
        factor = self.c_reg * (rate - self.f_target * self.dt) / self._steps
        grad = reg * factor.view(-1, *([1] * (reg.ndim - 1))) * rule._scale
        rule.accumulator.add_("pos", (-grad).clamp_min(0), merge=True)
        rule.accumulator.add_("neg", grad.clamp_min(0), merge=True)

    @no_grad
    def reset(self) -> None:
        """Zeroes the traces and eligibility traces (a new sequence); what the window
        learned so far stays for ``step()``."""
        for rule in self.rules.values():
            rule.reset()
            rule._state = None
        self._y = None

    def _clear(self) -> None:
        self.reset()
        self._counts, self._steps, self._learning_steps = None, 0, 0

    def extra_repr(self) -> str:
        kind = "symmetric" if self.feedback is None else "random"
        return (f"gamma={self.gamma}, width={self.width}, c_reg={self.c_reg}, "
                f"f_target={self.f_target}, feedback={kind!r}, loss={self.loss!r}, "
                f"normalize_filter={self.normalize_filter}, "
                f"average_gradient={self.average_gradient}, "
                f"alpha={self.alpha:.6g}, kappa={self.kappa:.6g}")  # fmt: skip
