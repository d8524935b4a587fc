"""What the bag says about itself: dataset.json, provenance (versions, config, lineage),
licence and the descriptive bag-info fields."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.dataset import CHANNEL_NAMES, CITATION, DOI_URL, EBRAINS_URL, IDENTITY
from ..core.dataset import LABELS as _LABELS
from ..core.errors import BundleError
from ..core.volumes import VOLUME_RE, staging_names
from .bagit import COMPUTED_LABELS, GENERATED, LABEL_RE, bagging_date

log = logging.getLogger(__name__)


#: The dataset's identity and citation (owned by :mod:`minivess_bundle.core.dataset`).
DATASET = IDENTITY
LABELS = _LABELS


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
    through :func:`~minivess_bundle.core.nifti.read_header`)."""
    from ..core.nifti import read_header as read_nifti_header

    header = read_nifti_header(Path(path), error=BundleError, check_size=False).header
    return {
        "shape": [int(n) for n in header.get_data_shape()],
        "spacing": [round(float(z), 6) for z in header.get_zooms()[:3]],
        "dtype": header.get_data_dtype().name,
        "xyzt_units": int(header["xyzt_units"]),
        "descrip": header["descrip"].item().decode("latin-1").strip("\x00 "),
    }


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
    from ..consumers.loader import discover_nifti_pairs

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
        "channel_names": dict(CHANNEL_NAMES),
        "modality": dict(CHANNEL_NAMES),
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
                rule="fetch",
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
