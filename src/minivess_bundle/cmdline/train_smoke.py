"""``minivess-bundle train-smoke BAG``: one epoch of a small 3-D UNet on the bundle."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("minivess_bundle")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train-smoke`` on the CLI's subparsers."""
    p = subparsers.add_parser("train-smoke", help=main.__doc__)
    p.add_argument("data", help="a bundle folder (or any layout the loader reads)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--model-out", default="", help="also save the trained weights here")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """One epoch of a small 3-D UNet on the bundle (CPU, or CUDA when present)."""
    from ..consumers.train_smoke import train_smoke

    metrics = train_smoke(
        args.data,
        args.out,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        model_out=args.model_out or None,
    )
    log.info(
        "loss %s -> %s, validation Dice %s, clDice %s on %s",
        metrics["loss"]["first"],
        metrics["loss"]["last"],
        metrics["validation"]["dice"],
        metrics["validation"]["cldice"],
        metrics["device"],
    )
    return 0
