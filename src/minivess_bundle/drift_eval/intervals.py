"""Rates with their uncertainty: the Wilson score interval, a volume-clustered interval and
a replicated rate's summary.

A power or false-positive rate is a count of rejections among Bernoulli trials. The
Wilson interval (Wilson 1927) keeps its coverage near the nominal level down to a handful
of trials and never leaves [0, 1]: with no rejection its lower end is exactly 0, with
every trial rejecting its upper end is exactly 1 (where the Wald interval collapses to a
point).

**Clustered.** A cell's trials are not independent: its ~200 samples come from the ~50 test
volumes of its replications, each volume reused in several samples (and, as roles rotate,
in several replications), and samples of one volume share that volume's offset from the
reference. The Wilson interval over the pooled trials is then too narrow. The interval a
cell reports (:func:`clustered_interval`) is the Wilson interval at the cell's **effective
number of trials** ``trials / deff`` (Kish's design effect, the effective-sample-size
Wilson interval of Korn and Graubard 1998): ``deff`` is the variance of the rate under a
**cluster bootstrap over test volumes** (:data:`RESAMPLES` resamples of the cell's
volumes with replacement, each sample weighted by how often its volumes were drawn, the
rate recomputed) over the binomial variance ``p (1 - p) / trials``, floored at 1 (reusing
volumes never makes a rate more certain than independent trials would). Where every sample
of a volume agrees, ``deff`` approaches trials / volumes and the interval is about the
Wilson interval of the volumes; independent samples give ``deff`` = 1, the Wilson interval.
A rate of 0 or 1 has no spread to resample: ``deff`` = 1 there (the Wilson ends, exactly 0
or 1 on the observed side). Unlike a percentile bootstrap interval, this one neither
collapses to a point for a cell with no rejection nor leaves [0, 1]. The per-replication
rates are kept beside it so their spread is visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

from .sets import DriftEvalError

#: cluster-bootstrap resamples behind a design effect (its relative error ~ sqrt(2 / 1000))
RESAMPLES = 1000


def wilson_interval(
    successes: float, trials: float, confidence: float = 0.95
) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials`` at ``confidence`` (two-sided).

    ``trials`` may be an effective (non-integer) number of trials, ``successes`` then the
    rate times it (:func:`clustered_interval`)."""
    if isinstance(trials, bool) or not isinstance(trials, int | float) or not trials > 0:
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


def design_effect(
    outcomes: Sequence[bool], volumes: Sequence[Sequence[str]], seed: int
) -> tuple[float, int]:
    """``(deff, distinct volumes)`` of the rate of ``outcomes``, sample ``i`` drawn from
    the test volumes ``volumes[i]``: the cluster-bootstrap variance of the rate over the
    binomial one, floored at 1 (see the module's docstring).

    Vectorised: one ``(RESAMPLES, volumes)`` multinomial count matrix; a sample's weight in
    a resample is the product of its volumes' counts (with one volume per sample, the
    plain cluster bootstrap; with several, the pigeonhole bootstrap of crossed designs)."""
    import numpy as np

    y = np.asarray(outcomes, dtype=float)
    if len(y) != len(volumes) or len(y) == 0:
        raise DriftEvalError(
            f"{len(y)} outcomes with {len(volumes)} volume lists",
            expected="one non-empty volume list per outcome, at least one outcome",
        )
    names = sorted({v for vols in volumes for v in vols})
    if any(len(vols) == 0 for vols in volumes):
        raise DriftEvalError("a sample with no volume", expected="every sample's test volumes")
    p = float(y.mean())
    if p in (0.0, 1.0) or len(names) < 2:
        return 1.0, len(names)
    index = {v: i for i, v in enumerate(names)}
    width = max(len(vols) for vols in volumes)
    # a shorter list is padded with a column whose count is always 1
    members = np.full((len(y), width), len(names))
    for s, vols in enumerate(volumes):
        members[s, : len(vols)] = [index[v] for v in vols]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=RESAMPLES)
    counts = np.hstack([counts, np.ones((RESAMPLES, 1), dtype=counts.dtype)]).astype(float)
    if width == 1:  # one volume per sample: per-volume sums, a (RESAMPLES, volumes) product
        column = members[:, 0]
        hits = np.bincount(column, weights=y, minlength=len(names) + 1)
        sizes = np.bincount(column, minlength=len(names) + 1).astype(float)
        numerator, total = counts @ hits, counts @ sizes
    else:
        weights = counts[:, members].prod(axis=2)  # (RESAMPLES, samples)
        numerator, total = weights @ y, weights.sum(axis=1)
    kept = total > 0
    rates = numerator[kept] / total[kept]
    binomial = p * (1.0 - p) / len(y)
    return max(1.0, float(rates.var()) / binomial), len(names)


def clustered_interval(
    outcomes: Sequence[bool],
    volumes: Sequence[Sequence[str]],
    seed: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The volume-clustered interval of the rate of ``outcomes``: the Wilson interval at
    ``trials / deff`` effective trials (:func:`design_effect`).

    ``{"interval": [low, high], "design_effect", "effective_trials", "volumes"}``."""
    deff, count = design_effect(outcomes, volumes, seed)
    trials = len(outcomes) / deff
    low, high = wilson_interval(sum(bool(o) for o in outcomes) / deff, trials, confidence)
    return {
        "interval": [round(low, 6), round(high, 6)],
        "design_effect": round(deff, 4),
        "effective_trials": round(trials, 2),
        "volumes": count,
    }


def summarise_rate(
    hits: Sequence[int], trials_each: int, confidence: float = 0.95
) -> dict[str, Any]:
    """A rate replicated ``len(hits)`` times with ``trials_each`` trials each.

    ``{"rate", "interval_wilson": [low, high], "successes", "trials", "replications",
    "by_replication": [...]}``; ``rate`` is the mean of the per-replication rates (equal to
    the pooled rate, every replication having the same number of trials); the Wilson
    interval pools the trials as independent (:func:`clustered_interval` does not).
    """
    trials = int(trials_each) * len(hits)
    successes = int(sum(hits))
    low, high = wilson_interval(successes, trials, confidence)
    return {
        "rate": round(successes / trials, 6),
        "interval_wilson": [round(low, 6), round(high, 6)],
        "successes": successes,
        "trials": trials,
        "replications": len(hits),
        "by_replication": [round(h / trials_each, 6) for h in hits],
    }
