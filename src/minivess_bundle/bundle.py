"""Assemble the release bundle: a BagIt 1.0 bag (RFC 8493) that describes itself.

:func:`assemble_bundle` builds ``<out_dir>/minivess-<version>/``::

    bagit.txt  bag-info.txt  manifest-sha256.txt  manifest-sha512.txt
    tagmanifest-sha256.txt  tagmanifest-sha512.txt
    data/
      raw/         renamed originals (imagesTr/labelsTr/metadata), bytes untouched
      processed/   validated + resampled imagesTr/labelsTr/metadata
      drift/       drift variants
      quarantine/  only when asked: quarantined volumes' renamed files (reasons in
                   quarantine.json, which is always written)
      dataset.json               nnU-Net v2 keys + MSD-style ``training`` list
      quarantine.json            volumes left out, with reasons
      <documents>                e.g. validation_report.json, drift_manifest.json
      provenance.json            versions, config, locked packages, per-file lineage
      ro-crate-metadata.json     RO-Crate 1.3, one CreateAction per stage
      croissant.json             Croissant 1.1 with RAI fields, sha256s, record sets
      LICENCE.txt  README.md     attribution and the datasheet

Every section is optional (``None`` leaves it out). Files of the sections and the
documents are copied with :func:`~minivess_bundle.fsio.link_or_copy` (a copy
verified against its source's sha256; hardlinks on request), so their bytes are
the inputs' bytes. The bag is built in a hidden sibling folder and renamed into
place, so a failed build never leaves a half bag at the final path.

Determinism: the outputs depend only on the inputs' bytes, the arguments and
``SOURCE_DATE_EPOCH`` (Bagging-Date, datePublished) — never on wall-clock time,
the host, the user, the working directory or where the inputs live: absolute
paths found in the config become ``<local>/<name>``, and a final scan refuses
the bundle if any text file in it names an input or output folder or the home
folder. JSON is canonical (:func:`~minivess_bundle.fsio.json_bytes`); manifests
are sorted by path with LF line ends.

The folder name has no dot other than the version's: MONAI's
``download_and_extract`` keys its "already extracted" check on the archive name
up to the first dot (see :mod:`minivess_bundle.archive`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .croissant import croissant_metadata
from .errors import BundleError
from .fsio import CHUNK, _fsync_dir, json_bytes, link_or_copy, remove_stale
from .volumes import VOLUME_RE, staging_names

log = logging.getLogger(__name__)

BAG_PREFIX = "minivess-"
SECTIONS = ("raw", "processed", "drift", "quarantine")
ALGORITHMS = ("sha256", "sha512")
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
GENERATED = (
    "dataset.json",
    "quarantine.json",
    "provenance.json",
    "ro-crate-metadata.json",
    "croissant.json",
    "LICENCE.txt",
    "README.md",
)
#: Bag-info labels the assembler computes; ``bag_info`` cannot set them.
COMPUTED_LABELS = ("Payload-Oxum", "Bagging-Date", "Bag-Software-Agent", "Bag-Size")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]*$")
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")

DATASET = {
    "name": "MiniVess",
    "title": (
        "A dataset of rodent cerebrovasculature from in vivo multiphoton fluorescence "
        "microscopy imaging"
    ),
    "authors": "Poon C., Teikari P., et al.",
    "journal": "Scientific Data 10, 141 (2023)",
    "doi": "10.1038/s41597-023-02048-8",
    "ebrains_id": "bf268b89-1420-476b-b428-b85a913eb523",
    "licence": "CC BY-NC-SA 4.0",
    "licence_url": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
}
DOI_URL = f"https://doi.org/{DATASET['doi']}"
EBRAINS_URL = f"https://search.kg.ebrains.eu/instances/{DATASET['ebrains_id']}"
CITATION = f"{DATASET['authors']} {DATASET['title']}. {DATASET['journal']}. doi:{DATASET['doi']}"
RO_CRATE_PROFILE = "https://w3id.org/ro/crate/1.3"
PROCESS_RUN_PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
LABELS = {"background": 0, "vessel": 1}
#: NIfTI ``xyzt_units`` spatial code -> (unit the header values are in, micrometres per unit).
#: 0 (unknown) is the MiniVess release's convention: micrometre numbers, no unit named.
HEADER_UNITS = {0: ("um", 1.0), 1: ("m", 1e6), 2: ("mm", 1e3), 3: ("um", 1.0)}
UNIT_NAMES = {"um": "micrometre", "mm": "millimetre", "m": "metre"}
UNITS_NOTE = (
    "`spacing` holds the header values as MONAI, nnU-Net and SimpleITK read them, in "
    "`spacing_unit`; `spacing_um` gives the same spacing in micrometres. Processed files "
    "declare millimetres (NIfTI xyzt_units = 2, so 0.001 = 1 µm); the raw release stores "
    "micrometre numbers with xyzt_units = 0 (unknown). header_xyzt_units lists the codes "
    "found in this section's headers."
)


# ---------------------------------------------------------------- small helpers


def bag_name(version: str) -> str:
    """``minivess-<version>``; the version may hold digits, letters, ``.``, ``+``, ``-``."""
    if not isinstance(version, str) or not VERSION_RE.match(version) or ".." in version:
        raise BundleError(
            f"version {version!r} is not allowed", expected="e.g. 0.1.0 (letters, digits, . + -)"
        )
    return BAG_PREFIX + version


def bagging_date(source_date_epoch: int) -> str:
    """The UTC date of ``SOURCE_DATE_EPOCH`` (``YYYY-MM-DD``)."""
    if not isinstance(source_date_epoch, int) or source_date_epoch < 0:
        raise BundleError(f"SOURCE_DATE_EPOCH {source_date_epoch!r}", expected="an int >= 0")
    return dt.datetime.fromtimestamp(source_date_epoch, tz=dt.UTC).date().isoformat()


def check_bag_path(rel: str) -> str:
    """Refuse names a manifest cannot carry unambiguously (``%``, ``\\``, control chars)."""
    bad = [c for c in rel if not (" " <= c <= "~") or c in "%\\"]
    parts = rel.split("/")
    if bad or any(p in ("", ".", "..") or p != p.strip() for p in parts):
        raise BundleError(
            f"file name {rel!r} cannot go into a manifest",
            expected="printable ASCII without %, backslash, empty or dot components",
        )
    return rel


def file_digests(path: str | Path) -> tuple[int, dict[str, str]]:
    """Size and ``{"sha256", "sha512", "md5"}`` of a file, in one read."""
    hashers = {
        "sha256": hashlib.sha256(),
        "sha512": hashlib.sha512(),
        "md5": hashlib.md5(usedforsecurity=False),
    }
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            size += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
    return size, {name: h.hexdigest() for name, h in hashers.items()}


def manifest_bytes(digests: Mapping[str, str]) -> bytes:
    """A BagIt manifest: ``<hex>  <path>`` per file, sorted by path, LF line ends."""
    return "".join(f"{digests[p]}  {p}\n" for p in sorted(digests)).encode()


def parse_manifest(text: str) -> dict[str, str]:
    """``{path: hex}`` of a manifest; duplicate paths raise :class:`BundleError`."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, path = line.partition(" ")
        path = path.lstrip(" ").lstrip("*")
        if not digest or not path:
            raise BundleError(f"manifest line {number} is malformed: {line!r}")
        if path in entries:
            raise BundleError(f"manifest lists {path} twice (line {number})")
        entries[path] = digest.lower()
    return entries


