"""Command line of minivess-bundle: what the Snakemake rules call.

It only parses arguments and calls the stage's function; each stage module is
imported inside its command, so a job pays only for what it uses (Python
start-up is paid once per job, hundreds of times per build). Expected failures
(:class:`~minivess_bundle.core.errors.MinivessError`) become one line on stderr and
exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .cmdline import (
    bundle,
    calibrate,
    config,
    drift_eval_label_harm,
    drift_eval_reference,
    fetch,
    rename,
    validate,
    verify,
)
from .cmdline import fingerprint as fingerprint_command
from .cmdline import hf_export as hf_export_command
from .cmdline import validate_crate as validate_crate_command
from .cmdline.common import add_compression as _add_compression
from .cmdline.common import volume_id as _volume
from .core.errors import MinivessError

log = logging.getLogger("minivess_bundle")


class _DriftKinds:
    """The drift kinds as argparse ``choices``, imported only when a ``drift`` command
    line is checked (``minivess_bundle.drift`` costs every other job ~35 ms to import)."""

    def _kinds(self) -> tuple[str, ...]:
        from .drift.kinds import KINDS

        return tuple(KINDS)

    def __contains__(self, value: object) -> bool:
        return value in self._kinds()

    def __iter__(self):
        return iter(self._kinds())


def cmd_resample(args: argparse.Namespace) -> None:
    """Resample one validated pair onto the target grid (z-slabs, streamed gzip)."""
    import json

    from .core import spec
    from .core.fsio import write_json_atomic
    from .resample import ResampleSpec, resample_pair

    stage = spec.read(ResampleSpec, args.spec)
    record = resample_pair(
        args.volume,
        args.image,
        args.label,
        args.out_image,
        args.out_label,
        stage.target_spacing_um,
        stage.image_interpolator,
        stage.label_interpolator,
        stage.codec,
        stage.level,
        stage.max_output_voxels or None,
        stage.source_units,
        threads=args.threads,
    )
    if args.record:
        write_json_atomic(args.record, record)
    log.info("%s", json.dumps(record["output"], sort_keys=True))


def cmd_drift(args: argparse.Namespace) -> None:
    """Make the drift variants of one resampled volume and one kind at each --drift-level
    (one decode of the clean pair) and write each level's manifest entry."""
    import json

    from .core.errors import DriftError
    from .core.fsio import write_json_atomic
    from .drift import Compression, VariantFiles, VariantSpec, generate_drift_levels

    levels = args.drift_level
    outputs = {"--out-image": args.out_image, "--out-label": args.out_label, "--entry": args.entry}
    for flag, paths in outputs.items():
        if len(paths) != len(levels):
            raise DriftError(
                f"{len(paths)} {flag} paths for {len(levels)} levels {levels}",
                volume=args.volume,
                expected=f"one {flag} per --drift-level, in the same order",
            )
    spec = VariantSpec(
        args.volume,
        args.type,
        levels[0],
        args.global_seed,
        json.loads(args.params) if args.params else {},
        tuple(args.reference_ids),
    )
    files = [
        VariantFiles(
            args.image,
            args.label,
            out_image,
            out_label,
            args.clean_root or None,
            args.drift_root or None,
        )
        for out_image, out_label in zip(args.out_image, args.out_label, strict=True)
    ]
    entries = generate_drift_levels(spec, levels, files, Compression(args.codec, args.level))
    for path, entry in zip(args.entry, entries, strict=True):
        write_json_atomic(path, entry)
        level, severity = entry["level"], entry["severity"]
        log.info("%s: %s level %s, severity %s", args.volume, args.type, level, severity)


def cmd_drift_manifest(args: argparse.Namespace) -> None:
    """Merge drift entries into drift_manifest.json (validated against its schema)."""
    import json

    from .core.fsio import write_json_atomic
    from .drift import merge_manifest_entries

    skipped = json.loads(args.skipped)
    for item in skipped:
        on = f" on {item['volume']}" if item.get("volume") else ""
        print(f"drift: {item['drift_type']} skipped{on}: {item['reason']}", file=sys.stderr)
    write_json_atomic(args.out, merge_manifest_entries(args.entries, skipped=skipped))


def cmd_drift_set(args: argparse.Namespace) -> None:
    """Write the dataset.json of one drift variant set (type, level)."""
    import json

    from .core.fsio import write_json_atomic
    from .drift import variant_dataset_json

    entries = [json.loads(Path(p).read_text()) for p in args.entries]
    write_json_atomic(args.out, variant_dataset_json(args.type, args.set_level, entries))


