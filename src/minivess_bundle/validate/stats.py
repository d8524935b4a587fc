"""Intensity and label statistics of a validated pair (chunked, no full-size copies)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)


def _percentiles_from_hist(hist: np.ndarray, values: np.ndarray, qs: tuple[float, ...]) -> list:
    import numpy as np

    cum = np.cumsum(hist)
    total = int(cum[-1])
    out = []
    for q in qs:
        target = q / 100.0 * total
        index = int(np.searchsorted(cum, target, side="left")) if target > 0 else 0
        if target <= 0:
            index = int(np.flatnonzero(hist)[0])
        out.append(values[min(index, len(values) - 1)].item())
    return out


def intensity_stats(image: np.ndarray) -> dict[str, float | int | None]:
    """min, max, mean and p1/p50/p99 of the finite voxels.

    Percentiles are the ``inverted_cdf`` kind (the smallest stored value with at
    least q % of voxels at or below it), computed exactly from a histogram for
    8/16-bit integers (no copy of the volume) and with ``np.percentile`` otherwise.
    """
    import numpy as np

    from ..core.metrics import small_int_histogram

    qs = (1.0, 50.0, 99.0)
    histogram = small_int_histogram(image)
    if histogram is not None:
        offset, hist = histogram
        values = np.arange(hist.size, dtype=np.int64) + offset
        nonzero = np.flatnonzero(hist)
        p1, p50, p99 = _percentiles_from_hist(hist, values, qs)
        mean = float((hist * values).sum() / image.size)
        lo, hi = int(values[nonzero[0]]), int(values[nonzero[-1]])
        return {"min": lo, "max": hi, "mean": round(mean, 6), "p1": p1, "p50": p50, "p99": p99}
    flat = image.reshape(-1)
    finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if finite.size == 0:
        return {"min": None, "max": None, "mean": None, "p1": None, "p50": None, "p99": None}
    p1, p50, p99 = (float(v) for v in np.percentile(finite, qs, method="inverted_cdf"))
    return {
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": round(float(finite.mean(dtype=np.float64)), 6),
        "p1": p1,
        "p50": p50,
        "p99": p99,
    }


def label_values(label: np.ndarray) -> list:
    """Sorted distinct values of a mask (exact, histogram-based for uint8)."""
    import numpy as np

    flat = label.reshape(-1)
    if flat.dtype == np.uint8:
        return [int(v) for v in np.flatnonzero(np.bincount(flat, minlength=256))]
    return [v.item() for v in np.unique(flat)]
