"""When a training run counts as diverged: the one rule of ``compare``, ``resnet``,
``datainit`` and ``depth``.

A run diverged when

1. it recorded no loss, or a loss is not finite (NaN or infinite); or
2. a loss grew to at least ``GROWTH`` (100) times its first loss, at any step: the run blew up,
   whether or not it later came back; or
3. only where a command asks for it (``compare``, ``dead_loss=2.2``): its last smoothed loss is
   at least ``dead_loss``. Near chance (``ln 10 = 2.303`` for ten classes) the network learned
   nothing ("dead").

Summaries count diverged runs (``n_diverged`` / ``diverged``); the mean and std of the losses
leave out non-finite values only.

Standard library only.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

__all__ = ["GROWTH", "is_diverged"]

GROWTH = 100.0


def is_diverged(losses: Sequence[float], smoothed: Optional[Sequence[float]] = None,
                dead_loss: Optional[float] = None, growth: float = GROWTH) -> bool:
    """Whether the run with per-step training ``losses`` diverged (see the module docstring).

    Args:
        losses: the training loss of every step, in order.
        smoothed: the smoothed curve, needed with ``dead_loss`` only (defaults to ``losses``).
        dead_loss: if given, a last smoothed loss ``>= dead_loss`` also counts.
        growth: the blow-up factor over the first loss (100).

    Example: ``is_diverged([2.3, 1.0, 240.0])`` is True (``240 >= 100 * 2.3``);
    ``is_diverged([2.3, 5.0, 0.5])`` is False.
    """
    values = [float(v) for v in losses]
    if not values or not all(math.isfinite(v) for v in values):
        return True
    first = values[0]
    if first > 0 and max(values) >= growth * first:
        return True
    if dead_loss is not None:
        curve = values if smoothed is None else [float(v) for v in smoothed]
        if not curve:
            return True
        last = curve[-1]
        return not math.isfinite(last) or last >= dead_loss
    return False
