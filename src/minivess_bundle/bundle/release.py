"""What a release contains, built from the file lists the bundle rule declares.

:func:`build_release` is the bundle stage: it selects exactly the declared files
into the bag's sections (a file the DAG did not declare can never reach the bag),
builds the lineage and provenance records, the bag (:func:`~minivess_bundle.bundle.
assemble_bundle`), its DVC metadata and (``archive``) the deterministic tar, and returns the
summary the workflow prints.

Sections and where their files come from:

``raw``         the renamed files of the *valid* volumes, and the licence
``processed``   the processed files of the valid volumes
``drift``       the drift variants and each set's ``dataset.json``
``quarantine``  only with ``quarantined="include"``: the renamed files of the
                quarantined volumes (``data/quarantine/``), never under ``raw/``;
                their reasons are in ``data/quarantine.json`` either way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.errors import BundleError
from ..core.layout import BAG_SECTIONS
from ..core.volumes import renamed_names

log = logging.getLogger(__name__)

QUARANTINE_POLICIES = ("omit", "include")


@dataclass(frozen=True)
class Section:
    """Declared files of one bag section, and the folder their bag paths are relative to."""

    root: str
    files: tuple[str, ...] = ()

    def relative(self) -> list[tuple[Path, str]]:
        """``(file, path in the section)`` for every declared file, checked to lie under root."""
        root = Path(self.root)
        pairs = []
        for file in sorted(set(self.files)):
            path = Path(file)
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                raise BundleError(
                    "declared file lies outside its section's folder",
                    path=path,
                    expected=f"a file under {root}",
                ) from None
            pairs.append((path, rel))
        return pairs


@dataclass(frozen=True)
class ReleaseSpec:
    """Everything one release is made of (paths as the rule declares them)."""

    out_dir: str
    version: str
    source_date_epoch: int
    validation_report: str
    summary: str
    raw: Section | None = None
    processed: Section | None = None
    resample_records: tuple[str, ...] = ()
    drift: Section | None = None
    drift_manifest: str = ""
    quarantine: Section | None = None
    quarantined: str = "omit"
    listing: str = ""
    lock: str = ""
    git_commit: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    extra_provenance: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    archive: bool = True

    #: The stage this spec is for (``minivess-bundle bundle --spec``).
    STAGE = "bundle"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReleaseSpec:
        """The spec from :func:`dataclasses.asdict`'s shape (the ``--spec`` JSON)."""
        values = dict(data)
        for name in SECTION_NAMES:
            section = values.get(name)
            values[name] = Section(section["root"], tuple(section["files"])) if section else None
        values["resample_records"] = tuple(values.get("resample_records", ()))
        return cls(**values)


#: The bag's file sections, each a :class:`Section` of :class:`ReleaseSpec` (the layout's).
SECTION_NAMES = BAG_SECTIONS


def stage_record(config: Mapping[str, Any]) -> dict[str, Any]:
    """What each stage did, by the config (provenance's ``stages``)."""
    return {
        "fetch": {"source": config["source"]},
        "rename": {"method": "verified copy, bytes untouched"},
        "validate": dict(config["validate"]),
        "resample": config["resample"],
        "drift": config["drift"],
        "compression": config["compression"],
    }


