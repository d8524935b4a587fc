"""Drift: the variants of one volume and kind (``drift``), a set-level selection
(``drift-select``), a variant set's dataset.json (``drift-set``) and the manifest
(``drift-manifest``).

``drift`` and ``drift-select`` take :class:`minivess_bundle.drift.spec.DriftSpec` as JSON
(``--spec``); what the plan decides per job (levels, a kind's parameters, the reference
volumes, the pool) and the files go beside it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .common import add_spec, volume_id

log = logging.getLogger("minivess_bundle")


class _DriftKinds:
    """The drift kinds as argparse ``choices``, imported only when a ``drift`` command
    line is checked (``minivess_bundle.drift`` costs every other job ~35 ms to import)."""

    def _kinds(self) -> tuple[str, ...]:
        from ..drift.kinds import KINDS

        return tuple(KINDS)

    def __contains__(self, value: object) -> bool:
        return value in self._kinds()

    def __iter__(self):
        return iter(self._kinds())


def cmd_drift(args: argparse.Namespace) -> None:
    """Make the drift variants of one resampled volume and one kind at each --drift-level
    (one decode of the clean pair) and write each level's manifest entry."""
    import json

    from ..core import spec
    from ..core.errors import DriftError
    from ..core.fsio import write_json_atomic
    from ..drift import VariantFiles, VariantSpec, generate_drift_levels
    from ..drift.spec import DriftSpec

    stage = spec.read(DriftSpec, args.spec)
    levels = args.drift_level
    outputs = {"--out-image": args.out_image, "--out-label": args.out_label, "--entry": args.entry}
    for flag, paths in outputs.items():
        if len(paths) != len(levels):
            raise DriftError(
                f"{len(paths)} {flag} paths for {len(levels)} levels {levels}",
                volume=args.volume,
                expected=f"one {flag} per --drift-level, in the same order",
            )
    variant = VariantSpec(
        args.volume,
        args.type,
        levels[0],
        stage.seed,
        json.loads(args.params) if args.params else {},
        tuple(args.reference_ids),
    )
    files = [
        VariantFiles(
            args.image,
            args.label,
            out_image,
            out_label,
            args.clean_root or None,
            args.drift_root or None,
        )
        for out_image, out_label in zip(args.out_image, args.out_label, strict=True)
    ]
    entries = generate_drift_levels(variant, levels, files, stage.compression())
    for path, entry in zip(args.entry, entries, strict=True):
        write_json_atomic(path, entry)
        level, severity = entry["level"], entry["severity"]
        log.info("%s: %s level %s, severity %s", args.volume, args.type, level, severity)


def cmd_drift_manifest(args: argparse.Namespace) -> None:
    """Merge drift entries into drift_manifest.json (validated against its schema)."""
    import json

    from ..core.fsio import write_json_atomic
    from ..drift import merge_manifest_entries

    skipped = json.loads(args.skipped)
    for item in skipped:
        on = f" on {item['volume']}" if item.get("volume") else ""
        print(f"drift: {item['drift_type']} skipped{on}: {item['reason']}", file=sys.stderr)
    write_json_atomic(args.out, merge_manifest_entries(args.entries, skipped=skipped))


def cmd_drift_set(args: argparse.Namespace) -> None:
    """Write the dataset.json of one kind's drift variant sets, one per level (each
    ``--set-level`` with the ``--out`` in the same place), from the variants' entries."""
    import json

    from ..core.errors import DriftError
    from ..core.fsio import write_json_atomic
    from ..drift import variant_dataset_json

    if len(args.set_level) != len(args.out):
        raise DriftError(
            f"{len(args.set_level)} --set-level for {len(args.out)} --out",
            expected="one output per level",
        )
    entries = [json.loads(Path(p).read_text()) for p in args.entries]
    for level, out in zip(args.set_level, args.out, strict=True):
        chosen = [e for e in entries if str(e["level"]) == level]
        if not chosen:
            raise DriftError(
                f"no variant of {args.type} at level {level} among the entries",
                expected="at least one entry per level",
            )
        write_json_atomic(out, variant_dataset_json(args.type, level, chosen))


