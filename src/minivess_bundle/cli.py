"""Command line of minivess-bundle: what the Snakemake rules call.

It only parses arguments and calls the stage's function; each stage module is
imported inside its command, so a job pays only for what it uses (Python
start-up is paid once per job, hundreds of times per build). Expected failures
(:class:`~minivess_bundle.errors.MinivessError`) become one line on stderr and
exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import MinivessError

log = logging.getLogger("minivess_bundle")


def _volume(text: str) -> str:
    from .volumes import check_volume_id

    try:
        return check_volume_id(text)
    except MinivessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_compression(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--codec",
        choices=("isal", "zlib"),
        default="isal",
        help="gzip implementation for written NIfTI files",
    )
    parser.add_argument("--level", type=int, default=2, help="gzip level (isal 0..3, zlib 1..9)")


def _log_record(record: dict) -> None:
    import json

    log.info("landed %s", json.dumps(record, sort_keys=True))


def cmd_fetch(args: argparse.Namespace) -> None:
    """Land one volume from the configured source in the EBRAINS staging layout."""
    from .volumes import staging_names

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
        from .synthetic import write_synthetic_volume

        write_synthetic_volume(
            staging, args.volume, args.seed, args.size_xy, args.max_z, args.codec, args.level
        )
    elif args.source == "zip":
        from .sources import fetch_from_zip

        _log_record(fetch_from_zip(args.source_path, args.volume, staging))
    elif args.source == "dir":
        from .sources import fetch_from_dir

        _log_record(fetch_from_dir(args.source_path, args.volume, staging))


def cmd_fetch_licence(args: argparse.Namespace) -> None:
    """Land the licence file of the configured source in staging."""
    out = Path(args.out)
    if args.source == "synthetic":
        from .synthetic import write_synthetic_licence

        write_synthetic_licence(out.parent)
    elif args.source == "zip":
        from .sources import fetch_licence_from_zip

        fetch_licence_from_zip(args.source_path, out.parent)
    else:
        from .sources import fetch_licence_from_dir

        fetch_licence_from_dir(args.source_path, out.parent)
    if not out.is_file():
        raise MinivessError("licence file did not land", path=out, expected=out.name)


def _ebrains_settings(args: argparse.Namespace):
    from .ebrains import ClientSettings

    return ClientSettings(
        api_base=args.api_base,
        dataset_id=args.dataset_id,
        ca_bundle=args.ca_bundle,
        max_attempts=args.max_attempts,
    )


def cmd_ebrains_list(args: argparse.Namespace) -> None:
    """Fetch the EBRAINS listing, check the volumes are complete, save it."""
    from .ebrains import fetch_listing

    fetch_listing(args.out, args.volumes, _ebrains_settings(args))


def cmd_ebrains_fetch(args: argparse.Namespace) -> None:
    """Download one volume from EBRAINS (verified, resumable) into staging."""
    from .ebrains import fetch_volume
    from .volumes import staging_names

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
    from .ebrains import fetch_licence

    fetch_licence(args.listing, args.cache, Path(args.out).parent, _ebrains_settings(args))


def cmd_download_url(args: argparse.Namespace) -> None:
    """Download one URL (the dataset ZIP) verified and resumable."""
    from .ebrains import download_url

    download_url(args.url, args.out, _ebrains_settings(args), args.bytes, args.md5)


def cmd_rename(args: argparse.Namespace) -> None:
    """Place one volume's files under their imagesTr/labelsTr/metadata names."""
    from .rename import rename_volume

    rename_volume(
        args.volume,
        {"image": args.image, "label": args.label, "metadata": args.metadata},
        {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata},
    )


def cmd_place(args: argparse.Namespace) -> None:
    """Place one file's exact bytes at a new path (hardlink, else verified copy)."""
    from .rename import place_file

    place_file(args.source, args.target)


def cmd_inventory(args: argparse.Namespace) -> None:
    """Write the pairs found in a tree, with sizes and sha256, as JSON."""
    from .fsio import write_json_atomic
    from .rename import inventory

    result = inventory(args.data_dir)
    write_json_atomic(args.out, result)
    log.info("%d volume pairs in %s", result["count"], args.data_dir)


def cmd_calibrate(args: argparse.Namespace) -> None:
    """Compare synthetic volumes with a real mask on the calibration figures."""
    from .calibration import calibration_table

    print(calibration_table(args.real_mask, args.volume, args.seeds), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivess-bundle", description="Build and check the MiniVess data bundle."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help=cmd_fetch.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--source", choices=("synthetic", "zip", "dir"), required=True)
    p.add_argument("--source-path", default="", help="the EBRAINS ZIP (zip) or folder (dir)")
    p.add_argument("--seed", type=int, default=20230301)
    p.add_argument("--size-xy", type=int, default=512)
    p.add_argument("--max-z", type=int, default=110)
    _add_compression(p)
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("fetch-licence", help=cmd_fetch_licence.__doc__)
    p.add_argument("--source", choices=("synthetic", "zip", "dir"), required=True)
    p.add_argument("--source-path", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_fetch_licence)

    def ebrains_options(p: argparse.ArgumentParser) -> None:
        from .ebrains import DEFAULT_API_BASE, DEFAULT_DATASET_ID

        p.add_argument("--api-base", default=DEFAULT_API_BASE)
        p.add_argument("--dataset-id", default=DEFAULT_DATASET_ID)
        p.add_argument("--ca-bundle", default="", help="extra CA bundle (PEM) to trust")
        p.add_argument("--max-attempts", type=int, default=8, help="per file, all causes")

    p = sub.add_parser("ebrains-list", help=cmd_ebrains_list.__doc__)
    ebrains_options(p)
    p.add_argument("--volumes", type=_volume, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_ebrains_list)

    p = sub.add_parser("ebrains-fetch", help=cmd_ebrains_fetch.__doc__)
    ebrains_options(p)
    p.add_argument("volume", type=_volume)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True, help="download folder kept across failed runs")
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=cmd_ebrains_fetch)

    p = sub.add_parser("ebrains-licence", help=cmd_ebrains_licence.__doc__)
    ebrains_options(p)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_ebrains_licence)

    p = sub.add_parser("download-url", help=cmd_download_url.__doc__)
    ebrains_options(p)
    p.add_argument("url")
    p.add_argument("--out", required=True)
    p.add_argument("--bytes", type=int, default=0, help="expected size (0: from HEAD)")
    p.add_argument("--md5", default="", help="expected MD5, if known")
    p.set_defaults(func=cmd_download_url)

    p = sub.add_parser("rename", help=cmd_rename.__doc__)
    p.add_argument("volume", type=_volume)
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--{role}", required=True)
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("place", help=cmd_place.__doc__)
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(func=cmd_place)

    p = sub.add_parser("inventory", help=cmd_inventory.__doc__)
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("calibrate", help=cmd_calibrate.__doc__)
    p.add_argument("real_mask")
    p.add_argument(
        "--volume",
        type=_volume,
        default="mv68",
        help="synthetic volume to compare (mv68 shares the real grid)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[20230301])
    p.set_defaults(func=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except MinivessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a vanished file: name the file
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
