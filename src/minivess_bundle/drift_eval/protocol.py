"""The protocol: sample sizes, repetitions, seeds, the calibrated null, power and false alarms.

For every sample size ``n`` (units = patches, see :mod:`.sets`) and repetition ``r``, a
reference is drawn (every patch of ``len(reference) - h`` reference volumes, ``h`` the
number of held-out volumes) and a test sample is formed: for each (kind, level, fraction)
in the manifest, and for the **controls** (clean held-out units only). Every random draw
has its own seed derived from (global seed, purpose, kind, level, fraction, n, r), so
results do not depend on order, core count or which detectors run.

**Calibrated null.** Patches of one volume are not independent draws: a volume differs
from the reference pool as a whole (volume-level clustering), so a detector's own p-value
(which assumes independent rows) flags clean held-out data far too often. The held-out
volumes are also the same in every repetition, so a null drawn from pseudo-splits of the
reference (``null_source: reference``: ``h`` reference volumes play the held-out ones) is right
only on average over held-out sets: for the one fixed set it cannot know how those
particular volumes differ from the reference, and a sensitive detector's false-alarm rate
on the controls ends far above ``alpha`` (measured: KS 0.28 at n = 5, MMD 0.30 at n = 20).
The default null (``null_source: held_out``) is therefore **conditional on the held-out
volumes and their patch positions** and formed exactly like a control: ``null_draws``
times, ``n`` clean units of the held-out volumes (round-robin, from the same positions the
tests and controls draw from) against a freshly drawn reference. A control's statistic and
the null draws are then i.i.d. given the held-out set, so the test has level ``alpha``
whatever the held-out volumes are. (A null from other positions of the same volumes is
not enough: eight positions per volume are a finite sample, and measured on the quick
start the BBSD false-alarm rate was 0.19 at n = 20 with the null at eight other
positions.) Drift is judged against what the same volumes look like clean (the
monitoring design: the clean stream before a change calibrates the alarm), and kinds that
leave the voxels unchanged score power ``alpha``, as they should. A set whose variants
cover only some held-out volumes (gradual: one batch per volume) draws its drifted units
from those volumes alone, so its null is formed like its test, with those volumes' clean
units in place of the drifted ones (otherwise a batch's own volume would be taken for
drift). The calibrated
p-value (:func:`calibrated_p`) is two-sided by default (``null_tail: two_sided``):
``min(1, 2 min(P_hi, P_lo))``, ``P_hi = (1 + #{null >= observed}) / (1 + null_draws)``,
``P_lo`` the same with ``<=``. The null is conditional on held-out volumes that already sit
off the reference pool, so a drift that moves them *towards* the pool (attenuation, a
brightening gain, saturation ...) makes the statistic *smaller* than without drift; a
one-sided rank (``null_tail: greater``, ``P_hi`` alone) never sees it. A test rejects at
``p <= alpha``. Both calibrated and uncalibrated rates are recorded.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..fsio import write_json_atomic
from . import features as feat
from .detectors import (
    Outcome,
    c2st,
    ks_bonferroni,
    mmd_permutation,
    plugin_from_config,
    squared_distances,
)
from .sets import (
    DriftEvalError,
    Plan,
    cut_patch,
    derive_seed,
    draw_units,
    patch_corners,
    read_checked,
    read_plan,
    round_half_up,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULTS: dict[str, Any] = {
    "detectors": ["ks", "mmd", "c2st", "bbsd"],
    "patch": [32, 32, 8],
    "patches_per_volume": 8,
    "sample_sizes": [1, 2, 5, 10, 20],
    "fractions": [0.1, 0.5, 1.0],
    "repetitions": 10,
    "control_repetitions": 200,
    "null_draws": 199,
    "null_source": "held_out",
    "null_tail": "two_sided",
    "permutations": 100,
    "alpha": 0.05,
    "fpr_tolerance": 0.05,
    "difficulty": {"detector": "ks", "n": 5, "fraction": 1.0, "low": [0.05, 0.5], "high": 0.9},
    "harm": True,
    "harm_crop": [64, 64, 32],
    "device": "auto",
    "plugins": [],
}
#: how the null of each statistic is drawn (see the module docstring)
NULLS = ("held_out", "reference")
#: which side of the null a statistic is ranked on (see :func:`calibrated_p`)
TAILS = ("two_sided", "greater")
REPRESENTATION = {"ks": "features", "mmd": "embedding", "c2st": "features", "bbsd": "softmax"}
DESCRIPTION = {
    "ks": "univariate KS per intensity/texture feature (13), Bonferroni",
    "mmd": "Gaussian-kernel MMD (median heuristic), permutation p, on a seeded "
    "random projection of 8x8x4 block means of log1p intensities",
    "c2st": "classifier two-sample test: L2 logistic regression on the 13 features, "
    "balanced halves, held-out accuracy, binomial p",
    "bbsd": "BBSD: KS per softmax summary of the reference UNet (4), Bonferroni",
}


def schema() -> dict[str, Any]:
    """The JSON schema of ``drift_eval.json`` (the package's ``data/drift_eval.schema.json``)."""
    text = resources.files("minivess_bundle").joinpath("data/drift_eval.schema.json").read_text()
    return json.loads(text)


def validate_result(result: dict[str, Any]) -> dict[str, Any]:
    """Check ``result`` against :func:`schema`; a :class:`DriftEvalError` names the field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(result), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise DriftEvalError(
            f"result field {where}: {errors[0].message}",
            expected="a result matching drift_eval.schema.json",
        )
    return result


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults overlaid with ``config``; unknown keys are errors."""
    merged = json.loads(json.dumps(DEFAULTS))
    for key, value in (config or {}).items():
        if key not in DEFAULTS:
            raise DriftEvalError(
                f"config key drift_eval.{key}", expected=f"one of {sorted(DEFAULTS)}"
            )
        if isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key].update(value)
        else:
            merged[key] = value
    if merged["null_source"] not in NULLS:
        raise DriftEvalError(
            f"config drift_eval.null_source {merged['null_source']!r}", expected=f"one of {NULLS}"
        )
    if merged["null_tail"] not in TAILS:
        raise DriftEvalError(
            f"config drift_eval.null_tail {merged['null_tail']!r}", expected=f"one of {TAILS}"
        )
    unknown = [d for d in merged["detectors"] if d not in REPRESENTATION]
    if unknown:
        raise DriftEvalError(
            f"config drift_eval.detectors {unknown}", expected=f"some of {sorted(REPRESENTATION)}"
        )
    return merged


