"""The evaluation's units (patches) and their consumers' format: every representation a
detector reads, the unit files plug-ins get, and the per-unit feature table as Parquet (the
shape Evidently's ``Dataset.from_pandas`` takes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.fsio import write_bytes_atomic
from . import features as feat
from .roles import Roles
from .sets import Plan

#: The feature table's layout version (the drift_eval.json schema version it belongs to).
TABLE_VERSION = 3
#: the columns of the per-unit feature table besides the features (see :func:`feature_table`)
TABLE_COLUMNS = (
    "replication",
    "role",
    "unit",
    "volume",
    "kind",
    "level",
    "severity",
    "x",
    "y",
    "z",
)
#: the harm column of the feature table (filled by the harm module; null where not scored)
HARM_COLUMN = "harm_dice_drop"


class Units:
    """Every patch of the evaluation as rows of each representation, indexed by unit number.

    Patches themselves are kept only when a plug-in needs them as files; BBSD's softmax
    rows are computed as patches are added (``softmax(patches, scales)``).
    """

    def __init__(self, keep_patches: bool = False, softmax: Callable | None = None) -> None:
        self.keep_patches = keep_patches
        self.softmax = softmax
        self.patches: list[Any] = []
        self.features: list[Any] = []
        self.embeddings: list[Any] = []
        self.softmax_rows: list[Any] = []
        #: per unit: (volume, kind, level, severity, corner); clean units: kind "clean"
        self.meta: list[tuple[str, str, int, float, tuple[int, int, int]]] = []
        #: ("clean", vol) or (kind, level, vol) -> unit indices, in patch-position order
        self.of: dict[tuple, list[int]] = {}
        #: (kind, level, volume) sets whose kind cannot act on that volume, with the reason
        self.not_applicable: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.meta)

    def add(
        self,
        key: tuple,
        patches: list[Any],
        scale: tuple[float, float],
        projection,
        corners: list[tuple[int, int, int]],
        severity: float = 0.0,
    ) -> None:
        import numpy as np

        start = len(self.meta)
        vol = key[-1]
        kind, level = ("clean", 0) if key[0] == "clean" else (str(key[0]), int(key[1]))
        for patch, corner in zip(patches, corners, strict=True):
            self.features.append(feat.intensity_features(patch))
            self.embeddings.append(feat.embedding(patch, projection))
            self.meta.append((vol, kind, level, float(severity), tuple(corner)))
            if self.keep_patches:
                self.patches.append(patch)
        if self.softmax is not None:
            self.softmax_rows.extend(self.softmax(np.asarray(patches), [scale] * len(patches)))
        self.of[key] = list(range(start, len(self.meta)))

    def alias(self, key: tuple, clean_key: tuple) -> None:
        """``key``'s units are ``clean_key``'s (a kind that leaves the image unchanged)."""
        self.of[key] = self.of[clean_key]


def write_unit_files(units: Units, folder: Path) -> list[str]:
    """Each unit as ``unit-<i>.npy`` (float32 patch, x/y/z) for plug-in detectors."""
    import numpy as np

    paths = []
    for i, patch in enumerate(units.patches):
        path = folder / f"unit-{i:05d}.npy"
        np.save(path, np.asarray(patch, dtype=np.float32))
        paths.append(str(path))
    return paths


def feature_table(
    units: Units, roles: list[Roles], plan: Plan, harm_sets: list[dict[str, Any]] | None = None
):
    """The per-unit feature table as a ``pyarrow.Table`` (long form, one row per unit and
    replication it takes part in).

    Columns: :data:`TABLE_COLUMNS` (``role`` is the unit's volume's role in that
    replication: reference, calibration or test; ``kind`` is ``clean`` for a clean unit,
    ``level`` and ``severity`` 0 then; x, y, z the patch corner), the 13 features
    (:data:`.features.FEATURE_NAMES`) and :data:`HARM_COLUMN`: the reference UNet's mean
    Dice drop of the unit's (kind, level) set (``harm_sets``, :meth:`.harm.HarmScorer.by_set`;
    0 for a clean unit; null where harm was not scored or the set is label-only). Drifted
    units appear for the test volumes of their replication only, one row per (kind, level)
    even where the kind leaves the image unchanged (then the features equal the clean
    unit's). ``table.to_pandas()`` is the frame Evidently's
    ``Dataset.from_pandas`` takes: filter one replication, ``role == "reference"`` as the
    reference and a test selection as the current data, the features as numerical columns.
    """
    import pyarrow as pa

    columns: dict[str, list] = {name: [] for name in (*TABLE_COLUMNS, *feat.FEATURE_NAMES)}
    columns[HARM_COLUMN] = []
    harm_of = {
        (row["kind"], int(row["level"])): float(row["mean_dice_drop"])
        for row in harm_sets or []
        if not row.get("label_only")
    }
    groups: dict[str, list[tuple[str, int]]] = {}
    for key in units.of:
        if key[0] != "clean":
            groups.setdefault(key[2], []).append((key[0], key[1]))

    def add(r, role, vol, key, kind, level, severity):
        for unit in units.of[key]:
            corner = units.meta[unit][4]
            values = (r, role, unit, vol, kind, level, severity, *corner)
            for name, value in zip(TABLE_COLUMNS, values, strict=True):
                columns[name].append(value)
            for name, value in zip(feat.FEATURE_NAMES, units.features[unit], strict=True):
                columns[name].append(float(value))
            if not harm_sets:
                columns[HARM_COLUMN].append(None)
            else:
                columns[HARM_COLUMN].append(0.0 if kind == "clean" else harm_of.get((kind, level)))

    for r, role in enumerate(roles):
        for name in ("reference", "calibration", "test"):
            for vol in getattr(role, name):
                add(r, name, vol, ("clean", vol), "clean", 0, 0.0)
                if name == "test":
                    for kind, level in sorted(groups.get(vol, [])):
                        severity = float(plan.recipes[(kind, level)]["severity"])
                        add(r, name, vol, (kind, level, vol), kind, level, severity)
    types = {
        "replication": pa.int16(),
        "role": pa.string(),
        "unit": pa.int32(),
        "volume": pa.string(),
        "kind": pa.string(),
        "level": pa.int8(),
        "severity": pa.float64(),
        "x": pa.int32(),
        "y": pa.int32(),
        "z": pa.int32(),
    }
    fields = [pa.field(k, types[k], nullable=False) for k in TABLE_COLUMNS]
    fields += [pa.field(k, pa.float64(), nullable=False) for k in feat.FEATURE_NAMES]
    fields.append(pa.field(HARM_COLUMN, pa.float64(), nullable=True))
    schema = pa.schema(
        fields,
        metadata={
            "description": "minivess-bundle drift_eval per-unit feature table (a unit is a "
            "patch); see minivess_bundle.drift_eval.table.feature_table",
            "schema_version": str(TABLE_VERSION),
        },
    )
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in fields}, schema=schema)


def write_feature_table(table, path: str | Path) -> Path:
    """``table`` as Parquet (zstd), written atomically; the same table gives the same bytes."""
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=True)
    return write_bytes_atomic(path, buffer.getvalue())
