"""Validate one volume pair against a modality-aware schema, check by named check.

Why: a broken or mislabelled volume must be caught before it is resampled and
bundled, with a message a user can act on. :func:`validate_volume` runs every
check and returns a per-volume report (it raises only for programming errors);
:func:`raise_if_invalid` turns the first failed check into one
:class:`~minivess_bundle.errors.ValidationError` line (policy ``on_invalid:
fail``); :func:`aggregate_reports` merges per-volume reports into
``validation_report.json`` with the quarantined volumes and their reasons
(policy ``on_invalid: quarantine``).

Checks, in the order they run (a check whose input could not be read is
reported with ``passed: None``, "skipped"; the volume is then already invalid):

============================  ==========================================================
``opens``                     gzip stream intact, NIfTI-1 single-file header sane; the
                              header's size is checked against the file size *before*
                              any data is allocated (one per file: ``file`` = image/label)
``is_3d``                     3 spatial dims; trailing singleton dims tolerated; 4-D/5-D
                              and CIFTI intents rejected (one per file)
``image_dtype``               stored dtype, no scl_slope/inter scaling (default uint16;
                              slope 0/NaN/Inf is "unset", 1/0 the identity: both pass)
``label_dtype``               default uint8 (same scaling rule)
``spacing_positive``          pixdim and affine columns finite and non-zero (one per file);
                              a negative pixdim only with an sform (``sform_code`` > 0)
                              to give the direction, as readers differ without one
``spacing_consistent``        abs(pixdim) agrees with the affine's column norms (readers
                              disagree otherwise: nibabel zooms vs MONAI/ITK affine);
                              flipped axes (negative columns, qfac -1) are fine
``shape_bounds``              every axis and the voxel count within the modality's bounds
``spacing_bounds``            spacing (in the modality's units) within its bounds
``same_shape``                image and mask shapes equal
``same_affine``               physical affines equal to ``affine_tolerance`` x the
                              smallest voxel size (header units converted first)
``label_values``              mask values a subset of {0, 1}
``finite``                    no NaN/Inf in the image (float images only can fail)
``foreground_fraction``       mask foreground share within ``foreground_fraction``
``json_readable``             the per-volume JSON can be read: at most ``max_json_bytes``,
                              UTF-8, parses as JSON (its own check, so an unparsable
                              file is never reported as a spacing disagreement)
``json_spacing_agrees``       the per-volume JSON's spacing, where it gives one, equals
                              the header's to ``json_spacing_tolerance`` (relative)
============================  ==========================================================

Units: NIfTI ``xyzt_units`` says metre/mm/micron or 0 (unknown). MiniVess
writes micrometre numbers with 0, so ``rules["source_units"]`` says how to read
unknown units; known units are converted. All spacings in the report are in the
modality's units (um for microscopy, mm for MRI) and ``report["units"]`` states
the decision, e.g. ``{"header_units": "unknown", "interpreted_as": "um", ...}``.

JSON spacing, parsed tolerantly (the release's field names are undocumented):
the first key found, breadth-first in sorted key order down to 4 levels of
nesting, whose name lower-cased with non-alphanumerics dropped is one of
:data:`JSON_SPACING_KEYS` (voxelsize, voxelspacing, spacing, pixdim,
resolution, pixelsize, zooms), optionally followed by a unit (um/mm/nm), e.g.
``voxel_size_um``, ``Spacing``, ``spacing_mm``. Its value may be a list of 3
numbers (x, y, z), of 4 (x, y, z, t: first three), a NIfTI ``pixdim`` list of 8
(items 1..3), or a mapping with x/y/z keys. Units come from the key's suffix,
else from a sibling ``<key>_unit(s)``/``unit(s)``/``spacing_units`` string,
else ``source_units``. OME-style ``PhysicalSizeX/Y/Z`` (+ ``PhysicalSizeXUnit``)
is accepted too. A JSON without any of these passes ("no spacing in json"); a
file that is missing, over ``max_json_bytes`` (1 MB) or not JSON fails; no more
than ``max_json_bytes + 1`` bytes are ever read (a growing file or ``/dev/zero``
included).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, MinivessError, ValidationError
from .nifti import (  # noqa: F401  (read_header, MAX_DEFLATE_RATIO: part of this module's API)
    MAX_DEFLATE_RATIO,
    HeaderInfo,
    read_header,
    read_voxels,
    spatial_problem,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)

#: Modality profiles: units of the bounds, bounds, default dtypes and foreground band.
MODALITIES: dict[str, dict[str, Any]] = {
    "microscopy": {
        "units": "um",
        "spacing_bounds": [0.05, 20.0],
        "shape_bounds": [4, 4096],
        "max_voxels": 1 << 30,
        "image_dtype": "uint16",
        "label_dtype": "uint8",
        "foreground_fraction": [0.001, 0.5],
    },
    "mri": {
        "units": "mm",
        "spacing_bounds": [0.1, 10.0],
        "shape_bounds": [4, 2048],
        "max_voxels": 1 << 28,
        "image_dtype": ["int16", "uint16", "float32"],
        "label_dtype": "uint8",
        "foreground_fraction": [0.0001, 0.9],
    },
}
#: Rule keys (beyond a profile's) and their defaults.
RULE_DEFAULTS: dict[str, Any] = {
    "modality": "microscopy",
    "source_units": None,  # None: the modality's units
    "affine_tolerance": 1e-4,
    "json_spacing_tolerance": 0.02,
    "max_json_bytes": 1_000_000,
}
#: Length units NIfTI ``xyzt_units`` can name, in micrometres.
UNIT_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "nm": 1e-3}
_XYZT_SPATIAL = {0: "unknown", 1: "m", 2: "mm", 3: "um"}
_UNIT_ALIASES = {
    "m": "m", "meter": "m", "metre": "m", "meters": "m", "metres": "m",
    "mm": "mm", "millimeter": "mm", "millimetre": "mm", "millimeters": "mm",
    "um": "um", "µm": "um", "μm": "um", "micron": "um", "microns": "um", "micrometer": "um",
    "micrometre": "um", "micrometers": "um", "micrometres": "um",
    "nm": "nm", "nanometer": "nm", "nanometre": "nm", "nanometers": "nm",
}  # fmt: skip
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
_LABEL_VALUE_LIMIT = 20

#: Human phrase per check, for the one-line error of :func:`raise_if_invalid`.
CHECK_PHRASES = {
    "opens": "cannot open",
    "is_3d": "not a 3-D volume:",
    "image_dtype": "image dtype",
    "label_dtype": "mask dtype",
    "spacing_positive": "spacing",
    "spacing_consistent": "pixdim vs affine spacing",
    "shape_bounds": "shape",
    "spacing_bounds": "spacing",
    "same_shape": "image/mask shapes",
    "same_affine": "image/mask affines differ by",
    "label_values": "mask values",
    "finite": "non-finite image values:",
    "foreground_fraction": "foreground fraction",
    "json_readable": "unreadable json:",
    "json_spacing_agrees": "json spacing",
}


# --------------------------------------------------------------------------- rules


def effective_rules(rules: dict[str, Any] | None = None) -> dict[str, Any]:
    """The modality profile's defaults overlaid with ``rules``; unknown keys are refused."""
    rules = dict(rules or {})
    modality = rules.get("modality", RULE_DEFAULTS["modality"])
    if modality not in MODALITIES:
        raise ConfigError(
            f"validate.modality {modality!r} is not known", expected=f"one of {sorted(MODALITIES)}"
        )
    merged = {**RULE_DEFAULTS, **MODALITIES[modality], **rules}
    unknown = sorted(set(rules) - set(RULE_DEFAULTS) - set(MODALITIES[modality]))
    if unknown:
        raise ConfigError(
            f"unknown validation rule(s) {unknown}",
            expected=f"keys among {sorted(set(RULE_DEFAULTS) | set(MODALITIES[modality]))}",
        )
    if merged["source_units"] is None:
        merged["source_units"] = merged["units"]
    for key in ("source_units", "units"):
        if merged[key] not in UNIT_UM:
            raise ConfigError(
                f"validate.{key} {merged[key]!r} is not a length unit",
                expected=f"one of {sorted(UNIT_UM)}",
            )
    for key in ("image_dtype", "label_dtype"):
        value = merged[key]
        merged[key] = [value] if isinstance(value, str) else list(value)
    return merged


