"""The protocol: disjoint volume roles, a null from calibration volumes, power and false
alarms on new volumes, each with its interval, replicated over rotating roles.

**Roles** (:mod:`.roles`): the bundle's clean volumes are split at the level of volumes
into training (the reference model's, fixed for the run), reference, calibration and test;
replication ``r`` rotates reference / calibration / test over ``folds`` folds of the
evaluation pool (and reshuffles after a full rotation). Every figure averages
``replications`` (seed x split) replications.

**Units and samples.** A unit is a patch (:mod:`.sets`: ``patches_per_volume`` seeded
positions per volume). A sample of ``n`` units comes from
``min(n, volumes_per_sample)`` volumes of one role drawn at random, units round-robin
(:func:`.sets.draw_sample`). The reference of a replication is every patch of its
reference volumes.

**Calibrated null** (:mod:`.null`): each statistic is ranked among one sample of each
calibration volume against the replication's reference (``null_sets`` such sets per
(replication, n), a test sample ranked against one of them, round robin); the rank p is
exact under exchangeable volumes, which the **controls** (clean samples of the test
volumes, new to reference and null) measure.

**Power.** A drifted test sample is a sample of the test volumes with ``k = floor(f n +
1/2)`` of its units replaced by the same patches of the volume's in-process drift variant
(:mod:`.collect`). Label-, header- and set-level kinds leave the image unchanged; their
power is a false-alarm rate by design.

Every random draw has its own seed derived from (global seed, purpose, replication, ...),
so results do not depend on order, core count or which detectors run. Every power and
FPR cell carries the per-replication rates, the pooled trials, its interval clustered by
test volume and, beside it, the Wilson interval that treats the trials as independent
(:mod:`.intervals`); a false-alarm rate is judged on its point estimate
(:func:`.null.within_tolerance`).
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
from ..core.config import default
from ..core.fsio import write_json_atomic
from . import features as feat
from .collect import collect_units, image_kinds, manifest_harm
from .detectors import (
    Outcome,
    c2st,
    evidently_preset,
    ks_bonferroni,
    mmd_permutation,
    plugin_from_config,
)
from .intervals import RESAMPLES, clustered_interval, summarise_rate
from .null import TAILS, attainable, calibrated_p, within_tolerance
from .roles import Roles, assign_roles
from .sets import (
    DriftEvalError,
    Plan,
    derive_seed,
    draw_sample,
    draw_units,
    read_plan,
    round_half_up,
)
from .table import Units, feature_table, write_feature_table, write_unit_files

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
#: The config schema's defaults of the ``drift_eval:`` block (the schema owns them).
DEFAULTS: dict[str, Any] = default("drift_eval")
REPRESENTATION = {
    "ks": "features",
    "mmd": "embedding",
    "c2st": "features",
    "bbsd": "softmax",
    "evidently": "features",
}
DESCRIPTION = {
    "ks": "univariate KS per intensity/texture feature (13), Bonferroni",
    "mmd": "Gaussian-kernel MMD (median heuristic), permutation p, on a seeded "
    "random projection of 8x8x4 block means of log1p intensities",
    "c2st": "classifier two-sample test: L2 logistic regression on the 13 features, "
    "balanced halves, held-out accuracy, binomial p",
    "bbsd": "BBSD: KS per softmax summary of the reference UNet (4), Bonferroni",
    "evidently": "Evidently DataDriftPreset as the dataset authors configure it (KS per "
    "column, threshold 0.05, drift share 0.5) on the 13 per-unit statistics; statistic: "
    "the share of drifted columns (the optional evidently extra)",
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
    if merged["seed"] is not None and (
        isinstance(merged["seed"], bool)
        or not isinstance(merged["seed"], int)
        or merged["seed"] < 0
    ):
        raise DriftEvalError(
            f"config drift_eval.seed {merged['seed']!r}", expected="null or an integer >= 0"
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
    for key in ("folds", "calibration_folds", "replications", "volumes_per_sample", "repetitions"):
        if isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < 1:
            raise DriftEvalError(
                f"config drift_eval.{key} {merged[key]!r}", expected="an integer >= 1"
            )
    return merged


def plan_roles(plan: Plan, cfg: dict[str, Any], seed: int, training=None) -> list[Roles]:
    """The roles of every replication of the run (:func:`.roles.assign_roles`)."""
    return [
        assign_roles(
            plan.volumes,
            seed,
            r,
            folds=int(cfg["folds"]),
            calibration_folds=int(cfg["calibration_folds"]),
            training=training,
        )
        for r in range(int(cfg["replications"]))
    ]


class WithStatistic:
    """A detector and a cheaper call for the same statistic (``statistic_only``), for the
    null draws, where the detector's own p-value is not used (MMD: no permutations)."""

    def __init__(self, detect: Callable, statistic_only: Callable) -> None:
        self.detect, self.statistic_only = detect, statistic_only

    def __call__(self, reference, test, rng) -> Outcome:
        return self.detect(reference, test, rng)


