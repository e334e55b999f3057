"""How one product of a plan runs on a chunk: the :class:`Kernel` value that the plan's
candidates (:meth:`~plasticity.engine.plan.Plan.candidates`), the cost model and the
evaluation read by its attributes. Its :attr:`~Kernel.name` is only for display and records
(``rule.kernel_choice``, the choices a checkpoint remembers)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Kernel", "GEMM", "ONE_STEP"]


@dataclass(frozen=True, slots=True)
class Kernel:
    """One product's kernel.

    Attributes:
        side: ``"post"``/``"pre"``: the product is read at that side's spikes (an
            event-driven sum, or a rewrite of that side's trace); ``None``: every row (a
            GEMM, a conv weight-gradient or a sum over rows).
        rewrite: ``side``'s trace is never tabulated: the product reads the other side's
            future trace at ``side``'s spikes instead.
        gemm: the sum is a GEMM (or conv weight-gradient) rather than an event-driven sum
            at ``side``'s spikes (a rewritten conv product: ``side``'s spikes times the
            future trace).

    Example:
        >>> Kernel("post", rewrite=True, gemm=True).name
        'post-rewrite-gemm'
        >>> Kernel.named("pre-events") == Kernel("pre", rewrite=False, gemm=False)
        True
    """

    side: str | None = None
    rewrite: bool = False
    gemm: bool = True

    @property
    def name(self) -> str:
        """The kernel's name: ``"gemm"``, ``"post-events"``, ``"pre-rewrite"``,
        ``"post-rewrite-gemm"``, ..."""
        if self.side is None:
            return "gemm"
        kind = "rewrite" if self.rewrite else "events"
        return f"{self.side}-{kind}-gemm" if self.gemm else f"{self.side}-{kind}"

    @property
    def other(self) -> str | None:
        """The side opposite :attr:`side` (whose rows an event-driven sum gathers, or whose
        future trace a rewrite reads); ``None`` for a GEMM.

        Example:
            >>> Kernel("pre", rewrite=True, gemm=False).other
            'post'
        """
        return None if self.side is None else _OTHER[self.side]

    @property
    def events(self) -> bool:
        """Whether the product is an event-driven sum of the other side's rows at
        ``side``'s spikes (not rewritten)."""
        return self.side is not None and not self.rewrite and not self.gemm

    @staticmethod
    def named(name: str) -> Kernel:
        """The kernel of ``name`` (as :attr:`name` gives it; e.g. a remembered choice)."""
        found = _NAMED.get(name)
        if found is None:
            raise ValueError(f"unknown kernel {name!r}; one of {sorted(_NAMED)}")
        return found

    def __str__(self) -> str:
        return self.name


_OTHER = {"post": "pre", "pre": "post"}
#: every product a GEMM (or a conv weight-gradient, or a sum over rows)
GEMM = Kernel()
_NAMED = {k.name: k for k in [GEMM] + [
    Kernel(side, rewrite, gemm) for side in ("post", "pre") for rewrite, gemm in
    ((False, False), (True, False), (True, True))
]}  # fmt: skip
#: what ``rule.kernel_choice`` records for a window of one step (the online fast path)
ONE_STEP = "one-step"
