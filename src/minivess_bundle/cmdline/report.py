"""Report: every valid volume's MIP before and after resampling (``report-mips``) and the
figures of ``snakemake --report`` (``report-figures``)."""

from __future__ import annotations

import argparse


def cmd_report_mips(args: argparse.Namespace) -> None:
    """Report figures of every valid volume: its MIP before and after resampling."""
    import json
    from pathlib import Path

    from ..report import figures as report

    validation = json.loads(Path(args.validation_report).read_text())
    threads = getattr(args, "threads", 1)  # (report-figures --mip-dir draws them in one)
    report.volume_mips(args.mip_dir, validation["valid"], args.before, args.after, threads)


def cmd_report_figures(args: argparse.Namespace) -> None:
    """Figures for `snakemake --report`: drift gallery, dataset plots, validation table (and
    every volume's MIP with --mip-dir; the workflow draws those earlier, report-mips)."""
    import json
    from pathlib import Path

    from ..report import figures as report

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


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the report commands; the last parser is returned."""
    p = subparsers.add_parser("report-mips", help=cmd_report_mips.__doc__)
    p.add_argument("--validation-report", required=True, help="its valid volumes are drawn")
    p.add_argument("--before", required=True, help="the renamed tree")
    p.add_argument("--after", required=True, help="the processed tree")
    p.add_argument("--mip-dir", required=True, help="one <volume>.png each")
    p.add_argument("--threads", type=int, required=True, help="volumes drawn at once")
    p.set_defaults(func=main, run=cmd_report_mips)

    p = subparsers.add_parser("report-figures", help=cmd_report_figures.__doc__)
    p.add_argument("--validation-report", required=True)
    p.add_argument("--before", default="", help="the renamed tree (with --mip-dir)")
    p.add_argument("--after", required=True, help="the processed tree")
    p.add_argument("--drift", default="")
    p.add_argument("--drift-manifest", default="")
    p.add_argument("--mip-dir", default="", help="draw every volume's MIP here too")
    p.add_argument("--gallery-png", default="")
    p.add_argument("--dataset-png", required=True)
    p.add_argument("--table-html", required=True)
    p.set_defaults(func=main, run=cmd_report_figures)
    return p


def main(args: argparse.Namespace) -> int:
    """Run the command the arguments name."""
    return args.run(args) or 0
