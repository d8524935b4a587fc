"""Command line of minivess-bundle: what the Snakemake rules call.

It only parses arguments and calls the stage's function; each stage module is
imported inside its command, so a job pays only for what it uses (Python
start-up is paid once per job, hundreds of times per build). Expected failures
(:class:`~minivess_bundle.errors.MinivessError`) become one line on stderr and
exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .cmdline import drift_eval_label_harm, drift_eval_reference
from .errors import MinivessError

log = logging.getLogger("minivess_bundle")


def _volume(text: str) -> str:
    from .volumes import check_volume_id

    try:
        return check_volume_id(text)
    except MinivessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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


def _add_compression(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--codec",
        choices=("isal", "zlib"),
        required=True,
        help="gzip implementation for written NIfTI files",
    )
    parser.add_argument(
        "--level", type=int, required=True, help="gzip level (isal 0..3, zlib 1..9)"
    )


def _log_record(record: dict) -> None:
    import json

    log.info("landed %s", json.dumps(record, sort_keys=True))


def cmd_fetch(args: argparse.Namespace) -> None:
    """Land one volume from the configured source in the EBRAINS staging layout."""
    from .volumes import staging_names

    outputs = {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata}
    staging = Path(args.out_image).parent.parent
    expected = {k: staging / rel for k, rel in staging_names(args.volume).items()}
    if any(Path(outputs[k]) != expected[k] for k in outputs):
        raise MinivessError(
            "output paths do not form one EBRAINS staging tree",
            volume=args.volume,
            expected="raw/<id>.nii.gz, seg/<id>_y.nii.gz, json/<id>.json under one folder",
        )
    if args.source == "synthetic":
        from .synthetic import write_synthetic_volume

        write_synthetic_volume(
            staging, args.volume, args.seed, args.size_xy, args.max_z, args.codec, args.level
        )
    elif args.source == "zip":
        from .sources import fetch_from_zip

        _log_record(fetch_from_zip(args.source_path, args.volume, staging))
    elif args.source == "dir":
        from .sources import fetch_from_dir

        _log_record(fetch_from_dir(args.source_path, args.volume, staging))


def cmd_fetch_licence(args: argparse.Namespace) -> None:
    """Land the licence file of the configured source in staging."""
    out = Path(args.out)
    if args.source == "synthetic":
        from .synthetic import write_synthetic_licence

        write_synthetic_licence(out.parent)
    elif args.source == "zip":
        from .sources import fetch_licence_from_zip

        fetch_licence_from_zip(args.source_path, out.parent)
    else:
        from .sources import fetch_licence_from_dir

        fetch_licence_from_dir(args.source_path, out.parent)
    if not out.is_file():
        raise MinivessError("licence file did not land", path=out, expected=out.name)


def _ebrains_settings(args: argparse.Namespace):
    from .ebrains import ClientSettings

    dataset = (
        {"api_base": args.api_base, "dataset_id": args.dataset_id} if "api_base" in args else {}
    )
    return ClientSettings(**dataset, ca_bundle=args.ca_bundle, max_attempts=args.max_attempts)


def cmd_ebrains_list(args: argparse.Namespace) -> None:
    """Fetch the EBRAINS listing, check the volumes are complete, save it."""
    from .ebrains import fetch_listing

    fetch_listing(args.out, args.volumes, _ebrains_settings(args))


def cmd_ebrains_fetch(args: argparse.Namespace) -> None:
    """Download one volume from EBRAINS (verified, resumable) into staging."""
    from .ebrains import fetch_volume
    from .volumes import staging_names

    staging = Path(args.out_image).parent.parent
    outputs = {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata}
    for role, rel in staging_names(args.volume).items():
        if Path(outputs[role]) != staging / rel:
            raise MinivessError(
                "output paths do not form one EBRAINS staging tree",
                volume=args.volume,
                path=outputs[role],
            )
    fetch_volume(args.volume, args.listing, args.cache, staging, _ebrains_settings(args))


def cmd_ebrains_licence(args: argparse.Namespace) -> None:
    """Download the licence file from EBRAINS into staging."""
    from .ebrains import fetch_licence

    fetch_licence(args.listing, args.cache, Path(args.out).parent, _ebrains_settings(args))


def cmd_download_url(args: argparse.Namespace) -> None:
    """Download one URL (the dataset ZIP) verified and resumable."""
    from .ebrains import download_url

    download_url(args.url, args.out, _ebrains_settings(args), args.bytes, args.md5)


def cmd_rename(args: argparse.Namespace) -> None:
    """Place one volume's files under their imagesTr/labelsTr/metadata names."""
    from .rename import rename_volume

    rename_volume(
        args.volume,
        {"image": args.image, "label": args.label, "metadata": args.metadata},
        {"image": args.out_image, "label": args.out_label, "metadata": args.out_metadata},
    )


