"""Export the bundle as an nnU-Net v2 raw dataset, and check one against nnU-Net's rules.

:func:`export_nnunet` builds ``<out_root>/DatasetNNN_<name>/``::

    dataset.json        channel_names (two-photon), labels, numTraining, file_ending
    splits_final.json   the dataset authors' 3 folds (minivess_bundle.core.splits), for nnU-Net
    imagesTr/mvNN_0000.nii.gz
    labelsTr/mvNN.nii.gz

by hardlinks from the bundle (:func:`~minivess_bundle.core.fsio.link_or_copy`: a copy
verified against its source's sha256 across file systems), so the bytes nnU-Net
reads are the bundle's bytes. The folder is built under a hidden name, checked
with :func:`check_nnunet_dataset` and renamed into place.

nnU-Net reads a custom split only from ``$nnUNet_preprocessed/DatasetNNN_<name>/
splits_final.json`` (``nnUNetTrainer.do_split``; without it, it draws its own 5
folds), so the export's ``splits_final.json`` is to be copied there after
``nnUNetv2_plan_and_preprocess`` (:data:`NNUNET_SNIPPET` does); then
``nnUNetv2_train <id> 3d_fullres 0`` trains fold 0 of the authors' split. nnU-Net
ignores the file in the raw folder.

:func:`check_nnunet_dataset` implements the rules of nnU-Net v2's
``documentation/dataset_format.md`` and of its ``verify_dataset_integrity``
(``nnunetv2/experiment_planning/verify_dataset_integrity.py``) without nnU-Net,
which is not installed in this project's environment (it pulls a second deep
learning stack and is not needed to build the bundle). It is stricter in three
places, each a real risk for MiniVess: files in ``imagesTr``/``labelsTr`` that
nnU-Net would silently ignore are reported ("no extra files"), image/label affine
differences (a warning in nnU-Net) are errors because the documentation requires
co-registered geometry, and label values must be integers. Region-based labels
and ignore labels are not supported (MiniVess has neither). The NIfTI spacing is
compared as stored (``pixdim`` and ``xyzt_units``), as nnU-Net's readers compare
the spacing they derive from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..core import dataset
from ..core.errors import ConsumerError
from ..core.fsio import json_bytes, link_or_copy, write_bytes_atomic
from ..core.splits import folds
from .monai import find_pairs

log = logging.getLogger(__name__)

DEFAULT_DATASET_ID = dataset.NNUNET_ID
DEFAULT_LABELS = dataset.LABELS
#: nnU-Net's name for a custom cross-validation split (one {"train", "val"} per fold).
SPLITS_FILE = "splits_final.json"
CHANNEL_NAMES = dataset.CHANNEL_NAMES
REQUIRED_KEYS = ("labels", "channel_names", "numTraining", "file_ending")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
FILE_ENDINGS = (".nii.gz", ".nii")
#: Metadata copied from the bundle's dataset.json when present.
COPIED_KEYS = ("name", "description", "reference", "licence", "release", "tensorImageSize")
#: Most problems listed in an export error (all are logged).
MAX_LISTED = 5

#: How to train nnU-Net v2 on a bundle (the datasheet's usage text; owned by :mod:`.dataset`).
NNUNET_SNIPPET = dataset.NNUNET_SNIPPET


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_<name>``, after checking the id (1..999) and the name."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int):
        raise ConsumerError(f"dataset id {dataset_id!r}", expected="an integer 1..999")
    if not 1 <= dataset_id <= 999:
        raise ConsumerError(f"dataset id {dataset_id}", expected="an integer 1..999")
    if not NAME_RE.match(name):
        raise ConsumerError(
            f"dataset name {name!r} is not allowed",
            expected="letters, digits, '_' and '-', starting with a letter or digit",
        )
    return f"Dataset{dataset_id:03d}_{name}"


def _file_ending(name: str) -> str:
    for ending in FILE_ENDINGS:
        if name.endswith(ending):
            return ending
    raise ConsumerError(f"{name} is not a NIfTI file name", expected="<id>.nii.gz or <id>.nii")


def _bundle_description(bundle_dir: Path) -> dict[str, Any]:
    for candidate in (bundle_dir / "data" / "dataset.json", bundle_dir / "dataset.json"):
        if candidate.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(candidate.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    return loaded
    return {}


def export_nnunet(
    bundle_dir: str | Path,
    out_root: str | Path,
    dataset_id: int = DEFAULT_DATASET_ID,
    name: str = "MiniVess",
    check: bool = True,
) -> Path:
    """Write ``<out_root>/DatasetNNN_<name>/`` from a bundle; return its path.

    ``bundle_dir`` is a bundle folder (its ``data/dataset.json`` training list is
    used), its ``data/`` folder, or any layout
    :func:`~minivess_bundle.consumers.loader.discover_nifti_pairs` reads. Images become
    ``imagesTr/<id>_0000<ending>``, labels ``labelsTr/<id><ending>``. Labels are
    the bundle's ``labels`` (else background 0, vessel 1); name, description,
    reference, licence and release are copied from the bundle's dataset.json.
    An existing dataset folder is replaced only once the new one is complete
    (and, with ``check``, passes :func:`check_nnunet_dataset`).
    """
    bundle_dir = Path(bundle_dir)
    folder_name = dataset_folder_name(dataset_id, name)
    pairs, source = find_pairs(bundle_dir)
    endings = {_file_ending(Path(p[k]).name) for p in pairs for k in ("image", "label")}
    if len(endings) != 1:
        raise ConsumerError(
            f"the bundle mixes file endings {sorted(endings)}",
            path=bundle_dir,
            expected="one file ending for every image and label (nnU-Net's file_ending)",
        )
    ending = endings.pop()
    bundle = _bundle_description(bundle_dir) if source == "dataset.json" else {}
    labels = bundle.get("labels", DEFAULT_LABELS)
    description = {k: bundle[k] for k in COPIED_KEYS if k in bundle}
    description.update(
        {
            "name": name,
            "channel_names": dict(CHANNEL_NAMES),
            "labels": labels,
            "numTraining": len(pairs),
            "file_ending": ending,
        }
    )

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / folder_name
    tmp = out_root / f".{folder_name}.tmp-{os.getpid()}"
    old = out_root / f".{folder_name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        methods: dict[str, int] = {}
        for pair in pairs:
            for src, dest in (
                (pair["image"], tmp / "imagesTr" / f"{pair['id']}_0000{ending}"),
                (pair["label"], tmp / "labelsTr" / f"{pair['id']}{ending}"),
            ):
                method = link_or_copy(src, dest)
                methods[method] = methods.get(method, 0) + 1
        write_bytes_atomic(tmp / "dataset.json", json_bytes(description))
        splits = folds(pair["id"] for pair in pairs)
        write_bytes_atomic(tmp / SPLITS_FILE, json_bytes(splits))
        for k, split in enumerate(splits):
            if not split["val"]:
                log.warning("%s: fold %d has no validation volume in this build", SPLITS_FILE, k)
        if check:
            problems = check_nnunet_dataset(tmp)
            if problems:
                for problem in problems:
                    log.error("%s", problem)
                shown = "; ".join(problems[:MAX_LISTED])
                more = len(problems) - MAX_LISTED
                raise ConsumerError(
                    f"nnU-Net export fails its integrity check: {shown}"
                    + (f" and {more} more" if more > 0 else ""),
                    path=bundle_dir,
                    expected="a dataset nnU-Net v2 accepts",
                )
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        raise
    log.info("nnU-Net %s: %d cases, placed %s", folder_name, len(pairs), methods)
    return final


# ---------------------------------------------------------------- integrity check


def _problem(check: str, volume: str | None = None, path: Any = None, expected: str = "") -> str:
    return ConsumerError(check, volume=volume, path=path, expected=expected or None).format()


def _rel(folder: Path, path: Path) -> str:
    """``path`` relative to the dataset folder (as the messages name files)."""
    return os.path.relpath(path, folder)


def _numbers(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


def _case_files(folder: Path, dataset_json: dict[str, Any], problems: list[str]) -> dict | None:
    """``{case: {"images": {channel: path}, "label": path}}`` from the folders or the file map."""
    ending = dataset_json["file_ending"]
    cases: dict[str, dict[str, Any]] = {}
    if "dataset" in dataset_json:
        file_map = dataset_json["dataset"]
        if not isinstance(file_map, dict):
            problems.append(_problem("'dataset' is not a map of cases", path=folder))
            return None
        for case, entry in sorted(file_map.items()):
            images = entry.get("images") if isinstance(entry, dict) else None
            label = entry.get("label") if isinstance(entry, dict) else None
            if not isinstance(images, list) or not isinstance(label, str):
                problems.append(
                    _problem(
                        "dataset entry is not {images: [...], label: ...}",
                        volume=case,
                        path="dataset.json",
                    )
                )
                continue
            paths = [folder / os.path.expandvars(i) for i in images]
            cases[case] = {
                "images": dict(enumerate(paths)),
                "label": folder / os.path.expandvars(label),
            }
        for case, entry in cases.items():
            for path in [*entry["images"].values(), entry["label"]]:
                if not path.is_file():
                    problems.append(
                        _problem("listed file is missing", volume=case, path=_rel(folder, path))
                    )
                elif not path.name.endswith(ending):
                    problems.append(
                        _problem(
                            f"file ending of {path.name} is not {ending!r}",
                            volume=case,
                            path=_rel(folder, path),
                            expected="file_ending for every file",
                        )
                    )
        return cases

    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    absent = [sub.name for sub in (images_dir, labels_dir) if not sub.is_dir()]
    for name in absent:
        problems.append(_problem(f"{name}/ is missing", path=folder))
    if absent:
        return None
    image_re = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending) + "$")
    for path in sorted(images_dir.iterdir()):
        match = image_re.match(path.name)
        if not path.is_file() or not match:
            problems.append(
                _problem(
                    f"extra file {path.name} in imagesTr/",
                    path=f"imagesTr/{path.name}",
                    expected=f"only <case>_XXXX{ending} images",
                )
            )
            continue
        entry = cases.setdefault(match["case"], {"images": {}, "label": None})
        entry["images"][int(match["channel"])] = path
    for path in sorted(labels_dir.iterdir()):
        case = path.name[: -len(ending)] if path.name.endswith(ending) else None
        if not path.is_file() or not case or case not in cases:
            what = "label without images" if case and path.is_file() else "extra file"
            problems.append(
                _problem(
                    f"{what} {path.name} in labelsTr/",
                    volume=case if case else None,
                    path=f"labelsTr/{path.name}",
                    expected=f"only <case>{ending} labels of cases in imagesTr/",
                )
            )
            continue
        cases[case]["label"] = path
    for case, entry in sorted(cases.items()):
        if entry["label"] is None:
            problems.append(
                _problem(
                    "case has no label",
                    volume=case,
                    path=f"labelsTr/{case}{ending}",
                    expected="one label per case",
                )
            )
    return cases


def _read_labels(dataset_json: dict[str, Any], problems: list[str]) -> set[int] | None:
    """The declared label values, or ``None`` (and a problem) when they break nnU-Net's rules."""
    path = "dataset.json"
    labels = dataset_json["labels"]
    if not isinstance(labels, dict) or not labels:
        problems.append(_problem("labels is not a name -> value map", path=path))
        return None
    values = []
    for key, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(
                _problem(
                    f"label {key!r} has value {value!r}",
                    path=path,
                    expected="an integer (regions are not supported here)",
                )
            )
            return None
        values.append(value)
    ordered = sorted(values)
    if ordered[0] != 0 or ordered != list(range(len(ordered))) or len(set(values)) != len(values):
        problems.append(
            _problem(
                f"label values {ordered}",
                path=path,
                expected="consecutive integers 0, 1, 2, ... with background 0",
            )
        )
        return None
    return set(values)


