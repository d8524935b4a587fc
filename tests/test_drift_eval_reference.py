"""The drift benchmark's reference segmenters: the UNet (training, plateau stop, cache) and
the vesselness filter, on tiny tube volumes written here (needs the train extra)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import require

from minivess_bundle.drift_eval.reference import (
    Settings,
    check_disjoint,
    sample_batch,
    split_validation,
    train_reference,
)
from minivess_bundle.drift_eval.sets import DriftEvalError
from minivess_bundle.drift_eval.vesselness import fit_threshold

TINY = {
    "channels": [4, 8, 16],
    "patch": [16, 16, 8],
    "batch_size": 2,
    "max_steps": 4,
    "eval_every": 2,
    "val_crop": [24, 24, 12],
}


def tubes(seed: int, shape=(28, 28, 12)) -> tuple[np.ndarray, np.ndarray]:
    """Bright straight tubes of radius 2 along random axes, Poisson-like noise (uint16)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    for _ in range(4):
        axis = int(rng.integers(0, 2))
        others = [a for a in range(3) if a != axis]
        centre = [rng.uniform(3, shape[a] - 3) for a in others]
        dist2 = sum((grid[a] - c) ** 2 for a, c in zip(others, centre, strict=True))
        mask |= dist2 <= 4.0
    image = 200 + 1800 * mask + rng.normal(0, 60, shape)
    return np.clip(image, 0, 65535).astype(np.uint16), mask.astype(np.uint8)


def write_layout(root, volumes: dict[str, int]):
    import nibabel as nib

    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for vol, seed in volumes.items():
        image, mask = tubes(seed)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / f"{vol}.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "labelsTr" / f"{vol}.nii.gz")
    return root


def test_settings_refuse_unknown_keys_and_patches_the_unet_cannot_take():
    assert Settings.from_dict({"max_steps": 5}).max_steps == 5
    with pytest.raises(DriftEvalError, match="reference settings \\['epochs'\\]"):
        Settings.from_dict({"epochs": 3})
    with pytest.raises(DriftEvalError, match="divisible by 4"):
        Settings.from_dict({"patch": [16, 16, 6]})


def test_the_validation_subset_is_a_seeded_quarter_of_the_training_list():
    vols = [f"mv{i:02d}" for i in range(1, 21)]
    fit, val = split_validation(vols, Settings(), seed=1)
    assert len(val) == 3 and not set(fit) & set(val) and sorted(fit + val) == vols
    assert split_validation(vols, Settings(), seed=1) == (fit, val)
    assert (
        split_validation(vols[:4], Settings(), seed=1)[1]
        == split_validation(vols[:4], Settings(), 1)[1]
    )
    assert len(split_validation(vols[:4], Settings(), seed=1)[1]) == 1
    assert split_validation(["mv01"], Settings(), seed=1) == (["mv01"], ["mv01"])


def test_patches_centre_on_vessels_as_often_as_the_foreground_share_says():
    image, mask = tubes(0)
    settings = Settings.from_dict({"patch": [8, 8, 4], "batch_size": 400, "foreground_share": 1.0})
    _, masks = sample_batch([(image.astype(np.float32), mask)], settings, np.random.default_rng(0))
    assert masks.shape == (400, 1, 8, 8, 4)
    # every patch is centred on a vessel voxel (the centre of an even patch: index 4, 4, 2)
    assert masks[:, 0, 4, 4, 2].all()
    none = Settings.from_dict({"patch": [8, 8, 4], "batch_size": 400, "foreground_share": 0.0})
    _, anywhere = sample_batch([(image.astype(np.float32), mask)], none, np.random.default_rng(0))
    assert 0.05 < anywhere[:, 0, 4, 4, 2].mean() < 0.5


def test_harm_volumes_in_the_training_list_are_refused_by_name():
    check_disjoint({"training_volumes": ["mv01", "mv02"]}, ["mv03"])
    with pytest.raises(DriftEvalError, match="trained on \\['mv02'\\], which harm is measured on"):
        check_disjoint({"training_volumes": ["mv01", "mv02"]}, ["mv02", "mv03"])