def bag_info_bytes(fields: Mapping[str, str | list[str]]) -> bytes:
    """``bag-info.txt``: ``Label: value`` lines, labels sorted, one line per value."""
    lines = []
    for label in sorted(fields):
        values = fields[label]
        for value in [values] if isinstance(values, str) else values:
            lines.append(f"{label}: {value}\n")
    return "".join(lines).encode()


def parse_bag_info(text: str) -> dict[str, list[str]]:
    """``{label: [values]}`` of a tag file (continuation lines folded in)."""
    fields: dict[str, list[str]] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and last is not None:
            fields[last][-1] += " " + line.strip()
            continue
        label, sep, value = line.partition(":")
        if not sep:
            raise BundleError(f"tag line without a colon: {line!r}")
        last = label.strip()
        fields.setdefault(last, []).append(value.strip())
    return fields


def read_lock_file(path: str | Path) -> dict[str, Any]:
    """``{"packages": {name: version}, "unpinned": [...]}`` from a ``name==version`` lock."""
    packages: dict[str, str] = {}
    unpinned: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"cannot read lock file ({exc.strerror})", path=path) from exc
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if sep and name.strip() and version.strip():
            packages[name.strip()] = version.strip()
        else:
            unpinned.append(line)
    return {"packages": dict(sorted(packages.items())), "unpinned": sorted(unpinned)}


def redact_paths(value: Any) -> Any:
    """``value`` with every absolute path string replaced by ``<local>/<name>``."""
    if isinstance(value, Mapping):
        return {str(k): redact_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_paths(v) for v in value]
    if isinstance(value, Path):
        value = value.as_posix()
    if isinstance(value, str) and os.path.isabs(value):
        return f"<local>/{Path(value).name}"
    return value


def read_header(path: str | Path) -> dict[str, Any]:
    """Shape, spacing, dtype, ``xyzt_units`` and ``descrip`` of a NIfTI-1 file (header only,
    through :func:`~minivess_bundle.nifti.read_header`)."""
    from .nifti import read_header as read_nifti_header

    header = read_nifti_header(Path(path), error=BundleError, check_size=False).header
    return {
        "shape": [int(n) for n in header.get_data_shape()],
        "spacing": [round(float(z), 6) for z in header.get_zooms()[:3]],
        "dtype": header.get_data_dtype().name,
        "xyzt_units": int(header["xyzt_units"]),
        "descrip": header["descrip"].item().decode("latin-1").strip("\x00 "),
    }


# ---------------------------------------------------------------- payload


def _place_tree(
    source: Path, dest: Path, section: str, link: bool = False
) -> tuple[list[str], Counter]:
    """Place every visible regular file of ``source`` under ``dest``; hidden ones are skipped."""
    if not source.is_dir():
        raise BundleError(f"{section} folder does not exist", path=source)
    placed, methods = [], Counter()
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            rel = path.relative_to(source).as_posix()
            if name.startswith("."):
                log.info("%s: skipped hidden file %s", section, rel)
                continue
            if path.is_symlink() or not path.is_file():
                raise BundleError(
                    f"{section}: symbolic link or special file",
                    path=path,
                    expected="regular files only",
                )
            check_bag_path(f"{section}/{rel}")
            methods[link_or_copy(path, dest / rel, allow_link=link)] += 1
            placed.append(f"{section}/{rel}")
    if not placed:
        raise BundleError(f"{section} folder holds no files", path=source)
    return placed, methods


def _volume_of(name: str) -> str | None:
    stem = name.split(".", 1)[0]
    return stem if VOLUME_RE.fullmatch(stem) else None


