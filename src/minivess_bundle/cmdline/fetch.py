"""Fetch: land one volume (synthetic, ZIP, folder or the EBRAINS data-proxy) and the licence."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..core.errors import MinivessError
from .common import add_compression, log_record, volume_id

log = logging.getLogger("minivess_bundle")


def ebrains_options(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """The data-proxy options of the EBRAINS commands (download-url: no dataset)."""
    if dataset:  # download-url fetches a plain URL: no data-proxy, no dataset
        p.add_argument("--api-base", required=True)
        p.add_argument("--dataset-id", required=True)
    p.add_argument("--ca-bundle", default="", help="extra CA bundle (PEM) to trust")
    p.add_argument("--max-attempts", type=int, required=True, help="per file, all causes")


def _ebrains_settings(args: argparse.Namespace):
    from ..fetch.ebrains import ClientSettings

    dataset = (
        {"api_base": args.api_base, "dataset_id": args.dataset_id} if "api_base" in args else {}
    )
    return ClientSettings(**dataset, ca_bundle=args.ca_bundle, max_attempts=args.max_attempts)


def cmd_fetch(args: argparse.Namespace) -> None:
    """Land one volume from the configured source in the EBRAINS staging layout."""
    from ..core.volumes import staging_names

    outputs = {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata}
    staging = Path(args.out_image).parent.parent
    expected = {k: staging / rel for k, rel in staging_names(args.volume).items()}
    if any(Path(outputs[k]) != expected[k] for k in outputs):
        raise MinivessError(
            "output paths do not form one EBRAINS staging tree",
            volume=args.volume,
            expected="raw/<id>.nii.gz, seg/<id>_y.nii.gz, json/<id>.json under one folder",
        )
    if args.source == "synthetic":
        from ..fetch.synthetic import write_synthetic_volume

        write_synthetic_volume(
            staging, args.volume, args.seed, args.size_xy, args.max_z, args.codec, args.level
        )
    elif args.source == "zip":
        from ..fetch.sources import fetch_from_zip

        log_record(fetch_from_zip(args.source_path, args.volume, staging))
    elif args.source == "dir":
        from ..fetch.sources import fetch_from_dir

        log_record(fetch_from_dir(args.source_path, args.volume, staging))


def cmd_fetch_licence(args: argparse.Namespace) -> None:
    """Land the licence file of the configured source in staging."""
    out = Path(args.out)
    if args.source == "synthetic":
        from ..fetch.synthetic import write_synthetic_licence

        write_synthetic_licence(out.parent)
    elif args.source == "zip":
        from ..fetch.sources import fetch_licence_from_zip

        fetch_licence_from_zip(args.source_path, out.parent)
    else:
        from ..fetch.sources import fetch_licence_from_dir

        fetch_licence_from_dir(args.source_path, out.parent)
    if not out.is_file():
        raise MinivessError("licence file did not land", path=out, expected=out.name)


def cmd_ebrains_list(args: argparse.Namespace) -> None:
    """Fetch the EBRAINS listing, check the volumes are complete, save it."""
    from ..fetch.ebrains import fetch_listing

    fetch_listing(args.out, args.volumes, _ebrains_settings(args))


def cmd_ebrains_fetch(args: argparse.Namespace) -> None:
    """Download one volume from EBRAINS (verified, resumable) into staging."""
    from ..core.volumes import staging_names
    from ..fetch.ebrains import fetch_volume

    staging = Path(args.out_image).parent.parent
    outputs = {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata}
    for role, rel in staging_names(args.volume).items():
        if Path(outputs[role]) != staging / rel:
            raise MinivessError(
                "output paths do not form one EBRAINS staging tree",
                volume=args.volume,
                path=outputs[role],
            )
    fetch_volume(args.volume, args.listing, args.cache, staging, _ebrains_settings(args))


def cmd_ebrains_licence(args: argparse.Namespace) -> None:
    """Download the licence file from EBRAINS into staging."""
    from ..fetch.ebrains import fetch_licence

    fetch_licence(args.listing, args.cache, Path(args.out).parent, _ebrains_settings(args))


def cmd_download_url(args: argparse.Namespace) -> None:
    """Download one URL (the dataset ZIP) verified and resumable."""
    from ..fetch.ebrains import download_url

    download_url(args.url, args.out, _ebrains_settings(args), args.bytes, args.md5)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the fetch commands; the last parser is returned."""
    p = subparsers.add_parser("fetch", help=cmd_fetch.__doc__)
    p.add_argument("volume", type=volume_id)
    p.add_argument("--source", choices=("synthetic", "zip", "dir"), required=True)
    p.add_argument("--source-path", default="", help="the EBRAINS ZIP (zip) or folder (dir)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size-xy", type=int, required=True)
    p.add_argument("--max-z", type=int, required=True)
    add_compression(p)
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=main, run=cmd_fetch)

    p = subparsers.add_parser("fetch-licence", help=cmd_fetch_licence.__doc__)
    p.add_argument("--source", choices=("synthetic", "zip", "dir"), required=True)
    p.add_argument("--source-path", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_fetch_licence)

    p = subparsers.add_parser("ebrains-list", help=cmd_ebrains_list.__doc__)
    ebrains_options(p)
    p.add_argument("--volumes", type=volume_id, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_ebrains_list)

    p = subparsers.add_parser("ebrains-fetch", help=cmd_ebrains_fetch.__doc__)
    ebrains_options(p)
    p.add_argument("volume", type=volume_id)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True, help="download folder kept across failed runs")
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=main, run=cmd_ebrains_fetch)

    p = subparsers.add_parser("ebrains-licence", help=cmd_ebrains_licence.__doc__)
    ebrains_options(p)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_ebrains_licence)

    p = subparsers.add_parser("download-url", help=cmd_download_url.__doc__)
    ebrains_options(p, dataset=False)
    p.add_argument("url")
    p.add_argument("--out", required=True)
    p.add_argument("--bytes", type=int, required=True, help="expected size (0: from HEAD)")
    p.add_argument("--md5", default="", help="expected MD5, if known")
    p.set_defaults(func=main, run=cmd_download_url)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
