"""Validation: every bad input yields its named failed check; good data passes; policies."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from minivess_bundle.core import nifti
from minivess_bundle.core.errors import ConfigError, ValidationError
from minivess_bundle.core.fsio import write_json_atomic
from minivess_bundle.validate import (
    MODALITIES,
    aggregate_reports,
    effective_rules,
    find_json_spacing,
    intensity_stats,
    raise_if_invalid,
    validate_volume,
    write_report,
)

SHAPE = (16, 14, 8)
SPACING = (0.994, 0.994, 2.0)


def _good_arrays(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(80, 1200, shape, dtype=np.uint16)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    label = (((x - 8) ** 2 + (y - 7) ** 2) <= 6).astype(np.uint8)  # a vessel along z
    return image, label


def _write(path, array, spacing=SPACING, kind="image", units=0, affine=None):
    if array.ndim == 3:
        img = nifti.make_image(array, spacing, nifti.minivess_header(kind))
    else:  # 4-D/5-D: make_image is 3-D only
        img = nib.Nifti1Image(array, np.diag([*spacing, 1.0]), nifti.minivess_header(kind))
        img.set_sform(np.diag([*spacing, 1.0]), code=2)
        img.header.set_data_dtype(array.dtype)
    if affine is not None:
        img.set_sform(affine, code=2)
    img.header["xyzt_units"] = units
    return nifti.write_nifti(path, img)


def _pair(tmp_path, image=None, label=None, json_doc=None, spacing=SPACING, **kwargs):
    """Write image/label/json for mv07 in tmp_path; returns the three paths."""
    good_image, good_label = _good_arrays()
    img = _write(
        tmp_path / "mv07.nii.gz", good_image if image is None else image, spacing, **kwargs
    )
    lbl = _write(
        tmp_path / "mv07_y.nii.gz",
        good_label if label is None else label,
        spacing,
        kind="label",
        **kwargs,
    )
    meta = tmp_path / "mv07.json"
    doc = {"synthetic": True, "voxel_size_um": list(spacing)} if json_doc is None else json_doc
    if isinstance(doc, bytes):
        meta.write_bytes(doc)
    else:
        write_json_atomic(meta, doc)
    return img, lbl, meta


def _failed(report):
    return {c["name"] for c in report["checks"] if c["passed"] is False}


def test_good_synthetic_volume_passes_every_check_with_stats(tmp_path):
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    paths = write_synthetic_volume(tmp_path, "mv02", seed=5, size_xy=24, max_z=8)
    report = validate_volume("mv02", paths["image"], paths["label"], paths["metadata"])
    assert report["valid"] and report["failed_checks"] == []
    assert all(c["passed"] is True for c in report["checks"])
    names = [c["name"] for c in report["checks"]]
    for name in ("opens", "is_3d", "image_dtype", "label_dtype", "label_values", "same_shape",
                 "same_affine", "finite", "spacing_positive", "foreground_fraction",
                 "json_spacing_agrees", "shape_bounds", "spacing_bounds"):  # fmt: skip
        assert name in names
    assert report["shape"] == [24, 24, 8]
    # mv02: the outlier z step of 4.97 um (in-plane drawn, 0.471 um at seed 5)
    assert report["spacing"] == pytest.approx([0.471, 0.471, 4.97], rel=1e-6)
    assert report["units"] == {
        "header_units": "unknown",
        "interpreted_as": "um",
        "report_units": "um",
        "source_units": "um",
    }
    assert report["dtype"] == {"image": "uint16", "label": "uint8"}
    assert report["label_values"] == [0, 1]
    assert report["json_spacing"]["key"] == "voxel_size_um"
    image = np.asarray(nib.load(paths["image"]).dataobj)
    label = np.asarray(nib.load(paths["label"]).dataobj)
    assert report["foreground_fraction"] == pytest.approx(label.mean(), abs=1e-8)
    stats = report["intensity"]
    assert (stats["min"], stats["max"]) == (int(image.min()), int(image.max()))
    assert [stats["p1"], stats["p50"], stats["p99"]] == [
        int(v) for v in np.percentile(image, [1, 50, 99], method="inverted_cdf")
    ]


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-300])


def _patch_header(path, **fields):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    header = nib.Nifti1Header(bytes(raw[:348]), check=False)
    for key, value in fields.items():
        header[key] = value
    raw[:348] = header.binaryblock
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))


def _flip_bytes(path, at=0.5, count=16):
    """Corrupt a gzip file in the middle of its deflate stream (not a truncation)."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + count):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _with_infs():
    image = np.full(SHAPE, 5.0, np.float32)
    image[0, 0, :2] = np.inf
    image[1, 0, :3] = -np.inf
    return image


def _mismatched_affine():
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [0.5, 0.0, 0.0]
    return affine


