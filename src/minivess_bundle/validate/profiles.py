"""Modality profiles (bounds, dtypes, units) and the rules a validation runs with."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.nifti import HeaderInfo

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
