"""Figures that compare two annotations of one volume: what a second annotator changed.

Measured on a clean mask and a drifted (or a real, earlier) mask of the same grid, with
the voxel spacing in µm. The annotation drift (:class:`.kinds.label.AnnotationDrift`) is
calibrated on these figures against a real pair (the final and an earlier annotation of
MiniVess mv68, ``tests/data``), and its manifest entries carry them:

``foreground_fraction_before`` / ``_after``
    share of foreground voxels.
``dice``
    Dice of the drifted mask to the clean one.
``median_radius_um_before`` / ``_after``
    median vessel radius on each mask's *own* skeleton (distance to the background in µm
    at the centreline, :func:`minivess_bundle.core.metrics.skeleton`).
``centreline_kept_thin`` / ``_medium`` / ``_thick``
    share of the clean skeleton still foreground in the drifted mask, by the clean radius
    there: ≤ 1.5 µm, 1.5–2.5 µm, > 2.5 µm (:data:`RADIUS_CLASSES_UM`); ``None`` for an
    empty class.
``fragments_per_megavoxel_before`` / ``_after``
    26-connected components of at most :data:`FRAGMENT_VOXELS` voxels per million voxels.
``components_per_megavoxel_before`` / ``_after``
    all 26-connected components per million voxels.
``removal_depth_p99_voxels`` / ``removal_depth_max_voxels``
    how deep inside the clean mask the removed voxels lay: the 99th percentile and the
    maximum, over removed voxels, of their distance to the clean background in voxels
    (1 = the outer shell); 0 when nothing was removed.
``added_share``
    added voxels over all voxels that differ (added + removed); 0 when none differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Upper bounds (µm) of the thin and medium radius classes; thick is above the last.
RADIUS_CLASSES_UM = (1.5, 2.5)
#: Names of the radius classes, thin to thick.
RADIUS_CLASS_NAMES = ("thin", "medium", "thick")
#: A component of at most this many voxels is a fragment.
FRAGMENT_VOXELS = 10


def radius_class(radius_um: np.ndarray) -> np.ndarray:
    """Class index (0 thin, 1 medium, 2 thick) of each radius in µm."""
    import numpy as np

    return np.searchsorted(np.asarray(RADIUS_CLASSES_UM), radius_um, side="left")


def centreline_radii(mask: np.ndarray, spacing_um: Sequence[float], skeleton=None):
    """(skeleton, distance map in µm) of ``mask``: the radius at each centreline voxel."""
    from scipy import ndimage

    from ..core.metrics import skeleton as skeletonise

    binary = mask > 0
    centre = skeletonise(binary) if skeleton is None else skeleton.astype(bool, copy=False)
    return centre, ndimage.distance_transform_edt(binary, sampling=tuple(spacing_um))


def _median(values) -> float:
    import numpy as np

    return float(np.median(values)) if values.size else float("nan")


def fragments_per_megavoxel(mask: np.ndarray) -> tuple[float, float]:
    """(components, fragments of ≤ :data:`FRAGMENT_VOXELS` voxels) per million voxels."""
    from ..core.morphology import count_components

    count, sizes = count_components(mask)
    per_mvox = 1e6 / max(mask.size, 1)
    return count * per_mvox, int((sizes <= FRAGMENT_VOXELS).sum()) * per_mvox


def label_pair_figures(
    clean: np.ndarray,
    drifted: np.ndarray,
    spacing_um: Sequence[float],
    clean_skeleton: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every figure in the module docstring for one (clean, drifted) pair of masks."""
    import numpy as np
    from scipy import ndimage

    a, b = clean > 0, drifted > 0
    skel_a, dist_a = centreline_radii(a, spacing_um, clean_skeleton)
    skel_b, dist_b = centreline_radii(b, spacing_um)
    total = int(a.sum()) + int(b.sum())
    figures: dict[str, Any] = {
        "dice": 2.0 * int(np.count_nonzero(a & b)) / total if total else 1.0,
        "foreground_fraction_before": float(a.mean()),
        "foreground_fraction_after": float(b.mean()),
        "median_radius_um_before": _median(dist_a[skel_a]),
        "median_radius_um_after": _median(dist_b[skel_b]),
    }
    classes = radius_class(dist_a[skel_a])
    kept = b[skel_a]
    for index, name in enumerate(RADIUS_CLASS_NAMES):
        chosen = classes == index
        figures[f"centreline_kept_{name}"] = float(kept[chosen].mean()) if chosen.any() else None
    for when, mask in (("before", a), ("after", b)):
        components, fragments = fragments_per_megavoxel(mask)
        figures[f"components_per_megavoxel_{when}"] = components
        figures[f"fragments_per_megavoxel_{when}"] = fragments
    removed = a & ~b
    added = b & ~a
    n_removed, n_added = int(removed.sum()), int(added.sum())
    if n_removed:
        depth = ndimage.distance_transform_edt(a)[removed]
        figures["removal_depth_p99_voxels"] = float(np.percentile(depth, 99))
        figures["removal_depth_max_voxels"] = float(depth.max())
    else:
        figures["removal_depth_p99_voxels"] = figures["removal_depth_max_voxels"] = 0.0
    changed = n_removed + n_added
    figures["added_share"] = n_added / changed if changed else 0.0
    figures["removed_voxels"] = n_removed
    figures["added_voxels"] = n_added
    return figures
