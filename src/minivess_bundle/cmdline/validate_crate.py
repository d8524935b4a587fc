"""``minivess-bundle validate-crate``: roc-validator on a bag's RO-Crate, with no network."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``validate-crate`` command's parser (its ``func`` is :func:`main`)."""
    from ..consumers.crate import DEFAULT_PROFILE, SEVERITIES

    p = subparsers.add_parser(
        "validate-crate",
        help="Validate a bag's RO-Crate with roc-validator, offline (context shipped).",
        description="Run roc-validator (the test extra) on BAG/data/ro-crate-metadata.json "
        "with no network: the RO-Crate 1.3 JSON-LD context the crate names is shipped with "
        "minivess-bundle and put in roc-validator's HTTP cache first. Exit 0 when the crate "
        "passes at the severity, 1 when it does not (each issue printed).",
    )
    p.add_argument("bag", help="a bag (or a folder holding ro-crate-metadata.json)")
    p.add_argument("--severity", choices=SEVERITIES, default="REQUIRED")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="a roc-validator profile id")
    p.add_argument("--cache", help="keep roc-validator's HTTP cache here (default: temporary)")
    p.add_argument("--json", help="also write roc-validator's JSON report here")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Validate, print the verdict and the issues; 0 if passed, else 1."""
    from ..consumers.crate import summary, validate_crate
    from ..core.fsio import write_json_atomic

    report = validate_crate(args.bag, args.severity, args.profile, args.cache)
    if args.json:
        write_json_atomic(args.json, report)
    print("\n".join(summary(report, args.severity)))
    return 0 if report.get("passed") else 1
