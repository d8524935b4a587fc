"""The bag's README.md: a datasheet for the dataset, from what the bag holds."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .. import __version__
from .describe import CITATION, DATASET, EBRAINS_URL, LABELS, UNITS_NOTE

log = logging.getLogger(__name__)


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

    The MONAI and nnU-Net snippets are the dataset's usage text
    (:mod:`minivess_bundle.core.dataset`), which the consumers' tests run.
    """
    from ..core.dataset import BIBTEX, MONAI_SNIPPET, NNUNET_SNIPPET

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
    out.append(f"## Citation\n\n```bibtex\n{BIBTEX}\n```\n")
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
        "from minivess_bundle.consumers.loader import discover_nifti_pairs\n"
        f'pairs = discover_nifti_pairs("{name}")   # data/processed/imagesTr + labelsTr\n'
        "```\n"
    )
    return "\n".join(out)
