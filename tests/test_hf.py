"""Hugging Face export: what `snakemake hf` writes loads offline with `datasets` as paired
nibabel images, one split per fold of the authors' split, drift rows with the manifest's
kind, level and severity; the card carries licence, task, configs and attribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from conftest import require
from workflow_utils import make_workdir, pinned_git_commit, run_snakemake

from minivess_bundle.consumers import hf
from minivess_bundle.core.errors import ConsumerError
from minivess_bundle.core.splits import folds

pytestmark = pytest.mark.workflow

#: One volume in each of the authors' folds (mv02, mv05: fold 0; mv01: 1; mv04: 2); mv05
#: is the drift volume (`volumes: auto` picks it).
VOLUMES = ["mv01", "mv02", "mv04", "mv05"]
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": VOLUMES,
    "drift": {"levels": [1, 3], "types": ["intensity", "annotation"]},
}
EXPORT = "results/hf/minivess-0.1.0"
BAG = "results/bundle/minivess-0.1.0"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("hf"), **TINY)
    with pinned_git_commit():
        run_snakemake(workdir, "--cores", "2", "hf")
    return workdir


def load_offline(folder: Path, tmp: Path) -> dict:
    """`datasets.load_dataset(folder[, "drift"])` with the network off, in a fresh
    interpreter (the offline switches are read at import): per config and split, the
    row count and each row with the decoded images as (type, array sha, shape)."""
    require("datasets", "pip install -e '.[hf]'")
    script = """
import hashlib, json, sys
import numpy as np
from datasets import load_dataset
out = {}
for config in ("clean", "drift"):
    ds = load_dataset(sys.argv[1], config)
    for split, rows in ds.items():
        listed = []
        for row in rows:
            item = {k: v for k, v in row.items() if k not in ("image", "label")}
            for key in ("image", "label"):
                img = row[key]
                arr = np.asarray(img.dataobj)
                item[key] = [type(img).__mro__[1].__module__ + "." + type(img).__mro__[1].__name__,
                             hashlib.sha256(arr.tobytes()).hexdigest(), list(arr.shape),
                             str(arr.dtype)]
            listed.append(item)
        out[f"{config}/{split}"] = listed