def dataset_description(
    data_dir: Path, section: str, version: str, exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``dataset.json`` for the image/label pairs in ``data_dir/section``.

    Carries nnU-Net v2's keys (``channel_names``, ``labels``, ``numTraining``,
    ``file_ending`` and ``dataset``, the explicit file map nnU-Net v2 reads when
    file names lack the ``_0000`` channel suffix), MSD's ``training`` list (what
    MONAI's ``load_decathlon_datalist`` reads), and per-volume shape and spacing.
    Paths are relative to ``data/``. Volumes in ``exclude`` (quarantined) are left out.
    """
    from .loader import discover_nifti_pairs

    pairs = [p for p in discover_nifti_pairs(data_dir / section) if p["id"] not in exclude]
    training, files, volumes = [], {}, []
    codes = set()
    for pair in pairs:
        image = Path(pair["image"]).relative_to(data_dir).as_posix()
        label = Path(pair["label"]).relative_to(data_dir).as_posix()
        head_i, head_l = read_header(pair["image"]), read_header(pair["label"])
        if head_i["shape"] != head_l["shape"]:
            raise BundleError(
                f"image shape {head_i['shape']} and label shape {head_l['shape']} differ",
                volume=pair["id"],
                path=label,
                expected="one grid per pair",
            )
        codes.update((head_i["xyzt_units"] & 0x07, head_l["xyzt_units"] & 0x07))
        unit, um_per_unit = HEADER_UNITS.get(head_i["xyzt_units"] & 0x07, (None, None))
        if unit is None:
            raise BundleError(
                f"spatial unit code {head_i['xyzt_units'] & 0x07} is not a length unit",
                volume=pair["id"],
                path=image,
                expected="xyzt_units 0 (MiniVess um), 1 (m), 2 (mm) or 3 (um)",
            )
        training.append({"image": f"./{image}", "label": f"./{label}"})
        files[pair["id"]] = {"images": [image], "label": label}
        volumes.append(
            {
                "id": pair["id"],
                "shape": head_i["shape"],
                "spacing": head_i["spacing"],
                "spacing_unit": unit,
                "spacing_um": [round(z * um_per_unit, 6) for z in head_i["spacing"]],
                "image_dtype": head_i["dtype"],
                "label_dtype": head_l["dtype"],
                "synthetic": head_i["descrip"].startswith("SYNTHETIC"),
            }
        )
    units = sorted({v["spacing_unit"] for v in volumes})
    unit_name = {0: "none (no volumes)", 1: units[0] if units else ""}.get(
        len(units), "mixed (see volumes[].spacing_unit)"
    )
    return {
        "name": DATASET["name"],
        "description": f"{DATASET['name']} {version}: two-photon microscopy of rodent "
        "cerebrovasculature with vessel masks",
        "reference": DOI_URL,
        "licence": DATASET["licence"],
        "release": version,
        "tensorImageSize": "3D",
        "channel_names": {"0": "two-photon"},
        "modality": {"0": "two-photon"},
        "labels": dict(LABELS),
        "numTraining": len(training),
        "numTest": 0,
        "file_ending": ".nii.gz",
        "training": training,
        "test": [],
        "dataset": files,
        "section": section,
        "spacing": {v["id"]: v["spacing"] for v in volumes},
        "spacing_unit": unit_name,
        "spacing_um": {v["id"]: v["spacing_um"] for v in volumes},
        "units": {
            "spacing": UNIT_NAMES.get(unit_name, unit_name),
            "spacing_um": "micrometre",
            "header_xyzt_units": sorted(codes),
            "decision": UNITS_NOTE,
        },
        "volumes": volumes,
    }


def _auto_lineage(payload: Mapping[str, str], documents: Mapping[str, str]) -> dict[str, dict]:
    """Default lineage of each payload file (``{rel: sha256}``) from the bundle's layout."""
    lineage: dict[str, dict] = {}
    for rel, sha in payload.items():
        parts = rel.split("/")
        record: dict[str, Any] = {"file": rel, "sha256": sha, "parameters": {}}
        if parts[0] in ("raw", "quarantine"):
            volume = _volume_of(parts[-1])
            role = {"imagesTr": "image", "labelsTr": "label", "metadata": "metadata"}.get(
                parts[-2] if len(parts) > 2 else ""
            )
            source = staging_names(volume)[role] if volume and role else "/".join(parts[1:])
            record.update(
                source=f"ebrains:{source}",
                source_sha256=sha,
                rule="rename",
                parameters={"bytes": "untouched"},
            )
        elif parts[0] in ("processed", "drift"):
            upstream = "raw" if parts[0] == "processed" else "processed"
            source = "/".join([upstream, *parts[-2:]])
            record.update(
                source=source if source in payload else None,
                source_sha256=payload.get(source),
                rule="resample" if parts[0] == "processed" else "drift",
            )
            if parts[0] == "drift" and len(parts) > 3:
                record["parameters"] = {"variant": parts[1]}
        elif rel in documents:
            record.update(source=documents[rel], source_sha256=sha, rule="bundle")
        else:
            continue
        lineage[rel] = record
    return lineage


