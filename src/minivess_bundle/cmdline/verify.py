"""Verify: bag folders or archives, independently of how they were made."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("minivess_bundle")


def cmd_verify(args: argparse.Namespace) -> None:
    """Verify bag folders or archives: files, manifests, tag files, DVC hashes."""
    from ..bundle.verify import verdict, verify_bundle
    from ..core.errors import BundleError
    from ..core.fsio import write_bytes_atomic

    for path in args.paths:  # each in turn; the first that fails stops the command
        result = verify_bundle(path, threads=args.threads or 1)
        line = verdict(result)
        print(line)
        for problem in result.problems:
            print(f"  {problem}")
        if not result.ok:
            raise BundleError(f"verification failed: {len(result.problems)} problem(s)", path=path)
    if args.out:  # the last path's verdict
        write_bytes_atomic(args.out, (line + "\n").encode())


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the verify commands; the last parser is returned."""
    p = subparsers.add_parser("verify", help=cmd_verify.__doc__)
    p.add_argument("paths", nargs="+", help="a bag folder and/or its .tar", metavar="path")
    p.add_argument("--out", default="", help="write the verdict here when it is OK")
    p.add_argument("--threads", type=int, help="files hashed at once (default 1)")
    p.set_defaults(func=main, run=cmd_verify)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
