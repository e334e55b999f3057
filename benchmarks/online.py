"""Online learning: a weight update after every time step, ours against the peers' per-step learners.

Every method runs the same snnTorch network (``nn.Linear`` -> ``snn.Leaky(init_hidden=True)``)
on the same Poisson inputs and makes the same update after every step: pair STDP, all-to-all
traces with ``exp(-1/τ)`` decay, same-step pre/post spikes counted as potentiation *and*
depression (every peer's convention), the batch mean, weights kept in [0, 1]; either with soft
multiplicative bounds (``--update soft``: Δw = A₊(1 - w)·pos - A₋w·neg) or additive
(``--update additive``: Δw = A₊·pos - A₋·neg, then clamped).

* ``plain``: the update by hand in torch (two trace updates, two outer products, the bounds,
  ``add_`` and ``clamp_``); ``plain_sgd``: the same update applied by ``torch.optim.SGD``.
* ``ours``: ``pl.STDP`` through its hooks, then ``rule.step()``, ``opt.step()`` and
  ``opt.zero_grad()`` every step (``ClampedParameterOptimizer`` with SGD, lr = 1).
* ``ours_inplace``: the same rule, its ``Δw`` (what ``rule.step()`` returns) added to the
  weight in place and clamped, without an optimizer (``step()`` still writes ``-Δw`` into
  ``weight.grad``, dropped each step): the library's way to BindsNET's in-place update.
* ``snntorch``: snnTorch's ``snntorch.functional.stdp_learner.STDPLearner`` (its only
  STDP learner: monitors on the synapse's input and the neuron's output, ``step()`` computes
  ``stdp_linear_single_step`` per recorded step and writes ``-Δw`` into ``weight.grad``),
  then ``torch.optim.SGD`` and ``clamp_``.
* ``spikingjelly``: SpikingJelly's ``activation_based.learning.STDPLearner`` (single-step
  mode), used the same way.
* ``bindsnet``: BindsNET's own network: ``Input`` -> ``LIFNodes`` (additive traces) joined
  by a ``Connection`` whose rule is ``PostPre`` (additive) or ``WeightDependentPostPre``
  (soft bounds), ``Network.run(time=1)`` every step (its LIF neurons, not snnTorch's).
* ``bindsnet_rule``: the same BindsNET ``Connection`` and rule driven from the snnTorch
  loop: the nodes' spikes set and their traces advanced as BindsNET's nodes do, then
  ``Connection.update()`` (BindsNET's learning rule alone, on the same spikes as ours).

Two comparisons, each like with like: the peers that leave the update to a torch optimizer
(snnTorch's and SpikingJelly's learners, then ``torch.optim.SGD``) against ``ours`` (their
floor: ``plain_sgd``), and BindsNET, which updates its weights in place without an
optimizer, against ``ours_inplace`` (their floor: ``plain``).

The peers sum over the batch and SpikingJelly and snnTorch decay traces by ``1 - 1/τ'``:
they get amplitudes divided by B and τ' = 1 / (1 - exp(-1/τ)), so that every method
computes the same Δw (:func:`check_same_update` measures it on a small case).

Reported: milliseconds per step (minimum of interleaved repeats, ``stdp_dense.interleaved``),
ours / the fastest optimizer peer and ours in place / the fastest in-place peer. Run: ``python benchmarks/online.py [--steps N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import math
import platform
from pathlib import Path

import snntorch as snn
import torch
from peers import bindsnet
from readme import save_results
from stdp_dense import interleaved, pin_allocator
from torch import nn

import plasticity as pl

A_PLUS, A_MINUS, TAU = 1e-3, 1.05e-3, 20.0
#: SpikingJelly's and snnTorch's traces decay by 1 - 1/τ: this τ gives exp(-1/TAU)
TAU_EULER = 1.0 / (1.0 - math.exp(-1.0 / TAU))
SIZES = [(100, 20, 1), (784, 400, 32)]  # (N_in, N_out, B)
#: steps per run at each size, times ``--steps`` / 100 (the peers' learners take ~10-100 ms
#: per step at 784 -> 400, B = 32)
STEPS = [400, 50]
PEERS = ("snntorch", "spikingjelly", "bindsnet", "bindsnet_rule")
#: the peers whose update a torch optimizer applies (compared with ``ours``) and those that
#: update the weight in place (compared with ``ours_inplace``)
OPTIMIZER_PEERS, INPLACE_PEERS = ("snntorch", "spikingjelly"), ("bindsnet", "bindsnet_rule")


class Net:
    """``nn.Linear`` -> ``snn.Leaky`` with its first weights kept, so every run starts alike."""

    def __init__(self, n_in: int, n_out: int, neuron: nn.Module | None = None,
                 dtype: torch.dtype = torch.float32, seed: int = 0):  # fmt: skip
        torch.manual_seed(seed)
        self.fc = nn.Linear(n_in, n_out, bias=False)
        nn.init.uniform_(self.fc.weight, 0.2, 0.6)
        self.fc.to(dtype)
        self.w0 = self.fc.weight.detach().clone()
        self.lif = snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True) if neuron is None else neuron

    def reset(self) -> None:
        with torch.no_grad():
            self.fc.weight.copy_(self.w0)
        self.fc.weight.grad = None
        if isinstance(self.lif, snn.Leaky):
            self.lif.reset_mem()


class Replay(nn.Module):
    """A "neuron" that emits recorded spikes, one step per call (for :func:`check_same_update`)."""

    def __init__(self, spikes: torch.Tensor):
        super().__init__()
        self.spikes, self.t = spikes, 0

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        self.t += 1
        return self.spikes[self.t - 1]


def _amplitudes(batch: int, weight_dependent: bool):
    """``(f_pre, f_post)`` of the snnTorch/SpikingJelly learners: our Δw per batch sum."""
    a_plus, a_minus = A_PLUS / batch, A_MINUS / batch
    if weight_dependent:
        return (lambda w: a_minus * w), (lambda w: a_plus * (1.0 - w))
    return (lambda w: a_minus), (lambda w: a_plus)


def plain(net: Net, x: torch.Tensor, soft: bool, optimizer: bool = False):
    """The update by hand; ``optimizer=True``: ``-Δw`` into ``weight.grad``, ``torch.optim.SGD``."""
    batch, n_in = x.shape[1:]
    fc, lif, w = net.fc, net.lif, net.fc.weight
    d = math.exp(-1.0 / TAU)
    sgd = torch.optim.SGD([w], lr=1.0) if optimizer else None

    def run():
        net.reset()
        x_trace = torch.zeros(batch, n_in, dtype=w.dtype)
        y_trace = torch.zeros(batch, w.shape[0], dtype=w.dtype)
        with torch.no_grad():
            for t in range(x.shape[0]):
                spk = lif(fc(x[t]))
                x_trace.mul_(d).add_(x[t])
                y_trace.mul_(d).add_(spk)
                pos = torch.mm(spk.t(), x_trace).mul_(A_PLUS / batch)
                neg = torch.mm(y_trace.t(), x[t]).mul_(A_MINUS / batch)
                if soft:
                    pos.mul_(1.0 - w)
                    neg.mul_(w)
                if sgd is None:
                    w.add_(pos.sub_(neg)).clamp_(0.0, 1.0)
                    continue
                w.grad = neg.sub_(pos)
                sgd.step()
                w.clamp_(0.0, 1.0)

    return run


def _our_rule(net: Net, soft: bool, coincident: str):
    rule = pl.STDP(net.fc, net.lif, a_plus=A_PLUS, a_minus=A_MINUS, tau_plus=TAU,
                   tau_minus=TAU, coincident=coincident)  # fmt: skip
    if soft:
        rule.accumulator.upperbound(pl.bounds.upper_multiplicative, 1.0)
        rule.accumulator.lowerbound(pl.bounds.lower_multiplicative, 0.0)
    return rule


def ours(net: Net, x: torch.Tensor, soft: bool, coincident: str = "both"):
    rule = _our_rule(net, soft, coincident)
    opt = pl.ClampedParameterOptimizer([net.fc.weight], lr=1.0, clamp_min=0.0, clamp_max=1.0)

    def run():
        net.reset()
        rule.reset()
        with torch.no_grad():
            for t in range(x.shape[0]):
                net.lif(net.fc(x[t]))
                rule.step()
                opt.step()
                opt.zero_grad()

    return run


def ours_inplace(net: Net, x: torch.Tensor, soft: bool, coincident: str = "both"):
    """``Δw = rule.step()`` added in place and clamped, as BindsNET's learners do."""
    rule = _our_rule(net, soft, coincident)
    w = net.fc.weight

    def run():
        net.reset()
        rule.reset()
        with torch.no_grad():
            for t in range(x.shape[0]):
                net.lif(net.fc(x[t]))
                w.add_(rule.step()).clamp_(0.0, 1.0)
                w.grad = None

    return run


