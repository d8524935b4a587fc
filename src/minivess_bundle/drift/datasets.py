"""The ``dataset.json`` of every drift set and the clean pool a set chooses from.

A leaf of the drift package (it imports no other drift module): the variant and set
writers (:mod:`.driver`, :mod:`.prevalence`, the CLI) all build their ``dataset.json``
here, in the MONAI/MSD ``training`` list shape with nnU-Net's keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.dataset import CHANNEL_NAMES, LABELS
from ..core.errors import DriftError
from ..core.volumes import renamed_names


def set_dataset(
    kind: str, level: int | str, what: str, training: list[dict[str, str]], drift: dict
) -> dict[str, Any]:
    """The ``dataset.json`` of one drift set (MONAI/MSD ``training`` list + nnU-Net keys)."""
    return {
        "name": f"MiniVess-drift-{kind}-{level}",
        "description": f"MiniVess drift {what}: {kind}, level {level}; "
        "ground truth in drift_manifest.json",
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(LABELS),
        "file_ending": ".nii.gz",
        "numTraining": len(training),
        "training": training,
        "drift": {"type": kind, "level": str(level), **drift},
    }


def variant_dataset_json(kind: str, level_dir: str, entries: Sequence[dict]) -> dict:
    """The ``dataset.json`` of one variant set (the drifted files beside it)."""
    volumes = sorted(e["volume"] for e in entries)
    training = [
        {role: f"./{renamed_names(v)[role]}" for role in ("image", "label")} for v in volumes
    ]
    severities = sorted({e["severity"] for e in entries})
    return set_dataset(kind, level_dir, "variant set", training, {"severities": severities})


def set_pool(
    fractions: Mapping[str, float], pool: Sequence[str], clean_root: str | Path
) -> dict[str, dict[str, Any]]:
    """The clean volumes a set chooses from: vessel fraction and files under ``clean_root``
    (``imagesTr/<vol>.nii.gz``, ``labelsTr/<vol>.nii.gz``)."""
    missing = [vol for vol in pool if vol not in fractions]
    if missing:
        raise DriftError(
            f"no foreground fraction for {missing}", expected="every pool volume in the report"
        )
    root = Path(clean_root)
    return {
        vol: {
            "foreground_fraction": float(fractions[vol]),
            **{role: root / renamed_names(vol)[role] for role in ("image", "label")},
        }
        for vol in pool
    }


def report_fractions(validation_report: str | Path) -> dict[str, float]:
    """Each volume's foreground (vessel) fraction from the validation report."""
    import json

    report = json.loads(Path(validation_report).read_text(encoding="utf-8"))
    return {
        vol: float(row["foreground_fraction"])
        for vol, row in report.get("volumes", {}).items()
        if row.get("foreground_fraction") is not None
    }
