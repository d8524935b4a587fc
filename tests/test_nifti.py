"""NIfTI I/O: deterministic writes, named errors for broken files, no partial outputs."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from minivess_bundle.core import nifti
from minivess_bundle.core.errors import NiftiError


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
    real_write = nifti.DeterministicGzipWriter.write
    calls = []

    def write_then_fail(self, data):
        calls.append(len(data))
        if len(calls) == 2:  # the header went out, the data fails: a half-written stream
            raise OSError(28, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(nifti.DeterministicGzipWriter, "write", write_then_fail)
    with pytest.raises(OSError, match="No space left on device while writing.*out.nii.gz"):
        nifti.write_nifti(target, image)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def _variants():
    """Images whose streamed bytes must equal nibabel's: dtypes, orders, endianness,
    extensions, a 4-D file and several write slabs."""
    import nibabel as nib

    rng = np.random.default_rng(3)
    cases = {}
    for dtype in (np.uint8, np.uint16, np.int16, np.float32):
        data = (rng.random((11, 7, 5)) * 200).astype(dtype)
        cases[f"{np.dtype(dtype).name}-F"] = nifti.make_image(
            np.asfortranarray(data), (1.0, 1.0, 2.0), nifti.minivess_header("image")
        )
        cases[f"{np.dtype(dtype).name}-C"] = nifti.make_image(
            np.ascontiguousarray(data), (1.0, 1.0, 2.0), nifti.minivess_header("label")
        )
    data = rng.integers(0, 999, (6, 5, 4), dtype=np.uint16)
    big = nib.Nifti1Header(endianness=">")
    big.set_data_dtype(">u2")
    cases["big-endian"] = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]), header=big)
    extended = nifti.make_image(data, (1.0, 1.0, 1.0), nifti.minivess_header("image"))
    extended.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"hello MiniVess"))
    cases["extension"] = extended
    cases["4-d"] = nib.Nifti1Image(rng.integers(0, 9, (4, 3, 2, 3), dtype=np.uint8), np.eye(4))
    return cases


@pytest.mark.parametrize("case", sorted(_variants()))
def test_streamed_write_equals_nibabel_serialisation(tmp_path, monkeypatch, case):
    image = _variants()[case]
    monkeypatch.setattr(nifti, "WRITE_SLAB_BYTES", 64)  # many slabs, a ragged last one
    path = nifti.write_nifti(tmp_path / "v.nii.gz", image)
    assert gzip.decompress(path.read_bytes()) == nifti.nifti_bytes(image)


def test_write_of_data_needing_scaling_falls_back_to_nibabel(tmp_path):
    data = np.linspace(0, 1, 60, dtype=np.float64).reshape(5, 4, 3)
    image = nifti.make_image(data, (1.0, 1.0, 1.0), nifti.minivess_header("image"))
    image.header.set_data_dtype(np.uint16)  # float data, integer file: nibabel's converter
    path = nifti.write_nifti(tmp_path / "v.nii.gz", image)
    assert gzip.decompress(path.read_bytes()) == nifti.nifti_bytes(image)
    assert np.array_equal(np.asarray(nifti.read_nifti(path).dataobj), np.rint(data))


def test_read_array_is_a_read_only_view_equal_to_nibabel(tmp_path):
    data, image = _image(5)
    path = nifti.write_nifti(tmp_path / "v.nii.gz", image)
    loaded, array = nifti.read_array(path, "mv01")
    assert array.dtype == np.uint16 and array.shape == data.shape
    assert np.array_equal(array, data) and not array.flags.writeable
    assert loaded.header.get_zooms() == (0.5, 0.5, 2.0)


def test_read_array_applies_real_scaling_like_nibabel(tmp_path):
    data, image = _image(6)
    image.header.set_slope_inter(2.0, 10.0)
    raw = bytearray(nifti.nifti_bytes(image))
    raw[112:120] = np.array([2.0, 10.0], "<f4").tobytes()  # nifti_bytes keeps a set scaling
    path = tmp_path / "scaled.nii"
    path.write_bytes(bytes(raw))
    _, array = nifti.read_array(path)
    assert np.array_equal(array, data.astype(np.float64) * 2.0 + 10.0)