def units_of_header(xyzt_units: int, source_units: str) -> tuple[str, str]:
    """``(header_units, interpreted_as)`` for a header's ``xyzt_units`` field."""
    header_units = _XYZT_SPATIAL.get(int(xyzt_units) & 7, "unknown")
    return header_units, source_units if header_units == "unknown" else header_units


# ------------------------------------------------------------------- guarded reads


def physical_affine(info: HeaderInfo, source_units: str, report_units: str) -> np.ndarray:
    """The header's best affine (sform, else qform, else pixdim) in ``report_units``.

    Raises nibabel's ``HeaderDataError`` for a qform it cannot build (negative
    pixdim without an sform); :func:`validate_volume` reports that as a failed check.
    """
    import numpy as np

    _, interpreted = units_of_header(int(info.header["xyzt_units"]), source_units)
    affine = np.array(info.header.get_best_affine(), dtype=float)
    scale = UNIT_UM[interpreted] / UNIT_UM[report_units]
    affine[:3, :] *= scale
    return affine


def header_spacing(info: HeaderInfo, source_units: str, report_units: str) -> list[float]:
    """pixdim[1..3] in ``report_units``, signs kept (see ``spacing_positive``)."""
    _, interpreted = units_of_header(int(info.header["xyzt_units"]), source_units)
    scale = UNIT_UM[interpreted] / UNIT_UM[report_units]
    return [float(v) * scale for v in info.header["pixdim"][1:4]]


