"""Hugging Face export: a bag as a ``niftifolder`` dataset with its dataset card.

A consumer: it reads a written bag (``data/dataset.json``, ``data/drift_manifest.json``
and the NIfTI files they name) and lays the pairs out the way ``datasets`` (>= 4.4, the
``Nifti`` feature and the ``niftifolder`` builder) loads them, offline or from the Hub::

    README.md                               dataset card: YAML (licence, task, tags,
                                            configs and splits) + attribution
    LICENCE.txt, drift_manifest.json        the bag's, bytes untouched
    clean/fold_<k>/metadata.jsonl           one row per volume of the authors' fold k
    clean/fold_<k>/{imagesTr,labelsTr}/mvNN.nii.gz
    drift/test/metadata.jsonl               one row per drift variant (kind, level, severity)
    drift/test/<kind>/<level>/{imagesTr,labelsTr}/mvNN.nii.gz

Each metadata row pairs the image and its mask through ``image_file_name`` and
``label_file_name`` (``datasets`` turns them into two ``Nifti`` columns, ``image`` and
``label``) and carries the volume id, its spacing in micrometres and the authors' fold
(:mod:`minivess_bundle.core.splits`); drift rows add kind, level, severity and what changed.
The clean pairs are the bag's ``dataset.json`` section (processed: validated and on the
target grid, unless the bag holds raw only). Files are hardlinked from the bag where the
file system allows (no bytes move), else copied and verified. ``datasets`` itself is
never imported here: the export is plain files; loading it is the user's side
(``docs/huggingface.md``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ConsumerError
from ..core.splits import AUTHORS_3FOLD_VAL, N_FOLDS
from ..core.splits import SOURCE as SPLIT_SOURCE

log = logging.getLogger(__name__)

#: The card's licence id (the Hub's list), task and tags.
HF_LICENSE = "cc-by-nc-sa-4.0"
HF_TASKS = ("image-segmentation",)
HF_TAGS = (
    "biology",
    "medical",
    "microscopy",
    "two-photon",
    "vasculature",
    "3d",
    "nifti",
    "segmentation",
    "distribution-shift",
)
CLEAN = "clean"
DRIFT = "drift"
DRIFT_SPLIT = "test"
METADATA = "metadata.jsonl"


def split_name(fold: int) -> str:
    """The split holding the validation volumes of the authors' fold ``fold``."""
    return f"fold_{fold}"


def fold_of(volume: str) -> int | None:
    """The authors' fold validating ``volume`` (None: outside mv01..mv70)."""
    for k, ids in enumerate(AUTHORS_3FOLD_VAL):
        if volume in ids:
            return k
    return None


@dataclass(frozen=True)
class Row:
    """One example: where its two files come from (in the bag) and its metadata row."""

    split: str
    image: Path
    label: Path
    image_rel: str
    label_rel: str
    fields: Mapping[str, Any]

    def record(self) -> dict[str, Any]:
        return {"image_file_name": self.image_rel, "label_file_name": self.label_rel, **self.fields}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConsumerError(f"hf export: cannot read {path.name} ({exc})", path=path) from exc


def _file(path: Path, volume: str | None = None) -> Path:
    if not path.is_file():
        raise ConsumerError("hf export: a file the bag names is missing", volume=volume, path=path)
    return path


def _spacing_um(path: Path, volume: str) -> list[float]:
    """The voxel size in micrometres from the header (nifti.spacing_um, header only)."""
    from ..core.nifti import read_header, spacing_um

    header = read_header(path, error=ConsumerError, check_size=False).header
    return [round(z, 6) for z in spacing_um(header)]


def clean_rows(data: Path) -> list[Row]:
    """The bag's clean pairs (``dataset.json``'s section), one row per volume with a fold."""
    description = _read_json(data / "dataset.json")
    section = description.get("section", "processed")
    rows = []
    for entry in description.get("volumes", []):
        volume = entry["id"]
        fold = fold_of(volume)
        if fold is None:
            log.warning("%s: in no fold of the authors' split; left out of the export", volume)
            continue
        image = _file(data / section / "imagesTr" / f"{volume}.nii.gz", volume)
        label = _file(data / section / "labelsTr" / f"{volume}.nii.gz", volume)
        fields = {
            "volume": volume,
            "fold": fold,
            "spacing_um": [float(v) for v in entry["spacing_um"]],
            "shape": [int(n) for n in entry["shape"]],
            "section": section,
            "synthetic": bool(entry.get("synthetic", False)),
        }
        rows.append(
            Row(
                split_name(fold),
                image,
                label,
                f"imagesTr/{volume}.nii.gz",
                f"labelsTr/{volume}.nii.gz",
                fields,
            )
        )
    return rows


