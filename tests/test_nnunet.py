"""nnU-Net v2 export: names, hardlinks, dataset.json, and the integrity check's findings.

No torch or MONAI needed (the export reads NIfTI headers and labels with nibabel), so
these tests run without the ``train`` extra. nnU-Net itself is not installed: the
check implements its documented rules (see :mod:`minivess_bundle.nnunet`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from consumer_utils import make_bundle, write_synthetic_layout

from minivess_bundle.errors import ConsumerError
from minivess_bundle.nifti import make_image, minivess_header, read_nifti, write_nifti
from minivess_bundle.nnunet import NNUNET_SNIPPET, check_nnunet_dataset, export_nnunet

VOLUMES = ["mv01", "mv02", "mv03"]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle", VOLUMES)


@pytest.fixture
def exported(bundle: Path, tmp_path: Path) -> Path:
    return export_nnunet(bundle, tmp_path / "nnUNet_raw", dataset_id=501)


def rewrite(path: Path, array=None, spacing=None) -> None:
    """Replace ``path`` with a new file (new inode: the bundle's hardlinked bytes stay intact)."""
    image = read_nifti(path)
    data = np.asarray(image.dataobj) if array is None else array
    zooms = image.header.get_zooms()[:3] if spacing is None else spacing
    header = minivess_header("label")
    header["xyzt_units"] = int(image.header["xyzt_units"])
    path.unlink()
    write_nifti(path, make_image(data, zooms, header))


def test_export_names_hardlinks_and_dataset_json(bundle: Path, exported: Path) -> None:
    assert exported.name == "Dataset501_MiniVess"
    assert sorted(p.name for p in exported.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]
    images = sorted(p.name for p in (exported / "imagesTr").iterdir())
    labels = sorted(p.name for p in (exported / "labelsTr").iterdir())
    assert images == [f"{v}_0000.nii.gz" for v in VOLUMES]
    assert labels == [f"{v}.nii.gz" for v in VOLUMES]
    processed = bundle / "data" / "processed"
    for v in VOLUMES:
        for src, dest in (
            (processed / "imagesTr" / f"{v}.nii.gz", exported / "imagesTr" / f"{v}_0000.nii.gz"),
            (processed / "labelsTr" / f"{v}.nii.gz", exported / "labelsTr" / f"{v}.nii.gz"),
        ):
            assert os.stat(src).st_ino == os.stat(dest).st_ino
    description = json.loads((exported / "dataset.json").read_text())
    assert description["channel_names"] == {"0": "two-photon"}
    assert description["labels"] == {"background": 0, "vessel": 1}
    assert description["numTraining"] == 3
    assert description["file_ending"] == ".nii.gz"
    assert description["name"] == "MiniVess" and description["licence"] == "CC BY-NC-SA 4.0"
    assert "training" not in description and "dataset" not in description
    assert str(bundle) not in (exported / "dataset.json").read_text()
    assert check_nnunet_dataset(exported) == []


def test_export_from_a_plain_layout_and_replacing_an_old_export(tmp_path: Path) -> None:
    layout = write_synthetic_layout(tmp_path / "renamed", ["mv01", "mv02"])
    out = export_nnunet(layout, tmp_path / "raw", dataset_id=7, name="MiniVessRaw")
    assert out.name == "Dataset007_MiniVessRaw"
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    (layout / "imagesTr" / "mv02.nii.gz").unlink()
    (layout / "labelsTr" / "mv02.nii.gz").unlink()
    again = export_nnunet(layout, tmp_path / "raw", dataset_id=7, name="MiniVessRaw")
    assert sorted(p.name for p in (again / "labelsTr").iterdir()) == ["mv01.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset007_MiniVessRaw"]


@pytest.mark.parametrize(
    ("dataset_id", "name", "message"),
    [(0, "MiniVess", "dataset id 0"), (1000, "MiniVess", "1..999"), (5, "Mini Vess", "name")],
)
def test_export_refuses_bad_ids_and_names(
    bundle: Path, tmp_path: Path, dataset_id: int, name: str, message: str
) -> None:
    with pytest.raises(ConsumerError, match=message):
        export_nnunet(bundle, tmp_path / "raw", dataset_id=dataset_id, name=name)


def test_export_refuses_a_bundle_that_fails_the_check_and_leaves_nothing(
    bundle: Path, tmp_path: Path
) -> None:
    label = bundle / "data" / "processed" / "labelsTr" / "mv02.nii.gz"
    data = np.asarray(read_nifti(label).dataobj).copy()
    data[0, 0, 0] = 2
    rewrite(label, data)
    with pytest.raises(ConsumerError, match=r"label values \[0, 1, 2\] include \[2\]"):
        export_nnunet(bundle, tmp_path / "raw")
    assert list((tmp_path / "raw").iterdir()) == []


def _drop_channel_0000(folder: Path) -> str:
    os.replace(folder / "imagesTr" / "mv02_0000.nii.gz", folder / "imagesTr" / "mv02_0001.nii.gz")
    return "mv02: consumer: missing channel(s) _0000; undeclared channel(s) _0001"


def _remove_case_images(folder: Path) -> str:
    (folder / "imagesTr" / "mv02_0000.nii.gz").unlink()
    return "label without images mv02.nii.gz"


def _unsuffixed_image(folder: Path) -> str:
    os.replace(folder / "imagesTr" / "mv02_0000.nii.gz", folder / "imagesTr" / "mv02.nii.gz")
    return "extra file mv02.nii.gz in imagesTr/"


def _label_value_2(folder: Path) -> str:
    label = folder / "labelsTr" / "mv03.nii.gz"
    data = np.asarray(read_nifti(label).dataobj).copy()
    data[1, 1, 1] = 2
    rewrite(label, data)
    return "mv03: consumer: label values [0, 1, 2] include [2]"


def _num_training_wrong(folder: Path) -> str:
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    description["numTraining"] = 4
    path.write_text(json.dumps(description))
    return "numTraining is 4 but 3 cases were found"


def _missing_label(folder: Path) -> str:
    (folder / "labelsTr" / "mv01.nii.gz").unlink()
    return "mv01: consumer: case has no label"


def _label_spacing_differs(folder: Path) -> str:
    label = folder / "labelsTr" / "mv01.nii.gz"
    zooms = read_nifti(label).header.get_zooms()[:3]
    rewrite(label, spacing=(zooms[0] * 2, zooms[1], zooms[2]))
    return "mv01: consumer: spacing"


def _label_shape_differs(folder: Path) -> str:
    label = folder / "labelsTr" / "mv01.nii.gz"
    rewrite(label, np.asarray(read_nifti(label).dataobj)[:-1])
    return "differs from its label's"


def _extra_file(folder: Path) -> str:
    (folder / "labelsTr" / "notes.txt").write_text("x")
    return "extra file notes.txt in labelsTr/"


def _labels_not_consecutive(folder: Path) -> str:
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    description["labels"] = {"background": 0, "vessel": 2}
    path.write_text(json.dumps(description))
    return "label values [0, 2] — expected consecutive integers"


def _wrong_file_ending(folder: Path) -> str:
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    description["file_ending"] = ".nii"
    path.write_text(json.dumps(description))
    return "extra file mv01_0000.nii.gz in imagesTr/"


def _missing_key(folder: Path) -> str:
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    del description["channel_names"]
    path.write_text(json.dumps(description))
    return "dataset.json lacks channel_names"


@pytest.mark.parametrize(
    "breakage",
    [
        _drop_channel_0000,
        _remove_case_images,
        _unsuffixed_image,
        _label_value_2,
        _num_training_wrong,
        _missing_label,
        _label_spacing_differs,
        _label_shape_differs,
        _extra_file,
        _labels_not_consecutive,
        _wrong_file_ending,
        _missing_key,
    ],
)
def test_check_reports_each_broken_case(bundle: Path, exported: Path, breakage) -> None:
    before = {p: os.stat(p).st_ino for p in (bundle / "data").rglob("*.nii.gz")}
    expected = breakage(exported)
    problems = check_nnunet_dataset(exported)
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p for p in problems)
    assert {p: os.stat(p).st_ino for p in (bundle / "data").rglob("*.nii.gz")} == before


