"""Figures for ``snakemake --report``: vessels to look at, not only JSON to read.

Maximum-intensity projections (MIPs) along z of the image with the mask overlaid,
before and after resampling; a drift gallery (one volume across drift types and
levels); and dataset plots (shapes, spacings, intensity percentiles, foreground
fractions) from the validation reports. matplotlib is imported lazily (Agg
backend): only the report rules pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Mask overlay colour (RGBA) on the grey MIP.
OVERLAY = (1.0, 0.15, 0.1, 0.45)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mip(array: np.ndarray) -> np.ndarray:
    """Maximum-intensity projection along z, transposed so x runs left to right."""
    import numpy as np

    return np.asarray(array).max(axis=2).T


def normalise(image: np.ndarray, low: float = 1.0, high: float = 99.7) -> np.ndarray:
    """Scale to [0, 1] between two percentiles (robust to hot pixels)."""
    import numpy as np

    lo, hi = np.percentile(image, [low, high])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _load(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import numpy as np

    from .nifti import read_nifti

    image = read_nifti(path)
    return np.asarray(image.dataobj), tuple(float(z) for z in image.header.get_zooms()[:3])


def _draw(ax, image_path: str | Path, label_path: str | Path | None, title: str) -> None:
    import numpy as np

    image, zooms = _load(image_path)
    ax.imshow(
        normalise(mip(image)), cmap="gray", interpolation="nearest", aspect=zooms[1] / zooms[0]
    )
    if label_path is not None:
        label, _ = _load(label_path)
        overlay = np.zeros((*mip(label).shape, 4), dtype=np.float32)
        overlay[mip(label) > 0] = OVERLAY
        ax.imshow(overlay, interpolation="nearest", aspect=zooms[1] / zooms[0])
    shape = "x".join(str(s) for s in image.shape)
    spacing = " x ".join(f"{z:.3g}" for z in zooms)
    ax.set_title(f"{title}\n{shape} @ {spacing}", fontsize=8)
    ax.set_axis_off()


def mip_figure(
    out_png: str | Path,
    panels: Sequence[tuple[str, str | Path, str | Path | None]],
    suptitle: str = "",
) -> Path:
    """One row of MIP panels ``(title, image, label-or-None)``; label drawn as a red overlay."""
    from .fsio import atomic_path

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), squeeze=False)
    for ax, (title, image, label) in zip(axes[0], panels, strict=True):
        _draw(ax, image, label, title)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return Path(out_png)


def drift_gallery(
    out_png: str | Path,
    clean: tuple[str | Path, str | Path],
    variants: Sequence[tuple[str, int, str | Path, str | Path]],
    volume: str,
) -> Path:
    """A grid: rows are drift types, columns levels; the clean volume first in every row.

    ``variants`` holds ``(type, level, image, label)``.
    """
    from .fsio import atomic_path

    plt = _pyplot()
    types = sorted({v[0] for v in variants})
    levels = sorted({v[1] for v in variants})
    fig, axes = plt.subplots(
        len(types),
        len(levels) + 1,
        figsize=(2.6 * (len(levels) + 1), 2.8 * len(types)),
        squeeze=False,
    )
    by_key = {(t, lv): (img, lab) for t, lv, img, lab in variants}
    for row, kind in enumerate(types):
        _draw(axes[row][0], clean[0], clean[1], f"{volume} clean")
        for col, level in enumerate(levels, start=1):
            ax = axes[row][col]
            if (kind, level) in by_key:
                image, label = by_key[(kind, level)]
                _draw(ax, image, label, f"{kind} level {level}")
            else:
                ax.set_axis_off()
    fig.suptitle(f"Drift variants of {volume} (MIP along z, mask in red)", fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return Path(out_png)


def load_reports(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Per-volume validation reports, sorted by volume id."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    return sorted(reports, key=lambda r: str(r.get("volume", "")))
