"""Helpers the command modules share: argument types and options."""

from __future__ import annotations

import argparse
import logging

from ..core.errors import MinivessError

log = logging.getLogger("minivess_bundle")


def volume_id(text: str) -> str:
    from ..core.volumes import check_volume_id

    try:
        return check_volume_id(text)
    except MinivessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_compression(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--codec",
        choices=("isal", "zlib"),
        required=True,
        help="gzip implementation for written NIfTI files",
    )
    parser.add_argument(
        "--level", type=int, required=True, help="gzip level (isal 0..3, zlib 1..9)"
    )


def log_record(record: dict) -> None:
    import json

    log.info("landed %s", json.dumps(record, sort_keys=True))