def _geometry(image: Any) -> dict[str, Any]:
    import numpy as np

    header = image.header
    return {
        "shape": tuple(int(s) for s in image.shape[:3]),
        "spacing": np.asarray(header.get_zooms()[:3], dtype=float),
        "units": int(header["xyzt_units"]) & 0x07,
        "affine": np.asarray(image.affine, dtype=float),
    }


def _compare(case: str, name: str, ref: dict, other: dict, ref_name: str) -> list[str]:
    """How ``other`` (file ``name``) differs from ``ref``: shape, else spacing, else affine."""
    import numpy as np

    out = []
    if other["shape"] != ref["shape"]:
        out.append(
            _problem(
                f"shape {list(other['shape'])} differs from {ref_name}'s {list(ref['shape'])}",
                volume=case,
                path=name,
                expected="one grid per case",
            )
        )
    elif not np.allclose(other["spacing"], ref["spacing"]) or other["units"] != ref["units"]:
        out.append(
            _problem(
                f"spacing {_numbers(other['spacing'])} (unit code {other['units']}) differs from "
                f"{ref_name}'s {_numbers(ref['spacing'])} (unit code {ref['units']})",
                volume=case,
                path=name,
                expected="one spacing per case",
            )
        )
    elif not np.allclose(other["affine"], ref["affine"], rtol=1e-5, atol=1e-6):
        out.append(
            _problem(
                f"affine differs from {ref_name}'s",
                volume=case,
                path=name,
                expected="co-registered images and label (same origin and direction)",
            )
        )
    return out


