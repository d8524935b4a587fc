"""nnU-Net v2 export: names, hardlinks, dataset.json, splits_final.json, the integrity
check's findings, and nnU-Net v2's own integrity check on an export the workflow makes.

The export tests need no torch or MONAI (nibabel reads the headers and labels).
``test_nnunet_v2_itself_*`` runs nnU-Net 2.8.1 (the ``nnunet`` extra): it skips where
nnunetv2 is missing and FAILS in CI (``CI=true``).
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

from minivess_bundle.consumers.nnunet import (
    NNUNET_SNIPPET,
    SPLITS_FILE,
    check_nnunet_dataset,
    export_nnunet,
)
from minivess_bundle.core.errors import ConsumerError
from minivess_bundle.core.nifti import make_image, minivess_header, read_nifti, write_nifti
from minivess_bundle.core.splits import AUTHORS_3FOLD_VAL, SOURCE, fold, folds

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
    assert sorted(p.name for p in exported.iterdir()) == [
        "dataset.json",
        "imagesTr",
        "labelsTr",
        SPLITS_FILE,
    ]
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
    lines = script.splitlines()
    first_nnunet = next(i for i, line in enumerate(lines) if line.startswith("nnUNetv2_"))
    runnable = "\n".join(lines[:first_nnunet])  # the export; nnU-Net's own steps run below
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["bash", "-euc", runnable], cwd=tmp_path, env=env, check=True)
    dataset = tmp_path / "nnUNet_raw" / "Dataset501_MiniVess"
    assert check_nnunet_dataset(dataset) == []
    assert "nnUNetv2_plan_and_preprocess -d 501 --verify_dataset_integrity" in script
    assert f'cp "$nnUNet_raw/Dataset501_MiniVess/{SPLITS_FILE}"' in script
    assert '"$nnUNet_preprocessed/Dataset501_MiniVess/"' in script
    assert json.loads((dataset / SPLITS_FILE).read_text())[0]["val"] == ["mv02"]
    assert shutil.which("bash")


def test_authors_split_holds_mv01_to_mv70_once_in_folds_of_24_23_23() -> None:
    validation = [v for ids in AUTHORS_3FOLD_VAL for v in ids]
    assert sorted(validation) == [f"mv{i:02d}" for i in range(1, 71)]
    assert [len(ids) for ids in AUTHORS_3FOLD_VAL] == [24, 23, 23]
    assert AUTHORS_3FOLD_VAL[0][:3] == ("mv02", "mv05", "mv11")
    assert AUTHORS_3FOLD_VAL[2][-1] == "mv68"
    assert "3fold_seed42.json" in SOURCE
    everything = folds(validation)
    for k, split in enumerate(everything):
        assert split["val"] == sorted(AUTHORS_3FOLD_VAL[k])
        assert len(split["train"]) == 70 - len(split["val"])
        assert set(split["train"]).isdisjoint(split["val"])


def test_split_leaves_out_absent_volumes_and_never_validates_unknown_ids() -> None:
    assert folds(["mv39", "mv02", "mv01", "mv99"]) == [
        {"train": ["mv01", "mv39", "mv99"], "val": ["mv02"]},
        {"train": ["mv02", "mv99"], "val": ["mv01", "mv39"]},
        {"train": ["mv01", "mv02", "mv39", "mv99"], "val": []},
    ]
    assert fold(["mv04", "mv05"], 2) == {"train": ["mv05"], "val": ["mv04"]}
    for bad in (-1, 3, True, "0"):
        with pytest.raises(ConsumerError, match="expected an integer 0..2"):
            fold(["mv01"], bad)


def test_export_writes_the_authors_folds_over_the_bundles_volumes(exported: Path) -> None:
    splits = json.loads((exported / SPLITS_FILE).read_text())
    assert splits == [
        {"train": ["mv01", "mv03"], "val": ["mv02"]},
        {"train": ["mv02"], "val": ["mv01", "mv03"]},
        {"train": ["mv01", "mv02", "mv03"], "val": []},
    ]
    assert (exported / SPLITS_FILE).read_bytes().endswith(b"]\n")


# ---------------------------------------------------------------- nnU-Net v2 itself


NNUNET_TINY = {
    "synthetic": {"size_xy": 24, "max_z": 10},
    "volumes": ["mv01", "mv02", "mv04", "mv39"],
    "drift": {"enabled": False},
    "bundle": {"raw": False},
}


@pytest.fixture(scope="module")
def workflow_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nnU-Net export the real workflow writes (its export_nnunet rule) for a tiny build."""
    from workflow_utils import make_workdir, run_snakemake

    from minivess_bundle.core import layout

    workdir = make_workdir(tmp_path_factory.mktemp("nnunet_build"), **NNUNET_TINY)
    target = f"{layout.NNUNET_ROOT}/Dataset501_MiniVess/dataset.json"
    run_snakemake(workdir, "--cores", "2", target)
    return workdir / layout.NNUNET_ROOT


