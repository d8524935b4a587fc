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


def _outputs(args: argparse.Namespace) -> dict[str, str]:
    return {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata}


def _land_volume(args: argparse.Namespace, land) -> None:
    """``land(staging)`` writes the volume under its EBRAINS names into a staging folder of
    this job's own (under ``--staging``); the files then move to their renamed outputs."""
    from ..core.volumes import staging_names
    from ..fetch.rename import job_staging, land_renamed

    with job_staging(args.staging, args.volume) as staging:
        land(staging)
        staged = {role: staging / rel for role, rel in staging_names(args.volume).items()}
        land_renamed(args.volume, staged, _outputs(args))


def _land_licence(args: argparse.Namespace, land) -> None:
    """``land(staging)`` writes the licence file into a staging folder of this job's own;
    it then moves to ``--out`` (the renamed metadata folder)."""
    from ..fetch.rename import job_staging, land_renamed

    out = Path(args.out)
    with job_staging(args.staging, "licence") as staging:
        land(staging)
        if not (staging / out.name).is_file():
            raise MinivessError("licence file did not land", path=out, expected=out.name)
        land_renamed(None, {"licence": staging / out.name}, {"licence": out})


def cmd_fetch(args: argparse.Namespace) -> None:
    """Land one volume from the configured source under its renamed names
    (imagesTr/labelsTr/metadata), bytes untouched."""
    stage = _spec("FetchSpec", args.spec)
    if stage.source == "synthetic":
        from ..fetch.synthetic import write_synthetic_volume

        def land(staging: Path) -> None:
            write_synthetic_volume(
                staging, args.volume, stage.seed, stage.size_xy, stage.max_z, stage.codec,
                stage.level,
            )  # fmt: skip
    elif stage.source == "zip":
        from ..fetch.sources import fetch_from_zip

        def land(staging: Path) -> None:
            log_record(fetch_from_zip(args.source_path, args.volume, staging))
    elif stage.source == "dir":
        from ..fetch.sources import fetch_from_dir

        def land(staging: Path) -> None:
            log_record(fetch_from_dir(args.source_path, args.volume, staging))
    else:
        raise MinivessError(f"fetch: source {stage.source!r}", expected=_LOCAL_SOURCES)
    _land_volume(args, land)


def cmd_fetch_licence(args: argparse.Namespace) -> None:
    """Land the licence file of the configured source beside the renamed metadata."""
    source = _spec("FetchSpec", args.spec).source
    if source == "synthetic":
        from ..fetch.synthetic import write_synthetic_licence as land
    elif source == "zip":
        from ..fetch.sources import fetch_licence_from_zip

        def land(staging: Path) -> None:
            fetch_licence_from_zip(args.source_path, staging)
    elif source == "dir":
        from ..fetch.sources import fetch_licence_from_dir

        def land(staging: Path) -> None:
            fetch_licence_from_dir(args.source_path, staging)
    else:
        raise MinivessError(f"fetch-licence: source {source!r}", expected=_LOCAL_SOURCES)
    _land_licence(args, land)


def cmd_ebrains_list(args: argparse.Namespace) -> None:
    """Fetch the EBRAINS listing, check the volumes are complete, save it."""
    from ..fetch.ebrains import fetch_listing

    fetch_listing(args.out, args.volumes, _spec("EbrainsSpec", args.spec).client_settings())


def cmd_ebrains_fetch(args: argparse.Namespace) -> None:
    """Download one volume from EBRAINS (verified, resumable) and land it under its
    renamed names."""
    from ..fetch.ebrains import fetch_volume

    settings = _spec("EbrainsSpec", args.spec).client_settings()
    _land_volume(
        args, lambda staging: fetch_volume(args.volume, args.listing, args.cache, staging, settings)
    )


def cmd_ebrains_licence(args: argparse.Namespace) -> None:
    """Download the licence file from EBRAINS and land it beside the renamed metadata."""
    from ..fetch.ebrains import fetch_licence

    settings = _spec("EbrainsSpec", args.spec).client_settings()
    _land_licence(args, lambda staging: fetch_licence(args.listing, args.cache, staging, settings))


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
    p.add_argument(
        "--staging",
        required=True,
        help="where the job's own staging folder is made (results/staging)",
    )
    p.set_defaults(func=main, run=cmd_fetch)

    p = subparsers.add_parser("fetch-licence", help=cmd_fetch_licence.__doc__)
    add_spec(p, "fetch.spec.FetchSpec (its source)")
    p.add_argument("--source-path", default="")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--staging",
        required=True,
        help="where the job's own staging folder is made (results/staging)",
    )
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
    p.add_argument(
        "--staging",
        required=True,
        help="where the job's own staging folder is made (results/staging)",
    )
    p.set_defaults(func=main, run=cmd_ebrains_fetch)

    p = subparsers.add_parser("ebrains-licence", help=cmd_ebrains_licence.__doc__)
    add_spec(p, "fetch.spec.EbrainsSpec")
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--staging",
        required=True,
        help="where the job's own staging folder is made (results/staging)",
    )
    p.set_defaults(func=main, run=cmd_ebrains_licence)

    p = subparsers.add_parser("download-url", help=cmd_download_url.__doc__)
    add_spec(p, "fetch.spec.DownloadSpec (zip.url, its size and MD5)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=main, run=cmd_download_url)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
