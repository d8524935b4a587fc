"""The foreign-volume generator (tests/foreign_volumes.py) hits what it is asked for.

The drift property suite trusts these figures: exact foreground, the requested background
noise sd, vessels only in the requested half, uint16/uint8 {0, 1}, and a folder the ``dir``
source and the validator read as the authors' release (µm numbers, units unset).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require
from foreign_volumes import (
    FOREGROUND,
    MIN_SHAPE,
    NOISE_SD,
    SLICES,
    XY_SPACING_UM,
    Z_SPACING_UM,
    foreign_pair,
    pair_from_spec,
    specs,
    write_foreign_folder,
)

require("hypothesis")
from hypothesis import given, settings  # noqa: E402


def background_noise_sd(image: np.ndarray, label: np.ndarray) -> float:
    """sd of neighbour differences along x / √2, on voxels ≥ 3 voxels from any vessel."""
    from scipy import ndimage

    far = ~ndimage.binary_dilation(label.astype(bool), iterations=3)
    diff = np.diff(image.astype(np.float64), axis=0) / np.sqrt(2.0)
    return float(diff[far[1:] & far[:-1]].std())


@settings(max_examples=25)
@given(specs(max_xy=40, max_z=40))
def test_every_drawn_spec_is_in_range_and_met_exactly(spec):
    image, label, spacing = pair_from_spec(spec)
    assert image.dtype == np.uint16 and label.dtype == np.uint8
    assert image.shape == label.shape == spec.shape
    assert set(np.unique(label)) == {0, 1}
    assert MIN_SHAPE[0] <= spec.shape[0] and MIN_SHAPE[2] <= spec.shape[2] <= SLICES[1]
    assert XY_SPACING_UM[0] <= spacing[0] == spacing[1] <= XY_SPACING_UM[1]
    assert Z_SPACING_UM[0] <= spacing[2] <= Z_SPACING_UM[1]
    assert FOREGROUND[0] <= spec.foreground <= FOREGROUND[1]
    assert NOISE_SD[0] <= spec.noise_sd <= NOISE_SD[1]
    assert int(label.sum()) == max(1, round(spec.foreground * label.size))
    z_with_vessel = np.nonzero(label.any(axis=(0, 1)))[0]
    half = spec.shape[2] // 2
    if spec.half == "top":
        assert z_with_vessel.max() < half
    elif spec.half == "bottom":
        assert z_with_vessel.min() >= half


@pytest.mark.parametrize("sd", [2.0, 10.0, 40.0, 60.0])
def test_background_noise_sd_is_the_requested_one_within_10_percent(sd):
    image, label, _ = foreign_pair((64, 64, 24), (0.994, 0.994, 2.0), 0.02, sd, "top", 3)
    assert background_noise_sd(image, label) == pytest.approx(sd, rel=0.10)


def test_noise_is_shot_plus_read_so_bright_vessels_are_noisier_than_background():
    image, label, _ = foreign_pair((64, 64, 24), (0.994, 0.994, 2.0), 0.2, 20.0, "all", 5)
    from scipy import ndimage

    core = ndimage.binary_erosion(label.astype(bool), iterations=2)
    diff = np.diff(image.astype(np.float64), axis=0) / np.sqrt(2.0)
    vessel_sd = float(diff[core[1:] & core[:-1]].std())
    assert vessel_sd > 1.1 * background_noise_sd(image, label)


def test_same_arguments_give_identical_arrays_and_another_seed_does_not():
    args = ((24, 24, 9), (0.5, 0.5, 1.5), 0.05, 12.0, "bottom")
    a, b = foreign_pair(*args, 11), foreign_pair(*args, 11)
    c = foreign_pair(*args, 12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_smallest_volume_at_the_smallest_foreground_holds_one_vessel_voxel():
    image, label, _ = foreign_pair((16, 16, 5), (1.23, 1.23, 4.97), 0.0005, 2.0, "top", 0)
    assert int(label.sum()) == 1 and image.shape == (16, 16, 5)


def test_folder_is_read_like_the_authors_release(tmp_path):
    import nibabel as nib

    from minivess_bundle.fetch.sources import fetch_from_dir
    from minivess_bundle.validate import validate_volume

    specs_written = write_foreign_folder(tmp_path / "src", 2, seed=1, shape=(24, 24, 8))
    for i, spec in enumerate(specs_written, start=1):
        vol = f"mv{i:02d}"
        raw = nib.load(tmp_path / "src" / "raw" / f"{vol}.nii.gz")
        seg = nib.load(tmp_path / "src" / "seg" / f"{vol}_y.nii.gz")
        for img, dtype, cal_max in ((raw, np.uint16, 1000.0), (seg, np.uint8, 1.0)):
            header = img.header
            assert header.get_data_dtype() == dtype
            assert int(header["xyzt_units"]) == 0
            assert int(header["sform_code"]) == 2 and int(header["qform_code"]) == 0
            assert float(header["cal_max"]) == cal_max
            assert np.allclose(header.get_zooms(), spec.spacing_um, rtol=1e-6)
        meta = json.loads((tmp_path / "src" / "json" / f"{vol}.json").read_text())
        assert "not MiniVess data" in meta["Note"]
        record = fetch_from_dir(tmp_path / "src", vol, tmp_path / "staging")
        assert record["source"] == "dir"
        report = validate_volume(
            vol,
            tmp_path / "staging" / "raw" / f"{vol}.nii.gz",
            tmp_path / "staging" / "seg" / f"{vol}_y.nii.gz",
            tmp_path / "staging" / "json" / f"{vol}.json",
        )
        assert report["valid"], report["failed_checks"]
        assert report["spacing"] == pytest.approx(list(spec.spacing_um), rel=1e-6)
        assert report["json_spacing"]["values"] == pytest.approx(list(spec.spacing_um))
