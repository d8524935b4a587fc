"""The per-volume JSON: read it boundedly and find its spacing, parsed tolerantly."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .profiles import _UNIT_ALIASES, UNIT_UM
from .record import _Checks, _r7

log = logging.getLogger(__name__)


#: JSON key names read as a voxel size, after lower-casing, dropping non-alphanumerics
#: and one unit suffix (um, mm, nm): ``voxel_size_um``, ``VoxelSize``, ``spacing_mm`` ...
JSON_SPACING_KEYS = (
    "voxelsize",
    "voxelspacing",
    "spacing",
    "pixdim",
    "resolution",
    "pixelsize",
    "zooms",
)


def _norm_key(key: str) -> str:
    return "".join(ch for ch in key.lower() if ch.isalnum())


def _spacing_key(key: str) -> tuple[str, str | None]:
    """(base name, unit from the suffix or None) of a JSON key."""
    norm = _norm_key(key)
    for unit in ("um", "mm", "nm"):
        if norm.endswith(unit) and norm[: -len(unit)] in JSON_SPACING_KEYS:
            return norm[: -len(unit)], unit
    return norm, None


def _unit_of(text: Any) -> str | None:
    return _UNIT_ALIASES.get(text.strip().lower()) if isinstance(text, str) else None


def _as_xyz(value: Any, key: str) -> list[float] | None:
    if isinstance(value, dict):
        lower = {str(k).lower(): v for k, v in value.items()}
        value = [lower.get(axis) for axis in "xyz"]
    if not isinstance(value, list | tuple):
        return None
    if _spacing_key(key)[0] == "pixdim" and len(value) == 8:
        value = value[1:4]
    elif len(value) == 4:
        value = value[:3]
    if len(value) != 3 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return None
    return [float(v) for v in value]


def _key_unit(key: str, siblings: dict[str, Any]) -> str | None:
    suffix = _spacing_key(key)[1]
    if suffix:
        return suffix
    for name in (f"{key}_unit", f"{key}_units", "unit", "units", "spacing_units"):
        unit = _unit_of(siblings.get(name))
        if unit:
            return unit
    return None


def find_json_spacing(obj: Any, max_depth: int = 4) -> dict[str, Any] | None:
    """The first voxel-size field in a parsed JSON document (see the module docstring).

    Returns ``{"key": dotted path, "values": [x, y, z], "units": unit or None}``.
    """
    level: list[tuple[str, Any]] = [("", obj)]
    wanted = {name: rank for rank, name in enumerate(JSON_SPACING_KEYS)}
    for _ in range(max_depth + 1):
        found: list[tuple[int, str, dict[str, Any]]] = []
        deeper: list[tuple[str, Any]] = []
        for prefix, node in level:
            if not isinstance(node, dict):
                continue
            keys = sorted(str(k) for k in node)
            ome = [node.get(f"PhysicalSize{axis}") for axis in "XYZ"]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in ome):
                found.append(
                    (
                        len(wanted),
                        f"{prefix}PhysicalSizeX/Y/Z",
                        {
                            "values": [float(v) for v in ome],
                            "units": _unit_of(node.get("PhysicalSizeXUnit")),
                        },
                    )
                )
            for key in keys:
                value = node[key]
                rank = wanted.get(_spacing_key(key)[0])
                xyz = _as_xyz(value, key) if rank is not None else None
                if xyz is not None:
                    found.append(
                        (rank, prefix + key, {"values": xyz, "units": _key_unit(key, node)})
                    )
                if isinstance(value, dict):
                    deeper.append((f"{prefix}{key}.", value))
        if found:
            rank, key, hit = min(found, key=lambda item: (item[0], item[1]))
            return {"key": key, **hit}
        level = deeper
    return None


def _check_json(
    checks: _Checks,
    report: dict[str, Any],
    metadata_path: str | Path | None,
    spacing: list[float] | None,
    rules: dict[str, Any],
) -> None:
    tol = rules["json_spacing_tolerance"]
    units = rules["units"]
    exp = f"the header's spacing within {tol:g} (relative), where the json gives one"
    name = "json_spacing_agrees"
    cap = rules["max_json_bytes"]
    readable = f"a readable UTF-8 JSON document of at most {cap} bytes (max_json_bytes)"
    if metadata_path is None:
        checks.add("json_readable", "metadata", True, "no json given", readable)
        checks.add(name, "metadata", True, "no json given", exp)
        return
    path = Path(metadata_path)
    problem = None
    try:
        # Never more than cap + 1 bytes in memory: the size is checked first, and the
        # read is bounded too (a file that grows after the check, /dev/zero: size 0).
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = b"" if size > cap else handle.read(cap + 1)
        if size > cap:
            problem = f"json of {size} bytes"
        elif len(data) > cap:
            problem = f"json of more than {cap} bytes"
        else:
            doc = json.loads(data.decode("utf-8"))
    except OSError as exc:
        problem = f"cannot read json ({exc.strerror})"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        problem = f"not JSON ({exc})"
    if problem is not None:
        checks.add("json_readable", "metadata", False, problem, readable)
        checks.skip(name, "metadata", "json not readable (see json_readable)", exp)
        return
    checks.add("json_readable", "metadata", True, f"{len(data)} bytes of JSON", readable)
    hit = find_json_spacing(doc)
    if hit is None:
        checks.add(name, "metadata", True, "no spacing in json", exp)
        return
    json_units = hit["units"] or rules["source_units"]
    scale = UNIT_UM[json_units] / UNIT_UM[units]
    values = [v * scale for v in hit["values"]]
    report["json_spacing"] = {
        "key": hit["key"],
        "values": hit["values"],
        "units": json_units,
        "in_report_units": [_r7(v) for v in values],
    }
    if spacing is None:
        checks.skip(name, "metadata", "no valid header spacing", exp)
        return
    rel = max(abs(j - h) / h for j, h in zip(values, spacing, strict=True))
    observed = {"json": [_r7(v) for v in values], "header": [_r7(v) for v in spacing]}
    checks.add(name, "metadata", rel <= tol, observed, exp)
