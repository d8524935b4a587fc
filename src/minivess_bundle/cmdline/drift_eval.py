"""``minivess-bundle drift-eval BAG --spec JSON``: score drift detectors against the bundle's
drift manifest (power, false alarms, harm); the spec is
:class:`minivess_bundle.drift_eval.spec.DriftEvalSpec`."""

from __future__ import annotations

import argparse
import logging

from .common import add_spec

log = logging.getLogger("minivess_bundle")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``drift-eval`` on the CLI's subparsers."""
    p = subparsers.add_parser("drift-eval", help=main.__doc__)
    p.add_argument("bundle", help="the verified bag folder")
    p.add_argument("--model", default="", help="the reference UNet's weights (unet.pt)")
    p.add_argument("--reference-record", default="", help="the reference models' record")
    p.add_argument("--out", required=True, help="drift_eval.json")
    p.add_argument("--features", default="", help="also write the per-unit table (Parquet)")
    add_spec(p, "drift_eval.spec.DriftEvalSpec")
    p.add_argument("--power-png", default="")
    p.add_argument("--fpr-png", default="")
    p.add_argument("--difficulty-png", default="")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Score drift detectors against the bundle's drift manifest (power, false alarms, harm)."""
    from ..core import spec
    from ..drift_eval.protocol import run_drift_eval
    from ..drift_eval.spec import DriftEvalSpec

    stage = spec.read(DriftEvalSpec, args.spec)
    result = run_drift_eval(
        args.bundle,
        args.out,
        model_path=args.model or None,
        reference_record=args.reference_record or None,
        config=dict(stage.drift_eval),
        seed=stage.seed,
        figures={"power": args.power_png, "fpr": args.fpr_png, "difficulty": args.difficulty_png},
        features_path=args.features or None,
    )
    worst = max(result["false_positive_rate"], key=lambda r: r["fpr"])
    log.info(
        "%d power rows, %d controls rows (highest FPR %.2f: %s at n=%d), %d harm labels",
        len(result["results"]),
        len(result["false_positive_rate"]),
        worst["fpr"],
        worst["detector"],
        worst["n"],
        len(result["harm"]["variants"]),
    )
    return 0
