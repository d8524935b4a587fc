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
    """Another annotator's pass: thin segments missed, boundaries shaved, a few voxels added.

    Three mechanisms, each seen in a real pair (the final and an earlier annotation of
    MiniVess mv68, ``tests/data``) and calibrated on it at level 5 (``s = 1``):

    - **whole thin segments missed**: the clean skeleton is cut into segments at its
      junctions; every mask voxel belongs to the segment of its nearest centreline voxel.
      Segment ``i`` (median radius ``r`` µm) is missed when ``u_i < s * p(r)``, ``p``
      interpolated in :data:`MISS_PROBABILITY` (thin vessels are missed far more often
      than thick ones): its voxels go as deep as its own centreline reaches, and what is
      left of it goes too unless it hangs on to a kept segment;
    - **boundaries shaved in proportion to radius**: with ``R = g_i * min(r,``
      :data:`SHAVE_RADIUS_CAP_UM` ``)`` (``g_i`` a per-segment factor in
      :data:`SHAVE_SPREAD`: annotators differ along a vessel, not voxel by voxel), a voxel
      goes when its in-plane depth is ``<= s * SHAVE * R`` µm or it lies within
      ``s * AXIAL * R`` µm of an end of its run along z (the middle of a run stays): the
      faint axial ends of a vessel are left out most;
    - **small spurious additions**: ``max(ceil(5 s), round(s * ADDED * F))`` voxels of the
      clean mask's outer shell (``F`` clean foreground voxels) in dents of what level 5
      keeps (at least :data:`FILL` of 26 neighbours kept), in one random order;
    - a kept voxel left alone by the rest goes with probability :data:`CRUMBS`.

    The random draws (``u``, ``g``, the lone-voxel draws, the shell order) are made once
    per volume whatever the severity, and every threshold grows with ``s``: level k's
    removals and additions are contained in level k + 1's. At least one voxel is added per
    level step and the mask is never emptied, so the primary figure (Dice to the clean
    mask) falls strictly from level to level on any non-empty mask. ``spacing`` (µm) comes
    from the
    context (1 µm isotropic when absent, recorded).
    """

    name = "annotation"
    target = "label"
    expected_signal = "label_shift"
    primary = ("dice", "decreasing")
    #: (radius µm, probability of missing a segment of that median radius at level 5).
    MISS_PROBABILITY = ((1.0, 0.6), (1.5, 0.45), (2.0, 0.15), (2.5, 0.04), (3.0, 0.0))
    #: Shaved depth at level 5, as a share of the local radius.
    SHAVE = 0.4
    #: The shaving grows with the radius up to this radius (µm), then stays: the real pair's
    #: thick vessels lose about as much boundary as the medium ones.
    SHAVE_RADIUS_CAP_UM = 3.5
    #: Range of the per-segment factor on :attr:`SHAVE`.
    SHAVE_SPREAD = (0.7, 1.3)
    #: How many times deeper the shaving reaches along z than in-plane (µm for µm): an
    #: annotator drawing on x-y slices leaves out the faint axial ends of a vessel.
    AXIAL = 1.5
    #: Probability that a voxel the other mechanisms leave alone (no kept neighbour) goes.
    CRUMBS = 0.35
    #: An added voxel has at least this many of its 26 neighbours kept at level 5.
    FILL = 9
    #: Voxels added at level 5, as a share of the clean foreground.
    ADDED = 0.0056

    def parameters(self):
        return {
            "miss_probability_by_radius_um": [list(p) for p in self.MISS_PROBABILITY],
            "shave_fraction_of_radius": self.SHAVE * self.severity,
            "shave_spread": list(self.SHAVE_SPREAD),
            "shave_axial_factor": self.AXIAL,
            "added_fraction_of_foreground": self.ADDED * self.severity,
        }

    def _apply(self, array, rng, spacing=None, skeleton=None, cache=None, **context):
        """``cache``: a dict the levels of one job share (the clean pair's): the
        level-independent part of the drift (:class:`_Prepared`) is kept there for the
        next level of the same clean mask, skeleton, spacing and seed."""
        binary = array > 0
        if not binary.any():
            raise DriftError(
                "annotation drift got an empty mask (no vessel to annotate differently)",
                volume=context.get("volume"),
                path=context.get("where") or None,
                expected="a mask with at least one vessel voxel",
            )
        spacing_um = tuple(float(v) for v in spacing) if spacing is not None else (1.0,) * 3
        key = ("annotation", type(self), self.seed, spacing_um, id(array), id(skeleton))
        held = cache.get(key) if cache is not None else None
        if held is not None and held[0] is array and held[1] is skeleton:
            prepared = held[2]
        else:
            prepared = _Prepared(binary, spacing_um, rng, self, skeleton)
            if cache is not None:  # the arrays are held too, so their ids stay theirs
                cache[key] = (array, skeleton, prepared)
        out, measured = annotate_again(
            binary, spacing_um, self.severity, rng, self, skeleton, prepared
        )
        measured["spacing_um"] = list(spacing_um)
        measured["spacing_assumed"] = spacing is None
        return out.astype(array.dtype), measured

    def figures(
        self, clean, drifted, record, spacing=None, clean_skeleton=None, cache=None, **context
    ):
        """``cache``: as :meth:`_apply`'s; the clean mask is measured once there."""
        from ..label_figures import CleanSide, label_pair_figures

        spacing_um = record.get("parameters", {}).get("spacing_um") or spacing or (1.0,) * 3
        key = ("annotation_figures", tuple(spacing_um), id(clean), id(clean_skeleton))
        held = cache.get(key) if cache is not None else None
        if held is not None and held[0] is clean and held[1] is clean_skeleton:
            side = held[2]
        else:
            # the drift's own distance map of this clean mask, where _apply made one
            prepared = next(
                (
                    entry[2]
                    for name, entry in (cache or {}).items()
                    if name[0] == "annotation" and entry[0] is clean
                    and entry[2].spacing_um == tuple(float(v) for v in spacing_um)
                ),
                None,
            )  # fmt: skip
            known = None
            if prepared is not None and prepared.depth_um is not None:
                known = (prepared.box, prepared.depth_um)
                prepared.depth_um = None  # read once: the levels' figures peak without it
            side = CleanSide(clean, spacing_um, clean_skeleton, known)
            if cache is not None:  # the arrays are held too, so their ids stay theirs
                cache[key] = (clean, clean_skeleton, side)
        return label_pair_figures(clean, drifted, spacing_um, clean_skeleton, side)


