"""Load the bundle into MONAI: datalists, a transform chain and cached loaders.

Importing this module never imports torch or MONAI (they come with the optional
``train`` extra and are imported inside the functions that need them), so the
pipeline and the CLI stay fast; :func:`find_pairs`, :func:`datalist` and
:func:`write_datalist` work without them.

Data sources :func:`datalist` accepts:

* a bundle folder ``minivess-<version>/`` (reads ``data/dataset.json``), its
  ``data/`` folder (reads ``dataset.json``) or a ``dataset.json`` file: the
  MSD-style ``training`` list, paths relative to the JSON's folder;
* any folder :func:`minivess_bundle.consumers.loader.discover_nifti_pairs` reads
  (``imagesTr/labelsTr``, ``raw/seg``, ``processed/``...).

Units: the bundle's raw section keeps MiniVess's micrometre values with
``xyzt_units = 0``; resampled outputs are in millimetres (``xyzt_units = 2``).
MONAI works on the affine as stored, so ``Spacingd`` must be given spacing in the
files' own unit — :func:`target_pixdim` converts micrometres to it from the headers.

The transform chain (:func:`train_transforms`, :func:`val_transforms`)::

    LoadImaged            image float32, label uint8 (the label stays small in the cache)
    EnsureChannelFirstd   (x, y, z) -> (1, x, y, z)
    Spacingd              optional; bilinear for the image, nearest for the label
    ScaleIntensityRangePercentilesd
                          per volume, 1st -> 0 and 99.9th percentile -> 1, clipped
    SpatialPadd           (train) up to the patch size: MiniVess has stacks of 5 slices
    RandCropByPosNegLabeld
                          (train) num_samples patches, half centred on vessel voxels

Why percentile scaling rather than z-scoring (``NormalizeIntensityd``): vessels are
2-9 % of a MiniVess volume, so the mean and standard deviation are those of the
background, and a z-scored vessel's intensity would swing with the foreground
fraction, dye loading and depth attenuation of each stack. The 1st percentile is
the dark background level and the 99.9th sits inside the bright vessel cores for
any foreground fraction above 0.1 %, so every volume maps background to ~0 and
vessels to ~1; clipping removes hot pixels. Everything up to the first random
transform is deterministic and cached by :class:`monai.data.CacheDataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import dataset, splits
from ..core.errors import ConsumerError
from ..core.fsio import write_json_atomic
from .loader import discover_nifti_pairs, nifti_stem

if TYPE_CHECKING:  # pragma: no cover
    from monai.data import DataLoader
    from monai.transforms import Compose

DATASET_JSON = "dataset.json"
#: Intensity percentiles mapped to 0 and 1 (see the module docstring).
PERCENTILES = (1.0, 99.9)
DEFAULT_PATCH = (64, 64, 16)
#: NIfTI ``xyzt_units`` spatial codes -> micrometres per unit; 0 (unknown) is MiniVess's um.
UM_PER_UNIT = {0: 1.0, 1: 1e6, 2: 1e3, 3: 1.0}

#: How to load a bundle in MONAI (the datasheet's usage text; owned by :mod:`.dataset`).
MONAI_SNIPPET = dataset.MONAI_SNIPPET


# ---------------------------------------------------------------- datalists (no torch)


def _dataset_json_for(path: Path) -> Path | None:
    """The ``dataset.json`` that describes ``path``, or ``None`` if it has none."""
    if path.is_file() and path.name.endswith(".json"):
        return path
    for candidate in (path / "data" / DATASET_JSON, path / DATASET_JSON):
        if candidate.is_file():
            return candidate
    return None


def _pairs_from_dataset_json(json_path: Path) -> list[dict[str, str]]:
    try:
        description = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConsumerError(f"cannot read dataset.json ({exc})", path=json_path) from exc
    training = description.get("training") if isinstance(description, dict) else None
    if not isinstance(training, list) or not training:
        raise ConsumerError(
            "dataset.json has no training list",
            path=json_path,
            expected='a non-empty "training" list of {"image", "label"} paths',
        )
    base = json_path.parent
    records: dict[str, dict[str, str]] = {}
    for item in training:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("image"), str)
            and isinstance(item.get("label"), str)
        ):
            raise ConsumerError(
                f"training entry {item!r} is not an image/label pair",
                path=json_path,
                expected='{"image": "<path>", "label": "<path>"} with one file each',
            )
        image = os.path.normpath(base / item["image"])
        label = os.path.normpath(base / item["label"])
        volume = nifti_stem(Path(image).name)
        if volume is None:
            raise ConsumerError(
                f"training image {item['image']} is not a NIfTI file name",
                path=json_path,
                expected="<id>.nii.gz",
            )
        for key, file in (("image", image), ("label", label)):
            if not Path(file).is_file():
                raise ConsumerError(
                    f"dataset.json lists a {key} that does not exist",
                    volume=volume,
                    path=file,
                    expected=f"every file of {json_path.name}'s training list present",
                )
        if volume in records:
            raise ConsumerError(
                f"id listed twice in the training list ({item['image']})",
                volume=volume,
                path=json_path,
                expected="one entry per id",
            )
        records[volume] = {"id": volume, "image": image, "label": label}
    declared = description.get("numTraining")
    if declared is not None and declared != len(records):
        raise ConsumerError(
            f"numTraining is {declared!r} but the training list has {len(records)} pairs",
            path=json_path,
            expected="numTraining equal to the length of training",
        )
    return [records[k] for k in sorted(records)]


def find_pairs(path: str | Path) -> tuple[list[dict[str, str]], str]:
    """Image/label pairs of a bundle, a ``dataset.json`` or a loader layout, sorted by id.

    Returns ``(records, source)``: records ``{"id", "image", "label"}`` with absolute
    paths, and ``source`` ``"dataset.json"`` or ``"layout"``. A ``dataset.json`` (in
    ``<path>/data/``, in ``<path>/``, or ``path`` itself) wins over a folder scan;
    every file it lists must exist. Raises :class:`ConsumerError` or
    :class:`~minivess_bundle.core.errors.LoaderError` (orphans, no layout).
    """
    path = Path(path).absolute()
    json_path = _dataset_json_for(path)
    if json_path is not None:
        return _pairs_from_dataset_json(json_path), "dataset.json"
    records = discover_nifti_pairs(path)
    pairs = [
        {
            "id": r["id"],
            "image": os.path.normpath(r["image"]),
            "label": os.path.normpath(r["label"]),
        }
        for r in records
    ]
    return pairs, "layout"


def split_ids(ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> dict[str, list]:
    """Deterministic train/validation split of ``ids``.

    Each id is ranked by ``sha256(f"{seed}:{id}")``, so its rank does not depend
    on the other ids, their order or the machine; the first
    ``round(val_fraction * n)`` (at least 1 and at most ``n - 1`` when ``n >= 2``
    and ``val_fraction > 0``) go to validation. A single id is all training.
    Returns ``{"training": [...], "validation": [...]}``, each sorted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConsumerError(
            f"validation fraction {val_fraction!r} is out of range", expected="0 <= fraction < 1"
        )
    unique = sorted(set(ids))
    n = len(unique)
    n_val = min(max(round(val_fraction * n), 1), n - 1) if n >= 2 and val_fraction > 0 else 0
    ranked = sorted(unique, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    validation = set(ranked[:n_val])
    return {
        "training": [v for v in unique if v not in validation],
        "validation": [v for v in unique if v in validation],
    }


def datalist(
    path: str | Path, val_fraction: float = 0.2, seed: int = 0, fold: int | None = None
) -> dict[str, Any]:
    """A MONAI/MSD datalist of ``path`` with a deterministic validation split.

    With ``fold`` (0, 1 or 2) the split is fold ``fold`` of the dataset authors'
    3-fold cross-validation (:mod:`minivess_bundle.core.splits`, the folds the nnU-Net
    export's ``splits_final.json`` holds), over the volumes ``path`` has;
    ``val_fraction`` and ``seed`` are then unused. Without it, :func:`split_ids`.

    Returns::

        {"training":   [{"image": "/abs/...", "label": "/abs/..."}, ...],
         "validation": [{"image": ..., "label": ...}, ...],
         "numTraining": n, "numValidation": m,
         "split": {"method", "source", "training_ids": [...], "validation_ids": [...],
                   "seed" and "val_fraction", or "fold" and "from"}}

    The lists have the shape :func:`monai.data.load_decathlon_datalist` reads
    (``data_list_key="training"`` or ``"validation"``); the other keys are MSD
    metadata it ignores. See :func:`find_pairs` for what ``path`` may be and
    :func:`split_ids` for the split.
    """
    pairs, source = find_pairs(path)
    by_id = {p["id"]: p for p in pairs}
    if fold is None:
        split = split_ids(list(by_id), val_fraction, seed)
        how: dict[str, Any] = {
            "method": "sha256(seed:id) rank",
            "seed": seed,
            "val_fraction": val_fraction,
        }
    else:
        chosen = splits.fold(list(by_id), fold)
        split = {"training": chosen["train"], "validation": chosen["val"]}
        how = {"method": f"authors' 3-fold split, fold {fold}", "fold": fold, "from": splits.SOURCE}

    def entries(ids: list[str]) -> list[dict[str, str]]:
        return [{"image": by_id[v]["image"], "label": by_id[v]["label"]} for v in ids]

    return {
        "training": entries(split["training"]),
        "validation": entries(split["validation"]),
        "numTraining": len(split["training"]),
        "numValidation": len(split["validation"]),
        "split": {
            **how,
            "source": source,
            "training_ids": split["training"],
            "validation_ids": split["validation"],
        },
    }


def entry_id(entry: dict[str, str]) -> str:
    """The volume id of a datalist entry (its image's file name without the NIfTI suffix)."""
    return nifti_stem(Path(entry["image"]).name) or Path(entry["image"]).name


def write_datalist(datalist_: dict[str, Any], out_json: str | Path) -> Path:
    """Write a datalist as canonical JSON with paths relative to ``out_json``'s folder.

    ``load_decathlon_datalist(out_json)`` (``base_dir`` defaults to that folder)
    gives back the absolute paths; the file itself names no absolute path, so it
    can move with the data.
    """
    out_json = Path(out_json).absolute()
    base = out_json.parent

    def rel(entries: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: os.path.relpath(v, base) for k, v in e.items()} for e in entries]

    payload = dict(datalist_)
    for key in ("training", "validation"):
        if key in payload:
            payload[key] = rel(payload[key])
    return write_json_atomic(out_json, payload)