CORPUS = {
    # case: (how to build it, the check that must fail)
    "truncated_gzip": (lambda t: _truncate(_pair(t)[0]), "opens"),
    "four_d_file": (lambda t: _pair(t, image=np.zeros((*SHAPE, 2), np.uint16)), "is_3d"),
    "float_nans": (
        lambda t: _pair(t, image=np.where(_good_arrays()[1] > 0, np.nan, 5.0).astype(np.float32)),
        "finite",
    ),
    "mask_value_2": (lambda t: _pair(t, label=_good_arrays()[1] * 2), "label_values"),
    "shape_mismatch": (lambda t: _pair(t, label=np.zeros((16, 14, 7), np.uint8)), "same_shape"),
    "affine_mismatch": (
        lambda t: _write(_pair(t)[1], _good_arrays()[1], kind="label", affine=_mismatched_affine()),
        "same_affine",
    ),
    "zero_spacing": (
        lambda t: _patch_header(_pair(t)[0], pixdim=[1, *SPACING[:2], 0, 0, 0, 0, 0], srow_z=0),
        "spacing_positive",
    ),
    "json_header_disagree": (
        lambda t: _pair(t, json_doc={"voxel_size_um": [0.994, 0.994, 3.0]}),
        "json_spacing_agrees",
    ),
    "empty_mask": (lambda t: _pair(t, label=np.zeros(SHAPE, np.uint8)), "foreground_fraction"),
    "non_json_metadata": (lambda t: _pair(t, json_doc=b"{not json"), "json_readable"),
    "non_utf8_metadata": (lambda t: _pair(t, json_doc=b'{"a": "\xff"}'), "json_readable"),
    "oversized_json": (
        lambda t: _pair(t, json_doc={"pad": "x" * 1_100_000}),
        "json_readable",
    ),
    "text_file_named_nii_gz": (
        lambda t: _pair(t)[0].write_bytes(b"<html>503 Service Unavailable</html>\n" * 7),
        "opens",
    ),
    "mm_spacing_for_microscopy": (lambda t: _pair(t, units=2), "spacing_bounds"),
    "wrong_image_dtype": (lambda t: _pair(t, image=np.ones(SHAPE, np.int32)), "image_dtype"),
    "wrong_label_dtype": (
        lambda t: _pair(t, label=_good_arrays()[1].astype(np.int16)),
        "label_dtype",
    ),
    # Issue #10's hostile and odd inputs (the focused tests below check the values).
    "float_infs": (lambda t: _pair(t, image=_with_infs()), "finite"),
    "corrupt_gzip": (lambda t: _flip_bytes(_pair(t)[0]), "opens"),
    "negative_pixdim_without_sform": (
        lambda t: _patch_header(
            _pair(t)[0],
            pixdim=[1, -SPACING[0], *SPACING[1:], 0, 0, 0, 0],
            sform_code=0,
            qform_code=1,
        ),
        "spacing_positive",
    ),  # fmt: skip
    "negative_pixdim_disagreeing_with_sform": (
        lambda t: _patch_header(_pair(t)[0], pixdim=[1, -0.5, *SPACING[1:], 0, 0, 0, 0]),
        "spacing_consistent",
    ),
    "nan_pixdim": (
        lambda t: _patch_header(_pair(t)[0], pixdim=[1, np.nan, *SPACING[1:], 0, 0, 0, 0]),
        "spacing_positive",
    ),
    "inf_pixdim": (
        lambda t: _patch_header(_pair(t)[0], pixdim=[1, *SPACING[:2], np.inf, 0, 0, 0, 0]),
        "spacing_positive",
    ),
    "scaled_image": (
        lambda t: _patch_header(_pair(t)[0], scl_slope=2.0, scl_inter=10.0),
        "image_dtype",
    ),
    "scaled_label": (lambda t: _patch_header(_pair(t)[1], scl_slope=2.0), "label_dtype"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_yields_its_named_failed_check(tmp_path, case):
    build, check = CORPUS[case]
    build(tmp_path)
    report = validate_volume(
        "mv07", tmp_path / "mv07.nii.gz", tmp_path / "mv07_y.nii.gz", tmp_path / "mv07.json"
    )
    assert not report["valid"]
    assert check in _failed(report), report["failed_checks"]
    with pytest.raises(ValidationError, match=r"^mv07: validate: "):
        raise_if_invalid(report)


def test_huge_header_shape_is_refused_before_any_allocation(tmp_path, monkeypatch):
    img, _, meta = _pair(tmp_path)
    _patch_header(img, dim=[3, 30000, 30000, 30000, 1, 1, 1, 1])  # 54 TB of uint16
    allocations = []
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocations.append(a) or 1 / 0)
    report = validate_volume("mv07", img, tmp_path / "mv07_y.nii.gz", meta)
    opens = next(c for c in report["checks"] if c["name"] == "opens" and c["file"] == "image")
    assert opens["passed"] is False
    assert "needs 54000000000352 bytes" in opens["observed"]
    assert "can hold at most" in opens["observed"]
    assert allocations == []


def test_mask_value_2_error_is_one_actionable_line(tmp_path):
    _, lbl, _ = _pair(tmp_path, label=_good_arrays()[1] * 2)
    report = validate_volume("mv07", tmp_path / "mv07.nii.gz", lbl, tmp_path / "mv07.json")
    assert report["failed_checks"] == ["label_values"]
    with pytest.raises(ValidationError) as info:
        raise_if_invalid(report)
    assert str(info.value) == (
        "mv07: validate: label_values: mask values {0, 2} — expected a subset of {0, 1} "
        f"({lbl})"
    )


def test_truncated_gzip_skips_data_checks_instead_of_failing_them(tmp_path):
    img, lbl, meta = _pair(tmp_path)
    _truncate(img)
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["opens"]
    opens = report["checks"][0]
    assert opens["file"] == "image" and "truncated" in opens["observed"]
    skipped = {c["name"] for c in report["checks"] if c["passed"] is None}
    assert {"label_values", "finite", "foreground_fraction"} <= skipped


def test_trailing_singleton_dimension_is_tolerated(tmp_path):
    image, label = _good_arrays()
    img, lbl, meta = _pair(tmp_path, image=image[..., None], label=label[..., None])
    report = validate_volume("mv07", img, lbl, meta)
    assert report["valid"], report["failed_checks"]
    assert report["shape"] == list(SHAPE)


def test_big_endian_file_reads_the_same_values(tmp_path):
    image, label = _good_arrays()
    img, lbl, meta = _pair(tmp_path)
    little = validate_volume("mv07", img, lbl, meta)
    swapped = nifti.make_image(image, SPACING, nifti.minivess_header("image")).header
    header = swapped.as_byteswapped(">")
    header["scl_slope"], header["scl_inter"], header["vox_offset"] = 1.0, 0.0, 352
    raw = header.binaryblock + b"\0" * 4 + image.astype(">u2").tobytes(order="F")
    img.write_bytes(gzip.compress(raw, mtime=0))
    big = validate_volume("mv07", img, lbl, meta)
    assert big["valid"], big["failed_checks"]
    assert big["intensity"] == little["intensity"]


def test_covariate_shift_of_header_spacing_fails_json_check_only(tmp_path):
    # The drift stage's covariate variant scales the header spacing and keeps the json.
    img, lbl, meta = _pair(tmp_path, json_doc={"voxel_size_um": list(SPACING)})
    image, label = _good_arrays()
    shifted = (SPACING[0] * 1.5, SPACING[1] * 1.5, SPACING[2])
    _write(img, image, shifted)
    _write(lbl, label, shifted, kind="label")
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["json_spacing_agrees"]
    check = report["checks"][-1]
    assert check["observed"]["json"] == pytest.approx(list(SPACING))
    assert check["observed"]["header"] == pytest.approx(list(shifted), rel=1e-6)


def test_mri_profile_accepts_mm_data_that_microscopy_rejects(tmp_path):
    spacing = (1.0, 1.0, 1.2)
    img, lbl, meta = _pair(tmp_path, spacing=spacing, units=2, json_doc={"spacing_mm": spacing})
    micro = validate_volume("mv07", img, lbl, meta, {"modality": "microscopy"})
    assert micro["failed_checks"] == ["spacing_bounds"]
    assert micro["spacing"] == pytest.approx([1000.0, 1000.0, 1200.0])
    assert micro["units"]["header_units"] == "mm"
    mri = validate_volume("mv07", img, lbl, meta, {"modality": "mri"})
    assert mri["valid"], mri["failed_checks"]
    assert mri["spacing"] == pytest.approx(list(spacing))
    assert mri["units"] == {
        "header_units": "mm",
        "interpreted_as": "mm",
        "report_units": "mm",
        "source_units": "mm",
    }
    assert MODALITIES["mri"]["units"] == "mm" and MODALITIES["microscopy"]["units"] == "um"


def test_source_units_decide_how_unknown_header_units_are_read(tmp_path):
    img, lbl, meta = _pair(tmp_path, json_doc={})
    as_um = validate_volume("mv07", img, lbl, meta, {"source_units": "um"})
    as_mm = validate_volume("mv07", img, lbl, meta, {"source_units": "mm"})
    assert as_um["valid"] and as_um["units"]["interpreted_as"] == "um"
    assert as_mm["units"] == {
        "header_units": "unknown",
        "interpreted_as": "mm",
        "report_units": "um",
        "source_units": "mm",
    }
    assert as_mm["spacing"] == pytest.approx([994.0, 994.0, 2000.0])
    assert as_mm["failed_checks"] == ["spacing_bounds"]


def test_unknown_rule_and_modality_are_config_errors():
    with pytest.raises(ConfigError, match="unknown validation rule"):
        effective_rules({"max_spacing": 3})
    with pytest.raises(ConfigError, match="modality 'ct' is not known"):
        effective_rules({"modality": "ct"})


@pytest.mark.parametrize(
    ("doc", "key", "values", "units"),
    [
        ({"voxel_size_um": [1, 1, 2]}, "voxel_size_um", [1, 1, 2], "um"),
        ({"meta": {"Spacing": [0.5, 0.5, 5, 1]}}, "meta.Spacing", [0.5, 0.5, 5], None),
        ({"pixdim": [1, 0.3, 0.3, 2, 0, 0, 0, 0]}, "pixdim", [0.3, 0.3, 2], None),
        ({"resolution": {"X": 1, "y": 1, "z": 10}, "units": "µm"}, "resolution", [1, 1, 10], "um"),
        ({"spacing_mm": [0.001, 0.001, 0.002]}, "spacing_mm", [0.001, 0.001, 0.002], "mm"),
        (
            {"ome": {"PhysicalSizeX": 0.9, "PhysicalSizeY": 0.9, "PhysicalSizeZ": 5,
                     "PhysicalSizeXUnit": "micron"}},
            "ome.PhysicalSizeX/Y/Z", [0.9, 0.9, 5], "um",
        ),
        ({"synthetic": True, "shape": [512, 512, 20], "seed": 3}, None, None, None),
        ({"spacing": [1, 2]}, None, None, None),
    ],
)  # fmt: skip
def test_json_spacing_is_found_under_the_documented_names(doc, key, values, units):
    hit = find_json_spacing(doc)
    if key is None:
        assert hit is None
    else:
        assert hit == {"key": key, "values": pytest.approx(values), "units": units}


def test_json_in_nm_is_converted_before_comparison(tmp_path):
    img, lbl, meta = _pair(tmp_path, json_doc={"voxel_size_nm": [994, 994, 2000]})
    report = validate_volume("mv07", img, lbl, meta)
    assert report["valid"], report["failed_checks"]
    assert report["json_spacing"]["in_report_units"] == pytest.approx(list(SPACING))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.float32])
