"""``minivess-bundle resample VOL --spec JSON``: one validated pair onto the target grid.

The spec is :class:`minivess_bundle.resample.spec.ResampleSpec` as JSON, built by
:meth:`~minivess_bundle.resample.spec.ResampleSpec.from_config`; the pair, its outputs and
the job's threads go beside it.
"""

from __future__ import annotations

import argparse
import logging

from ..core.errors import MinivessError
from .common import add_spec, volume_id

log = logging.getLogger("minivess_bundle")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``resample`` on the CLI's subparsers."""
    p = subparsers.add_parser("resample", help=main.__doc__)
    p.add_argument("volume", type=volume_id)
    add_spec(p, "resample.spec.ResampleSpec")
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--metadata", default="", help="the volume's json, carried over unchanged")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out-image", required=True)
    p.add_argument("--out-label", required=True)
    p.add_argument("--out-metadata", default="", help="where --metadata's bytes go")
    p.add_argument("--record", default="", help="write what was done as JSON here")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Resample one validated pair onto the target grid (z-slabs, streamed gzip); carry its
    json over."""
    import json

    from ..core import spec
    from ..core.fsio import write_json_atomic
    from ..resample import ResampleSpec, resample_pair

    stage = spec.read(ResampleSpec, args.spec)
    record = resample_pair(
        args.volume,
        args.image,
        args.label,
        args.out_image,
        args.out_label,
        stage.target_spacing_um,
        stage.image_interpolator,
        stage.label_interpolator,
        stage.codec,
        stage.level,
        stage.max_output_voxels or None,
        stage.source_units,
        threads=args.threads,
    )
    if bool(args.metadata) != bool(args.out_metadata):
        raise MinivessError(
            "--metadata and --out-metadata go together",
            volume=args.volume,
            expected="both or neither",
        )
    if args.metadata:  # the json, bytes untouched (a verified copy: fetch.rename.place_file)
        from ..fetch.rename import place_file

        place_file(args.metadata, args.out_metadata, args.volume)
    if args.record:
        write_json_atomic(args.record, record)
    log.info("%s", json.dumps(record["output"], sort_keys=True))
    return 0