def test_numtraining_and_orphan_label_both_reported_when_a_case_loses_its_image(
    exported: Path,
) -> None:
    _remove_case_images(exported)
    problems = check_nnunet_dataset(exported)
    assert any("numTraining is 3 but 2 cases were found" in p for p in problems)
    assert any("mv02: consumer: label without images" in p for p in problems)


def test_bundle_data_folder_is_a_valid_nnunet_dataset_through_its_file_map(bundle: Path) -> None:
    data = bundle / "data"
    assert check_nnunet_dataset(data) == []
    (data / "processed" / "labelsTr" / "mv03.nii.gz").unlink()
    assert any("mv03: consumer: listed file is missing" in p for p in check_nnunet_dataset(data))


def test_nnunet_snippet_exports_a_dataset_that_passes_the_check(
    bundle: Path, tmp_path: Path
) -> None:
    script = NNUNET_SNIPPET.format(bundle=bundle)
    runnable = "\n".join(
        line for line in script.splitlines() if not line.startswith("nnUNetv2_")
    )  # nnU-Net itself is not installed here
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["bash", "-euc", runnable], cwd=tmp_path, env=env, check=True)
    dataset = tmp_path / "nnUNet_raw" / "Dataset501_MiniVess"
    assert check_nnunet_dataset(dataset) == []
    assert "nnUNetv2_plan_and_preprocess -d 501 --verify_dataset_integrity" in script
    assert shutil.which("bash")
