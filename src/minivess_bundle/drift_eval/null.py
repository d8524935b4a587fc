"""The calibrated null: a test sample's statistic ranked among calibration volumes'.

Patches of one volume are not independent draws: a volume differs from the reference as a
whole, so a detector's own p-value (which assumes independent rows) flags clean *new*
volumes far too often (measured on main's design: KS 0.85 at n = 5). The null of each
statistic is therefore drawn from the **calibration volumes only**, and at the level of
volumes: a null set is **one** sample of each calibration volume (``n`` of its patches,
drawn like a test sample's), ``V`` statistics against the replication's reference
(:func:`.protocol.evaluate` draws them). The roles are a random partition of the pool, so a
clean test volume and the ``V`` calibration volumes are exchangeable given the reference,
and so are their samples' statistics: the rank p-value (:func:`calibrated_p`) then rejects
a clean test sample with probability ``floor(alpha (V + 1)) / (V + 1) <= alpha`` exactly
(one-sided), on volumes neither the reference nor the null saw. A false alarm needs a
statistic above every calibration volume's, so ``V >= 1/alpha - 1`` (19 at 0.05;
two-sided ``2/alpha - 1``) is needed for a test to reject at all: fewer is logged and
recorded (:func:`attainable`). Whether a measured false-alarm rate is acceptable is
:func:`within_tolerance`'s.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .roles import Roles
from .sets import DriftEvalError

log = logging.getLogger(__name__)

#: which side of the null a statistic is ranked on (see :func:`calibrated_p`)
TAILS = ("two_sided", "greater")


def smallest_p(volumes: int, tail: str) -> float:
    """The smallest calibrated p a null of ``volumes`` statistics gives (:func:`calibrated_p`)."""
    return min(1.0, (1.0 if tail == "greater" else 2.0) / (1 + int(volumes)))


def attainable(roles: list[Roles], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per replication the null's size ``V`` (calibration volumes; groups of
    ``volumes_per_sample`` at the largest n), the smallest p it gives and the exact
    false-alarm bound ``floor(alpha (V + 1)) / (V + 1)``; ``rejects`` is False where no
    sample can be flagged at ``alpha`` (too few calibration volumes), which is logged."""
    alpha, tail = float(cfg["alpha"]), cfg["null_tail"]
    group = max(1, min(max(int(n) for n in cfg["sample_sizes"]), int(cfg["volumes_per_sample"])))
    sizes = [len(role.calibration) // group for role in roles]
    ranks = [
        math.floor(alpha * (v + 1) / (1.0 if tail == "greater" else 2.0) + 1e-9) for v in sizes
    ]
    rows = {
        "null_size": sizes,
        "smallest_p": [round(smallest_p(v, tail), 6) for v in sizes],
        "fpr_bound": [
            round(k * (1.0 if tail == "greater" else 2.0) / (v + 1), 6)
            for k, v in zip(ranks, sizes, strict=True)
        ],
        "rejects": [smallest_p(v, tail) <= alpha + 1e-12 for v in sizes],
    }
    if not all(rows["rejects"]):
        needed = math.ceil((1.0 if tail == "greater" else 2.0) / alpha - 1 - 1e-9)
        log.warning(
            "null of %s volumes in replications %s: no sample can be flagged at alpha %s "
            "(%s needs at least %d calibration volumes): raise calibration_folds",
            min(sizes),
            [r for r, ok in enumerate(rows["rejects"]) if not ok],
            alpha,
            tail,
            needed,
        )
    return rows


def within_tolerance(rate: float, alpha: float, tolerance: float) -> bool:
    """``rate <= alpha + tolerance`` (inclusive, with float slack): a false-alarm rate
    below ``alpha`` is a conservative test, not a failure. ``rate`` is the cell's point
    estimate: the tolerance bounds the rate measured; the cell's interval clustered by
    test volume (:func:`.intervals.clustered_interval`) is reported beside it, and says how
    far another draw of test volumes could move it."""
    return float(rate) <= float(alpha) + float(tolerance) + 1e-12


def calibrated_p(null: list[float], observed: float, tail: str = "two_sided") -> float:
    """The rank of ``observed`` among the ``null`` statistics as a p-value.

    Every detector's statistic is oriented "larger = further from the reference" (KS and
    BBSD: ``-log10`` of the Bonferroni minimum p; MMD: the squared MMD; C2ST: the held-out
    accuracy), and ``N = len(null)``:

    - ``greater`` (drift_eval's default): ``P_hi = (1 + #{null >= observed}) / (1 + N)``, a drift is
      only a larger statistic;
    - ``two_sided`` (this function's default): ``min(1, 2 min(P_hi, P_lo))`` with
      ``P_lo = (1 + #{null <= observed}) / (1 + N)``: a statistic that moves away from its
      no-drift distribution in either direction is a change (a drift that moves a volume
      *towards* the reference pool makes its statistic smaller); it needs about twice the
      calibration volumes of ``greater`` for the same false-alarm control.

    Ties (within 1e-12) count on both sides, against rejection; a statistic the null equals
    everywhere gives ``p = 1``. With exchangeable draws, ``P(p <= alpha) <= alpha``.
    """
    exceed = sum(1 for value in null if value >= observed - 1e-12)
    p_hi = (1 + exceed) / (1 + len(null))
    if tail == "greater":
        return p_hi
    if tail != "two_sided":
        raise DriftEvalError(f"null tail {tail!r}", expected=f"one of {TAILS}")
    below = sum(1 for value in null if value <= observed + 1e-12)
    p_lo = (1 + below) / (1 + len(null))
    return min(1.0, 2.0 * min(p_hi, p_lo))