def _segments(skeleton):
    """Label the skeleton's segments (26-connected runs between junction voxels).

    Junction voxels (three or more skeleton neighbours) join the segment nearest to
    them; a skeleton of junctions only is one segment. Returns (labels, count).
    """
    import numpy as np
    from scipy import ndimage

    structure = np.ones((3, 3, 3), bool)
    neighbours = ndimage.convolve(skeleton.astype(np.uint8), structure.astype(np.uint8))
    junction = skeleton & (neighbours >= 4)  # itself + 3 or more neighbours
    labels, count = ndimage.label(skeleton & ~junction, structure=structure)
    if count == 0:
        labels, count = ndimage.label(skeleton, structure=structure)
    return labels, count


def _run_positions(mask):
    """For each foreground voxel, its distance (voxels) to the nearer end of its run along z,
    0 at an end; -1 for the one or two middle voxels of the run (and for background)."""
    import numpy as np

    n = mask.shape[2]
    index = np.arange(n, dtype=np.int16)
    gap = np.where(mask, np.int16(-1), index)
    from_start = index - np.maximum.accumulate(gap, axis=2) - 1
    gap = np.where(mask[:, :, ::-1], np.int16(-1), index)
    from_stop = (index - np.maximum.accumulate(gap, axis=2) - 1)[:, :, ::-1]
    nearer = np.minimum(from_start, from_stop)
    length = from_start + from_stop + 1
    nearer[(nearer >= (length - 1) // 2) | ~mask] = -1
    return nearer


class _Prepared:
    """What :func:`annotate_again` computes whatever the severity, for one clean mask.

    The segments, the distance maps, the per-segment draws and the additions' order: the
    same for every level of a volume (the draws come from the kind's seed), so a job
    making several levels computes them once (:meth:`AnnotationDrift._apply`'s cache).
    """

    def __init__(self, binary, spacing_um, rng, model, skeleton=None) -> None:
        import numpy as np
        from scipy import ndimage

        from ...core.metrics import skeleton as skeletonise

        # work in the mask's bounding box (plus the shell the additions may use)
        where = np.argwhere(binary)
        lo = np.maximum(where.min(axis=0) - 1, 0)
        hi = np.minimum(where.max(axis=0) + 2, binary.shape)
        del where
        self.box = box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        self.mask = mask = binary[box]
        self.model = model
        centre = skeletonise(mask) if skeleton is None else skeleton[box].astype(bool)
        centre &= mask
        if not centre.any():
            centre = mask.copy()
        labels, count = _segments(centre)
        self.count = count
        depth = ndimage.distance_transform_edt(mask, sampling=spacing_um)
        nearest = ndimage.distance_transform_edt(
            labels == 0, sampling=spacing_um, return_distances=False, return_indices=True
        )
        index = tuple(nearest)
        del nearest
        self.segment = segment = labels[index]  # 1..count for every voxel
        del index
        ids = np.arange(1, count + 1)
        seg_radius = np.asarray(ndimage.median(depth, labels, ids), dtype=float).reshape(-1)
        # a missed segment takes its own vessel, not the thicker one it joins at a junction
        seg_reach = np.concatenate([[0.0], ndimage.maximum(depth, labels, ids)]).astype(np.float32)
        del labels
        # every random draw is made here, whatever the severity (nested levels)
        u = rng.random(count)
        g = rng.uniform(*model.SHAVE_SPREAD, size=count)
        radii, probabilities = zip(*model.MISS_PROBABILITY, strict=True)
        self.p_miss = np.concatenate([[0.0], np.interp(seg_radius, radii, probabilities)])
        self.u = np.concatenate([[1.0], u])
        # µm, one value per segment: a segment is shaved evenly, like an erosion
        shaved_radius = np.minimum(seg_radius, model.SHAVE_RADIUS_CAP_UM)
        self.scale = np.concatenate([[0.0], g * shaved_radius]).astype(np.float32)[segment]
        # in-plane depth (µm within the slice) and the position in the voxel's run along z
        depth_xy = ndimage.distance_transform_edt(mask, sampling=(*spacing_um[:2], 1e9))
        self.depth_xy = depth_xy.astype(np.float32)
        del depth_xy
        from_end = _run_positions(mask)
        self.depth_z = (from_end.astype(np.float32) + 1) * spacing_um[2]
        self.depth_z[from_end < 0] = np.inf  # the middle of a run along z is never trimmed
        del from_end
        # a voxel of a missed segment goes as deep as its segment's centreline reaches
        self.within_reach = depth <= seg_reach[segment]
        self.crumb = rng.random(mask.shape, dtype=np.float32)
        self.full = full = ndimage.generate_binary_structure(3, 3)
        self.removed_at_5 = self.removed_at(1.0)
        kept_at_5 = mask & ~self.removed_at_5
        if not kept_at_5.any():  # keep the deepest clean voxel at every level: never empty
            deepest = int(np.argmax(depth))
            self.depth_xy.flat[deepest] = self.depth_z.flat[deepest] = np.inf
            self.crumb.flat[deepest] = 1.0
            self.p_miss[segment.flat[deepest]] = 0.0
            self.removed_at_5 = self.removed_at(1.0)
            kept_at_5 = mask & ~self.removed_at_5
        # the clean mask's distance to the background (µm, on ``box``): the figures' clean
        # side reads it instead of computing it again (label_figures.CleanSide)
        self.spacing_um = tuple(spacing_um)
        self.depth_um = depth
        del depth
        # additions touch what every level keeps, so they never float free
        shell = ndimage.binary_dilation(mask, full) & ~mask
        # in the dents of what every level keeps (>= FILL of the 26 neighbours kept), so the
        # additions smooth the surface instead of sticking out of it
        neighbours = ndimage.convolve(kept_at_5.astype(np.uint8), full.astype(np.uint8))
        touching = shell & (neighbours >= model.FILL)
        del neighbours
        candidates = np.flatnonzero(touching if touching.any() else shell)
        order = candidates[rng.permutation(candidates.size)]
        # a small mask may have fewer dents than the levels' floor of additions: the rest
        # of the shell follows in index order (no draw, so a large mask's additions are
        # unchanged)
        if touching.any():
            order = np.concatenate([order, np.flatnonzero(shell & ~touching)])
        self.order = order
        self.n_clean = int(mask.sum())

    def removed_at(self, s: float):
        """The voxels of the box removed at severity ``s``."""
        import numpy as np
        from scipy import ndimage

        model, mask = self.model, self.mask
        shaved = (self.depth_xy <= s * model.SHAVE * self.scale) | (
            self.depth_z <= s * model.AXIAL * self.scale
        )
        in_missed = (self.u < s * self.p_miss)[self.segment]
        removed = mask & ((in_missed & self.within_reach) | shaved)
        kept = mask & ~removed
        labels_kept, count_kept = ndimage.label(kept, structure=self.full)
        # what is left of a missed segment (deeper than its own centreline reaches) goes
        # too unless it hangs on to a kept segment; a kept voxel left alone (no kept
        # neighbour) goes with probability CRUMBS: an annotator drops most specks. Both
        # stay so at higher levels (kept shrinks, missed grows): nested
        anchored = np.bincount(labels_kept[kept & ~in_missed], minlength=count_kept + 1) > 0
        orphan = kept & ~anchored[labels_kept]
        alone = kept & (np.bincount(labels_kept.ravel()) == 1)[labels_kept]
        return removed | orphan | (alone & (self.crumb < model.CRUMBS))

    def at(self, binary, severity: float):
        """The drifted mask at ``severity`` and what was measured."""

        removed = self.removed_at_5 if severity == 1.0 else self.removed_at(severity)
        # at least 1, 2, 3, 4, 5 added voxels at levels 1..5 (a nested prefix of one
        # order): with removal nested too, Dice falls strictly with the level on any mask,
        # by construction (the 1e-9: 5 x 0.6 is 3.0000000000000004 in floating point,
        # which ceil made 4, the same as level 4)
        floor = math.ceil(5 * severity - 1e-9)
        n_add = min(self.order.size, max(floor, round(severity * self.model.ADDED * self.n_clean)))
        drifted = self.mask & ~removed
        drifted.flat[self.order[:n_add]] = True
        missed = self.u < severity * self.p_miss
        out = binary.copy()
        out[self.box] = drifted
        return out, {
            "segments": int(self.count),
            "segments_missed": int(missed.sum()),
            "removed_voxels": int(removed.sum()),
            "added_voxels": int(n_add),
        }


def annotate_again(binary, spacing_um, severity: float, rng, model, skeleton=None, prepared=None):
    """The annotation drift's mask and what it measured (see :class:`AnnotationDrift`).

    ``prepared``: the :class:`_Prepared` of this ``binary`` (same mask, spacing, model and
    seed) from an earlier level, instead of computing it again from ``rng``.
    """
    if prepared is None:
        prepared = _Prepared(binary, spacing_um, rng, model, skeleton)
    return prepared.at(binary, severity)


# --- header kinds ------------------------------------------------------------------------------