def drift_rows(data: Path, synthetic: bool) -> list[Row]:
    """One row per drift variant of the manifest (set-level drifts have no files of their
    own: they stay in ``drift_manifest.json``)."""
    manifest_path = data / "drift_manifest.json"
    if not manifest_path.is_file():
        return []
    manifest = _read_json(manifest_path)
    rows = []
    for variant in manifest.get("variants", []):
        volume = variant["volume"]
        files = variant["files"]
        image_rel = files["image"]["drifted"]["path"]
        label_rel = files["label"]["drifted"]["path"]
        image = _file(data / "drift" / image_rel, volume)
        label = _file(data / "drift" / label_rel, volume)
        fold = fold_of(volume)
        fields = {
            "volume": volume,
            "fold": -1 if fold is None else fold,
            "spacing_um": _spacing_um(image, volume),
            "kind": variant["drift_type"],
            "level": int(variant["level"]),
            "severity": float(variant["severity"]),
            "target": variant["target"],
            "variant_id": variant["variant_id"],
            "expected_signal": variant["expected_signal"],
            "image_modified": bool(files["image"]["modified"]),
            "label_modified": bool(files["label"]["modified"]),
            "synthetic": synthetic,
        }
        rows.append(Row(DRIFT_SPLIT, image, label, image_rel, label_rel, fields))
    return rows


def _card_yaml(splits: Mapping[str, Mapping[str, int]], synthetic: bool) -> str:
    import yaml

    configs = []
    for config, counts in splits.items():
        entry: dict[str, Any] = {"config_name": config}
        if config == CLEAN:
            entry["default"] = True
        entry["data_files"] = [
            {"split": split, "path": f"{config}/{split}/**"} for split in counts if counts[split]
        ]
        configs.append(entry)
    meta = {
        "license": HF_LICENSE,
        "task_categories": list(HF_TASKS),
        "tags": list(HF_TAGS) + (["synthetic"] if synthetic else []),
        "pretty_name": "MiniVess" + (" (synthetic stand-in)" if synthetic else ""),
        "size_categories": ["n<1K"],
        "configs": configs,
    }
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


def dataset_card(
    splits: Mapping[str, Mapping[str, int]], synthetic: bool, version: str, section: str
) -> str:
    """``README.md``: the YAML header the Hub reads, then what a newcomer needs."""
    from ..bundle.describe import CITATION, DATASET, DOI_URL, EBRAINS_URL

    def table(config: str) -> str:
        counts = splits.get(config, {})
        return "\n".join(f"| `{config}` | `{split}` | {n} |" for split, n in counts.items())

    warning = (
        "> **SYNTHETIC DATA.** This export was built from minivess-bundle's synthetic "
        "stand-in, not from the MiniVess release. It contains no measured data.\n\n"
        if synthetic
        else ""
    )
    empty = [
        f"`{config}/{split}`"
        for config, counts in splits.items()
        for split, n in counts.items()
        if not n
    ]
    empty_note = (
        f"Splits without volumes in this build (left out of `configs`): {', '.join(empty)}.\n\n"
        if empty
        else ""
    )
    rows = "\n".join(t for t in (table(CLEAN), table(DRIFT)) if t)
    return f"""---
{_card_yaml(splits, synthetic)}---

# MiniVess {version}: two-photon cerebrovasculature with vessel masks

{warning}3D two-photon fluorescence microscopy volumes of rodent cerebrovasculature
(images uint16) with binary vessel masks (uint8, 0 = background, 1 = vessel), as NIfTI,
exported by minivess-bundle from its verified BagIt bundle {version}.

## Configs and splits

| config | split | examples |
|---|---|---|
{rows}

- `clean` — the bundle's `{section}` pairs. Split `fold_k` holds the validation volumes of
  fold k of the dataset authors' 3-fold cross-validation ({SPLIT_SOURCE}); train fold k
  on the other two splits. There is no held-out test set.
- `drift` — controlled distribution shifts of held-out volumes for testing drift
  detectors: `kind`, `level` (1..5) and `severity` (0.2..1.0) per row, as recorded in
  `drift_manifest.json` (which also lists set-level drifts and each variant's parameters).

{empty_note}Columns: `image` and `label` (decoded to `nibabel` images), `volume`, `fold`,
`spacing_um` (x, y, z voxel size in micrometres); `clean` adds `shape`, `section`;
`drift` adds `kind`, `level`, `severity`, `target`, `variant_id`, `expected_signal`,
`image_modified`, `label_modified`. Processed headers declare millimetres (NIfTI
`xyzt_units` = 2: 0.001 = 1 µm); the raw release stores micrometre numbers with the unit
unset: use `spacing_um`.

```python
from datasets import concatenate_datasets, load_dataset

clean = load_dataset("<this folder or repo>")            # config "clean"
val = clean["fold_0"]
train = concatenate_datasets([clean["fold_1"], clean["fold_2"]])
volume = val[0]["image"].get_fdata()                      # nibabel image -> array
drift = load_dataset("<this folder or repo>", "drift")["{DRIFT_SPLIT}"]
```

## Licence and attribution

{DATASET["licence"]} ({DATASET["licence_url"]}): attribution, non-commercial use,
share-alike; `LICENCE.txt` says what was changed. Cite the dataset's paper:

{CITATION} {DOI_URL}

Source release: {EBRAINS_URL}
"""


