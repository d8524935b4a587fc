"""Side-by-side figures of synthetic volumes and a real MiniVess mask.

Why: the synthetic source is only a believable stand-in if its vessel statistics
sit near the real ones. ``minivess-bundle calibrate tests/data/mv68_y.nii.gz``
prints the table the README shows; the tests assert the band.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Figures compared, with the relative band a synthetic value must fall in
#: (low, high) as a multiple of the real value.
BANDS: dict[str, tuple[float, float]] = {
    "foreground_fraction": (0.6, 1.6),
    "components_per_mvox": (0.5, 2.0),
    "largest_component_share": (0.85, 1.05),
    "radius_p25_um": (0.7, 1.3),
    "radius_p50_um": (0.75, 1.25),
    "radius_p75_um": (0.75, 1.25),
    "radius_p95_um": (0.65, 1.35),
    "radius_mean_um": (0.75, 1.25),
}


def real_stats(mask_path: str | Path) -> dict[str, float]:
    """Calibration figures of a real mask file (spacing read from its header)."""
    import numpy as np

    from ..core.morphology import vessel_stats
    from ..core.nifti import read_nifti

    image = read_nifti(mask_path)
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return vessel_stats(np.asarray(image.dataobj), spacing)


def synthetic_stats(volume: str, seed: int, size_xy: int = 512) -> dict[str, float]:
    """Calibration figures of one synthetic volume."""
    from ..core.morphology import vessel_stats
    from .synthetic import generate_volume

    synthetic = generate_volume(seed, volume, size_xy)
    return vessel_stats(synthetic.mask, synthetic.acquisition.spacing_um)


def compare(real: dict[str, float], synthetic: dict[str, float]) -> list[dict[str, Any]]:
    """One row per banded figure: real, synthetic, ratio and whether it is in band."""
    rows = []
    for name, (low, high) in BANDS.items():
        ratio = synthetic[name] / real[name] if real[name] else float("inf")
        rows.append(
            {
                "figure": name,
                "real": real[name],
                "synthetic": synthetic[name],
                "ratio": ratio,
                "band": (low, high),
                "in_band": low <= ratio <= high,
            }
        )
    return rows


def calibration_table(real_mask: str | Path, volume: str = "mv68", seeds=(20230301,)) -> str:
    """A Markdown table: real figures vs synthetic ones for each seed."""
    real = real_stats(real_mask)
    columns = [compare(real, synthetic_stats(volume, seed)) for seed in seeds]
    header = "| figure | real | " + " | ".join(f"synthetic (seed {s})" for s in seeds)
    lines = [header + " | band |", "|---|---|" + "---|" * len(seeds) + "---|"]
    for i, name in enumerate(BANDS):
        cells = [
            f"{col[i]['synthetic']:.4g}{'' if col[i]['in_band'] else ' (out)'}" for col in columns
        ]
        low, high = BANDS[name]
        lines.append(
            f"| {name} | {real[name]:.4g} | " + " | ".join(cells) + f" | {low:g}x..{high:g}x |"
        )
    return "\n".join(lines) + "\n"
