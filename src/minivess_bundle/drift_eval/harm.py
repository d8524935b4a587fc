"""The segmentation model the ``check`` target trains: BBSD inputs and harm labels.

Imports torch (the ``train`` extra) inside the functions; the pipeline's own jobs never
import this module. The model sees what it was trained on: each volume scaled by its own
1st/99.9th percentiles to [0, 1] and clipped (``ScaleIntensityRangePercentilesd``), a
drifted volume by the drifted volume's percentiles.

- :func:`softmax_features`: per patch, four summaries of the vessel probability
  (:data:`SOFTMAX_NAMES`): the BBSD representation;
- :func:`segment_scores`: Dice and clDice (:func:`minivess_bundle.core.metrics.cldice`) of the
  model's argmax on the central crop (at most ``crop`` voxels, trimmed to a multiple of 4)
  of a volume against that volume's mask. The harm of a variant is the clean score minus
  the drifted one, on the same crop.

Harm with intervals and whether a detector predicts it (pure functions, no torch):

- :func:`overlap_counts`: the voxel and centreline counts of a prediction against a mask,
  per block of a crop (the bootstrap's patches); :func:`dice_from_counts` and
  :func:`cldice_from_counts` turn summed counts back into Dice and clDice (summed over every
  block they equal :func:`dice_score` and :func:`minivess_bundle.core.metrics.cldice` on the crop);
- :func:`harm_interval`: the mean Dice and clDice drop over volumes with a 95 % percentile
  bootstrap, resampling volumes and, within each, its blocks (clean and drifted paired);
- :func:`auroc` and :func:`auroc_interval`: the area under the ROC curve of a statistic
  for harmful vs harmless samples (Mann-Whitney, ties count one half), with a bootstrap
  over groups (the variant sets a sample came from: samples of one set are not
  independent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .sets import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

SOFTMAX_NAMES = ("mean_probability", "foreground_fraction", "mean_entropy", "p95_probability")
PERCENTILES = (1.0, 99.9)
BATCH = 32


def volume_scale(array: np.ndarray) -> tuple[float, float]:
    """The volume's (1st, 99.9th) percentiles: the model's intensity window."""
    import numpy as np

    lo, hi = np.percentile(array, PERCENTILES)
    return float(lo), float(hi)


def normalise(patch: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    import numpy as np

    lo, hi = scale
    width = hi - lo if hi > lo else 1.0
    return np.clip((np.asarray(patch, dtype=np.float32) - lo) / width, 0.0, 1.0)


def probabilities(model: torch.nn.Module, batch: np.ndarray, device: str) -> np.ndarray:
    """Vessel probabilities (softmax channel 1) of a batch of normalised patches (B, x, y, z)."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(batch), BATCH):
            chunk = torch.from_numpy(np.ascontiguousarray(batch[start : start + BATCH]))
            logits = model(chunk[:, None].to(device).float())
            out.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *batch.shape[1:]), np.float32)


def softmax_summary(prob: np.ndarray) -> np.ndarray:
    """The :data:`SOFTMAX_NAMES` of one patch's vessel probabilities."""
    import numpy as np

    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return np.array(
        [p.mean(), float((p > 0.5).mean()), entropy.mean(), np.quantile(p, 0.95)],
        dtype=np.float64,
    )


def softmax_features(
    model: torch.nn.Module, patches: np.ndarray, scales: Sequence[tuple[float, float]], device: str
) -> np.ndarray:
    """BBSD rows: the softmax summaries of each patch, scaled by its volume's window."""
    import numpy as np

    normalised = np.stack([normalise(p, s) for p, s in zip(patches, scales, strict=True)])
    prob = probabilities(model, normalised, device)
    return np.stack([softmax_summary(p) for p in prob])


