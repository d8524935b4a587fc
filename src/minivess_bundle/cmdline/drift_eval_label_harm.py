"""``minivess-bundle drift-eval-label-harm``: the named harm of the label-only drift kinds."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "drift-eval-label-harm",
        help="Fine-tune the reference UNet on drifted and on clean masks (label-only kinds) "
        "and score both on the other test volumes' clean masks",
    )
    p.add_argument("bundle", help="the bundle folder (bag)")
    p.add_argument("--weights", required=True, help="the reference UNet's weights")
    p.add_argument("--record", required=True, help="the reference models' record")
    p.add_argument("--out", required=True, help="label_harm.json")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--crop", required=True, help="the scored central crop as JSON")
    p.add_argument("--device", required=True, choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, required=True, help="torch threads on CPU")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..drift_eval.reference import label_harm

    result = label_harm(
        args.bundle,
        args.weights,
        args.record,
        args.out,
        seed=args.seed,
        crop=json.loads(args.crop),
        device=args.device,
        threads=args.threads,
    )
    for row in result["sets"]:
        log.info("label harm %s/%s: Dice drop %.4f", row["kind"], row["level"], row["dice_drop"])
    return 0
