"""``minivess-bundle drift-eval-reference``: train the drift benchmark's reference segmenters."""

from __future__ import annotations

import argparse
import logging

from .common import add_spec

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "drift-eval-reference",
        help="Train the reference UNet (training role only, plateau stopping) and fit the "
        "vesselness threshold; cached on the training data",
    )
    p.add_argument("bundle", help="the bundle folder (bag)")
    p.add_argument("--weights-out", required=True, help="the UNet weights (.pt)")
    p.add_argument("--record-out", required=True, help="the JSON record")
    add_spec(p, "drift_eval.spec.ReferenceSpec")
    p.add_argument("--threads", type=int, required=True, help="torch threads on CPU")
    p.add_argument("--cache-dir", default="", help="content-addressed cache of trained models")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..core import spec
    from ..drift_eval.reference import Settings, train_reference, training_list
    from ..drift_eval.spec import ReferenceSpec

    stage = spec.read(ReferenceSpec, args.spec)
    training, excluded = training_list(args.bundle, stage.seed)
    record = train_reference(
        args.bundle,
        training,
        args.weights_out,
        args.record_out,
        seed=stage.seed,
        settings=Settings.from_dict(dict(stage.settings) or None),
        device=stage.device,
        threads=args.threads,
        cache_dir=args.cache_dir or None,
        excluded=excluded,
    )
    unet = record["unet"]
    log.info(
        "reference UNet: %d training volumes, %d steps (%s), validation Dice %.3f; "
        "vesselness threshold %.4g (training Dice %.3f)",
        len(record["training_volumes"]),
        unet["steps"],
        unet["stopped"],
        unet["best"]["dice"],
        record["vesselness"]["threshold"],
        record["vesselness"]["training_dice_pooled"],
    )
    return 0
