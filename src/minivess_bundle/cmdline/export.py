"""Exports the bundle's consumers read: an nnU-Net v2 raw dataset (``export-nnunet``) and
one volume as OME-Zarr (``omezarr``)."""

from __future__ import annotations

import argparse
import logging

from .common import volume_id

log = logging.getLogger("minivess_bundle")


def cmd_export_nnunet(args: argparse.Namespace) -> None:
    """Export the bundle as an nnU-Net v2 raw dataset (DatasetNNN_MiniVess), checked."""
    from ..consumers.nnunet import export_nnunet
    from ..core.dataset import NNUNET_ID

    dataset_id = NNUNET_ID if args.dataset_id is None else args.dataset_id
    folder = export_nnunet(args.bundle, args.out_root, dataset_id=dataset_id)
    log.info("nnU-Net dataset at %s", folder)


def cmd_omezarr(args: argparse.Namespace) -> None:
    """Write one processed volume and its mask as OME-Zarr 0.5 with a pyramid and labels."""
    from ..consumers.omezarr import write_omezarr
    from ..core.fsio import write_json_atomic

    record = write_omezarr(args.image, args.label, args.out, args.volume)
    if args.record:
        write_json_atomic(args.record, record)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the export commands; the last parser is returned."""
    p = subparsers.add_parser("export-nnunet", help=cmd_export_nnunet.__doc__)
    p.add_argument("bundle")
    p.add_argument("--out-root", required=True)
    p.add_argument("--dataset-id", type=int, default=None, help="default: dataset.NNUNET_ID")
    p.set_defaults(func=main, run=cmd_export_nnunet)

    p = subparsers.add_parser("omezarr", help=cmd_omezarr.__doc__)
    p.add_argument("volume", type=volume_id)
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True, help="the .ome.zarr folder to write")
    p.add_argument("--record", default="", help="where to write what the export did (JSON)")
    p.set_defaults(func=main, run=cmd_omezarr)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
