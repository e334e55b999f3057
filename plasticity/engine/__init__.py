r"""The rule engine: evaluates a rule's terms on a chunk of steps, exactly.

A rule's declaration (:mod:`plasticity.language`) is compiled once into a :class:`Plan`:
a list of products ``coef · Σ_{t,b} m(t,b) P(i,t,b) Q(j,t,b)`` aimed at a *target*
(``"dw"``: split into the accumulator's non-negative ``pos``/``neg``; or a named
weight-shaped buffer such as an eligibility trace), the filters whose state is carried
from chunk to chunk, and the eligibility traces.

Per chunk, every signal a product reads is computed once (traces scanned in a constant
number of ops, :func:`~plasticity.functional.traces.scan_trace`) and every product is
one GEMM over the chunk's ``T·B`` rows, one event-driven sum over the spikes of one side
(:func:`~plasticity.functional.correlate.event_sum`) or one conv weight-gradient. The
engine may rewrite "trace of spikes × other side" as "spikes × future trace of the other
side" (plus a boundary term from the carried trace), so that one spike index serves
several products. Which of these runs is chosen by :class:`KernelChooser` with a cost
model (:mod:`plasticity.engine.cost`: operation counts from the chunk's shapes and spike
counts, no clock, so the same inputs run the same kernels in every process); timing the
candidates is an opt-in (``CHOOSER.benchmark``). The numbers are the same whichever runs,
to floating-point rounding.

A window of one step (online learning) skips all of that (:mod:`plasticity.engine.step`):
each signal is one op on the step's rows, each product one outer product over the batch.

Signed factors are split exactly: a product of parts of known sign goes to ``pos`` or
``neg`` by the sign of the parts (a factor :math:`x = x^+ - x^-`).
"""

from .chooser import CHOOSER, KernelChooser
from .chunk import Chunk
from .kernel import GEMM, Kernel
from .plan import Plan, Product, compile_rule
from .run import Sink, run_plan, signed_parts
from .step import run_step
from .window import run_one_step, run_window

__all__ = ["Plan", "Product", "Chunk", "Kernel", "GEMM", "KernelChooser", "CHOOSER", "compile_rule", "run_plan",
           "signed_parts", "Sink", "run_window", "run_one_step", "run_step"]  # fmt: skip