def _learner_loop(net: Net, x: torch.Tensor, learner):
    """The snnTorch/SpikingJelly idiom: ``learner.step(on_grad=True)``, SGD, clamp."""
    w = net.fc.weight
    sgd = torch.optim.SGD([w], lr=1.0)

    def run():
        net.reset()
        learner.reset()
        with torch.no_grad():
            for t in range(x.shape[0]):
                net.lif(net.fc(x[t]))
                learner.step(on_grad=True)
                sgd.step()
                w.clamp_(0.0, 1.0)
                sgd.zero_grad()

    return run


def snntorch_learner(net: Net, x: torch.Tensor, soft: bool):
    from snntorch.functional.stdp_learner import STDPLearner

    f_pre, f_post = _amplitudes(x.shape[1], soft)
    learner = STDPLearner(net.fc, net.lif, TAU_EULER, TAU_EULER, f_pre, f_post)
    learner.reset = lambda: (  # its reset() calls nn.Module.reset, which does not exist
        learner.in_spike_monitor.clear_recorded_data(),
        learner.out_spike_monitor.clear_recorded_data(),
        setattr(learner, "trace_pre", None), setattr(learner, "trace_post", None))  # fmt: skip
    return _learner_loop(net, x, learner)


def spikingjelly_learner(net: Net, x: torch.Tensor, soft: bool):
    try:
        from spikingjelly.activation_based.learning import STDPLearner
    except ImportError:
        return None
    f_pre, f_post = _amplitudes(x.shape[1], soft)
    learner = STDPLearner("s", net.fc, net.lif, TAU_EULER, TAU_EULER, f_pre, f_post)
    return _learner_loop(net, x, learner)