def test_histogram_percentiles_equal_numpy_inverted_cdf(dtype):
    rng = np.random.default_rng(3)
    lo = -500 if np.issubdtype(dtype, np.signedinteger) or dtype == np.float32 else 0
    hi = 255 if dtype == np.uint8 else 4000
    array = rng.integers(lo, hi, (20, 9, 7)).astype(dtype)
    stats = intensity_stats(array)
    expected = np.percentile(array, [1, 50, 99], method="inverted_cdf")
    assert [stats["p1"], stats["p50"], stats["p99"]] == pytest.approx(expected.tolist())
    assert (stats["min"], stats["max"]) == (array.min(), array.max())
    assert stats["mean"] == pytest.approx(float(array.astype(np.float64).mean()), abs=1e-6)


def test_aggregate_lists_quarantined_volumes_with_reasons(tmp_path):
    paths = []
    for vol, label in (("mv01", None), ("mv02", None), ("mv03", _good_arrays()[1] * 2)):
        folder = tmp_path / vol
        folder.mkdir()
        img, lbl, meta = _pair(folder, label=label)
        report = validate_volume(vol, img, lbl, meta)
        paths.append(write_report(tmp_path / "validation" / f"{vol}.json", report))
    result = aggregate_reports(paths)
    assert result["policy"] == "quarantine"
    assert result["valid"] == ["mv01", "mv02"]
    assert result["quarantined"] == [
        {
            "volume": "mv03",
            "reasons": ["label_values: mask values {0, 2} — expected a subset of {0, 1}"],
        }
    ]
    summary = result["summary"]
    assert (summary["total"], summary["valid"], summary["invalid"]) == (3, 2, 1)
    assert summary["failed_checks"] == {"label_values": 1}
    assert summary["shape_min"] == summary["shape_max"] == list(SHAPE)
    assert summary["spacing_min"] == pytest.approx(list(SPACING), rel=1e-6)
    assert sorted(result["volumes"]) == ["mv01", "mv02", "mv03"]
    json.dumps(result)  # serialisable as-is
    with pytest.raises(ValidationError, match=r"^mv03: validate: label_values: mask values"):
        aggregate_reports(paths, on_invalid="fail")