print(json.dumps(out))
"""
    env = dict(
        os.environ,
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp / "hf-home"),
        HF_DATASETS_CACHE=str(tmp / "hf-cache"),
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    return json.loads(ran.stdout.strip().splitlines()[-1])


def array_sha(path: Path) -> tuple[str, list[int], str]:
    import hashlib

    arr = np.asarray(nib.load(path).dataobj)
    return hashlib.sha256(arr.tobytes()).hexdigest(), list(arr.shape), str(arr.dtype)


def test_load_dataset_offline_gives_paired_nibabel_images_per_authors_fold(built, tmp_path):
    loaded = load_offline(built / EXPORT, tmp_path)
    data = built / BAG / "data"
    expected = {f"clean/fold_{k}": fold["val"] for k, fold in enumerate(folds(VOLUMES))}
    assert {k: sorted(r["volume"] for r in v) for k, v in loaded.items() if "clean" in k} == (
        expected
    )
    assert [len(loaded[f"clean/fold_{k}"]) for k in range(3)] == [2, 1, 1]
    description = json.loads((data / "dataset.json").read_text())
    spacing = {v["id"]: v["spacing_um"] for v in description["volumes"]}
    for k in range(3):
        for row in loaded[f"clean/fold_{k}"]:
            vol = row["volume"]
            assert row["fold"] == k and row["spacing_um"] == spacing[vol] == [1.0, 1.0, 1.0]
            assert row["synthetic"] is True and row["section"] == "processed"
            for key, folder in (("image", "imagesTr"), ("label", "labelsTr")):
                kind, sha, shape, dtype = row[key]
                assert kind == "nibabel.nifti1.Nifti1Image"
                assert [sha, shape, dtype] == list(
                    array_sha(data / "processed" / folder / f"{vol}.nii.gz")
                )
            assert row["image"][3] == "uint16" and row["label"][3] == "uint8"


def test_drift_config_rows_carry_the_manifests_kind_level_and_severity(built, tmp_path):
    loaded = load_offline(built / EXPORT, tmp_path)
    data = built / BAG / "data"
    manifest = json.loads((data / "drift_manifest.json").read_text())
    variants = {v["variant_id"]: v for v in manifest["variants"]}
    rows = loaded["drift/test"]
    assert len(rows) == len(variants) == 4  # 2 kinds x 2 levels x mv05
    for row in rows:
        variant = variants[row["variant_id"]]
        assert (row["kind"], row["level"], row["severity"]) == (
            variant["drift_type"],
            variant["level"],
            variant["severity"],
        )
        assert row["volume"] == "mv05" and row["fold"] == 0
        assert row["label_modified"] == (row["kind"] == "annotation")
        for key in ("image", "label"):
            drifted = data / "drift" / variant["files"][key]["drifted"]["path"]
            assert list(row[key][1:]) == list(array_sha(drifted))
    assert sorted({r["severity"] for r in rows}) == [0.2, 0.6]


def test_dataset_card_has_the_hub_metadata_and_attribution(built):
    card = (built / EXPORT / "README.md").read_text()
    _, head, body = card.split("---\n", 2)
    meta = yaml.safe_load(head)
    assert meta["license"] == "cc-by-nc-sa-4.0"
    assert meta["task_categories"] == ["image-segmentation"]
    assert {"microscopy", "two-photon", "synthetic"} <= set(meta["tags"])
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["clean"]["default"] is True
    assert [f["split"] for f in configs["clean"]["data_files"]] == ["fold_0", "fold_1", "fold_2"]
    assert configs["drift"]["data_files"] == [{"split": "test", "path": "drift/test/**"}]
    assert "SYNTHETIC DATA" in body
    assert "doi.org/10.1038/s41597-023-02048-8" in body and "Poon C., Teikari P." in body
    assert "| `clean` | `fold_0` | 2 |" in body and "| `drift` | `test` | 4 |" in body
    bag = built / BAG / "data"
    for name in ("LICENCE.txt", "drift_manifest.json"):
        assert (built / EXPORT / name).read_bytes() == (bag / name).read_bytes()


def test_export_is_deterministic_and_refuses_a_used_folder(built, tmp_path):
    again = tmp_path / "again"
    result = hf.export(built / BAG, again)
    assert result["splits"]["clean"] == {"fold_0": 2, "fold_1": 1, "fold_2": 1}
    first = built / EXPORT
    for path in sorted(first.rglob("*")):
        if path.is_file():
            assert (again / path.relative_to(first)).read_bytes() == path.read_bytes(), path
    hf.export(built / BAG, again)  # an earlier export is replaced whole
    assert sorted(p.name for p in again.iterdir()) == sorted(hf.TOP_LEVEL)
    assert not list(tmp_path.glob(".again*"))
    (again / "notes.txt").write_text("mine")
    with pytest.raises(ConsumerError, match=r"output folder holds \['notes.txt'\]"):
        hf.export(built / BAG, again)
    with pytest.raises(ConsumerError, match=r"not a bag \(no data/dataset.json\)"):
        hf.export(tmp_path, tmp_path / "x")


def test_a_fold_without_volumes_is_left_out_of_the_configs(built, tmp_path):
    bag = tmp_path / "bag"
    subprocess.run(["cp", "-a", str(built / BAG), str(bag)], check=True)
    description = json.loads((bag / "data" / "dataset.json").read_text())
    description["volumes"] = [v for v in description["volumes"] if v["id"] != "mv04"]
    (bag / "data" / "dataset.json").write_text(json.dumps(description))
    result = hf.export(bag, tmp_path / "out")
    assert result["splits"]["clean"] == {"fold_0": 2, "fold_1": 1, "fold_2": 0}
    card = (tmp_path / "out" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    clean = next(c for c in meta["configs"] if c["config_name"] == "clean")
    assert [f["split"] for f in clean["data_files"]] == ["fold_0", "fold_1"]
    assert "left out of `configs`): `clean/fold_2`" in card


def test_a_missing_file_is_named(built, tmp_path):
    bag = tmp_path / "bag"
    subprocess.run(["cp", "-a", str(built / BAG), str(bag)], check=True)
    (bag / "data" / "processed" / "labelsTr" / "mv04.nii.gz").unlink()
    with pytest.raises(ConsumerError, match=r"^mv04: consumer: hf export: .*labelsTr/mv04"):
        hf.export(bag, tmp_path / "out")


def test_the_export_job_never_imports_datasets(built, tmp_path):
    code = (
        "import sys; from minivess_bundle import cli; "
        f"rc = cli.main(['hf-export', {str(built / BAG)!r}, '--out', {str(tmp_path / 'o')!r}]); "
        "assert rc == 0; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('datasets', 'pyarrow', 'torch', 'monai', 'huggingface_hub')))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"
    assert "hf-export" in ran.stdout and "clean: fold_0 2, fold_1 1, fold_2 1" in ran.stdout
