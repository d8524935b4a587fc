"""ro-crate-metadata.json: RO-Crate 1.3 with one action per stage (Process Run Crate)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.dataset import LICENCE_NAME, LICENCE_SPDX
from .bagit import GENERATED, SECTIONS
from .describe import CITATION, DATASET, DOI_URL, EBRAINS_URL

log = logging.getLogger(__name__)


RO_CRATE_PROFILE = "https://w3id.org/ro/crate/1.3"


PROCESS_RUN_PROFILE = "https://w3id.org/ro/wfrun/process/0.5"


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
            "identifier": LICENCE_SPDX,
            "description": LICENCE_NAME,
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
