"""Resampling: geometry preserved on phantoms, readers agree on units, slabs are seamless."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from minivess_bundle.core import nifti
from minivess_bundle.core.errors import ResampleError
from minivess_bundle.core.nifti import DeterministicGzipWriter
from minivess_bundle.resample import (
    BASE_MEM_MB,
    NIFTI_UNITS_MM,
    NUMPY_BASE_MEM_MB,
    estimate_resample_mem_mb,
    output_grid,
    resample_pair,
    units_decision,
)


def _write(path, array, spacing, kind="image", affine=None):
    img = nifti.make_image(array, spacing, nifti.minivess_header(kind))
    if affine is not None:
        img.set_sform(affine, code=2)
    return nifti.write_nifti(path, img)


def _centres(shape, spacing):
    """Physical voxel centres (um) of a grid with origin 0, indexed [x, y, z]."""
    return np.meshgrid(
        *(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij"
    )


def _phantom(tmp_path, shape, spacing, mask, image=None, affine=None):
    if image is None:
        image = (100 + 1000 * mask.astype(np.uint16)).astype(np.uint16)
    img = _write(tmp_path / "in_img.nii.gz", image, spacing, affine=affine)
    lbl = _write(tmp_path / "in_lbl.nii.gz", mask.astype(np.uint8), spacing, "label", affine)
    return img, lbl


def _run(tmp_path, img, lbl, spacing_um=(1.0, 1.0, 1.0), tag="out", **kwargs):
    out_img, out_lbl = tmp_path / tag / "img.nii.gz", tmp_path / tag / "lbl.nii.gz"
    record = resample_pair("mv07", img, lbl, out_img, out_lbl, spacing_um, **kwargs)
    image, label = nib.load(out_img), nib.load(out_lbl)
    return record, image, label


def _sphere(shape=(60, 60, 20), spacing=(0.8, 0.8, 2.0), centre=(24, 24, 20), radius=15.0):
    x, y, z = _centres(shape, spacing)
    dist2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    return (dist2 <= radius**2).astype(np.uint8)


def test_sphere_volume_is_preserved_within_2_percent_anisotropic_to_isotropic(tmp_path):
    spacing, radius = (0.8, 0.8, 2.0), 15.0
    mask = _sphere(spacing=spacing, radius=radius)
    record, _, label = _run(tmp_path, *_phantom(tmp_path, mask.shape, spacing, mask))
    volume_in = mask.sum() * np.prod(spacing)
    volume_out = np.asarray(label.dataobj).sum() * 1.0
    assert record["files"]["label"]["foreground_voxels"] == int(volume_out)
    assert volume_out == pytest.approx(volume_in, rel=0.02)
    assert volume_out == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.03)
    assert label.shape == (48, 48, 40)


def test_tube_length_is_preserved_mv02_like_4_97_um(tmp_path):
    shape, spacing = (40, 12, 6), (4.97, 4.97, 5.0)  # mv02's in-plane size, small field
    x, y, z = _centres(shape, spacing)
    mask = ((x >= 30) & (x <= 150) & ((y - 27) ** 2 + (z - 12) ** 2 <= 8**2)).astype(np.uint8)
    record, image, label = _run(tmp_path, *_phantom(tmp_path, shape, spacing, mask))
    assert image.shape == label.shape == (199, 60, 30)
    length_in = np.count_nonzero(mask.any(axis=(1, 2))) * 4.97
    length_out = np.count_nonzero(np.asarray(label.dataobj).any(axis=(1, 2))) * 1.0
    assert abs(length_in - 120.0) <= 4.97
    assert abs(length_out - length_in) <= 1.0
    assert record["extent_um"] == {"input": [198.8, 59.64, 30.0], "output": [199.0, 60.0, 30.0]}


def test_linear_interpolation_reproduces_a_ramp_and_rounds_to_uint16(tmp_path):
    shape, spacing = (20, 6, 8), (0.9, 0.9, 3.0)
    x, _, z = _centres(shape, spacing)
    ramp = 100.0 + 10.0 * x + 5.0 * z
    _, image, _ = _run(
        tmp_path,
        *_phantom(
            tmp_path, shape, spacing, np.zeros(shape, np.uint8), np.rint(ramp).astype(np.uint16)
        ),
    )
    out = np.asarray(image.dataobj)
    assert out.dtype == np.uint16
    xo, _, zo = (
        np.arange(n) * 1.0 + (1.0 - s) / 2 for n, s in zip(out.shape, spacing, strict=True)
    )  # documented grid: voxel 0 centre at (t - s) / 2
    expected = 100.0 + 10.0 * xo[:, None, None] + 5.0 * zo[None, None, :]
    inside = (xo >= 0) & (xo <= (shape[0] - 1) * 0.9)
    inside_z = (zo >= 0) & (zo <= (shape[2] - 1) * 3.0)
    diff = np.abs(out.astype(float) - expected)[inside][:, :, inside_z]
    assert diff.max() <= 1.0  # the input ramp was itself rounded to integers


@pytest.mark.parametrize("label_interpolator", ["nearest", "label_gaussian"])
def test_label_values_stay_binary_uint8(tmp_path, label_interpolator):
    shape, spacing = (30, 30, 10), (0.7, 0.7, 2.0)
    mask = _sphere(shape, spacing, (10, 10, 10), 7.0)
    record, _, label = _run(
        tmp_path,
        *_phantom(tmp_path, shape, spacing, mask),
        label_interpolator=label_interpolator,
    )
    out = np.asarray(label.dataobj)
    assert label.get_data_dtype() == np.uint8
    assert set(np.unique(out).tolist()) == {0, 1}
    assert record["files"]["label"]["values"] == [0, 1]
    volume_in = mask.sum() * np.prod(spacing)
    assert out.sum() == pytest.approx(volume_in, rel=0.05)


def test_image_and_mask_share_the_output_grid_exactly(tmp_path):
    mask = _sphere()
    _, image, label = _run(tmp_path, *_phantom(tmp_path, mask.shape, (0.8, 0.8, 2.0), mask))
    assert image.shape == label.shape
    assert np.array_equal(image.affine, label.affine)
    for key in ("pixdim", "srow_x", "srow_y", "srow_z", "xyzt_units", "sform_code", "qform_code"):
        assert np.array_equal(image.header[key], label.header[key]), key


def test_field_of_view_corner_direction_and_feature_position_are_preserved(tmp_path):
    spacing = (0.9, 0.9, 3.0)
    affine = np.array([[0, -0.9, 0, 10.0], [0.9, 0, 0, -5.0], [0, 0, 3.0, 2.0], [0, 0, 0, 1]])
    shape = (20, 16, 8)
    i, j, k = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    world = (
        np.einsum("ab,bxyz->axyz", affine[:3, :3], np.stack([i, j, k]))
        + affine[:3, 3, None, None, None]
    )
    blob = ((world[0] - 2.0) ** 2 + (world[1] - 6.0) ** 2 + (world[2] - 11.0) ** 2) <= 4.0**2
    img, lbl = _phantom(tmp_path, shape, spacing, blob.astype(np.uint8), affine=affine)
    record, image, label = _run(tmp_path, img, lbl)
    out_um = image.affine.astype(float).copy()
    out_um[:3, :] *= 1000.0
    direction_in = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    direction_out = out_um[:3, :3] / np.linalg.norm(out_um[:3, :3], axis=0)
    assert np.allclose(direction_out, direction_in, atol=1e-6)
    corner = np.array([-0.5, -0.5, -0.5, 1.0])
    assert np.allclose(out_um @ corner, affine @ corner, atol=1e-3)  # the field of view's corner
    far_in = affine @ np.array([*(n - 0.5 for n in shape), 1.0])
    far_out = out_um @ np.array([*(n - 0.5 for n in image.shape), 1.0])
    assert np.all(np.abs(far_out - far_in) <= 1.0)  # extent kept to within one output voxel

    def centroid(affine_um, mask):
        idx = np.argwhere(mask)
        return (affine_um[:3, :3] @ idx.mean(axis=0)) + affine_um[:3, 3]

    moved = centroid(out_um, np.asarray(label.dataobj)) - centroid(affine, blob)
    assert np.all(np.abs(moved) <= 0.3)  # the vessel is where it was, in physical space
    src, out = sitk.ReadImage(str(img)), sitk.ReadImage(str(tmp_path / "out" / "img.nii.gz"))
    assert np.allclose(src.GetDirection(), out.GetDirection(), atol=1e-6)
    assert record["output"]["origin_mm"] == pytest.approx(out_um[:3, 3] / 1000.0, abs=1e-9)


def test_nibabel_simpleitk_and_monai_report_the_same_spacing(tmp_path):
    from conftest import require

    require("monai", hint="MONAI comes with the train extra")
    from monai.transforms import LoadImage

    mask = _sphere()
    img, lbl = _phantom(tmp_path, mask.shape, (0.8, 0.8, 2.0), mask)
    loader = LoadImage(image_only=True)
    for tag, target, expected_mm in (
        ("iso", (1.0, 1.0, 1.0), (0.001, 0.001, 0.001)),
        ("native", "native", (0.0008, 0.0008, 0.002)),
    ):
        _run(tmp_path, img, lbl, target, tag=tag)
        for name in ("img.nii.gz", "lbl.nii.gz"):
            path = tmp_path / tag / name
            header = nib.load(path).header
            assert int(header["xyzt_units"]) == NIFTI_UNITS_MM
            readings = {
                "nibabel": [float(v) for v in header.get_zooms()],
                "SimpleITK": list(sitk.ReadImage(str(path)).GetSpacing()),
                "monai": [float(v) for v in loader(str(path)).pixdim],
            }
            for reader, spacing in readings.items():
                assert spacing == pytest.approx(expected_mm, rel=1e-6), (tag, reader)
    decision = units_decision()
    assert decision["header_units"] == "mm" and decision["xyzt_units"] == NIFTI_UNITS_MM
    assert decision["pixdim_per_um"] == 0.001


def test_mv39_like_five_slices_resample_without_empty_edge_slices(tmp_path):
    shape, spacing = (40, 40, 5), (0.9, 0.9, 10.0)
    x, y, _ = _centres(shape, spacing)
    mask = (((x - 18) ** 2 + (y - 18) ** 2) <= 5**2).astype(np.uint8)  # a vessel through z
    record, image, label = _run(tmp_path, *_phantom(tmp_path, shape, spacing, mask))
    assert image.shape == (36, 36, 50)
    out = np.asarray(image.dataobj)
    assert out.min() >= 100  # edges take the nearest voxel, never 0
    per_slice = np.asarray(label.dataobj).sum(axis=(0, 1))
    assert per_slice.min() > 0 and per_slice.max() - per_slice.min() <= 0.1 * per_slice.max()
    assert record["input"]["shape"] == [40, 40, 5]


def test_native_keeps_grid_and_voxels_and_rewrites_units_in_mm(tmp_path):
    rng = np.random.default_rng(1)
    shape, spacing = (9, 7, 5), (0.31, 0.31, 2.0)
    image = rng.integers(0, 4096, shape, dtype=np.uint16)
    mask = (rng.random(shape) < 0.2).astype(np.uint8)
    record, out_img, out_lbl = _run(
        tmp_path, *_phantom(tmp_path, shape, spacing, mask, image), "native"
    )
    assert np.array_equal(np.asarray(out_img.dataobj), image)
    assert np.array_equal(np.asarray(out_lbl.dataobj), mask)
    assert out_img.header.get_zooms() == pytest.approx((0.00031, 0.00031, 0.002), rel=1e-6)
    assert record["interpolators"] == {"image": "none (native grid)", "label": "none (native grid)"}
    assert record["output"]["origin_mm"] == [0.0, 0.0, 0.0]
    assert out_img.header["descrip"] == nifti.minivess_header("image")["descrip"]
    assert float(out_img.header["cal_max"]) == 1000.0


def test_max_output_voxels_guard_fails_early_with_a_clear_message(tmp_path):
    shape, spacing = (40, 40, 6), (4.97, 4.97, 5.0)
    img, lbl = _phantom(tmp_path, shape, spacing, np.zeros(shape, np.uint8))
    with pytest.raises(ResampleError) as info:
        _run(tmp_path, img, lbl, max_output_voxels=1_000_000)
    assert str(info.value) == (
        "mv07: resample: output grid 199 x 199 x 30 = 1188030 voxels at 1x1x1 um — expected at "
        "most 1000000 voxels (resample.max_output_voxels); raise the limit or choose a coarser "
        f"spacing ({img})"
    )
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_output_bytes_are_deterministic_across_runs_and_slab_sizes(tmp_path):
    mask = _sphere()
    img, lbl = _phantom(tmp_path, mask.shape, (0.8, 0.8, 2.0), mask)
    a, _, _ = _run(tmp_path, img, lbl, tag="a")
    b, _, _ = _run(tmp_path, img, lbl, tag="b")
    c, _, _ = _run(tmp_path, img, lbl, tag="c", slab_voxels=1)  # one slice per slab
    assert c["slab_slices"] == 1 and c["files"]["image"]["slabs"] == 40
    for name, role in (("img.nii.gz", "image"), ("lbl.nii.gz", "label")):
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
        assert (
            a["files"][role]["sha256"] == b["files"][role]["sha256"] == c["files"][role]["sha256"]
        )
        assert data[4:8] == b"\0\0\0\0" and data[3] & 0x08 == 0  # gzip mtime 0, no file name


def _whole_volume(array_xyz, spacing, grid, interpolator, as_float):
    """Reference: one SimpleITK call on the whole volume with the documented grid."""
    src = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)))
    src.SetSpacing(spacing)
    origin = [c * s for c, s in zip(grid["start_index"], spacing, strict=True)]
    out = sitk.Resample(
        src,
        grid["shape"],
        sitk.Transform(3, sitk.sitkIdentity),
        interpolator,
        origin,
        grid["spacing_um"],
        (1, 0, 0, 0, 1, 0, 0, 0, 1),
        0.0,
        sitk.sitkFloat32 if as_float else src.GetPixelID(),
        True,  # nearest-neighbour extrapolator
    )
    result = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return np.rint(np.clip(result, 0, 65535)).astype(np.uint16) if as_float else result


@pytest.mark.parametrize(
    ("image_interp", "label_interp", "sitk_image", "sitk_label"),
    [
        ("linear", "nearest", sitk.sitkLinear, sitk.sitkNearestNeighbor),
        ("bspline", "label_gaussian", sitk.sitkBSpline, sitk.sitkLabelGaussian),
    ],
)
def test_slab_processing_equals_whole_volume_resampling(
    tmp_path, image_interp, label_interp, sitk_image, sitk_label
):
    rng = np.random.default_rng(7)
    shape, spacing = (8, 7, 60), (0.9, 0.9, 2.0)
    image = rng.integers(0, 4096, shape, dtype=np.uint16)
    mask = (rng.random(shape) < 0.3).astype(np.uint8)
    img, lbl = _phantom(tmp_path, shape, spacing, mask, image)
    record, out_img, out_lbl = _run(
        tmp_path,
        img,
        lbl,
        image_interpolator=image_interp,
        label_interpolator=label_interp,
        slab_voxels=1,
    )
    assert record["files"]["image"]["slabs"] == 120
    spacing = [float(np.float32(v)) for v in spacing]  # as the header stores it
    grid = output_grid(shape, spacing, (1.0, 1.0, 1.0))
    ref_image = _whole_volume(image, spacing, grid, sitk_image, True)
    ref_label = _whole_volume(mask, spacing, grid, sitk_label, False)
    assert np.array_equal(np.asarray(out_img.dataobj), ref_image)
    assert np.array_equal(np.asarray(out_lbl.dataobj), ref_label)


def test_bspline_overshoot_is_clipped_and_counted(tmp_path):
    shape, spacing = (10, 4, 4), (2.0, 2.0, 2.0)
    image = np.zeros(shape, np.uint16)
    image[5:] = 65535  # a step: the cubic B-spline overshoots above 65535 and below 0
    record, out_img, _ = _run(
        tmp_path,
        *_phantom(tmp_path, shape, spacing, np.zeros(shape, np.uint8), image),
        image_interpolator="bspline",
    )
    out = np.asarray(out_img.dataobj)
    assert out.max() == 65535 and out.min() == 0
    assert record["files"]["image"]["clipped_voxels"] > 0


def test_gzip_stream_does_not_depend_on_write_chunking():
    data = np.random.default_rng(0).integers(0, 300, 3_000_000, dtype=np.uint16).tobytes()
    outputs = []
    for chunks in ((len(data),), (1, 999_999, 2_000_000, len(data)), (4097,) * 2000):
        buf = io.BytesIO()
        writer = DeterministicGzipWriter(buf, "isal", 2)
        pos = 0
        for size in chunks:
            writer.write(data[pos : pos + size])
            pos += size
        writer.write(data[pos:])
        writer.close()
        outputs.append(buf.getvalue())
    assert outputs[0] == outputs[1] == outputs[2]
    assert gzip.decompress(outputs[0]) == data


def test_memory_estimate_reads_only_the_header(tmp_path):
    shape, spacing = (40, 40, 6), (4.97, 4.97, 5.0)
    img, _ = _phantom(tmp_path, shape, spacing, np.zeros(shape, np.uint8))
    header_only = tmp_path / "header_only.nii.gz"
    header_only.write_bytes(gzip.compress(gzip.decompress(img.read_bytes())[:352], mtime=0))
    native = estimate_resample_mem_mb(header_only, "native")
    fine = estimate_resample_mem_mb(header_only, (1.0, 1.0, 1.0))
    assert native == estimate_resample_mem_mb(img, "native")
    assert NUMPY_BASE_MEM_MB < native < fine < NUMPY_BASE_MEM_MB + 200
    assert estimate_resample_mem_mb(header_only, (1, 1, 1), interpolator="bspline") > BASE_MEM_MB
    # mv02 at full size: 512 x 512 x 110 at 4.97 x 4.97 x 5 um -> 1 um
    big = nib.Nifti1Header()
    big.set_data_shape((512, 512, 110))
    big.set_data_dtype(np.uint16)
    big.set_zooms((4.97, 4.97, 5.0))
    big["vox_offset"] = 352
    big_path = tmp_path / "mv02_header.nii.gz"
    big_path.write_bytes(gzip.compress(big.binaryblock + b"\0" * 4, mtime=0))
    # input 55 MiB + one 2545 x 2545 slice slab (6.5 M voxels x 8 B + the x pass over 2
    # input slices, 2 x 512 x 2545 x 8 B), not the 7 GB output (SimpleITK's: 12 B/voxel
    # and 40 margin slices)
    assert 200 < estimate_resample_mem_mb(big_path, (1.0, 1.0, 1.0)) < 300
    assert 250 < estimate_resample_mem_mb(big_path, (1, 1, 1), interpolator="bspline") < 450


def test_shape_mismatch_between_image_and_mask_is_refused(tmp_path):
    img = _write(tmp_path / "i.nii.gz", np.zeros((8, 8, 4), np.uint16), (1, 1, 2))
    lbl = _write(tmp_path / "l.nii.gz", np.zeros((8, 8, 5), np.uint8), (1, 1, 2), "label")
    with pytest.raises(ResampleError, match=r"^mv07: resample: image shape \[8, 8, 4\] vs mask"):
        _run(tmp_path, img, lbl)


def test_a_failing_mask_leaves_neither_output_file(tmp_path):
    shape, spacing = (8, 8, 4), (1.0, 1.0, 2.0)
    mask = np.zeros(shape, np.uint8)
    mask[2:4, 2:4, :] = 2
    img, lbl = _phantom(tmp_path, shape, spacing, mask, np.ones(shape, np.uint16))
    with pytest.raises(ResampleError, match=r"mask values \[0, 2\] — expected a subset of"):
        _run(tmp_path, img, lbl)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("failing", ["img", "lbl"])
def test_a_full_disk_names_the_file_that_could_not_be_written(tmp_path, monkeypatch, failing):
    import errno

    shape, spacing = (8, 8, 4), (1.0, 1.0, 2.0)
    mask = np.zeros(shape, np.uint8)
    mask[2:4, 2:4, :] = 1
    img, lbl = _phantom(tmp_path, shape, spacing, mask)
    real_write = nifti.DeterministicGzipWriter.write

    def write(self, data):
        if f".{failing}.nii.gz.tmp-" in self._handle.name:
            raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it
        real_write(self, data)

    monkeypatch.setattr(nifti.DeterministicGzipWriter, "write", write)
    with pytest.raises(OSError) as raised:
        _run(tmp_path, img, lbl)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.strerror == "No space left on device while writing"  # said once
    assert raised.value.filename == str(tmp_path / "out" / f"{failing}.nii.gz")
    assert list((tmp_path / "out").iterdir()) == []


def _to_uint16_reference(values):
    """The plain four-pass rounding the fast path must equal byte for byte."""
    values = values.copy()
    clipped = int(np.count_nonzero(values < -0.5)) + int(np.count_nonzero(values >= 65535.5))
    np.nan_to_num(values, copy=False, nan=0.0)
    np.clip(values, 0.0, 65535.0, out=values)
    np.rint(values, out=values)
    return values.astype("<u2"), clipped


@pytest.mark.parametrize(
    "extra",
    [
        [],  # in range: the fast path
        [-0.5, 65535.49, -0.0, 0.5, 1.5, 65534.5],  # the fast path's edges (float32), half-to-even
        [-0.5001],  # just below the range: clipped
        [65535.5],  # the first value that rounds past 65535: clipped
        [np.nan],  # NaN becomes 0, not counted
        [-7e4, 1e9],
    ],
)
def test_uint16_rounding_fast_path_equals_the_four_pass_reference(extra):
    from minivess_bundle.resample.kernels import _to_uint16

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(0, 65535, 10_000), np.array(extra, float)])
    values = values.astype(np.float32)
    expected, expected_clipped = _to_uint16_reference(values)
    got, clipped = _to_uint16(values.copy())
    assert got.dtype == np.dtype("<u2") and got.tobytes() == expected.tobytes()
    assert clipped == expected_clipped
    assert clipped == (0 if not extra or extra[0] in (-0.5, np.nan) else len(extra))


@pytest.mark.parametrize(
    "values",
    [[], [0] * 5, [1] * 5, [0, 1, 1, 0, 1], [0, 1, 2], [3, 255, 0], [1, 200]],
)
def test_mask_histogram_equals_bincount(values):
    from minivess_bundle.resample.kernels import _u8_histogram

    array = np.array(values, dtype=np.uint8).reshape(-1, 1)
    expected = np.bincount(array.reshape(-1), minlength=256)
    assert _u8_histogram(array).tolist() == expected.tolist()


# ------------------------------------------------- the numpy path vs SimpleITK's

#: (input shape x, y, z; spacing um; target um): odd sizes, one- and two-sample axes,
#: mv68's and mv02's grids, down-sampling by exactly 2 (output centres on .5 ties of
#: the nearest rounding and on the buffer's far edge), finer and coarser z steps.
_GRIDS = [
    ((37, 29, 23), (0.994, 0.994, 2.0), (1.0, 1.0, 1.0)),
    ((13, 11, 7), (4.97, 4.97, 5.0), (1.0, 1.0, 1.0)),
    ((8, 37, 31), (2.0, 0.5, 3.0), (1.0, 1.0, 1.0)),
    ((30, 31, 9), (0.31, 0.45, 0.5), (1.0, 1.0, 1.0)),
    ((1, 5, 2), (1.23, 0.7, 4.97), (1.0, 1.0, 1.0)),
    ((2, 1, 1), (0.6, 0.6, 0.6), (1.0, 1.0, 1.0)),
    ((19, 23, 17), (1.1, 0.9, 2.5), (2.3, 0.7, 1.7)),
    ((16, 16, 16), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)),
]


def _float32(values):
    return [float(np.float32(v)) for v in values]  # as a NIfTI header stores them


@pytest.mark.parametrize(("shape", "spacing", "target"), _GRIDS)
def test_numpy_linear_and_nearest_equal_simpleitk_bit_for_bit(shape, spacing, target):
    """Measured over these grids and 120 random ones (bench/resample_equivalence.py
    10 11 12: 8.2 M voxels each of image and mask): no float32 value
    differs, so the rounded uint16 bytes and the mask bytes are identical — the bound
    asserted is exact equality, in every slab of a 1-slice slab plan and whole."""
    from minivess_bundle.resample import resample_slab, sitk_slab
    from minivess_bundle.resample.grid import _slab_plan

    rng = np.random.default_rng(sum(shape))
    spacing = _float32(spacing)
    grid = output_grid(shape, spacing, target)
    image = rng.integers(0, 65536, shape[::-1], dtype=np.uint16)  # [z, y, x]
    mask = (rng.random(shape[::-1]) < 0.4).astype(np.uint8)
    nx, ny, nz = grid["shape"]
    for slices in (1, nz):
        for k0, k1, i0, i1 in _slab_plan(shape[2], spacing[2], grid, 2, slices):
            ours = resample_slab(image, spacing, grid, k0, k1, i0, i1, "linear", True)
            ref = sitk_slab(image, spacing, grid, k0, k1, i0, i1, "linear", True)
            assert ours.dtype == ref.dtype == np.float32 and ours.shape == (k1 - k0, ny, nx)
            assert ours.tobytes() == ref.tobytes()
            ours = resample_slab(mask, spacing, grid, k0, k1, i0, i1, "nearest", False)
            ref = sitk_slab(mask, spacing, grid, k0, k1, i0, i1, "nearest", False)
            assert ours.dtype == ref.dtype == np.uint8
            assert ours.tobytes() == ref.tobytes()


def test_a_sample_outside_along_one_axis_takes_the_nearest_value_along_all():
    """ITK's rule, kept: past the last centre by half a voxel or more along any axis
    (here y: 7 samples at 0.5 um to 1 um, the last output centre at index 6.5), the
    nearest-neighbour extrapolator replaces linear interpolation along every axis."""
    from minivess_bundle.resample import resample_slab

    image = np.zeros((1, 7, 3), np.uint16)  # [z, y, x]: x spacing 2 um, values 0 10 20
    image[0] = np.arange(3) * 10 + np.arange(7)[:, None] * 100
    spacing = [2.0, 0.5, 1.0]
    grid = output_grid((3, 7, 1), spacing, (1.0, 1.0, 1.0))
    assert grid["shape"] == [6, 4, 1] and grid["start_index"][:2] == [-0.25, 0.5]
    out = resample_slab(image, spacing, grid, 0, 1, 0, 1, "linear", True)[0]
    # rows inside: x linear (clamped to 0 at -0.25), y halfway between 2 rows
    assert out[0].tolist() == [50.0, 52.5, 57.5, 62.5, 67.5, 70.0]
    # the last row (y index 6.5): nearest along y (row 6) *and* x (0 0 1 1 2 2)
    assert out[3].tolist() == [600.0, 600.0, 610.0, 610.0, 620.0, 620.0]


def test_thread_pool_writes_the_same_bytes_as_one_thread(tmp_path):
    mask = _sphere()
    img, lbl = _phantom(tmp_path, mask.shape, (0.8, 0.8, 2.0), mask)
    one, _, _ = _run(tmp_path, img, lbl, tag="one", slab_voxels=3000, threads=1)
    two, _, _ = _run(tmp_path, img, lbl, tag="two", slab_voxels=3000, threads=2)
    assert one["files"]["image"]["slabs"] == 40  # 1 output slice per slab: 40 in flight
    for role in ("image", "label"):
        assert one["files"][role]["sha256"] == two["files"][role]["sha256"]
    for name in ("img.nii.gz", "lbl.nii.gz"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


@pytest.mark.parametrize(
    ("slab_voxels", "expected"),
    [
        (100 * 100 * 8, 8),  # output-bound: 8 slices of 100 x 100
        (100 * 100 * 8 - 1, 7),  # one voxel less: 7
        (1, 1),  # at least one slice
        (10**9, 50),  # at most the output's slices
    ],
)
def test_slab_slices_bound_the_output_voxels(slab_voxels, expected):
    from minivess_bundle.resample import slab_slices

    grid = {"shape": [100, 100, 50], "spacing_um": [1.0, 1.0, 1.0]}
    assert slab_slices(grid, (50, 50, 25), 2.0, slab_voxels) == expected


@pytest.mark.parametrize(
    ("slab_voxels", "expected"), [(400 * 100 * 12, 5), (400 * 100 * 12 - 1, 4)]
)
def test_slab_slices_bound_the_input_slices_of_a_fine_z_step(slab_voxels, expected):
    """z step 0.5 um to 1 um: 2 input slices per output slice (+2 for the taps); the
    x pass holds in-slices x in-rows (400) x out-columns (100)."""
    from minivess_bundle.resample import slab_slices

    grid = {"shape": [100, 100, 50], "spacing_um": [1.0, 1.0, 1.0]}
    assert slab_slices(grid, (100, 400, 100), 0.5, slab_voxels) == expected


def _imported_by_a_job(argv: list[str]) -> set[str]:
    import subprocess
    import sys

    code = (
        "import sys; from minivess_bundle import cli; rc = cli.main(sys.argv[1:]); "
        "print(' '.join(sorted(sys.modules))); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def _resample_spec(image_interpolator: str) -> str:
    """The resample stage's --spec: 1 um isotropic, no voxel limit, um headers, isal 2."""
    from minivess_bundle.core.spec import to_json
    from minivess_bundle.resample import ResampleSpec
    from minivess_bundle.settings import validated

    config = validated({"resample": {"image_interpolator": image_interpolator}})
    config["resample"]["max_output_voxels"] = 0
    return to_json(ResampleSpec.from_config(config))


