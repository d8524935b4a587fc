"""Harm and its intervals, and the AUROC of a detector's statistic for harmful variants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from minivess_bundle.consumers.train_smoke import dice_score
from minivess_bundle.core.metrics import cldice
from minivess_bundle.drift_eval.harm import (
    HARM_THRESHOLD,
    HarmError,
    auroc,
    auroc_interval,
    cldice_from_counts,
    dice_from_counts,
    harm_interval,
    harmful,
    overlap_counts,
)


def _pairwise_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_is_one_for_a_perfect_ranking_and_zero_for_an_inverted_one():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0


def test_auroc_counts_ties_one_half():
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    # one tied pair of four: (1 + 1 + 1 + 0.5) / 4
    assert auroc([0.3, 0.5, 0.5, 0.9], [False, False, True, True]) == pytest.approx(0.875)


def test_auroc_equals_the_pairwise_count_on_random_tied_scores():
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.integers(0, 4, size=15).astype(float)
        labels = rng.random(15) < 0.4
        if labels.all() or not labels.any():
            continue
        assert auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels), abs=1e-12)


@pytest.mark.parametrize("labels", [[True, True, True], [False, False, False]])
def test_auroc_of_a_single_class_is_a_clear_error(labels):
    with pytest.raises(HarmError, match="needs both classes: .* harmful and .* harmless"):
        auroc([0.1, 0.2, 0.3], labels)


def test_auroc_refuses_nan_and_mismatched_lengths():
    with pytest.raises(HarmError, match="NaN"):
        auroc([0.1, float("nan")], [True, False])
    with pytest.raises(HarmError, match="equal 1-D"):
        auroc([0.1, 0.2, 0.3], [True, False])


def test_auroc_interval_of_a_perfect_separator_is_one_to_one():
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    labels = [False] * 3 + [True] * 3
    out = auroc_interval(scores, labels, groups=["a", "a", "b", "c", "c", "d"], seed=1, n_boot=200)
    assert out["auroc"] == 1.0 and out["interval"] == [1.0, 1.0]
    assert out["groups"] == 4 and out["positives"] == 3 and out["negatives"] == 3


def test_auroc_interval_resamples_whole_groups_and_covers_the_point():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 8)
    labels = groups % 2 == 0
    scores = rng.normal(size=80) + labels * 0.8 + rng.normal(size=10)[groups]
    out = auroc_interval(scores, labels, groups=groups, seed=2, n_boot=500)
    lo, hi = out["interval"]
    assert lo < out["auroc"] < hi
    # clustered samples: the group bootstrap is wider than the per-sample one
    naive = auroc_interval(scores, labels, seed=2, n_boot=500)["interval"]
    assert hi - lo > naive[1] - naive[0]


def test_auroc_interval_with_one_group_of_a_class_gives_no_interval():
    out = auroc_interval([0.1, 0.2, 0.9], [False, False, True], groups=["a", "b", "c"], seed=0)
    assert out["auroc"] == 1.0 and out["interval"] is None


def test_harm_threshold_is_strict_at_0_05():
    assert HARM_THRESHOLD == 0.05
    assert not harmful(0.05)
    assert harmful(0.0501)
    assert not harmful(-0.2)


def _masks(seed: int, shape=(16, 16, 8)):
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint8)
    truth[4:12, 6:9, :] = 1
    truth[7:9, :, 2:6] = 1
    pred = truth.copy()
    flip = rng.random(shape) < 0.08
    pred[flip] = 1 - pred[flip]
    return pred, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summed_block_counts_give_the_crops_dice_and_cldice(seed):
    pred, truth = _masks(seed)
    counts = overlap_counts(pred, truth, blocks=(2, 2, 2))
    assert counts.shape == (8, 7)
    assert float(dice_from_counts(counts.sum(0))) == pytest.approx(dice_score(pred, truth))
    assert float(cldice_from_counts(counts.sum(0))) == pytest.approx(cldice(pred, truth))


def test_counts_of_empty_masks_follow_the_metrics_guards():
    empty = np.zeros((8, 8, 4), np.uint8)
    full = np.ones((8, 8, 4), np.uint8)
    assert float(dice_from_counts(overlap_counts(empty, empty).sum(0))) == 1.0
    assert float(cldice_from_counts(overlap_counts(empty, empty).sum(0))) == 1.0
    assert float(cldice_from_counts(overlap_counts(empty, full).sum(0))) == 0.0


def test_an_unchanged_prediction_has_zero_harm_with_a_zero_width_interval():
    pred, truth = _masks(0)
    counts = overlap_counts(pred, truth)
    out = harm_interval([counts, counts], [counts, counts], seed=0, n_boot=200)
    assert out["dice_drop"] == 0.0 and out["dice_drop_interval"] == [0.0, 0.0]
    assert out["cldice_drop"] == 0.0 and out["cldice_drop_interval"] == [0.0, 0.0]


def test_a_prediction_that_loses_half_the_vessels_has_a_positive_harm_interval():
    clean, drifted = [], []
    for seed in range(3):
        pred, truth = _masks(seed)
        lost = pred.copy()
        lost[:, :8] = 0
        clean.append(overlap_counts(pred, truth))
        drifted.append(overlap_counts(lost, truth))
    out = harm_interval(clean, drifted, seed=4, n_boot=300)
    expected = np.mean(
        [
            dice_from_counts(c.sum(0)) - dice_from_counts(d.sum(0))
            for c, d in zip(clean, drifted, strict=True)
        ]
    )
    assert out["dice_drop"] == pytest.approx(expected, abs=1e-6)
    lo, hi = out["dice_drop_interval"]
    assert 0 < lo <= out["dice_drop"] <= hi
    assert out["volumes"] == 3 and out["blocks_per_volume"] == [8, 8, 8]


def test_harm_interval_refuses_unpaired_counts():
    pred, truth = _masks(0)
    counts = overlap_counts(pred, truth)
    with pytest.raises(HarmError, match="1 clean and 2 drifted"):
        harm_interval([counts], [counts, counts], seed=0)


class _Fixed:
    """A segmenter that predicts the image > 0.5 (a stand-in for a reference model)."""

    def segment(self, image, window):
        return (np.asarray(image)[window] > 0.5).astype(np.uint8)


def _volume(seed: int):
    pred, truth = _masks(seed)
    return truth.astype(np.float32), truth


def test_the_harm_scorer_scores_each_reference_and_leaves_label_only_variants_at_zero():
    from minivess_bundle.drift_eval.harm import HarmScorer

    scorer = HarmScorer({"unet": _Fixed(), "vesselness": _Fixed()}, crop=(16, 16, 8), seed=0)
    for vol, seed in (("mv05", 0), ("mv35", 1)):
        image, label = _volume(seed)
        scorer.add_clean(vol, image, label)
        lost = image.copy()
        lost[:, :8] = 0  # the drift erases half the vessels from the image
        scorer.add_variant("attenuation", 5, vol, 1.0, lost, label)
        scorer.add_variant("topology", 5, vol, 1.0, None, None)
    assert scorer.clean["mv05"]["dice"] == 1.0
    attenuation = [r for r in scorer.variants if r["kind"] == "attenuation"]
    topology = [r for r in scorer.variants if r["kind"] == "topology"]
    assert all(r["dice_drop"] > 0.3 and not r["label_only"] for r in attenuation)
    assert all(r["dice_drop"] == 0.0 and r["label_only"] for r in topology)
    sets = {(r["kind"], r["level"]): r for r in scorer.by_set(n_boot=200)}
    assert sets[("attenuation", 5)]["harmful"] and not sets[("topology", 5)]["harmful"]
    assert sets[("topology", 5)]["label_only"]
    unet = sets[("attenuation", 5)]["by_reference"]["unet"]
    assert unet["dice_drop"] == pytest.approx(np.mean([r["dice_drop"] for r in attenuation]))
    assert unet["dice_drop_interval"][0] <= unet["dice_drop"] <= unet["dice_drop_interval"][1]


def _sets(harm_by_kind):
    return [
        {"kind": k, "level": 5, "label_only": k == "topology", "harmful": harmful(d)}
        for k, d in harm_by_kind.items()
    ]


def test_harm_auroc_is_one_for_a_detector_that_fires_on_harmful_sets_only():
    from minivess_bundle.drift_eval.harm import harm_auroc

    sets = _sets({"attenuation": 0.2, "motion": 0.1, "noise": 0.01, "pmt": 0.0, "topology": 0})
    p = {"attenuation": 0.005, "motion": 0.01, "noise": 0.6, "pmt": 0.9, "topology": 0.001}
    pvalues = {("ks", k, 5, 1.0, 5): [p[k]] * 4 for k in p}
    pvalues.update({("ks", k, 5, 0.5, 5): [0.5] * 4 for k in p})  # another fraction: ignored
    (row,) = harm_auroc(pvalues, sets, alpha=0.05, seed=0, n_boot=200)
    assert row["auroc"] == 1.0 and row["interval"] == [1.0, 1.0]
    assert row["harmful_sets"] == ["attenuation/5", "motion/5"]
    assert row["harmless_sets"] == ["noise/5", "pmt/5"]  # topology: label-only, left out
    assert row["power_harmful"] == 1.0 and row["power_harmless"] == 0.0
    assert row["positives"] == 8 and row["negatives"] == 8


def test_harm_auroc_of_a_detector_that_fires_on_harmless_drift_is_below_one_half():
    from minivess_bundle.drift_eval.harm import harm_auroc

    sets = _sets({"attenuation": 0.2, "motion": 0.1, "noise": 0.0, "pmt": 0.0})
    p = {"attenuation": 0.7, "motion": 0.5, "noise": 0.005, "pmt": 0.01}
    (row,) = harm_auroc({("mmd", k, 5, 1.0, 10): [v] for k, v in p.items()}, sets, 0.05, 0)
    assert row["auroc"] == 0.0 and row["power_harmful"] == 0.0 and row["power_harmless"] == 1.0


def test_harm_auroc_without_a_harmful_set_says_why():
    from minivess_bundle.drift_eval.harm import harm_auroc

    sets = _sets({"noise": 0.0, "pmt": 0.05})  # 0.05 is not above the threshold
    (row,) = harm_auroc({("ks", k, 5, 1.0, 5): [0.1] for k in ("noise", "pmt")}, sets, 0.05, 0)
    assert row["auroc"] is None and row["why"] == "no harmful set"
