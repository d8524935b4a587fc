"""Calibrate each image drift kind's severity scale against the KS reference detector.

For every image kind, the kind is applied in-process (the same transform, seed and
context as a drift job) to the held-out volumes of a built bundle at a list of
magnitudes (``--values``: the kind's :attr:`Drift.SCALE` parameter, e.g. the gain change)
or severities (``--severities``: the kind's own scale, to check a calibration), the
patches are cut at the positions ``drift_eval`` uses, and the power of the KS detector
(13 intensity/texture features, Bonferroni) at n patches and fraction 1.0 is measured
against the same calibrated held-out null, two-sided unless ``--null-tail greater``
(:func:`minivess_bundle.drift_eval.protocol.evaluate`, imported, not copied), with more
repetitions than the default so the curve is smooth.

Label-only (topology, annotation), header-only (covariate) and set-level (prevalence)
kinds leave the voxels unchanged: an intensity detector cannot see them by design and
their power is alpha; the harness refuses them instead of reporting a curve. ``gradual``
(its base over batches) and ``compound`` (attenuation then noise) follow from their bases:
``--severities`` checks them with their own scales.

    python bench/calibrate_drift.py results/bundle/minivess-0.1.0 --kinds intensity noise \\
        --out calibration.json

Prints one line per (kind, value): power and its binomial sd (several ``--seed``: the
mean power over the seeds, its sd across them, and each seed's power).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("calibrate_drift")

#: kinds that cannot move an intensity detector: their voxels are unchanged
NOT_IMAGE = {
    "topology": "label only: the image is unchanged",
    "annotation": "label only: the image is unchanged",
    "covariate": "header only: the voxels are unchanged",
    "prevalence": "set level: chooses clean volumes, changes none",
}


def read_volume(bag: Path, vol: str) -> dict[str, Any]:
    """The processed (image, mask, spacing in um) of ``vol`` in the bundle ``bag``."""
    from minivess_bundle.core.nifti import read_array, spacing_um

    data = bag / "data" if (bag / "data").is_dir() else bag
    header, image = read_array(data / "processed" / "imagesTr" / f"{vol}.nii.gz", vol)
    _, mask = read_array(data / "processed" / "labelsTr" / f"{vol}.nii.gz", vol)
    return {"image": image, "mask": mask, "spacing": spacing_um(header.header)}


def drifted_image(
    volume: dict[str, Any], vol: str, kind: str, severity: float, global_seed: int, value=None
):
    """The drifted image of ``vol`` as a drift job makes it (same seed and context).

    ``value``: the magnitude of the kind's :attr:`SCALE` to apply instead of its scale
    (a subclass whose level 1 and level 5 are ``value``, at severity 1).
    """
    from minivess_bundle.drift import derive_seed, make_drift
    from minivess_bundle.drift.base import Scale
    from minivess_bundle.drift.kinds import TRANSFORMS, GradualDrift

    seed = derive_seed(global_seed, vol, kind)
    context = {"spacing": volume["spacing"], "mask": volume["mask"], "volume": vol}
    if kind == "gradual":
        # one batch per severity (the base kind at that severity, the gradual stream)
        gradual = GradualDrift("intensity", 1, severity, seed)
        outputs, _ = gradual(volume["image"], **context)
        return outputs[0]
    if value is None:
        drift = make_drift(kind, severity, seed)
    else:
        cls = TRANSFORMS[kind]
        scale = Scale(cls.SCALE.parameter, float(value), float(value))
        drift = type(cls.__name__, (cls,), {"SCALE": scale})(1.0, seed)
    out, _ = drift(volume["image"], **context)
    return out


def power_curves(
    reference: dict[str, dict[str, Any]],
    held_out: dict[str, dict[str, Any]],
    grid: dict[str, list[tuple[str, float]]],
    *,
    n: int = 5,
    fraction: float = 1.0,
    repetitions: int = 50,
    null_draws: int = 199,
    control_repetitions: int = 100,
    patch=(32, 32, 8),
    patches_per_volume: int = 8,
    seed: int = 0,
    global_seed: int = 0,
    null_tail: str = "two_sided",
) -> dict[str, Any]:
    """KS power per (kind, point) of ``grid`` (kind -> [("severity" | "value", x), ...]).

    ``reference`` and ``held_out``: volume id -> :func:`read_volume`. Uses drift_eval's
    units, patch positions, null and scoring with ``detectors = [ks]`` at one ``n`` and
    one ``fraction``, ranked on ``null_tail`` (drift_eval's ``null_tail``). Returns
    ``{"false_positive_rate", "curves": {kind: [{x, power}]}}``.
    """
    import numpy as np

    from minivess_bundle.drift_eval import features as feat
    from minivess_bundle.drift_eval.protocol import (
        Units,
        evaluate,
        make_detectors,
        resolve_config,
    )
    from minivess_bundle.drift_eval.sets import Plan, cut_patch, derive_seed, patch_corners

    for kind in grid:
        if kind in NOT_IMAGE:
            raise ValueError(f"{kind}: {NOT_IMAGE[kind]}: an intensity detector cannot see it")
    cfg = resolve_config(
        {
            "detectors": ["ks"],
            "patch": list(patch),
            "patches_per_volume": patches_per_volume,
            "sample_sizes": [n],
            "fractions": [fraction],
            "repetitions": repetitions,
            "control_repetitions": control_repetitions,
            "null_draws": null_draws,
            "null_tail": null_tail,
            "harm": False,
        }
    )
    projection = feat.projection_matrix(derive_seed(seed, "drift_eval/projection"))
    units = Units()
    corners = {}

    def cut(vol, array):
        if vol not in corners:
            corners[vol] = patch_corners(
                array.shape, patch, patches_per_volume, derive_seed(seed, "drift_eval/patch", vol)
            )
        return [cut_patch(array, c, patch) for c in corners[vol]]

    for vol, volume in {**reference, **held_out}.items():
        image = np.asarray(volume["image"], dtype=np.float32)
        units.add(("clean", vol), cut(vol, image), (0.0, 1.0), projection)
    plan = Plan(bag=Path("."), reference=sorted(reference), held_out=sorted(held_out))
    labels = {}
    for kind, points in grid.items():
        for i, (how, x) in enumerate(points):
            key = (f"{kind}:{how}", i)
            labels[key] = (kind, how, x)
            plan.variants[key] = {}
            for vol, volume in sorted(held_out.items()):
                out = drifted_image(
                    volume,
                    vol,
                    kind,
                    x if how == "severity" else 1.0,
                    global_seed,
                    value=x if how == "value" else None,
                )
                units.add(
                    (*key, vol),
                    cut(vol, np.asarray(out, dtype=np.float32)),
                    (0.0, 1.0),
                    projection,
                )
                plan.variants[key][vol] = {"severity": x, "same_image": False}
            log.info("%s %s=%s: patches cut", kind, how, x)
    reps = {"features": np.asarray(units.features), "embedding": np.asarray(units.embeddings)}
    scored = evaluate(plan, units, make_detectors(cfg, reps, None), cfg, seed)
    curves: dict[str, list[dict[str, Any]]] = {}
    for row in scored["results"]:
        kind, how, x = labels[(row["kind"], row["level"])]
        p = row["power"]
        curves.setdefault(kind, []).append(
            {how: x, "power": p, "sd": round(math.sqrt(p * (1 - p) / repetitions), 4)}
        )
    for rows in curves.values():
        rows.sort(key=lambda r: r.get("value", r.get("severity")))
    return {
        "detector": "ks",
        "n": n,
        "fraction": fraction,
        "repetitions": repetitions,
        "null_draws": null_draws,
        "null_tail": null_tail,
        "false_positive_rate": scored["false_positive_rate"][0]["fpr"],
        "curves": curves,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="a built bundle (bag folder) with a drift manifest")
    parser.add_argument("--kinds", nargs="+", required=True)
    parser.add_argument("--values", nargs="+", type=float, help="magnitudes of each kind's SCALE")
    parser.add_argument("--severities", nargs="+", type=float, help="severities (own scale)")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--repetitions", type=int, default=50)
    parser.add_argument("--null-draws", type=int, default=199)
    parser.add_argument(
        "--null-tail",
        choices=["two_sided", "greater"],
        default="two_sided",
        help="rank against the null both ways (drift_eval's default) or one-sided",
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[20230301],
        help="config seed(s): drift streams and patch positions; several: per seed and mean",
    )
    parser.add_argument("--out", type=Path, help="write the curves as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from minivess_bundle.drift_eval.sets import read_plan

    skipped = [k for k in args.kinds if k in NOT_IMAGE]
    for kind in skipped:
        print(f"{kind}: not calibrated ({NOT_IMAGE[kind]}; an intensity detector scores alpha)")
    kinds = [k for k in args.kinds if k not in NOT_IMAGE]
    if not kinds:
        return 0
    points = [("value", v) for v in args.values or []]
    points += [("severity", s) for s in args.severities or []]
    if not points:
        parser.error("give --values or --severities")
    plan = read_plan(args.bag)
    started = time.perf_counter()
    reference = {v: read_volume(args.bag, v) for v in plan.reference}
    held_out = {v: read_volume(args.bag, v) for v in plan.held_out}
    runs = [
        power_curves(
            reference,
            held_out,
            {k: points for k in kinds},
            n=args.n,
            fraction=args.fraction,
            repetitions=args.repetitions,
            null_draws=args.null_draws,
            seed=seed,
            global_seed=seed,
            null_tail=args.null_tail,
        )
        for seed in args.seed
    ]
    result = {**runs[0], "seeds": args.seed}
    if len(runs) > 1:
        result["per_seed"] = {str(seed): run for seed, run in zip(args.seed, runs, strict=True)}
        for kind, rows in result["curves"].items():
            for i, row in enumerate(rows):
                powers = [run["curves"][kind][i]["power"] for run in runs]
                row["power"] = round(sum(powers) / len(powers), 4)
                row["per_seed"] = powers
                row["sd"] = round(
                    math.sqrt(sum((p - row["power"]) ** 2 for p in powers) / len(powers)), 4
                )
    result["held_out"] = sorted(held_out)
    result["reference_volumes"] = len(reference)
    result["seconds"] = round(time.perf_counter() - started, 1)
    fprs = " ".join(f"{run['false_positive_rate']:.3f}" for run in runs)
    print(f"false-positive rate (controls): {fprs}")
    for kind, rows in result["curves"].items():
        for row in rows:
            how = "value" if "value" in row else "severity"
            line = f"{kind:12s} {how} {row[how]:<8g} power {row['power']:.2f} ± {row['sd']:.2f}"
            if "per_seed" in row:
                line += "  (" + " ".join(f"{p:.2f}" for p in row["per_seed"]) + ")"
            print(line)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
