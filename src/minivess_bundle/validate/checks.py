"""The checks of one volume pair, in the order they run (see the package docstring)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MinivessError
from ..nifti import HeaderInfo, read_header, read_voxels, spatial_problem
from .json_spacing import _check_json
from .profiles import effective_rules, header_spacing, physical_affine, units_of_header
from .record import _LABEL_VALUE_LIMIT, _Checks, _r7
from .stats import intensity_stats, label_values

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)


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