def test_report_is_canonical_json_and_deterministic(tmp_path):
    img, lbl, meta = _pair(tmp_path)
    a = write_report(tmp_path / "a.json", validate_volume("mv07", img, lbl, meta))
    b = write_report(tmp_path / "b.json", validate_volume("mv07", img, lbl, meta))
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["valid"] is True


# --------------------------------------------------------------------------
# Hostile and odd inputs (issue #10): each yields its named check with the
# observed values, or, where the data is legitimate, is handled correctly.


def _check(report, name, file=None):
    return next(
        c for c in report["checks"] if c["name"] == name and (file is None or c["file"] == file)
    )


def test_inf_and_minus_inf_fail_finite_with_their_count(tmp_path):
    img, lbl, meta = _pair(tmp_path, image=_with_infs())
    report = validate_volume("mv07", img, lbl, meta, {"image_dtype": ["uint16", "float32"]})
    assert report["failed_checks"] == ["finite"]
    assert _check(report, "finite")["observed"] == "5 voxels"  # 2 x +Inf, 3 x -Inf
    assert (report["intensity"]["min"], report["intensity"]["max"]) == (5.0, 5.0)  # finite only
    with pytest.raises(ValidationError) as info:
        raise_if_invalid(report)
    assert str(info.value) == (
        f"mv07: validate: finite: non-finite image values: 5 voxels — expected no NaN or Inf "
        f"voxels ({img})"
    )


@pytest.mark.parametrize("where", ["header", "data"])
def test_corrupt_deflate_stream_fails_opens_as_a_corrupt_gzip(tmp_path, where):
    if where == "header":  # small file: the first read decodes (and CRC-checks) it all
        img, lbl, meta = _pair(tmp_path)
    else:  # 512 KiB of noise: the header decodes, the data stream is bad
        shape = (128, 128, 16)
        image = np.random.default_rng(0).integers(0, 65535, shape, dtype=np.uint16)
        label = np.zeros(shape, np.uint8)
        label[60:64, 60:64] = 1
        img, lbl, meta = _pair(tmp_path, image=image, label=label)
    size = img.stat().st_size
    _flip_bytes(img)
    assert img.stat().st_size == size  # not a truncation
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["opens"]
    opens = _check(report, "opens", "image")
    assert opens["observed"].startswith("corrupt gzip stream ("), opens["observed"]
    assert _check(report, "finite")["passed"] is None  # skipped, never computed on bad bytes


def test_truncated_uncompressed_nii_is_refused_by_the_size_guard(tmp_path, monkeypatch):
    img, lbl, meta = _pair(tmp_path)
    nii = tmp_path / "mv07.nii"
    raw = gzip.decompress(img.read_bytes())
    nii.write_bytes(raw[:-100])  # 3936 bytes of header + data, 100 missing
    allocations = []
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocations.append(a) or 1 / 0)
    report = validate_volume("mv07", nii, lbl, meta)
    assert report["failed_checks"] == ["opens"]
    opens = _check(report, "opens", "image")
    assert opens["observed"] == (
        "header shape (16, 14, 8) uint16 needs 3936 bytes but the file of 3836 bytes can hold "
        "at most 3836"
    )
    assert allocations == []
    with pytest.raises(ValidationError, match=r"— expected a readable NIfTI-1 .*: a header that"):
        raise_if_invalid(report)


def _flipped_sform():
    affine = np.diag([-SPACING[0], SPACING[1], -SPACING[2], 1.0])
    affine[:3, 3] = [SPACING[0] * (SHAPE[0] - 1), 0.0, SPACING[2] * (SHAPE[2] - 1)]
    return affine


@pytest.mark.parametrize(
    "flip",
    [
        {"affine": "flipped_sform"},  # negative x and z columns: an axis flip
        {"pixdim": [-1, *SPACING, 0, 0, 0, 0], "sform_code": 0, "qform_code": 1},  # qfac -1
        {"pixdim": [1, -SPACING[0], *SPACING[1:], 0, 0, 0, 0]},  # ANALYZE-style, sform agrees
    ],
    ids=["negative_sform_columns", "qfac_minus_1", "negative_pixdim_with_sform"],
)
def test_legitimate_axis_flips_pass_with_spacing_from_the_column_norms(tmp_path, flip):
    if flip.get("affine"):
        img, lbl, meta = _pair(tmp_path, affine=_flipped_sform())
    else:
        img, lbl, meta = _pair(tmp_path)
        _patch_header(img, **flip)
        _patch_header(lbl, **flip)
    report = validate_volume("mv07", img, lbl, meta)
    assert report["valid"], report["failed_checks"]
    assert report["spacing"] == pytest.approx(list(SPACING), rel=1e-6)
    consistent = _check(report, "spacing_consistent", "image")["observed"]
    assert consistent["affine_column_norms"] == pytest.approx(list(SPACING), rel=1e-6)


