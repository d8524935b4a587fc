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


def fragments_per_megavoxel(mask: np.ndarray, size: int | None = None) -> tuple[float, float]:
    """(components, fragments of ≤ :data:`FRAGMENT_VOXELS` voxels) per million voxels.

    ``size``: the voxels of the volume ``mask`` was cut from (:func:`_crop`), when it was.
    """
    from ..core.morphology import count_components

    count, sizes = count_components(mask)
    per_mvox = 1e6 / max(mask.size if size is None else size, 1)
    return count * per_mvox, int((sizes <= FRAGMENT_VOXELS).sum()) * per_mvox


def _crop_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The foreground's bounding box plus one background voxel each side (where the volume
    has one); the whole volume for an empty mask."""
    import numpy as np

    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        others = tuple(i for i in range(mask.ndim) if i != axis)
        hit = np.flatnonzero(mask.any(axis=others))
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, mask.shape[axis])))
    return tuple(box)


def _crop(mask: np.ndarray) -> np.ndarray:
    """``mask`` cut to :func:`_crop_box`: its skeleton, components and distances to the
    background are those of the whole volume (the background beyond the margin is never
    nearer). An empty mask comes back whole."""
    return mask[_crop_box(mask)]


class CleanSide:
    """The figures' level-independent part: what they read of the clean mask alone.

    The clean mask (boolean), its foreground fraction, the radius (µm) at each of its
    centreline voxels, its components and fragments, and the distance (voxels) of each
    foreground voxel to the background, in C order. One per clean mask: a job making
    several levels of one volume measures the clean mask once.
    """

    def __init__(
        self, clean: np.ndarray, spacing_um: Sequence[float], skeleton=None, known=None
    ) -> None:
        """``known``: ``(box, distance)``, the clean mask's distance to the background in µm
        on a box of it (the annotation drift's own, :class:`~.kinds.label._Prepared`): read
        instead of computed where the box is :func:`_crop_box`'s. The distance at a voxel is
        the same number on the box as on the volume (the nearest background is inside it),
        and in voxels it is the µm one where the spacing is 1 µm."""
        import numpy as np
        from scipy import ndimage

        a = clean > 0
        self.mask = a
        self.count = int(a.sum())
        self.fraction = float(a.mean())
        box = _crop_box(a)
        small = a[box]
        shared = known is not None and tuple(known[0]) == box
        if shared:
            from ..core.metrics import skeleton as skeletonise

            skeleton = skeletonise(a) if skeleton is None else skeleton.astype(bool, copy=False)
            inside = skeleton[box]  # a centreline voxel off the mask's box: measure it whole
            shared = int(np.count_nonzero(inside)) == int(np.count_nonzero(skeleton))
        if shared:
            self.skeleton, self.radii = skeleton, known[1][inside]
        else:
            self.skeleton, distance = centreline_radii(a, spacing_um, skeleton)
            self.radii = distance[self.skeleton]
            del distance
        self.components, self.fragments = fragments_per_megavoxel(small, a.size)
        if shared and all(v == 1.0 for v in spacing_um):
            self.depth = known[1][small]
        else:
            self.depth = ndimage.distance_transform_edt(small)[small]


def label_pair_figures(
    clean: np.ndarray,
    drifted: np.ndarray,
    spacing_um: Sequence[float],
    clean_skeleton: np.ndarray | None = None,
    clean_side: CleanSide | None = None,
) -> dict[str, Any]:
    """Every figure in the module docstring for one (clean, drifted) pair of masks.

    ``clean_side``: the :class:`CleanSide` of ``clean`` (and ``clean_skeleton``), to
    measure the clean mask once for several drifted ones."""
    import numpy as np
    from scipy import ndimage

    from ..core.metrics import skeleton as skeletonise

    side = clean_side if clean_side is not None else CleanSide(clean, spacing_um, clean_skeleton)
    a, b = side.mask, drifted > 0
    # the drifted mask's own centreline and the radius there, on its bounding box
    small = _crop(b)
    skel_b = skeletonise(small)
    radii_b = ndimage.distance_transform_edt(small, sampling=tuple(spacing_um))[skel_b]
    del small, skel_b
    total = side.count + int(b.sum())
    figures: dict[str, Any] = {
        "dice": 2.0 * int(np.count_nonzero(a & b)) / total if total else 1.0,
        "foreground_fraction_before": side.fraction,
        "foreground_fraction_after": float(b.mean()),
        "median_radius_um_before": _median(side.radii),
        "median_radius_um_after": _median(radii_b),
    }
    classes = radius_class(side.radii)
    kept = b[side.skeleton]
    for index, name in enumerate(RADIUS_CLASS_NAMES):
        chosen = classes == index
        figures[f"centreline_kept_{name}"] = float(kept[chosen].mean()) if chosen.any() else None
    figures["components_per_megavoxel_before"] = side.components
    figures["fragments_per_megavoxel_before"] = side.fragments
    components, fragments = fragments_per_megavoxel(_crop(b), b.size)
    figures["components_per_megavoxel_after"] = components
    figures["fragments_per_megavoxel_after"] = fragments
    removed = a & ~b
    added = b & ~a
    n_removed, n_added = int(removed.sum()), int(added.sum())
    if n_removed:
        depth = side.depth[removed[a]]
        figures["removal_depth_p99_voxels"] = float(np.percentile(depth, 99))
        figures["removal_depth_max_voxels"] = float(depth.max())
    else:
        figures["removal_depth_p99_voxels"] = figures["removal_depth_max_voxels"] = 0.0
    changed = n_removed + n_added
    figures["added_share"] = n_added / changed if changed else 0.0
    figures["removed_voxels"] = n_removed
    figures["added_voxels"] = n_added
    return figures
