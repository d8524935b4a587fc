"""Annotation drift resembles a second annotator, on the figures of a real pair.

The real pair: the final mv68 mask and an earlier annotation of the same acquisition
(tests/data, 0.994 × 0.994 × 2.0 µm). The figures (drift/label_figures.py) of the earlier
annotation against the final one were computed once and are written below as numbers, on
the whole volume (the docs) and on the crop the tests use (x, y 128..383, every slice:
256 × 256 × 106, 6.9 M voxels, a quarter of the volume, so the test costs seconds, not
minutes). At level 5 every figure of the drift must lie within ±25 % of the real one.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from minivess_bundle import drift
from minivess_bundle.core.errors import DriftError
from minivess_bundle.core.nifti import read_nifti
from minivess_bundle.drift.kinds.label import AnnotationDrift
from minivess_bundle.drift.label_figures import (
    FRAGMENT_VOXELS,
    label_pair_figures,
    radius_class,
)

FINAL = REPO / "tests" / "data" / "mv68_y.nii.gz"
EARLIER = REPO / "tests" / "data" / "mv68_y_earlier_annotation.nii.gz"
SPACING = (0.994, 0.994, 2.0)
CROP = (slice(128, 384), slice(128, 384), slice(None))
#: The tolerance of the calibration: each figure within ±25 % of the real pair's.
TOLERANCE = 0.25

#: The earlier annotation's figures against the final mask, on the whole volume
#: (label_pair_figures(final, earlier, SPACING)).
REAL_FULL = {
    "foreground_fraction_after": 0.0291301,
    "dice": 0.690812,
    "median_radius_um_after": 1.988,
    "centreline_kept_thin": 0.512801,
    "centreline_kept_medium": 0.822405,
    "centreline_kept_thick": 0.957954,
    "fragments_per_megavoxel_after": 6.29785,
    "removal_depth_p99_voxels": 3.74166,
    "added_share": 0.0116554,
}
#: The same on CROP: what the test compares against.
REAL_CROP = {
    "foreground_fraction_after": 0.0229,
    "dice": 0.6506,
    "median_radius_um_after": 1.988,
    "centreline_kept_thin": 0.5333,
    "centreline_kept_medium": 0.8385,
    "centreline_kept_thick": 0.9708,
    "fragments_per_megavoxel_after": 8.061,
    "removal_depth_p99_voxels": 2.449,
    "added_share": 0.01616,
}


def within(ours: float, real: float, tolerance: float = TOLERANCE) -> bool:
    """``ours`` is within ``±tolerance`` (relative) of ``real``."""
    return abs(ours - real) <= tolerance * abs(real) * (1 + 1e-12)


@pytest.fixture(scope="module")
def real_crop():
    final = np.asarray(read_nifti(FINAL).dataobj)[CROP].copy()
    earlier = np.asarray(read_nifti(EARLIER).dataobj)[CROP].copy()
    return final, earlier


@pytest.fixture(scope="module")
def levels_on_crop(real_crop):
    """The drift at levels 1..5 on the crop, with the clean skeleton computed once."""
    from minivess_bundle.core.metrics import skeleton

    final, _ = real_crop
    centre = skeleton(final)
    seed = drift.derive_seed(0, "mv68", "annotation")
    outs = [
        AnnotationDrift(level / 5, seed)(final, spacing=SPACING, skeleton=centre)
        for level in range(1, 6)
    ]
    return final, centre, outs


def test_within_holds_at_25_percent_and_fails_just_beyond():
    assert within(1.25, 1.0) and within(0.75, 1.0)
    assert not within(1.2501, 1.0) and not within(0.7499, 1.0)


def test_level_5_matches_the_real_earlier_annotation_within_25_percent(levels_on_crop):
    final, centre, outs = levels_on_crop
    ours = label_pair_figures(final, outs[-1][0], SPACING, centre)
    off = {
        name: (round(ours[name], 4), real)
        for name, real in REAL_CROP.items()
        if not within(ours[name], real)
    }
    assert not off, f"figures off by more than 25 % (ours, real): {off}"


def test_the_crop_figures_are_the_real_pairs(real_crop):
    """The numbers above are what label_pair_figures measures on the real pair's crop."""
    final, earlier = real_crop
    real = label_pair_figures(final, earlier, SPACING)
    for name, value in REAL_CROP.items():
        assert real[name] == pytest.approx(value, rel=1e-3), name