def test_a_default_resample_job_imports_neither_simpleitk_nor_drift_nor_ebrains(tmp_path):
    """Start-up: the default job (linear / nearest) needs numpy and nibabel only."""
    mask = _sphere((20, 20, 6))
    img, lbl = _phantom(tmp_path, mask.shape, (0.8, 0.8, 2.0), mask)
    common = ["resample", "mv07", "--image", str(img), "--label", str(lbl), "--threads", "2"]
    out = ["--out-image", str(tmp_path / "a.nii.gz"), "--out-label", str(tmp_path / "b.nii.gz")]
    interps = ["--spec", _resample_spec("linear")]
    modules = _imported_by_a_job(["-q", *common, *interps, *out])
    assert {"numpy", "nibabel", "minivess_bundle.resample"} <= modules
    assert not modules & {"SimpleITK", "minivess_bundle.drift", "minivess_bundle.fetch.ebrains"}
    assert "numpy.ma" not in modules  # (np.unique would pull it in: 8 ms)
    # the SimpleITK interpolators still load it, when asked for
    interps = ["--spec", _resample_spec("bspline")]
    assert "SimpleITK" in _imported_by_a_job(["-q", *common, *interps, *out])


def test_a_validate_job_imports_neither_drift_nor_ebrains(tmp_path):
    mask = _sphere((20, 20, 6))
    img, lbl = _phantom(tmp_path, mask.shape, (0.8, 0.8, 2.0), mask)
    argv = ["-q", "validate", "mv07", "--image", str(img), "--label", str(lbl)]
    from minivess_bundle.core.spec import to_json
    from minivess_bundle.settings import validated
    from minivess_bundle.validate.spec import ValidateSpec

    stage = to_json(ValidateSpec.from_config(validated({})))
    argv += ["--spec", stage, "--out", str(tmp_path / "v.json")]
    modules = _imported_by_a_job(argv)
    assert "minivess_bundle.validate" in modules
    assert not modules & {"SimpleITK", "minivess_bundle.drift", "minivess_bundle.fetch.ebrains"}