def provenance_record(
    name: str,
    version: str,
    source_date_epoch: int,
    payload: Mapping[str, str],
    documents: Mapping[str, str],
    provenance: Mapping[str, Any],
    sections: list[str],
) -> dict[str, Any]:
    """``provenance.json``: what built the bundle, from what, and each file's lineage.

    ``provenance`` may hold ``workflow_version``, ``git_commit``, ``config`` (the
    resolved config; absolute paths are redacted), ``lock_file`` (path to a
    ``name==version`` lock), ``ebrains_listing`` (dict, or path to its JSON),
    ``lineage`` (records ``{"file", "source", "source_sha256", "rule",
    "parameters"}`` that override the defaults for the same ``file``) and
    ``stages`` (``{stage: {...}}`` recorded as given).
    """
    known = {"workflow_version", "git_commit", "config", "lock_file", "ebrains_listing"}
    unknown = set(provenance) - known - {"lineage", "stages"}
    if unknown:
        raise BundleError(
            f"unknown provenance keys {sorted(unknown)}", expected=f"some of {sorted(known)}"
        )
    lineage = _auto_lineage(payload, documents)
    for given in provenance.get("lineage") or []:
        rel = given.get("file")
        if rel not in payload:
            raise BundleError(f"lineage names {rel!r}, which is not in the bundle's data/")
        merged = {**lineage.get(rel, {"file": rel, "parameters": {}}), **given}
        merged["sha256"] = payload[rel]
        lineage[rel] = merged
    listing = provenance.get("ebrains_listing")
    if isinstance(listing, (str, Path)):
        try:
            listing = json.loads(Path(listing).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot read the EBRAINS listing ({exc})", path=listing) from exc
    lock = provenance.get("lock_file")
    software: dict[str, Any] = {"minivess_bundle": __version__}
    if lock:
        software["lock_file"] = Path(lock).name
        software.update(read_lock_file(lock))
    return {
        "bundle": {
            "name": name,
            "version": version,
            "source_date_epoch": source_date_epoch,
            "bagging_date": bagging_date(source_date_epoch),
            "sections": sections,
        },
        "workflow": {
            "name": "minivess-bundle",
            "version": provenance.get("workflow_version", __version__),
            "git_commit": provenance.get("git_commit"),
        },
        "config": redact_paths(provenance.get("config") or {}),
        "software": software,
        "ebrains_listing": listing,
        "stages": redact_paths(provenance.get("stages") or {}),
        "lineage": [redact_paths(lineage[rel]) for rel in sorted(lineage)],
        "generated": sorted(GENERATED),
    }


def licence_text(synthetic: bool, version: str) -> str:
    """``LICENCE.txt``: the licence, attribution, changes made, and the citation."""
    head = (
        "SYNTHETIC DATA — this bundle was built from minivess-bundle's synthetic stand-in,\n"
        "not from the MiniVess release. It contains no measured data.\n\n"
        if synthetic
        else ""
    )
    return (
        f"{head}MiniVess {version} bundle — licence and attribution\n\n"
        f"Data: MiniVess, (c) its authors ({DATASET['authors']}), licensed under\n"
        f"{DATASET['licence']} ({DATASET['licence_url']}):\n"
        "attribution required, non-commercial use only, share adaptations alike.\n\n"
        "Source: EBRAINS dataset "
        f"{DATASET['ebrains_id']} ({EBRAINS_URL}).\n\n"
        "Changes made (as required by the licence): raw/ holds the released files\n"
        "byte for byte under new names (masks renamed from mvNN_y to mvNN);\n"
        "processed/ and drift/ are adaptations (validated, resampled, perturbed) and are\n"
        f"distributed under the same licence. provenance.json lists every step.\n\n"
        f"Cite:\n  {CITATION}\n\n"
        "Packaging code (minivess-bundle): MIT licence.\n"
    )


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def datasheet(
    name: str,
    version: str,
    date: str,
    sections: Mapping[str, int],
    dataset: Mapping[str, Any] | None,
    quarantine: Mapping[str, str],
    documents: list[str],
    drift_variants: list[str],
    synthetic: bool,
    source: str | None,
) -> str:
    """The datasheet ``README.md``: what, where from, licence, counts, use, verify.

    The MONAI and nnU-Net snippets are those of :mod:`minivess_bundle.monai` and
    :mod:`minivess_bundle.nnunet`, so the datasheet shows what their tests run.
    """
    from .monai import MONAI_SNIPPET
    from .nnunet import NNUNET_SNIPPET

    out = [f"# MiniVess {version} — data bundle `{name}`\n"]
    if synthetic:
        out.append(
            "> **SYNTHETIC DATA.** Built from minivess-bundle's synthetic stand-in, not from "
            "the MiniVess release: same layout and header conventions, no measured data.\n"
        )
    out.append(
        "## What\n\nTwo-photon microscopy volumes of rodent cerebrovasculature with binary "
        "vessel masks (NIfTI-1, `.nii.gz`), packaged as a BagIt 1.0 bag with checksums "
        f"(sha256 + sha512), an RO-Crate 1.3 description and DVC 3 metadata. Bagging date "
        f"{date} (from `SOURCE_DATE_EPOCH`).\n"
    )
    out.append(
        f"## Where from\n\nEBRAINS dataset `{DATASET['ebrains_id']}` ({EBRAINS_URL}), "
        f"described in {CITATION}. Built by minivess-bundle {__version__}"
        + (f" from the `{source}` source" if source else "")
        + "; `provenance.json` records the config, software versions and each file's "
        "lineage, `ro-crate-metadata.json` one action per stage.\n"
    )
    out.append(
        f"## Licence\n\n{DATASET['licence']} ({DATASET['licence_url']}) — attribution, "
        "non-commercial, share-alike. See `LICENCE.txt` for the attribution text and the "
        "changes made.\n"
    )
    out.append(
        "## Citation\n\n```bibtex\n@article{poon2023minivess,\n"
        f"  author = {{Poon, Charissa and Teikari, Petteri and others}},\n"
        f"  title = {{{DATASET['title']}}},\n"
        "  journal = {Scientific Data}, volume = {10}, pages = {141}, year = {2023},\n"
        f"  doi = {{{DATASET['doi']}}}\n}}\n```\n"
    )
    rows = [[f"`data/{s}/`", str(n)] for s, n in sections.items()]
    rows += [[f"`data/{d}`", "1"] for d in documents]
    out.append("## Contents\n\n" + _table(rows, ["path", "files"]))
    if quarantine:
        qrows = [[v, reason] for v, reason in sorted(quarantine.items())]
        out.append(
            f"\n{len(quarantine)} volume(s) quarantined (left out, listed in "
            "`quarantine.json`):\n\n" + _table(qrows, ["volume", "reason"])
        )
    else:
        out.append("\nNo volume was quarantined (`quarantine.json`).\n")
    if dataset:
        vols = dataset["volumes"]
        vrows = [
            [
                v["id"],
                " × ".join(map(str, v["shape"])),
                " × ".join(f"{s:g}" for s in v["spacing_um"]),
            ]
            for v in vols
        ]
        out.append(
            f"\n## Volumes, shapes and units\n\n`dataset.json` lists {len(vols)} pairs from "
            f"`data/{dataset['section']}/`. {UNITS_NOTE} Labels: "
            + ", ".join(f"{k} = {v}" for k, v in LABELS.items())
            + ".\n\n"
            + _table(vrows, ["volume", "shape (x × y × z)", "spacing (µm)"])
        )
    if drift_variants:
        out.append(
            "\n## Drift variants\n\n`data/drift/` holds perturbed copies for robustness "
            "tests: " + ", ".join(f"`{v}`" for v in drift_variants) + ". "
            "`drift_manifest.json` (when present) records each variant's parameters.\n"
        )
    out.append(
        "\n## How to verify\n\n```bash\n"
        f"sha256sum -c {name}.tar.sha256          # the archive, if you have it\n"
        f"minivess-bundle verify {name}.tar        # or the extracted folder {name}/\n"
        f"bagit.py --validate {name}               # LoC bagit-python, independent\n"
        f"dvc status                                # with ../{name}.dvc in a DVC repo\n"
        "```\n\nThe digest `minivess-bundle verify` prints is the sha256 of the `.tar` for "
        "an archive, and the sha256 of `manifest-sha256.txt` for a folder (it pins every "
        "payload file's bytes).\n"
    )
    out.append(
        "\n## Loading\n\nMONAI (`dataset.json`'s `training` list; paths relative to `data/`):"
        f"\n\n```python\n{MONAI_SNIPPET.format(bundle=name)}```\n\n"
        "MONAI's `download_and_extract` decides whether to extract by looking for a folder "
        "named after the archive up to its first dot (`minivess-0`), so it extracts again on "
        f"every call; the files land in `<output_dir>/{name}/`.\n\n"
        "nnU-Net v2 (export to `imagesTr/<id>_0000.nii.gz` names; `dataset.json` also carries "
        "the explicit `dataset` file map nnU-Net v2 reads in place):"
        f"\n\n```bash\n{NNUNET_SNIPPET.format(bundle=name)}```\n\n"
        "minivess-bundle's loader:\n\n```python\n"
        "from minivess_bundle.loader import discover_nifti_pairs\n"
        f'pairs = discover_nifti_pairs("{name}")   # data/processed/imagesTr + labelsTr\n'
        "```\n"
    )
    return "\n".join(out)


# ---------------------------------------------------------------- RO-Crate


NIFTI_FORMAT = "https://nifti.nimh.nih.gov/nifti-1/"
AGENT_ID = "#build"
#: Where minivess-bundle is described (its package metadata's project URL).
SOFTWARE_URL = "https://pypi.org/project/minivess-bundle/"
_DESCRIPTIONS = (
    ("raw/imagesTr/", "two-photon image as released (renamed, bytes untouched)"),
    ("raw/labelsTr/", "vessel mask as released (renamed, bytes untouched)"),
    ("raw/metadata/", "per-volume acquisition metadata as released"),
    ("processed/imagesTr/", "validated image resampled onto the target grid"),
    ("processed/labelsTr/", "validated vessel mask resampled onto the image's grid"),
    ("processed/metadata/", "per-volume metadata of a processed volume"),
    ("drift/", "drift variant (a controlled distribution shift) of a processed volume"),
)


def _describe(rel: str) -> str:
    """A one-line description of payload file ``rel`` from where it lives."""
    for prefix, text in _DESCRIPTIONS:
        if rel.startswith(prefix):
            return text[0].upper() + text[1:]
    return f"Bundle document {rel}"


def _encoding(rel: str) -> str | list:
    if rel.endswith(".nii.gz"):
        return ["application/gzip", {"@id": NIFTI_FORMAT}]
    return {
        ".json": "application/json",
        ".md": "text/markdown",
        ".txt": "text/plain",
        ".pdf": "application/pdf",
    }.get(Path(rel).suffix, "application/octet-stream")


def ro_crate(
    name: str,
    version: str,
    date: str,
    files: Mapping[str, tuple[int, str]],
    documents: list[str],
    synthetic: bool,
    end_time: str | None = None,
) -> dict[str, Any]:
    """RO-Crate 1.3 metadata for ``data/`` (``{rel: (size, sha256)}`` of every payload file).

    One File entity per file and one Dataset per folder (linked by ``hasPart``),
    each with a ``description`` (and files an ``encodingFormat``), and a
    CreateAction per stage as the Process Run Crate 0.5 profile describes it:
    ``instrument`` is minivess-bundle (a SoftwareApplication with ``url`` and
    ``version``), ``object`` the stage's inputs, ``result`` its outputs, ``agent``
    the build, ``endTime`` the release time ``end_time`` (ISO 8601 from
    ``SOURCE_DATE_EPOCH``, never the wall clock; default: ``date``). The root
    claims the Process Run Crate profile through a Profile entity. Valid at the
    REQUIRED level of roc-validator's ro-crate-1.3 profile (tested offline).
    """
    from urllib.parse import quote

    def ref(rel: str) -> dict[str, str]:
        return {"@id": quote(rel, safe="/")}

    def one(values: list) -> list | dict:
        """A single value stays a single value (RO-Crate 1.3's compacted JSON-LD)."""
        return values[0] if len(values) == 1 else values

    graph: list[dict[str, Any]] = []
    folders: dict[str, list[str]] = {"./": []}
    for rel in sorted(files):
        parts = rel.split("/")
        parent = "./"
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth]) + "/"
            if folder not in folders:
                folders[folder] = []
                folders[parent].append(folder)
            parent = folder
        folders[parent].append(rel)
        size, sha = files[rel]
        graph.append(
            {
                "@id": quote(rel, safe="/"),
                "@type": "File",
                "name": parts[-1],
                "description": _describe(rel),
                "contentSize": str(size),
                "sha256": sha,
                "encodingFormat": _encoding(rel),
            }
        )
    for folder, parts in folders.items():
        if folder == "./":
            continue
        graph.append(
            {
                "@id": quote(folder, safe="/"),
                "@type": "Dataset",
                "name": folder.rstrip("/"),
                "description": f"Folder {folder} of the bundle's payload ({len(parts)} entries)",
                "hasPart": one([ref(p) for p in parts]),
            }
        )

    def under(prefix: str) -> list[dict[str, str]]:
        return [ref(r) for r in sorted(files) if r.startswith(prefix)]

    tool = {"@id": "#minivess-bundle"}
    stages = []
    raw, processed, drift = under("raw/"), under("processed/"), under("drift/")
    if raw:
        what = "fetch + rename: EBRAINS layout to imagesTr/labelsTr/metadata"
        stages.append(("rename", what, [{"@id": EBRAINS_URL}], raw))
    if processed:
        docs = [ref(d) for d in documents if d.startswith("validation")]
        what = "validate + resample onto the target grid"
        stages.append(("process", what, raw or [{"@id": EBRAINS_URL}], processed + docs))
    if drift:
        docs = [ref(d) for d in documents if d.startswith("drift")]
        stages.append(("drift", "drift variants of the processed volumes", processed, drift + docs))
    generated = [ref(g) for g in GENERATED if g in files]
    inputs = [ref(r) for r in sorted(files) if r.split("/")[0] in SECTIONS or r in documents]
    stages.append(("bundle", "assemble the BagIt bag and describe it", inputs, generated))
    actions = []
    for stage, description, obj, result in stages:
        actions.append({"@id": f"#action-{stage}"})
        graph.append(
            {
                "@id": f"#action-{stage}",
                "@type": "CreateAction",
                "name": f"{stage}: {description}",
                "description": f"minivess-bundle stage {stage}: {description}",
                "instrument": tool,
                "agent": {"@id": AGENT_ID},
                "endTime": end_time or date,
                "object": one(obj),
                "result": one(result),
                "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
            }
        )
    graph += [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": RO_CRATE_PROFILE},
            "about": {"@id": "./"},
            "name": "RO-Crate metadata descriptor",
            "description": "RO-Crate metadata descriptor of this bundle",
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "name": f"MiniVess {version}" + (" (SYNTHETIC stand-in)" if synthetic else ""),
            "description": "Two-photon microscopy volumes of rodent cerebrovasculature with "
            "vessel masks, packaged by minivess-bundle"
            + ("; synthetic stand-in, no measured data" if synthetic else ""),
            "identifier": name,
            "version": version,
            "datePublished": date,
            "license": {"@id": DATASET["licence_url"]},
            "citation": {"@id": DOI_URL},
            "isBasedOn": {"@id": EBRAINS_URL},
            "conformsTo": {"@id": PROCESS_RUN_PROFILE},
            "hasPart": [ref(p) for p in folders["./"]],
            "mentions": actions,
        },
        {
            "@id": PROCESS_RUN_PROFILE,
            "@type": ["CreativeWork", "Profile"],
            "name": "Process Run Crate",
            "version": "0.5",
            "description": "Workflow Run RO-Crate profile for the execution of one or more "
            "tools (here: the workflow's stages), each a CreateAction",
        },
        {
            "@id": "http://schema.org/CompletedActionStatus",
            "@type": "ActionStatusType",
            "name": "Completed",
            "description": "The stage ran to completion",
        },
        {
            "@id": AGENT_ID,
            "@type": "Organization",
            "name": "minivess-bundle build",
            "description": "Whoever ran the minivess-bundle workflow that built this bundle "
            "(no user or host name is recorded, so that builds are byte-reproducible)",
        },
        {
            "@id": DATASET["licence_url"],
            "@type": "CreativeWork",
            "name": DATASET["licence"],
            "identifier": "CC-BY-NC-SA-4.0",
            "description": "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
        },
        {
            "@id": DOI_URL,
            "@type": "ScholarlyArticle",
            "name": DATASET["title"],
            "identifier": DOI_URL,
            "description": CITATION,
        },
        {
            "@id": EBRAINS_URL,
            "@type": "CreativeWork",
            "name": f"MiniVess on EBRAINS ({DATASET['ebrains_id']})",
            "description": "The released MiniVess dataset this bundle is based on",
            "license": {"@id": DATASET["licence_url"]},
        },
        {
            "@id": NIFTI_FORMAT,
            "@type": "WebPage",
            "name": "NIfTI-1 data format (gzip-compressed, .nii.gz)",
            "description": "Neuroimaging Informatics Technology Initiative file format",
        },
        {
            "@id": "#minivess-bundle",
            "@type": "SoftwareApplication",
            "name": "minivess-bundle",
            "description": "The Snakemake workflow and Python package that built this bundle",
            "url": SOFTWARE_URL,
            "version": __version__,
            "softwareVersion": __version__,
        },
    ]
    graph.sort(key=lambda e: e["@id"])
    return {"@context": f"{RO_CRATE_PROFILE}/context", "@graph": graph}