def release_spec(
    config: Mapping[str, Any],
    files: Mapping[str, Any],
    *,
    out_dir: str,
    summary: str,
    validation_report: str,
    lock: str = "",
    git_commit: str = "",
    threads: int = 1,
    environ: Mapping[str, str] | None = None,
) -> ReleaseSpec:
    """The bundle stage's spec from the (validated) config and the files the rule declares.

    ``files`` maps each section of :data:`SECTION_NAMES` to its declared files (empty:
    left out), ``records`` to the resample records, and optionally ``drift_manifest`` and
    ``listing``. The sections' folders are the layout's; ``SOURCE_DATE_EPOCH`` in
    ``environ`` (default: this process's) wins over ``bundle.source_date_epoch``.
    """
    from ..core import layout
    from ..core.config import recorded

    environ = os.environ if environ is None else environ
    roots = {
        "raw": layout.RENAMED_ROOT,
        "processed": layout.PROCESSED_ROOT,
        "drift": layout.DRIFT_ROOT,
        "quarantine": layout.RENAMED_ROOT,
    }
    sections = {
        name: Section(roots[name], tuple(map(str, files.get(name, ()))))
        if files.get(name)
        else None
        for name in SECTION_NAMES
    }
    bundle = config["bundle"]
    return ReleaseSpec(
        out_dir=str(out_dir),
        version=bundle["version"],
        source_date_epoch=int(environ.get("SOURCE_DATE_EPOCH") or bundle["source_date_epoch"]),
        validation_report=str(validation_report),
        summary=str(summary),
        **sections,
        resample_records=tuple(map(str, files.get("records", ()))),
        drift_manifest=str(files.get("drift_manifest", "")),
        quarantined=bundle["quarantined"],
        listing=str(files.get("listing", "")),
        lock=str(lock),
        git_commit=git_commit,
        config=recorded(config),
        stages=stage_record(config),
        threads=int(threads or 1),
        archive=bool(bundle["archive"]),
    )


def select(section: Section, into: Path) -> Path:
    """A tree of hardlinks to exactly the section's declared files: what the section holds."""
    for file, rel in section.relative():
        if not file.is_file():
            raise BundleError("declared file does not exist", path=file)
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(file, target)
    return into


