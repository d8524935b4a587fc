"""Re-measure each image drift kind's severity scale with drift_eval's protocol, over seeds.

The protocol is drift_eval's own (imported, not copied): disjoint volume roles rotated over
folds, the null drawn from calibration volumes only, the drift applied in-process to the
test volumes with the kind's own transform, seed and context
(:func:`minivess_bundle.drift_eval.collect.drifted_image`), and the KS detector (13
intensity/texture features, Bonferroni) at ``n`` patches of one new volume, fraction 1.0.
For every kind and level the power (of the first ``--detectors`` at the first ``--n``) is
pooled over the seeds (each seed: its own roles,
patch positions and drift streams) with a Wilson interval, and judged against the target:
level-1 power in [0.05, 0.5], level-5 power >= 0.9.

The volumes are the clean volumes of a built bundle (``--bag``) or, without one, the
package's synthetic source generated in-process (``--synthetic 70 --size 64``: the
quick start's generator at a smaller size, so five seeds take minutes on 2 cores).

Label-only (topology, annotation), header-only (covariate) and set-level (prevalence)
kinds leave the voxels unchanged: an intensity detector cannot see them by design and
their power is a false-alarm rate; they are listed with that reason, not calibrated.

    python bench/calibrate_drift.py --synthetic 70 --size 64 --seeds 1 2 3 4 5 \\
        --out calibration.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
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


def synthetic_plan(folder: Path, count: int, size_xy: int, max_z: int, data_seed: int):
    """A drift_eval plan over ``count`` synthetic volumes written to ``folder``."""
    from minivess_bundle.core.nifti import make_image, minivess_header, write_nifti
    from minivess_bundle.drift_eval.sets import Plan
    from minivess_bundle.fetch.synthetic import generate_volume

    plan = Plan(bag=folder, reference=[], held_out=[])
    for i in range(1, count + 1):
        vol = f"mv{i:02d}"
        synthetic = generate_volume(data_seed, vol, size_xy, max_z)
        paths = {}
        for key, array in (("image", synthetic.image), ("label", synthetic.mask)):
            path = folder / f"{vol}_{key}.nii.gz"
            write_nifti(
                path, make_image(array, synthetic.acquisition.spacing_um, minivess_header(key))
            )
            paths[key] = str(path)
        plan.clean[vol] = paths
        plan.reference.append(vol)
    return plan


def with_groups(plan, kinds: list[str], levels: list[int]):
    """``plan`` with one in-process drift set per (kind, level) at the level's severity."""
    from minivess_bundle.drift.base import severity_for_level

    for kind in kinds:
        for level in levels:
            plan.variants[(kind, level)] = {}
            plan.recipes[(kind, level)] = {
                "kind": kind,
                "severity": severity_for_level(level),
                "target": "image",
            }
    return plan


def measure(plan, seed: int, config: dict[str, Any]) -> list[dict[str, Any]]:
    """drift_eval's result rows for one seed (KS at fraction 1.0; no model, no harm)."""
    import numpy as np

    from minivess_bundle.drift_eval import collect, protocol

    cfg = protocol.resolve_config(config)
    roles = protocol.plan_roles(plan, cfg, seed)
    units = collect.collect_units(plan, cfg, seed, roles)
    reps = {"features": np.asarray(units.features), "embedding": np.asarray(units.embeddings)}
    detectors = protocol.make_detectors(cfg, reps, None)
    scored = protocol.evaluate(plan, units, detectors, cfg, seed, roles)
    return scored["results"], scored["false_positive_rate"]