# ---------------------------------------------------------------- assembly


def _write(path: Path, data: bytes) -> None:
    """Write and fsync a file inside the temporary bag (the bag is renamed as a whole)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _is_synthetic(data: Path, payload: list[str], provenance: Mapping[str, Any]) -> bool:
    """True when the config says so or a per-volume metadata JSON says ``"synthetic": true``."""
    if (provenance.get("config") or {}).get("source") == "synthetic":
        return True
    for rel in payload:
        if rel.split("/")[0] in SECTIONS and "/metadata/" in rel and rel.endswith(".json"):
            with contextlib.suppress(ValueError, OSError, AttributeError):
                if json.loads((data / rel).read_text(encoding="utf-8")).get("synthetic") is True:
                    return True
    return False


def _forbidden_strings(paths: list[Path]) -> list[str]:
    found = {str(Path.home())}
    for path in paths:
        found.add(str(path.resolve()))
        found.add(str(path.absolute()))
    return sorted(s for s in found if len(s) > 1 and s != os.sep)


def _scan_for_leaks(bag: Path, forbidden: list[str]) -> None:
    """Refuse the bag if a text file names a local folder (absolute path, home)."""
    patterns = [(n, re.compile(rf"(?<![\w.-]){re.escape(n)}(?![\w.-])")) for n in forbidden]
    for path in sorted(bag.rglob("*")):
        if not path.is_file() or not path.name.endswith((".json", ".txt", ".md", ".yaml")):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle, pattern in patterns:
            if pattern.search(text):
                raise BundleError(
                    f"output names a local path ({needle})",
                    path=path.relative_to(bag),
                    expected="no absolute path, home folder or host-specific text in the bundle",
                )


def _bag_info_fields(
    name: str,
    version: str,
    date: str,
    oxum: str,
    extra: Mapping[str, Any],
    sections: list[str],
    synthetic: bool,
) -> dict[str, str | list[str]]:
    kind = "SYNTHETIC stand-in for " if synthetic else ""
    fields: dict[str, str | list[str]] = {
        "Source-Organization": f"MiniVess authors ({DATASET['authors']})",
        "External-Description": f"{kind}MiniVess {version}: two-photon microscopy volumes of "
        "rodent cerebrovasculature with vessel masks (NIfTI); sections: "
        f"{', '.join(sections) or '-'}",
        "External-Identifier": name,
        "Source-Dataset": f"EBRAINS {DATASET['ebrains_id']} {EBRAINS_URL}",
        "License": f"{DATASET['licence']} {DATASET['licence_url']}",
        "Citation": CITATION,
    }
    for label, value in extra.items():
        if not LABEL_RE.match(label) or label in COMPUTED_LABELS:
            raise BundleError(
                f"bag-info label {label!r} cannot be set",
                expected=f"letters, digits and '-', not one of {', '.join(COMPUTED_LABELS)}",
            )
        values = [value] if isinstance(value, str) else list(value)
        if any(not isinstance(v, str) or "\n" in v or "\r" in v for v in values):
            raise BundleError(f"bag-info {label}: values must be one-line strings")
        fields[label] = values[0] if len(values) == 1 else values
    fields["Bagging-Date"] = date
    fields["Bag-Software-Agent"] = f"minivess-bundle {__version__}"
    fields["Payload-Oxum"] = oxum
    return fields


def write_bag_files(bag: Path, info: Mapping[str, str | list[str]], digests: Mapping) -> str:
    """Write bagit.txt, bag-info.txt, both manifests and both tag manifests.

    ``digests`` maps payload paths (``data/...``) to ``{"sha256", "sha512"}``.
    Returns the sha256 of ``manifest-sha256.txt``.
    """
    tag_files: dict[str, bytes] = {"bagit.txt": BAGIT_TXT, "bag-info.txt": bag_info_bytes(info)}
    for alg in ALGORITHMS:
        tag_files[f"manifest-{alg}.txt"] = manifest_bytes({p: d[alg] for p, d in digests.items()})
    for rel, data in tag_files.items():
        _write(bag / rel, data)
    for alg in ALGORITHMS:
        tag_digests = {rel: hashlib.new(alg, data).hexdigest() for rel, data in tag_files.items()}
        _write(bag / f"tagmanifest-{alg}.txt", manifest_bytes(tag_digests))
    return hashlib.sha256(tag_files["manifest-sha256.txt"]).hexdigest()


def assemble_bundle(
    out_dir: str | Path,
    version: str,
    *,
    raw_dir: str | Path | None = None,
    processed_dir: str | Path | None = None,
    drift_dir: str | Path | None = None,
    quarantine_dir: str | Path | None = None,
    documents: Mapping[str, str | Path] | None = None,
    quarantine: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    source_date_epoch: int,
    bag_info: Mapping[str, str | list[str]] | None = None,
    link: bool = False,
) -> dict[str, Any]:
    """Build the bag ``<out_dir>/minivess-<version>/`` and return a summary.

    Files are copied (verified) by default, so the bag owns its bytes: an edit
    to a build's intermediate file can never reach a published bag through a
    shared inode, nor an edit in the bag the build's files. ``link=True``
    hardlinks instead, to save disk where that risk is accepted.

    ``raw_dir``/``processed_dir``/``drift_dir``/``quarantine_dir`` are copied
    (hardlinked) to ``data/raw|processed|drift|quarantine``; ``None`` leaves the
    section out (quarantined volumes' files only ever go to ``quarantine/``). ``documents``
    maps a file name in ``data/`` (e.g. ``"validation_report.json"``) to the file
    to place there. ``quarantine`` maps left-out volumes to their reason.
    ``provenance`` is described in :func:`provenance_record`. ``bag_info`` adds or
    overrides descriptive bag-info fields. ``source_date_epoch`` dates the bag.

    Returns ``{"name", "path", "digest" (sha256 of manifest-sha256.txt), "files",
    "bytes", "volumes", "sections", "placement": {"hardlink": n, "copy": n}}``.
    """
    out_dir = Path(out_dir)
    name = bag_name(version)
    date = bagging_date(source_date_epoch)
    documents = {str(k): Path(v) for k, v in (documents or {}).items()}
    quarantine = {str(k): str(v) for k, v in (quarantine or {}).items()}
    provenance = dict(provenance or {})
    sources = {
        "raw": raw_dir,
        "processed": processed_dir,
        "drift": drift_dir,
        "quarantine": quarantine_dir,
    }
    sources = {k: Path(v) for k, v in sources.items() if v is not None}
    for doc, path in documents.items():
        if "/" in doc or doc.startswith(".") or doc in GENERATED or doc in SECTIONS:
            raise BundleError(
                f"document name {doc!r} is not allowed",
                expected=f"a plain file name other than {', '.join(GENERATED + SECTIONS)}",
            )
        check_bag_path(doc)
        if not path.is_file():
            raise BundleError(f"document {doc} does not exist", path=path)
    if not sources and not documents:
        raise BundleError("nothing to bundle", expected="at least one section or document")

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    tmp = out_dir / f".{name}.tmp-{os.getpid()}"
    for pattern in (f".{name}.tmp-*", f".{name}.old-*"):  # left by a killed bundle job
        remove_stale(out_dir, pattern)
    try:
        data = tmp / "data"
        data.mkdir(parents=True)
        methods: Counter = Counter()
        counts: dict[str, int] = {}
        for section, source in sources.items():
            placed, used = _place_tree(source, data / section, section, link)
            methods.update(used)
            counts[section] = len(placed)
        for doc, path in documents.items():
            methods[link_or_copy(path, data / doc, allow_link=link)] += 1

        cache: dict[str, tuple[int, dict[str, str]]] = {}

        def digests(rel: str) -> tuple[int, dict[str, str]]:
            if rel not in cache:
                cache[rel] = file_digests(data / rel)
            return cache[rel]

        def payload_now() -> list[str]:
            return sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())

        synthetic = _is_synthetic(data, payload_now(), provenance)
        primary = "processed" if "processed" in sources else "raw" if "raw" in sources else None
        dataset = None
        if primary:
            dataset = dataset_description(data, primary, version, frozenset(quarantine))
        if dataset:
            synthetic |= any(v["synthetic"] for v in dataset["volumes"])
            _write(data / "dataset.json", json_bytes(dataset))
        volumes = {v: {"reason": r} for v, r in sorted(quarantine.items())}
        _write(data / "quarantine.json", json_bytes({"count": len(volumes), "volumes": volumes}))
        payload = {rel: digests(rel)[1]["sha256"] for rel in payload_now()}
        doc_sources = {doc: path.name for doc, path in documents.items()}
        record = provenance_record(
            name, version, source_date_epoch, payload, doc_sources, provenance, list(sources)
        )
        _write(data / "provenance.json", json_bytes(record))
        _write(data / "LICENCE.txt", licence_text(synthetic, version).encode())
        variants = []
        if "drift" in sources:
            variants = sorted(p.name for p in (data / "drift").iterdir() if p.is_dir())
        readme = datasheet(
            name,
            version,
            date,
            counts,
            dataset,
            quarantine,
            sorted(documents),
            variants,
            synthetic,
            (provenance.get("config") or {}).get("source"),
        )
        _write(data / "README.md", readme.encode())
        files = {rel: (digests(rel)[0], digests(rel)[1]["sha256"]) for rel in payload_now()}
        # Croissant 1.1 (MLCommons) describes the same payload for ML tooling.
        croissant = croissant_metadata(
            name=name,
            version=version,
            date=date,
            description=f"MiniVess {version}: two-photon microscopy volumes of rodent "
            "cerebrovasculature with vessel masks, packaged by minivess-bundle"
            + (" (SYNTHETIC stand-in, no measured data)" if synthetic else ""),
            licence_url=DATASET["licence_url"],
            citation=CITATION,
            url=DOI_URL,
            creators=["Charissa Poon", "Petteri Teikari"],
            files=files,
            dataset=dataset,
        )
        _write(data / "croissant.json", json_bytes(croissant))
        files = {rel: (digests(rel)[0], digests(rel)[1]["sha256"]) for rel in payload_now()}
        end_time = dt.datetime.fromtimestamp(source_date_epoch, dt.UTC).isoformat()
        crate = ro_crate(name, version, date, files, sorted(documents), synthetic, end_time)
        _write(data / "ro-crate-metadata.json", json_bytes(crate))

        rels = payload_now()
        sizes = [digests(rel)[0] for rel in rels]
        info = _bag_info_fields(
            name,
            version,
            date,
            f"{sum(sizes)}.{len(rels)}",
            bag_info or {},
            list(sources),
            synthetic,
        )
        digest = write_bag_files(tmp, info, {f"data/{rel}": digests(rel)[1] for rel in rels})
        inputs = [out_dir, *sources.values(), *(p.parent for p in documents.values())]
        if provenance.get("lock_file"):
            inputs.append(Path(provenance["lock_file"]).parent)
        _scan_for_leaks(tmp, _forbidden_strings(inputs + [Path.cwd()]))

        if final.exists():
            old = out_dir / f".{name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("bundle %s: %d files, %d bytes, %s", name, len(rels), sum(sizes), dict(methods))
    return {
        "name": name,
        "path": str(final),
        "digest": digest,
        "files": len(rels),
        "bytes": sum(sizes),
        "volumes": dataset["numTraining"] if dataset else 0,
        "sections": list(sources),
        "placement": {"hardlink": methods["hardlink"], "copy": methods["copy"]},
    }