def test_vesselness_threshold_fitted_on_training_tubes_segments_new_tubes():
    train = [tubes(s) for s in (1, 2)]
    segmenter, record = fit_threshold(train, crop=(28, 28, 12))
    assert record["training_dice_pooled"] > 0.8
    image, mask = tubes(9)
    window = tuple(slice(0, s) for s in image.shape)
    pred = segmenter.segment(image, window)
    dice = 2 * (pred & mask).sum() / (pred.sum() + mask.sum())
    assert dice > 0.75
    assert segmenter.threshold == record["threshold"]
    # a gain is undone by the percentile scaling (up to the uint16 rounding) ...
    dim = (image.astype(np.float32) * 0.3).astype(np.uint16)
    assert abs(int(segmenter.segment(dim, window).sum()) - int(pred.sum())) <= 0.01 * pred.sum()
    # ... strong noise is not: the fixed threshold now misses or adds vessel voxels
    noisy = image + np.random.default_rng(0).normal(0, 900, image.shape)
    noisy = np.clip(noisy, 0, 65535).astype(np.uint16)
    worse = segmenter.segment(noisy, window)
    assert 2 * (worse & mask).sum() / (worse.sum() + mask.sum()) < dice - 0.05


def test_the_unet_trains_on_the_training_list_records_itself_and_is_cached(tmp_path, monkeypatch):
    require("torch", hint="the train extra")
    require("monai", hint="the train extra")
    from minivess_bundle.drift_eval import reference

    bag = write_layout(tmp_path / "bag", {"mv01": 1, "mv02": 2, "mv03": 3})
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    settings = Settings.from_dict(TINY)
    record = train_reference(
        bag,
        ["mv01", "mv02"],
        out / "unet.pt",
        out / "reference.json",
        seed=7,
        settings=settings,
        device="cpu",
        threads=1,
        cache_dir=cache,
        vesselness_crop=(28, 28, 12),
    )
    unet = record["unet"]
    assert record["training_volumes"] == ["mv01", "mv02"]
    assert unet["steps"] == 4 and unet["stopped"] == "max_steps"
    assert [c["step"] for c in unet["curve"]] == [2, 4]
    assert unet["best"]["dice"] == max(c["dice"] for c in unet["curve"])
    weights = (out / "unet.pt").read_bytes()
    assert unet["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert unet["training_time"]["wall_s"] > 0 and unet["training_time"]["cpu_s"] > 0
    assert json.loads((out / "reference.json").read_text()) == record

    # the same training data: the cache answers and nothing trains
    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the training data did not change")

    monkeypatch.setattr(reference, "train_unet", no_training)
    again = train_reference(
        bag,
        ["mv01", "mv02"],
        out / "b.pt",
        out / "b.json",
        seed=7,
        settings=settings,
        device="cpu",
        threads=1,
        cache_dir=cache,
        vesselness_crop=(28, 28, 12),
    )
    assert again == record and (out / "b.pt").read_bytes() == weights
    # a changed training volume is a new key: it trains
    write_layout(bag, {"mv02": 5})
    with pytest.raises(AssertionError, match="retrained"):
        train_reference(
            bag,
            ["mv01", "mv02"],
            out / "c.pt",
            out / "c.json",
            seed=7,
            settings=settings,
            device="cpu",
            threads=1,
            cache_dir=cache,
        )


def test_training_stops_at_a_plateau_after_patience_evaluations(tmp_path):
    require("torch", hint="the train extra")
    require("monai", hint="the train extra")
    bag = write_layout(tmp_path / "bag", {"mv01": 1})
    # no evaluation can beat the first by min_delta = 1: stop after 1 + patience evaluations
    settings = Settings.from_dict(
        {**TINY, "max_steps": 50, "eval_every": 2, "patience": 2, "min_delta": 1.0}
    )
    record = train_reference(
        bag,
        ["mv01"],
        tmp_path / "u.pt",
        tmp_path / "r.json",
        seed=3,
        settings=settings,
        device="cpu",
        threads=1,
    )
    unet = record["unet"]
    assert unet["stopped"] == "plateau" and unet["steps"] == 6
    assert [c["step"] for c in unet["curve"]] == [2, 4, 6] and unet["best"]["step"] == 2
    assert unet["validated_on"] == "training"