def _need_nnunetv2() -> None:
    from validator_utils import need

    need("nnunetv2")


def test_nnunet_v2_itself_verifies_plans_and_reads_the_authors_folds(
    workflow_export: Path, tmp_path: Path
) -> None:
    _need_nnunetv2()
    dataset = workflow_export / "Dataset501_MiniVess"
    env = dict(
        os.environ,
        nnUNet_raw=str(workflow_export),
        nnUNet_preprocessed=str(tmp_path / "preprocessed"),
        nnUNet_results=str(tmp_path / "results"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    # nnU-Net's own integrity check, then planning and 3d_fullres preprocessing, as the
    # README runs them (one process each: 2 shared cores).
    verify = subprocess.run(
        ["nnUNetv2_plan_and_preprocess", "-d", "501", "--verify_dataset_integrity"]
        + ["-c", "3d_fullres", "-np", "1", "-npfp", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    # The build quarantines some tiny volumes (foreground fraction): they are in no file.
    report = json.loads((workflow_export.parent / "validation_report.json").read_text())
    valid, left_out = report["valid"], [q["volume"] for q in report["quarantined"]]
    assert len(valid) >= 2 and sorted(valid + left_out) == NNUNET_TINY["volumes"]
    preprocessed = tmp_path / "preprocessed" / "Dataset501_MiniVess"
    cases = sorted(
        p.name.split(".")[0] for p in (preprocessed / "nnUNetPlans_3d_fullres").glob("*.pkl")
    )
    assert cases == valid
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    assert plans["original_median_spacing_after_transp"] == pytest.approx([0.001] * 3)

    # The split as nnU-Net's trainer reads it, copied where the README says.
    shutil.copy(dataset / SPLITS_FILE, preprocessed / SPLITS_FILE)
    code = (
        "import json, torch\n"
        "from nnunetv2.run.run_training import get_trainer_from_args\n"
        "out = []\n"
        "for k in range(3):\n"
        "    t = get_trainer_from_args('501', '3d_fullres', k, device=torch.device('cpu'))\n"
        "    tr, val = t.do_split()\n"
        "    out.append({'train': sorted(tr), 'val': sorted(val)})\n"
        "print(json.dumps(out))\n"
    )
    read = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    read_by_nnunet = json.loads(read.stdout.strip().splitlines()[-1])
    assert read_by_nnunet == folds(valid)
    for k, split in enumerate(read_by_nnunet):
        assert split["val"] == [v for v in valid if v in AUTHORS_3FOLD_VAL[k]]
        assert not set(left_out) & set(split["train"] + split["val"])


def test_nnunet_v2_itself_rejects_a_broken_export(workflow_export: Path, tmp_path: Path) -> None:
    """The same check fails on a label value nnU-Net does not declare (it can fail)."""
    _need_nnunetv2()
    broken = tmp_path / "raw" / "Dataset501_MiniVess"
    shutil.copytree(workflow_export / "Dataset501_MiniVess", broken)
    label = sorted((broken / "labelsTr").iterdir())[-1]
    data = np.asarray(read_nifti(label).dataobj).copy()
    data[0, 0, 0] = 2
    rewrite(label, data)
    env = dict(
        os.environ,
        nnUNet_raw=str(tmp_path / "raw"),
        nnUNet_preprocessed=str(tmp_path / "preprocessed"),
        nnUNet_results=str(tmp_path / "results"),
    )
    code = (
        "import sys\n"
        "from nnunetv2.experiment_planning.verify_dataset_integrity import "
        "verify_dataset_integrity\n"
        "verify_dataset_integrity(sys.argv[1], num_processes=1)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(broken)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"Unexpected labels found in file {label}" in result.stdout
