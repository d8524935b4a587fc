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
quick start's generator at a smaller size, so five seeds take minutes on 2 cores;
``--size 128 --max-z 110 --spacing 1 1 1`` is the quick start's processed data, resampled
as the workflow resamples it).

Label-only (topology, annotation), header-only (covariate) and set-level (prevalence)
kinds leave the voxels unchanged: an intensity detector cannot see them by design and
their power is a false-alarm rate; they are listed with that reason, not calibrated.

    python bench/calibrate_drift.py --synthetic 70 --size 64 --seeds 1 2 3 4 5 \\
        --out calibration.json

**Sweep** (``--values KIND=v1,v2,...``, repeatable): instead of the kind's own levels,
the power at each candidate magnitude ``v`` of the kind's :attr:`Scale.parameter` (its
physical unit), to choose a ``Scale``'s end points. The protocol is the same call: for the
run, the kind's ``SCALE`` spans the candidates (:func:`swept_scales`) and candidate ``v``
is applied at the severity where that scale gives ``v`` (:func:`severity_of`), so every
parameter the kind derives from its magnitude follows it (a kind's few severity-proportional
extras, noise's read noise, follow the severity). Each candidate is a group of its own
(drift stream: the kind's, as for its levels; test samples: the group's). The table
gives, per candidate, the power pooled over the seeds with its Wilson interval, and per
kind the smallest candidate whose pooled power is >= 0.9 (a level-5 end) and the
candidates in [0.05, 0.5] (level-1 ends). A compound sweeps through its components'
``--values``.

    python bench/calibrate_drift.py --synthetic 70 --size 64 --max-z 32 --seeds 1 2 3 4 5 \\
        --values intensity=0.1,0.3,0.5 --values noise=0.09,0.15,0.25 --out sweep.json
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


def synthetic_plan(
    folder: Path, count: int, size_xy: int, max_z: int, data_seed: int, spacing_um=None
):
    """A drift_eval plan over ``count`` synthetic volumes written to ``folder``;
    ``spacing_um`` (three um): resampled onto that grid by the resample stage's own
    :func:`minivess_bundle.resample.pair.resample_pair` (as the workflow's processed
    volumes, which drift and drift_eval read; the quick start: 1 um isotropic)."""
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
        if spacing_um is not None:
            from minivess_bundle.resample.pair import resample_pair

            out = {key: str(folder / f"{vol}_{key}_processed.nii.gz") for key in paths}
            resample_pair(
                vol, paths["image"], paths["label"], out["image"], out["label"], list(spacing_um)
            )
            for key in paths:
                Path(paths[key]).unlink()
            paths = out
        plan.clean[vol] = paths
        plan.reference.append(vol)
    return plan


def drop_unfit(plan, kinds: list[str], levels: list[int]) -> dict[str, str]:
    """Take out of ``plan`` every volume on which a measured kind cannot act at the
    highest level (the workflow's own rule, :func:`minivess_bundle.drift.plan.skip_reason`;
    e.g. z_step's top section count on a 5-slice volume): drift_eval would apply the kind
    to it as a test volume. Under :func:`swept_scales` the rule sees the swept span.
    Returns volume -> reason."""
    import numpy as np

    from minivess_bundle.drift.plan import VolumeFacts, skip_reason
    from minivess_bundle.drift_eval.sets import read_volume

    dropped: dict[str, str] = {}
    for vol in plan.volumes:
        volume = read_volume(plan, vol)
        image = volume["image"]
        p1, p99 = np.percentile(image, [1, 99])
        facts = VolumeFacts(image.shape, int(np.count_nonzero(volume["label"])), p99 - p1)
        for kind in kinds:
            reason = skip_reason(kind, facts, {"levels": list(levels)})
            if reason:
                dropped[vol] = f"{kind}: {reason}"
                break
    for vol in dropped:
        plan.clean.pop(vol)
        for role in (plan.reference, plan.held_out):
            if vol in role:
                role.remove(vol)
    return dropped


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


def parse_values(items: list[str]) -> dict[str, list[float]]:
    """``["KIND=v1,v2", ...]`` -> kind -> sorted distinct positive candidates."""
    from minivess_bundle.drift.kinds import TRANSFORMS

    out: dict[str, list[float]] = {}
    for item in items:
        kind, sep, text = item.partition("=")
        if not sep or kind not in TRANSFORMS or TRANSFORMS[kind].SCALE is None:
            scaled = sorted(k for k, c in TRANSFORMS.items() if c.SCALE is not None)
            raise SystemExit(f"--values {item!r}: expected KIND=v1,v2,... with KIND in {scaled}")
        values = sorted({float(v) for v in text.split(",") if v.strip()})
        if not values or values[0] <= 0:
            raise SystemExit(f"--values {item!r}: expected positive magnitudes")
        out[kind] = sorted({*out.get(kind, []), *values})
    return out


def severity_of(scale, value: float) -> float:
    """The severity at which ``scale`` gives ``value`` (``scale.at(s) == value``)."""
    if scale.level_1 == scale.level_5:
        return 1.0
    severity = min(1.0, (value / scale.level_5) ** (1.0 / scale.exponent))
    if abs(scale.at(severity) - value) > 1e-9 * value:  # pragma: no cover - outside the span
        raise SystemExit(f"{scale.parameter} {value} is outside {scale}")
    return severity


class swept_scales:  # noqa: N801 - a context manager, used as ``with swept_scales(...)``
    """For the ``with`` block, each swept kind's ``SCALE`` spans its candidates (same
    parameter name); the kinds' own scales are restored on exit."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        from minivess_bundle.drift.base import Scale
        from minivess_bundle.drift.kinds import TRANSFORMS

        self.classes = {kind: TRANSFORMS[kind] for kind in values}
        self.own = {kind: cls.SCALE for kind, cls in self.classes.items()}
        self.spans = {
            kind: Scale(self.own[kind].parameter, min(v), max(v)) for kind, v in values.items()
        }

    def __enter__(self) -> dict[str, Any]:
        for kind, cls in self.classes.items():
            cls.SCALE = self.spans[kind]
        return self.spans

    def __exit__(self, *exc: object) -> None:
        for kind, cls in self.classes.items():
            cls.SCALE = self.own[kind]


def with_candidates(plan, values: dict[str, list[float]], spans: dict[str, Any]):
    """``plan`` with one in-process drift set per (kind, candidate): group ``(kind, i)``
    (i = 1, 2, ... in increasing magnitude) at the severity giving the i-th candidate.
    Returns (kind, i) -> candidate."""
    candidate: dict[tuple[str, int], float] = {}
    for kind, vals in values.items():
        for i, value in enumerate(vals, 1):
            plan.variants[(kind, i)] = {}
            plan.recipes[(kind, i)] = {
                "kind": kind,
                "severity": severity_of(spans[kind], value),
                "target": "image",
            }
            candidate[(kind, i)] = value
    return candidate


def sweep_summary(
    table: dict[str, Any], candidate: dict[tuple[str, int], float], low=(0.05, 0.5), high=0.9
) -> dict[str, Any]:
    """:func:`summarise`'s pooled cells keyed by candidate magnitude, with per kind the
    smallest candidate reaching ``high`` and the candidates whose power is in ``low``."""
    out: dict[str, Any] = {}
    for kind, levels in table.items():
        cells = {}
        for key, cell in levels.items():
            if key.isdigit():
                cells[f"{candidate[(kind, int(key))]:g}"] = {
                    **cell,
                    "value": candidate[(kind, int(key))],
                }
        ordered = sorted(cells.values(), key=lambda c: c["value"])
        reach = [c["value"] for c in ordered if c["power"] >= high]
        out[kind] = {
            "candidates": cells,
            "smallest_reaching_high": reach[0] if reach else None,
            "in_low_band": [c["value"] for c in ordered if low[0] <= c["power"] <= low[1]],
        }
    return out


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
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar="UM",
        help="resample the synthetic volumes to this grid first (quick start: 1 1 1)",
    )
    parser.add_argument("--kinds", nargs="+", help="default: every image kind")
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--n", type=int, nargs="+", default=[5], help="sample sizes")
    parser.add_argument("--detectors", nargs="+", default=["ks"])
    parser.add_argument("--table", type=Path, help="also write the benchmark table (Markdown)")
    parser.add_argument("--patch", nargs=3, type=int, default=[16, 16, 8])
    parser.add_argument("--repetitions", type=int, default=4, help="per replication")
    parser.add_argument("--out", type=Path, help="write the table as JSON")
    parser.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="KIND=v1,v2,...",
        help="sweep: power at these magnitudes of KIND's scale parameter (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from minivess_bundle.drift.kinds import KINDS
    from minivess_bundle.drift_eval.collect import image_kinds

    kinds = args.kinds or sorted(image_kinds())
    values = parse_values(args.values)
    for kind in [k for k in (args.kinds or KINDS) if k not in image_kinds() and not values]:
        reason = NOT_IMAGE.get(kind, "batches of its base kind: calibrated through the base")
        print(f"{kind}: not calibrated ({reason})")
    kinds = [k for k in kinds if k in image_kinds()]
    if values:
        kinds = list(values)
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
            plan = synthetic_plan(
                Path(tmp), args.synthetic, args.size, args.max_z, args.data_seed, args.spacing
            )
        per_seed, fprs, first = {}, {}, None
        with swept_scales(values) as spans:
            dropped = drop_unfit(plan, kinds, [5] if values else args.levels)
            for vol, reason in dropped.items():
                print(f"{vol} left out: {reason}")
            if values:
                candidate = with_candidates(plan, values, spans)
            else:
                with_groups(plan, kinds, args.levels)
            for seed in args.seeds:
                rows, fpr = measure(plan, seed, config)
                first = first or {"results": rows, "false_positive_rate": fpr, "harm": {}}
                per_seed[seed] = [r for r in rows if r["detector"] == args.detectors[0]]
                per_seed[seed] = [r for r in per_seed[seed] if r["n"] == args.n[0]]
                fprs[str(seed)] = {f"{r['detector']} n={r['n']}": r["fpr"] for r in fpr}
                log.warning("seed %d done (%.0f s)", seed, time.perf_counter() - started)
    if args.table and not values:
        from minivess_bundle.drift_eval.figures import markdown_table

        args.table.write_text(markdown_table(first))
    table = summarise(per_seed)
    if values:
        table = sweep_summary(table, candidate)
    result = {
        "protocol": "drift_eval (roles, calibration-volume null, in-process drift)",
        "detector": args.detectors[0],
        "n": args.n[0],
        "fraction": 1.0,
        "seeds": args.seeds,
        "volumes": len(plan.volumes),
        "left_out": dropped,
        "source": str(args.bag)
        if args.bag
        else f"synthetic {args.synthetic} x {args.size} px, max z {args.max_z}"
        + (f", resampled to {args.spacing} um" if args.spacing else ""),
        "config": config,
        "swept": {
            kind: {"parameter": spans[kind].parameter, "values": v} for kind, v in values.items()
        },
        "false_positive_rate": fprs,
        "kinds": table,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"false-positive rate per seed: {fprs}")
    if values:
        for kind, swept in table.items():
            print(f"{kind} ({spans[kind].parameter}):")
            for value, c in sorted(swept["candidates"].items(), key=lambda x: x[1]["value"]):
                lo, hi = c["interval"]
                seeds = " ".join(f"{p:.2f}" for p in c["per_seed"].values())
                print(f"  {value:>8s}  {c['power']:.2f} [{lo:.2f}, {hi:.2f}]  per seed {seeds}")
            print(
                f"  smallest >= 0.9: {swept['smallest_reaching_high']}; "
                f"in [0.05, 0.5]: {swept['in_low_band']}"
            )
    for kind, levels in ({} if values else table).items():
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
