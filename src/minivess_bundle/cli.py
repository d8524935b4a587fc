"""Command line of minivess-bundle: what the Snakemake rules call.

This module assembles the top-level parser and dispatches; each command family is a module
of :mod:`minivess_bundle.cmdline` with its parser beside its ``main`` (nibabel-style). A
command only parses arguments (a stage's parameters arrive as one ``--spec``, see
:mod:`minivess_bundle.core.spec`) and calls the stage's function; each stage module is
imported inside its command, so a job pays only for what it uses (Python start-up is paid
once per job, hundreds of times per build). Expected failures
(:class:`~minivess_bundle.core.errors.MinivessError`) become one line on stderr and
exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# One BLAS thread per job, set before anything imports numpy. A job's parallelism is the
# rule's `threads:` (passed as --threads to the commands that use them); numpy's and
# scipy's OpenBLAS would otherwise start a thread per core at import, which cost every job
# ~50-100 ms of CPU (import numpy: 126 -> 73 ms CPU on 2 cores, nibabel 241 -> 140 ms; more
# on a many-core node), and a large np.dot sums in a different order with another thread
# count (50 M values: ...803035 with 1 thread, ...803154 with 2), so a figure could depend
# on the machine's cores. So it is set, not defaulted: a cluster module that exports
# OPENBLAS_NUM_THREADS=<cores> must not change a build's bytes.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

from . import __version__
from .cmdline import (
    bundle,
    calibrate,
    config,
    drift,
    drift_eval,
    drift_eval_label_harm,
    drift_eval_reference,
    export,
    fetch,
    fingerprint,
    hf_export,
    inventory,
    report,
    resample,
    train_smoke,
    validate,
    validate_crate,
    verify,
)
from .core.errors import MinivessError

#: The command modules (``src/minivess_bundle/cmdline/``): the stages in pipeline order, then
#: the consumers, the drift evaluation and the tools. Each registers its commands
#: (``add_parser``) and runs them (``main``).
COMMANDS = (
    fetch,
    inventory,
    validate,
    resample,
    drift,
    bundle,
    verify,
    fingerprint,
    report,
    hf_export,
    validate_crate,
    export,
    train_smoke,
    drift_eval_reference,
    drift_eval,
    drift_eval_label_harm,
    calibrate,
    config,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivess-bundle", description="Build and check the MiniVess data bundle."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code = args.func(args)  # a cmdline module's main returns its exit code
    except MinivessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a vanished file: name the file
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
