"""Memory requests from untrusted headers are clamped by the file's size and grow on retry."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from minivess_bundle import resources
from minivess_bundle.nifti import MAX_DEFLATE_RATIO


def _lying_file(path, shape=(30000, 30000, 30000)):
    """A gzip NIfTI whose header claims ``shape`` (uint16) but holds 1 KiB of data."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint16)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + bytes(1024)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


def test_a_huge_header_asks_only_for_what_the_file_can_hold(tmp_path):
    path = _lying_file(tmp_path / "mv01.nii.gz")
    claimed, plausible = resources.plausible_voxels(path)
    assert claimed == 30000**3
    size = path.stat().st_size
    assert plausible == (size * MAX_DEFLATE_RATIO + (1 << 16) - 352) // 2
    # the header alone would ask for 30000^3 * 12 bytes = 309 TB
    mem = resources.per_voxel_mem_mb("validate", path)
    assert mem == int(np.ceil(300 + plausible * 12 / 2**20))
    assert mem < 2000
    assert resources.per_voxel_mem_mb("drift", path) < 2000


def test_a_truthful_header_keeps_its_estimate(tmp_path):
    data = np.zeros((64, 64, 10), np.uint16)
    path = tmp_path / "mv02.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    claimed, plausible = resources.plausible_voxels(path)
    assert claimed == plausible == 64 * 64 * 10
    assert resources.per_voxel_mem_mb("validate", path) == int(np.ceil(300 + 40960 * 12 / 2**20))


def test_an_uncompressed_file_holds_exactly_its_bytes(tmp_path):
    path = _lying_file(tmp_path / "x.nii.gz")
    raw = tmp_path / "mv03.nii"
    raw.write_bytes(gzip.decompress(path.read_bytes()))
    _, plausible = resources.plausible_voxels(raw)
    assert plausible == (raw.stat().st_size - 352) // 2 == 512


def test_resample_estimate_is_scaled_to_the_plausible_voxels(tmp_path):
    from minivess_bundle.resample import BASE_MEM_MB, NUMPY_BASE_MEM_MB

    path = _lying_file(tmp_path / "mv04.nii.gz", shape=(30000, 30000, 300))
    mem = resources.resample_mem_mb(path, [1.0, 1.0, 1.0], "um")
    assert NUMPY_BASE_MEM_MB < mem < 20000
    mem = resources.resample_mem_mb(path, [1.0, 1.0, 1.0], "um", interpolator="bspline")
    assert BASE_MEM_MB < mem < 20000


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1000), (2, 1500), (3, 2000), (0, 1000)])
def test_memory_grows_with_each_retry(attempt, expected):
    assert resources.for_attempt(1000, attempt) == expected


def test_a_missing_file_gets_the_fallback_grown_per_attempt(tmp_path):
    assert resources.per_voxel_mem_mb("validate", tmp_path / "nope.nii.gz") == 2048
    assert resources.per_voxel_mem_mb("validate", tmp_path / "nope.nii.gz", attempt=2) == 3072
