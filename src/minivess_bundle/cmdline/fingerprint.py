"""``minivess-bundle fingerprint``: compare a renamed tree with the authors' DVC snapshot."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``fingerprint`` command's parser (its ``func`` is :func:`main`)."""
    p = subparsers.add_parser(
        "fingerprint",
        help="Compare DVC's directory hash of a renamed tree with the authors' DVC snapshot.",
        description="DVC's directory hash (as `dvc add` computes it) of ROOT, e.g. "
        "results/renamed, against the dataset authors' record of the release: 210 files, "
        "984,532,972 bytes, be49b3c0c462446c4336cdc5f2781e36.dir. A difference is a warning "
        "(exit 0), or an error (exit 1) with --strict.",
    )
    p.add_argument("root", help="the tree: imagesTr/, labelsTr/, metadata/")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="RELPATH",
        help="a file to leave out (the licence, which the authors' tree has not); repeatable",
    )
    p.add_argument("--out", help="write the check as JSON here (recorded in provenance)")
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        help="a difference is an error (unset or --no-strict: a warning)",
    )
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Check the tree, write the record, warn (or fail under ``--strict``) on a difference."""
    from ..core.fsio import write_json_atomic
    from ..fetch.fingerprint import check_tree, enforce

    result = check_tree(args.root, exclude=args.exclude)
    if args.out:
        write_json_atomic(args.out, result.record())
    enforce(result, bool(args.strict), args.root)
    return 0