def _check_case(
    folder: Path, case: str, entry: dict[str, Any], channels: int, allowed: set[int] | None
) -> list[str]:
    """Channels, label values and per-case geometry of one case."""
    import nibabel as nib
    import numpy as np

    from ..core.nifti import read_nifti

    out: list[str] = []
    indices = sorted(entry["images"])
    if indices != list(range(channels)):
        missing = sorted(set(range(channels)) - set(indices))
        extra = sorted(set(indices) - set(range(channels)))
        text = []
        if missing:
            text.append("missing channel(s) " + ", ".join(f"_{i:04d}" for i in missing))
        if extra:
            text.append("undeclared channel(s) " + ", ".join(f"_{i:04d}" for i in extra))
        wanted = ", ".join(f"_{i:04d}" for i in range(channels))
        out.append(
            _problem(
                "; ".join(text),
                volume=case,
                expected=f"channel(s) {wanted} as channel_names declares",
            )
        )
    label_path = entry["label"]
    if label_path is None or not label_path.is_file():
        return out
    label_name = _rel(folder, label_path)
    try:
        label = read_nifti(label_path, case)
    except Exception as exc:  # a named NiftiError, or nibabel's own
        return [*out, _problem(f"label unreadable ({exc})", volume=case, path=label_name)]
    ref = _geometry(label)
    data = np.asarray(label.dataobj)
    if data.dtype.kind == "f" and np.isnan(data).any():
        out.append(_problem("label holds NaN", volume=case, path=label_name))
    else:
        found = np.unique(data)
        if data.dtype.kind == "f" and not np.all(found == np.round(found)):
            out.append(
                _problem(
                    "label holds non-integer values",
                    volume=case,
                    path=label_name,
                    expected="an integer map",
                )
            )
        elif allowed is not None:
            unexpected = sorted({int(v) for v in found} - allowed)
            if unexpected:
                out.append(
                    _problem(
                        f"label values {sorted(int(v) for v in found)} include {unexpected}",
                        volume=case,
                        path=label_name,
                        expected=f"a subset of the declared labels {sorted(allowed)}",
                    )
                )
    for index in indices:
        path = entry["images"][index]
        if not path.is_file():
            continue
        try:
            image = nib.load(str(path))
            geometry = _geometry(image)
        except Exception as exc:
            out.append(_problem(f"image unreadable ({exc})", volume=case, path=_rel(folder, path)))
            continue
        out += _compare(case, _rel(folder, path), ref, geometry, "its label")
        if np.dtype(image.get_data_dtype()).kind == "f" and np.isnan(image.get_fdata()).any():
            out.append(_problem("image holds NaN", volume=case, path=_rel(folder, path)))
    return out


