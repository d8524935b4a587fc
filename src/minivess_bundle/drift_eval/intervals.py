"""Rates with their uncertainty: the Wilson score interval and a replicated rate's summary.

A power or false-positive rate is a count of rejections among Bernoulli trials. The
Wilson interval (Wilson 1927) keeps its coverage near the nominal level down to a handful
of trials and never leaves [0, 1]: with no rejection its lower end is exactly 0, with
every trial rejecting its upper end is exactly 1 (where the Wald interval collapses to a
point). Trials of different replications are pooled for the interval; the per-replication
rates are kept beside it so their spread is visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

from .sets import DriftEvalError


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials`` at ``confidence`` (two-sided)."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise DriftEvalError(f"interval over {trials!r} trials", expected="at least 1 trial")
    if not 0 <= successes <= trials:
        raise DriftEvalError(
            f"interval of {successes!r} successes in {trials} trials",
            expected=f"0..{trials} successes",
        )
    if not 0.0 < confidence < 1.0:
        raise DriftEvalError(f"confidence {confidence!r}", expected="a number in (0, 1)")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2.0 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def summarise_rate(
    hits: Sequence[int], trials_each: int, confidence: float = 0.95
) -> dict[str, Any]:
    """A rate replicated ``len(hits)`` times with ``trials_each`` trials each.

    ``{"rate", "interval": [low, high], "successes", "trials", "replications",
    "by_replication": [...]}``; ``rate`` is the mean of the per-replication rates (equal to
    the pooled rate, every replication having the same number of trials).
    """
    trials = int(trials_each) * len(hits)
    successes = int(sum(hits))
    low, high = wilson_interval(successes, trials, confidence)
    return {
        "rate": round(successes / trials, 6),
        "interval": [round(low, 6), round(high, 6)],
        "successes": successes,
        "trials": trials,
        "replications": len(hits),
        "by_replication": [round(h / trials_each, 6) for h in hits],
    }
