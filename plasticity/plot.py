"""Matplotlib figures of plasticity: trajectories, histograms, STDP windows, receptive fields,
rasters, update norms.

Every function takes data as arrays (e.g. from :mod:`plasticity.monitor` ``numpy()``), an
optional ``ax`` to draw into, returns ``(figure, axes)``, labels its axes with units and
never calls ``plt.show()``. This module knows nothing of rules.

Example:
    >>> import numpy as np
    >>> from plasticity import plot
    >>> fig, ax = plot.weight_trajectories(np.arange(5) * 0.1, np.random.rand(5, 3))
    >>> ax.get_xlabel()
    'time (s)'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "weight_trajectories",
    "weight_histograms",
    "stdp_window",
    "receptive_fields",
    "raster",
    "update_norms",
]


def _axes(ax: Any = None, figsize: tuple[float, float] = (6.4, 4.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
    else:
        fig = ax.figure
    return fig, ax


def weight_trajectories(
    times: Sequence[float],
    weights: np.ndarray,
    *,
    ax: Any = None,
    groups: dict[str, Sequence[int]] | None = None,
    time_unit: str = "s",
    weight_label: str = "synaptic weight (a.u.)",
    title: str | None = "Weight trajectories",
):
    """One line per synapse (``weights`` ``[time, synapse]``); ``groups`` colours synapses
    by name and draws each group's mean thicker.

    Example:
        >>> import numpy as np
        >>> fig, ax = weight_trajectories([0.0, 1.0, 2.0], np.array([[0.5, 0.5], [0.6, 0.4], [0.7, 0.3]]))
        >>> len(ax.lines), ax.get_xlabel()
        (2, 'time (s)')
    """
    fig, ax = _axes(ax)
    w = np.asarray(weights)
    t = np.asarray(times)
    if groups is None:
        ax.plot(t, w, lw=0.8, alpha=0.6)
    else:
        colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
        for (name, idx), color in zip(groups.items(), colors, strict=False):
            idx = list(idx)
            ax.plot(t, w[:, idx], color=color, lw=0.5, alpha=0.3)
            ax.plot(t, w[:, idx].mean(1), color=color, lw=2.2, label=f"{name} (n={len(idx)}), mean")
        ax.legend(frameon=False)
    ax.set(xlabel=f"time ({time_unit})", ylabel=weight_label, title=title)
    return fig, ax


def weight_histograms(
    times: Sequence[float],
    counts: np.ndarray,
    edges: Sequence[float],
    *,
    ax: Any = None,
    time_unit: str = "s",
    weight_label: str = "synaptic weight (a.u.)",
    title: str | None = "Weight distribution over time",
):
    """Histograms over time as an image: ``counts`` ``[time, bins]``, colour = synapses.

    Example:
        >>> import numpy as np
        >>> fig, ax = weight_histograms([0.0, 1.0], np.array([[3, 1], [1, 3]]), [0.0, 0.5, 1.0])
        >>> ax.get_ylabel()
        'synaptic weight (a.u.)'
    """
    fig, ax = _axes(ax)
    c = np.asarray(counts, dtype=float)
    e = np.asarray(edges)
    t = np.asarray(times)
    t_edges = np.concatenate([t, [t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0)]])
    mesh = ax.pcolormesh(t_edges, e, c.T, shading="flat", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="number of synapses")
    ax.set(xlabel=f"time ({time_unit})", ylabel=weight_label, title=title)
    return fig, ax


def stdp_window(
    lags: Sequence[float],
    dw: Sequence[float],
    *,
    ax: Any = None,
    fit: dict[str, float] | None = None,
    lag_unit: str = "ms",
    title: str | None = "STDP window",
):
    """Weight change against the spike-timing lag (post minus pre); ``fit`` with keys
    ``a_plus, tau_plus, a_minus, tau_minus`` draws the fitted exponentials.

    Example:
        >>> fit = dict(a_plus=0.8, tau_plus=17.0, a_minus=0.3, tau_minus=34.0)
        >>> fig, ax = stdp_window([-10, -5, 5, 10], [-0.2, -0.26, 0.6, 0.45], fit=fit)
        >>> ax.get_xlabel()
        'spike timing Δt = t_post − t_pre (ms)'
    """
    fig, ax = _axes(ax)
    x, y = np.asarray(lags, dtype=float), np.asarray(dw, dtype=float)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.plot(x, y, "o", color="k", ms=4, label="simulated pairings")
    if fit is not None:
        pos, neg = np.linspace(0, x.max(), 200), np.linspace(x.min(), 0, 200)
        ax.plot(
            pos,
            fit["a_plus"] * np.exp(-pos / fit["tau_plus"]),
            color="tab:red",
            label=f"fit: A₊={fit['a_plus']:.3g}, τ₊={fit['tau_plus']:.3g} {lag_unit}",
        )
        ax.plot(
            neg,
            -fit["a_minus"] * np.exp(neg / fit["tau_minus"]),
            color="tab:blue",
            label=f"fit: A₋={fit['a_minus']:.3g}, τ₋={fit['tau_minus']:.3g} {lag_unit}",
        )
        ax.legend(frameon=False)
    ax.set(
        xlabel=f"spike timing Δt = t_post − t_pre ({lag_unit})",
        ylabel="weight change Δw (a.u.)",
        title=title,
    )
    return fig, ax


def receptive_fields(
    weights: np.ndarray,
    shape: tuple[int, int],
    *,
    columns: int | None = None,
    fig: Any = None,
    title: str | None = "Receptive fields",
):
    """A grid of each post neuron's incoming weights (``weights`` ``[N_out, H*W]``) as images.

    Example:
        >>> import numpy as np
        >>> fig, axes = receptive_fields(np.random.rand(4, 9), (3, 3))
        >>> axes.size >= 4
        True
    """
    import matplotlib.pyplot as plt

    w = np.asarray(weights)
    n = w.shape[0]
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    if fig is None:
        fig = plt.figure(figsize=(1.1 * cols + 1.2, 1.1 * rows + 0.6), constrained_layout=True)
    axes = fig.subplots(rows, cols, squeeze=False)
    lo, hi = float(w.min()), float(w.max())
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < n:
            image = ax.imshow(w[k].reshape(shape), cmap="hot", vmin=lo, vmax=hi)
        else:
            ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, label="weight (a.u.)", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig, axes


def raster(
    times: Sequence[float],
    neurons: Sequence[int],
    *,
    ax: Any = None,
    time_unit: str = "ms",
    title: str | None = "Spike raster",
):
    """Spike raster: one dot per spike at (time, neuron).

    Example:
        >>> fig, ax = raster([1.0, 2.0, 2.0], [0, 1, 3])
        >>> ax.get_xlabel(), ax.get_ylabel()
        ('time (ms)', 'neuron')
    """
    fig, ax = _axes(ax)
    ax.plot(np.asarray(times), np.asarray(neurons), "|", color="k", ms=4)
    ax.set(xlabel=f"time ({time_unit})", ylabel="neuron", title=title)
    return fig, ax


def update_norms(
    times: Sequence[float],
    norms: Sequence[float],
    *,
    ax: Any = None,
    time_unit: str = "s",
    title: str | None = "Size of the weight updates",
):
    """The norm of each window's update ``‖Δw‖`` over time (log scale).

    Example:
        >>> fig, ax = update_norms([1, 2, 3], [1e-2, 5e-3, 2e-3])
        >>> ax.get_yscale()
        'log'
    """
    fig, ax = _axes(ax)
    ax.semilogy(np.asarray(times), np.asarray(norms), color="k", lw=1)
    ax.set(xlabel=f"time ({time_unit})", ylabel="‖Δw‖ per window (a.u.)", title=title)
    return fig, ax
