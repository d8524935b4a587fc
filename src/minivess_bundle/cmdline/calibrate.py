"""Calibrate: the synthetic source against a real mask."""

from __future__ import annotations

import argparse
import logging

from .common import volume_id

log = logging.getLogger("minivess_bundle")


def cmd_calibrate(args: argparse.Namespace) -> None:
    """Compare synthetic volumes with a real mask on the calibration figures."""
    from ..fetch.calibration import calibration_table

    print(calibration_table(args.real_mask, args.volume, args.seeds), end="")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the calibrate commands; the last parser is returned."""
    p = subparsers.add_parser("calibrate", help=cmd_calibrate.__doc__)
    p.add_argument("real_mask")
    p.add_argument(
        "--volume",
        type=volume_id,
        default="mv68",
        help="synthetic volume to compare (mv68 shares the real grid)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[20230301])
    p.set_defaults(func=main, run=cmd_calibrate)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
