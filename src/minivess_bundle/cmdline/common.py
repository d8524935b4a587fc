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


def add_spec(parser: argparse.ArgumentParser, spec: str) -> None:
    """``--spec``: the stage's parameters, the dataclass ``spec`` names, as JSON (or @file)
    built by the package from the config (:mod:`minivess_bundle.core.spec`)."""
    parser.add_argument("--spec", required=True, help=f"the stage's {spec} as JSON, or @file")


def log_record(record: dict) -> None:
    import json

    log.info("landed %s", json.dumps(record, sort_keys=True))
