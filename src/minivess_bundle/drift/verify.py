"""Verification figures: what proves a variant is what it claims, measured on the arrays.

Each kind in :mod:`.kinds` picks its figures from here and names one *primary* figure
that orders its levels. :func:`check_changed` refuses a variant with severity > 0
whose primary figure shows no change from the clean volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..core.errors import DriftError


def figure(value: float) -> float | None:
    """A figure for the manifest: 6 significant digits; ``None`` when not finite."""
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None


def round_figures(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: round_figures(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_figures(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    return figure(value)


def image_figures(clean, drifted) -> dict[str, Any]:
    """KS statistic and p-value of intensities vs the clean volume, mean and sd shift."""
    from ..core.metrics import ks_test, mean_std

    ks = ks_test(clean, drifted)
    mean_0, std_0 = mean_std(clean)
    mean_1, std_1 = mean_std(drifted)
    return {
        "ks_statistic": ks["statistic"],
        "ks_pvalue": ks["pvalue"],
        "ks_samples": ks["n"],
        "mean_before": mean_0,
        "mean_after": mean_1,
        "mean_shift": mean_1 - mean_0,
        "std_before": std_0,
        "std_after": std_1,
        "std_ratio": std_1 / std_0 if std_0 else math.nan,
        "std_change": std_1 / std_0 - 1.0 if std_0 else math.nan,
    }


#: The band a blur kind's background high-pass noise sd must stay in, as a ratio to the
#: clean volume's at level 5: a wider PSF or coarser sectioning blurs the photons from
#: the sample, not the detector's noise (issue #23).
NOISE_KEPT_RATIO = (0.8, 1.25)
#: The most the deepest quarter's vessel SNR may keep (ratio to clean) at level 5 where
#: fewer photons reach the detector (bleaching, attenuation) and shot noise dominates.
DEEP_SNR_RATIO_MAX = 0.8
#: The least share of saturated voxels that must be vessel (the ceiling comes from the
#: vessel signal, so a sparse volume's background is not what clips).
SATURATED_VESSEL_SHARE_MIN = 0.5


def within(value: float, bounds: tuple[float, float]) -> bool:
    """Whether ``value`` lies in the closed interval ``bounds`` (NaN never does)."""
    return bounds[0] <= value <= bounds[1]


def noise_kept(clean, drifted, mask=None) -> dict[str, float]:
    """Background high-pass noise sd (:func:`minivess_bundle.core.metrics.noise_sigma`, on the
    mask's zeros when given) before and after, and their ratio."""
    from ..core.metrics import noise_sigma

    if mask is not None and getattr(mask, "shape", None) != clean.shape:
        mask = None
    before, after = noise_sigma(clean, mask), noise_sigma(drifted, mask)
    return {
        "noise_sd_before": before,
        "noise_sd_after": after,
        "noise_sd_ratio": after / before if before else math.nan,
    }


def z_step_um(spacing: Sequence[float] | None, axis: int, kind: str) -> float:
    """The slice step in um; a drift along depth refuses to guess it."""
    if spacing is None:
        raise DriftError(f"{kind} drift needs the voxel spacing in um", expected="spacing=")
    step = float(spacing[axis])
    if not 0.01 <= step <= 1000:
        raise DriftError(
            f"{kind} drift: z step {step} um is implausible",
            expected="a spacing in um (0.01 .. 1000)",
        )
    return step


def slice_means(array, axis: int):
    import numpy as np

    other = tuple(a for a in range(array.ndim) if a != axis)
    return array.mean(axis=other, dtype=np.float64)


def depth_fit(clean, drifted, dark: float, axis: int, step: float) -> dict[str, float]:
    """Least-squares change of inverse attenuation length from slice means above ``dark``."""
    import numpy as np

    m0 = slice_means(clean, axis) - dark
    m1 = slice_means(drifted, axis) - dark
    depth = np.arange(m0.size) * step
    good = (m0 > 0) & (m1 > 0)
    measured = math.nan
    if good.sum() >= 2 and depth[good].any():
        log_ratio = np.log(m1[good] / m0[good])
        measured = -float((depth[good] * log_ratio).sum() / (depth[good] ** 2).sum())
    return {
        "measured_delta_inverse_length_per_um": measured,
        "slice_mean_ratio_deepest": float(m1[-1] / m0[-1]) if m0[-1] > 0 else math.nan,
    }


def depth_snr(clean, drifted, mask, axis: int) -> dict[str, float]:
    """SNR change (dB, drifted - clean) of the shallowest and deepest quarter of slices.

    On the vessels (``mask``: vessel mean minus background mean over the background
    noise) and on the whole volume (99th percentile minus median over the noise):
    :func:`minivess_bundle.core.metrics.snr_db` on each quarter.
    """
    import numpy as np

    from ..core.metrics import snr_db

    n = clean.shape[axis]
    quarter = max(1, n // 4)
    out = {}
    for name, part in (("shallowest", slice(0, quarter)), ("deepest", slice(n - quarter, n))):
        index = [slice(None)] * clean.ndim
        index[axis] = part
        index = tuple(index)
        whole = snr_db(drifted[index]) - snr_db(clean[index])
        out[f"snr_change_db_whole_{name}_quarter"] = whole
        if mask is not None and mask.shape == clean.shape:
            sub = np.asarray(mask)[index]
            vessels = snr_db(drifted[index], sub) - snr_db(clean[index], sub)
            out[f"snr_change_db_vessels_{name}_quarter"] = vessels
    return out


def last_slice_ratio(clean, drifted, dark: float, axis: int) -> float:
    m0 = slice_means(clean, axis) - dark
    m1 = slice_means(drifted, axis) - dark
    return float(m1[-1] / m0[-1]) if m0[-1] > 0 else math.nan


def fitted_gain(clean, drifted, k: int, axis: int) -> float:
    import numpy as np

    x = np.take(clean, k, axis=axis).astype(np.float64).ravel()
    y = np.take(drifted, k, axis=axis).astype(np.float64).ravel()
    var = x.var()
    return float(((x - x.mean()) * (y - y.mean())).mean() / var) if var else math.nan


def topology_figures(clean, drifted, clean_skeleton=None, clean_topology=None) -> dict[str, Any]:
    """Betti-0/1/2, Euler characteristic and foreground before/after; clDice to the clean mask."""
    from ..core import metrics

    before = clean_topology or metrics.topology_summary(clean)
    after = metrics.topology_summary(drifted)
    figures: dict[str, Any] = {}
    for key in ("betti0", "betti1", "betti2", "euler", "foreground_fraction"):
        figures[f"{key}_before"] = before[key]
        figures[f"{key}_after"] = after[key]
    figures["cldice"] = metrics.cldice(drifted, clean, skeleton_b=clean_skeleton)
    return figures


def annotation_figures(clean, drifted) -> dict[str, Any]:
    """Dice to the clean mask, foreground before/after and components per megavoxel."""
    import numpy as np

    from ..core.morphology import count_components

    a, b = clean > 0, drifted > 0
    total = int(a.sum()) + int(b.sum())
    per_mvox = 1e6 / a.size
    return {
        "dice": 2.0 * int(np.count_nonzero(a & b)) / total if total else 1.0,
        "foreground_fraction_before": float(a.mean()),
        "foreground_fraction_after": float(b.mean()),
        "components_per_megavoxel_before": count_components(a)[0] * per_mvox,
        "components_per_megavoxel_after": count_components(b)[0] * per_mvox,
    }


def spacing_figures(clean, drifted, record, spacing) -> dict[str, Any]:
    """Spacing (um) before/after, its relative change, and whether the voxels are identical."""
    import numpy as np

    params = record.get("parameters", {})
    before = list(params.get("spacing_um_before", spacing or []))
    after = list(params.get("spacing_um_after", before))
    relative = [(a - b) / b for a, b in zip(after, before, strict=True)]
    return {
        "spacing_um_before": before,
        "spacing_um_after": after,
        "spacing_relative_delta": relative,
        "spacing_max_abs_relative_delta": max((abs(r) for r in relative), default=0.0),
        "voxels_identical": bool(
            clean.shape == drifted.shape
            and clean.dtype == drifted.dtype
            and np.array_equal(clean, drifted)
        ),
    }


#: The value of each primary figure for an unchanged volume.
UNCHANGED = {"increasing": 0.0, "decreasing": 1.0}


def check_changed(
    kind: str,
    severity: float,
    figures: dict,
    primary: tuple[str, str],
    volume: str = "",
    where: str = "",
) -> None:
    """A variant of severity > 0 must change its primary figure; else a named error."""
    name, direction = primary
    value = figures.get(name)
    if severity <= 0:
        return
    if value is None or abs(abs(value) - UNCHANGED[direction]) < 1e-9:
        raise DriftError(
            f"{kind} severity {severity:g}: primary figure {name} = {value} shows no change",
            volume=volume or None,
            path=where or None,
            expected=f"{name} {'above 0' if direction == 'increasing' else 'below 1'}",
        )