def _bindsnet_connection(bn, source, target, w: torch.Tensor, batch: int, soft: bool):
    rule = bn.WeightDependentPostPre if soft else bn.PostPre
    return bn.Connection(source, target, w=w.t().clone(), update_rule=rule,
                         nu=(A_MINUS / batch, A_PLUS / batch), wmin=0.0, wmax=1.0)  # fmt: skip


def bindsnet_network(net: Net, x: torch.Tensor, soft: bool):
    """BindsNET's own loop: ``Network.run(time=1)`` per step, its LIF neurons, its learner."""
    bn = bindsnet()
    if bn is None:
        return None
    batch, n_in = x.shape[1:]
    n_out = net.w0.shape[0]
    network = bn.Network(dt=1.0, batch_size=batch)
    source = bn.Input(n=n_in, traces=True, traces_additive=True, tc_trace=TAU)
    target = bn.LIFNodes(n=n_out, traces=True, traces_additive=True, tc_trace=TAU, rest=0.0,
                         reset=0.0, thresh=0.5, refrac=0, tc_decay=-1.0 / math.log(0.9))  # fmt: skip
    conn = _bindsnet_connection(bn, source, target, net.w0, batch, soft)
    network.add_layer(source, name="X")
    network.add_layer(target, name="Y")
    network.add_connection(conn, source="X", target="Y")
    steps = x.unsqueeze(1)  # [T, 1, B, N_in]: one step per run() call

    def run():
        network.reset_state_variables()
        with torch.no_grad():
            conn.w.copy_(net.w0.t())
            for t in range(x.shape[0]):
                network.run(inputs={"X": steps[t]}, time=1)

    return run


def _bindsnet_nodes(bn, n_in: int, n_out: int, batch: int):
    """Trace-recording ``Input`` nodes on both sides (their ``forward`` sets the spikes and
    advances the traces as every BindsNET node does)."""
    nodes = []
    for n in (n_in, n_out):
        node = bn.Input(n=n, traces=True, traces_additive=True, tc_trace=TAU)
        node.dt = 1.0
        node.compute_decays(1.0)
        node.set_batch_size(batch)
        nodes.append(node)
    return nodes


