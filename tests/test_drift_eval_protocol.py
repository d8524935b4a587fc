"""The drift benchmark's protocol on a small build: false alarms on new clean volumes at
alpha + 0.05 under two seeds, every cell with its Wilson interval, the roles recorded,
the per-unit Parquet table, and Evidently's preset as a plug-in detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require
from drift_eval_bag import DRIFT_EVAL_SMALL, make_bag

from minivess_bundle.drift_eval import collect, null, protocol
from minivess_bundle.drift_eval import table as unit_table
from minivess_bundle.drift_eval.intervals import (
    clustered_interval,
    design_effect,
    summarise_rate,
    wilson_interval,
)
from minivess_bundle.drift_eval.sets import DriftEvalError, read_plan

ALPHA = 0.05

# --- the interval maths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (0, 10, 0.0, 0.277533),  # no rejection: the lower end is exactly 0
        (10, 10, 0.722467, 1.0),  # every trial: the upper end is exactly 1
        (5, 10, 0.236593, 0.763407),
        (1, 1, 0.206549, 1.0),  # one trial, the smallest count there is
        (0, 1, 0.0, 0.793451),
        (10, 200, 0.027383, 0.089578),
    ],
)
def test_wilson_interval_equals_the_closed_form_at_its_boundaries(successes, trials, low, high):
    # expected values: statsmodels proportion_confint(method="wilson"), an independent code
    lo, hi = wilson_interval(successes, trials)
    assert lo == pytest.approx(low, abs=1e-6) and hi == pytest.approx(high, abs=1e-6)
    assert 0.0 <= lo <= successes / trials <= hi <= 1.0


def test_wilson_interval_narrows_with_trials_and_widens_with_confidence():
    assert wilson_interval(50, 1000)[1] - wilson_interval(50, 1000)[0] < 0.03
    narrow, wide = wilson_interval(5, 20, 0.9), wilson_interval(5, 20, 0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize(
    ("successes", "trials", "confidence", "message"),
    [
        (0, 0, 0.95, "over 0 trials"),
        (3, 2, 0.95, "3 successes in 2 trials"),
        (-1, 2, 0.95, "-1 successes"),
        (1, 2, 1.0, "confidence 1.0"),
        (1, 2, 0.0, "confidence 0.0"),
    ],
)
def test_wilson_interval_refuses_impossible_counts(successes, trials, confidence, message):
    with pytest.raises(DriftEvalError, match=message):
        wilson_interval(successes, trials, confidence)


def test_a_replicated_rate_is_the_mean_of_its_replications_with_the_pooled_interval():
    cell = summarise_rate([1, 0, 3, 0, 1], 20)
    assert cell["rate"] == pytest.approx(0.05) and cell["trials"] == 100
    assert cell["by_replication"] == [0.05, 0.0, 0.15, 0.0, 0.05]
    assert cell["interval_wilson"] == [round(v, 6) for v in wilson_interval(5, 100)]


# 40 test volumes, 5 samples each: the shape of a cell (about 50 volumes, 200 samples)
VOLUMES = [(f"mv{v:02d}",) for v in range(40) for _ in range(5)]


def test_a_volume_clustered_interval_is_the_volumes_wilson_when_a_volumes_samples_agree():
    """Every sample of a volume has the same outcome (half the volumes alarm): 200 samples
    carry the information of 40 volumes, the design effect is about 200 / 40 = 5 (times
    the bootstrap's (V - 1) / V), and the interval is about Wilson's over 40 trials, not
    over 200."""
    agree = [v < 20 for v in range(40) for _ in range(5)]
    cell = clustered_interval(agree, VOLUMES, seed=7)
    assert cell["volumes"] == 40
    assert cell["design_effect"] == pytest.approx(5 * 39 / 40, rel=0.06)  # measured 5.03
    assert cell["interval"] == pytest.approx([0.3516, 0.6484], abs=1e-3)
    assert cell["interval"] == pytest.approx(list(wilson_interval(20, 40)), abs=0.01)
    wilson = wilson_interval(100, 200)  # [0.431, 0.569]: far too narrow
    assert cell["interval"][0] < wilson[0] - 0.07 and cell["interval"][1] > wilson[1] + 0.07


def test_a_volume_clustered_interval_is_wilsons_when_samples_are_independent():
    """Outcomes independent of their volume (Bernoulli 0.2, 36 of 200): the design effect
    is about 1 and the interval within 0.002 of Wilson's; a volume whose samples are
    exactly balanced (one alarm in five each) has no between-volume spread: the design
    effect's floor of 1 gives Wilson's interval exactly."""
    import numpy as np

    independent = list(np.random.default_rng(5).random(200) < 0.2)
    assert sum(independent) == 36
    cell = clustered_interval(independent, VOLUMES, seed=7)
    assert 1.0 <= cell["design_effect"] <= 1.1  # measured 1.025
    assert cell["interval"] == pytest.approx(list(wilson_interval(36, 200)), abs=0.002)
    balanced = [s == 0 for _ in range(40) for s in range(5)]
    assert design_effect(balanced, VOLUMES, seed=7) == (1.0, 40)
    exact = clustered_interval(balanced, VOLUMES, seed=7)
    assert exact["interval"] == [round(v, 6) for v in wilson_interval(40, 200)]


def test_a_clustered_rate_of_zero_keeps_wilsons_upper_end_and_is_seeded():
    """No alarm at all: no spread to resample, so the design effect is 1 and the interval
    Wilson's [0, 0.019] (a percentile bootstrap would collapse to [0, 0]); the same seed
    gives the same interval, another seed a close one."""
    none = [False] * 200
    assert clustered_interval(none, VOLUMES, seed=1)["interval"] == [0.0, 0.018845]
    clustered = [v < 2 for v in range(40) for _ in range(5)]  # 2 volumes alarm every time
    one, again = (clustered_interval(clustered, VOLUMES, seed=3) for _ in range(2))
    other = clustered_interval(clustered, VOLUMES, seed=4)
    assert one == again and one["interval"] != other["interval"]
    assert other["interval"] == pytest.approx(one["interval"], abs=0.02)
    # 10 alarms in 200 from 2 volumes: far wider than Wilson's [0.027, 0.090]
    assert one["interval"][0] < 0.02 and one["interval"][1] > 0.15


def test_samples_of_several_volumes_are_weighted_by_every_volume_they_hold():
    """With two volumes per sample (volumes_per_sample 2) each sample depends on both: the
    pigeonhole bootstrap's design effect is larger than with the first volume alone."""
    agree = [v < 20 for v in range(40) for _ in range(5)]
    pairs = [(f"mv{v:02d}", f"mv{40 + v % 7:02d}") for v in range(40) for _ in range(5)]
    assert design_effect(agree, pairs, seed=7)[0] > design_effect(agree, VOLUMES, seed=7)[0]
    with pytest.raises(DriftEvalError, match="2 outcomes with 1 volume lists"):
        design_effect([True, False], [("mv01",)], seed=7)


@pytest.mark.parametrize(("rate", "within"), [(0.1, True), (0.100001, False), (0.0, True)])
def test_false_alarm_tolerance_is_at_most_alpha_plus_0_05_inclusive(rate, within):
    assert null.within_tolerance(rate, ALPHA, 0.05) is within


# --- the protocol on a small build --------------------------------------------------------------

SMALL = DRIFT_EVAL_SMALL


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    """70 small synthetic volumes (the release's count, so the roles have the default
    sizes), one held-out volume with a noise and a topology variant in the manifest."""
    return make_bag(tmp_path_factory.mktemp("drift_eval"), count=70, size_xy=24, max_z=8)


@pytest.fixture(scope="module")
def runs(small_bag, tmp_path_factory) -> dict[int, dict]:
    """Each seed's result; its feature table at ``runs[seed]["_table"]`` (not in the JSON)."""
    out = tmp_path_factory.mktemp("runs")
    results = {}
    for seed in (1, 2):
        table = out / f"{seed}.parquet"
        results[seed] = protocol.run_drift_eval(
            small_bag, out / f"{seed}.json", config=SMALL, seed=seed, features_path=table
        )
        results[seed]["_table"] = table
    return results


@pytest.mark.parametrize("seed", [1, 2])
def test_false_alarms_on_new_clean_volumes_stay_within_alpha_plus_0_05(runs, seed):
    result = runs[seed]
    defaults = protocol.DEFAULTS
    cells = {(r["detector"], r["n"]): r for r in result["false_positive_rate"]}
    assert set(cells) == {(d, n) for d in SMALL["detectors"] for n in defaults["sample_sizes"]}
    for (detector, n), row in cells.items():
        assert row["fpr"] <= ALPHA + 0.05, (detector, n, row)
        assert row["within_tolerance"]
        assert row["replications"] == defaults["replications"] >= 5
        assert row["repetitions"] == defaults["replications"] * defaults["control_repetitions"]
        assert row["fpr_interval"][0] <= row["fpr"] <= row["fpr_interval"][1]
        # the clustered interval holds the Wilson one (design effect >= 1) and its volumes
        # are the test volumes of the five replications
        low, high = row["fpr_interval_wilson"]
        assert row["fpr_interval"][0] <= low + 1e-6 and high <= row["fpr_interval"][1] + 1e-6
        assert row["design_effect"] >= 1.0 and 45 <= row["volumes"] <= 50
    # the null is one statistic per calibration volume (27-29 here): the exact bound
    # floor(alpha (V + 1)) / (V + 1) of every replication is below alpha, and no cell is
    # near the tolerance (measured: at most 0.05 over both seeds; the mean over the cells
    # 0.013 and 0.020, below the bound: ks and c2st statistics tie, and ties never reject)
    attainable = result["design"]["attainable"]
    assert all(attainable["rejects"]) and max(attainable["fpr_bound"]) <= ALPHA
    assert all(27 <= v <= 30 for v in attainable["null_size"])
    assert sum(row["fpr"] for row in cells.values()) / len(cells) <= ALPHA
    # the detectors' own p-values, which take a volume's patches for independent draws,
    # alarm far above alpha on the same new volumes: the calibration is what holds it
    assert cells[("ks", 20)]["fpr_uncalibrated"] > 0.5


def test_the_benchmark_table_command_prints_every_fpr_and_power_cell_with_its_interval(
    runs, tmp_path, capsys
):
    import json

    from minivess_bundle.drift_eval import figures

    result = {k: v for k, v in runs[1].items() if k != "_table"}
    path = tmp_path / "drift_eval.json"
    path.write_text(json.dumps(result))
    assert figures.main([str(path)]) == 0
    text = capsys.readouterr().out
    assert text == figures.markdown_table(result)
    first, second = text.split("\n\n")
    for row in result["false_positive_rate"]:
        low, high = row["fpr_interval"]
        assert f"{row['fpr']:.3f} [{low:.3f}, {high:.3f}]" in first
    # one row per detector, then one per (detector, kind) at the kind's highest level
    assert len(first.splitlines()) == 2 + len(SMALL["detectors"])
    assert len(second.splitlines()) == 2 + len(SMALL["detectors"]) * 2
    noise = next(
        r
        for r in result["results"]
        if (r["detector"], r["kind"], r["n"], r["fraction"]) == ("ks", "noise", 5, 1.0)
    )
    low, high = noise["power_interval"]
    assert f"| ks | noise (5) | {noise['power']:.2f} [{low:.2f}, {high:.2f}] |" in second


def test_roles_are_recorded_disjoint_and_the_training_list_is_in_no_role(runs):
    roles = runs[1]["roles"]
    training = set(roles["training"])
    assert training and roles["folds"] == 5
    assert len(roles["replications"]) == 5
    tested = []
    for rep in roles["replications"]:
        parts = [set(rep[k]) for k in ("reference", "calibration", "test")]
        assert sum(map(len, parts)) == len(set().union(*parts)) == 70 - len(training)
        assert not training & set().union(*parts)
        assert len(rep["calibration"]) >= 18
        tested += rep["test"]
    assert len(tested) == len(set(tested)) == 70 - len(training)


def test_every_power_cell_has_its_interval_replications_and_repetitions(runs):
    rows = runs[1]["results"]
    assert {(r["kind"], r["image_changed"]) for r in rows} == {
        ("noise", True),
        ("topology", False),
    }
    for row in rows:
        assert row["replications"] == 5 and row["repetitions"] == 5 * SMALL["repetitions"]
        assert row["power_interval"][0] <= row["power"] <= row["power_interval"][1]
        low, high = row["power_interval_wilson"]
        assert row["power_interval"][0] <= low + 1e-6 and high <= row["power_interval"][1] + 1e-6
        # 2 samples per replication: at most 10 distinct test volumes behind a cell
        assert row["design_effect"] >= 1.0 and 1 <= row["volumes"] <= 10
        assert len(row["power_by_replication"]) == 5
        assert row["power"] == pytest.approx(sum(row["power_by_replication"]) / 5, abs=1e-6)
    protocol.validate_result({k: v for k, v in runs[1].items() if k != "_table"})


def test_the_result_and_the_table_are_byte_identical_when_run_again(small_bag, tmp_path):
    cheap = {**SMALL, "sample_sizes": [5], "replications": 2, "null_sets": 1}
    cheap |= {"control_repetitions": 5}
    for name in ("a", "b"):
        protocol.run_drift_eval(
            small_bag,
            tmp_path / f"{name}.json",
            config=cheap,
            seed=1,
            features_path=tmp_path / f"{name}.parquet",
        )
    for suffix in ("json", "parquet"):
        assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes()


def test_a_kind_that_cannot_act_on_a_test_volume_is_left_out_of_that_sets_tests(
    small_bag, tmp_path, monkeypatch
):
    """As the drift plan skips a kind that cannot act on a volume (z_step on 3 slices), so
    does the evaluation: the set's test samples come from the other test volumes, and the
    (kind, level, volume) is recorded with the kind's reason."""
    from minivess_bundle.core.errors import DriftError

    applied = collect.drifted_image
    roles = protocol.plan_roles(
        read_plan(small_bag), protocol.resolve_config({"replications": 1}), 1
    )
    unable = roles[0].test[0]

    def refuse(recipe, volume, vol, seed):
        if vol == unable:
            raise DriftError("noise cannot act here", volume=vol)
        return applied(recipe, volume, vol, seed)

    monkeypatch.setattr(collect, "drifted_image", refuse)
    cheap = {**SMALL, "detectors": ["ks"], "sample_sizes": [5], "replications": 1}
    cheap |= {"null_sets": 1, "control_repetitions": 5, "repetitions": 8}
    result = protocol.run_drift_eval(small_bag, tmp_path / "r.json", config=cheap, seed=1)
    (skipped,) = result["design"]["not_applicable"]
    assert (skipped["kind"], skipped["level"], skipped["volume"]) == ("noise", 5, unable)
    assert "noise cannot act here" in skipped["reason"]
    rows = {r["kind"]: r for r in result["results"]}
    assert rows["noise"]["repetitions"] == 8 and rows["topology"]["repetitions"] == 8


def test_the_feature_table_is_parquet_with_one_row_per_unit_and_role(runs):
    pq = require("pyarrow.parquet", "the train extra")
    from minivess_bundle.drift_eval.features import FEATURE_NAMES

    table = pq.read_table(runs[1]["_table"])
    assert table.schema.names == [
        *unit_table.TABLE_COLUMNS,
        *FEATURE_NAMES,
        unit_table.HARM_COLUMN,
    ]
    frame = table.to_pandas()
    roles = runs[1]["roles"]["replications"][0]
    first = frame[frame["replication"] == 0]
    clean = first[first["kind"] == "clean"]
    for role in ("reference", "calibration", "test"):
        assert sorted(set(clean[clean["role"] == role]["volume"])) == roles[role]
        assert (clean["role"] == role).sum() == 10 * len(roles[role])
    drifted = first[first["kind"] != "clean"]
    assert set(drifted["role"]) == {"test"} and set(drifted["kind"]) == {"noise", "topology"}
    assert len(drifted) == 2 * 10 * len(roles["test"])
    assert (drifted["level"] == 5).all() and (drifted["severity"] == 1.0).all()
    assert frame[unit_table.HARM_COLUMN].isna().all()
    assert not frame[list(FEATURE_NAMES)].isna().any().any()
    # the same patch corners, in the same order: topology leaves the image as it is (the
    # same features), noise changes it
    key = ["volume", "x", "y", "z"]
    base = clean[clean["role"] == "test"]
    for kind, same in (("topology", True), ("noise", False)):
        rows = drifted[drifted["kind"] == kind]
        assert rows[key].to_numpy().tolist() == base[key].to_numpy().tolist()
        features = rows[list(FEATURE_NAMES)].to_numpy() == base[list(FEATURE_NAMES)].to_numpy()
        assert features.all() == same


def test_evidently_data_drift_preset_runs_as_a_plugin_row_of_the_benchmark(small_bag, tmp_path):
    from minivess_bundle.drift_eval.detectors import EVIDENTLY_PRESET, patch_pandas_for_evidently

    patch_pandas_for_evidently()
    require("evidently", "the evidently extra: pip install 'minivess-bundle[evidently]'")
    assert EVIDENTLY_PRESET == {"method": "ks", "threshold": 0.05, "drift_share": 0.5}
    config = {
        **SMALL,
        "detectors": ["evidently"],
        "sample_sizes": [20],
        "replications": 1,
        "null_sets": 1,
        "control_repetitions": 5,
        "repetitions": 3,
    }
    result = protocol.run_drift_eval(small_bag, tmp_path / "ev.json", config=config, seed=1)
    (fpr,) = result["false_positive_rate"]
    assert fpr["detector"] == "evidently" and fpr["repetitions"] == 5
    assert 0.0 <= fpr["fpr"] <= 1.0 and fpr["fpr_interval"][1] > fpr["fpr"] - 1e-9
    rows = {r["kind"]: r for r in result["results"]}
    assert set(rows) == {"noise", "topology"} and rows["noise"]["detector"] == "evidently"
    # Evidently's own verdict (KS per column, drift share 0.5) on 20 patches of one new
    # volume: it flags clean new volumes as drifted, which the calibrated rate corrects
    assert fpr["fpr_uncalibrated"] >= fpr["fpr"]
    assert "Evidently DataDriftPreset" in result["design"]["detectors"]["evidently"]["description"]


def test_unknown_and_out_of_range_protocol_keys_are_refused():
    with pytest.raises(DriftEvalError, match="drift_eval.null_source"):
        protocol.resolve_config({"null_source": "held_out"})
    for key in ("folds", "calibration_folds", "replications", "volumes_per_sample"):
        with pytest.raises(DriftEvalError, match=f"drift_eval.{key} 0"):
            protocol.resolve_config({key: 0})


def test_the_harm_column_is_the_sets_unet_dice_drop_and_zero_for_clean_units():
    """With harm scored, a drifted unit's harm is its (kind, level) set's UNet Dice drop; a
    clean unit's is 0; a label-only set's is null (its image is the clean one)."""
    require("pyarrow", "the train extra")
    import numpy as np

    from minivess_bundle.drift_eval.roles import Roles
    from minivess_bundle.drift_eval.sets import Plan
    from minivess_bundle.drift_eval.table import HARM_COLUMN, Units, feature_table

    units = Units()
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((8 * 8 * 4, 16)).astype(np.float32)
    patches = [rng.uniform(100, 200, (32, 32, 8)).astype(np.float32) for _ in range(2)]
    corners = [(0, 0, 0), (32, 0, 0)]
    for key in (("clean", "mv01"), ("clean", "mv02"), ("noise", 5, "mv02")):
        units.add(key, patches, (100.0, 200.0), projection, corners)
    units.alias(("topology", 5, "mv02"), ("clean", "mv02"))
    recipes = {("noise", 5): {"severity": 1.0}, ("topology", 5): {"severity": 1.0}}
    plan = Plan(Path("bag"), ["mv01"], ["mv02"], recipes=recipes)
    roles = [Roles(training=(), reference=("mv01",), calibration=(), test=("mv02",))]
    harm_sets = [
        {"kind": "noise", "level": 5, "mean_dice_drop": 0.125, "label_only": False},
        {"kind": "topology", "level": 5, "mean_dice_drop": 0.0, "label_only": True},
    ]
    frame = feature_table(units, roles, plan, harm_sets).to_pandas()
    harm = {kind: set(frame[frame["kind"] == kind][HARM_COLUMN].tolist()) for kind in frame["kind"]}
    assert harm["clean"] == {0.0} and harm["noise"] == {0.125}
    assert frame[frame["kind"] == "topology"][HARM_COLUMN].isna().all()
    assert feature_table(units, roles, plan).to_pandas()[HARM_COLUMN].isna().all()
