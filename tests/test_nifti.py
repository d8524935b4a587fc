"""NIfTI I/O: deterministic writes, named errors for broken files, no partial outputs."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from minivess_bundle import nifti
from minivess_bundle.errors import NiftiError


def _image(seed=0):
    data = np.random.default_rng(seed).integers(0, 4096, (10, 9, 4), dtype=np.uint16)
    return data, nifti.make_image(data, (0.5, 0.5, 2.0), nifti.minivess_header("image"))


@pytest.mark.parametrize(("codec", "level"), [("isal", 0), ("isal", 3), ("zlib", 1), ("zlib", 6)])
def test_write_is_byte_identical_and_round_trips(tmp_path, codec, level):
    data, image = _image()
    a = nifti.write_nifti(tmp_path / "a.nii.gz", image, codec, level)
    b = nifti.write_nifti(tmp_path / "b.nii.gz", image, codec, level)
    assert a.read_bytes() == b.read_bytes()
    back = nifti.read_nifti(a)
    assert np.array_equal(np.asarray(back.dataobj), data)
    assert back.header.get_zooms() == (0.5, 0.5, 2.0)
    assert gzip.decompress(a.read_bytes()) == nifti.nifti_bytes(image)


def test_out_of_range_level_is_refused():
    with pytest.raises(ValueError, match="isal compression level must be 0..3"):
        nifti.gzip_bytes(b"x", "isal", 6)


def test_truncated_gzip_is_a_named_error(tmp_path):
    _, image = _image()
    path = nifti.write_nifti(tmp_path / "v.nii.gz", image)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(NiftiError, match=r"mv03: nifti: corrupt or truncated gzip .*v\.nii\.gz"):
        nifti.read_nifti(path, volume="mv03")


def test_short_file_is_a_named_error(tmp_path):
    path = tmp_path / "short.nii"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(NiftiError, match="file holds 100 bytes — expected at least a 348-byte"):
        nifti.read_nifti(path)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    _, image = _image()
    target = tmp_path / "out.nii.gz"
    monkeypatch.setattr(nifti, "gzip_bytes", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        nifti.write_nifti(target, image)
    assert list(tmp_path.iterdir()) == []
