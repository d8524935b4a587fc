"""OME-Zarr 0.5 export: pyramid factors, and the folders a tiny workflow run writes,
validated with ome-zarr-models and compared with the processed NIfTI files.

ome-zarr (the writer) and ome-zarr-models (the validator) come with the ``test`` extra:
these tests skip where either is missing and FAIL in CI (``CI=true``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tree_digest
from validator_utils import need

from minivess_bundle.consumers.omezarr import (
    LABEL_NAME,
    MAX_LEVELS,
    MIN_XY,
    MIN_Z,
    VESSEL_RGBA,
    pyramid_factors,
    write_omezarr,
)
from minivess_bundle.core import layout
from minivess_bundle.core.errors import ConsumerError
from minivess_bundle.core.nifti import make_image, minivess_header, read_nifti, write_nifti

TINY = {
    # the native grid keeps every field 64 px wide, so each volume gets a pyramid level
    # (on the 1 um grid the realistic 0.31-1.23 um pixels shrink some fields below 32 px)
    "synthetic": {"size_xy": 64, "max_z": 40},
    "resample": {"target_spacing_um": "native"},
    "volumes": ["mv01", "mv02", "mv39"],
    "drift": {"enabled": False},
    "bundle": {"raw": False},
    "ome_zarr": {"enabled": True},
}


def test_pyramid_halves_xy_down_to_min_xy_and_z_down_to_min_z() -> None:
    assert pyramid_factors((92, 636, 636)) == [
        {"z": 2, "y": 2, "x": 2},
        {"z": 4, "y": 4, "x": 4},
        {"z": 4, "y": 8, "x": 8},
        {"z": 4, "y": 16, "x": 16},
    ]
    assert len(pyramid_factors((500, 4000, 4000))) == MAX_LEVELS
    # boundaries: a level is made when it keeps MIN_XY pixels, z halves when it keeps MIN_Z
    assert pyramid_factors((8, 2 * MIN_XY, 10)) == [{"z": 1, "y": 2, "x": 2}]
    assert pyramid_factors((8, 2 * MIN_XY - 1, 10)) == []
    assert pyramid_factors((2 * MIN_Z, 4 * MIN_XY, 4 * MIN_XY))[0]["z"] == 2
    assert pyramid_factors((2 * MIN_Z - 1, 4 * MIN_XY, 4 * MIN_XY))[0]["z"] == 1


@pytest.fixture(scope="module")
def omezarr_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny build with ome_zarr.enabled: `all` writes an .ome.zarr per valid volume."""
    need("ome_zarr")
    from workflow_utils import make_workdir, run_snakemake

    workdir = make_workdir(tmp_path_factory.mktemp("omezarr"), **TINY)
    run_snakemake(workdir, "--cores", "2", "all")
    return workdir


def _valid(workdir: Path) -> list[str]:
    report = json.loads((workdir / layout.VALIDATION_REPORT).read_text())
    assert report["valid"], report
    return report["valid"]


def test_workflow_omezarr_validates_and_holds_the_processed_voxels(omezarr_run: Path) -> None:
    need("ome_zarr_models")
    import zarr
    from ome_zarr_models import open_ome_zarr
    from ome_zarr_models.v05 import Image, ImageLabel

    valid = _valid(omezarr_run)
    pyramids: list[int] = []
    written = sorted(p.name for p in (omezarr_run / layout.OMEZARR_ROOT).glob("*.ome.zarr"))
    assert written == [f"{v}.ome.zarr" for v in valid]
    for vol in valid:
        folder = omezarr_run / layout.fill(layout.OMEZARR, vol=vol)
        group = zarr.open_group(str(folder), mode="r")
        model = open_ome_zarr(group)
        assert isinstance(model, Image) and model.ome_zarr_version == "0.5"
        labels = model.labels
        assert labels is not None and labels.ome_attributes.labels == [LABEL_NAME]
        label_model = open_ome_zarr(group[f"labels/{LABEL_NAME}"])
        assert isinstance(label_model, ImageLabel)
        colors = label_model.ome_attributes.image_label.colors
        assert [(c.label_value, list(c.rgba)) for c in colors] == [(1, VESSEL_RGBA)]

        processed = layout.processed(vol)
        image = read_nifti(omezarr_run / processed["image"])
        mask = np.asarray(read_nifti(omezarr_run / processed["label"]).dataobj)
        pixels = np.asarray(image.dataobj)
        np.testing.assert_array_equal(group["s0"][:], pixels.transpose(2, 1, 0))
        np.testing.assert_array_equal(group[f"labels/{LABEL_NAME}/s0"][:], mask.transpose(2, 1, 0))

        multiscale = model.ome_attributes.multiscales[0]
        assert multiscale.name == vol
        assert [a.name for a in multiscale.axes] == ["z", "y", "x"]
        assert {a.unit for a in multiscale.axes} == {"micrometer"}
        record = json.loads((omezarr_run / layout.fill(layout.OMEZARR_RECORD, vol=vol)).read_text())
        levels = record["levels"]
        assert levels[1:] == pyramid_factors(pixels.shape[::-1])
        pyramids.append(len(levels))
        spacing_um = [round(float(z) * 1000, 6) for z in image.header.get_zooms()[:3]][::-1]
        assert record["spacing_um_zyx"] == spacing_um  # the native grid, in µm
        for i, factors in enumerate(levels):
            # each level's scale is its true pixel size: full extent / level size
            scale = multiscale.datasets[i].coordinateTransformations[0].scale
            shape = group[f"s{i}"].shape
            full_shape = pixels.shape[::-1]
            for axis, size, full, pixel, um in zip(
                "zyx", shape, full_shape, scale, spacing_um, strict=True
            ):
                assert abs(size - full / factors[axis]) <= 1, (vol, i, axis)
                assert pixel == pytest.approx(um * full / size), (vol, i, axis)
            level_mask = group[f"labels/{LABEL_NAME}/s{i}"][:]
            assert level_mask.shape == shape and set(np.unique(level_mask)) <= {0, 1}
    assert max(pyramids) >= 2  # at least one volume has a pyramid


