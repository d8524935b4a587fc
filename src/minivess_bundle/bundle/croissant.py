"""Croissant 1.1 metadata (``croissant.json``) for the bag's ``data/`` folder.

Croissant (MLCommons) is the ML-dataset description that Hugging Face, Kaggle, OpenML and
Dataverse emit. :func:`croissant_metadata` is a pure function of the payload listing
(``{rel: (size, sha256)}``) and ``dataset.json``: every payload file is a
``cr:FileObject`` with its sha256; the record set ``training_pairs`` reads the image and
label paths from ``dataset.json``'s MSD ``training`` list (paths relative to ``data/``), and
``drift_variants`` reads each variant's id, volume, type and severity from
``drift_manifest.json``. The responsible-AI (RAI 1.0) fields say
how the data was collected and annotated, its known biases and limits, and that it holds
no personal data. Validated and iterated with ``mlcroissant`` in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.dataset import CITATION_SHORT, LICENCE

CROISSANT_SPEC = "http://mlcommons.org/croissant/1.1"
RAI_SPEC = "http://mlcommons.org/croissant/RAI/1.0"

#: The Croissant 1.1 JSON-LD context (as mlcroissant 1.1 writes it).
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

RAI = {
    "rai:dataCollection": (
        "In vivo two-photon (multiphoton) fluorescence microscopy of the cortical "
        "vasculature of anaesthetised mice and rats with an intravascular dye; 70 volumes "
        f"({CITATION_SHORT})."
    ),
    "rai:dataCollectionType": "Experiments",
    "rai:dataAnnotationProtocol": (
        "Binary vessel masks by the dataset authors: semi-automatic segmentation corrected "
        "by hand in 3-D, reviewed per volume (see the paper)."
    ),
    "rai:dataPreprocessingProtocol": (
        "minivess-bundle: renamed (bytes untouched, raw/), validated (named checks, invalid "
        "volumes quarantined), resampled onto an isotropic grid (processed/), drift "
        "variants with recorded parameters (drift/); provenance.json lists every step."
    ),
    "rai:dataBiases": (
        "Few animals, one imaging setup and dye; depth-dependent signal loss and uneven "
        "dye filling; vessels are 2-9 % of voxels; masks favour larger, brighter vessels."
    ),
    "rai:dataLimitations": (
        "70 volumes of rodent cortex only; anisotropic, heterogeneous voxel sizes in the "
        f"release; not for clinical use. Non-commercial licence ({LICENCE})."
    ),
    "rai:dataUseCases": (
        "Training and benchmarking 3-D vessel segmentation; robustness and drift detection "
        "(drift/ variants with ground truth)."
    ),
    "rai:personalSensitiveInformation": "None: animal data, no human subjects.",
    "rai:dataSocialImpact": "Basic neuroscience research tooling; no direct human impact.",
    "rai:dataReleaseMaintenancePlan": (
        "Versioned bundles (BagIt + DVC); the source release is maintained on EBRAINS."
    ),
}


def _encoding(rel: str) -> str:
    if rel.endswith(".nii.gz"):
        return "application/gzip"
    return {"json": "application/json", "md": "text/markdown", "txt": "text/plain"}.get(
        rel.rsplit(".", 1)[-1], "application/octet-stream"
    )


def _field(field_id: str, what: str, kind: str, file: str, json_path: str) -> dict[str, Any]:
    """One Croissant field extracted from a JSON file of the bag."""
    return {
        "@type": "cr:Field",
        "@id": field_id,
        "name": field_id.rsplit("/", 1)[-1],
        "description": what,
        "dataType": kind,
        "source": {"fileObject": {"@id": file}, "extract": {"jsonPath": json_path}},
    }


def croissant_metadata(
    *,
    name: str,
    version: str,
    date: str,
    description: str,
    licence_url: str,
    citation: str,
    url: str,
    creators: list[str],
    files: Mapping[str, tuple[int, str]],
    dataset: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Croissant 1.1 for ``data/`` (``files``: ``{rel: (size, sha256)}``, paths in ``data/``).

    ``dataset`` is ``dataset.json``'s content; with it (and ``dataset.json`` in
    ``files``) the ``training_pairs`` record set reads each pair's image and label path.
    With ``drift_manifest.json`` and a drift section, ``drift_variants`` lists the variants.
    """
    distribution = [
        {
            "@type": "cr:FileObject",
            "@id": rel,
            "name": rel,
            "contentUrl": rel,
            "contentSize": f"{size} B",
            "encodingFormat": _encoding(rel),
            "sha256": sha,
        }
        for rel, (size, sha) in sorted(files.items())
    ]
    record_sets = []
    if dataset and "dataset.json" in files and dataset.get("training"):
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": "training_pairs",
                "name": "training_pairs",
                "description": f"The {len(dataset['training'])} image/label pairs of "
                f"dataset.json (section {dataset.get('section')}), spacing in "
                f"{dataset.get('spacing_unit')} as the headers hold it",
                "field": [
                    _field(
                        f"training_pairs/{key}",
                        f"{what}, relative to data/ (NIfTI-1, .nii.gz)",
                        "sc:Text",
                        "dataset.json",
                        f"$.training[*].{key}",
                    )
                    for key, what in (("image", "Image path"), ("label", "Vessel mask path"))
                ],  # fmt: skip
            }
        )
    if "drift_manifest.json" in files and any(rel.startswith("drift/") for rel in files):
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": "drift_variants",
                "name": "drift_variants",
                "description": "One record per drift variant (drift_manifest.json: files, "
                "parameters, seed and verification figures per variant)",
                "field": [
                    _field(
                        f"drift_variants/{key}",
                        what,
                        kind,
                        "drift_manifest.json",
                        f"$.variants[*].{key}",
                    )
                    for key, what, kind in (
                        ("variant_id", "Variant id", "sc:Text"),
                        ("volume", "Source volume id", "sc:Text"),
                        ("drift_type", "Drift type", "sc:Text"),
                        ("severity", "Severity in [0, 1]", "sc:Float"),
                    )
                ],  # fmt: skip
            }
        )
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": [CROISSANT_SPEC, RAI_SPEC],
        "name": name,
        "description": description,
        "version": version,
        "datePublished": date,
        "license": licence_url,
        "url": url,
        "citeAs": citation,
        "creator": [{"@type": "sc:Person", "name": c} for c in creators],
        **RAI,
        "distribution": distribution,
        "recordSet": record_sets,
    }