def cmd_drift_select(args: argparse.Namespace) -> None:
    """Choose one set-level drift set (prevalence) of clean volumes; write its dataset.json
    and manifest entry (no image is changed)."""
    from .core.fsio import write_json_atomic
    from .drift.base import severity_for_level
    from .drift.datasets import report_fractions, set_pool
    from .drift.prevalence import generate_set

    level = args.drift_level
    pool = set_pool(report_fractions(args.validation_report), args.pool, args.clean_root)
    dataset, entry = generate_set(
        args.type,
        level,
        severity_for_level(level),
        args.global_seed,
        pool,
        set_dir=Path(args.out).parent,
        clean_root=args.clean_root,
        set_size=args.set_size,
        reference_ids=tuple(args.reference_ids),
    )
    write_json_atomic(args.out, dataset)
    write_json_atomic(args.entry, entry)
    log.info("%s level %s: %s", args.type, level, [v["volume"] for v in entry["volumes"]])


def cmd_report_mips(args: argparse.Namespace) -> None:
    """Report figures of every valid volume: its MIP before and after resampling."""
    import json

    from .report import figures as report

    validation = json.loads(Path(args.validation_report).read_text())
    threads = getattr(args, "threads", 1)  # (report-figures --mip-dir draws them in one)
    report.volume_mips(args.mip_dir, validation["valid"], args.before, args.after, threads)


def cmd_report_figures(args: argparse.Namespace) -> None:
    """Figures for `snakemake --report`: drift gallery, dataset plots, validation table (and
    every volume's MIP with --mip-dir; the workflow draws those earlier, report-mips)."""
    import json

    from .report import figures as report

    if args.mip_dir:
        cmd_report_mips(args)
    report.dataset_figure(args.dataset_png, args.validation_report)
    report.validation_table(args.table_html, args.validation_report)
    if args.gallery_png and not args.drift_manifest:
        report.note_figure(
            args.gallery_png,
            "No drift variants in this build (drift.enabled or drift.volumes left none).",
        )
    elif args.gallery_png:
        manifest = json.loads(Path(args.drift_manifest).read_text())
        report.drift_gallery(args.gallery_png, manifest, args.after, args.drift)


def cmd_train_smoke(args: argparse.Namespace) -> None:
    """One epoch of a small 3-D UNet on the bundle (CPU, or CUDA when present)."""
    from .consumers.train_smoke import train_smoke

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


