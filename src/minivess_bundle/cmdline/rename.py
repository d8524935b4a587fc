"""Rename: EBRAINS layout to imagesTr/labelsTr/metadata (bytes untouched); place; inventory."""

from __future__ import annotations

import argparse
import logging

from .common import volume_id

log = logging.getLogger("minivess_bundle")


def cmd_rename(args: argparse.Namespace) -> None:
    """Place one volume's files under their imagesTr/labelsTr/metadata names."""
    from ..fetch.rename import rename_volume

    rename_volume(
        args.volume,
        {"image": args.image, "label": args.label, "metadata": args.metadata},
        {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata},
    )


def cmd_place(args: argparse.Namespace) -> None:
    """Place one file's exact bytes at a new path (hardlink, else verified copy)."""
    from ..fetch.rename import place_file

    place_file(args.source, args.target)


def cmd_inventory(args: argparse.Namespace) -> None:
    """Write the pairs found in a tree, with sizes and sha256, as JSON."""
    from ..core.fsio import write_json_atomic
    from ..fetch.rename import inventory

    result = inventory(args.data_dir)
    write_json_atomic(args.out, result)
    log.info("%d volume pairs in %s", result["count"], args.data_dir)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the rename commands; the last parser is returned."""
    p = subparsers.add_parser("rename", help=cmd_rename.__doc__)
    p.add_argument("volume", type=volume_id)
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--{role}", required=True)
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=main, run=cmd_rename)

    p = subparsers.add_parser("place", help=cmd_place.__doc__)
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(func=main, run=cmd_place)

    p = subparsers.add_parser("inventory", help=cmd_inventory.__doc__)
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_inventory)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
