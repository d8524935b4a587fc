"""Drift evaluation: detectors against known results, planted shifts, calibrated nulls,
sample formation, the plug-in interface and the result schema (small arrays, fast)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp, kstest

from minivess_bundle.drift_eval import detectors as det
from minivess_bundle.drift_eval import null, protocol, sets
from minivess_bundle.drift_eval import table as unit_table
from minivess_bundle.drift_eval.roles import Roles
from minivess_bundle.drift_eval.sets import DriftEvalError

ALPHA = 0.05


def mean_shift_p_value(reference: list[str], test: list[str]) -> float:
    """A plug-in detector for the tests: Welch t-test on the unit files' means."""
    from scipy.stats import ttest_ind

    ref = [float(np.load(p).mean()) for p in reference]
    tst = [float(np.load(p).mean()) for p in test]
    return float(ttest_ind(ref, tst, equal_var=False).pvalue)


def test_ks_statistics_and_asymptotic_p_equal_scipy_ks_2samp():
    rng = np.random.default_rng(1)
    ref, test = rng.normal(size=(300, 4)), rng.normal(0.3, 1.2, size=(17, 4))
    d = det.ks_statistics(ref, test)
    p = det.ks_pvalues(d, 300, 17)
    for j in range(4):
        expected = ks_2samp(ref[:, j], test[:, j], method="asymp")
        assert d[j] == pytest.approx(expected.statistic, abs=1e-12)
        assert p[j] == pytest.approx(expected.pvalue, rel=1e-9)


def test_ks_bonferroni_multiplies_the_smallest_p_by_the_column_count():
    rng = np.random.default_rng(2)
    ref, test = rng.normal(size=(200, 5)), rng.normal(size=(30, 5))
    test[:, 3] += 0.8
    smallest = min(ks_2samp(ref[:, j], test[:, j], method="asymp").pvalue for j in range(5))
    outcome = det.ks_bonferroni(ref, test)
    assert outcome.p_value == pytest.approx(min(1.0, 5 * smallest), rel=1e-9)
    assert outcome.statistic == pytest.approx(-math.log10(smallest), rel=1e-9)


def test_mmd_of_two_point_samples_equals_the_hand_computed_value():
    # X = {0, 1}, Y = {2, 3}, sigma 1: (1 + e^-1/2) - (2 e^-2 + e^-9/2 + e^-1/2) / 2
    expected = (1 + math.exp(-0.5)) - (2 * math.exp(-2) + math.exp(-4.5) + math.exp(-0.5)) / 2
    outcome = det.mmd_permutation(
        np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]]), np.random.default_rng(0), 10, 1.0
    )
    assert outcome.statistic == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(1.162376, abs=1e-6)


def test_median_heuristic_is_the_median_pairwise_distance():
    d2 = det.squared_distances(np.array([[0.0], [1.0], [2.0], [3.0]]))
    assert det.median_bandwidth(d2) == pytest.approx(1.5)  # distances 1,1,1,2,2,3