def bindsnet_rule(net: Net, x: torch.Tensor, soft: bool):
    """BindsNET's ``Connection.update()`` in the snnTorch loop; ``fc`` reads its weight."""
    bn = bindsnet()
    if bn is None:
        return None
    batch, n_in = x.shape[1:]
    source, target = _bindsnet_nodes(bn, n_in, net.w0.shape[0], batch)
    conn = _bindsnet_connection(bn, source, target, net.w0, batch, soft)
    conn.dt = 1.0
    net.fc.weight = nn.Parameter(conn.w.data.t(), requires_grad=False)  # shares conn.w

    def run():
        net.reset()
        for node in (source, target):
            node.reset_state_variables()
        with torch.no_grad():
            for t in range(x.shape[0]):
                spk = net.lif(net.fc(x[t]))
                source.forward(x[t])
                target.forward(spk)
                conn.update(learning=True)

    return run


FACTORIES = {"ours": ours, "ours_inplace": ours_inplace, "snntorch": snntorch_learner, "spikingjelly": spikingjelly_learner,
             "bindsnet": bindsnet_network, "bindsnet_rule": bindsnet_rule}  # fmt: skip


def check_same_update(soft: bool, n_in: int = 12, n_out: int = 5, batch: int = 3,
                      steps: int = 80) -> dict[str, float]:  # fmt: skip
    """Each learner's final weight on the same recorded pre and post spikes (a
    :class:`Replay` neuron) against the hand-written update, in float64 (BindsNET's rules
    take float32 only: compared with the float32 hand-written update): the largest deviation
    relative to the largest |Δw|. ``bindsnet`` runs its own neurons, so it is checked
    through ``bindsnet_rule`` (the same ``Connection`` and rule). ``ours, coincident="ltp"``
    (our default) shows how large a difference of convention is on this case."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.2).double()
    post = (torch.rand(steps, batch, n_out, generator=g) < 0.2).double()
    expected = {}
    for dtype in (torch.float64, torch.float32):
        ref = Net(n_in, n_out, Replay(post.to(dtype)), dtype)
        plain(ref, x.to(dtype), soft)()
        expected[dtype] = ref.fc.weight.detach().double()
    scale = float((expected[torch.float64] - ref.w0.double()).abs().max())
    out = {}
    for name in ("ours", "ours_inplace", "snntorch", "spikingjelly", "bindsnet_rule",
                 "ours_ltp"):  # fmt: skip
        dtype = torch.float32 if name == "bindsnet_rule" else torch.float64
        net = Net(n_in, n_out, Replay(post.to(dtype)), dtype)
        if name == "ours_ltp":
            run = ours(net, x, soft, coincident="ltp")
        else:
            run = FACTORIES[name](net, x.to(dtype), soft)
        if run is None:
            continue
        run()
        diff = (net.fc.weight.detach().double() - expected[dtype]).abs().max()
        out[name] = float(diff) / scale
    return out


def measure(n_in: int, n_out: int, batch: int, steps: int, soft: bool, repeats: int) -> dict:
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, batch, n_in, generator=g) < 0.05).float()
    nets = {}
    methods = {}
    for name in ("plain", "plain_sgd", *FACTORIES):
        net = nets[name] = Net(n_in, n_out)
        if name.startswith("plain"):
            run = plain(net, x, soft, optimizer=name == "plain_sgd")
        else:
            run = FACTORIES[name](net, x, soft)
        if run is not None:
            methods[name] = run
    big = n_out * n_in * batch > 10**6  # the peers' [B, N_out, N_in] products: run once
    slow = {n for n in PEERS if big and (n in ("snntorch", "spikingjelly") or soft)}
    times = interleaved(methods, repeats, once=slow)  # first call of each: the warm-up
    final = {k: nets[k].fc.weight.detach() for k in methods if k != "bindsnet"}
    diffs = {k: float((w - final["plain"]).abs().max()) for k, w in final.items()}
    row = {"size": f"{n_in}->{n_out}, B = {batch}", "steps": steps, "update": "soft" if soft else "additive",
           **{f"{k}_ms": v / steps * 1e3 for k, v in times.items()},
           "max_abs_weight_difference": max(diffs.values()),
           "weight_difference_from_plain": diffs}  # fmt: skip
    for ours_key, group, tag in (("ours", OPTIMIZER_PEERS, ""), ("ours_inplace", INPLACE_PEERS,
                                                                 "_inplace")):  # fmt: skip
        peers = {k: row[f"{k}_ms"] for k in group if f"{k}_ms" in row}
        if peers:
            fastest = min(peers, key=peers.get)
            row[f"fastest{tag}_peer"] = fastest
            row[f"{ours_key}_over_fastest{tag}_peer"] = row[f"{ours_key}_ms"] / peers[fastest]
    row["ours_over_plain_sgd"] = row["ours_ms"] / row["plain_sgd_ms"]
    row["ours_inplace_over_plain"] = row["ours_inplace_ms"] / row["plain_ms"]
    return row


NAMES = {"snntorch": "snnTorch STDPLearner", "spikingjelly": "SpikingJelly STDPLearner",
         "bindsnet": "BindsNET Network.run", "bindsnet_rule": "BindsNET rule in our loop"}  # fmt: skip


def _versus(r: dict, key: str) -> str:
    peer = r.get(f"fastest{key}_peer")
    ratio = r.get(f"{'ours' + key}_over_fastest{key}_peer")
    return f"{ratio:.2f} ({NAMES[peer]})" if peer else "n/a"


def table(rows: list[dict], checks: dict[str, dict[str, float]], header: str) -> str:
    def ms(r, k):
        return f"{r[k + '_ms']:.3f}" if k + "_ms" in r else "n/a"

    opt_cols, inplace_cols = ["plain_sgd", "ours", *OPTIMIZER_PEERS], ["plain", "ours_inplace",
                                                                       *INPLACE_PEERS]  # fmt: skip
    label = {"plain_sgd": "plain, torch SGD", "ours": "ours", "plain": "plain, in place",
             "ours_inplace": "ours, Δw in place", **NAMES}  # fmt: skip
    lines = [header, "", "Milliseconds per step (minimum of interleaved repeats). With a torch "
             "optimizer (`opt.step()` applies the update):", "",
             "| size | update | " + " | ".join(label[k] for k in opt_cols)
             + " | ours / fastest peer | ours / plain SGD |",
             "|---|---|" + "---|" * (len(opt_cols) + 2)]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['size']} | {r['update']} | " + " | ".join(ms(r, k) for k in opt_cols)
                     + f" | {_versus(r, '')} | {r['ours_over_plain_sgd']:.2f} |")  # fmt: skip
    lines += ["", "In place, no optimizer (the weight updated by the learner; ours: `w.add_(rule."
              "step())`):", "", "| size | update | " + " | ".join(label[k] for k in inplace_cols)
              + " | ours / fastest peer | ours / plain | final weights: ours, largest peer, − plain |",
              "|---|---|" + "---|" * (len(inplace_cols) + 3)]  # fmt: skip
    for r in rows:
        diff = r["weight_difference_from_plain"]
        lines.append(f"| {r['size']} | {r['update']} | "
                     + " | ".join(ms(r, k) for k in inplace_cols)
                     + f" | {_versus(r, '_inplace')} | {r['ours_inplace_over_plain']:.2f} "
                     f"| {diff['ours']:.0e}, "
                     f"{max((v for k, v in diff.items() if k in PEERS), default=0.0):.0e} |")  # fmt: skip
    lines += ["", "The same update: each learner's final weight after 80 steps of the same "
              "recorded spikes (12 -> 5, B = 3), largest deviation from the float64 hand-written "
              "update relative to the largest |Δw|:", "",
              "| update | " + " | ".join(next(iter(checks.values()))) + " |",
              "|---|" + "---|" * len(next(iter(checks.values())))]  # fmt: skip
    for update, check in checks.items():
        lines.append(f"| {update} | " + " | ".join(f"{v:.1e}" for v in check.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="percent of STEPS")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--update", nargs="+", default=["soft", "additive"],
                        choices=["soft", "additive"])  # fmt: skip
    parser.add_argument("--size", type=int, nargs="+", default=list(range(len(SIZES))),
                        help="which of SIZES to run (indices; default all)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    pinned = pin_allocator()
    steps = " and ".join(str(max(1, STEPS[i] * args.steps // 100)) for i in args.size)
    header = (f"Online pair STDP, 5 % input spikes, {steps} steps per run; "
              f"torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
              f"{', glibc mmap threshold pinned' if pinned else ''}")  # fmt: skip
    print(header, flush=True)
    checks = {u: check_same_update(u == "soft") for u in args.update}
    print(checks, flush=True)
    rows = []
    for i in args.size:
        for update in args.update:
            steps = max(1, STEPS[i] * args.steps // 100)
            rows.append(measure(*SIZES[i], steps=steps, soft=update == "soft",
                                repeats=args.repeats))  # fmt: skip
            print(rows[-1], flush=True)
    text = table(rows, checks, header)
    print(text)
    save_results(args.out, "online", text, rows)
    return rows


if __name__ == "__main__":
    main()
