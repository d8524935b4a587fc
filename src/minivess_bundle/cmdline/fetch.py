"""Fetch: land one volume (synthetic, ZIP, folder or the EBRAINS data-proxy) and the licence.

The stage's parameters arrive as one ``--spec`` (:mod:`minivess_bundle.fetch.spec`:
``FetchSpec``, ``EbrainsSpec``, ``DownloadSpec``); the volume, the source's path and the
files written go beside it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..core.errors import MinivessError
from .common import add_spec, log_record, volume_id

log = logging.getLogger("minivess_bundle")


#: The sources ``fetch`` and ``fetch-licence`` land (ebrains has commands of its own).
_LOCAL_SOURCES = "synthetic, zip or dir (the ebrains source: ebrains-fetch, ebrains-licence)"


def _spec(cls_name: str, text: str):
    from ..core import spec
    from ..fetch import spec as specs

    return spec.read(getattr(specs, cls_name), text)


def cmd_fetch(args: argparse.Namespace) -> None:
    """Land one volume from the configured source in the EBRAINS staging layout."""
    from ..core.volumes import staging_names

    stage = _spec("FetchSpec", args.spec)
    outputs = {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata}
    staging = Path(args.out_image).parent.parent
    expected = {k: staging / rel for k, rel in staging_names(args.volume).items()}
    if any(Path(outputs[k]) != expected[k] for k in outputs):
        raise MinivessError(
            "output paths do not form one EBRAINS staging tree",
            volume=args.volume,
            expected="raw/<id>.nii.gz, seg/<id>_y.nii.gz, json/<id>.json under one folder",
        )
    if stage.source == "synthetic":
        from ..fetch.synthetic import write_synthetic_volume

        write_synthetic_volume(
            staging, args.volume, stage.seed, stage.size_xy, stage.max_z, stage.codec, stage.level
        )
    elif stage.source == "zip":
        from ..fetch.sources import fetch_from_zip

        log_record(fetch_from_zip(args.source_path, args.volume, staging))
    elif stage.source == "dir":
        from ..fetch.sources import fetch_from_dir

        log_record(fetch_from_dir(args.source_path, args.volume, staging))
    else:
        raise MinivessError(f"fetch: source {stage.source!r}", expected=_LOCAL_SOURCES)


def cmd_fetch_licence(args: argparse.Namespace) -> None:
    """Land the licence file of the configured source in staging."""
    out = Path(args.out)
    source = _spec("FetchSpec", args.spec).source
    if source == "synthetic":
        from ..fetch.synthetic import write_synthetic_licence

        write_synthetic_licence(out.parent)
    elif source == "zip":
        from ..fetch.sources import fetch_licence_from_zip

        fetch_licence_from_zip(args.source_path, out.parent)
    elif source == "dir":
        from ..fetch.sources import fetch_licence_from_dir

        fetch_licence_from_dir(args.source_path, out.parent)
    else:
        raise MinivessError(f"fetch-licence: source {source!r}", expected=_LOCAL_SOURCES)
    if not out.is_file():
        raise MinivessError("licence file did not land", path=out, expected=out.name)


def cmd_ebrains_list(args: argparse.Namespace) -> None:
    """Fetch the EBRAINS listing, check the volumes are complete, save it."""
    from ..fetch.ebrains import fetch_listing

    fetch_listing(args.out, args.volumes, _spec("EbrainsSpec", args.spec).client_settings())


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
    settings = _spec("EbrainsSpec", args.spec).client_settings()
    fetch_volume(args.volume, args.listing, args.cache, staging, settings)


def cmd_ebrains_licence(args: argparse.Namespace) -> None:
    """Download the licence file from EBRAINS into staging."""
    from ..fetch.ebrains import fetch_licence

    settings = _spec("EbrainsSpec", args.spec).client_settings()
    fetch_licence(args.listing, args.cache, Path(args.out).parent, settings)


def cmd_download_url(args: argparse.Namespace) -> None:
    """Download one URL (the dataset ZIP) verified and resumable."""
    from ..fetch.ebrains import download_url

    stage = _spec("DownloadSpec", args.spec)
    download_url(stage.url, args.out, stage.client_settings(), stage.bytes, stage.md5)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the fetch commands; the last parser is returned."""
    p = subparsers.add_parser("fetch", help=cmd_fetch.__doc__)
    p.add_argument("volume", type=volume_id)
    add_spec(p, "fetch.spec.FetchSpec")
    p.add_argument("--source-path", default="", help="the EBRAINS ZIP (zip) or folder (dir)")
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=main, run=cmd_fetch)

    p = subparsers.add_parser("fetch-licence", help=cmd_fetch_licence.__doc__)
    add_spec(p, "fetch.spec.FetchSpec (its source)")
    p.add_argument("--source-path", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_fetch_licence)

    p = subparsers.add_parser("ebrains-list", help=cmd_ebrains_list.__doc__)
    add_spec(p, "fetch.spec.EbrainsSpec")
    p.add_argument("--volumes", type=volume_id, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_ebrains_list)

    p = subparsers.add_parser("ebrains-fetch", help=cmd_ebrains_fetch.__doc__)
    add_spec(p, "fetch.spec.EbrainsSpec")
    p.add_argument("volume", type=volume_id)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True, help="download folder kept across failed runs")
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=main, run=cmd_ebrains_fetch)

    p = subparsers.add_parser("ebrains-licence", help=cmd_ebrains_licence.__doc__)
    add_spec(p, "fetch.spec.EbrainsSpec")
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_ebrains_licence)

    p = subparsers.add_parser("download-url", help=cmd_download_url.__doc__)
    add_spec(p, "fetch.spec.DownloadSpec (zip.url, its size and MD5)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_download_url)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