def test_mmd_permutation_p_value_is_uniform_under_the_null():
    rng = np.random.default_rng(3)
    pvalues = [
        det.mmd_permutation(rng.normal(size=(30, 3)), rng.normal(size=(10, 3)), rng, 99).p_value
        for _ in range(300)
    ]
    assert kstest(pvalues, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(np.asarray(pvalues) <= ALPHA) <= 0.09


def test_c2st_binomial_p_value_counts_held_out_correct_predictions():
    rng = np.random.default_rng(4)
    far = det.c2st(rng.normal(size=(100, 3)), rng.normal(5.0, 1.0, size=(20, 3)), rng)
    assert far.statistic == 1.0
    assert far.p_value == pytest.approx(0.5**20)  # 20 of 20 held-out predictions right
    assert det.c2st(rng.normal(size=(100, 3)), rng.normal(size=(1, 3)), rng).p_value == 1.0


def _power(detect, shift: float, n: int = 20, reps: int = 40, seed: int = 5) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        ref = rng.normal(size=(200, 6))
        test = rng.normal(size=(n, 6))
        test[:, 0] += shift
        hits += detect(ref, test, rng).p_value <= ALPHA
    return hits / reps


DETECTORS = {
    "ks": lambda r, t, rng: det.ks_bonferroni(r, t),
    "mmd": lambda r, t, rng: det.mmd_permutation(r, t, rng, 99),
    "c2st": lambda r, t, rng: det.c2st(r, t, rng),
}


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_finds_a_planted_shift_with_power_at_least_0_9(name):
    assert _power(DETECTORS[name], shift=3.0) >= 0.9


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_keeps_its_false_positive_rate_on_a_null_within_alpha_plus_0_05(name):
    assert _power(DETECTORS[name], shift=0.0, reps=100) <= ALPHA + 0.05


def _bbsd_model():
    import torch

    model = torch.nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        model.weight[:] = torch.tensor([0.0, 10.0]).view(2, 1, 1, 1, 1)
        model.bias[:] = torch.tensor([0.0, -5.0])
    return model.eval()


def test_bbsd_finds_a_planted_brightening_in_the_models_softmax_and_keeps_its_null():
    if os.environ.get("CI") != "true":
        pytest.importorskip("torch")
    from minivess_bundle.drift_eval.harm import softmax_features

    model = _bbsd_model()
    rng = np.random.default_rng(6)

    def rows(count, gain):
        patches = rng.uniform(0.0, 0.45, size=(count, 8, 8, 4)) * gain
        return softmax_features(model, patches, [(0.0, 1.0)] * count, "cpu")

    reference = rows(200, 1.0)
    planted = np.mean(
        [det.ks_bonferroni(reference, rows(10, 1.6)).p_value <= ALPHA for _ in range(20)]
    )
    false_alarms = np.mean(
        [det.ks_bonferroni(reference, rows(10, 1.0)).p_value <= ALPHA for _ in range(100)]
    )
    assert planted >= 0.9
    assert false_alarms <= ALPHA + 0.05


def test_round_half_up_decides_the_drifted_unit_count_at_its_boundaries():
    assert sets.round_half_up(0.1 * 1) == 0
    assert sets.round_half_up(0.5 * 1) == 1
    assert sets.round_half_up(0.49) == 0
    assert sets.round_half_up(0.1 * 5) == 1
    assert sets.round_half_up(0.1 * 20) == 2


def test_units_spread_over_volumes_round_robin_without_reusing_a_patch():
    units_of = {"mv05": [0, 1, 2], "mv15": [3, 4, 5]}
    chosen = sets.draw_units(["mv05", "mv15"], units_of, 6, np.random.default_rng(0))
    assert sorted(chosen) == [0, 1, 2, 3, 4, 5]
    assert sum(u < 3 for u in chosen[:2]) == 1  # the first two come from different volumes


def test_derived_seeds_depend_on_every_part_and_nothing_else():
    a = sets.derive_seed(1, "drift_eval/test", "noise", 1, 0.5, 5, 0)
    assert a == sets.derive_seed(1, "drift_eval/test", "noise", 1, 0.5, 5, 0)
    assert a != sets.derive_seed(1, "drift_eval/test", "noise", 1, 0.5, 5, 1)
    assert a != sets.derive_seed(2, "drift_eval/test", "noise", 1, 0.5, 5, 0)


def _clustered(seed: int = 7, drift: float = 0.0, count: int = 70):
    """Synthetic units with volume-level clustering: every patch of a volume shares the
    volume's offset (sd 1), patches vary 0.5 around it; 8 units per volume, and each
    volume's drifted units (``drift`` added to the same patches)."""
    rng = np.random.default_rng(seed)
    volumes = [f"mv{i:02d}" for i in range(1, count + 1)]
    units = unit_table.Units()
    rows: list = []
    for vol in volumes:
        offset = rng.normal(0.0, 1.0, size=3)
        start = len(rows)
        rows.extend(offset + 0.5 * rng.normal(size=(8, 3)))
        units.of[("clean", vol)] = list(range(start, start + 8))
        rows.extend(np.asarray(rows[start:]) + drift)
        units.of[("gain", 1, vol)] = list(range(start + 8, start + 16))
    plan = sets.Plan(
        bag=Path("."),
        reference=volumes[:-1],
        held_out=volumes[-1:],
        variants={("gain", 1): {volumes[-1]: {"severity": 0.5}}},
        recipes={("gain", 1): {"kind": "intensity", "severity": 0.5, "target": "image"}},
    )
    table = np.asarray(rows)
    units.rows = table
    return plan, units, {"ks": lambda r, t, g: det.ks_bonferroni(table[r], table[t])}


def _every_detector(units, detectors):
    """ks (from :func:`_clustered`), mmd and c2st on the same synthetic unit table."""
    table = units.rows
    return {
        **detectors,
        "mmd": lambda r, t, g: det.mmd_permutation(table[r], table[t], g, 19),
        "c2st": lambda r, t, g: det.c2st(table[r], table[t], g),
    }


def _scored(plan, units, detectors, seed, **config):
    cfg = protocol.resolve_config(
        {"detectors": ["ks"], "fractions": [1.0], "harm": False, "replications": 5} | config
    )
    roles = protocol.plan_roles(plan, cfg, seed)
    return protocol.evaluate(plan, units, detectors, cfg, seed, roles)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_the_calibration_null_holds_alpha_on_new_volumes_where_raw_p_values_fail(seed):
    """Patches cluster by volume: a detector's own p-value (rows taken for independent
    draws) flags most clean samples of new volumes; the null of one sample per calibration
    volume keeps every detector's false-alarm rate on the test volumes (new to reference
    and null) at its exact bound floor(alpha (V + 1)) / (V + 1) = 1/28 .. 1/31 in
    expectation (70 volumes: 27-30 calibration volumes per replication, as in the release);
    every cell of 400 samples stays within alpha + 0.05."""
    plan, units, detectors = _clustered(seed=seed)
    scored = _scored(
        plan,
        units,
        _every_detector(units, detectors),
        seed,
        sample_sizes=[5, 20],
        control_repetitions=40,
        repetitions=1,
        replications=10,  # two shuffles of 5 folds: 94 new test volumes behind each rate
    )
    rows = {(r["detector"], r["n"]): r for r in scored["false_positive_rate"]}
    assert set(rows) == {(d, n) for d in ("ks", "mmd", "c2st") for n in (5, 20)}
    for key, row in rows.items():
        assert row["fpr"] <= ALPHA + 0.05, (key, row)
        assert row["repetitions"] == 400 and len(row["fpr_by_replication"]) == 10
    assert sum(row["fpr"] for row in rows.values()) / len(rows) <= ALPHA
    assert rows[("ks", 20)]["fpr_uncalibrated"] > 0.5


def _volume_level(seed: int, count: int = 70):
    """Units whose statistic is their volume's alone: every patch of a volume is the same
    row (the volume's value u ~ N(0, 1)), and the detector's statistic is the sample's mean
    (no reference dependence): the between-volume variation is all there is."""
    rng = np.random.default_rng(seed)
    volumes = [f"mv{i:02d}" for i in range(1, count + 1)]
    value = {vol: float(rng.normal()) for vol in volumes}
    units = unit_table.Units()
    rows = []
    for vol in volumes:
        units.of[("clean", vol)] = list(range(len(rows), len(rows) + 8))
        rows.extend([value[vol]] * 8)
    table = np.asarray(rows)
    plan = sets.Plan(bag=Path("."), reference=volumes[:-1], held_out=volumes[-1:])

    def mean(r, t, g):
        return det.Outcome(statistic=float(table[t].mean()), p_value=1.0)

    return plan, units, {"mean": mean}, value


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_clean_new_volume_is_flagged_exactly_when_it_tops_every_calibration_volume(seed):
    """The null is one statistic per calibration volume, so with V of them the rank p of a
    clean test sample is exact: at alpha 0.05 and 27-30 calibration volumes (floor(alpha (V
    + 1)) = 1) a control is flagged if and only if its volume's value exceeds every
    calibration volume's. The design before (99 draws from the calibration volumes,
    clustered by volume) also flagged a volume second to one calibration volume whenever
    that volume was drawn at most 4 times: a false-alarm rate near 2 / (V + 1)."""
    plan, units, detectors, value = _volume_level(seed)
    cfg = protocol.resolve_config(
        {"fractions": [1.0], "harm": False, "sample_sizes": [5], "control_repetitions": 40}
    )
    roles = protocol.plan_roles(plan, cfg, seed)
    scored = protocol.evaluate(plan, units, detectors, cfg, seed, roles)
    (row,) = scored["false_positive_rate"]
    clean = {key[1]: ids for key, ids in units.of.items() if key[0] == "clean"}
    expected, bound = [], []
    for r, role in enumerate(roles):
        top = max(value[v] for v in role.calibration)
        assert 27 <= len(role.calibration) <= 30
        flagged = 0
        for c in range(40):
            rng = np.random.default_rng(sets.derive_seed(seed, "drift_eval/control", r, 5, c))
            sample = sets.draw_sample(list(role.test), clean, 5, rng, 1)
            (vol,) = {v for v, ids in clean.items() if sample[0] in ids}
            flagged += value[vol] > top
        expected.append(round(flagged / 40, 6))
        bound.append(1 / (len(role.calibration) + 1))
    assert row["fpr_by_replication"] == expected
    # the bound in expectation over partitions; what these 5 partitions give, beside it
    assert row["fpr"] <= ALPHA + 0.05 and max(bound) <= ALPHA


@pytest.mark.parametrize(
    ("volumes", "tail", "rejects", "smallest"),
    [
        (18, "greater", False, 1 / 19),  # 1/19 > 0.05: no test can reject
        (19, "greater", True, 1 / 20),  # 1/20 = alpha: the fewest calibration volumes
        (38, "two_sided", False, 2 / 39),
        (39, "two_sided", True, 2 / 40),
    ],
)
def test_a_null_of_too_few_calibration_volumes_is_recorded_as_unable_to_reject(
    volumes, tail, rejects, smallest
):
    cfg = protocol.resolve_config({"null_tail": tail, "sample_sizes": [5, 20]})
    role = Roles((), ("r1",), tuple(f"c{i:02d}" for i in range(volumes)), ("t1",))
    out = null.attainable([role], cfg)
    assert out["null_size"] == [volumes] and out["rejects"] == [rejects]
    assert out["smallest_p"] == [round(smallest, 6)]
    assert out["fpr_bound"] == [round(smallest if rejects else 0.0, 6)]


def test_the_calibration_null_finds_a_drift_beyond_the_between_volume_spread():
    """A sample is n patches of one new volume, judged against how much new volumes differ
    anyway: a drift of 4 volume sds is found at n = 20 (power >= 0.9), one of 1 sd mostly
    not (one volume cannot tell it from a volume 1 sd off: about 0.17 in theory); with no
    drift at all the 'power' is a false-alarm rate (<= alpha + 0.05)."""
    for drift, low, high in ((4.0, 0.9, 1.0), (1.0, 0.0, 0.4), (0.0, 0.0, ALPHA + 0.05)):
        plan, units, detectors = _clustered(drift=drift)
        scored = _scored(
            plan, units, detectors, 1, sample_sizes=[20], control_repetitions=10, repetitions=8
        )
        (row,) = scored["results"]
        assert low <= row["power"] <= high, (drift, row)
        assert row["power_interval"][0] <= row["power"] <= row["power_interval"][1]


def test_calibrated_p_counts_ties_against_rejection():
    assert null.calibrated_p([1.0, 2.0, 3.0], 3.0, "greater") == pytest.approx(2 / 4)
    assert null.calibrated_p([1.0, 2.0, 3.0], 3.5, "greater") == pytest.approx(1 / 4)
    # two-sided: min(1, 2 min(P_hi, P_lo)), a tie counts on both sides
    assert null.calibrated_p([1.0, 2.0, 3.0], 3.0) == 1.0  # 2 * 2/4
    assert null.calibrated_p([1.0, 2.0, 3.0], 3.5) == pytest.approx(2 / 4)  # 2 * 1/4
    assert null.calibrated_p([1.0, 2.0, 3.0], 0.5) == pytest.approx(2 / 4)  # 2 * P_lo
    assert null.calibrated_p([1.0, 2.0, 3.0], 0.5, "greater") == 1.0
    assert null.calibrated_p([1.0, 2.0, 3.0], 2.0) == 1.0  # 2 * min(3/4, 3/4), capped
    # a statistic the null equals everywhere (c2st at n = 1: always 0.5) never rejects
    assert null.calibrated_p([0.5] * 9, 0.5) == 1.0
    assert null.calibrated_p([0.5] * 9, 0.5 + 1e-13) == 1.0
    assert null.calibrated_p([], 7.0) == 1.0
    with pytest.raises(DriftEvalError, match="null tail 'less'"):
        null.calibrated_p([1.0], 1.0, "less")


@pytest.mark.parametrize(
    ("observed", "two_sided", "greater"),
    [
        (195.0, 0.05, 0.025),  # 4 draws >= observed: P_hi = 5/200, rejects both ways
        (194.0, 0.06, 0.03),  # 5 draws >= observed: two-sided does not reject
        (198.5, 0.01, 0.005),  # above every draw: the smallest p, 1/200 (x2)
        (3.0, 0.05, 0.985),  # 4 draws <= observed: P_lo = 5/200, only two-sided rejects
        (4.0, 0.06, 0.98),  # 5 draws <= observed: neither rejects
        (-1.0, 0.01, 1.0),  # below every draw
    ],
)
def test_calibrated_p_at_the_rejection_boundary_with_199_draws(observed, two_sided, greater):
    draws = [float(v) for v in range(199)]  # 0 .. 198
    assert null.calibrated_p(draws, observed) == pytest.approx(two_sided)
    assert null.calibrated_p(draws, observed, "greater") == pytest.approx(greater)
    assert (null.calibrated_p(draws, observed) <= ALPHA) is (two_sided <= ALPHA + 1e-12)


@pytest.mark.parametrize("tail", ["two_sided", "greater"])
def test_calibrated_p_rejects_exactly_alpha_of_exchangeable_statistics(tail):
    """200 exchangeable statistics, each ranked against the other 199: exactly 10 (alpha)
    reject, the 5 largest and the 5 smallest two-sided, the 10 largest one-sided."""
    values = np.random.default_rng(3).normal(size=200)
    rejected = [
        i
        for i in range(200)
        if null.calibrated_p(list(np.delete(values, i)), values[i], tail) <= ALPHA + 1e-12
    ]
    order = list(np.argsort(values))
    expected = order[:5] + order[-5:] if tail == "two_sided" else order[-10:]
    assert sorted(rejected) == sorted(int(i) for i in expected)


def _unit_files(tmp_path: Path, shift: float, count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = tmp_path / f"u{seed}-{i}.npy"
        np.save(path, rng.normal(shift, 1.0, size=(4, 4, 2)).astype(np.float32))
        paths.append(str(path))
    return paths


def test_a_python_plugin_gets_file_lists_and_its_p_value_is_used(tmp_path):
    detect = det.plugin_from_config(
        {"name": "mine", "python": "test_drift_eval:mean_shift_p_value"}
    )
    ref = _unit_files(tmp_path, 0.0, 30, 1)
    far = detect(ref, _unit_files(tmp_path, 2.0, 10, 2))
    near = detect(ref, _unit_files(tmp_path, 0.0, 10, 3))
    assert far.p_value < 1e-6 < near.p_value
    assert far.statistic == pytest.approx(-math.log10(far.p_value))


COMMAND = (
    f"{sys.executable} -c "
    "'import sys, numpy as np; from scipy.stats import ttest_ind; "
    "r=[np.load(p.strip()).mean() for p in open(sys.argv[1])]; "
    "t=[np.load(p.strip()).mean() for p in open(sys.argv[2])]; "
    "print(ttest_ind(r, t, equal_var=False).pvalue)' {reference} {test}"
)


def test_a_command_plugin_reads_the_two_lists_and_prints_a_p_value(tmp_path):
    detect = det.plugin_from_config({"name": "cmd", "command": COMMAND})
    ref = _unit_files(tmp_path, 0.0, 30, 1)
    test = _unit_files(tmp_path, 2.0, 10, 2)
    assert detect(ref, test).p_value == pytest.approx(mean_shift_p_value(ref, test), rel=1e-6)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "command": "echo {test}"}, "both {reference} and {test}"),
        ({"name": "x", "python": "nosuchmodule_xyz:f"}, "an importable function"),
        ({"name": "x"}, "a 'python' or a 'command' key"),
    ],
)
def test_a_misconfigured_plugin_fails_with_one_line_naming_it(entry, message):
    with pytest.raises(DriftEvalError, match=message) as info:
        det.plugin_from_config(entry)
    assert "\n" not in str(info.value)


