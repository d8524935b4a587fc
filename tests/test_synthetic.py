"""The synthetic source: deterministic, headers like the release, realistic vessels."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REAL_MASK, REAL_MASK_SHA256

from minivess_bundle.core.fsio import sha256_file
from minivess_bundle.core.volumes import ALL_VOLUMES
from minivess_bundle.fetch import synthetic
from minivess_bundle.fetch.calibration import compare, real_stats, synthetic_stats


def _gunzip_head(path, n=352):
    with gzip.open(path) as handle:
        return handle.read(n)


def _write(tmp_path, name, vol="mv05", seed=11, size_xy=32, max_z=12):
    return synthetic.write_synthetic_volume(tmp_path / name, vol, seed, size_xy, max_z)


def test_same_seed_and_volume_give_identical_bytes(tmp_path):
    first, second = _write(tmp_path, "a"), _write(tmp_path, "b")
    for role in ("image", "label", "metadata"):
        assert sha256_file(first[role]) == sha256_file(second[role])


def test_other_seed_or_volume_gives_other_data(tmp_path):
    base = _write(tmp_path, "a")
    other_seed = _write(tmp_path, "b", seed=12)
    other_vol = _write(tmp_path, "c", vol="mv06")
    assert sha256_file(base["label"]) != sha256_file(other_seed["label"])
    assert sha256_file(base["image"]) != sha256_file(other_vol["image"])


def test_volume_does_not_depend_on_generation_order():
    before = synthetic.generate_volume(3, "mv10", 24, 8)
    synthetic.generate_volume(3, "mv11", 24, 8)
    again = synthetic.generate_volume(3, "mv10", 24, 8)
    assert np.array_equal(before.image, again.image) and np.array_equal(before.mask, again.mask)


def test_header_matches_the_real_release_fields(tmp_path):
    paths = _write(tmp_path, "a")
    real = nib.Nifti1Header.from_fileobj(io.BytesIO(_gunzip_head(REAL_MASK)))
    for role, cal_max, dtype in (("label", 1, np.uint8), ("image", 1000, np.uint16)):
        ours = nib.Nifti1Header.from_fileobj(io.BytesIO(_gunzip_head(paths[role])))
        assert ours.get_data_dtype() == dtype
        assert int(ours["xyzt_units"]) == int(real["xyzt_units"]) == 0
        assert int(ours["sform_code"]) == int(real["sform_code"]) == 2
        assert int(ours["qform_code"]) == int(real["qform_code"]) == 0
        assert float(ours["cal_max"]) == cal_max
        assert float(ours["vox_offset"]) == float(real["vox_offset"]) == 352.0
        raw = _gunzip_head(paths[role], 120)
        assert np.frombuffer(raw[112:120], "<f4").tolist() == [1.0, 0.0]  # scl_slope, scl_inter
        assert ours["descrip"].tobytes().startswith(b"SYNTHETIC")


def test_gzip_header_has_no_timestamp_or_name(tmp_path):
    data = Path(_write(tmp_path, "a")["image"]).read_bytes()[:10]
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] & 0x08 == 0  # FNAME flag clear
    assert data[4:8] == b"\0\0\0\0"  # MTIME 0


def test_image_and_mask_types_values_and_foreground(tmp_path):
    vol = synthetic.generate_volume(20230301, "mv68", size_xy=128)
    assert vol.image.dtype == np.uint16 and vol.mask.dtype == np.uint8
    assert set(np.unique(vol.mask)) == {0, 1}
    assert vol.image.shape == vol.mask.shape == (128, 128, 106)
    assert 0.02 <= vol.mask.mean() <= 0.10
    # Vessels are bright against the background, and signal fades with depth.
    assert vol.image[vol.mask == 1].mean() > 3 * vol.image[vol.mask == 0].mean()
    background = np.where(vol.mask == 0, vol.image, 0).sum(axis=(0, 1)) / (vol.mask == 0).sum(
        axis=(0, 1)
    )
    assert background[:10].mean() > background[-10:].mean()


@pytest.mark.parametrize("seed", [20230301, 7, 11])
def test_acquisitions_follow_the_authors_ranges_and_pinned_facts(seed):
    # The dataset authors document XY ~0.31-1.23 um, Z step ~0.5-4.97 um with mv02 the
    # outlier at 4.97 um, Z 5..110 slices with a median ~22, and mv68 exactly.
    grids = {v: synthetic.draw_acquisition(seed, v) for v in ALL_VOLUMES}
    z = np.array([g.shape[2] for g in grids.values()])
    inplane = np.array([g.spacing_um[0] for g in grids.values()])
    steps = np.array([g.spacing_um[2] for g in grids.values()])
    assert all(g.shape[:2] == (512, 512) for g in grids.values())
    assert all(g.spacing_um[0] == g.spacing_um[1] for g in grids.values())
    assert z.min() == 5 and 100 <= z.max() <= 110
    assert 18 <= np.median(z) <= 26
    assert 0.31 <= inplane.min() <= 0.4 and 1.1 <= inplane.max() <= 1.23
    assert steps.min() == 0.5 and steps.max() == 4.97
    assert [v for v, g in grids.items() if g.spacing_um[2] == 4.97] == ["mv02"]
    assert grids["mv68"] == synthetic.Acquisition((512, 512, 106), (0.994, 0.994, 2.0))
    assert grids["mv39"].shape[2] == 5


def test_release_grid_at_1_um_is_what_the_readme_states():
    # 70 volumes at the default seed, resampled to 1 um: the voxel counts the README quotes.
    from minivess_bundle.resample import output_grid

    totals = {}
    for size in (128, 512):
        grids = [synthetic.draw_acquisition(20230301, v, size) for v in ALL_VOLUMES]
        shapes = [output_grid(g.shape, g.spacing_um, [1.0] * 3)["shape"] for g in grids]
        totals[size] = sum(int(np.prod(s)) for s in shapes)
    assert totals == {128: 39_826_247, 512: 637_110_439}


def test_metadata_says_synthetic_and_records_the_grid(tmp_path):
    meta = json.loads(Path(_write(tmp_path, "a")["metadata"]).read_text())
    assert meta["synthetic"] is True and "not MiniVess data" in meta["note"]
    grid = synthetic.draw_acquisition(11, "mv05", 32, 12)
    assert meta["shape"] == list(grid.shape) and meta["voxel_size_um"] == list(grid.spacing_um)
    assert meta["seed"] == 11 and meta["generator_version"] == synthetic.GENERATOR_VERSION


def test_paint_tubes_sphere_volume_matches_geometry():
    spacing = (0.5, 0.5, 1.0)
    mask = synthetic.paint_tubes(
        (80, 80, 40), spacing, np.array([[20.0, 20.0, 20.0]]), np.array([8.0])
    )
    painted_um3 = mask.sum() * np.prod(spacing)
    assert painted_um3 == pytest.approx(4 / 3 * np.pi * 8.0**3, rel=0.03)


@pytest.fixture(scope="module")
def real_figures():
    assert sha256_file(REAL_MASK) == REAL_MASK_SHA256
    return real_stats(REAL_MASK)


def test_real_mask_figures_are_what_the_readme_states(real_figures):
    assert real_figures["foreground_fraction"] == pytest.approx(0.05434, abs=1e-4)
    assert real_figures["components"] == 231
    assert real_figures["radius_p50_um"] == pytest.approx(1.988, abs=1e-3)


@pytest.mark.parametrize("seed", [20230301, 7])
def test_synthetic_mv68_falls_in_the_band_around_the_real_mask(real_figures, seed):
    rows = compare(real_figures, synthetic_stats("mv68", seed))
    outside = [(r["figure"], round(r["ratio"], 3), r["band"]) for r in rows if not r["in_band"]]
    assert not outside, f"synthetic figures outside the calibration band: {outside}"


def test_tiny_fields_keep_foreground_inside_the_validation_bounds():
    # Tests build 16 px volumes: at 0.31 um that is a 5 um field, which one 9 um vessel
    # would fill. The cap (no vessel thicker than a tenth of the field's side) keeps all
    # 70 volumes inside validate's default foreground bounds [0.001, 0.5].
    fractions = {v: synthetic.generate_volume(20230301, v, 16, 8).mask.mean() for v in ALL_VOLUMES}
    outside = {v: round(float(f), 3) for v, f in fractions.items() if not 0.001 <= f <= 0.5}
    assert not outside
    assert max(fractions.values()) < 0.4


def test_vessel_radius_cap_is_a_tenth_of_the_field_side():
    acquisition = synthetic.Acquisition((20, 20, 8), (0.5, 0.5, 1.0))  # a 10 um field
    rng = np.random.default_rng(0)
    _, radii, _ = synthetic.grow_network(rng, acquisition, 0.05)
    assert radii.max() == pytest.approx(1.0) and radii.min() > 0
    wide = synthetic.Acquisition((512, 512, 8), (0.5, 0.5, 1.0))  # 256 um: the cap never binds
    _, radii, _ = synthetic.grow_network(np.random.default_rng(0), wide, 0.05)
    assert 4.0 < radii.max() <= 9.0