class Units:
    """Every patch of the evaluation, with its representations, indexed by unit number."""

    def __init__(self) -> None:
        self.patches: list[Any] = []
        self.scales: list[tuple[float, float]] = []
        self.features: list[Any] = []
        self.embeddings: list[Any] = []
        #: ("clean", vol) or (kind, level, vol) -> unit indices
        self.of: dict[tuple, list[int]] = {}

    def add(self, key: tuple, patches: list[Any], scale: tuple[float, float], projection) -> None:
        start = len(self.patches)
        for patch in patches:
            self.patches.append(patch)
            self.scales.append(scale)
            self.features.append(feat.intensity_features(patch))
            self.embeddings.append(feat.embedding(patch, projection))
        self.of[key] = list(range(start, len(self.patches)))


def collect_units(plan: Plan, cfg: dict[str, Any], seed: int, scorer: Any) -> Units:
    """Cut every patch (clean and drifted) and, with a :class:`.harm.HarmScorer`, score harm."""
    from .harm import volume_scale

    patch = tuple(int(p) for p in cfg["patch"])
    projection = feat.projection_matrix(derive_seed(seed, "drift_eval/projection"))
    units = Units()
    corners: dict[str, list] = {}
    want_harm = bool(cfg["harm"]) and scorer is not None

    def cut(vol: str, array) -> list:
        if vol not in corners:
            if any(s < p for s, p in zip(array.shape, patch, strict=True)):
                log.warning(
                    "%s: shape %s is smaller than the patch %s: edge-padded",
                    vol,
                    array.shape,
                    patch,
                )
            corners[vol] = patch_corners(
                array.shape,
                patch,
                int(cfg["patches_per_volume"]),
                derive_seed(seed, "drift_eval/patch", vol),
            )
        return [cut_patch(array, c, patch) for c in corners[vol]]

    for vol in plan.reference + plan.held_out:
        files = plan.clean[vol]
        array = read_checked(files["image"], files.get("image_sha256"), vol)
        units.add(("clean", vol), cut(vol, array), volume_scale(array), projection)
        if want_harm and vol in plan.held_out:
            label = read_checked(files["label"], files.get("label_sha256"), vol)
            scorer.add_clean(vol, array, label)
        log.info("%s: %d patches", vol, len(corners[vol]))
    for kind, level in plan.groups:
        for vol, files in sorted(plan.variants[(kind, level)].items()):
            clean_units = units.of[("clean", vol)]
            if files["same_image"]:
                units.of[(kind, level, vol)] = clean_units
                array = None
            else:
                array = read_checked(files["image"], files["image_sha256"], vol)
                units.add((kind, level, vol), cut(vol, array), volume_scale(array), projection)
            if want_harm:  # a label-only variant (same image) is not image harm
                label = None
                if array is not None:
                    label = read_checked(files["label"], files["label_sha256"], vol)
                scorer.add_variant(kind, level, vol, files["severity"], array, label)
            log.info("%s %s/%s: patches cut", vol, kind, level)
    return units