def test_levels_are_nested_and_dice_falls_strictly(levels_on_crop):
    final, _, outs = levels_on_crop
    clean = final > 0
    removed = [clean & ~(out > 0) for out, _ in outs]
    added = [(out > 0) & ~clean for out, _ in outs]
    for k in range(4):
        assert not (removed[k] & ~removed[k + 1]).any(), f"level {k + 1} removal not nested"
        assert not (added[k] & ~added[k + 1]).any(), f"level {k + 1} addition not nested"
    dice = [2 * (clean & (o > 0)).sum() / (clean.sum() + (o > 0).sum()) for o, _ in outs]
    assert all(b < a for a, b in zip(dice, dice[1:], strict=False)), dice
    assert dice[0] > 0.9 > dice[2] > dice[4]  # level 1 is mild, level 5 is the real pair's


def test_mechanisms_whole_thin_segments_missed_shaving_grows_with_radius_additions_attach(
    levels_on_crop,
):
    from scipy import ndimage

    final, centre, outs = levels_on_crop
    clean = final > 0
    out, record = outs[-1]
    drifted = out > 0
    params = record["parameters"]
    assert params["segments_missed"] > 0 and params["added_voxels"] > 0
    # missed segments: centreline removed, thin far more often than thick
    radius = ndimage.distance_transform_edt(clean, sampling=SPACING)[centre]
    kept = drifted[centre]
    classes = radius_class(radius)
    lost = [1 - kept[classes == c].mean() for c in range(3)]
    assert lost[0] > 2 * lost[1] > 0 and lost[1] > lost[2]
    # shaving in proportion to radius: thick vessels lose more µm of boundary
    depth = ndimage.distance_transform_edt(clean, sampling=SPACING)
    shaved = clean & ~drifted & ndimage.binary_dilation(drifted)  # removed, next to kept
    near = ndimage.distance_transform_edt(~centre, sampling=SPACING, return_indices=True)[1]
    local_radius = depth[tuple(near)]
    thin_cut = np.mean(depth[shaved & (local_radius <= 2.0)])
    thick_cut = np.mean(depth[shaved & (local_radius > 3.0)])
    assert thick_cut > thin_cut
    # every addition touches a voxel kept at level 5 (no floating specks)
    added = drifted & ~clean
    touching = ndimage.binary_dilation(drifted & clean, np.ones((3, 3, 3), bool))
    assert added.any() and not (added & ~touching).any()


def test_same_seed_same_mask_other_seed_another():
    rng = np.random.default_rng(3)
    mask = (rng.random((24, 24, 12)) > 0.6).astype(np.uint8)
    a = AnnotationDrift(0.6, 7)(mask, spacing=SPACING)[0]
    b = AnnotationDrift(0.6, 7)(mask, spacing=SPACING)[0]
    c = AnnotationDrift(0.6, 8)(mask, spacing=SPACING)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_one_voxel_mask_still_changes_strictly_per_level():
    mask = np.zeros((8, 8, 5), np.uint8)
    mask[4, 4, 2] = 1
    outs = [AnnotationDrift(level / 5, 1)(mask, spacing=SPACING)[0] for level in range(1, 6)]
    assert all(o[4, 4, 2] == 1 for o in outs)  # the only vessel voxel is kept
    assert [int(o.sum()) - 1 for o in outs] == [1, 2, 3, 4, 5]  # one more addition per level