def test_workflow_omezarr_bytes_repeat_and_stay_out_of_the_bag(
    omezarr_run: Path, tmp_path: Path
) -> None:
    def levels(vol: str) -> int:
        record = omezarr_run / layout.fill(layout.OMEZARR_RECORD, vol=vol)
        return len(json.loads(record.read_text())["levels"])

    vol = max(_valid(omezarr_run), key=levels)
    assert levels(vol) >= 2
    processed = layout.processed(vol)
    again = tmp_path / f"{vol}.ome.zarr"
    write_omezarr(omezarr_run / processed["image"], omezarr_run / processed["label"], again, vol)
    original = omezarr_run / layout.fill(layout.OMEZARR, vol=vol)
    digest = tree_digest(original)
    # Snakemake marks a directory output with an empty .snakemake_timestamp; nothing else differs
    assert digest.pop(".snakemake_timestamp") == hashlib.sha256(b"").hexdigest()
    assert len(digest) >= 10 and digest == tree_digest(again)
    assert not list(original.parent.glob(".*tmp-*"))
    bag = omezarr_run / "results" / "bundle" / "minivess-0.1.0"
    assert (bag / "manifest-sha256.txt").is_file()
    assert "zarr" not in (bag / "manifest-sha256.txt").read_text()


def test_omezarr_is_off_by_default_and_jobs_appear_when_switched_on(omezarr_run: Path) -> None:
    import yaml
    from conftest import REPO
    from workflow_utils import run_snakemake

    assert yaml.safe_load((REPO / "config" / "config.yaml").read_text())["ome_zarr"] == {
        "enabled": False
    }
    dry = ("-n", "--forcerun", "omezarr", "all")
    off = run_snakemake(omezarr_run, *dry, "--config", "ome_zarr={enabled: false}")
    on = run_snakemake(omezarr_run, *dry)
    assert "rule omezarr" not in off.stdout + off.stderr
    assert (on.stdout + on.stderr).count("rule omezarr:") == len(_valid(omezarr_run))


def _pair(tmp_path: Path, mask_value: int = 1, label_spacing=(0.001, 0.001, 0.001)):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, (40, 36, 20), dtype=np.uint16)
    mask = (image > 3000).astype(np.uint8) * mask_value
    header = minivess_header("image")
    header.set_xyzt_units("mm")
    write_nifti(tmp_path / "image.nii.gz", make_image(image, (0.001, 0.001, 0.001), header))
    label_header = minivess_header("label")
    label_header.set_xyzt_units("mm")
    write_nifti(tmp_path / "label.nii.gz", make_image(mask, label_spacing, label_header))
    return tmp_path / "image.nii.gz", tmp_path / "label.nii.gz"


@pytest.mark.parametrize(
    ("mask_value", "label_spacing", "message"),
    [
        (2, (0.001, 0.001, 0.001), r"mv07: consumer: ome-zarr: mask values \[0, 2\]"),
        (1, (0.002, 0.001, 0.001), "mv07: consumer: ome-zarr: mask spacing differs"),
    ],
)
def test_bad_pair_is_one_line_naming_volume_check_and_file_and_writes_nothing(
    tmp_path: Path, mask_value: int, label_spacing, message: str
) -> None:
    need("ome_zarr")
    image, label = _pair(tmp_path, mask_value, label_spacing)
    out = tmp_path / "out" / "mv07.ome.zarr"
    out.parent.mkdir()
    with pytest.raises(ConsumerError, match=message) as caught:
        write_omezarr(image, label, out, "mv07")
    assert "\n" not in str(caught.value) and str(label) in str(caught.value)
    assert list(out.parent.iterdir()) == []


def test_cli_writes_the_folder_and_its_record(tmp_path: Path) -> None:
    need("ome_zarr")
    image, label = _pair(tmp_path)
    out, record = tmp_path / "mv07.ome.zarr", tmp_path / "mv07.json"
    subprocess.run(
        [sys.executable, "-m", "minivess_bundle.cli", "omezarr", "mv07", "--image", str(image)]
        + ["--label", str(label), "--out", str(out), "--record", str(record)],
        check=True,
    )
    written = json.loads(record.read_text())
    assert written["shape_zyx"] == [20, 36, 40] and written["spacing_um_zyx"] == [1.0, 1.0, 1.0]
    assert written["levels"] == [{"z": 1, "y": 1, "x": 1}]  # 40 // 2 < MIN_XY: no pyramid
    assert (out / "zarr.json").is_file() and (out / "labels" / LABEL_NAME / "zarr.json").is_file()