def test_a_plugin_that_prints_no_p_value_or_fails_is_named(tmp_path):
    ref = _unit_files(tmp_path, 0.0, 3, 1)
    bad = det.plugin_from_config({"name": "words", "command": "echo yes {reference} {test}"})
    with pytest.raises(DriftEvalError, match="plug-in 'words' returned"):
        bad(ref, ref)
    failing = det.plugin_from_config(
        {
            "name": "boom",
            "command": f"{sys.executable} -c 'import sys; sys.exit(3)' {{reference}} {{test}}",
        }
    )
    with pytest.raises(DriftEvalError, match="plug-in 'boom' exited 3"):
        failing(ref, ref)


def _fake_bag(tmp_path: Path, tamper: bool = False) -> Path:
    data = tmp_path / "bag" / "data"
    image = data / "processed" / "imagesTr" / "mv05.nii.gz"
    drifted = data / "drift" / "noise" / "1" / "imagesTr" / "mv05.nii.gz"
    for path in (image, drifted):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"clean" if path == image else b"drifted")
    digest = hashlib.sha256(b"drifted").hexdigest()
    entry = {
        "volume": "mv05",
        "drift_type": "noise",
        "level": 1,
        "severity": 0.2,
        "reference_split_ids": ["mv01", "mv02"],
        "files": {
            kind: {
                "clean": {"path": f"{folder}/mv05.nii.gz", "sha256": "0" * 64},
                "drifted": {"path": f"noise/1/{folder}/mv05.nii.gz", "sha256": digest},
            }
            for kind, folder in (("image", "imagesTr"), ("label", "labelsTr"))
        },
    }
    if tamper:
        drifted.write_bytes(b"edited")
    (data / "drift_manifest.json").write_text(json.dumps({"variants": [entry]}))
    return tmp_path / "bag"