def drift_lineage(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One lineage entry per drifted file: its clean source, the rule and the parameters."""
    lineage = []
    for v in manifest["variants"]:
        for role in ("image", "label"):
            files = v["files"][role]
            lineage.append(
                {
                    "file": f"drift/{files['drifted']['path']}",
                    "source": f"processed/{files['clean']['path']}",
                    "source_sha256": files["clean"]["sha256"],
                    "rule": "drift",
                    "parameters": {
                        "type": v["drift_type"],
                        "level": v["level"],
                        "severity": v["severity"],
                        "seed": v["seed"],
                        **v["parameters"],
                    },
                }
            )
    return lineage


def resample_lineage(records: Sequence[str | Path], with_raw: bool) -> list[dict[str, Any]]:
    """One lineage entry per processed file, from the resample records (one per volume)."""
    lineage = []
    for path in sorted(records, key=lambda p: Path(p).name):
        vol = Path(path).name.removesuffix(".json")
        record = json.loads(Path(path).read_text())
        names = renamed_names(vol)  # imagesTr/<vol>.nii.gz, labelsTr/<vol>.nii.gz
        for role in ("image", "label"):
            lineage.append(
                {
                    "file": f"processed/{names[role]}",
                    "source": f"raw/{names[role]}" if with_raw else None,
                    "rule": "resample",
                    "parameters": {
                        "target_spacing": record.get("target_spacing"),
                        "interpolator": record["interpolators"][role],
                        "output": record["output"],
                        "units": record.get("units"),
                    },
                }
            )
    return lineage


def _check_volumes(spec: ReleaseSpec, valid: list[str], quarantined: list[str]) -> None:
    """The declared per-volume files belong to the volumes the validation report names."""
    allowed = {"raw": set(valid), "processed": set(valid), "quarantine": set(quarantined)}
    for name, section in (
        ("raw", spec.raw),
        ("processed", spec.processed),
        ("quarantine", spec.quarantine),
    ):
        for file, rel in section.relative() if section else []:
            stem = Path(rel).name.split(".", 1)[0]
            if stem.startswith("mv") and stem[2:].isdigit() and stem not in allowed[name]:
                raise BundleError(
                    f"{stem}: {name} section was given a file of a volume the validation "
                    f"report does not list as {'quarantined' if name == 'quarantine' else 'valid'}",
                    path=file,
                    expected=f"only volumes {sorted(allowed[name])}",
                )


def build_release(spec: ReleaseSpec) -> dict[str, Any]:
    """Build the bag, its DVC metadata and the archive from ``spec``; return the summary."""
    from ..core.fsio import remove_stale, write_json_atomic
    from . import assemble_bundle
    from .archive import sha256_path, write_archive
    from .dvcmeta import write_dvc_metadata
    from .provenance_env import container_image

    if spec.quarantined not in QUARANTINE_POLICIES:
        raise BundleError(
            f"bundle.quarantined {spec.quarantined!r}", expected=" or ".join(QUARANTINE_POLICIES)
        )
    report = json.loads(Path(spec.validation_report).read_text())
    valid = list(report["valid"])
    quarantined = [q["volume"] for q in report["quarantined"]]
    if not valid:
        raise BundleError(
            f"no volume passed validation: all {len(quarantined)} are quarantined, so there is "
            "nothing to vouch for",
            path=spec.validation_report,
            expected="at least one valid volume (see the reasons in the report)",
        )
    _check_volumes(spec, valid, quarantined)
    out_dir = Path(spec.out_dir)
    scratch = out_dir / f".select-{os.getpid()}"
    remove_stale(out_dir, ".select-*")  # this one, and any a killed bundle job left
    try:
        sections: dict[str, Path] = {}
        for name, section in (
            ("raw", spec.raw),
            ("processed", spec.processed),
            ("drift", spec.drift),
            ("quarantine", spec.quarantine if spec.quarantined == "include" else None),
        ):
            if section is not None and section.files:
                sections[f"{name}_dir"] = select(section, scratch / name)
        documents = {"validation_report.json": spec.validation_report}
        lineage: list[dict[str, Any]] = []
        if spec.drift_manifest:
            documents["drift_manifest.json"] = spec.drift_manifest
            lineage += drift_lineage(json.loads(Path(spec.drift_manifest).read_text()))
        if spec.processed is not None:
            lineage += resample_lineage(spec.resample_records, with_raw=spec.raw is not None)
        provenance = {
            "workflow_version": __version__,
            "git_commit": spec.git_commit or None,
            "config": spec.config,
            "lock_file": spec.lock or None,
            "lineage": lineage,
            # the image id when built inside the project's container (None elsewhere)
            "stages": {**spec.stages, "container": container_image()},
            **spec.extra_provenance,
        }
        if spec.listing:
            provenance["ebrains_listing"] = spec.listing
        summary = assemble_bundle(
            out_dir,
            spec.version,
            **sections,
            documents=documents,
            quarantine={q["volume"]: "; ".join(q["reasons"]) for q in report["quarantined"]},
            provenance=provenance,
            source_date_epoch=spec.source_date_epoch,
            threads=spec.threads,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    bag = Path(summary["path"])
    known = {rel: (d["md5"], size) for rel, (size, d) in summary["digests"].items()}
    write_dvc_metadata(bag, known=known)  # the payload's md5s from the copy
    archive = out_dir / f"{bag.name}.tar"
    if spec.archive:
        sha = write_archive(bag, archive, spec.source_date_epoch)
    else:  # no tar: one left by an earlier build with it would no longer match the bag
        sha = ""
        for stale in (archive, sha256_path(archive)):
            stale.unlink(missing_ok=True)
    result = {
        "name": bag.name,
        "bag": bag.name,
        "archive": archive.name if spec.archive else "",
        "sha256": sha,
        "manifest_digest": summary["digest"],
        "files": summary["files"],
        "bytes": summary["bytes"],
        "volumes": summary["volumes"],
        "quarantined": sorted(quarantined),
    }
    write_json_atomic(spec.summary, result)
    if spec.archive:
        log.info("bundle %s sha256 %s", archive, sha)
    else:
        log.info("bundle %s manifest-sha256.txt sha256 %s (no archive)", bag, summary["digest"])
    return result
