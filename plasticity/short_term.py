r"""Short-term plasticity: Tsodyks–Markram depression and facilitation of a synapse's input.

:class:`ShortTermPlasticity` scales each presynaptic neuron's spikes by its release
:math:`u\,x` before the synapse sees them; :func:`tsodyks_markram` is the per-step math,
a function of tensors. Not an accumulator rule: nothing learns, no weight changes; the
synapse's *input* is scaled, so any learning rule on the same synapse still sees the raw
spikes (rules' pre-hooks run first) while the neuron receives the depressed or
facilitated drive.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ._grad import eagerly, in_backward, run_eagerly, traced
from .rules.checks import _real
from .rules.checks import check_positive as _positive
from .synapses import ConvSynapse, synapse_adapter

__all__ = ["ShortTermPlasticity", "tsodyks_markram"]

SPIKE_POLICIES = ("binary", "graded")




@torch.no_grad()
def tsodyks_markram(
    spikes: Tensor,
    u: Tensor | None,
    x: Tensor,
    *,
    U: float,
    decay_fac: float,
    decay_rec: float,
    graded: bool = False,
) -> Tensor:
    r"""Runs the Tsodyks–Markram recurrence over ``spikes`` ``[T, B, *in]``, in place on the
    state; returns the release factors :math:`u\,x` of every step (``[T, B, *in]``).

    Per step: relax (:math:`u \leftarrow U + (u - U)\,d_f`, :math:`x \leftarrow 1 + (x - 1)\,d_r`),
    release :math:`r = u\,x` (the factor returned), then where a spike is:
    :math:`x \leftarrow x - u\,x`, :math:`u \leftarrow u + U(1 - u)`. ``u=None``: the
    depressing limit, :math:`u \equiv U`. ``graded``: any nonzero value is a spike for the
    state (``spikes`` need not be 0/1). ``u``/``x`` are ``[B, *in]`` in the spikes' dtype.

    Example:
        >>> import torch
        >>> x = torch.ones(1, 1)
        >>> tsodyks_markram(torch.ones(3, 1, 1), None, x, U=0.5, decay_fac=0.0, decay_rec=0.0)
        tensor([[[0.5000]],
        <BLANKLINE>
                [[0.5000]],
        <BLANKLINE>
                [[0.5000]]])
    """
    factors = torch.empty_like(spikes)
    for t in range(spikes.shape[0]):
        s = spikes[t]
        if graded:
            s = (s != 0).to(spikes.dtype)
        if decay_rec != 1.0:
            x.sub_(1.0).mul_(decay_rec).add_(1.0)
        if u is None:
            release = torch.mul(x, U, out=factors[t])
        else:
            if decay_fac != 1.0:
                u.sub_(U).mul_(decay_fac).add_(U)
            release = torch.mul(u, x, out=factors[t])
        x.addcmul_(release, s, value=-1.0)
        if u is not None:
            u.addcmul_(s, 1.0 - u, value=U)
    return factors


class ShortTermPlasticity(nn.Module):
    r"""Tsodyks–Markram short-term depression and facilitation of a synapse's input.

    Each presynaptic neuron (``nn.Linear``: each input feature; conv: each input channel
    and position; each sample of a batch its own) carries a utilization :math:`u` and a
    fraction of available resources :math:`x`. Between spikes they relax exactly,
    :math:`u \to U` with :math:`\tau_\text{fac}` and :math:`x \to 1` with
    :math:`\tau_\text{rec}`:

    .. math::
        u(t + \Delta) = U + (u(t) - U)\,e^{-\Delta/\tau_\text{fac}}, \qquad
        x(t + \Delta) = 1 + (x(t) - 1)\,e^{-\Delta/\tau_\text{rec}},

    and at a spike the synapse receives :math:`u^- x^-` times the spike, after which

    .. math::
        x^+ = x^- - u^- x^-, \qquad u^+ = u^- + U\,(1 - u^-).

    This is Tsodyks, Pawelzik & Markram (1998) and Markram, Wang & Tsodyks (1998) exactly
    (NEST's ``tsodyks2_synapse``, Brian2's and ANNarchy's STP examples): written with their
    :math:`u_n` (the utilization of the n-th spike, relaxing to 0 after its jump), the
    n-th release is :math:`u_n R_n` with :math:`u_1 = U`, :math:`R_1 = 1` and

    .. math::
        u_{n+1} = U + (1 - U)\,u_n\,e^{-\Delta_n/\tau_\text{fac}}, \qquad
        R_{n+1} = 1 - (1 - R_n (1 - u_n))\,e^{-\Delta_n/\tau_\text{rec}};

    our :math:`u` just before a spike is their :math:`u_n`, our :math:`x` their
    :math:`R_n`. In NEST's order for a utilization :math:`m = (u - U)/(1 - U)` that
    relaxes to 0: :math:`m^+ = m^- + U(1 - m^-)`, release :math:`m^+ x^-`,
    :math:`x^+ = x^- - m^+ x^-` (the same numbers, since :math:`m^+ = u^-`). The first
    spike from rest releases :math:`U` (that jump applied to a :math:`u` relaxing to
    :math:`U` would release :math:`U(2 - U)`; we do not do that). ``tau_fac=None`` (or 0)
    is the depressing synapse of Tsodyks & Markram (1997): :math:`u \equiv U`. Resources
    recover straight from the released pool (the two-state model; the three-state
    ``tsodyks_synapse`` of NEST also waits :math:`\tau_\text{inact}` in between).

    A step is: relax by ``dt``, transmit, jump; a spike at step :math:`k` and the next at
    step :math:`k + n` are :math:`\Delta = n\,dt` apart, so the recurrence is exact at any
    ``dt``. The synapse sees the scaled spikes in its weight's dtype; gradients flow
    through the spikes (the state is a constant for autograd). Nothing is learned: the
    module acts the same in training and in eval mode (it is part of the forward dynamics,
    like a neuron's membrane) until :meth:`detach`.

    Args:
        synapse: ``nn.Linear`` or ``nn.Conv1d/2d/3d`` whose input is scaled (a forward
            pre-hook). Learning rules on the same synapse see the raw spikes, whichever is
            built first (their pre-hooks are registered with ``prepend=True``).
        U: utilization increment, the release of a first spike from rest, in (0, 1].
        tau_rec: recovery time constant of the resources, in the units of ``dt`` (> 0).
        tau_fac: facilitation time constant (> 0), or ``None``/0 for a purely depressing
            synapse (:math:`u = U`).
        dt: the simulation step (> 0). Defaults to 1.
        spikes: ``"binary"`` (default: values other than 0 and 1 are a ``ValueError``) or
            ``"graded"``: any finite value; a nonzero value is a spike of that amplitude
            (the synapse receives :math:`s\,u\,x`, and the state jumps as for one spike).

    Shape:
        The synapse's input: ``[B, N]`` or ``[N]`` per step, ``[T, B, N]`` a sequence
        (processed step by step, exactly as T calls); conv ``[B, C, *spatial]`` (or
        unbatched ``[C, *spatial]``). State :attr:`u`, :attr:`x`: ``[B, *in]``.

    Example:
        >>> import torch
        >>> import plasticity as pl
        >>> fc = torch.nn.Linear(2, 1, bias=False)
        >>> _ = torch.nn.init.ones_(fc.weight)
        >>> stp = pl.ShortTermPlasticity(fc, U=0.5, tau_rec=800.0)   # depressing
        >>> spikes = torch.tensor([[1.0, 0.0]]).repeat(3, 1, 1)       # [T=3, B=1, N=2]
        >>> [round(v, 4) for v in fc(spikes).flatten().tolist()]   # U, then depressed
        [0.5, 0.2503, 0.1256]
        >>> stp.x                      # the silent input keeps its resources
        tensor([[0.1256, 1.0000]])
        >>> stp.reset(); stp.detach()
    """

    def __init__(
        self,
        synapse: nn.Module,
        *,
        U: float,
        tau_rec: float,
        tau_fac: float | None = None,
        dt: float = 1.0,
        spikes: str = "binary",
    ) -> None:
        """Builds the module and registers its hook; arguments: ``help(plasticity.ShortTermPlasticity)``."""
        adapter = synapse_adapter(synapse)
        U = _real("U", U)
        if not 0.0 < U <= 1.0:
            raise ValueError(f"`U` must be in (0, 1] (a release fraction), got {U}")
        tau_rec = _positive("tau_rec", tau_rec)
        if tau_fac is not None:
            tau_fac = _real("tau_fac", tau_fac)
            if tau_fac < 0:
                raise ValueError(
                    f"`tau_fac` must be >= 0 (0 or None: no facilitation), got {tau_fac}"
                )
            tau_fac = tau_fac or None
        dt = _positive("dt", dt)
        if spikes not in SPIKE_POLICIES:
            raise ValueError(f"`spikes` must be 'binary' or 'graded'; got {spikes!r}")
        super().__init__()
        self._params = (U, tau_rec, tau_fac, dt)
        self._decay_rec = math.exp(-dt / tau_rec)
        self._decay_fac = 0.0 if tau_fac is None else math.exp(-dt / tau_fac)
        self.spikes = spikes
        self.__dict__["_adapter"] = adapter
        self._u: Tensor | None = None
        self._x: Tensor | None = None
        self._handles: list = []
        self.attach()

    # ------------------------------------------------------------------ parameters

    U = property(lambda self: self._params[0], doc="Utilization increment (first release).")
    tau_rec = property(lambda self: self._params[1], doc="Recovery time constant.")
    tau_fac = property(lambda self: self._params[2], doc="Facilitation time constant or None.")
    dt = property(lambda self: self._params[3], doc="The simulation step.")

    @property
    def facilitating(self) -> bool:
        """Whether :math:`u` has dynamics (``tau_fac`` set); else :math:`u \\equiv U`."""
        return self.tau_fac is not None

    @property
    def synapse(self) -> nn.Module:
        """The synapse whose input is scaled."""
        return self._adapter.module

    # ---------------------------------------------------------------------- state

    @property
    def x(self) -> Tensor | None:
        """Available resources after the latest step, ``[B, *in]`` (``None`` at rest)."""
        return None if self._x is None else self._x.clone()

    @property
    def u(self) -> Tensor | None:
        """Utilization after the latest step, ``[B, *in]`` (``None`` at rest)."""
        if self._x is None:
            return None
        return self._u.clone() if self._u is not None else torch.full_like(self._x, self.U)

    def reset(self) -> None:
        """Back to rest (:math:`u = U`, :math:`x = 1`), e.g. between samples; the next
        input may have another batch size."""
        self._u = self._x = None

    # --------------------------------------------------------------------- wiring

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        """Registers the hook (again, after :meth:`detach`; a copy of an attached module is
        attached to the copied synapse already)."""
        if not self._handles:
            run_eagerly(ShortTermPlasticity, "_on_pre")  # outside torch.compile graphs
            self._handles = [self.synapse.register_forward_pre_hook(self._on_pre, with_kwargs=True)]

    def detach(self) -> None:
        """Removes the hook: the synapse sees its raw input again (the state is kept)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _on_pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if traced():  # by torch.compile: run outside its graph
            return eagerly(ShortTermPlasticity._on_pre, self, module, args, kwargs)
        if in_backward():
            raise RuntimeError(
                "ShortTermPlasticity: the synapse's forward pass is being recomputed during "
                "backward (activation checkpointing, torch.utils.checkpoint); the release "
                "state has moved on since that step, so the recomputation would not match the "
                "forward pass. Keep the synapse with short-term plasticity outside the "
                "checkpointed part of the network"
            )
        if torch.is_inference_mode_enabled():  # the state must outlive the context
            with torch.inference_mode(False):
                return self._on_pre(module, args, kwargs)
        if args:
            return (self.transmit(args[0]), *args[1:]), kwargs
        if "input" not in kwargs:
            raise TypeError("the synapse was called without an input tensor")
        return args, {**kwargs, "input": self.transmit(kwargs["input"])}

    def transmit(self, spikes: Tensor) -> Tensor:
        """The spikes scaled by their release (what the hook hands the synapse); advances
        the state. Checks everything before changing anything."""
        if not isinstance(spikes, Tensor):
            raise TypeError(f"the synapse's input is {type(spikes).__name__}, not a spike tensor")
        w = self._adapter.weight
        if spikes.device != w.device:
            raise ValueError(
                f"the synapse's input is on {spikes.device} but its weight on {w.device}"
            )
        block = self._adapter.pre_steps(spikes)  # [T, B, *in] view (validates the shape)
        if isinstance(self._adapter, ConvSynapse) and spikes.ndim == self._adapter.k + 3:
            raise ValueError(
                f"the conv synapse's input has shape {tuple(spikes.shape)}, a [T, B, C, *spatial] "
                "sequence, which the convolution cannot take; call it step by step"
            )
        with torch.no_grad():
            s = block.detach().to(w.dtype)
            self._check_values(s)
            u, x = self._state_for(s, w)
            factors = tsodyks_markram(
                s,
                u,
                x,
                U=self.U,
                decay_fac=self._decay_fac,
                decay_rec=self._decay_rec,
                graded=self.spikes == "graded",
            )
            self._u, self._x = u, x
        return spikes.to(w.dtype) * factors.reshape(spikes.shape)

    def _check_values(self, s: Tensor) -> None:
        if self.spikes == "binary":
            if bool(((s != 0) & (s != 1)).any()):
                raise ValueError(
                    "the synapse's input is not binary (values other than 0 and 1); pass "
                    "spikes='graded' to ShortTermPlasticity to use values as spike amplitudes"
                )
        elif not bool(torch.isfinite(s).all()):
            raise ValueError("the synapse's input holds NaN or infinite values")

    def _state_for(self, s: Tensor, w: Tensor) -> tuple[Tensor | None, Tensor]:
        shape = s.shape[1:]
        if self._x is None:
            x = torch.ones(shape, dtype=w.dtype, device=w.device)
            u = (
                torch.full(shape, self.U, dtype=w.dtype, device=w.device)
                if self.facilitating
                else None
            )
            return u, x
        if self._x.shape != shape:
            raise ValueError(
                f"the synapse's input per step is {list(shape)} but the state is "
                f"{list(self._x.shape)} (batch size or shape changed within a sequence); call "
                "stp.reset() before inputs of another shape"
            )
        x = self._x.to(device=w.device, dtype=w.dtype)
        u = None
        if self.facilitating:
            u = self._u if self._u is not None else torch.full_like(x, self.U)
            u = u.to(device=w.device, dtype=w.dtype)
        return u, x

    # ---------------------------------------------------------------- state_dict

    def get_extra_state(self) -> dict[str, Any]:
        return {"u": self.u, "x": self.x}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"u", "x"} <= state.keys():
            raise ValueError(
                "ShortTermPlasticity.load_state_dict: the extra state is not an STP state"
            )
        u, x = state["u"], state["x"]
        if x is None or u is None:
            if not (x is None and u is None):
                raise ValueError(
                    "ShortTermPlasticity.load_state_dict: `u` and `x` must be saved together"
                )
            self.reset()
            return
        if not (isinstance(u, Tensor) and isinstance(x, Tensor)) or u.shape != x.shape:
            raise ValueError(
                "ShortTermPlasticity.load_state_dict: `u` and `x` must be tensors of one shape"
            )
        for name, value in (("u", u), ("x", x)):
            if not bool(((value >= 0) & (value <= 1)).all()):
                raise ValueError(
                    f"ShortTermPlasticity.load_state_dict: `{name}` must lie in [0, 1]"
                )
        w = self._adapter.weight
        self._x = x.to(device=w.device, dtype=w.dtype, copy=True)
        self._u = u.to(device=w.device, dtype=w.dtype, copy=True) if self.facilitating else None

    def extra_repr(self) -> str:
        return (
            f"synapse={type(self.synapse).__name__}, U={self.U}, tau_rec={self.tau_rec}, "
            f"tau_fac={self.tau_fac}, dt={self.dt}, spikes={self.spikes!r}"
        )