@pytest.mark.parametrize(
    ("pixdim", "fields", "failed", "observed"),
    [
        ([-SPACING[0], *SPACING[1:]], {"sform_code": 0, "qform_code": 1}, "spacing_positive",
         [-0.994, 0.994, 2.0]),  # no sform: nibabel cannot build the qform
        ([-SPACING[0], *SPACING[1:]], {"sform_code": 0, "qform_code": 0}, "spacing_positive",
         [-0.994, 0.994, 2.0]),  # no affine at all
        ([-0.5, *SPACING[1:]], {}, "spacing_consistent",
         {"pixdim": [0.5, 0.994, 2.0], "affine_column_norms": [0.994, 0.994, 2.0]}),
        ([SPACING[0], 0.0, SPACING[2]], {}, "spacing_positive", [0.994, 0.0, 2.0]),
        ([SPACING[0], -0.0, SPACING[2]], {}, "spacing_positive", [0.994, -0.0, 2.0]),
    ],
    ids=["negative_qform_only", "negative_no_affine", "negative_disagrees_with_sform", "zero",
         "minus_zero"],
)  # fmt: skip
def test_bad_pixdim_fails_its_named_spacing_check_without_raising(
    tmp_path, pixdim, fields, failed, observed
):
    img, lbl, meta = _pair(tmp_path)
    _patch_header(img, pixdim=[1, *pixdim, 0, 0, 0, 0], **fields)
    report = validate_volume("mv07", img, lbl, meta)
    assert failed in report["failed_checks"]
    check = _check(report, failed, "image")
    assert check["observed"] == observed
    assert "a negative pixdim only with an sform" in _check(report, "spacing_positive")["expected"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixdim_fails_spacing_positive(tmp_path, bad):
    img, lbl, meta = _pair(tmp_path)
    _patch_header(img, pixdim=[1, *SPACING[:2], bad, 0, 0, 0, 0])
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"][0] == "spacing_positive"
    observed = _check(report, "spacing_positive", "image")["observed"]
    assert observed[:2] == [0.994, 0.994]
    assert observed[2] != observed[2] if bad != bad else observed[2] == bad


@pytest.mark.parametrize(
    ("slope", "inter", "observed"),
    [
        (1.0, 0.0, None),  # the identity the release writes
        (0.0, 0.0, None),  # NIfTI: 0 means "no scaling"
        (np.nan, np.nan, None),  # nibabel's "unset"
        (np.inf, 0.0, None),  # nibabel and nifti1_io read a non-finite slope as unset
        (2.0, 10.0, "uint16 scaled by 2/10"),
        (1.0, 5.0, "uint16 scaled by 1/5"),
        (1.0, np.nan, "uint16 scaled by 1/nan"),  # nibabel refuses to read this file
    ],
)
def test_scl_slope_inter_identity_or_unset_pass_real_scaling_fails_image_dtype(
    tmp_path, slope, inter, observed
):
    img, lbl, meta = _pair(tmp_path)
    _patch_header(img, scl_slope=slope, scl_inter=inter)
    report = validate_volume("mv07", img, lbl, meta)
    check = _check(report, "image_dtype")
    if observed is None:
        assert report["valid"], report["failed_checks"]
        assert check["observed"] == "uint16"
    else:
        assert report["failed_checks"] == ["image_dtype"]
        assert check["observed"] == observed
        assert check["expected"] == "uint16 without scl_slope/scl_inter scaling"


def test_scaled_label_fails_label_dtype_naming_the_scaling(tmp_path):
    img, lbl, meta = _pair(tmp_path)
    _patch_header(lbl, scl_slope=2.0, scl_inter=0.0)
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["label_dtype"]
    assert _check(report, "label_dtype")["observed"] == "uint8 scaled by 2/0"


def _write_big_endian(path, array, spacing=SPACING, kind="image", affine=None):
    """``array`` as a big-endian NIfTI-1 (gzip), header fields as :func:`_write` gives them."""
    img = nifti.make_image(array, spacing, nifti.minivess_header(kind))
    if affine is not None:
        img.set_sform(affine, code=2)
    header = img.header.as_byteswapped(">")
    header["scl_slope"], header["scl_inter"], header["vox_offset"] = 1.0, 0.0, 352
    data = array.astype(array.dtype.newbyteorder(">")).tobytes(order="F")
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + data, mtime=0))
    return path


def test_big_endian_label_reads_the_same_values(tmp_path):
    image, label = _good_arrays()
    img, lbl, meta = _pair(tmp_path)
    little = validate_volume("mv07", img, lbl, meta)
    _write_big_endian(img, image)
    _write_big_endian(lbl, label, kind="label")
    assert nib.load(lbl).header.endianness == ">"
    big = validate_volume("mv07", img, lbl, meta)
    assert big["valid"], big["failed_checks"]
    for key in ("label_values", "foreground_fraction", "intensity", "shape", "spacing"):
        assert big[key] == little[key], key
    assert big["dtype"] == {"image": "uint16", "label": "uint8"}


