"""Inventory: the renamed tree's pairs, sizes and sha256 (the rename itself is a move inside
each fetch job: :mod:`minivess_bundle.fetch.rename`)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("minivess_bundle")


def cmd_inventory(args: argparse.Namespace) -> None:
    """Write the pairs found in a tree, with sizes and sha256, as JSON."""
    from ..core.fsio import write_json_atomic
    from ..fetch.rename import inventory

    result = inventory(args.data_dir)
    write_json_atomic(args.out, result)
    log.info("%d volume pairs in %s", result["count"], args.data_dir)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the inventory command; its parser is returned."""
    p = subparsers.add_parser("inventory", help=cmd_inventory.__doc__)
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_inventory)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