def cmd_validate(args: argparse.Namespace) -> None:
    """Check one volume pair (and its json); write its report; fail or quarantine."""
    import json

    from .validate import raise_if_invalid, validate_volume, write_report

    rules = json.loads(args.rules) if args.rules else {}
    report = validate_volume(args.volume, args.image, args.label, args.metadata, rules)
    write_report(args.out, report)
    if not report["valid"]:
        log.warning("%s: invalid (%s)", args.volume, ", ".join(report["failed_checks"]))
        if args.on_invalid == "fail":
            raise_if_invalid(report)


def cmd_validation_report(args: argparse.Namespace) -> None:
    """Merge per-volume validation reports into validation_report.json."""
    from .validate import aggregate_reports, write_report

    merged = aggregate_reports(args.reports, args.on_invalid)
    write_report(args.out, merged)
    log.info("%d valid, %d quarantined", len(merged["valid"]), len(merged["quarantined"]))


def cmd_resample(args: argparse.Namespace) -> None:
    """Resample one validated pair onto the target grid (z-slabs, streamed gzip)."""
    import json

    from .fsio import write_json_atomic
    from .resample import resample_pair

    spacing = "native" if args.spacing == ["native"] else [float(v) for v in args.spacing]
    record = resample_pair(
        args.volume,
        args.image,
        args.label,
        args.out_image,
        args.out_label,
        spacing,
        args.image_interpolator,
        args.label_interpolator,
        args.codec,
        args.level,
        args.max_output_voxels or None,
        args.source_units,
        threads=args.threads,
    )
    if args.record:
        write_json_atomic(args.record, record)
    log.info("%s", json.dumps(record["output"], sort_keys=True))


def cmd_drift(args: argparse.Namespace) -> None:
    """Make the drift variants of one resampled volume and one kind at each --drift-level
    (one decode of the clean pair) and write each level's manifest entry."""
    import json

    from .drift import Compression, VariantFiles, VariantSpec, generate_drift_levels
    from .errors import DriftError
    from .fsio import write_json_atomic

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

    from .drift import merge_manifest_entries
    from .fsio import write_json_atomic

    skipped = json.loads(args.skipped)
    for item in skipped:
        print(f"drift: {item['drift_type']} skipped: {item['reason']}", file=sys.stderr)
    write_json_atomic(args.out, merge_manifest_entries(args.entries, skipped=skipped))


def cmd_drift_set(args: argparse.Namespace) -> None:
    """Write the dataset.json of one drift variant set (type, level)."""
    import json

    from .drift import variant_dataset_json
    from .fsio import write_json_atomic

    entries = [json.loads(Path(p).read_text()) for p in args.entries]
    write_json_atomic(args.out, variant_dataset_json(args.type, args.set_level, entries))


def cmd_drift_select(args: argparse.Namespace) -> None:
    """Choose one set-level drift set (prevalence) of clean volumes; write its dataset.json
    and manifest entry (no image is changed)."""
    from .drift.base import severity_for_level
    from .drift.prevalence import generate_set
    from .drift.variant import report_fractions, set_pool
    from .fsio import write_json_atomic

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


def _section(root: str, files: list[str]):
    from .release import Section

    return Section(root, tuple(files)) if files else None


def cmd_bundle(args: argparse.Namespace) -> None:
    """Assemble the bag, its DVC metadata and the deterministic archive from the declared
    files; print the digest."""
    import json

    from .release import ReleaseSpec, build_release

    spec = ReleaseSpec(
        out_dir=args.out_dir,
        version=args.bundle_version,
        source_date_epoch=args.source_date_epoch,
        validation_report=args.validation_report,
        summary=args.summary,
        raw=_section(args.raw_root, args.raw),
        processed=_section(args.processed_root, args.processed),
        resample_records=tuple(args.resample_records),
        drift=_section(args.drift_root, args.drift),
        drift_manifest=args.drift_manifest,
        quarantine=_section(args.quarantine_root, args.quarantine),
        quarantined=args.quarantined,
        listing=args.listing,
        lock=args.lock,
        git_commit=args.git_commit,
        config=json.loads(args.config_json) if args.config_json else {},
        stages=json.loads(args.stages_json) if args.stages_json else {},
        threads=args.threads or 1,
        archive=args.archive,
    )
    result = build_release(spec)
    if result["archive"]:
        print(f"bundle {Path(args.out_dir) / result['archive']} sha256 {result['sha256']}")
    else:
        print(
            f"bundle {Path(args.out_dir) / result['bag']} manifest-sha256.txt sha256 "
            f"{result['manifest_digest']}"
        )


