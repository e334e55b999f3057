"""Each model's headline result at reduced size (the full runs are in the README/notes)."""

from __future__ import annotations

import numpy as np


def test_stdp_window_fits_recover_the_parameters(tmp_path):
    from models import stdp_window

    r = stdp_window.run(tmp_path, pairings=5, lags_ms=np.arange(-60, 61, 10), progress=False)
    assert max(r["relative_errors"].values()) < 0.01
    assert [p.name for p in r["paths"]] == ["stdp_window.png"]


def test_triplet_gives_ltp_for_both_orders_at_high_frequency_and_pair_stdp_cannot(tmp_path):
    from models import triplet_frequency

    r = triplet_frequency.run(tmp_path, frequencies=(0.1, 50.0), pairings=20, progress=False)
    # triplet: post->pre depresses at low frequency, both orders potentiate at 50 Hz
    assert r["triplet_post_pre"][0] < 0
    assert r["triplet_pre_post"][1] > 0 and r["triplet_post_pre"][1] > 0
    # pair STDP: no frequency turns post->pre into potentiation, and at 50 Hz pre->post depresses too
    assert np.all(r["pair_post_pre"] < 0) and r["pair_pre_post"][1] < 0
    assert (tmp_path / "triplet_frequency.png").exists()