def test_an_empty_mask_is_refused_naming_the_volume():
    with pytest.raises(DriftError, match="mv09.*empty mask"):
        AnnotationDrift(0.6, 1)(np.zeros((8, 8, 5), np.uint8), spacing=SPACING, volume="mv09")


def test_label_pair_figures_on_a_hand_made_pair():
    """A cylinder of radius 3 voxels (1 µm voxels) along x; the drift removes its outer
    shell on one half and adds a 2-voxel speck and a 12-voxel blob elsewhere."""
    x, y, z = np.ogrid[:40, :21, :21]
    clean = ((y - 10) ** 2 + (z - 10) ** 2 <= 9) & (x >= 0)
    clean = np.broadcast_to(clean, (40, 21, 21)).copy()
    drifted = clean.copy()
    inner = ((y - 10) ** 2 + (z - 10) ** 2 <= 4) & (x < 20)
    drifted[:20] = np.broadcast_to(inner, (40, 21, 21))[:20]
    drifted[0, 0, 0:2] = True  # a 2-voxel speck: a fragment
    drifted[30:33, 0:2, 0:2] = True  # a 12-voxel blob: a component, not a fragment
    fig = label_pair_figures(clean, drifted, (1.0, 1.0, 1.0))
    removed = int((clean & ~drifted).sum())
    assert fig["removed_voxels"] == removed and fig["added_voxels"] == 14
    assert fig["added_share"] == pytest.approx(14 / (14 + removed))
    assert fig["removal_depth_max_voxels"] == pytest.approx(1.0)  # only the outer shell
    assert fig["fragments_per_megavoxel_after"] == pytest.approx(1e6 / clean.size)
    assert fig["components_per_megavoxel_after"] == pytest.approx(3e6 / clean.size)
    assert 12 > FRAGMENT_VOXELS >= 2
    assert fig["median_radius_um_before"] == pytest.approx(3.0, abs=0.2)
    assert fig["centreline_kept_thick"] == pytest.approx(1.0)  # the centre is kept
    assert fig["centreline_kept_thin"] is None or fig["centreline_kept_thin"] <= 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.994, 0.994, 2.0)])
def test_the_figures_clean_side_reads_the_drifts_distance_map_and_gets_the_same_numbers(spacing):
    """CleanSide with the drift's own distance map (its box) measures what it measures
    alone: the same radii at every centreline voxel and the same depth in voxels (read
    from the map only at 1 µm), with a vessel touching the volume's edge."""
    from minivess_bundle.core.metrics import skeleton as skeletonise
    from minivess_bundle.drift.label_figures import CleanSide

    rng = np.random.default_rng(3)
    mask = np.zeros((40, 48, 24), np.uint8)
    mask[5:35, 20:26, 8:14] = 1  # a thick vessel
    mask[0:40, 30:32, 2:4] = 1  # a thin one from edge to edge
    mask[rng.random(mask.shape) < 0.002] = 1  # specks
    centre = skeletonise(mask)
    drift = AnnotationDrift(0.6, 11)
    cache: dict = {}
    drift(mask, spacing=spacing, skeleton=centre, cache=cache)
    (prepared,) = [entry[2] for name, entry in cache.items() if name[0] == "annotation"]
    alone = CleanSide(mask, spacing, centre)
    shared = CleanSide(mask, spacing, centre, (prepared.box, prepared.depth_um))
    np.testing.assert_array_equal(shared.skeleton, alone.skeleton)
    np.testing.assert_array_equal(shared.radii, alone.radii)
    np.testing.assert_array_equal(shared.depth, alone.depth)
    assert shared.radii.size == int(centre.sum()) > 0
    assert (shared.components, shared.fragments) == (alone.components, alone.fragments)
    # a box that is not the mask's own is not read
    other = CleanSide(mask, spacing, centre, ((slice(0, 1),) * 3, prepared.depth_um))
    np.testing.assert_array_equal(other.radii, alone.radii)