# ---------------------------------------------------------------------- json spacing


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


# --------------------------------------------------------------------- statistics


def _percentiles_from_hist(hist: np.ndarray, values: np.ndarray, qs: tuple[float, ...]) -> list:
    import numpy as np

    cum = np.cumsum(hist)
    total = int(cum[-1])
    out = []
    for q in qs:
        target = q / 100.0 * total
        index = int(np.searchsorted(cum, target, side="left")) if target > 0 else 0
        if target <= 0:
            index = int(np.flatnonzero(hist)[0])
        out.append(values[min(index, len(values) - 1)].item())
    return out


def intensity_stats(image: np.ndarray) -> dict[str, float | int | None]:
    """min, max, mean and p1/p50/p99 of the finite voxels.

    Percentiles are the ``inverted_cdf`` kind (the smallest stored value with at
    least q % of voxels at or below it), computed exactly from a histogram for
    8/16-bit integers (no copy of the volume) and with ``np.percentile`` otherwise.
    """
    import numpy as np

    from .metrics import small_int_histogram

    qs = (1.0, 50.0, 99.0)
    histogram = small_int_histogram(image)
    if histogram is not None:
        offset, hist = histogram
        values = np.arange(hist.size, dtype=np.int64) + offset
        nonzero = np.flatnonzero(hist)
        p1, p50, p99 = _percentiles_from_hist(hist, values, qs)
        mean = float((hist * values).sum() / image.size)
        lo, hi = int(values[nonzero[0]]), int(values[nonzero[-1]])
        return {"min": lo, "max": hi, "mean": round(mean, 6), "p1": p1, "p50": p50, "p99": p99}
    flat = image.reshape(-1)
    finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if finite.size == 0:
        return {"min": None, "max": None, "mean": None, "p1": None, "p50": None, "p99": None}
    p1, p50, p99 = (float(v) for v in np.percentile(finite, qs, method="inverted_cdf"))
    return {
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": round(float(finite.mean(dtype=np.float64)), 6),
        "p1": p1,
        "p50": p50,
        "p99": p99,
    }


