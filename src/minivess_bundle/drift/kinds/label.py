"""Label kinds: what a different annotation does to the mask (topology, annotation)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...core.errors import DriftError
from .. import verify
from .core import Drift

if TYPE_CHECKING:  # pragma: no cover
    pass


def _local_radius(binary, centre) -> float:
    """Distance (voxels) from ``centre`` to the nearest background voxel or the outside."""
    import numpy as np

    shape = np.array(binary.shape)
    border = float(min(np.min(centre + 1), np.min(shape - centre)))
    half = 4
    while True:
        lo = np.maximum(centre - half, 0)
        hi = np.minimum(centre + half + 1, shape)
        holes = np.argwhere(~binary[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
        if holes.size:
            nearest = float(np.sqrt(((holes + lo - centre) ** 2).sum(axis=1).min()))
            if nearest <= half or half >= border:
                return min(nearest, border)
        elif half >= border:
            return border
        half *= 2


def _clear_ball(out, centre, radius: float) -> None:
    import numpy as np

    reach = int(math.ceil(radius))
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, np.array(out.shape))
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    inside = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = False


def path_sites(skeleton):
    """Skeleton voxels with exactly two skeleton neighbours: a cut there breaks a path."""
    import numpy as np
    from scipy import ndimage

    neighbours = ndimage.convolve(
        skeleton.astype(np.uint8), np.ones((3, 3, 3), np.uint8), mode="constant"
    ) - skeleton.astype(np.uint8)
    return np.argwhere(skeleton.astype(bool) & (neighbours == 2))


class TopologyDrift(Drift):
    """Broken vessels (``cut``), or thinner / fatter vessels (``erode`` / ``dilate``).

    ``cut``: ``s * max(5, 10 per 1000 centreline voxels)`` cuts (at least one). The sites
    are one random order of the skeleton's path voxels (two skeleton neighbours),
    drawn once per volume; level k cuts a prefix of it. Each cut removes a ball of
    radius ``r + 1`` voxels (``r``: the local vessel radius in the clean mask), about
    one vessel wide, so it severs its vessel. ``erode`` / ``dilate``: a fraction ``s``
    of the one-voxel inner (outer) shell, in one random order per volume, is removed
    (added): never saturating, nested. Primary figure: clDice to the clean mask.
    """

    name = "topology"
    target = "label"
    expected_signal = "topology"
    primary = ("cldice", "decreasing")
    MODES = ("cut", "erode", "dilate")

    def __init__(self, severity=0.5, seed=None, *, mode: str = "cut") -> None:
        super().__init__(severity, seed)
        if mode not in self.MODES:
            raise DriftError(f"topology mode {mode!r}", expected=f"one of {self.MODES}")
        self.mode = mode

    def parameters(self):
        if self.mode == "cut":
            return {
                "mode": "cut",
                "cuts_at_level_5": "max(5, 10 per 1000 skeleton voxels)",
                "cut_radius": "local radius + 1 voxel",
            }
        return {"mode": self.mode, "shell_fraction": self.severity, "connectivity": 6}

    def _apply(self, array, rng, skeleton=None, **context):
        import numpy as np

        binary = array > 0
        if self.mode != "cut":
            return _shell_change(binary, self.mode, self.severity, rng).astype(array.dtype), {}
        if skeleton is None:
            from ...core.metrics import skeleton as skeletonise

            skeleton = skeletonise(binary)
        sites = path_sites(skeleton)
        order = rng.permutation(len(sites))
        n_skeleton = int(np.count_nonzero(skeleton))
        most = max(5, round(10.0 * n_skeleton / 1000))  # level 5's cuts; level k a prefix
        n_cuts = min(len(sites), max(1, round(self.severity * most)))
        out = binary.copy()
        radii = []
        for centre in sites[order]:  # sites already cut away are passed over
            if len(radii) == n_cuts:
                break
            if out[tuple(centre)]:
                radii.append(_local_radius(binary, centre) + 1.0)
                _clear_ball(out, centre, radii[-1])
        return out.astype(array.dtype), {
            "skeleton_voxels": n_skeleton,
            "cut_sites": int(len(sites)),
            "cuts": n_cuts,
            "cut_radius_voxels_median": float(np.median(radii)) if radii else 0.0,
            "cut_radius_voxels_max": float(max(radii)) if radii else 0.0,
        }

    def figures(self, clean, drifted, record, clean_skeleton=None, clean_topology=None, **ctx):
        return verify.topology_figures(clean, drifted, clean_skeleton, clean_topology)


def _shell_change(binary, mode: str, fraction: float, rng):
    """Remove (erode) or add (dilate) ``fraction`` of the one-voxel shell, in one random order."""
    import numpy as np
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, 1)
    if mode == "erode":
        shell = binary & ~ndimage.binary_erosion(binary, structure, border_value=1)
    else:
        shell = ndimage.binary_dilation(binary, structure) & ~binary
    where = np.flatnonzero(shell)
    chosen = where[rng.permutation(where.size)[: round(fraction * where.size)]]
    out = binary.copy().ravel()
    out[chosen] = mode != "erode"
    return out.reshape(binary.shape)


class AnnotationDrift(Drift):
    """A different annotation pass: vessels drawn thinner, thin vessels dropped or broken.

    The voxels nearest the background go first (distance to the background, ties in
    one random order per volume) until ``0.464 s`` of the foreground is removed:
    calibrated on a real pair, an earlier annotation of mv68 with 2.91 % vs 5.43 %
    foreground (Dice 0.691, components 22.0 vs 8.3 per megavoxel). Nested: level k
    removes a prefix of level k + 1's order. Primary figure: Dice to the clean mask.
    """

    name = "annotation"
    target = "label"
    expected_signal = "label_shift"
    primary = ("dice", "decreasing")
    #: Foreground removed at level 5: 1 - 2.91 / 5.43 (the real mv68 pair).
    REMOVED_AT_LEVEL_5 = 1.0 - 2.91 / 5.43

    def parameters(self):
        return {"removed_foreground_fraction": self.REMOVED_AT_LEVEL_5 * self.severity}

    def _apply(self, array, rng, **context):
        import numpy as np
        from scipy import ndimage

        binary = array > 0
        where = np.flatnonzero(binary)
        depth = ndimage.distance_transform_edt(binary).ravel()[where]
        order = np.lexsort((rng.random(where.size), depth))
        n = round(self.parameters()["removed_foreground_fraction"] * where.size)
        out = binary.ravel().copy()
        out[where[order[:n]]] = False
        return out.reshape(binary.shape).astype(array.dtype), {"removed_voxels": int(n)}

    def figures(self, clean, drifted, record, **context):
        return verify.annotation_figures(clean, drifted)


# --- header kinds ------------------------------------------------------------------------------
