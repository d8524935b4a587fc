"""The checks of one volume pair, in the order they run (see the package docstring)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import MinivessError
from ..core.nifti import HeaderInfo, read_header, read_voxels, spatial_problem
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


def _new_report(volume: str, files: dict[str, str | None], rules: dict[str, Any]) -> dict:
    """The report before any check ran: every figure unknown."""
    return {
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
            "report_units": rules["units"],
            "source_units": rules["source_units"],
        },
        "rules": rules,
    }


def _spacing_checks(
    checks: _Checks, infos: dict[str, HeaderInfo | None], rules: dict[str, Any]
) -> dict[str, list[float]]:
    """spacing_positive + spacing_consistent per file; the valid spacings by role.

    Finite and non-zero, pixdim consistent with the affine. A negative pixdim (an
    ANALYZE-style flip) is legitimate only where an sform gives the geometry: without
    one nibabel refuses to build the qform and readers differ."""
    import nibabel as nib
    import numpy as np

    source_units, units, tol = rules["source_units"], rules["units"], rules["affine_tolerance"]
    spacing: dict[str, list[float]] = {}
    exp = "finite spacing > 0 on x, y, z (pixdim and affine); a negative pixdim only with an sform"
    for role, info in infos.items():
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
        if not ok:
            continue
        pix = [abs(v) for v in pix]
        spacing[role] = pix
        rel = float(np.max(np.abs(norms - np.asarray(pix)) / np.asarray(pix)))
        observed = {
            "pixdim": [_r7(v) for v in pix],
            "affine_column_norms": [_r7(v) for v in norms.tolist()],
        }
        expected = f"pixdim equal to the affine's column norms within {tol:g}"
        checks.add("spacing_consistent", role, rel <= tol, observed, expected)
    return spacing


def _bounds_checks(
    checks: _Checks, img: HeaderInfo | None, spacing: list[float] | None, rules: dict[str, Any]
) -> bool:
    """shape_bounds + spacing_bounds of the modality, from the header only; shape ok?"""
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
    exp = f"{slo:g}..{shi:g} {rules['units']} per axis ({rules['modality']})"
    if spacing is not None:
        ok = all(slo <= v <= shi for v in spacing)
        checks.add("spacing_bounds", "image", ok, [_r7(v) for v in spacing], exp)
    else:
        checks.skip("spacing_bounds", "image", "no valid spacing", exp)
    return shape_ok


def _pair_checks(
    checks: _Checks,
    img: HeaderInfo | None,
    lbl: HeaderInfo | None,
    spacing: dict[str, list[float]],
    rules: dict[str, Any],
) -> bool:
    """same_shape + same_affine of image and mask; same shape?"""
    import numpy as np

    exp = "image and mask shapes equal"
    same_shape = img is not None and lbl is not None and img.spatial_shape == lbl.spatial_shape
    if img is None or lbl is None:
        checks.skip("same_shape", "pair", "a file did not open", exp)
    else:
        shapes = {"image": list(img.spatial_shape), "label": list(lbl.spatial_shape)}
        checks.add("same_shape", "pair", same_shape, shapes, exp)
    tol, units = rules["affine_tolerance"], rules["units"]
    exp = f"physical affines equal within {tol:g} x the smallest voxel size"
    if "image" in spacing and "label" in spacing:
        a = physical_affine(img, rules["source_units"], units)
        b = physical_affine(lbl, rules["source_units"], units)
        diff = float(np.max(np.abs(a - b)))
        allowed = tol * min(spacing["image"])
        exp += f" ({allowed:.6g} {units})"
        observed = f"{diff:.6g} {units} (largest element difference)"
        checks.add("same_affine", "pair", diff <= allowed, observed, exp)
    else:
        checks.skip("same_affine", "pair", "no valid affine", exp)
    return same_shape


def _voxel_checks(
    checks: _Checks,
    report: dict[str, Any],
    image: np.ndarray | None,
    label: np.ndarray | None,
    rules: dict[str, Any],
) -> None:
    """label_values, finite and foreground_fraction on the loaded voxels (skipped when the
    data could not be loaded); fills the report's statistics."""
    import numpy as np

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
        finite = image.dtype.kind in "uib"
        bad = 0 if finite else int(image.size - np.count_nonzero(np.isfinite(image)))
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
    rules = effective_rules(rules)
    files = {
        "image": str(image_path),
        "label": str(label_path),
        "metadata": None if metadata_path is None else str(metadata_path),
    }
    checks, report = _Checks(files), _new_report(volume, files, rules)
    # Headers first: nothing is allocated before they pass.
    img = _check_file(checks, "image", Path(image_path), volume)
    lbl = _check_file(checks, "label", Path(label_path), volume)
    _dtype_check(checks, "image_dtype", "image", img, rules["image_dtype"])
    _dtype_check(checks, "label_dtype", "label", lbl, rules["label_dtype"])
    if img is not None:
        header_units, interpreted = units_of_header(
            int(img.header["xyzt_units"]), rules["source_units"]
        )
        report["units"].update(header_units=header_units, interpreted_as=interpreted)
        report["shape"] = list(img.spatial_shape)
        report["dtype"]["image"] = img.dtype.newbyteorder("=").name
    if lbl is not None:
        report["dtype"]["label"] = lbl.dtype.newbyteorder("=").name
    spacing = _spacing_checks(checks, {"image": img, "label": lbl}, rules)
    report["spacing"] = [_r7(v) for v in spacing["image"]] if "image" in spacing else None
    shape_ok = _bounds_checks(checks, img, spacing.get("image"), rules)
    same_shape = _pair_checks(checks, img, lbl, spacing, rules)
    # Voxel data: only when the headers are sane and small enough to load.
    loadable = img is not None and lbl is not None and shape_ok and same_shape
    image = _load(checks, "image", img, volume) if loadable else None
    label = _load(checks, "label", lbl, volume) if loadable and image is not None else None
    _voxel_checks(checks, report, image, label, rules)
    del image, label
    _check_json(checks, report, metadata_path, spacing.get("image"), rules)
    report["checks"] = checks.items
    report["failed_checks"] = [c["name"] for c in checks.items if c["passed"] is False]
    report["valid"] = not report["failed_checks"]
    if not report["valid"]:
        log.warning("%s: invalid: %s", volume, ", ".join(report["failed_checks"]))
    return report
