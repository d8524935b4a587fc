"""The dataset driver runs the workflow's drift plan: the same groups, compound included."""

from __future__ import annotations

import json

import pytest

from minivess_bundle import drift
from minivess_bundle.core.errors import DriftError


def test_the_driver_writes_the_plans_groups_and_accepts_compound(tiny_staging, tmp_path):
    """`generate_drifted_dataset` refused `compound` (a key the schema accepts); it now
    writes exactly the plan's (volume, kind, level) variants with the compound's kinds."""
    config = {
        "volumes": ["mv02"],
        "types": ["compound", "noise"],
        "levels": [1, 5],
        "compound": {"kinds": ["intensity", "noise"]},
        "global_seed": 3,
    }
    manifest = drift.generate_drifted_dataset(tiny_staging, tmp_path / "out", config)
    planned = [
        (job.volume, job.kind, job.level)
        for group in drift.plan_groups(["mv01", "mv02", "mv39"], config)
        for job in group.jobs()
    ]
    written = [(e["volume"], e["drift_type"], e["level"]) for e in manifest.variants]
    assert sorted(written) == sorted(planned)
    assert sorted(planned) == [
        ("mv02", "compound", 1),
        ("mv02", "compound", 5),
        ("mv02", "noise", 1),
        ("mv02", "noise", 5),
    ]
    compound = [e for e in manifest.variants if e["drift_type"] == "compound"]
    assert {tuple(e["parameters"]["kinds"]) for e in compound} == {("intensity", "noise")}
    dataset = json.loads((tmp_path / "out" / "compound" / "5" / "dataset.json").read_text())
    assert dataset["training"] == [
        {"image": "./imagesTr/mv02.nii.gz", "label": "./labelsTr/mv02.nii.gz"}
    ]


def test_the_driver_names_an_unknown_key_and_a_bad_compound_kind(tiny_staging, tmp_path):
    with pytest.raises(DriftError, match=r"unknown drift config keys \['levelz'\]"):
        drift.generate_drifted_dataset(tiny_staging, tmp_path / "a", {"levelz": [1]})
    bad = {"types": ["compound"], "compound": {"kinds": ["noise", "nosie"]}}
    with pytest.raises(DriftError, match="drift type 'nosie' is not known"):
        drift.generate_drifted_dataset(tiny_staging, tmp_path / "b", bad)