def target_pixdim(
    spacing_um: Sequence[float], paths: Sequence[str | Path]
) -> tuple[float, float, float]:
    """``spacing_um`` (micrometres) in the spatial unit the headers of ``paths`` use.

    ``xyzt_units`` 0 (unknown) counts as micrometres, as in the MiniVess release;
    2 (mm) divides by 1000. All files must share one unit — Spacingd takes one
    pixdim — so a mix raises :class:`ConsumerError`.
    """
    import nibabel as nib

    if len(spacing_um) != 3 or any(float(s) <= 0 for s in spacing_um):
        raise ConsumerError(f"spacing {list(spacing_um)} um", expected="three positive numbers")
    factors: dict[float, str] = {}
    for path in paths:
        code = int(nib.load(str(path)).header["xyzt_units"]) & 0x07
        if code not in UM_PER_UNIT:
            raise ConsumerError(
                f"spatial unit code {code} is not a NIfTI length unit",
                path=path,
                expected="0 (unknown, taken as um), 1 (m), 2 (mm) or 3 (um)",
            )
        factors.setdefault(UM_PER_UNIT[code], str(path))
    if len(factors) > 1:
        listed = ", ".join(f"{Path(p).name} ({f:g} um/unit)" for f, p in factors.items())
        raise ConsumerError(
            f"files use different spatial units: {listed}",
            expected="one unit for every file given to Spacingd",
        )
    factor = next(iter(factors)) if factors else 1.0
    return tuple(float(s) / factor for s in spacing_um)  # type: ignore[return-value]