def make_detectors(
    cfg: dict[str, Any], reps: dict[str, Any], unit_paths: list[str] | None
) -> dict[str, Callable[[list[int], list[int], Any], Outcome]]:
    """name -> detector on (reference unit indices, test unit indices, rng)."""
    detectors: dict[str, Callable] = {}
    for name in cfg["detectors"]:
        rows = reps[REPRESENTATION[name]]
        if name in ("ks", "bbsd"):
            detectors[name] = lambda r, t, rng, rows=rows: ks_bonferroni(rows[r], rows[t])
        elif name == "mmd":
            detectors[name] = WithStatistic(
                lambda r, t, rng, rows=rows: mmd_permutation(
                    rows[r], rows[t], rng, int(cfg["permutations"])
                ),
                # a null draw needs no permutations: its statistic is all the rank p uses
                lambda r, t, rng, rows=rows: mmd_permutation(rows[r], rows[t], rng, 0),
            )
        elif name == "c2st":
            detectors[name] = lambda r, t, rng, rows=rows: c2st(rows[r], rows[t], rng)
        elif name == "evidently":
            detectors[name] = lambda r, t, rng, rows=rows: evidently_preset(
                rows[r], rows[t], feat.FEATURE_NAMES
            )
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
    roles: list[Roles],
) -> dict[str, Any]:
    """Null draws, controls and tests of every replication; every cell summarised.

    Each control's and test's outcome is kept with its sample's test volumes, so every
    cell's interval is clustered by volume (:func:`.intervals.clustered_interval`)."""
    import numpy as np

    alpha, tail = float(cfg["alpha"]), cfg["null_tail"]
    per_sample = int(cfg["volumes_per_sample"])
    names = list(detectors)
    clean = {key[1]: ids for key, ids in units.of.items() if key[0] == "clean"}

    def run_all(ref, test, *parts, statistic_only: bool = False):
        out = {}
        for name, detect in detectors.items():
            rng = np.random.default_rng(derive_seed(seed, "drift_eval/detector", name, *parts))
            # a null draw needs the statistic only (the rank p replaces the detector's own)
            call = getattr(detect, "statistic_only", detect) if statistic_only else detect
            out[name] = call(ref, test, rng)
        return out

    def null_sets(reference, calibration, n: int, r: int) -> list[dict[str, list[float]]]:
        """``null_sets`` nulls of replication ``r`` at sample size ``n``: each one sample
        per disjoint group of ``min(n, volumes_per_sample)`` calibration volumes (one per
        volume by default), formed like a test sample, against the reference."""
        out = []
        group = max(1, min(n, per_sample, len(calibration)))
        for k in range(int(cfg["null_sets"])):
            rng = np.random.default_rng(derive_seed(seed, "drift_eval/null", r, n, k))
            order = [calibration[i] for i in rng.permutation(len(calibration))]
            stats: dict[str, list[float]] = {name: [] for name in names}
            for g in range(len(order) // group):
                volumes = sorted(order[g * group : (g + 1) * group])
                draw = np.random.default_rng(derive_seed(seed, "drift_eval/null", r, n, k, g))
                sample = draw_units(volumes, clean, n, draw)
                outcomes = run_all(reference, sample, "null", r, n, k, g, statistic_only=True)
                for name, outcome in outcomes.items():
                    stats[name].append(outcome.statistic)
            out.append(stats)
        return out

    # (detector, kind, level, fraction, n) -> calibrated p of every test sample: the harm
    # AUROC ranks the samples by it (:func:`.harm.harm_auroc`)
    pvalues: dict[tuple, list[float]] = {}

    def score(outcomes, null, sample: tuple = ()) -> dict[str, tuple[bool, bool]]:
        out = {}
        for name, o in outcomes.items():
            p = calibrated_p(null[name], o.statistic, tail)
            if sample:
                pvalues.setdefault((name, *sample), []).append(p)
            out[name] = (p <= alpha, o.p_value <= alpha)
        return out

    sizes = [int(n) for n in cfg["sample_sizes"]]
    # (detector, n) / (detector, kind, level, fraction, n) -> per replication [cal, raw] hits
    fpr_hits: dict[tuple, list[list[int]]] = {(d, n): [] for d in names for n in sizes}
    test_hits: dict[tuple, list[list[int]]] = {}
    # the same keys -> (calibrated outcome, the sample's test volumes) of every sample
    samples: dict[tuple, list[tuple[bool, tuple[str, ...]]]] = {}

    # every unit's volume (the last part of its key: ("clean", vol) or (kind, level, vol))
    volume_of = {u: key[-1] for key, ids in units.of.items() for u in ids}

    def volumes_of(sample: list[int]) -> tuple[str, ...]:
        return tuple(sorted({volume_of[u] for u in sample}))

    for r, role in enumerate(roles):
        reference = [u for v in role.reference for u in clean[v]]
        calibration, test = list(role.calibration), list(role.test)
        # a drifted unit is the same patch of the drifted volume: clean unit -> drifted unit
        swap = {
            group: {
                c: d
                for v in test
                if (*group, v) in units.of
                for c, d in zip(clean[v], units.of[(*group, v)], strict=True)
            }
            for group in plan.groups
        }
        # per set, the test volumes its kind can act on (all of them, but where it cannot)
        acting = {group: [v for v in test if (*group, v) in units.of] for group in plan.groups}
        for n in sizes:
            nulls = null_sets(reference, calibration, n, r)
            sets_used = len(nulls)
            hits = {name: [0, 0] for name in names}
            for c in range(int(cfg["control_repetitions"])):
                rng = np.random.default_rng(derive_seed(seed, "drift_eval/control", r, n, c))
                sample = draw_sample(test, clean, n, rng, per_sample)
                outcomes = run_all(reference, sample, "control", r, n, c)
                for name, flags in score(outcomes, nulls[c % sets_used]).items():
                    hits[name][0] += flags[0]
                    hits[name][1] += flags[1]
                    samples.setdefault((name, n), []).append((flags[0], volumes_of(sample)))
            for name in names:
                fpr_hits[(name, n)].append(hits[name])
            for group in plan.groups:
                if not acting[group]:
                    continue
                for fraction in cfg["fractions"]:
                    k = round_half_up(float(fraction) * n)
                    hits = {name: [0, 0] for name in names}
                    for t in range(int(cfg["repetitions"])):
                        rng = np.random.default_rng(
                            derive_seed(seed, "drift_eval/test", *group, fraction, r, n, t)
                        )
                        sample = draw_sample(acting[group], clean, n, rng, per_sample)
                        sample = [swap[group][u] for u in sample[:k]] + sample[k:]
                        outcomes = run_all(reference, sample, "test", *group, fraction, r, n, t)
                        key = (group[0], int(group[1]), float(fraction), n)
                        null = nulls[t % sets_used]
                        volumes = volumes_of(sample)
                        for name, flags in score(outcomes, null, key).items():
                            hits[name][0] += flags[0]
                            hits[name][1] += flags[1]
                            cell = (name, *group, float(fraction), n)
                            samples.setdefault(cell, []).append((flags[0], volumes))
                    for name in names:
                        key = (name, *group, float(fraction), n)
                        test_hits.setdefault(key, []).append(hits[name])
            log.info("replication %d n=%d done", r, n)
    confidence = float(cfg["confidence"])

    def clustered(cell: tuple) -> dict[str, Any]:
        outcomes, volumes = zip(*samples[cell], strict=True)
        bootstrap = derive_seed(seed, "drift_eval/cluster_bootstrap", *cell)
        return clustered_interval(outcomes, volumes, bootstrap, confidence)

    fpr = []
    for (name, n), per_rep in fpr_hits.items():
        cal = summarise_rate([h[0] for h in per_rep], int(cfg["control_repetitions"]), confidence)
        raw = summarise_rate([h[1] for h in per_rep], int(cfg["control_repetitions"]), confidence)
        cluster = clustered((name, n))
        fpr.append(
            {
                "detector": name,
                "n": n,
                "replications": cal["replications"],
                "repetitions": cal["trials"],
                "false_alarms": cal["successes"],
                "fpr": cal["rate"],
                "fpr_interval": cluster["interval"],
                "fpr_interval_wilson": cal["interval_wilson"],
                "design_effect": cluster["design_effect"],
                "volumes": cluster["volumes"],
                "fpr_by_replication": cal["by_replication"],
                "fpr_uncalibrated": raw["rate"],
                "within_tolerance": within_tolerance(cal["rate"], alpha, cfg["fpr_tolerance"]),
            }
        )
    changes_image = image_kinds()
    results = []
    for (name, kind, level, fraction, n), per_rep in test_hits.items():
        recipe = plan.recipes[(kind, level)]
        cal = summarise_rate([h[0] for h in per_rep], int(cfg["repetitions"]), confidence)
        raw = summarise_rate([h[1] for h in per_rep], int(cfg["repetitions"]), confidence)
        cluster = clustered((name, kind, level, fraction, n))
        results.append(
            {
                "detector": name,
                "kind": kind,
                "level": int(level),
                "severity": recipe["severity"],
                "image_changed": recipe["target"] == "image" and recipe["kind"] in changes_image,
                "fraction": fraction,
                "n": n,
                "drifted_units": round_half_up(fraction * n),
                "replications": cal["replications"],
                "repetitions": cal["trials"],
                "rejections": cal["successes"],
                "power": cal["rate"],
                "power_interval": cluster["interval"],
                "power_interval_wilson": cal["interval_wilson"],
                "design_effect": cluster["design_effect"],
                "volumes": cluster["volumes"],
                "power_by_replication": cal["by_replication"],
                "power_uncalibrated": raw["rate"],
            }
        )
    return {"results": results, "false_positive_rate": fpr, "pvalues": pvalues}


def difficulty(results: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    """Per kind: power (with interval) by level of the difficulty detector at (n, fraction),
    against the target (lowest level in ``low``, highest level at least ``high``)."""
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
            kinds.setdefault(row["kind"], {})[str(row["level"])] = row
    out = {}
    for kind, by_level in sorted(kinds.items()):
        levels = sorted(by_level, key=int)
        first, last = by_level[levels[0]], by_level[levels[-1]]
        needs = []
        if not first["image_changed"]:
            needs.append("the image is unchanged: an image detector scores alpha by design")
        else:
            if first["power"] > low_hi:
                needs.append(
                    f"level {levels[0]} is too easy (power {first['power']:.2f} > {low_hi}): "
                    "a smaller severity at the low end"
                )
            if first["power"] < low_lo:
                needs.append(f"level {levels[0]} power {first['power']:.2f} < {low_lo}")
            if last["power"] < high:
                needs.append(
                    f"level {levels[-1]} is too subtle (power {last['power']:.2f} < {high}): "
                    "a larger severity at the high end"
                )
        out[kind] = {
            "power_by_level": {lv: row["power"] for lv, row in by_level.items()},
            "interval_by_level": {lv: row["power_interval"] for lv, row in by_level.items()},
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


def run_drift_eval(
    bag: str | Path,
    out_json: str | Path,
    model_path: str | Path | None = None,
    reference_record: str | Path | None = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    figures: dict[str, str | Path] | None = None,
    features_path: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate every configured detector on the bundle ``bag``; write ``out_json``.

    ``model_path`` is the reference UNet's weights and ``reference_record`` its JSON record
    (:func:`.reference.train_reference`: the vesselness threshold, the training list, which
    is also the roles' training role, so no test volume was ever fitted); BBSD and harm use
    them, and harm needs both. ``figures`` maps ``power``, ``fpr`` and ``difficulty`` to PNG
    paths; ``features_path``: also write the per-unit feature table (Parquet,
    :func:`feature_table`). Returns the result written.
    """
    import numpy as np

    cfg = resolve_config(config)
    bundle_seed = int(seed)
    # the evaluation's own seed (roles, patches, samples, nulls): another one replicates the
    # benchmark on the same bundle and model; the drift streams stay the bundle's
    seed = bundle_seed if cfg["seed"] is None else int(cfg["seed"])
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
        from ..consumers.train_smoke import load_model, select_device

        device = select_device(cfg["device"])
        model = load_model(model_path, device)
        if device == "cpu":
            import torch

            # batches of 20 small patches: intra-op threads do not pay, and on 2 shared
            # cores their spinning cost ten times the softmax's CPU (bench/RESULTS.md,
            # 2026-12-05); one thread leaves the other core to drift_eval_label_harm
            torch.set_num_threads(1)
    if reference_record is not None:
        record = json.loads(Path(reference_record).read_text())
    training = record["training_volumes"] if record is not None else None
    roles = plan_roles(plan, cfg, int(seed), training=training)
    scorer = None
    if cfg["harm"] and model is not None:
        from .harm import HarmScorer
        from .reference import UNetSegmenter, check_disjoint
        from .vesselness import VesselnessSegmenter

        check_disjoint(record, plan.held_out)
        check_disjoint(record, sorted({v for role in roles for v in role.test}))
        vesselness = VesselnessSegmenter(
            threshold=float(record["vesselness"]["threshold"]),
            sigmas=tuple(record["vesselness"]["sigmas_voxels"]),
        )
        segmenters = {"unet": UNetSegmenter(model, device), "vesselness": vesselness}
        scorer = HarmScorer(segmenters, cfg["harm_crop"], int(seed))
    softmax = None
    if "bbsd" in cfg["detectors"]:
        from .harm import softmax_features

        def softmax(patches, scales):
            return list(softmax_features(model, patches, scales, device))

    units = collect_units(plan, cfg, int(seed), roles, softmax, drift_seed=bundle_seed)
    manifest_harm(plan, scorer)
    reps: dict[str, Any] = {
        "features": np.asarray(units.features),
        "embedding": np.asarray(units.embeddings),
    }
    if softmax is not None:
        reps["softmax"] = np.asarray(units.softmax_rows)
    out_dir = Path(out_json).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".units-", dir=out_dir) as tmp:
        paths = write_unit_files(units, Path(tmp)) if cfg["plugins"] else None
        detectors = make_detectors(cfg, reps, paths)
        scored = evaluate(plan, units, detectors, cfg, int(seed), roles)
    pvalues = scored.pop("pvalues")
    harm_sets = scorer.by_set() if scorer is not None else []
    per_sample = int(cfg["volumes_per_sample"])
    result = {
        "schema_version": SCHEMA_VERSION,
        "generator": {"module": __name__, "package_version": __version__},
        "bundle": {
            "name": Path(bag).name,
            "volumes": plan.volumes,
            "held_out": plan.held_out,
            "sets": [
                {"kind": k, "level": lv, "volumes": sorted(plan.variants[(k, lv)])}
                for k, lv in plan.groups
            ],
        },
        "roles": {
            "training": list(roles[0].training),
            "folds": int(cfg["folds"]),
            "replications": [
                {"replication": r, **{k: v for k, v in role.as_dict().items() if k != "training"}}
                for r, role in enumerate(roles)
            ],
        },
        "design": {
            "seed": int(seed),
            "bundle_seed": bundle_seed,
            "config": cfg,
            "sample_unit": (
                f"one patch of {cfg['patch']} voxels (x, y, z) of a processed volume; "
                f"{cfg['patches_per_volume']} seeded positions per volume, shared by its "
                f"drift variants; a sample of n units comes from min(n, {per_sample}) "
                "volumes of one role drawn at random, units round-robin; "
                "floor(fraction * n + 1/2) units are drifted"
            ),
            "reference": "every patch of the replication's reference volumes",
            "calibration": (
                "null of each statistic from calibration volumes only, at the level of "
                "volumes: null_sets sets per n and replication, each one sample (formed like "
                "a test sample) of every calibration volume against the replication's "
                "reference, V statistics; a test sample is ranked against set "
                "(repetition mod null_sets)"
            )
            + (
                ", two-sided: p = min(1, 2 min(P_hi, P_lo)), P_hi = (1 + #{null >= observed}) "
                "/ (1 + V), P_lo = (1 + #{null <= observed}) / (1 + V)"
                if cfg["null_tail"] == "two_sided"
                else ", one-sided: p = (1 + #{null >= observed}) / (1 + V)"
            )
            + "; every statistic is larger = further from the reference; ties count "
            "against rejection; exact under exchangeable volumes: P(false alarm) <= "
            "floor(alpha (V + 1)) / (V + 1)",
            "attainable": attainable(roles, cfg),
            "false_alarms": "clean samples of the test volumes (new to reference and null)",
            "power": "samples of the test volumes with the drifted units taken from each "
            "volume's in-process drift variant (the drift job's kind, severity, seed and "
            "context); kinds that leave the image unchanged share the clean units",
            "interval": f"at {cfg['confidence']}, clustered by test volume: the Wilson "
            "score interval at the effective number of trials, trials / design_effect, "
            "design_effect the cluster-bootstrap variance of the rate "
            f"({RESAMPLES} resamples of the cell's test volumes with replacement) over the "
            "binomial variance, at least 1; *_interval_wilson: the Wilson interval over the "
            "pooled repetitions as if independent; within_tolerance judges the point "
            "estimate",
            "detectors": {
                name: {
                    "representation": REPRESENTATION.get(name, "unit files (.npy)"),
                    "description": DESCRIPTION.get(name, "plug-in"),
                }
                for name in detectors
            },
            "feature_names": list(feat.FEATURE_NAMES),
            "units": len(units),
            "not_applicable": units.not_applicable,
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
    if record is not None and scorer is not None:
        from .harm import harm_auroc
        from .reference import reference_models

        result["reference_models"] = reference_models(record, scorer.clean)
        result["harm_auroc"] = harm_auroc(pvalues, harm_sets, float(cfg["alpha"]), int(seed))
    validate_result(result)
    if features_path:
        write_feature_table(feature_table(units, roles, plan, harm_sets), features_path)
    write_json_atomic(out_json, result)
    if figures:
        from .figures import draw_all

        draw_all(result, figures)
    return result