def label_values(label: np.ndarray) -> list:
    """Sorted distinct values of a mask (exact, histogram-based for uint8)."""
    import numpy as np

    flat = label.reshape(-1)
    if flat.dtype == np.uint8:
        return [int(v) for v in np.flatnonzero(np.bincount(flat, minlength=256))]
    return [v.item() for v in np.unique(flat)]


# -------------------------------------------------------------------- the checks


def _r7(value: float) -> float:
    """A float to 7 significant digits: header fields are float32 (4.97, not 4.9699998)."""
    return float(f"{value:.7g}")


def _fmt(values: Any) -> str:
    if isinstance(values, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.6g}"
    return str(values)


def _set(values: list) -> str:
    shown = values[:_LABEL_VALUE_LIMIT]
    more = f", ... ({len(values)} values)" if len(values) > len(shown) else ""
    return "{" + ", ".join(_fmt(v) for v in shown) + more + "}"


class _Checks:
    def __init__(self, files: dict[str, str | None]) -> None:
        self.files = files
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, file: str, passed: bool | None, observed: Any, expected: str) -> bool:
        self.items.append(
            {
                "name": name,
                "file": file,
                # image/mask comparisons name the mask's file
                "path": self.files.get("label" if file == "pair" else file),
                "passed": passed,
                "observed": observed,
                "expected": expected,
            }
        )
        return bool(passed)

    def skip(self, name: str, file: str, why: str, expected: str) -> None:
        self.add(name, file, None, f"skipped: {why}", expected)


def _check_file(checks: _Checks, role: str, path: Path, volume: str) -> HeaderInfo | None:
    """opens + is_3d for one file; the header when both pass."""
    try:
        info = read_header(path, volume)
    except MinivessError as exc:
        # Keep the reader's own expectation (e.g. "a header that matches the file").
        expected = "a readable NIfTI-1 .nii/.nii.gz file"
        checks.add(
            "opens",
            role,
            False,
            exc.check,
            f"{expected}: {exc.expected}" if exc.expected else expected,
        )
        checks.skip("is_3d", role, "file did not open", "3 spatial dims")
        return None
    checks.add("opens", role, True, "header ok", "a readable NIfTI-1 .nii/.nii.gz file")
    problem = spatial_problem(info)
    expected = "3 spatial dims (trailing singleton dims allowed), not CIFTI"
    if problem:
        checks.add("is_3d", role, False, problem, expected)
        return None
    checks.add("is_3d", role, True, list(info.shape), expected)
    return info


def _load(checks: _Checks, role: str, info: HeaderInfo, volume: str) -> np.ndarray | None:
    try:
        return read_voxels(info, volume)
    except MinivessError as exc:
        # The header was fine but the data stream is not: that is "opens" failing.
        for item in checks.items:
            if item["name"] == "opens" and item["file"] == role:
                item.update(passed=False, observed=exc.check)
                if exc.expected:
                    item["expected"] += f": {exc.expected}"
        return None


def _dtype_check(
    checks: _Checks, name: str, role: str, info: HeaderInfo | None, allowed: list[str]
) -> None:
    expected = " or ".join(allowed) + " without scl_slope/scl_inter scaling"
    if info is None:
        checks.skip(name, role, "file did not open", expected)
        return
    dtype = info.dtype.newbyteorder("=").name
    slope, inter = float(info.header["scl_slope"]), float(info.header["scl_inter"])
    # NIfTI: slope 0 or NaN means "no scaling" (nibabel and nifti1_io treat Inf alike);
    # otherwise readers apply slope/inter, so only exactly 1/0 is the identity (an
    # inter of NaN with slope 1 makes nibabel refuse the file).
    unset = not math.isfinite(slope) or slope == 0.0
    scaled = not unset and (slope != 1.0 or inter != 0.0)
    observed = dtype + (f" scaled by {slope:g}/{inter:g}" if scaled else "")
    checks.add(name, role, dtype in allowed and not scaled, observed, expected)