@pytest.mark.parametrize("spacing_um", ["native", (0.5, 0.7, 1.5)])
def test_big_endian_pair_resamples_to_the_same_bytes(tmp_path, spacing_um):
    from minivess_bundle.resample import resample_pair

    image, label = _good_arrays()
    outputs = {}
    for order in ("little", "big"):
        folder = tmp_path / order
        folder.mkdir()
        if order == "little":
            img, lbl, _ = _pair(folder)
        else:
            img = _write_big_endian(folder / "mv07.nii.gz", image)
            lbl = _write_big_endian(folder / "mv07_y.nii.gz", label, kind="label")
        out = (folder / "out" / "img.nii.gz", folder / "out" / "lbl.nii.gz")
        record = resample_pair("mv07", img, lbl, *out, spacing_um)
        outputs[order] = [p.read_bytes() for p in out], record["output"]
    assert outputs["big"] == outputs["little"]


def test_negative_pixdim_with_sform_resamples_like_the_positive_one(tmp_path):
    from minivess_bundle.resample import resample_pair

    outputs = []
    for flip in (False, True):
        folder = tmp_path / str(flip)
        folder.mkdir()
        img, lbl, _ = _pair(folder)
        if flip:
            for path in (img, lbl):
                _patch_header(path, pixdim=[1, -SPACING[0], *SPACING[1:], 0, 0, 0, 0])
        out = (folder / "out" / "img.nii.gz", folder / "out" / "lbl.nii.gz")
        resample_pair("mv07", img, lbl, *out, (0.5, 0.5, 1.0))
        outputs.append([p.read_bytes() for p in out])
    assert outputs[0] == outputs[1]
    assert nib.load(tmp_path / "True" / "out" / "img.nii.gz").header.get_zooms() == (
        pytest.approx((0.0005, 0.0005, 0.001))
    )


class _BoundedReads:
    """Wrap the json reader's ``open`` for one path and record every read size asked for."""

    def __init__(self, monkeypatch, path, cap):
        import builtins

        from minivess_bundle.validate import json_spacing

        self.path, self.cap, self.sizes, self.opened = str(path), cap, [], 0
        real_open = builtins.open
        spy = self

        class Handle:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def fileno(self):
                return self.handle.fileno()

            def read(self, size=-1):
                spy.sizes.append(size)
                if size is None or size < 0 or size > spy.cap + 1:
                    raise AssertionError(f"unbounded read({size}) of the json")
                return self.handle.read(size)

        def fake_open(file, *args, **kwargs):
            handle = real_open(file, *args, **kwargs)
            if str(file) != self.path:
                return handle
            self.opened += 1
            return Handle(handle)

        monkeypatch.setattr(json_spacing, "open", fake_open, raising=False)


def test_huge_single_line_json_is_refused_from_its_size_without_reading_it(tmp_path, monkeypatch):
    img, lbl, meta = _pair(tmp_path)
    meta.write_bytes(b'{"pad": "' + b"x" * 50_000_000 + b'"}')  # 50 MB, one line
    reads = _BoundedReads(monkeypatch, meta, 1_000_000)
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["json_readable"]
    check = _check(report, "json_readable")
    assert check["observed"] == "json of 50000011 bytes"
    assert check["expected"].endswith("JSON document of at most 1000000 bytes (max_json_bytes)")
    assert reads.opened == 1 and reads.sizes == []  # opened to stat it, never read


def test_json_without_a_size_is_read_only_up_to_the_cap(tmp_path, monkeypatch):
    if not Path("/dev/zero").exists():
        from conftest import unavailable

        unavailable("needs /dev/zero")
    # /dev/zero reports size 0 and never ends, like a file growing after the size check.
    img, lbl, meta = _pair(tmp_path)
    reads = _BoundedReads(monkeypatch, "/dev/zero", 4096)
    report = validate_volume("mv07", img, lbl, "/dev/zero", {"max_json_bytes": 4096})
    assert report["failed_checks"] == ["json_readable"]
    check = _check(report, "json_readable")
    assert check["observed"] == "json of more than 4096 bytes"
    assert check["expected"].endswith("JSON document of at most 4096 bytes (max_json_bytes)")
    assert reads.sizes == [4097]


# --- clearer messages (issue #19) -------------------------------------------------------------


def _message(report) -> str:
    with pytest.raises(ValidationError) as info:
        raise_if_invalid(report)
    return str(info.value)


def test_unparsable_json_is_its_own_check_not_a_spacing_disagreement(tmp_path):
    img, lbl, meta = _pair(tmp_path, json_doc=b"{not json")
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["json_readable"]
    assert _check(report, "json_spacing_agrees")["passed"] is None  # skipped, not failed
    assert _message(report) == (
        "mv07: validate: json_readable: unreadable json: not JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)) — expected a readable UTF-8 JSON "
        f"document of at most 1000000 bytes (max_json_bytes) ({meta})"
    )
    assert "within 0.02" not in _message(report)
    meta.write_bytes(b'{"voxel_size_um": "\xff"}')
    bad_utf8 = validate_volume("mv07", img, lbl, meta)
    assert _check(bad_utf8, "json_readable")["observed"] == (
        "not UTF-8 (invalid start byte at byte 19)"
    )


def test_readable_json_passes_json_readable_with_its_size(tmp_path):
    img, lbl, meta = _pair(tmp_path)
    report = validate_volume("mv07", img, lbl, meta)
    check = _check(report, "json_readable")
    assert check["passed"] is True
    assert check["observed"] == f"{meta.stat().st_size} bytes of JSON"