def cmd_verify(args: argparse.Namespace) -> None:
    """Verify bag folders or archives: files, manifests, tag files, DVC hashes."""
    from .errors import BundleError
    from .fsio import write_bytes_atomic
    from .verify import verdict, verify_bundle

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


def cmd_report_mips(args: argparse.Namespace) -> None:
    """Report figures of every valid volume: its MIP before and after resampling."""
    import json

    from . import report

    validation = json.loads(Path(args.validation_report).read_text())
    report.volume_mips(args.mip_dir, validation["valid"], args.before, args.after)


def cmd_report_figures(args: argparse.Namespace) -> None:
    """Figures for `snakemake --report`: drift gallery, dataset plots, validation table (and
    every volume's MIP with --mip-dir; the workflow draws those earlier, report-mips)."""
    import json

    from . import report

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
    from .train_smoke import train_smoke

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
    from .nnunet import export_nnunet

    folder = export_nnunet(args.bundle, args.out_root, dataset_id=args.dataset_id)
    log.info("nnU-Net dataset at %s", folder)


def cmd_omezarr(args: argparse.Namespace) -> None:
    """Write one processed volume and its mask as OME-Zarr 0.5 with a pyramid and labels."""
    from .fsio import write_json_atomic
    from .omezarr import write_omezarr

    record = write_omezarr(args.image, args.label, args.out, args.volume)
    if args.record:
        write_json_atomic(args.record, record)


def cmd_place(args: argparse.Namespace) -> None:
    """Place one file's exact bytes at a new path (hardlink, else verified copy)."""
    from .rename import place_file

    place_file(args.source, args.target)


def cmd_inventory(args: argparse.Namespace) -> None:
    """Write the pairs found in a tree, with sizes and sha256, as JSON."""
    from .fsio import write_json_atomic
    from .rename import inventory

    result = inventory(args.data_dir)
    write_json_atomic(args.out, result)
    log.info("%d volume pairs in %s", result["count"], args.data_dir)


