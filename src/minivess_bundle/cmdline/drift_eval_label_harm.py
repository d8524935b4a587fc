"""``minivess-bundle drift-eval-label-harm``: the named harm of the label-only drift kinds."""

from __future__ import annotations

import argparse
import logging

from .common import add_spec

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
    add_spec(p, "drift_eval.spec.LabelHarmSpec")
    p.add_argument("--threads", type=int, required=True, help="torch threads on CPU")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..core import spec
    from ..drift_eval.reference import label_harm
    from ..drift_eval.spec import LabelHarmSpec

    stage = spec.read(LabelHarmSpec, args.spec)
    result = label_harm(
        args.bundle,
        args.weights,
        args.record,
        args.out,
        seed=stage.seed,
        crop=list(stage.harm_crop),
        device=stage.device,
        threads=args.threads,
    )
    for row in result["sets"]:
        log.info("label harm %s/%s: Dice drop %.4f", row["kind"], row["level"], row["dice_drop"])
    return 0