def within_tolerance(rate: float, alpha: float, tolerance: float) -> bool:
    """``|rate - alpha| <= tolerance`` (inclusive, with float slack)."""
    return abs(float(rate) - float(alpha)) <= float(tolerance) + 1e-12


def calibrated_p(null: list[float], observed: float, tail: str = "two_sided") -> float:
    """The rank of ``observed`` among the ``null`` statistics as a p-value.

    Every detector's statistic is oriented "larger = further from the reference" (KS and
    BBSD: ``-log10`` of the Bonferroni minimum p; MMD: the squared MMD; C2ST: the held-out
    accuracy), and ``N = len(null)``:

    - ``greater``: ``P_hi = (1 + #{null >= observed}) / (1 + N)``, a drift is only a larger
      statistic;
    - ``two_sided`` (default): ``min(1, 2 min(P_hi, P_lo))`` with
      ``P_lo = (1 + #{null <= observed}) / (1 + N)``: a statistic that moves away from its
      no-drift distribution in either direction is a change. The held-out stream's
      statistic is its distance from the reference pool, so a drift that moves the held-out
      units *towards* the pool makes it smaller than under no drift.

    Ties (within 1e-12) count on both sides, against rejection; a statistic the null equals
    everywhere gives ``p = 1``. With exchangeable draws, ``P(p <= alpha) <= alpha``.
    """
    exceed = sum(1 for value in null if value >= observed - 1e-12)
    p_hi = (1 + exceed) / (1 + len(null))
    if tail == "greater":
        return p_hi
    if tail != "two_sided":
        raise DriftEvalError(f"null tail {tail!r}", expected=f"one of {TAILS}")
    below = sum(1 for value in null if value <= observed + 1e-12)
    p_lo = (1 + below) / (1 + len(null))
    return min(1.0, 2.0 * min(p_hi, p_lo))


def make_detectors(
    cfg: dict[str, Any], reps: dict[str, Any], unit_paths: list[str] | None
) -> dict[str, Callable[[list[int], list[int], Any], Outcome]]:
    """name -> detector on (reference unit indices, test unit indices, rng)."""
    import numpy as np

    detectors: dict[str, Callable] = {}
    for name in cfg["detectors"]:
        rows = reps[REPRESENTATION[name]]
        if name in ("ks", "bbsd"):
            detectors[name] = lambda r, t, rng, rows=rows: ks_bonferroni(rows[r], rows[t])
        elif name == "mmd":
            d2 = squared_distances(rows)

            def mmd(r, t, rng, rows=rows, d2=d2):
                idx = np.asarray(list(r) + list(t))
                return mmd_permutation(
                    rows[r], rows[t], rng, int(cfg["permutations"]), d2=d2[np.ix_(idx, idx)]
                )

            detectors[name] = mmd
        elif name == "c2st":
            detectors[name] = lambda r, t, rng, rows=rows: c2st(rows[r], rows[t], rng)
    for entry in cfg["plugins"]:
        plugin = plugin_from_config(entry)
        paths = unit_paths or []
        detectors[entry["name"]] = lambda r, t, rng, f=plugin, p=paths: f(
            [p[i] for i in r], [p[i] for i in t]
        )
    return detectors


