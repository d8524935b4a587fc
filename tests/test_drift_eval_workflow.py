"""`snakemake drift_eval` end to end on tiny synthetic volumes (needs the train extra)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from workflow_utils import make_workdir, run_snakemake

pytestmark = pytest.mark.workflow

TINY = {
    "synthetic": {"size_xy": 24, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv03", "mv04", "mv05"],
    # tiny synthetic volumes are mostly vessel: let them all through validation
    "validate": {"foreground_fraction": [0.001, 0.95]},
    "drift": {"levels": [1], "types": ["noise", "topology"]},
    "drift_eval": {
        "patch": [8, 8, 4],
        "patches_per_volume": 4,
        "sample_sizes": [2, 4],
        "fractions": [0.5, 1.0],
        "repetitions": 3,
        "control_repetitions": 10,
        "null_sets": 2,
        "permutations": 19,
        "harm_crop": [16, 16, 8],
        "device": "cpu",
    },
    # a few steps of a small UNet: the test proves the wiring, bench/RESULTS.md the Dice
    "reference_model": {
        "device": "cpu",
        "settings": {
            "channels": [4, 8, 16],
            "patch": [8, 8, 4],
            "batch_size": 2,
            "max_steps": 6,
            "eval_every": 3,
            "val_crop": [16, 16, 8],
        },
    },
}


def test_drift_eval_target_scores_every_detector_on_every_manifest_set(tmp_path):
    if os.environ.get("CI") != "true":
        pytest.importorskip("torch")
        pytest.importorskip("monai")
    import pandas as pd

    from minivess_bundle.drift_eval.protocol import validate_result

    workdir = make_workdir(tmp_path, **TINY)
    run_snakemake(workdir, "--cores", "2", "drift_eval")
    result = json.loads((workdir / "results/drift_eval/drift_eval.json").read_text())
    validate_result(result)
    manifest = json.loads(
        (workdir / "results/bundle/minivess-0.1.0/data/drift_manifest.json").read_text()
    )
    assert result["bundle"]["volumes"] == ["mv01", "mv02", "mv03", "mv04", "mv05"]
    assert result["bundle"]["held_out"] == ["mv05"]
    sets = {(s["kind"], s["level"]) for s in result["bundle"]["sets"]}
    assert sets == {(v["drift_type"], v["level"]) for v in manifest["variants"]}
    detectors = ["bbsd", "c2st", "ks", "mmd"]
    assert sorted(result["design"]["detectors"]) == detectors
    # disjoint roles, rotated: the model's training list in none of them
    roles = result["roles"]
    training = set(roles["training"])
    pool = 5 - len(training)
    assert len(roles["replications"]) == 5
    for rep in roles["replications"]:
        parts = [set(rep[k]) for k in ("reference", "calibration", "test")]
        assert sum(map(len, parts)) == len(set().union(*parts)) == pool
        assert not training & set().union(*parts)
    # the null is drawn from the calibration volumes only, ranked one-sided by default
    assert result["design"]["config"]["null_tail"] == "greater"
    assert result["design"]["calibration"].startswith(
        "null of each statistic from calibration volumes only, at the level of volumes"
    )
    assert "one-sided: p = (1 + #{null >= observed})" in result["design"]["calibration"]
    # 4 patches per volume: every pool volume clean, and (each pool volume being a test
    # volume once) drifted in-process for the one kind that changes the image (noise)
    assert result["design"]["units"] == 4 * (pool + pool)
    # one row per (detector, set, fraction, n); drifted units = floor(f n + 1/2)
    assert len(result["results"]) == len(detectors) * len(sets) * 2 * 2
    for row in result["results"]:
        assert row["drifted_units"] == int(row["fraction"] * row["n"] + 0.5)
        assert row["repetitions"] == 3 * 5 and row["replications"] == 5
        assert row["power_interval"][0] <= row["power"] <= row["power_interval"][1]
        assert row["image_changed"] == (row["kind"] == "noise")
    assert {(r["detector"], r["n"]) for r in result["false_positive_rate"]} == {
        (d, n) for d in detectors for n in (2, 4)
    }
    for row in result["false_positive_rate"]:
        assert row["within_tolerance"] == (row["fpr"] <= 0.05 + 0.05 + 1e-12)
        assert row["repetitions"] == 10 * 5
    # the in-process drift of a test volume is the drift job's own: byte-equal voxels
    import numpy as np

    from minivess_bundle.core.nifti import read_array
    from minivess_bundle.drift_eval.collect import drifted_image
    from minivess_bundle.drift_eval.sets import read_plan, read_volume

    plan = read_plan(workdir / "results/bundle/minivess-0.1.0")
    recipe = {**plan.recipes[("noise", 1)], "stream": "noise"}
    ours = drifted_image(recipe, read_volume(plan, "mv05"), "mv05", result["design"]["seed"])
    _, theirs = read_array(plan.variants[("noise", 1)]["mv05"]["image"])
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    # the per-unit table loads in pandas, one row per unit and role
    frame = pd.read_parquet(workdir / "results/drift_eval/features.parquet")
    assert set(frame["role"]) == {"reference", "calibration", "test"}
    assert len(frame[(frame["replication"] == 0) & (frame["kind"] == "clean")]) == 4 * pool
    # harm: one label per variant and reference, drop = clean - drifted on the same crop
    harm = result["harm"]
    assert len(harm["variants"]) == len(manifest["variants"])
    for row in harm["variants"]:
        clean = harm["clean"][row["volume"]]
        assert row["clean"] == {"dice": clean["dice"], "cldice": clean["cldice"]}
        assert row["dice_drop"] == pytest.approx(clean["dice"] - row["drifted"]["dice"], abs=2e-6)
        assert sorted(row["by_reference"]) == ["unet", "vesselness"]
        for ref in row["by_reference"].values():
            assert ref["dice_drop"] == pytest.approx(
                ref["clean"]["dice"] - ref["drifted"]["dice"], abs=2e-6
            )
    noise = [r for r in harm["variants"] if r["kind"] == "noise"]
    topology = [r for r in harm["variants"] if r["kind"] == "topology"]
    assert noise and topology
    # a label-only kind leaves the image and so the prediction unchanged: no image harm
    assert all(r["label_only"] and r["dice_drop"] == 0.0 for r in topology)
    assert not any(r["label_only"] for r in noise)
    for row in harm["by_set"]:
        for ref in row["by_reference"].values():
            lo, hi = ref["dice_drop_interval"]
            assert lo <= ref["dice_drop"] <= hi
    # the reference models: trained on the training role only, never on a harm volume
    models = result["reference_models"]
    assert models["training_volumes"] == ["mv04"]
    assert not set(models["training_volumes"]) & {r["volume"] for r in harm["variants"]}
    assert models["test_volumes"] == ["mv05"]
    weights = workdir / "results/drift_eval/reference/unet.pt"
    assert models["unet"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert models["unet"]["steps"] <= 6 and models["unet"]["device"] == "cpu"
    assert models["unet"]["clean_test"]["per_volume"]["mv05"]["dice"] == clean["dice"]
    assert models["vesselness"]["threshold"] > 0
    # label harm, apart: fine-tuned on the drifted vs the clean topology mask of mv05
    label = json.loads((workdir / "results/drift_eval/label_harm.json").read_text())
    assert [(r["kind"], r["level"]) for r in label["sets"]] == [("topology", 1)]
    (topo,) = label["sets"]
    assert topo["pairs"] == [["mv05", "mv05"]]
    assert topo["dice_drop_interval"][0] <= topo["dice_drop"] <= topo["dice_drop_interval"][1]
    assert label["fine_tuning"]["from_weights_sha256"] == models["unet"]["weights_sha256"]
    # harm AUROC: one row per (detector, n) at fraction 1.0
    assert {(r["detector"], r["n"]) for r in result["harm_auroc"]} == {
        (d, n) for d in detectors for n in (2, 4)
    }
    assert result["difficulty"]["detector"] == "ks"
    for name in ("power_curves.png", "false_alarms.png", "difficulty.png"):
        data = (workdir / "results/drift_eval" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000

    # re-scoring never retrains: a changed drift_eval config reruns the scoring job alone
    stamp = (weights.stat().st_mtime_ns, models["unet"]["weights_sha256"])
    rescored = make_workdir(
        workdir, **{**TINY, "drift_eval": {**TINY["drift_eval"], "repetitions": 2}}
    )
    dry = run_snakemake(rescored, "--cores", "2", "-n", "drift_eval")
    planned = dry.stdout + dry.stderr
    assert "drift_eval_score" in planned
    assert "drift_eval_reference" not in planned and "drift_eval_label_harm" not in planned
    run_snakemake(rescored, "--cores", "2", "drift_eval")
    again = json.loads((workdir / "results/drift_eval/drift_eval.json").read_text())
    assert (
        weights.stat().st_mtime_ns,
        again["reference_models"]["unet"]["weights_sha256"],
    ) == stamp
    assert all(r["repetitions"] == 2 * r["replications"] for r in again["results"])
    # a forced retrain with the same training data is a cache hit: the same bytes, no training
    run_snakemake(rescored, "--cores", "2", "--forcerun", "drift_eval_reference", "drift_eval")
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == stamp[1]
    log = (workdir / "logs/drift_eval/reference.log").read_text()
    assert "cache hit" in log and "step 3" not in log
