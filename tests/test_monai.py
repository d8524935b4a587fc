"""MONAI consumer: datalists, transforms, loaders, one training step and the training smoke."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

torch = require("torch", hint="the train extra")
monai = require("monai", hint="the train extra")

import numpy as np  # noqa: E402
from consumer_utils import make_bundle, write_blob_layout, write_synthetic_layout  # noqa: E402

from minivess_bundle.consumers import train_smoke as smoke  # noqa: E402
from minivess_bundle.consumers.monai import (  # noqa: E402
    MONAI_SNIPPET,
    datalist,
    entry_id,
    make_loaders,
    split_ids,
    target_pixdim,
    val_transforms,
    write_datalist,
)
from minivess_bundle.core.errors import ConsumerError, LoaderError  # noqa: E402

VOLUMES = ["mv01", "mv02", "mv03", "mv04", "mv05"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle-shaped folder: five synthetic volumes, spacing stored in mm."""
    return make_bundle(tmp_path_factory.mktemp("bundle"), VOLUMES, size_xy=32, max_z=16)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An imagesTr/labelsTr layout of easy bright-blob cases."""
    return write_blob_layout(tmp_path_factory.mktemp("blobs"), ["mv01", "mv02", "mv03", "mv04"])


def test_importing_consumer_modules_does_not_import_torch_or_monai() -> None:
    code = (
        "import sys; import minivess_bundle.consumers.monai, "
        "minivess_bundle.consumers.train_smoke, "
        "minivess_bundle.consumers.nnunet; "
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_datalist_of_bundle_reads_dataset_json_with_absolute_paths(bundle: Path) -> None:
    files = datalist(bundle, val_fraction=0.2, seed=0)
    assert files["split"]["source"] == "dataset.json"
    entries = files["training"] + files["validation"]
    assert sorted(entry_id(e) for e in entries) == VOLUMES
    assert (files["numTraining"], files["numValidation"]) == (4, 1)
    for entry in entries:
        assert set(entry) == {"image", "label"}
        for path in entry.values():
            assert os.path.isabs(path) and Path(path).is_file()
            assert "/data/processed/" in path
    assert datalist(bundle / "data")["training"] == files["training"]
    assert datalist(bundle / "data" / "dataset.json")["training"] == files["training"]


def test_datalist_of_layout_matches_bundle_ids(tmp_path: Path) -> None:
    layout = write_synthetic_layout(tmp_path / "renamed", VOLUMES[:3])
    files = datalist(layout, val_fraction=0.34, seed=1)
    assert files["split"]["source"] == "layout"
    assert sorted(files["split"]["training_ids"] + files["split"]["validation_ids"]) == VOLUMES[:3]
    assert files["numValidation"] == 1


def test_split_is_deterministic_order_free_and_seeded() -> None:
    ids = [f"mv{i:02d}" for i in range(1, 71)]
    first = split_ids(ids, 0.2, seed=0)
    assert split_ids(list(reversed(ids)), 0.2, seed=0) == first
    assert len(first["validation"]) == 14 and len(first["training"]) == 56
    assert set(first["validation"]).isdisjoint(first["training"])
    assert split_ids(ids, 0.2, seed=1)["validation"] != first["validation"]
    assert split_ids(["mv01"], 0.2)["validation"] == []
    assert split_ids(["mv01", "mv02"], 0.01)["validation"] != []
    with pytest.raises(ConsumerError, match="validation fraction"):
        split_ids(ids, 1.0)


def test_datalist_folds_are_the_authors_and_the_nnunet_exports(
    bundle: Path, tmp_path: Path
) -> None:
    from minivess_bundle.consumers.nnunet import SPLITS_FILE, export_nnunet

    exported = export_nnunet(bundle, tmp_path / "raw")
    nnunet_folds = json.loads((exported / SPLITS_FILE).read_text())
    # VOLUMES mv01..mv05: fold 0 validates mv02 and mv05, fold 1 mv01 and mv03, fold 2 mv04
    expected_val = [["mv02", "mv05"], ["mv01", "mv03"], ["mv04"]]
    for k in range(3):
        files = datalist(bundle, fold=k)
        split = files["split"]
        assert split["validation_ids"] == expected_val[k] == nnunet_folds[k]["val"]
        assert split["training_ids"] == nnunet_folds[k]["train"]
        assert sorted(entry_id(e) for e in files["validation"]) == expected_val[k]
        assert files["numTraining"] + files["numValidation"] == len(VOLUMES)
        assert split["method"] == f"authors' 3-fold split, fold {k}" and split["fold"] == k
        assert "3fold_seed42.json" in split["from"] and "seed" not in split
    with pytest.raises(ConsumerError, match="fold 3"):
        datalist(bundle, fold=3)


def test_datalist_orphan_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    layout = write_synthetic_layout(tmp_path / "renamed", ["mv01", "mv02"])
    (layout / "labelsTr" / "mv02.nii.gz").unlink()
    with pytest.raises(LoaderError, match=r"mv02\.nii\.gz has no label"):
        datalist(layout)


def test_datalist_missing_file_listed_in_dataset_json_is_an_error(tmp_path: Path) -> None:
    bag = make_bundle(tmp_path, ["mv01", "mv02"])
    (bag / "data" / "processed" / "labelsTr" / "mv02.nii.gz").unlink()
    with pytest.raises(ConsumerError, match=r"^mv02: consumer: dataset.json lists a label"):
        datalist(bag)


def test_written_datalist_loads_with_load_decathlon_datalist(bundle: Path, tmp_path: Path) -> None:
    from monai.data import load_decathlon_datalist

    files = datalist(bundle, val_fraction=0.4, seed=3)
    out = write_datalist(files, tmp_path / "lists" / "datalist.json")
    text = out.read_text()
    assert str(bundle) not in text and str(tmp_path) not in text  # relative paths only
    for key in ("training", "validation"):
        loaded = load_decathlon_datalist(out, is_segmentation=True, data_list_key=key)
        assert loaded == files[key]
    # and the bundle's own dataset.json, as the datasheet shows it
    loaded = load_decathlon_datalist(bundle / "data" / "dataset.json", data_list_key="training")
    assert sorted(e["image"] for e in loaded) == sorted(
        e["image"] for e in files["training"] + files["validation"]
    )


def test_target_pixdim_converts_micrometres_to_each_files_unit(tmp_path: Path) -> None:
    mm = write_synthetic_layout(tmp_path / "mm", ["mv01"], mm=True)
    um = write_synthetic_layout(tmp_path / "um", ["mv01"], mm=False)
    mm_file, um_file = mm / "imagesTr" / "mv01.nii.gz", um / "imagesTr" / "mv01.nii.gz"
    assert target_pixdim((1.0, 1.0, 2.0), [mm_file]) == pytest.approx((0.001, 0.001, 0.002))
    assert target_pixdim((1.0, 1.0, 2.0), [um_file]) == pytest.approx((1.0, 1.0, 2.0))
    with pytest.raises(ConsumerError, match="different spatial units"):
        target_pixdim((1.0, 1.0, 1.0), [mm_file, um_file])


def test_spacingd_resamples_a_mm_volume_to_the_requested_micrometres(bundle: Path) -> None:
    import nibabel as nib

    entry = datalist(bundle)["training"][0]
    header = nib.load(entry["image"]).header
    zooms_um = np.asarray(header.get_zooms()[:3]) * 1000.0
    target_um = (2.0, 2.0, 4.0)
    pixdim = target_pixdim(target_um, [entry["image"], entry["label"]])
    out = val_transforms(spacing=pixdim)(dict(entry))
    expected = np.asarray(header.get_data_shape()[:3]) * zooms_um / target_um
    assert np.all(np.abs(np.asarray(out["image"].shape[1:]) - expected) <= 1.5)
    assert out["image"].pixdim.tolist() == pytest.approx(list(pixdim))
    assert set(np.unique(out["label"].numpy()).tolist()) <= {0, 1}


def test_loaders_yield_patches_and_whole_validation_volumes(bundle: Path) -> None:
    import nibabel as nib

    files = datalist(bundle, val_fraction=0.2, seed=0)
    patch = (16, 16, 8)
    train, val = make_loaders(files, patch_size=patch, num_samples=2, batch_size=2, seed=0)
    batch = next(iter(train))
    assert tuple(batch["image"].shape) == (4, 1, *patch)
    assert tuple(batch["label"].shape) == (4, 1, *patch)
    assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.uint8
    assert float(batch["image"].min()) >= 0.0 and float(batch["image"].max()) <= 1.0
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1}
    assert len(train) == 2  # four training volumes, two per batch
    (val_batch,) = list(val)
    shape = nib.load(files["validation"][0]["image"]).shape
    assert tuple(val_batch["image"].shape) == (1, 1, *shape)
    # same seed, same patches
    again = next(iter(make_loaders(files, patch_size=patch, batch_size=2, seed=0)[0]))
    assert torch.equal(again["image"], batch["image"])


def test_one_training_step_then_validation_metrics(bundle: Path) -> None:
    files = datalist(bundle, val_fraction=0.4, seed=0)
    patch = (16, 16, 8)
    train, val = make_loaders(files, patch_size=patch, num_samples=1, batch_size=2, seed=0)
    model = smoke.build_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = smoke.train_step(model, next(iter(train)), smoke.make_loss(), optimiser, "cpu")
    assert math.isfinite(loss) and loss > 0
    ids = [entry_id(e) for e in files["validation"]]
    result = smoke.validate(model, val, ids, patch, "cpu")
    assert sorted(result["per_volume"]) == sorted(ids) and len(ids) == 2
    for scores in result["per_volume"].values():
        assert 0.0 <= scores["dice"] <= 1.0 and 0.0 <= scores["cldice"] <= 1.0
        assert 0.0 < scores["foreground_true"] < 1.0
    assert result["dice"] == pytest.approx(
        np.mean([s["dice"] for s in result["per_volume"].values()])
    )


def test_loss_decreases_on_bright_blob_volumes(blobs: Path) -> None:
    from monai.utils import set_determinism

    set_determinism(seed=0)
    torch.manual_seed(0)
    files = datalist(blobs, val_fraction=0.25, seed=0)
    train, val = make_loaders(files, patch_size=(32, 32, 16), num_samples=1, batch_size=3)
    model = smoke.build_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = smoke.make_loss()
    losses = []
    while len(losses) < 12:
        for batch in train:
            losses.append(smoke.train_step(model, batch, loss_fn, optimiser, "cpu"))
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    ids = [entry_id(e) for e in files["validation"]]
    assert smoke.validate(model, val, ids, (32, 32, 16), "cpu")["dice"] > 0.5


def test_select_device_picks_cuda_only_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert smoke.select_device("auto") == "cuda"
    assert smoke.select_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert smoke.select_device("auto") == "cpu"
    with pytest.raises(ConsumerError, match="no GPU"):
        smoke.select_device("cuda")
    with pytest.raises(ConsumerError, match="not known"):
        smoke.select_device("tpu")


def test_train_smoke_writes_finite_metrics_reproducibly(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "smoke_metrics.json"
    kwargs = {"patch_size": (32, 32, 16), "seed": 0, "device": "cpu", "batch_size": 2}
    result = smoke.train_smoke(bundle, out, **kwargs)
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(result))
    assert out.read_text().endswith("}\n") and str(tmp_path) not in out.read_text()
    assert str(bundle) not in out.read_text()
    assert written["status"] == "ok" and written["device"] == "cpu"
    assert written["versions"]["torch"] == torch.__version__
    assert written["versions"]["monai"] == monai.__version__
    assert written["data"]["training_ids"] + written["data"]["validation_ids"] != []
    assert len(written["data"]["validation_ids"]) == 1
    assert written["loss"]["steps"] == 2 == len(written["loss"]["per_step"])  # 4 volumes / 2
    assert all(math.isfinite(x) for x in written["loss"]["per_step"])
    for key in ("dice", "cldice"):
        assert 0.0 <= written["validation"][key] <= 1.0
    assert set(written["timing"]["seconds"]) == {"total", "cache", "train", "validation"}
    assert written["timing"]["seconds"]["total"] < 60
    again = smoke.train_smoke(bundle, tmp_path / "again.json", **kwargs)
    assert {k: v for k, v in again.items() if k != "timing"} == {
        k: v for k, v in result.items() if k != "timing"
    }


def test_train_smoke_rejects_a_patch_the_unet_cannot_halve(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ConsumerError, match="divisible by 4"):
        smoke.train_smoke(bundle, tmp_path / "m.json", patch_size=(30, 32, 16))
    assert not (tmp_path / "m.json").exists()


def test_monai_snippet_runs_against_a_tiny_bundle(bundle: Path, capsys) -> None:
    namespace: dict = {}
    exec(compile(MONAI_SNIPPET.format(bundle=bundle), "MONAI_SNIPPET", "exec"), namespace)
    assert tuple(namespace["batch"]["image"].shape) == (4, 1, 64, 64, 16)
    assert len(namespace["files"]) == len(VOLUMES)
    assert "torch.Size([4, 1, 64, 64, 16])" in capsys.readouterr().out