def validate_volume(
    volume: str,
    image_path: str | Path,
    label_path: str | Path,
    metadata_path: str | Path | None = None,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every check on one image/mask pair (and its JSON) and return the report.

    Never raises for a bad input: each problem is a failed check. The report::

        {"volume", "valid", "failed_checks": [names], "modality",
         "files": {"image", "label", "metadata"},       # paths as given
         "units": {"header_units", "interpreted_as", "report_units", "source_units"},
         "shape": [x, y, z] | None, "spacing": [x, y, z] | None,   # report units
         "dtype": {"image", "label"}, "intensity": {min, max, mean, p1, p50, p99} | None,
         "foreground_fraction": float | None, "label_values": [...] | None,
         "json_spacing": {"key", "values", "units"} | None,
         "checks": [{"name", "file", "path", "passed", "observed", "expected"}, ...],
         "rules": {effective rules}}
    """
    import nibabel as nib
    import numpy as np

    rules = effective_rules(rules)
    units = rules["units"]
    source_units = rules["source_units"]
    files = {
        "image": str(image_path),
        "label": str(label_path),
        "metadata": None if metadata_path is None else str(metadata_path),
    }
    checks = _Checks(files)
    report: dict[str, Any] = {
        "volume": volume,
        "modality": rules["modality"],
        "files": files,
        "shape": None,
        "spacing": None,
        "dtype": {"image": None, "label": None},
        "intensity": None,
        "foreground_fraction": None,
        "label_values": None,
        "json_spacing": None,
        "units": {
            "header_units": None,
            "interpreted_as": None,
            "report_units": units,
            "source_units": source_units,
        },
        "rules": rules,
    }

    img = _check_file(checks, "image", Path(image_path), volume)
    lbl = _check_file(checks, "label", Path(label_path), volume)
    _dtype_check(checks, "image_dtype", "image", img, rules["image_dtype"])
    _dtype_check(checks, "label_dtype", "label", lbl, rules["label_dtype"])
    if img is not None:
        header_units, interpreted = units_of_header(int(img.header["xyzt_units"]), source_units)
        report["units"].update(header_units=header_units, interpreted_as=interpreted)
        report["shape"] = list(img.spatial_shape)
        report["dtype"]["image"] = img.dtype.newbyteorder("=").name
    if lbl is not None:
        report["dtype"]["label"] = lbl.dtype.newbyteorder("=").name

    # Spacing: finite and non-zero, pixdim consistent with the affine. A negative
    # pixdim (an ANALYZE-style flip) is legitimate only where an sform gives the
    # geometry: without one nibabel refuses to build the qform and readers differ.
    spacing: dict[str, list[float]] = {}
    for role, info in (("image", img), ("label", lbl)):
        exp = (
            "finite spacing > 0 on x, y, z (pixdim and affine); "
            "a negative pixdim only with an sform"
        )
        if info is None:
            checks.skip("spacing_positive", role, "file did not open", exp)
            continue
        pix = header_spacing(info, source_units, units)
        try:
            norms = np.linalg.norm(physical_affine(info, source_units, units)[:3, :3], axis=0)
        except nib.spatialimages.HeaderDataError:
            norms = np.full(3, np.nan)
        flip_ok = int(info.header["sform_code"]) > 0 or all(v > 0 for v in pix)
        ok = flip_ok and all(math.isfinite(v) and v != 0 for v in pix)
        ok = ok and all(math.isfinite(v) and v > 0 for v in norms.tolist())
        checks.add("spacing_positive", role, ok, [_r7(v) for v in pix], exp)
        if ok:
            pix = [abs(v) for v in pix]
            spacing[role] = pix
            rel = float(np.max(np.abs(norms - np.asarray(pix)) / np.asarray(pix)))
            checks.add(
                "spacing_consistent",
                role,
                rel <= rules["affine_tolerance"],
                {
                    "pixdim": [_r7(v) for v in pix],
                    "affine_column_norms": [_r7(v) for v in norms.tolist()],
                },
                f"pixdim equal to the affine's column norms within {rules['affine_tolerance']:g}",
            )
    report["spacing"] = [_r7(v) for v in spacing["image"]] if "image" in spacing else None

    # Bounds of the modality, from the header only (before loading any data).
    lo, hi = rules["shape_bounds"]
    exp = f"{lo}..{hi} voxels per axis and at most {rules['max_voxels']} voxels"
    shape_ok = True
    if img is None:
        checks.skip("shape_bounds", "image", "file did not open", exp)
    else:
        shape = img.spatial_shape
        shape_ok = all(lo <= d <= hi for d in shape) and math.prod(shape) <= rules["max_voxels"]
        checks.add("shape_bounds", "image", shape_ok, list(shape), exp)
    slo, shi = rules["spacing_bounds"]
    exp = f"{slo:g}..{shi:g} {units} per axis ({rules['modality']})"
    if "image" in spacing:
        ok = all(slo <= v <= shi for v in spacing["image"])
        checks.add("spacing_bounds", "image", ok, [_r7(v) for v in spacing["image"]], exp)
    else:
        checks.skip("spacing_bounds", "image", "no valid spacing", exp)

    exp = "image and mask shapes equal"
    if img is None or lbl is None:
        checks.skip("same_shape", "pair", "a file did not open", exp)
        same_shape = False
    else:
        same_shape = img.spatial_shape == lbl.spatial_shape
        checks.add(
            "same_shape",
            "pair",
            same_shape,
            {"image": list(img.spatial_shape), "label": list(lbl.spatial_shape)},
            exp,
        )
    tol = rules["affine_tolerance"]
    exp = f"physical affines equal within {tol:g} x the smallest voxel size"
    if "image" in spacing and "label" in spacing:
        a = physical_affine(img, source_units, units)
        b = physical_affine(lbl, source_units, units)
        diff = float(np.max(np.abs(a - b)))
        allowed = tol * min(spacing["image"])
        exp += f" ({allowed:.6g} {units})"
        observed = f"{diff:.6g} {units} (largest element difference)"
        checks.add("same_affine", "pair", diff <= allowed, observed, exp)
    else:
        checks.skip("same_affine", "pair", "no valid affine", exp)

    # Voxel data: only when the headers are sane and small enough to load.
    loadable = img is not None and lbl is not None and shape_ok and same_shape
    image = _load(checks, "image", img, volume) if loadable else None
    label = _load(checks, "label", lbl, volume) if loadable and image is not None else None
    why = "voxel data not loaded (see the failed checks above)"

    exp = "a subset of {0, 1}"
    if label is not None:
        values = label_values(label)
        report["label_values"] = values[:_LABEL_VALUE_LIMIT]
        checks.add("label_values", "label", set(values) <= {0, 1}, values[:_LABEL_VALUE_LIMIT], exp)
    else:
        checks.skip("label_values", "label", why, exp)
    exp = "no NaN or Inf voxels"
    if image is not None:
        report["intensity"] = intensity_stats(image)
        bad = (
            0
            if image.dtype.kind in "uib"
            else int(image.size - np.count_nonzero(np.isfinite(image)))
        )
        checks.add("finite", "image", bad == 0, f"{bad} voxels", exp)
    else:
        checks.skip("finite", "image", why, exp)
    flo, fhi = rules["foreground_fraction"]
    exp = f"{flo:g}..{fhi:g}"
    if label is not None:
        fraction = float(np.count_nonzero(label)) / label.size
        report["foreground_fraction"] = round(fraction, 8)
        checks.add("foreground_fraction", "label", flo <= fraction <= fhi, round(fraction, 8), exp)
    else:
        checks.skip("foreground_fraction", "label", why, exp)
    del image, label

    _check_json(checks, report, metadata_path, spacing.get("image"), rules)
    report["checks"] = checks.items
    report["failed_checks"] = [c["name"] for c in checks.items if c["passed"] is False]
    report["valid"] = not report["failed_checks"]
    if not report["valid"]:
        log.warning("%s: invalid: %s", volume, ", ".join(report["failed_checks"]))
    return report


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


# ------------------------------------------------------------------------ policy


def failure_message(report: dict[str, Any], check: dict[str, Any]) -> str:
    """The one-line text of a failed check (without the volume/stage prefix)."""
    observed = check["observed"]
    if check["name"] == "label_values" and isinstance(observed, list):
        text = _set(observed)
    elif isinstance(observed, dict):
        text = ", ".join(f"{k} {_fmt(v)}" for k, v in observed.items())
    else:
        text = _fmt(observed)
    phrase = CHECK_PHRASES.get(check["name"], check["name"])
    return f"{check['name']}: {phrase} {text}"


def raise_if_invalid(report: dict[str, Any]) -> None:
    """Raise :class:`ValidationError` for the first failed check (``on_invalid: fail``)."""
    for check in report["checks"]:
        if check["passed"] is False:
            raise ValidationError(
                failure_message(report, check),
                volume=report["volume"],
                path=check["path"],
                expected=check["expected"],
            )


def aggregate_reports(
    report_paths: list[str | Path], on_invalid: str = "quarantine"
) -> dict[str, Any]:
    """Merge per-volume reports into ``validation_report.json``'s content.

    ``{"policy", "volumes": {id: report}, "valid": [ids], "quarantined": [{"volume",
    "reasons": [one line per failed check]}], "summary": {"total", "valid", "invalid",
    "failed_checks": {name: count}, "shape_min", "shape_max", "spacing_min",
    "spacing_max", "foreground_fraction_min", "foreground_fraction_max"}}`` —
    ranges over the valid volumes. With ``on_invalid="fail"`` an invalid volume
    raises (as :func:`raise_if_invalid`) instead of being quarantined.
    """
    if on_invalid not in ("fail", "quarantine"):
        raise ConfigError(
            f"on_invalid {on_invalid!r} is not allowed", expected='"fail" or "quarantine"'
        )
    volumes: dict[str, dict[str, Any]] = {}
    for path in report_paths:
        try:
            report = json.loads(Path(path).read_text())
            vol = report["volume"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"unreadable validation report ({exc})", path=path) from exc
        if vol in volumes:
            raise ValidationError(f"two reports for {vol}", volume=vol, path=path)
        volumes[vol] = report
    quarantined = []
    failed: dict[str, int] = {}
    for vol in sorted(volumes):
        report = volumes[vol]
        if report["valid"]:
            continue
        if on_invalid == "fail":
            raise_if_invalid(report)
        reasons = [
            f"{failure_message(report, c)} — expected {c['expected']}"
            for c in report["checks"]
            if c["passed"] is False
        ]
        for name in report["failed_checks"]:
            failed[name] = failed.get(name, 0) + 1
        quarantined.append({"volume": vol, "reasons": reasons})
    valid = [vol for vol in sorted(volumes) if volumes[vol]["valid"]]

    def _range(key: str, fn):
        values = [volumes[v][key] for v in valid if volumes[v][key] is not None]
        if not values:
            return None
        if isinstance(values[0], list):
            return [fn(column) for column in zip(*values, strict=True)]
        return fn(values)

    summary = {
        "total": len(volumes),
        "valid": len(valid),
        "invalid": len(quarantined),
        "failed_checks": dict(sorted(failed.items())),
        "shape_min": _range("shape", min),
        "shape_max": _range("shape", max),
        "spacing_min": _range("spacing", min),
        "spacing_max": _range("spacing", max),
        "foreground_fraction_min": _range("foreground_fraction", min),
        "foreground_fraction_max": _range("foreground_fraction", max),
    }
    return {
        "policy": on_invalid,
        "volumes": {vol: volumes[vol] for vol in sorted(volumes)},
        "valid": valid,
        "quarantined": quarantined,
        "summary": summary,
    }


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write a (per-volume or aggregate) report as canonical JSON, atomically."""
    from .fsio import write_json_atomic

    return write_json_atomic(path, report)


__all__ = [
    "MODALITIES",
    "aggregate_reports",
    "effective_rules",
    "raise_if_invalid",
    "read_header",
    "validate_volume",
    "write_report",
]