def cmd_drift_eval(args: argparse.Namespace) -> None:
    """Score drift detectors against the bundle's drift manifest (power, false alarms, harm)."""
    import json

    from .drift_eval.protocol import run_drift_eval

    result = run_drift_eval(
        args.bundle,
        args.out,
        model_path=args.model or None,
        reference_record=args.reference_record or None,
        config=json.loads(args.config) if args.config else None,
        seed=args.seed,
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


def cmd_export_nnunet(args: argparse.Namespace) -> None:
    """Export the bundle as an nnU-Net v2 raw dataset (DatasetNNN_MiniVess), checked."""
    from .consumers.nnunet import export_nnunet
    from .core.dataset import NNUNET_ID

    dataset_id = NNUNET_ID if args.dataset_id is None else args.dataset_id
    folder = export_nnunet(args.bundle, args.out_root, dataset_id=dataset_id)
    log.info("nnU-Net dataset at %s", folder)


def cmd_omezarr(args: argparse.Namespace) -> None:
    """Write one processed volume and its mask as OME-Zarr 0.5 with a pyramid and labels."""
    from .consumers.omezarr import write_omezarr
    from .core.fsio import write_json_atomic

    record = write_omezarr(args.image, args.label, args.out, args.volume)
    if args.record:
        write_json_atomic(args.record, record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivess-bundle", description="Build and check the MiniVess data bundle."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)
    # one line per command module (src/minivess_bundle/cmdline/: add_parser + main)
    fetch.add_parser(sub)
    rename.add_parser(sub)
    validate.add_parser(sub)
    verify.add_parser(sub)
    calibrate.add_parser(sub)

    p = sub.add_parser("resample", help=cmd_resample.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--spec", required=True, help="the resample spec (ResampleSpec) as JSON")
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out-image", required=True)
    p.add_argument("--out-label", required=True)
    p.add_argument("--record", default="", help="write what was done as JSON here")
    p.set_defaults(func=cmd_resample)

    p = sub.add_parser("drift", help=cmd_drift.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument(
        "--type", required=True, choices=_DriftKinds(), metavar="KIND", help="%(choices)s"
    )
    p.add_argument(
        "--drift-level",
        type=int,
        nargs="+",
        required=True,
        help="1..5, one or more (gradual: batch k)",
    )
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--global-seed", type=int, required=True)
    p.add_argument("--params", default="", help="explicit drift parameters as JSON")
    p.add_argument("--reference-ids", nargs="*", default=[])
    p.add_argument("--clean-root", default="")
    p.add_argument("--drift-root", default="")
    _add_compression(p)
    p.add_argument("--out-image", nargs="+", required=True, help="one per --drift-level")
    p.add_argument("--out-label", nargs="+", required=True, help="one per --drift-level")
    p.add_argument("--entry", nargs="+", required=True, help="one per --drift-level")
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("drift-manifest", help=cmd_drift_manifest.__doc__)
    p.add_argument("entries", nargs="*")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--skipped", required=True, help='JSON list of {"drift_type", "reason"} not made'
    )
    p.set_defaults(func=cmd_drift_manifest)

    p = sub.add_parser("drift-select", help=cmd_drift_select.__doc__)
    p.add_argument("--type", required=True, choices=["prevalence"])
    p.add_argument("--drift-level", type=int, required=True, help="1..5")
    p.add_argument("--validation-report", required=True, help="foreground fraction per volume")
    p.add_argument("--pool", nargs="+", required=True, help="clean volumes to choose from")
    p.add_argument("--set-size", type=int, required=True)
    p.add_argument("--global-seed", type=int, required=True)
    p.add_argument("--reference-ids", nargs="*", default=[])
    p.add_argument("--clean-root", required=True, help="folder holding imagesTr/, labelsTr/")
    p.add_argument("--out", required=True, help="the set's dataset.json")
    p.add_argument("--entry", required=True, help="its manifest entry (JSON)")
    p.set_defaults(func=cmd_drift_select)

    p = sub.add_parser("drift-set", help=cmd_drift_set.__doc__)
    p.add_argument("entries", nargs="+")
    p.add_argument("--type", required=True)
    p.add_argument("--set-level", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_drift_set)

    bundle.add_parser(sub)
    config.add_parser(sub)
    fingerprint_command.add_parser(sub)
    hf_export_command.add_parser(sub)
    validate_crate_command.add_parser(sub)

    p = sub.add_parser("report-mips", help=cmd_report_mips.__doc__)
    p.add_argument("--validation-report", required=True, help="its valid volumes are drawn")
    p.add_argument("--before", required=True, help="the renamed tree")
    p.add_argument("--after", required=True, help="the processed tree")
    p.add_argument("--mip-dir", required=True, help="one <volume>.png each")
    p.add_argument("--threads", type=int, required=True, help="volumes drawn at once")
    p.set_defaults(func=cmd_report_mips)

    p = sub.add_parser("report-figures", help=cmd_report_figures.__doc__)
    p.add_argument("--validation-report", required=True)
    p.add_argument("--before", default="", help="the renamed tree (with --mip-dir)")
    p.add_argument("--after", required=True, help="the processed tree")
    p.add_argument("--drift", default="")
    p.add_argument("--drift-manifest", default="")
    p.add_argument("--mip-dir", default="", help="draw every volume's MIP here too")
    p.add_argument("--gallery-png", default="")
    p.add_argument("--dataset-png", required=True)
    p.add_argument("--table-html", required=True)
    p.set_defaults(func=cmd_report_figures)

    p = sub.add_parser("train-smoke", help=cmd_train_smoke.__doc__)
    p.add_argument("data", help="a bundle folder (or any layout the loader reads)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--model-out", default="", help="also save the trained weights here")
    p.set_defaults(func=cmd_train_smoke)

    p = sub.add_parser("drift-eval", help=cmd_drift_eval.__doc__)
    p.add_argument("bundle", help="the verified bag folder")
    p.add_argument("--model", default="", help="the reference UNet's weights (unet.pt)")
    p.add_argument("--reference-record", default="", help="the reference models' record")
    p.add_argument("--out", required=True, help="drift_eval.json")
    p.add_argument("--features", default="", help="also write the per-unit table (Parquet)")
    p.add_argument("--config", default="", help="the drift_eval config block as JSON")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--power-png", default="")
    p.add_argument("--fpr-png", default="")
    p.add_argument("--difficulty-png", default="")
    p.set_defaults(func=cmd_drift_eval)

    p = sub.add_parser("export-nnunet", help=cmd_export_nnunet.__doc__)
    p.add_argument("bundle")
    p.add_argument("--out-root", required=True)
    p.add_argument("--dataset-id", type=int, default=None, help="default: dataset.NNUNET_ID")
    p.set_defaults(func=cmd_export_nnunet)

    p = sub.add_parser("omezarr", help=cmd_omezarr.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True, help="the .ome.zarr folder to write")
    p.add_argument("--record", default="", help="where to write what the export did (JSON)")
    p.set_defaults(func=cmd_omezarr)

    drift_eval_reference.add_parser(sub)
    drift_eval_label_harm.add_parser(sub)
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