def cmd_calibrate(args: argparse.Namespace) -> None:
    """Compare synthetic volumes with a real mask on the calibration figures."""
    from .calibration import calibration_table

    print(calibration_table(args.real_mask, args.volume, args.seeds), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minivess-bundle", description="Build and check the MiniVess data bundle."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help=cmd_fetch.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--source", choices=("synthetic", "zip", "dir"), required=True)
    p.add_argument("--source-path", default="", help="the EBRAINS ZIP (zip) or folder (dir)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size-xy", type=int, required=True)
    p.add_argument("--max-z", type=int, required=True)
    _add_compression(p)
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("fetch-licence", help=cmd_fetch_licence.__doc__)
    p.add_argument("--source", choices=("synthetic", "zip", "dir"), required=True)
    p.add_argument("--source-path", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_fetch_licence)

    def ebrains_options(p: argparse.ArgumentParser, dataset: bool = True) -> None:
        if dataset:  # download-url fetches a plain URL: no data-proxy, no dataset
            p.add_argument("--api-base", required=True)
            p.add_argument("--dataset-id", required=True)
        p.add_argument("--ca-bundle", default="", help="extra CA bundle (PEM) to trust")
        p.add_argument("--max-attempts", type=int, required=True, help="per file, all causes")

    p = sub.add_parser("ebrains-list", help=cmd_ebrains_list.__doc__)
    ebrains_options(p)
    p.add_argument("--volumes", type=_volume, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_ebrains_list)

    p = sub.add_parser("ebrains-fetch", help=cmd_ebrains_fetch.__doc__)
    ebrains_options(p)
    p.add_argument("volume", type=_volume)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True, help="download folder kept across failed runs")
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=cmd_ebrains_fetch)

    p = sub.add_parser("ebrains-licence", help=cmd_ebrains_licence.__doc__)
    ebrains_options(p)
    p.add_argument("--listing", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_ebrains_licence)

    p = sub.add_parser("download-url", help=cmd_download_url.__doc__)
    ebrains_options(p, dataset=False)
    p.add_argument("url")
    p.add_argument("--out", required=True)
    p.add_argument("--bytes", type=int, required=True, help="expected size (0: from HEAD)")
    p.add_argument("--md5", default="", help="expected MD5, if known")
    p.set_defaults(func=cmd_download_url)

    p = sub.add_parser("rename", help=cmd_rename.__doc__)
    p.add_argument("volume", type=_volume)
    for role in ("image", "label", "metadata"):
        p.add_argument(f"--{role}", required=True)
        p.add_argument(f"--out-{role}", required=True)
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("validate", help=cmd_validate.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--metadata", default=None)
    p.add_argument("--rules", default="", help="validation rules as JSON (validate.profiles)")
    p.add_argument("--on-invalid", choices=("fail", "quarantine"), required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("validation-report", help=cmd_validation_report.__doc__)
    p.add_argument("reports", nargs="+")
    p.add_argument("--on-invalid", choices=("fail", "quarantine"), required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_validation_report)

    p = sub.add_parser("resample", help=cmd_resample.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument(
        "--spacing",
        nargs="+",
        required=True,
        help="target spacing in um (x y z, or one value), or 'native'",
    )
    p.add_argument("--image-interpolator", choices=("linear", "bspline"), required=True)
    p.add_argument("--label-interpolator", choices=("nearest", "label_gaussian"), required=True)
    p.add_argument("--max-output-voxels", type=int, required=True, help="0: no limit")
    p.add_argument("--source-units", choices=("um", "mm", "nm", "m"), required=True)
    p.add_argument("--threads", type=int, required=True)
    _add_compression(p)
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

    p = sub.add_parser("bundle", help=cmd_bundle.__doc__)
    p.add_argument("--bundle-version", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--source-date-epoch", type=int, required=True)
    for section, what in (
        ("raw", "renamed files of the valid volumes and the licence"),
        ("processed", "processed files of the valid volumes"),
        ("drift", "drift variants and each set's dataset.json"),
        ("quarantine", "renamed files of the quarantined volumes"),
    ):
        p.add_argument(f"--{section}", nargs="*", default=[], help=f"the {what}; none: left out")
        p.add_argument(f"--{section}-root", default="", help=f"the folder --{section} lies in")
    p.add_argument("--resample-records", nargs="*", default=[])
    p.add_argument("--drift-manifest", default="", help="empty: no drift section")
    p.add_argument("--quarantined", choices=("omit", "include"), required=True)
    p.add_argument("--validation-report", required=True)
    p.add_argument("--listing", default="")
    p.add_argument("--lock", default="")
    p.add_argument("--git-commit", default="")
    p.add_argument("--config-json", default="")
    p.add_argument("--stages-json", default="")
    p.add_argument("--summary", required=True)
    p.add_argument("--threads", type=int, help="files copied and hashed at once (default 1)")
    p.add_argument(
        "--archive",
        action=argparse.BooleanOptionalAction,
        required=True,
        help="also write the deterministic .tar and its .sha256 (--no-archive: the bag only; "
        "the config's bundle.archive decides, so the command has no default of its own)",
    )
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("verify", help=cmd_verify.__doc__)
    p.add_argument("paths", nargs="+", help="a bag folder and/or its .tar", metavar="path")
    p.add_argument("--out", default="", help="write the verdict here when it is OK")
    p.add_argument("--threads", type=int, help="files hashed at once (default 1)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("report-mips", help=cmd_report_mips.__doc__)
    p.add_argument("--validation-report", required=True, help="its valid volumes are drawn")
    p.add_argument("--before", required=True, help="the renamed tree")
    p.add_argument("--after", required=True, help="the processed tree")
    p.add_argument("--mip-dir", required=True, help="one <volume>.png each")
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
    p.add_argument("--config", default="", help="the drift_eval config block as JSON")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--power-png", default="")
    p.add_argument("--fpr-png", default="")
    p.add_argument("--difficulty-png", default="")
    p.set_defaults(func=cmd_drift_eval)

    p = sub.add_parser("export-nnunet", help=cmd_export_nnunet.__doc__)
    p.add_argument("bundle")
    p.add_argument("--out-root", required=True)
    p.add_argument("--dataset-id", type=int, default=501)
    p.set_defaults(func=cmd_export_nnunet)

    p = sub.add_parser("omezarr", help=cmd_omezarr.__doc__)
    p.add_argument("volume", type=_volume)
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True, help="the .ome.zarr folder to write")
    p.add_argument("--record", default="", help="where to write what the export did (JSON)")
    p.set_defaults(func=cmd_omezarr)

    p = sub.add_parser("place", help=cmd_place.__doc__)
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(func=cmd_place)

    p = sub.add_parser("inventory", help=cmd_inventory.__doc__)
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("calibrate", help=cmd_calibrate.__doc__)
    p.add_argument("real_mask")
    p.add_argument(
        "--volume",
        type=_volume,
        default="mv68",
        help="synthetic volume to compare (mv68 shares the real grid)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[20230301])
    p.set_defaults(func=cmd_calibrate)

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
        args.func(args)
    except MinivessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permissions, a vanished file: name the file
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