# ---------------------------------------------------------------- transforms (MONAI)


def _deterministic(spacing: Sequence[float] | None) -> list:
    import numpy as np
    import torch
    from monai.transforms import (
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        ScaleIntensityRangePercentilesd,
        Spacingd,
    )

    keys = ["image", "label"]
    chain = [
        LoadImaged(keys="image", dtype=np.float32),
        LoadImaged(keys="label", dtype=np.uint8),
        EnsureChannelFirstd(keys=keys),
    ]
    if spacing is not None:
        chain.append(Spacingd(keys=keys, pixdim=tuple(spacing), mode=("bilinear", "nearest")))
        chain.append(EnsureTyped(keys="label", dtype=torch.uint8))
    chain.append(
        ScaleIntensityRangePercentilesd(
            keys="image",
            lower=PERCENTILES[0],
            upper=PERCENTILES[1],
            b_min=0.0,
            b_max=1.0,
            clip=True,
        )
    )
    return chain


def train_transforms(
    patch_size: Sequence[int] = DEFAULT_PATCH,
    spacing: Sequence[float] | None = None,
    num_samples: int = 2,
) -> Compose:
    """Training chain: load, channel first, optional Spacingd, percentile scaling, pad, crop.

    ``spacing`` is in the files' own unit (see :func:`target_pixdim`); ``None``
    keeps the native grid. Each volume yields ``num_samples`` patches of
    ``patch_size``, half centred on vessel voxels and half on background.
    """
    from monai.transforms import Compose, RandCropByPosNegLabeld, SpatialPadd

    keys = ["image", "label"]
    patch = tuple(int(p) for p in patch_size)
    chain = _deterministic(spacing)
    chain += [
        SpatialPadd(keys=keys, spatial_size=patch),
        RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=patch,
            pos=1.0,
            neg=1.0,
            num_samples=int(num_samples),
        ),
    ]
    return Compose(chain)