def evaluate(
    plan: Plan,
    units: Units,
    detectors: dict[str, Callable],
    cfg: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Null draws, controls and tests for every (detector, group, fraction, n)."""
    import numpy as np

    alpha = float(cfg["alpha"])
    reference, held_out = plan.reference, plan.held_out
    h = min(len(held_out), len(reference) - 1)
    keep = len(reference) - h

    def units_of(vols, key=None):
        return {v: units.of[("clean", v) if key is None else (*key, v)] for v in vols}

    clean_units = units_of(reference + held_out)

    def reference_units(rng, vols) -> list[int]:
        chosen = [vols[i] for i in sorted(rng.choice(len(vols), size=keep, replace=False))]
        return [u for v in chosen for u in clean_units[v]]

    def run_all(ref, test, *parts):
        out = {}
        for name, detect in detectors.items():
            rng = np.random.default_rng(derive_seed(seed, "drift_eval/detector", name, *parts))
            out[name] = detect(ref, test, rng)
        return out

    nulls: dict[tuple, dict[str, list[float]]] = {}

    def null_of(n, vols: tuple[str, ...] = (), k: int = 0) -> dict[str, list[float]]:
        """Every detector's null statistics at ``n``: formed like a control, or, for a set
        whose variants cover only the held-out volumes ``vols`` (gradual: one batch per
        volume), like its test with the clean units of ``vols`` in place of the ``k``
        drifted ones, so which volumes a sample comes from is not taken for drift."""
        key = (int(n), vols, int(k))
        if key in nulls:
            return nulls[key]
        stats: dict[str, list[float]] = {name: [] for name in detectors}
        for b in range(int(cfg["null_draws"])):
            extra = (*vols, k) if vols else ()
            rng = np.random.default_rng(derive_seed(seed, "drift_eval/null", n, b, *extra))
            if cfg["null_source"] == "held_out":
                # formed exactly like a control: the held-out volumes' clean units (the
                # positions every test draws from) against a freshly drawn reference
                ref = reference_units(rng, reference)
                if vols:
                    test = draw_units(list(vols), clean_units, k, rng) if k else []
                    test += draw_units(held_out, clean_units, int(n) - k, rng) if n - k else []
                else:
                    test = draw_units(held_out, clean_units, int(n), rng)
            else:
                order = list(rng.permutation(len(reference)))
                pseudo_held = [reference[i] for i in sorted(order[:h])]
                pseudo_ref = [reference[i] for i in sorted(order[h:])]
                ref = [u for v in pseudo_ref for u in clean_units[v]]
                test = draw_units(pseudo_held, clean_units, int(n), rng)
            for name, outcome in run_all(ref, test, "null", n, b, *extra).items():
                stats[name].append(outcome.statistic)
        nulls[key] = stats
        log.info("null n=%s %s: %d draws", n, " ".join(vols), cfg["null_draws"])
        return stats

    for n in cfg["sample_sizes"]:
        null_of(n)

    def score(outcomes, null, sample: tuple = ()) -> dict[str, tuple[bool, bool]]:
        out = {}
        for name, o in outcomes.items():
            p = calibrated_p(null[name], o.statistic, cfg["null_tail"])
            if sample:  # the harm AUROC ranks test samples by their calibrated p
                pvalues.setdefault((name, *sample), []).append(p)
            out[name] = (p <= alpha, o.p_value <= alpha)
        return out

    pvalues: dict[tuple, list[float]] = {}

    fpr = []
    for n in cfg["sample_sizes"]:
        hits = {name: [0, 0] for name in detectors}
        reps = int(cfg["control_repetitions"])
        for r in range(reps):
            rng = np.random.default_rng(derive_seed(seed, "drift_eval/control", n, r))
            ref = reference_units(rng, reference)
            test = draw_units(held_out, clean_units, int(n), rng)
            outcomes = run_all(ref, test, "control", n, r)
            for name, (cal, raw) in score(outcomes, null_of(n)).items():
                hits[name][0] += cal
                hits[name][1] += raw
        for name in detectors:
            rate = hits[name][0] / reps
            fpr.append(
                {
                    "detector": name,
                    "n": int(n),
                    "repetitions": reps,
                    "fpr": round(rate, 6),
                    "fpr_uncalibrated": round(hits[name][1] / reps, 6),
                    "within_tolerance": within_tolerance(rate, alpha, cfg["fpr_tolerance"]),
                }
            )
        log.info("controls n=%s done", n)

    results = []
    for kind, level in plan.groups:
        variants = plan.variants[(kind, level)]
        drifted_units = units_of(sorted(variants), (kind, level))
        severity = sorted({v["severity"] for v in variants.values()})
        for fraction in cfg["fractions"]:
            for n in cfg["sample_sizes"]:
                k = round_half_up(float(fraction) * int(n))
                partial = cfg["null_source"] == "held_out" and set(variants) != set(held_out)
                null = null_of(n, tuple(sorted(variants)), k) if partial and k else null_of(n)
                hits = {name: [0, 0] for name in detectors}
                reps = int(cfg["repetitions"])
                for r in range(reps):
                    rng = np.random.default_rng(
                        derive_seed(seed, "drift_eval/test", kind, level, fraction, n, r)
                    )
                    ref = reference_units(rng, reference)
                    test = draw_units(sorted(variants), drifted_units, k, rng) if k else []
                    test += draw_units(held_out, clean_units, int(n) - k, rng) if n - k else []
                    outcomes = run_all(ref, test, "test", kind, level, fraction, n, r)
                    sample = (kind, int(level), float(fraction), int(n))
                    for name, (cal, raw) in score(outcomes, null, sample).items():
                        hits[name][0] += cal
                        hits[name][1] += raw
                for name in detectors:
                    results.append(
                        {
                            "detector": name,
                            "kind": kind,
                            "level": int(level),
                            "severity": severity[0] if len(severity) == 1 else severity,
                            "fraction": float(fraction),
                            "n": int(n),
                            "drifted_units": k,
                            "repetitions": reps,
                            "power": round(hits[name][0] / reps, 6),
                            "power_uncalibrated": round(hits[name][1] / reps, 6),
                        }
                    )
        log.info("%s/%s done", kind, level)
    return {"results": results, "false_positive_rate": fpr, "pvalues": pvalues}


def difficulty(results: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per kind: power by level of the difficulty detector at (n, fraction), vs the target."""
    spec = cfg["difficulty"]
    low_lo, low_hi = (float(v) for v in spec["low"])
    high = float(spec["high"])
    kinds: dict[str, Any] = {}
    for row in results:
        if (
            row["detector"] == spec["detector"]
            and row["n"] == int(spec["n"])
            and math.isclose(row["fraction"], float(spec["fraction"]))
        ):
            kinds.setdefault(row["kind"], {})[str(row["level"])] = row["power"]
    out = {}
    for kind, by_level in sorted(kinds.items()):
        levels = sorted(by_level, key=int)
        first, last = by_level[levels[0]], by_level[levels[-1]]
        needs = []
        if first > low_hi:
            needs.append(
                f"level {levels[0]} is too easy (power {first:.2f} > {low_hi}): "
                "a smaller severity at the low end"
            )
        if first < low_lo:
            needs.append(f"level {levels[0]} power {first:.2f} < {low_lo}")
        if last < high:
            needs.append(
                f"level {levels[-1]} is too subtle (power {last:.2f} < {high}): "
                "a larger severity at the high end"
            )
        out[kind] = {
            "power_by_level": by_level,
            "meets_target": not needs,
            "needs": "; ".join(needs) if needs else "nothing",
        }
    return {
        "detector": spec["detector"],
        "n": int(spec["n"]),
        "fraction": float(spec["fraction"]),
        "target": {"lowest_level_power": [low_lo, low_hi], "highest_level_power_min": high},
        "kinds": out,
    }


def write_unit_files(units: Units, folder: Path) -> list[str]:
    """Each unit as ``unit-<i>.npy`` (float32 patch, x/y/z) for plug-in detectors."""
    import numpy as np

    paths = []
    for i, patch in enumerate(units.patches):
        path = folder / f"unit-{i:05d}.npy"
        np.save(path, np.asarray(patch, dtype=np.float32))
        paths.append(str(path))
    return paths


def run_drift_eval(
    bag: str | Path,
    out_json: str | Path,
    model_path: str | Path | None = None,
    reference_record: str | Path | None = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    figures: dict[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Evaluate every configured detector on the bundle ``bag``; write ``out_json``.

    ``model_path`` is the reference UNet's weights and ``reference_record`` its JSON record
    (:func:`.reference.train_reference`: the vesselness threshold, the training list); BBSD
    and harm use them, and harm needs both. ``figures`` maps ``power``, ``fpr`` and
    ``difficulty`` to PNG paths. Returns the result written.
    """
    import numpy as np

    cfg = resolve_config(config)
    plan = read_plan(bag)
    model, device, record = None, "none", None
    needs_model = "bbsd" in cfg["detectors"] or bool(cfg["harm"])
    if needs_model:
        if model_path is None or (cfg["harm"] and reference_record is None):
            raise DriftEvalError(
                "no reference model for BBSD / harm",
                expected="the drift_eval_reference rule's weights and record "
                "(results/drift_eval/reference/), or drift_eval.detectors without bbsd and "
                "drift_eval.harm false",
            )
        from ..train_smoke import load_model, select_device

        device = select_device(cfg["device"])
        model = load_model(model_path, device)
    scorer = None
    if cfg["harm"] and model is not None:
        from .harm import HarmScorer
        from .reference import UNetSegmenter, check_disjoint
        from .vesselness import VesselnessSegmenter

        record = json.loads(Path(reference_record).read_text())
        check_disjoint(record, plan.held_out)
        vesselness = VesselnessSegmenter(
            threshold=float(record["vesselness"]["threshold"]),
            sigmas=tuple(record["vesselness"]["sigmas_voxels"]),
        )
        segmenters = {"unet": UNetSegmenter(model, device), "vesselness": vesselness}
        scorer = HarmScorer(segmenters, cfg["harm_crop"], int(seed))
    units = collect_units(plan, cfg, int(seed), scorer)
    reps: dict[str, Any] = {
        "features": np.asarray(units.features),
        "embedding": np.asarray(units.embeddings),
    }
    if "bbsd" in cfg["detectors"]:
        from .harm import softmax_features

        reps["softmax"] = softmax_features(model, np.asarray(units.patches), units.scales, device)
    out_dir = Path(out_json).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".units-", dir=out_dir) as tmp:
        paths = write_unit_files(units, Path(tmp)) if cfg["plugins"] else None
        detectors = make_detectors(cfg, reps, paths)
        scored = evaluate(plan, units, detectors, cfg, int(seed))
    pvalues = scored.pop("pvalues")
    harm_sets = scorer.by_set() if scorer is not None else []
    result = {
        "schema_version": SCHEMA_VERSION,
        "generator": {"module": __name__, "package_version": __version__},
        "bundle": {
            "name": Path(bag).name,
            "reference": plan.reference,
            "held_out": plan.held_out,
            "sets": [
                {"kind": k, "level": lv, "volumes": sorted(plan.variants[(k, lv)])}
                for k, lv in plan.groups
            ],
        },
        "design": {
            "seed": int(seed),
            "config": cfg,
            "sample_unit": (
                f"one patch of {cfg['patch']} voxels (x, y, z) of a processed volume; "
                f"{cfg['patches_per_volume']} seeded positions per volume, shared by its "
                "drift variants; a sample of n units spreads over the held-out volumes "
                "round-robin; floor(fraction * n + 1/2) units are drifted"
            ),
            "reference": "every patch of len(reference) - len(held_out) reference volumes, "
            "drawn per repetition",
            "calibration": (
                "null of each statistic from n clean units of the held-out volumes (the "
                "positions the tests draw from) vs a drawn reference, formed like a control "
                "(a set whose variants cover only some held-out volumes, e.g. gradual: like "
                "its test, with those volumes' clean units in place of the drifted ones)"
                if cfg["null_source"] == "held_out"
                else "null of each statistic from pseudo-splits of the reference volumes"
            )
            + (
                ", two-sided: p = min(1, 2 min(P_hi, P_lo)), P_hi = (1 + #{null >= observed}) "
                "/ (1 + null_draws), P_lo = (1 + #{null <= observed}) / (1 + null_draws)"
                if cfg["null_tail"] == "two_sided"
                else ", one-sided: p = (1 + #{null >= observed}) / (1 + null_draws)"
            )
            + "; every statistic is larger = further from the reference; ties count "
            "against rejection",
            "detectors": {
                name: {
                    "representation": REPRESENTATION.get(name, "unit files (.npy)"),
                    "description": DESCRIPTION.get(name, "plug-in"),
                }
                for name in detectors
            },
            "feature_names": list(feat.FEATURE_NAMES),
            "units": len(units.patches),
            "device": device,
        },
        **scored,
        "difficulty": difficulty(scored["results"], cfg),
        "harm": {
            "enabled": scorer is not None,
            "crop": [int(c) for c in cfg["harm_crop"]],
            "clean": scorer.clean if scorer else {},
            "variants": scorer.variants if scorer else [],
            "by_set": harm_sets,
        },
    }
    if record is not None:
        from .harm import harm_auroc
        from .reference import reference_models

        result["reference_models"] = reference_models(record, scorer.clean)
        result["harm_auroc"] = harm_auroc(pvalues, harm_sets, float(cfg["alpha"]), int(seed))
    validate_result(result)
    write_json_atomic(out_json, result)
    if figures:
        from .figures import draw_all

        draw_all(result, figures)
    return result
