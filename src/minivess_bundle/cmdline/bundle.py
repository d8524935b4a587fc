"""``minivess-bundle bundle --spec JSON``: assemble the bag, its DVC metadata and the archive.

The spec is :class:`minivess_bundle.bundle.release.ReleaseSpec` as JSON, built by
:func:`minivess_bundle.bundle.release.release_spec` from the config and the rule's declared files.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bundle`` on the CLI's subparsers."""
    parser = subparsers.add_parser("bundle", help=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument(
        "--spec", required=True, help="the bundle spec (release.ReleaseSpec) as JSON, or @file"
    )
    parser.add_argument(
        "--threads", type=int, required=True, help="files hashed and copied at once (the job's)"
    )
    parser.add_argument("--lock", required=True, help="the requirements lock the bag records")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Build the release the spec describes; print where it is and its digest."""
    import dataclasses

    from ..bundle.release import ReleaseSpec, build_release
    from ..core import spec

    release = dataclasses.replace(
        spec.read(ReleaseSpec, args.spec), threads=args.threads, lock=args.lock
    )
    result = build_release(release)
    if result["archive"]:
        print(f"bundle {Path(release.out_dir) / result['archive']} sha256 {result['sha256']}")
    else:
        print(
            f"bundle {Path(release.out_dir) / result['bag']} manifest-sha256.txt sha256 "
            f"{result['manifest_digest']}"
        )
    return 0