def test_text_file_named_nii_gz_says_not_gzip_not_nifti(tmp_path):
    img, lbl, meta = _pair(tmp_path)
    img.write_bytes(b"x" * 250)  # what the issue saw: "file holds 250 header bytes"
    report = validate_volume("mv07", img, lbl, meta)
    assert report["failed_checks"] == ["opens"]
    assert _message(report) == (
        "mv07: validate: opens: cannot open not gzip / not NIfTI: the 250-byte file starts "
        "b'xxxxxxxxxxxxxxxx', not with the gzip magic 1f 8b — expected a readable NIfTI-1 "
        f".nii/.nii.gz file: a gzip-compressed NIfTI-1 file (.nii.gz) ({img})"
    )
    img.write_bytes(b"<html>" + b"x" * 5000)  # long enough for a header: same wording
    assert _check(validate_volume("mv07", img, lbl, meta), "opens", "image")["observed"].startswith(
        "not gzip / not NIfTI: the 5006-byte file starts b'<html>"
    )


def test_short_files_say_not_nifti_with_their_size(tmp_path):
    img, lbl, meta = _pair(tmp_path)
    short_gz = tmp_path / "short.nii.gz"
    short_gz.write_bytes(gzip.compress(b"y" * 250, mtime=0))
    short_nii = tmp_path / "short.nii"
    short_nii.write_bytes(b"y" * 100)
    observed = [
        _check(validate_volume("mv07", path, lbl, meta), "opens", "image")["observed"]
        for path in (short_gz, short_nii)
    ]
    assert observed == [
        "not NIfTI: the decompressed file holds only 250 bytes, less than a header",
        "not NIfTI: the file holds only 100 bytes, less than a header",
    ]


def test_same_affine_difference_is_given_with_its_unit(tmp_path):
    CORPUS["affine_mismatch"][0](tmp_path)
    report = validate_volume(
        "mv07", tmp_path / "mv07.nii.gz", tmp_path / "mv07_y.nii.gz", tmp_path / "mv07.json"
    )
    assert report["failed_checks"] == ["same_affine"]
    check = _check(report, "same_affine")
    assert check["observed"] == "0.5 um (largest element difference)"
    assert check["expected"] == (
        "physical affines equal within 0.0001 x the smallest voxel size (9.94e-05 um)"
    )
    assert "image/mask affines differ by 0.5 um (largest element difference) — expected" in (
        _message(report)
    )


# --- every tolerance at its boundary: just inside passes, just outside fails ------------------


def _shifted(ratio):
    return [v * ratio for v in SPACING]


@pytest.mark.parametrize(
    ("ratio", "passes"),
    [(1.0199, True), (0.9801, True), (1.0201, False), (0.9799, False)],
)
def test_json_spacing_tolerance_boundary(tmp_path, ratio, passes):
    """Default json_spacing_tolerance 0.02 (relative): 1.99 % passes, 2.01 % fails."""
    img, lbl, meta = _pair(tmp_path, json_doc={"voxel_size_um": _shifted(ratio)})
    report = validate_volume("mv07", img, lbl, meta)
    assert _check(report, "json_spacing_agrees")["passed"] is passes
    assert report["valid"] is passes


def _offset_label(tmp_path, offset_um):
    """A pair whose mask's affine is translated by ``offset_um`` along x."""
    img, lbl, meta = _pair(tmp_path)
    affine = np.diag([*SPACING, 1.0])
    affine[0, 3] = offset_um
    _write(lbl, _good_arrays()[1], kind="label", affine=affine)
    return img, lbl, meta


@pytest.mark.parametrize(("factor", "passes"), [(0.99, True), (1.01, False)])
def test_affine_tolerance_boundary_for_same_affine(tmp_path, factor, passes):
    """Default affine_tolerance 1e-4 x the smallest voxel (0.994 um): 9.94e-05 um allowed."""
    report = validate_volume("mv07", *_offset_label(tmp_path, factor * 1e-4 * 0.994))
    assert _check(report, "same_affine")["passed"] is passes
    assert report["failed_checks"] == ([] if passes else ["same_affine"])


@pytest.mark.parametrize(("relative", "passes"), [(0.9e-4, True), (1.1e-4, False)])
def test_affine_tolerance_boundary_for_spacing_consistent(tmp_path, relative, passes):
    """pixdim vs the affine's column norms, relative, to the same affine_tolerance 1e-4."""
    img, lbl, meta = _pair(tmp_path)
    pixdim = [1, SPACING[0] * (1 + relative), *SPACING[1:], 0, 0, 0, 0]
    _patch_header(img, pixdim=pixdim)
    report = validate_volume("mv07", img, lbl, meta)
    check = _check(report, "spacing_consistent", "image")
    assert check["passed"] is passes
    assert report["failed_checks"] == ([] if passes else ["spacing_consistent"])


FG_SHAPE = (20, 10, 10)  # 2000 voxels: 2 = 0.001 and 1000 = 0.5 exactly


def _label_with(count):
    label = np.zeros(FG_SHAPE, np.uint8)
    label.reshape(-1)[:count] = 1
    return label


@pytest.mark.parametrize(("count", "passes"), [(2, True), (1, False), (1000, True), (1001, False)])
def test_foreground_fraction_bounds_are_inclusive_at_the_defaults(tmp_path, count, passes):
    """Microscopy default [0.001, 0.5]: 2/2000 and 1000/2000 pass, 1/2000 and 1001/2000 fail."""
    image = _good_arrays(FG_SHAPE)[0]
    img, lbl, meta = _pair(tmp_path, image=image, label=_label_with(count))
    report = validate_volume("mv07", img, lbl, meta)
    assert report["foreground_fraction"] == count / 2000
    assert _check(report, "foreground_fraction")["passed"] is passes
    assert report["valid"] is passes