#: Everything an export holds at its top level (an earlier export is replaced only if
#: its folder holds nothing else).
TOP_LEVEL = frozenset({"README.md", "LICENCE.txt", "drift_manifest.json", CLEAN, DRIFT})


def export(bag: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the Hugging Face folder for ``bag`` at ``out``; returns the rows per config
    and split. The folder is written beside ``out`` and swapped in whole, replacing an
    earlier export (a folder holding anything else is refused)."""
    import os
    import shutil

    bag, out = Path(bag), Path(out)
    data = bag / "data"
    if not (data / "dataset.json").is_file():
        raise ConsumerError("hf export: not a bag (no data/dataset.json)", path=bag)
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in TOP_LEVEL)
        if foreign:
            raise ConsumerError(
                f"hf export: the output folder holds {foreign[:3]}",
                path=out,
                expected="a new folder or an earlier export",
            )
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = _write(data, staging)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("hf export %s: %s (%s)", out, result["splits"], result["files"])
    return result


def _write(data: Path, out: Path) -> dict[str, Any]:
    from ..core.fsio import link_or_copy, write_bytes_atomic

    description = _read_json(data / "dataset.json")
    clean = clean_rows(data)
    licence = data / "LICENCE.txt"
    synthetic = any(r.fields["synthetic"] for r in clean) or (
        licence.is_file() and licence.read_text(encoding="utf-8").startswith("SYNTHETIC")
    )
    drift = drift_rows(data, synthetic)
    splits: dict[str, dict[str, int]] = {
        CLEAN: {split_name(k): 0 for k in range(N_FOLDS)},
    }
    if drift:
        splits[DRIFT] = {DRIFT_SPLIT: 0}
    methods: dict[str, int] = {}
    by_split: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for config, rows in ((CLEAN, clean), (DRIFT, drift)):
        for row in rows:
            folder = out / config / row.split
            for source, rel in ((row.image, row.image_rel), (row.label, row.label_rel)):
                method = link_or_copy(source, folder / rel)
                methods[method] = methods.get(method, 0) + 1
            by_split.setdefault((config, row.split), []).append(row.record())
            splits[config][row.split] += 1
    for (config, split), records in sorted(by_split.items()):
        lines = [json.dumps(r, sort_keys=True) for r in sorted(records, key=_row_key)]
        write_bytes_atomic(out / config / split / METADATA, ("\n".join(lines) + "\n").encode())
    for name in ("LICENCE.txt", "drift_manifest.json"):
        if (data / name).is_file():
            link_or_copy(data / name, out / name)
    version = str(description.get("release", ""))
    card = dataset_card(splits, synthetic, version, description.get("section", "processed"))
    write_bytes_atomic(out / "README.md", card.encode("utf-8"))
    return {"splits": splits, "files": methods, "synthetic": synthetic}


def _row_key(record: Mapping[str, Any]) -> tuple:
    return (record.get("variant_id", ""), record["volume"])