def cmd_drift_select(args: argparse.Namespace) -> None:
    """Choose one set-level drift set (prevalence) of clean volumes; write its dataset.json
    and manifest entry (no image is changed)."""
    from ..core import spec
    from ..core.fsio import write_json_atomic
    from ..drift.base import severity_for_level
    from ..drift.datasets import report_fractions, set_pool
    from ..drift.prevalence import generate_set
    from ..drift.spec import DriftSpec

    stage = spec.read(DriftSpec, args.spec)
    level = args.drift_level
    pool = set_pool(report_fractions(args.validation_report), args.pool, args.clean_root)
    dataset, entry = generate_set(
        args.type,
        level,
        severity_for_level(level),
        stage.seed,
        pool,
        set_dir=Path(args.out).parent,
        clean_root=args.clean_root,
        set_size=args.set_size,
        reference_ids=tuple(args.reference_ids),
    )
    write_json_atomic(args.out, dataset)
    write_json_atomic(args.entry, entry)
    log.info("%s level %s: %s", args.type, level, [v["volume"] for v in entry["volumes"]])


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the drift commands; the last parser is returned."""
    p = subparsers.add_parser("drift", help=cmd_drift.__doc__)
    p.add_argument("volume", type=volume_id)
    p.add_argument(
        "--type", required=True, choices=_DriftKinds(), metavar="KIND", help="%(choices)s"
    )
    p.add_argument(
        "--drift-level",
        type=int,
        nargs="+",
        required=True,
        help="1..5, one or more (gradual: batch k)",
    )
    add_spec(p, "drift.spec.DriftSpec")
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--params", default="", help="the plan's parameters of the kind, as JSON")
    p.add_argument("--reference-ids", nargs="*", default=[])
    p.add_argument("--clean-root", default="")
    p.add_argument("--drift-root", default="")
    p.add_argument("--out-image", nargs="+", required=True, help="one per --drift-level")
    p.add_argument("--out-label", nargs="+", required=True, help="one per --drift-level")
    p.add_argument("--entry", nargs="+", required=True, help="one per --drift-level")
    p.set_defaults(func=main, run=cmd_drift)

    p = subparsers.add_parser("drift-manifest", help=cmd_drift_manifest.__doc__)
    p.add_argument("entries", nargs="*")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--skipped", required=True, help='JSON list of {"drift_type", "reason"} not made'
    )
    p.set_defaults(func=main, run=cmd_drift_manifest)

    p = subparsers.add_parser("drift-select", help=cmd_drift_select.__doc__)
    p.add_argument("--type", required=True, choices=["prevalence"])
    p.add_argument("--drift-level", type=int, required=True, help="1..5")
    add_spec(p, "drift.spec.DriftSpec (its seed)")
    p.add_argument("--validation-report", required=True, help="foreground fraction per volume")
    p.add_argument("--pool", nargs="+", required=True, help="clean volumes to choose from")
    p.add_argument("--set-size", type=int, required=True)
    p.add_argument("--reference-ids", nargs="*", default=[])
    p.add_argument("--clean-root", required=True, help="folder holding imagesTr/, labelsTr/")
    p.add_argument("--out", required=True, help="the set's dataset.json")
    p.add_argument("--entry", required=True, help="its manifest entry (JSON)")
    p.set_defaults(func=main, run=cmd_drift_select)

    p = subparsers.add_parser("drift-set", help=cmd_drift_set.__doc__)
    p.add_argument("entries", nargs="+")
    p.add_argument("--type", required=True)
    p.add_argument("--set-level", required=True, nargs="+")
    p.add_argument("--out", required=True, nargs="+", help="one per --set-level, in order")
    p.set_defaults(func=main, run=cmd_drift_set)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
