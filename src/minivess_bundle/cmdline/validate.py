"""Validate: the named checks of one volume pair, and the report of all of them. The
``validate`` block arrives as one ``--spec``
(:class:`minivess_bundle.validate.spec.ValidateSpec`)."""

from __future__ import annotations

import argparse
import logging

from .common import add_spec, volume_id

log = logging.getLogger("minivess_bundle")


def cmd_validate(args: argparse.Namespace) -> None:
    """Check one volume pair (and its json); write its report; fail or quarantine."""
    from ..core import spec
    from ..validate import raise_if_invalid, validate_volume, write_report
    from ..validate.spec import ValidateSpec

    stage = spec.read(ValidateSpec, args.spec)
    report = validate_volume(args.volume, args.image, args.label, args.metadata, stage.rules())
    write_report(args.out, report)
    if not report["valid"]:
        log.warning("%s: invalid (%s)", args.volume, ", ".join(report["failed_checks"]))
        if stage.on_invalid == "fail":
            raise_if_invalid(report)


def cmd_validation_report(args: argparse.Namespace) -> None:
    """Merge per-volume validation reports into validation_report.json."""
    from ..core import spec
    from ..validate import aggregate_reports, write_report
    from ..validate.spec import ValidateSpec

    merged = aggregate_reports(args.reports, spec.read(ValidateSpec, args.spec).on_invalid)
    write_report(args.out, merged)
    log.info("%d valid, %d quarantined", len(merged["valid"]), len(merged["quarantined"]))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the validate commands; the last parser is returned."""
    p = subparsers.add_parser("validate", help=cmd_validate.__doc__)
    p.add_argument("volume", type=volume_id)
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--metadata", default=None)
    add_spec(p, "validate.spec.ValidateSpec")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_validate)

    p = subparsers.add_parser("validation-report", help=cmd_validation_report.__doc__)
    p.add_argument("reports", nargs="+")
    add_spec(p, "validate.spec.ValidateSpec (its on_invalid)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_validation_report)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
