r"""The rule language: signals of the two sides of a synapse, and terms built from them.

Over a window the weights are frozen, so every rule of this field is a sum of separable
terms

.. math::
    \Delta w_{ij} = \sum_k c_k\, g_k(w_{ij}) \sum_t \sum_b m_k(t, b)\,
        P_k(i, t, b)\, Q_k(j, t, b),

with :math:`P_k` built from postsynaptic signals only, :math:`Q_k` from presynaptic ones,
:math:`m_k` a third factor (reward, dopamine; directly or through an eligibility trace)
and :math:`g_k` the weight (Oja's :math:`-y^2 w`) or 1. A rule declares its terms with
these objects; :mod:`plasticity.engine` evaluates them.

Signals (per step, per sample, per neuron of one side):

* ``pre.spike``, ``post.spike``: the step's spikes;
* ``side.trace(tau)``: the trace after this step's spikes,
  :math:`x_t = e^{-dt/\tau} x_{t-1} + s_t` (``nearest=True``: reset to 1 at a spike);
  ``.before``: its value just before this step's spikes, :math:`e^{-dt/\tau} x_{t-1}`;
  ``.previous``: its value at the previous step, :math:`x_{t-1}` (``.delayed(k)``:
  :math:`x_{t-k}`);
* ``side.rate(tau)``: ``side.trace(tau) / tau`` (spikes per unit of ``dt``);
* ``post.voltage``: the neuron's membrane potential at the step;
* ``side.signal(name)``: a value the user feeds per step, sample and neuron
  (``rule.feed(name=x)``, ``rule.observe(..., signals={name: x})``);
* ``signal.lowpass(tau, init=None)``: :math:`\bar u_t = e^{-dt/\tau}\bar u_{t-1} +
  (1 - e^{-dt/\tau}) u_t` (exponential integrator of a signal held over the step),
  starting at the first value it filters, or at ``init``;
* ``modulator``: the third factor of the step (``rule.reward(r)``, ``rule.observe(...,
  reward=...)``), one value per sample; ``modulator.trace(tau)`` filters it (dopamine);
* ``relu(x)``, ``abs(x)``, ``sigmoid(x)``, ``exp(x)``, ``tanh(x)``, ``heaviside(x)``
  (1 where :math:`x > 0`), ``x + y``, ``x - y``, ``x * y``, ``x / number``, ``x ** k``,
  ``x.batch_mean()`` within one side (numbers and the modulator combine with either).

Signals, terms and their sums are values: equal and hashed by their exact fields, and
printed exactly (``parse(repr(x)) == x``). Each kind of signal is one class
(:mod:`plasticity.language.signals` says how to add one).

Terms: the product of a post-side and a pre-side signal (either or both may be missing:
the factor 1; with neither, a constant term such as ``lam * weight``), times numbers, the
modulator, and at most once :data:`weight`; and ``eligibility(terms, tau)``: the weight-shaped
trace :math:`e(t) = e^{-dt/\tau} e(t-1) + \zeta(t)` of a sum of terms, which a term may
multiply by the modulator and (per-sample traces) by a post-side signal. Anything that
does not factor into post × pre (a non-linear function of both sides) is a
``ValueError`` when it is written.

Example:
    >>> from plasticity.language import post, pre, relu
    >>> stdp_pos = 0.01 * post.spike * pre.trace(20.0)
    >>> stdp_pos
    0.01 * post.spike * pre.trace(20)
    >>> relu(post.voltage - pre.trace(10.0))
    Traceback (most recent call last):
    ...
    ValueError: relu(post.voltage - pre.trace(10)) does not factor into a post-side signal times a pre-side signal; write the term as a product of signals of one side each
"""

from __future__ import annotations

from .fed import Fed
from .filters import Before, Delay, Filter, Lowpass, Trace
from .functions import exp, heaviside, relu, sigmoid, tanh
from .nodes import (
    Abs,
    Add,
    BatchMean,
    Const,
    Exp,
    Heaviside,
    Modulator,
    Mul,
    Pow,
    Relu,
    Scale,
    Sigmoid,
    Spike,
    Tanh,
    Unary,
    Voltage,
)
from .signals import Signal
from .terms import Eligibility, ETerm, Term, Terms, as_terms, eligibility, weight

__all__ = [
    "ETerm",
    "Signal",
    "Term",
    "Terms",
    "Eligibility",
    "pre",
    "post",
    "modulator",
    "weight",
    "relu",
    "sigmoid",
    "exp",
    "tanh",
    "heaviside",
    "eligibility",
    "as_terms",
    "parse",
    # the node classes (documented in plasticity.language.nodes and .filters)
    "Spike", "Voltage", "Modulator", "Const", "Unary", "Scale", "Pow", "Relu", "Abs", "Sigmoid",
    "Exp", "Tanh", "Heaviside", "Add", "Mul", "BatchMean", "Filter", "Trace", "Lowpass",
    "Before", "Delay", "Fed",
]  # fmt: skip

SIDES = ("pre", "post")


class _SideFactory:
    """``pre`` or ``post``: the signals of one side of the synapse."""

    def __init__(self, side: str) -> None:
        self._side = side

    def __repr__(self) -> str:
        return self._side

    @property
    def spike(self) -> Signal:
        """This step's spikes (0/1, or graded amplitudes with ``spikes="graded"``)."""
        return Spike(self._side)

    def trace(self, tau: float, *, nearest: bool = False) -> Signal:
        """The spikes' trace (see :meth:`Signal.trace`)."""
        return self.spike.trace(tau, nearest=nearest)

    def rate(self, tau: float) -> Signal:
        """The firing rate filtered with ``tau``: ``trace(tau) / tau``."""
        return self.trace(tau) / tau

    def signal(self, name: str) -> Signal:
        """A value the user feeds at every step, per sample and neuron of this side
        (``rule.feed(name=x)``, ``x`` ``[B, *side]``, after each forward pass; or
        ``rule.observe(..., signals={name: [T, B, *side]})``): see :class:`~.fed.Fed`.

        Example:
            >>> from plasticity.language import eligibility, post, pre
            >>> post.signal("L") * eligibility(post.spike * pre.trace(10.0), 20.0, per_sample=True)
            post.signal('L') * eligibility(post.spike * pre.trace(10), 20, per_sample=True)
        """
        return Fed(self._side, name)

    @property
    def voltage(self) -> Signal:
        """The membrane potential at the step (postsynaptic side only)."""
        if self._side != "post":
            raise ValueError(
                "pre.voltage: the presynaptic neurons' potential is not observed by the synapse; "
                "only post.voltage (the neuron's membrane potential) is available"
            )
        return Voltage()


pre = _SideFactory("pre")
post = _SideFactory("post")
#: the third factor of the step (reward, dopamine release), one value per sample
modulator = Modulator()

Declaration = Signal | Term | ETerm | Terms | Eligibility | None

from .parse import parse  # noqa: E402  (the text form reads the objects above)