def central_crop(shape: Sequence[int], crop: Sequence[int]) -> tuple[slice, ...]:
    """The central window of at most ``crop`` voxels, each side a multiple of 4 (>= 4)."""
    slices = []
    for size, want in zip(shape, crop, strict=True):
        length = max(4, (min(int(size), int(want)) // 4) * 4)
        start = max(0, (int(size) - length) // 2)
        slices.append(slice(start, start + length))
    return tuple(slices)


def segment_scores(
    model: torch.nn.Module,
    image: np.ndarray,
    label: np.ndarray,
    crop: Sequence[int],
    device: str,
) -> dict[str, Any]:
    """Dice and clDice of the model on the central crop of one volume."""
    import numpy as np

    from ..consumers.train_smoke import dice_score
    from ..core.metrics import cldice

    window = central_crop(image.shape, crop)
    part = image[window]
    pad = [(0, max(0, 4 - s)) for s in part.shape]
    scaled = np.pad(normalise(part, volume_scale(image)), pad, mode="edge")
    prob = probabilities(model, scaled[None], device)[0]
    pred = (prob > 0.5)[tuple(slice(0, s) for s in part.shape)].astype(np.uint8)
    truth = (np.asarray(label[window]) > 0).astype(np.uint8)
    return {
        "dice": round(dice_score(pred, truth), 6),
        "cldice": round(float(cldice(pred, truth)), 6),
        "crop": [[s.start, s.stop] for s in window],
    }


#: the counts :func:`overlap_counts` returns per block, in this column order
COUNTS = ("tp", "fp", "fn", "skel_pred", "skel_pred_in_truth", "skel_true", "skel_true_in_pred")
#: a variant harms the reference when its Dice drop exceeds this (issue 24: 0.05)
HARM_THRESHOLD = 0.05
BOOTSTRAP = 2000
CONFIDENCE = 0.95


class HarmError(ValueError):
    """A harm or AUROC figure cannot be computed from what it was given."""


def block_slices(shape: Sequence[int], blocks: Sequence[int]) -> list[tuple[slice, ...]]:
    """The crop cut into ``blocks`` (per axis) near-equal boxes, in C order."""
    import numpy as np

    edges = [
        np.linspace(0, int(size), min(int(b), int(size)) + 1).round().astype(int)
        for size, b in zip(shape, blocks, strict=True)
    ]
    out = []
    for i in range(len(edges[0]) - 1):
        for j in range(len(edges[1]) - 1):
            for k in range(len(edges[2]) - 1):
                out.append(
                    (
                        slice(edges[0][i], edges[0][i + 1]),
                        slice(edges[1][j], edges[1][j + 1]),
                        slice(edges[2][k], edges[2][k + 1]),
                    )
                )
    return out


def overlap_counts(
    pred: np.ndarray, truth: np.ndarray, blocks: Sequence[int] = (2, 2, 2)
) -> np.ndarray:
    """Per block, the :data:`COUNTS` of ``pred`` against ``truth`` (int64, blocks x 7).

    Centrelines are :func:`minivess_bundle.core.metrics.skeleton` of the whole masks, so a
    block's counts are the crop's counts restricted to it.
    """
    import numpy as np

    from ..core.metrics import skeleton

    a, b = np.asarray(pred) > 0, np.asarray(truth) > 0
    if a.shape != b.shape:
        raise HarmError(f"prediction {a.shape} and mask {b.shape} differ in shape")
    sa, sb = skeleton(a), skeleton(b)
    rows = []
    for box in block_slices(a.shape, blocks):
        pa, pb, ka, kb = a[box], b[box], sa[box], sb[box]
        rows.append(
            [
                np.count_nonzero(pa & pb),
                np.count_nonzero(pa & ~pb),
                np.count_nonzero(~pa & pb),
                np.count_nonzero(ka),
                np.count_nonzero(ka & pb),
                np.count_nonzero(kb),
                np.count_nonzero(kb & pa),
            ]
        )
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(COUNTS))


def dice_from_counts(counts: np.ndarray) -> np.ndarray:
    """Dice of summed counts (last axis = :data:`COUNTS`); two empty masks agree (1.0)."""
    import numpy as np

    c = np.asarray(counts, dtype=np.float64)
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    total = 2 * tp + fp + fn
    return np.where(total > 0, 2 * tp / np.where(total > 0, total, 1), 1.0)


def cldice_from_counts(counts: np.ndarray) -> np.ndarray:
    """clDice of summed counts, with :func:`minivess_bundle.core.metrics.cldice`'s guards."""
    import numpy as np

    c = np.asarray(counts, dtype=np.float64)
    pred_empty = (c[..., 0] + c[..., 1]) == 0
    true_empty = (c[..., 0] + c[..., 2]) == 0
    t_prec = c[..., 4] / np.maximum(c[..., 3], 1)
    t_sens = c[..., 6] / np.maximum(c[..., 5], 1)
    both = t_prec + t_sens
    value = np.where(both > 0, 2 * t_prec * t_sens / np.where(both > 0, both, 1), 0.0)
    value = np.where(pred_empty | true_empty, 0.0, value)
    return np.where(pred_empty & true_empty, 1.0, value)


def _percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    import numpy as np

    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return [round(float(lo), 6), round(float(hi), 6)]


def harm_interval(
    clean: Sequence[np.ndarray],
    drifted: Sequence[np.ndarray],
    seed: int,
    n_boot: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Mean Dice and clDice drop (clean - drifted) over volumes, with bootstrap intervals.

    ``clean[i]`` and ``drifted[i]`` are one volume's :func:`overlap_counts` (same blocks).
    Each bootstrap draw resamples volumes with replacement and, within each drawn volume,
    its blocks with replacement (clean and drifted stay paired), and recomputes each
    volume's drop from the summed counts. With one volume the interval is the blocks' alone.
    """
    import numpy as np

    if not clean or len(clean) != len(drifted):
        raise HarmError(f"{len(clean)} clean and {len(drifted)} drifted volumes: need >= 1 pairs")
    pairs = [(np.asarray(c), np.asarray(d)) for c, d in zip(clean, drifted, strict=True)]
    for c, d in pairs:
        if c.shape != d.shape or c.ndim != 2 or c.shape[1] != len(COUNTS):
            raise HarmError(f"counts {c.shape} and {d.shape}: expected two (blocks, 7) arrays")

    def drops(chosen: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
        dice = [dice_from_counts(c.sum(0)) - dice_from_counts(d.sum(0)) for c, d in chosen]
        cl = [cldice_from_counts(c.sum(0)) - cldice_from_counts(d.sum(0)) for c, d in chosen]
        return float(np.mean(dice)), float(np.mean(cl))

    point = drops(pairs)
    rng = np.random.default_rng(seed)
    draws = np.empty((int(n_boot), 2))
    for b in range(int(n_boot)):
        chosen = []
        for v in rng.integers(0, len(pairs), size=len(pairs)):
            c, d = pairs[v]
            idx = rng.integers(0, len(c), size=len(c))
            chosen.append((c[idx], d[idx]))
        draws[b] = drops(chosen)
    return {
        "volumes": len(pairs),
        "blocks_per_volume": [len(c) for c, _ in pairs],
        "dice_drop": round(point[0], 6),
        "dice_drop_interval": _percentile_interval(draws[:, 0], confidence),
        "cldice_drop": round(point[1], 6),
        "cldice_drop_interval": _percentile_interval(draws[:, 1], confidence),
        "bootstrap": {"draws": int(n_boot), "confidence": confidence, "seed": int(seed)},
    }


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (True = positive, harmful).

    The Mann-Whitney form: the share of (positive, negative) pairs the score ranks the
    right way round, ties counting one half. 1.0 ranks every positive above every
    negative, 0.0 the reverse, 0.5 is chance. A single class is an error.
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise HarmError(f"scores {s.shape} and labels {y.shape}: expected two equal 1-D arrays")
    if not np.isfinite(s).all():
        raise HarmError("scores hold NaN or infinity")
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        raise HarmError(
            f"AUROC needs both classes: {len(pos)} harmful and {len(neg)} harmless samples"
        )
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]), method="average")  # ties: their mean rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def auroc_interval(
    scores: Sequence[float],
    labels: Sequence[bool],
    groups: Sequence[Any] | None = None,
    seed: int = 0,
    n_boot: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """:func:`auroc` with a percentile bootstrap interval over ``groups``.

    Each draw resamples groups with replacement (each sample its own group when
    ``groups`` is None) and keeps every sample of a drawn group; a draw left with one
    class is not counted (``bootstrap.single_class_draws`` says how many). Fewer than two
    groups of either class give the point estimate and no interval (``interval`` None).
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    point = auroc(s, y)
    g = np.arange(len(s)) if groups is None else np.asarray([str(x) for x in groups])
    if len(g) != len(s):
        raise HarmError(f"{len(g)} groups for {len(s)} scores")
    names = sorted(set(g.tolist()))
    members = [np.flatnonzero(g == name) for name in names]
    classes = {bool(y[m].any()) for m in members} | {not bool(y[m].all()) for m in members}
    record: dict[str, Any] = {
        "auroc": round(point, 6),
        "positives": int(y.sum()),
        "negatives": int((~y).sum()),
        "groups": len(names),
    }
    positive_groups = sum(bool(y[m].any()) for m in members)
    negative_groups = sum(not bool(y[m].all()) for m in members)
    if positive_groups < 2 or negative_groups < 2 or classes != {True, False}:
        record["interval"] = None
        record["bootstrap"] = {"draws": 0, "why": "fewer than 2 groups of a class"}
        return record
    rng = np.random.default_rng(seed)
    values, single = [], 0
    for _ in range(int(n_boot)):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        yb = y[idx]
        if yb.all() or not yb.any():
            single += 1
            continue
        values.append(auroc(s[idx], yb))
    record["interval"] = _percentile_interval(np.asarray(values), confidence)
    record["bootstrap"] = {
        "draws": int(n_boot),
        "confidence": confidence,
        "seed": int(seed),
        "single_class_draws": single,
    }
    return record


def harmful(dice_drop: float, threshold: float = HARM_THRESHOLD) -> bool:
    """A variant harms the reference when its Dice drop is strictly above ``threshold``."""
    return float(dice_drop) > float(threshold) + 1e-12


#: the crop is cut into this many blocks per axis: the bootstrap's patches
BLOCKS = (2, 2, 2)
#: the reference whose Dice drop decides whether a variant is harmful
PRIMARY = "unet"


class HarmScorer:
    """Scores every reference segmenter on clean and drifted test volumes; builds ``harm``.

    ``segmenters`` maps a name to an object with ``segment(image, window) -> mask``
    (:class:`.reference.UNetSegmenter`, :class:`.vesselness.VesselnessSegmenter`). Each
    volume is scored on its central ``crop``: a variant whose image changed against its own
    mask (the truth on the drifted grid), a **label-only** variant (same image, a changed
    mask: topology, annotation) is not image harm at all: the prediction is unchanged, so
    its image harm is 0 by construction and it is flagged ``label_only``; what a label
    drift does to a model is the separate, named ``label_harm``.
    """

    def __init__(
        self,
        segmenters: dict[str, Any],
        crop: Sequence[int],
        seed: int,
        blocks: Sequence[int] = BLOCKS,
    ) -> None:
        if PRIMARY not in segmenters:
            raise HarmError(f"no {PRIMARY!r} among the references {sorted(segmenters)}")
        self.segmenters = dict(segmenters)
        self.crop = [int(c) for c in crop]
        self.blocks = [int(b) for b in blocks]
        self.seed = int(seed)
        self.clean: dict[str, Any] = {}
        self.variants: list[dict[str, Any]] = []
        self._clean_counts: dict[str, dict[str, np.ndarray]] = {}
        self._variant_counts: list[dict[str, np.ndarray]] = []

    def _score(self, image: np.ndarray, label: np.ndarray) -> tuple[dict, dict]:
        import numpy as np

        window = central_crop(image.shape, self.crop)
        truth = np.asarray(label)[window] > 0
        scores: dict[str, Any] = {}
        counts: dict[str, np.ndarray] = {}
        for name, segmenter in sorted(self.segmenters.items()):
            counts[name] = overlap_counts(segmenter.segment(image, window), truth, self.blocks)
            total = counts[name].sum(0)
            scores[name] = {
                "dice": round(float(dice_from_counts(total)), 6),
                "cldice": round(float(cldice_from_counts(total)), 6),
            }
        return {
            **scores[PRIMARY],
            "crop": [[s.start, s.stop] for s in window],
            "by_reference": scores,
        }, counts

    def add_clean(self, volume: str, image: np.ndarray, label: np.ndarray) -> None:
        self.clean[volume], self._clean_counts[volume] = self._score(image, label)

    def add_variant(
        self,
        kind: str,
        level: int,
        volume: str,
        severity: float,
        image: np.ndarray | None,
        label: np.ndarray | None,
    ) -> None:
        """One variant; ``image`` None marks a label-only variant (the clean image)."""
        clean = self.clean[volume]
        if image is None:
            drifted, counts = clean, self._clean_counts[volume]
        else:
            drifted, counts = self._score(image, label)
        by_reference = {}
        for name in sorted(self.segmenters):
            c, d = clean["by_reference"][name], drifted["by_reference"][name]
            by_reference[name] = {
                "clean": c,
                "drifted": d,
                "dice_drop": round(c["dice"] - d["dice"], 6),
                "cldice_drop": round(c["cldice"] - d["cldice"], 6),
            }
        self.variants.append(
            {
                "kind": kind,
                "level": int(level),
                "volume": volume,
                "severity": severity,
                "label_only": image is None,
                **{k: by_reference[PRIMARY][k] for k in ("clean", "drifted")},
                "dice_drop": by_reference[PRIMARY]["dice_drop"],
                "cldice_drop": by_reference[PRIMARY]["cldice_drop"],
                "by_reference": by_reference,
            }
        )
        self._variant_counts.append(counts)

    def by_set(
        self, threshold: float = HARM_THRESHOLD, n_boot: int = BOOTSTRAP
    ) -> list[dict[str, Any]]:
        """Per (kind, level): each reference's mean drop with its bootstrap intervals."""
        groups: dict[tuple[str, int], list[int]] = {}
        for i, row in enumerate(self.variants):
            groups.setdefault((row["kind"], row["level"]), []).append(i)
        out = []
        for (kind, level), rows in sorted(groups.items()):
            vols = [self.variants[i]["volume"] for i in rows]
            by_reference = {}
            for name in sorted(self.segmenters):
                by_reference[name] = harm_interval(
                    [self._clean_counts[v][name] for v in vols],
                    [self._variant_counts[i][name] for i in rows],
                    seed=derive_seed(self.seed, "drift_eval/harm", name, kind, level),
                    n_boot=n_boot,
                )
            primary = by_reference[PRIMARY]
            out.append(
                {
                    "kind": kind,
                    "level": int(level),
                    "volumes": len(rows),
                    "label_only": all(self.variants[i]["label_only"] for i in rows),
                    "mean_dice_drop": primary["dice_drop"],
                    "mean_cldice_drop": primary["cldice_drop"],
                    "harmful": harmful(primary["dice_drop"], threshold)
                    and not all(self.variants[i]["label_only"] for i in rows),
                    "by_reference": by_reference,
                }
            )
        return out


def harm_auroc(
    pvalues: dict[tuple, list[float]],
    by_set: list[dict[str, Any]],
    alpha: float,
    seed: int,
    fraction: float = 1.0,
    n_boot: int = BOOTSTRAP,
) -> list[dict[str, Any]]:
    """Per (detector, n): does the detector's statistic predict harm?

    ``pvalues[(detector, kind, level, fraction, n)]`` are the calibrated p-values of the
    repetitions of a test sample (:func:`.protocol.evaluate`). A sample is **harmful** when
    its (kind, level) set's mean Dice drop for the UNet exceeds :data:`HARM_THRESHOLD`
    (``by_set``'s ``harmful``); label-only sets are left out (their image is unchanged).
    The score is ``1 - p`` (a smaller calibrated p = more evidence of drift); AUROC with a
    bootstrap over (kind, level) sets, beside the rejection rate (power at ``alpha``) on
    harmful and on harmless samples. A (detector, n) with one class only gets
    ``auroc`` None and says why.
    """
    import math

    harm_of = {(r["kind"], r["level"]): r for r in by_set if not r["label_only"]}
    keys = sorted(
        {(d, n) for (d, k, lv, f, n) in pvalues if math.isclose(f, fraction)},
        key=lambda x: (x[0], x[1]),
    )
    rows = []
    for detector, n in keys:
        scores, labels, groups = [], [], []
        for (d, kind, level, f, m), values in sorted(pvalues.items(), key=str):
            if d != detector or m != n or not math.isclose(f, fraction):
                continue
            if (kind, level) not in harm_of:
                continue
            for p in values:
                scores.append(1.0 - float(p))
                labels.append(harm_of[(kind, level)]["harmful"])
                groups.append(f"{kind}/{level}")
        row: dict[str, Any] = {
            "detector": detector,
            "n": int(n),
            "fraction": float(fraction),
            "harmful_sets": sorted({g for g, y in zip(groups, labels, strict=True) if y}),
            "harmless_sets": sorted({g for g, y in zip(groups, labels, strict=True) if not y}),
        }
        pos = [s for s, y in zip(scores, labels, strict=True) if y]
        neg = [s for s, y in zip(scores, labels, strict=True) if not y]
        fired = 1.0 - float(alpha) - 1e-12
        row["power_harmful"] = round(sum(s >= fired for s in pos) / len(pos), 6) if pos else None
        row["power_harmless"] = round(sum(s >= fired for s in neg) / len(neg), 6) if neg else None
        if pos and neg:
            stats = auroc_interval(
                scores,
                labels,
                groups,
                seed=derive_seed(seed, "drift_eval/harm_auroc", detector, n),
                n_boot=n_boot,
            )
            row.update({k: stats[k] for k in ("auroc", "interval", "positives", "negatives")})
            row["bootstrap"] = stats["bootstrap"]
        else:
            row.update({"auroc": None, "interval": None, "positives": len(pos)})
            row["negatives"] = len(neg)
            row["why"] = "no harmful set" if not pos else "no harmless set"
        rows.append(row)
    return rows
