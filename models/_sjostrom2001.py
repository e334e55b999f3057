"""Sjöström, Turrigiano & Nelson (2001) Neuron 32:1149, the pairing-frequency data (L5 visual cortex).

Mean ± s.e.m. of the weight change (% of the EPSP before pairing) after pairs of one pre and
one post spike at Δt = +10 ms (pre first) or −10 ms (post first), repeated at each
frequency (5 pairs per burst, bursts 10 s apart; 75 pairings, at 0.1 Hz 50). Values as
tabulated from the paper's frequency figure in the vhlab-toolbox-matlab function
``vlt.neuro.stdp.sjostrom_freq_stdp`` (github.com/VH-Lab/vhlab-toolbox-matlab), the set
that Pfister & Gerstner (2006) and Clopath et al. (2010, Fig. 2b) fit.
"""

from __future__ import annotations

FREQUENCY_HZ = (0.1, 10.0, 20.0, 40.0, 50.0)
PRE_POST = (-4.0, 14.0, 29.0, 53.0, 56.0)  # Δt = +10 ms, %
PRE_POST_SEM = (5.0, 10.0, 14.0, 11.0, 26.0)
POST_PRE = (-29.0, -41.0, -34.0, 56.0, 75.0)  # Δt = −10 ms, %
POST_PRE_SEM = (8.0, 11.0, 10.0, 32.0, 19.0)