@pytest.mark.parametrize(
    ("modality", "units", "axis", "passes"),
    [
        ("microscopy", 0, 0.05, True),
        ("microscopy", 0, 0.0499, False),
        ("microscopy", 0, 20.0, True),
        ("microscopy", 0, 20.01, False),
        ("mri", 2, 0.1, True),
        ("mri", 2, 0.0999, False),
        ("mri", 2, 10.0, True),
        ("mri", 2, 10.01, False),
    ],
)
def test_spacing_bounds_per_modality_at_their_boundaries(tmp_path, modality, units, axis, passes):
    """microscopy 0.05..20 um, mri 0.1..10 mm (inclusive), on one axis."""
    spacing = (axis, 1.0, 1.0)
    img, lbl, meta = _pair(tmp_path, spacing=spacing, units=units, json_doc={})
    report = validate_volume("mv07", img, lbl, meta, {"modality": modality})
    assert _check(report, "spacing_bounds")["passed"] is passes
    assert report["failed_checks"] == ([] if passes else ["spacing_bounds"])


@pytest.mark.parametrize(
    ("shape", "passes"),
    [((4, 4, 4), True), ((3, 4, 4), False), ((4096, 4, 4), True), ((4097, 4, 4), False)],
)
def test_shape_bounds_per_axis_at_their_boundaries(tmp_path, shape, passes):
    """Microscopy 4..4096 voxels per axis (inclusive)."""
    image = np.full(shape, 100, np.uint16)
    label = np.zeros(shape, np.uint8)
    label[:, :2, :] = 1  # a foreground share inside 0.001..0.5
    img, lbl, meta = _pair(tmp_path, image=image, label=label, json_doc={})
    report = validate_volume("mv07", img, lbl, meta)
    assert _check(report, "shape_bounds")["passed"] is passes
    assert ("shape_bounds" in report["failed_checks"]) is not passes


@pytest.mark.parametrize(("slack", "passes"), [(0, True), (-1, False)])
def test_max_voxels_is_inclusive(tmp_path, slack, passes):
    img, lbl, meta = _pair(tmp_path)
    report = validate_volume("mv07", img, lbl, meta, {"max_voxels": int(np.prod(SHAPE)) + slack})
    assert _check(report, "shape_bounds")["passed"] is passes


@pytest.mark.parametrize(("extra", "passes"), [(0, True), (1, False)])
def test_max_json_bytes_is_inclusive(tmp_path, extra, passes):
    img, lbl, meta = _pair(tmp_path)
    cap = meta.stat().st_size
    meta.write_bytes(meta.read_bytes() + b" " * extra)  # trailing space: still valid JSON
    report = validate_volume("mv07", img, lbl, meta, {"max_json_bytes": cap})
    assert _check(report, "json_readable")["passed"] is passes


@pytest.mark.parametrize(
    ("modality", "image_dtype", "label_dtype", "passes"),
    [
        ("microscopy", np.uint16, np.uint8, True),
        ("microscopy", np.int16, np.uint8, False),
        ("microscopy", np.uint8, np.uint8, False),
        ("microscopy", np.float32, np.uint8, False),
        ("microscopy", np.uint16, np.uint16, False),
        ("microscopy", np.uint16, np.int8, False),
        ("mri", np.int16, np.uint8, True),
        ("mri", np.float32, np.uint8, True),
        ("mri", np.int32, np.uint8, False),
    ],
)
def test_dtypes_allowed_per_modality(tmp_path, modality, image_dtype, label_dtype, passes):
    image, label = _good_arrays()
    spacing = (1.0, 1.0, 1.2) if modality == "mri" else SPACING
    img, lbl, meta = _pair(
        tmp_path,
        image=image.astype(image_dtype),
        label=label.astype(label_dtype),
        spacing=spacing,
        units=2 if modality == "mri" else 0,
        json_doc={},
    )
    report = validate_volume("mv07", img, lbl, meta, {"modality": modality})
    dtype_checks = {"image_dtype", "label_dtype"} & set(report["failed_checks"])
    assert (not dtype_checks) is passes, report["failed_checks"]
    assert report["valid"] is passes


@pytest.mark.parametrize(("values", "passes"), [((0, 1), True), ((0, 1, 2), False)])
def test_label_values_must_be_a_subset_of_0_and_1(tmp_path, values, passes):
    label = _good_arrays()[1]
    label[0, 0, 0] = values[-1] if values[-1] == 2 else label[0, 0, 0]
    img, lbl, meta = _pair(tmp_path, label=label)
    report = validate_volume("mv07", img, lbl, meta)
    assert report["label_values"] == list(values)
    assert _check(report, "label_values")["passed"] is passes


@pytest.mark.parametrize(("margin", "passes"), [(0, True), (1, False)])
def test_deflate_ratio_guard_boundary(tmp_path, margin, passes):
    """A .nii.gz header may claim at most file_bytes x 1032 + 64 KiB of data (deflate's
    limit); a claim one row past that is refused before anything is read."""
    MAX_DEFLATE_RATIO = 1032  # noqa: N806 (pinned here: a changed module constant must fail)

    img, lbl, meta = _pair(tmp_path)
    raw = bytearray(gzip.decompress(img.read_bytes()))
    # Stored (level 0) deflate: the file's size does not depend on the header's bytes.
    size = len(gzip.compress(bytes(raw), compresslevel=0, mtime=0))
    limit = size * MAX_DEFLATE_RATIO + (1 << 16)
    x = (limit - 352) // (2 * 64) + margin  # uint16: need = 352 + 2 * 64 * x
    header = nib.Nifti1Header(bytes(raw[:348]), check=False)
    header["dim"] = [3, x, 64, 1, 1, 1, 1, 1]
    raw[:348] = header.binaryblock
    img.write_bytes(gzip.compress(bytes(raw), compresslevel=0, mtime=0))
    assert img.stat().st_size == size
    assert (352 + 2 * 64 * x <= limit) is passes
    report = validate_volume("mv07", img, lbl, meta)
    opens = _check(report, "opens", "image")
    # Inside: the header is accepted (the data is never loaded: the shape is out of bounds).
    assert opens["passed"] is passes
    assert ("can hold at most" in str(opens["observed"])) is not passes, opens["observed"]