def test_the_plan_is_read_from_the_manifest_as_data(tmp_path):
    plan = sets.read_plan(_fake_bag(tmp_path))
    assert plan.reference == ["mv01", "mv02"]
    assert plan.held_out == ["mv05"]
    assert plan.groups == [("noise", 1)]
    assert plan.variants[("noise", 1)]["mv05"]["severity"] == 0.2


def test_a_drifted_file_that_differs_from_the_manifest_is_one_line_naming_volume_and_file(
    tmp_path,
):
    plan = sets.read_plan(_fake_bag(tmp_path, tamper=True))
    files = plan.variants[("noise", 1)]["mv05"]
    with pytest.raises(DriftEvalError) as info:
        sets.read_checked(files["image"], files["image_sha256"], "mv05")
    text = str(info.value)
    assert text.startswith("mv05: drift_eval: sha256 ")
    assert "noise/1/imagesTr/mv05.nii.gz" in text and "\n" not in text


def test_unknown_config_keys_and_detectors_are_refused():
    with pytest.raises(DriftEvalError, match="drift_eval.reps"):
        protocol.resolve_config({"reps": 3})
    with pytest.raises(DriftEvalError, match="detectors"):
        protocol.resolve_config({"detectors": ["ks", "lsdd"]})
    with pytest.raises(DriftEvalError, match="drift_eval.null_source"):
        protocol.resolve_config({"null_source": "held_out"})
    with pytest.raises(DriftEvalError, match="drift_eval.null_tail 'less'"):
        protocol.resolve_config({"null_tail": "less"})
    assert protocol.resolve_config({})["null_tail"] == "greater"