def summarise(per_seed: dict[int, list[dict[str, Any]]], low=(0.05, 0.5), high=0.9):
    """Per kind and level: power pooled over seeds with its Wilson interval, each seed's
    power, and the verdict against the target."""
    from minivess_bundle.drift_eval.intervals import wilson_interval

    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for seed, rows in per_seed.items():
        for row in rows:
            cell = cells.setdefault(
                (row["kind"], row["level"]),
                {"severity": row["severity"], "rejections": 0, "trials": 0, "per_seed": {}},
            )
            cell["rejections"] += row["rejections"]
            cell["trials"] += row["repetitions"]
            cell["per_seed"][str(seed)] = row["power"]
    kinds: dict[str, Any] = {}
    for (kind, level), cell in sorted(cells.items()):
        lo, hi = wilson_interval(cell["rejections"], cell["trials"])
        cell["power"] = round(cell["rejections"] / cell["trials"], 4)
        cell["interval"] = [round(lo, 4), round(hi, 4)]
        kinds.setdefault(kind, {})[str(level)] = cell
    for levels in kinds.values():
        first, last = levels[min(levels, key=int)], levels[max(levels, key=int)]
        verdict = []
        if not low[0] <= first["power"] <= low[1]:
            verdict.append(f"level 1 power {first['power']:.2f} outside {list(low)}")
        if last["power"] < high:
            verdict.append(f"level 5 power {last['power']:.2f} < {high}")
        levels["meets_target"] = not verdict
        levels["needs"] = "; ".join(verdict) or "nothing"
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bag", type=Path, help="a built bundle (its clean volumes)")
    parser.add_argument("--synthetic", type=int, default=70, help="synthetic volumes (no --bag)")
    parser.add_argument("--size", type=int, default=64, help="synthetic size x/y")
    parser.add_argument("--max-z", type=int, default=32, help="synthetic depth")
    parser.add_argument("--data-seed", type=int, default=20230301, help="synthetic source seed")
    parser.add_argument("--kinds", nargs="+", help="default: every image kind")
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--n", type=int, nargs="+", default=[5], help="sample sizes")
    parser.add_argument("--detectors", nargs="+", default=["ks"])
    parser.add_argument("--table", type=Path, help="also write the benchmark table (Markdown)")
    parser.add_argument("--patch", nargs=3, type=int, default=[16, 16, 8])
    parser.add_argument("--repetitions", type=int, default=4, help="per replication")
    parser.add_argument("--out", type=Path, help="write the table as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from minivess_bundle.drift.kinds import KINDS
    from minivess_bundle.drift_eval.collect import image_kinds

    kinds = args.kinds or sorted(image_kinds())
    for kind in [k for k in (args.kinds or KINDS) if k not in image_kinds()]:
        reason = NOT_IMAGE.get(kind, "batches of its base kind: calibrated through the base")
        print(f"{kind}: not calibrated ({reason})")
    kinds = [k for k in kinds if k in image_kinds()]
    config = {
        "detectors": list(args.detectors),
        "patch": list(args.patch),
        "sample_sizes": list(args.n),
        "fractions": [1.0],
        "repetitions": args.repetitions,
        "harm": False,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        if args.bag:
            from minivess_bundle.drift_eval.sets import Plan, read_plan

            read = read_plan(args.bag)
            plan = Plan(bag=read.bag, reference=read.volumes, held_out=[], clean=read.clean)
        else:
            plan = synthetic_plan(Path(tmp), args.synthetic, args.size, args.max_z, args.data_seed)
        with_groups(plan, kinds, args.levels)
        per_seed, fprs, first = {}, {}, None
        for seed in args.seeds:
            rows, fpr = measure(plan, seed, config)
            first = first or {"results": rows, "false_positive_rate": fpr, "harm": {}}
            per_seed[seed] = [r for r in rows if r["detector"] == args.detectors[0]]
            per_seed[seed] = [r for r in per_seed[seed] if r["n"] == args.n[0]]
            fprs[str(seed)] = {f"{r['detector']} n={r['n']}": r["fpr"] for r in fpr}
            log.warning("seed %d done (%.0f s)", seed, time.perf_counter() - started)
    if args.table:
        from minivess_bundle.drift_eval.figures import markdown_table

        args.table.write_text(markdown_table(first))
    table = summarise(per_seed)
    result = {
        "protocol": "drift_eval (roles, calibration-volume null, in-process drift)",
        "detector": args.detectors[0],
        "n": args.n[0],
        "fraction": 1.0,
        "seeds": args.seeds,
        "volumes": len(plan.volumes),
        "source": str(args.bag) if args.bag else f"synthetic {args.synthetic} x {args.size} px",
        "config": config,
        "false_positive_rate": fprs,
        "kinds": table,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"false-positive rate per seed: {fprs}")
    for kind, levels in table.items():
        cells = "  ".join(
            f"L{lv} {c['power']:.2f} [{c['interval'][0]:.2f}, {c['interval'][1]:.2f}]"
            for lv, c in levels.items()
            if lv.isdigit()
        )
        print(f"{kind:12s} {cells}  target: {'met' if levels['meets_target'] else levels['needs']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