@pytest.mark.parametrize("threads", [1, 2])
def test_memory_estimate_covers_a_jobs_measured_peak_within_1_6x(tmp_path, threads):
    """The job's own high-water mark (VmHWM of the process, Linux) on a 512 x 512 x 60
    image at mv68's spacing (31 M output voxels): at most the estimate, and the
    estimate at most 1.6 x it (measured 117 MB vs 148, 2 threads 174 vs 247: 1.26 x and
    1.42 x; not padded beyond use)."""
    import subprocess
    import sys

    rng = np.random.default_rng(11)
    shape, spacing = (512, 512, 60), (0.994, 0.994, 2.0)
    image = rng.integers(0, 4096, shape, dtype=np.uint16)
    mask = (rng.random(shape) < 0.05).astype(np.uint8)
    img, lbl = _phantom(tmp_path, shape, spacing, mask, image)
    argv = ["-q", "resample", "mv07", "--image", str(img), "--label", str(lbl)]
    argv += ["--spec", _resample_spec("linear")]
    argv += ["--threads", str(threads), "--out-image", str(tmp_path / "a.nii.gz")]
    argv += ["--out-label", str(tmp_path / "b.nii.gz")]
    code = (
        "import sys; from minivess_bundle import cli; rc = cli.main(sys.argv[1:]); "
        "print(open('/proc/self/status').read()); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    peak_mb = next(
        int(line.split()[1]) / 1024 for line in result.stdout.splitlines() if "VmHWM" in line
    )
    estimate = estimate_resample_mem_mb(img, (1.0, 1.0, 1.0), threads=threads)
    assert peak_mb <= estimate <= 1.6 * peak_mb, (peak_mb, estimate)


@pytest.mark.parametrize("volume", ["mv68", "mv02", "mv39"])
def test_synthetic_volume_resamples_to_simpleitks_bytes(tmp_path, monkeypatch, volume):
    """A synthetic MiniVess volume (64 px in-plane, its drawn spacing) through the whole
    job: the numpy path writes the bytes SimpleITK's path writes, image and mask."""
    from minivess_bundle import resample
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    staged = write_synthetic_volume(tmp_path / "staging", volume, 20230301, 64, 40)
    ours, _, _ = _run(tmp_path, staged["image"], staged["label"], tag="numpy")
    monkeypatch.setattr(resample, "NUMPY_INTERPOLATORS", ())
    ref, _, _ = _run(tmp_path, staged["image"], staged["label"], tag="sitk")
    assert ours["output"]["shape"] == ref["output"]["shape"]
    assert ours["files"]["label"]["foreground_voxels"] > 0
    for role, name in (("image", "img.nii.gz"), ("label", "lbl.nii.gz")):
        assert ours["files"][role]["sha256"] == ref["files"][role]["sha256"]
        assert (tmp_path / "numpy" / name).read_bytes() == (tmp_path / "sitk" / name).read_bytes()
