"""``minivess-bundle hf-export``: a bag as a Hugging Face ``niftifolder`` dataset."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``hf-export`` command's parser (its ``func`` is :func:`main`)."""
    p = subparsers.add_parser(
        "hf-export",
        help="Write a bag as a Hugging Face dataset folder (niftifolder) with its card.",
        description="Lay out BAG's clean pairs (one split per fold of the authors' 3-fold "
        "split) and drift variants as a folder `datasets.load_dataset` reads (datasets >= 4.4), "
        "with a dataset card README.md. Files are hardlinked from the bag where possible. "
        "Push it with `hf upload` (docs/huggingface.md).",
    )
    p.add_argument("bag", help="the bag folder, e.g. results/bundle/minivess-0.1.0")
    p.add_argument("--out", required=True, help="a new (or empty) folder")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Export and print the rows per config and split."""
    from ..consumers.hf import export

    result = export(args.bag, args.out)
    for config, splits in result["splits"].items():
        counts = ", ".join(f"{split} {n}" for split, n in splits.items())
        print(f"hf-export {args.out}: {config}: {counts}")
    return 0
