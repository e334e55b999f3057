r"""Weight-dependence ("bounding") functions for plasticity updates.

A learning rule produces two non-negative magnitudes per synapse: potentiation
``pos`` and depression ``neg``. A bound scales them by a function of the current
weight :math:`w` so that weights approach their limits softly (soft bounds) or stop
at them (hard bounds). The signed update is then

.. math::

    \Delta w = f_+(w)\,\mathrm{pos} - f_-(w)\,\mathrm{neg}.

Two kinds of callables are provided:

* **Half bounds** ``f(param, update, limit, **kw) -> Tensor`` scale one component:
  the ``upper_*`` functions scale ``pos`` against the upper limit, the ``lower_*``
  functions scale ``neg`` against the lower limit (:class:`HalfBounding`).
* **Full bounds** ``f(param, pos, neg, max, min, **kw) -> Tensor`` return the signed
  update :math:`\Delta w` (:class:`FullBounding`). Either limit may be ``None``, which
  leaves that side unbounded.

Each function here carries its kind in ``fn.bound_kind`` (``"upper"``, ``"lower"`` or
``"full"``; :func:`bound_kind` reads it, also through a ``functools.partial``), so that
:class:`~plasticity.Accumulator` refuses one given to the wrong setter: an upper bound
passed to ``lowerbound`` would scale depression by the distance to the *upper* limit. A
user's own callable has no kind and is accepted by any setter of its shape.

Soft bases (``max - w`` and ``w - min``) are clamped at zero, so a weight that lies
outside its range is never pushed further out, never flips the sign of a component and
never produces NaN (a negative base raised to a fractional power would). For the same
reason an exponent ``μ = 0`` gives ``[w < max]`` and ``[w > min]`` (``0⁰`` counts as 0:
additive inside the range, a hard stop at the limit, as the ``*_sharp`` bounds).

An infinite limit (``max = inf``, ``min = -inf``, also elements of a tensor limit) leaves
its side unbounded: the factor is 1 in every family, as a ``None`` limit of a full bound
(``inf - w`` would make ``inf · 0 = NaN``). :func:`scaled_power` then needs ``range=``.

This package is pure tensor math and imports nothing else from ``plasticity``.

Example:
    >>> import torch
    >>> from plasticity import bounds
    >>> w = torch.tensor([0.0, 0.5, 1.0, 1.5])
    >>> bounds.upper_multiplicative(w, torch.ones(4), 1.0)
    tensor([1.0000, 0.5000, 0.0000, 0.0000])
    >>> bounds.multiplicative(w, torch.ones(4), torch.ones(4), 1.0, 0.0)
    tensor([ 1.0000,  0.0000, -1.0000, -1.5000])
"""

from ._full import multiplicative, power, scaled_power, sharp
from ._half import (
    lower_multiplicative,
    lower_power,
    lower_scaled_power,
    lower_sharp,
    upper_multiplicative,
    upper_power,
    upper_scaled_power,
    upper_sharp,
)
from ._kinds import FullBounding, HalfBounding, bound_kind

__all__ = [
    "bound_kind",
    "HalfBounding",
    "FullBounding",
    "upper_power",
    "lower_power",
    "upper_scaled_power",
    "lower_scaled_power",
    "upper_multiplicative",
    "lower_multiplicative",
    "upper_sharp",
    "lower_sharp",
    "power",
    "scaled_power",
    "multiplicative",
    "sharp",
]
