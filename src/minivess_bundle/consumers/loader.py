"""Find image/label pairs in a folder, whichever of the known layouts it uses.

Training code and checks downstream of the bundle want one list of
``(image, label)`` pairs; the data they are pointed at comes in three shapes:

``imagesTr``
    ``imagesTr/<id>.nii.gz`` + ``labelsTr/<id>.nii.gz`` (+ ``metadata/<id>.json``),
    the layout the workflow writes (nnU-Net/MONAI style).
``ebrains``
    ``raw/<id>.nii.gz`` + ``seg/<id>_y.nii.gz`` (+ ``json/<id>.json``), the
    layout of the EBRAINS release and of the staging folder.
``bundle``
    the ``imagesTr`` layout under ``processed/`` or ``data/processed/`` of a
    bundle folder; ``data/processed/`` is also what a BagIt bag root holds.
    A bag whose ``data/`` holds ``imagesTr/`` directly is accepted too.

Exactly one layout must be found: a folder that matches two is an error
rather than a guess. Only ``*.nii.gz`` and ``*.nii`` files count, and hidden
files (such as the ``.<name>.tmp-<pid>`` files of an interrupted write) are
ignored. Every image must have a label and every label an image: an orphan is
an error naming the file, never silently dropped, because a missing mask
silently shrinks a training set; where an orphan image and an orphan label
differ only in case, spaces or zero padding (``MV01`` / ``mv01``, ``mv1`` /
``mv01``, ``'mv01 '`` / ``mv01``) the error says so. Ids are not required to be
``mvNN``, so other datasets load too; records are sorted by id (plain string order).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.errors import LoaderError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
EBRAINS_LABEL_SUFFIX = "_y"
#: Most orphan or duplicate names listed in one error message.
MAX_LISTED = 5

#: (layout name, folder relative to data_dir, image dir, label dir, metadata dir, label suffix)
LAYOUTS = (
    ("imagesTr", ".", "imagesTr", "labelsTr", "metadata", ""),
    ("ebrains", ".", "raw", "seg", "json", EBRAINS_LABEL_SUFFIX),
    ("bundle", "processed", "imagesTr", "labelsTr", "metadata", ""),
    ("bundle", "data/processed", "imagesTr", "labelsTr", "metadata", ""),
    ("bundle", "data", "imagesTr", "labelsTr", "metadata", ""),
)


def _looked_for() -> str:
    return ", ".join(
        f"{image}/+{label}/" if base == "." else f"{base}/{image}/+{label}/"
        for _, base, image, label, _, _ in LAYOUTS
    )


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def nifti_stem(name: str) -> str | None:
    """``name`` without its NIfTI suffix, or ``None`` if it is not a visible NIfTI file name."""
    if name.startswith("."):
        return None
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _loose_id(volume_id: str) -> str:
    """An id with case, whitespace and leading zeros of its numbers ignored (``MV1 `` = mv01)."""
    text = "".join(volume_id.split()).lower()
    return re.sub(r"\d+", lambda m: str(int(m[0])), text)


def _near_miss_note(image_ids: list[str], label_ids: list[str]) -> str:
    """``; near misses: 'MV01' vs 'mv01' ...`` for orphans that differ only loosely."""
    labels: dict[str, list[str]] = {}
    for label_id in label_ids:
        labels.setdefault(_loose_id(label_id), []).append(label_id)
    pairs = [f"image {i!r} vs label {j!r}" for i in image_ids for j in labels.get(_loose_id(i), [])]
    if not pairs:
        return ""
    return f"; near misses (ids differ only in case, spaces or zero padding): {_listing(pairs)}"


def _scan(folder: Path, suffix: str, what: str) -> dict[str, Path]:
    """Map id -> file for the NIfTI files in ``folder`` whose stems end with ``suffix``."""
    found: dict[str, Path] = {}
    duplicates: list[str] = []
    unnamed: list[str] = []
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        if stem is None or not path.is_file():
            continue
        if suffix:
            if not stem.endswith(suffix) or stem == suffix:
                unnamed.append(path.name)
                continue
            stem = stem[: -len(suffix)]
        if stem in found:
            duplicates.append(f"{found[stem].name} and {path.name}")
            continue
        found[stem] = path
    if unnamed:
        raise LoaderError(
            f"{what} {_listing(unnamed)} lack the {suffix!r} suffix",
            path=folder,
            expected=f"label files named <id>{suffix}.nii.gz",
        )
    if duplicates:
        raise LoaderError(
            f"{what} id given twice: {_listing(duplicates)}",
            path=folder,
            expected="one file per id (.nii.gz or .nii, not both)",
        )
    return found


def _find_layout(data_dir: Path) -> tuple[str, Path, str, str, str, str]:
    """The one layout present in ``data_dir``; :class:`LoaderError` if none or several."""
    matches = []
    partial = []
    for name, base, image, label, metadata, suffix in LAYOUTS:
        root = data_dir / base
        has_image, has_label = (root / image).is_dir(), (root / label).is_dir()
        if has_image and has_label:
            matches.append((name, root, image, label, metadata, suffix))
        elif has_image or has_label:
            present, absent = (image, label) if has_image else (label, image)
            partial.append(f"{(root / present).relative_to(data_dir)}/ without {absent}/")
    if len(matches) > 1:
        found = ", ".join(f"{m[0]} in {m[1].relative_to(data_dir)}/" for m in matches)
        raise LoaderError(
            f"several layouts found ({found})", path=data_dir, expected="exactly one layout"
        )
    if matches:
        return matches[0]
    if partial:
        raise LoaderError(
            f"incomplete layout: {'; '.join(partial)}",
            path=data_dir,
            expected="image and label folders side by side",
        )
    raise LoaderError("no known layout", path=data_dir, expected=f"one of {_looked_for()}")


def discover_nifti_pairs(data_dir: str | Path) -> list[dict[str, str]]:
    """List the image/label pairs in ``data_dir``, sorted by id.

    Returns one record per pair::

        {"id": "mv01", "image": "<path>", "label": "<path>", "metadata": "<path>"}

    where paths are strings built on ``data_dir`` as given and ``metadata`` is
    present only when the layout's metadata file for that id exists.

    Raises :class:`LoaderError` when ``data_dir`` is not a folder, holds no
    known layout or more than one, when an image has no label or a label no
    image (naming the files), or when it holds no pairs at all.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LoaderError("folder does not exist", path=data_dir, expected="a data folder")
    _, root, image_dir, label_dir, metadata_dir, suffix = _find_layout(data_dir)
    images = _scan(root / image_dir, "", "images")
    labels = _scan(root / label_dir, suffix, "labels")

    orphans = [f"image {images[i]} has no label" for i in sorted(images.keys() - labels.keys())]
    orphans += [f"label {labels[i]} has no image" for i in sorted(labels.keys() - images.keys())]
    if orphans:
        only = sorted(images.keys() ^ labels.keys())
        note = _near_miss_note(
            sorted(images.keys() - labels.keys()), sorted(labels.keys() - images.keys())
        )
        raise LoaderError(
            _listing(orphans) + note,
            volume=only[0] if len(only) == 1 else None,
            path=root,
            expected=f"one {label_dir}/<id>{suffix}.nii.gz per {image_dir}/<id>.nii.gz",
        )
    if not images:
        raise LoaderError(
            f"no NIfTI pairs in {image_dir}/ and {label_dir}/",
            path=root,
            expected="at least one <id>.nii.gz image with its label",
        )

    records = []
    for volume_id in sorted(images):
        record = {"id": volume_id, "image": str(images[volume_id]), "label": str(labels[volume_id])}
        metadata = root / metadata_dir / f"{volume_id}.json"
        if metadata.is_file():
            record["metadata"] = str(metadata)
        records.append(record)
    return records