def test_the_schema_refuses_a_power_outside_0_1():
    row = {
        "detector": "ks",
        "kind": "noise",
        "level": 1,
        "severity": 0.2,
        "fraction": 1.0,
        "n": 5,
        "drifted_units": 5,
        "repetitions": 5,
        "power": 1.2,
        "power_uncalibrated": 1.0,
    }
    result = {"results": [row]}
    with pytest.raises(DriftEvalError, match="result field"):
        protocol.validate_result(result)


def test_features_see_gain_noise_and_blur_on_a_patch():
    from minivess_bundle.drift_eval.features import FEATURE_NAMES, intensity_features

    rng = np.random.default_rng(8)
    patch = rng.poisson(100, size=(32, 32, 8)).astype(np.float32)
    base = dict(zip(FEATURE_NAMES, intensity_features(patch), strict=True))
    gained = dict(zip(FEATURE_NAMES, intensity_features(patch * 2), strict=True))
    assert gained["q50"] == pytest.approx(2 * base["q50"])
    assert gained["gradient_energy"] == pytest.approx(base["gradient_energy"], rel=1e-6)
    blurred = (patch + np.roll(patch, 1, 0) + np.roll(patch, 1, 1) + np.roll(patch, 1, (0, 1))) / 4
    low = dict(zip(FEATURE_NAMES, intensity_features(blurred), strict=True))
    assert low["high_frequency_fraction"] < 0.5 * base["high_frequency_fraction"]