def check_nnunet_dataset(folder: str | Path) -> list[str]:
    """Problems that keep nnU-Net v2 from accepting ``folder`` as a raw dataset; ``[]`` if none.

    Rules (nnU-Net v2 ``dataset_format.md`` and ``verify_dataset_integrity``):
    ``dataset.json`` with ``labels``, ``channel_names``, ``numTraining``,
    ``file_ending``; ``imagesTr/`` and ``labelsTr/`` (unless an explicit
    ``dataset`` file map is given, as in the bundle's own ``data/dataset.json``);
    images named ``<case>_XXXX<file_ending>`` with exactly the channels
    ``channel_names`` declares; one ``labelsTr/<case><file_ending>`` per case and
    no label without images; the number of cases equal to ``numTraining``;
    labels a name -> integer map with consecutive values from background 0;
    label voxels integers within the declared values, no NaN; images and label of
    a case on one grid (shape, spacing and unit, affine); no other files in
    ``imagesTr/`` or ``labelsTr/``. Each message is one line naming the case,
    the check, what was found and what was expected.
    """
    folder = Path(folder)
    json_path = folder / "dataset.json"
    if not json_path.is_file():
        return [_problem("dataset.json is missing", path=folder)]
    try:
        dataset_json = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [_problem(f"dataset.json is not readable JSON ({exc})", path="dataset.json")]
    if not isinstance(dataset_json, dict):
        return [_problem("dataset.json is not an object", path="dataset.json")]
    missing = [k for k in REQUIRED_KEYS if k not in dataset_json]
    if missing:
        return [
            _problem(
                f"dataset.json lacks {', '.join(missing)}",
                path="dataset.json",
                expected=f"keys {', '.join(REQUIRED_KEYS)}",
            )
        ]
    problems: list[str] = []
    ending = dataset_json["file_ending"]
    if not isinstance(ending, str) or not ending.startswith("."):
        return [_problem(f"file_ending {ending!r}", path="dataset.json", expected="e.g. '.nii.gz'")]
    channel_names = dataset_json["channel_names"]
    keys = sorted(channel_names) if isinstance(channel_names, dict) else None
    if not keys or keys != sorted(str(i) for i in range(len(keys))):
        problems.append(
            _problem(
                f"channel_names keys {keys}",
                path="dataset.json",
                expected='consecutive channel indices "0", "1", ...',
            )
        )
        channels = len(keys or [])
    else:
        channels = len(keys)
    allowed = _read_labels(dataset_json, problems)
    declared = dataset_json["numTraining"]
    cases = _case_files(folder, dataset_json, problems)
    if cases is None:
        return problems
    if isinstance(declared, bool) or not isinstance(declared, int) or declared != len(cases):
        problems.append(
            _problem(
                f"numTraining is {declared!r} but {len(cases)} cases were found",
                path="dataset.json",
                expected="numTraining equal to the number of training cases",
            )
        )
    for case, entry in sorted(cases.items()):
        problems += _check_case(folder, case, entry, channels, allowed)
    return problems
