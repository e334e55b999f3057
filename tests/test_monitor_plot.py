"""Monitors (bounded memory, statistics, state) and plots (labelled, ax-aware, no show())."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import snntorch as snn  # noqa: E402
import torch  # noqa: E402

from plasticity import monitor, plot  # noqa: E402


def test_weight_monitor_selection_statistics_and_histogram():
    w = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    mon = monitor.WeightMonitor(
        w,
        select=[(0, 0), (4, 6)],
        stats=("mean", "std", "q05", "q95", "max"),
        bins=np.linspace(0, 1, 11),
    )
    mon.record()
    w.mul_(0.5)
    mon.record()
    data = mon.numpy()
    assert data["values"].tolist()[1] == pytest.approx([float(w[0, 0]), float(w[4, 6])])
    flat = w.flatten().numpy()
    assert data["stats"][1] == pytest.approx(
        [
            flat.mean(),
            flat.std(ddof=1),
            np.quantile(flat, 0.05),
            np.quantile(flat, 0.95),
            flat.max(),
        ],
        rel=1e-5,
    )
    assert data["hist"][1].sum() == 35 and list(data["stat_names"]) == [
        "mean",
        "std",
        "q05",
        "q95",
        "max",
    ]


def test_memory_is_bounded_over_a_million_steps():
    w = torch.zeros(10, 10)
    mon = monitor.WeightMonitor(w, every=1, capacity=100, select=4, stats=("mean",))
    before = {k: v.data_ptr() for k, v in mon.columns.items()}
    for step in range(1_000_000):
        if step % 1000 == 0:
            w += 1.0
        mon.record(step)
    assert len(mon) <= 100 and mon.steps.shape == (100,)
    assert all(col.shape[0] == 100 for col in mon.columns.values())
    assert before == {} or all(mon.columns[k].data_ptr() == p for k, p in before.items())
    steps = mon.numpy()["steps"]
    assert steps[0] == 0 and steps[-1] > 900_000 and np.all(np.diff(steps) == mon.every)


def test_monitor_state_dict_round_trip_and_bad_arguments():
    w = torch.rand(3, 3)
    a = monitor.WeightMonitor(w, every=2, capacity=8)
    for s in range(11):
        a.record(s)
    b = monitor.WeightMonitor(w, every=1, capacity=8)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.record(11)
        m.record(12)
    for k, v in a.numpy().items():
        np.testing.assert_array_equal(v, b.numpy()[k])
    with pytest.raises(ValueError, match="every"):
        monitor.WeightMonitor(w, every=0)
    with pytest.raises(ValueError, match="statistic"):
        monitor.WeightMonitor(w, stats=("median",))
    with pytest.raises(ValueError, match="outside"):
        monitor.WeightMonitor(w, select=[(3, 0)])


def test_spike_monitor_records_through_the_neuron_hook():
    lif = snn.Leaky(beta=0.9, init_hidden=True)
    mon = monitor.SpikeMonitor(lif, select=[0, 2])
    x = torch.rand(50, 2, 3, generator=torch.Generator().manual_seed(1)) * 0.8
    seen = []
    for t in range(50):
        seen.append(lif(x[t])[0, [0, 2]].detach())
    data = mon.numpy()
    np.testing.assert_array_equal(data["spikes"], torch.stack(seen).numpy())
    steps, ids = mon.events()
    assert len(steps) == int(torch.stack(seen).sum()) > 0
    mon.detach()
    assert not lif._forward_hooks


def test_trace_monitor():
    mon = monitor.TraceMonitor(every=3, select=[1])
    for t in range(10):
        mon.record(torch.tensor([0.0, float(t)]))
    assert mon.numpy()["values"][:, 0].tolist() == [0.0, 3.0, 6.0, 9.0]


@pytest.fixture
def no_show(monkeypatch):
    def fail(*_a, **_k):
        raise AssertionError("plot functions must not call plt.show()")

    monkeypatch.setattr(plt, "show", fail)
    yield
    plt.close("all")


def test_every_plot_is_labelled_accepts_an_ax_and_never_shows(no_show):
    rng = np.random.default_rng(0)
    t = np.arange(20) * 0.5
    cases = [
        lambda ax: plot.weight_trajectories(
            t, rng.random((20, 6)), ax=ax, groups={"a": [0, 1, 2], "b": [3, 4, 5]}
        ),
        lambda ax: plot.weight_histograms(
            t, rng.integers(0, 5, (20, 10)), np.linspace(0, 1, 11), ax=ax
        ),
        lambda ax: plot.stdp_window(
            np.arange(-5, 6),
            np.sign(np.arange(-5, 6)),
            ax=ax,
            fit={"a_plus": 1, "tau_plus": 2, "a_minus": 1, "tau_minus": 2},
        ),
        lambda ax: plot.raster([1, 2, 3], [0, 1, 0], ax=ax),
        lambda ax: plot.update_norms(t, np.exp(-t) + 1e-3, ax=ax),
    ]
    for make in cases:
        fig, ax = make(None)
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert "(" in ax.get_xlabel()  # units
        fig2, ax2 = plt.subplots()
        out_fig, out_ax = make(ax2)
        assert out_ax is ax2 and out_fig is fig2
    fig, axes = plot.receptive_fields(rng.random((10, 64)), (8, 8))
    assert axes.shape == (3, 4) and fig._suptitle.get_text()  # 10 fields, 4 columns