# --- the calibration harness (bench/calibrate_drift.py) ------------------------------------------


def _harness():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "calibrate_drift.py"
    spec = importlib.util.spec_from_file_location("calibrate_drift", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_harness_pools_seeds_with_intervals_and_judges_the_target(tmp_path):
    """bench/calibrate_drift.py on 40 small synthetic volumes, noise at levels 1 and 5, two
    seeds: drift_eval's protocol (imported), power pooled over the seeds with a Wilson
    interval, level 5 above level 1, and the verdict spelled out."""
    harness = _harness()
    plan = harness.synthetic_plan(tmp_path, 40, 24, 8, data_seed=3)
    harness.with_groups(plan, ["noise"], [1, 5])
    config = {"detectors": ["ks"], "patch": [8, 8, 4], "sample_sizes": [5]}
    config |= {"fractions": [1.0], "repetitions": 2, "harm": False, "null_sets": 2}
    # 27 pool volumes: 9 folds, 7 of them calibration (21 volumes: at least 1/alpha - 1)
    config |= {"folds": 9, "calibration_folds": 7}
    per_seed = {seed: harness.measure(plan, seed, config)[0] for seed in (1, 2)}
    table = harness.summarise(per_seed)
    cells = table["noise"]
    assert cells["1"]["trials"] == cells["5"]["trials"] == 2 * 5 * 2  # seeds x reps x folds
    assert set(cells["5"]["per_seed"]) == {"1", "2"}
    for level in ("1", "5"):
        low, high = cells[level]["interval"]
        assert low <= cells[level]["power"] <= high
    assert cells["5"]["power"] > cells["1"]["power"]
    assert cells["meets_target"] == (cells["needs"] == "nothing")


def test_calibration_sweep_applies_each_candidate_magnitude_and_restores_the_kinds_scale(
    tmp_path,
):
    """``--values noise=...``: each candidate is applied at the severity where the swept
    span gives exactly that magnitude, through drift_eval's protocol; the kind's own scale
    is back afterwards; the table is keyed by magnitude with the smallest reaching 0.9."""
    from minivess_bundle import drift

    harness = _harness()
    values = harness.parse_values(["noise=0.3,0.09", "noise=0.15"])
    assert values == {"noise": [0.09, 0.15, 0.3]}
    for bad in ("noise", "topology=1", "noise=0,0.1", "nothing=1"):
        with pytest.raises(SystemExit, match="--values"):
            harness.parse_values([bad])
    own = drift.NoiseDrift.SCALE
    config = {"detectors": ["ks"], "patch": [8, 8, 4], "sample_sizes": [5]}
    config |= {"fractions": [1.0], "repetitions": 2, "harm": False, "null_sets": 2}
    with harness.swept_scales(values) as spans:
        scale = spans["noise"]
        assert drift.NoiseDrift.SCALE is scale
        assert (scale.parameter, scale.level_1, scale.level_5) == (own.parameter, 0.09, 0.3)
        for value in values["noise"]:
            made = drift.make_drift("noise", harness.severity_of(scale, value), 1)
            assert made.amount == pytest.approx(value, rel=1e-9)
        plan = harness.synthetic_plan(tmp_path, 40, 24, 8, data_seed=3)
        candidate = harness.with_candidates(plan, values, spans)
        assert candidate == {("noise", 1): 0.09, ("noise", 2): 0.15, ("noise", 3): 0.3}
        per_seed = {1: harness.measure(plan, 1, config)[0]}
    assert drift.NoiseDrift.SCALE is own
    swept = harness.sweep_summary(harness.summarise(per_seed), candidate)["noise"]
    cells = swept["candidates"]
    assert set(cells) == {"0.09", "0.15", "0.3"}
    assert all(c["trials"] == 5 * 2 for c in cells.values())  # folds x repetitions
    assert cells["0.3"]["power"] >= cells["0.09"]["power"]
    reaching = [c["value"] for c in cells.values() if c["power"] >= 0.9]
    assert swept["smallest_reaching_high"] == (min(reaching) if reaching else None)
    assert swept["in_low_band"] == sorted(
        c["value"] for c in cells.values() if 0.05 <= c["power"] <= 0.5
    )


def test_calibration_leaves_out_volumes_a_measured_kind_cannot_act_on(tmp_path):
    """z_step at level 5 (every 6th slice) needs 7 slices: thinner synthetic volumes leave
    the pool with the workflow's reason; at level 1 (every 2nd) none does."""
    harness = _harness()
    plan = harness.synthetic_plan(tmp_path, 40, 16, 8, data_seed=3)  # mv39: 5 slices
    depth = {v: sets.read_volume(plan, v)["image"].shape[2] for v in plan.volumes}
    assert min(depth.values()) < 7 <= max(depth.values())
    assert harness.drop_unfit(plan, ["z_step", "noise"], [1]) == {}
    dropped = harness.drop_unfit(plan, ["z_step", "noise"], [1, 5])
    assert set(dropped) == {v for v, z in depth.items() if z < 7}
    assert all("needs at least 7 slices" in reason for reason in dropped.values())
    assert set(plan.volumes) == {v for v, z in depth.items() if z >= 7}