def val_transforms(spacing: Sequence[float] | None = None) -> Compose:
    """Validation chain: the deterministic part of :func:`train_transforms` (whole volumes)."""
    from monai.transforms import Compose

    return Compose(_deterministic(spacing))


def make_loaders(
    datalist_: dict[str, Any],
    patch_size: Sequence[int] = DEFAULT_PATCH,
    spacing: Sequence[float] | None = None,
    num_samples: int = 2,
    batch_size: int = 1,
    cache_rate: float = 1.0,
    num_workers: int = 0,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader | None]:
    """CacheDataset-backed ``(train_loader, val_loader)`` for a :func:`datalist`.

    The train loader shuffles with a generator seeded by ``seed`` (which also
    seeds the random crops when ``num_workers == 0``) and yields
    ``batch_size * num_samples`` patches per step; the validation loader yields
    one whole volume per step, in datalist order, or is ``None`` when the
    validation list is empty. ``cache_rate`` is the fraction of volumes kept
    in memory after the deterministic transforms.
    """
    import torch
    from monai.data import CacheDataset, DataLoader

    if not datalist_.get("training"):
        raise ConsumerError("the datalist has no training volumes", expected="at least one pair")
    cache_workers = max(1, int(num_workers))
    train_ds = CacheDataset(
        datalist_["training"],
        train_transforms(patch_size, spacing, num_samples),
        cache_rate=cache_rate,
        num_workers=cache_workers,
        progress=False,
    )
    generator = torch.Generator().manual_seed(int(seed))
    train_loader = DataLoader(
        train_ds,
        batch_size=int(batch_size),
        shuffle=True,
        num_workers=int(num_workers),
        generator=generator,
    )
    val_loader = None
    if datalist_.get("validation"):
        val_ds = CacheDataset(
            datalist_["validation"],
            val_transforms(spacing),
            cache_rate=cache_rate,
            num_workers=cache_workers,
            progress=False,
        )
        val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=int(num_workers))
    return train_loader, val_loader
