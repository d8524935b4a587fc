"""Vessel-mask statistics used to calibrate the synthetic source against real masks.

All distances are physical (the spacing passed in, micrometres for MiniVess), so
volumes with different voxel sizes are comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: 26-connectivity, as used for vessel component counts in 3-D.
FULL_CONNECTIVITY = (3, 3, 3)


def count_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of 26-connected foreground components and their sizes in voxels."""
    import numpy as np
    from scipy import ndimage

    labels, count = ndimage.label(mask > 0, structure=np.ones(FULL_CONNECTIVITY, bool))
    sizes = np.bincount(labels.ravel())[1:]
    return int(count), sizes


def skeleton_radii(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Vessel radius at every skeleton voxel: the physical distance to the background."""
    import numpy as np
    from scipy import ndimage
    from skimage.morphology import skeletonize

    binary = mask > 0
    if not binary.any():
        return np.zeros(0)
    distance = ndimage.distance_transform_edt(binary, sampling=spacing)
    skeleton = skeletonize(binary)
    return distance[skeleton > 0]


def vessel_stats(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """The figures the synthetic source is calibrated on.

    Foreground fraction; 26-connected component count, per megavoxel too, so
    volumes of different size compare; share of foreground in the largest
    component; skeleton radius percentiles (micrometres).
    """
    import numpy as np

    count, sizes = count_components(mask)
    radii = skeleton_radii(mask, spacing)
    total = int(sizes.sum())
    stats = {
        "foreground_fraction": float((mask > 0).mean()),
        "components": count,
        "components_per_mvox": count / (mask.size / 1e6),
        "largest_component_share": float(sizes.max() / total) if total else 0.0,
    }
    for q in (25, 50, 75, 95):
        stats[f"radius_p{q}_um"] = float(np.percentile(radii, q)) if radii.size else 0.0
    stats["radius_mean_um"] = float(radii.mean()) if radii.size else 0.0
    return stats
