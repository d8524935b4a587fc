"""Validate one volume pair against a modality-aware schema, check by named check.

One concern per module: :mod:`.profiles` (modality bounds, rules, units), :mod:`.checks`
(the checks, in order), :mod:`.json_spacing` (the per-volume JSON), :mod:`.stats`,
:mod:`.record` (how a check is recorded), :mod:`.policy` (fail or quarantine); headers
and voxels are read by :mod:`minivess_bundle.core.nifti`.

Why: a broken or mislabelled volume must be caught before it is resampled and
bundled, with a message a user can act on. :func:`validate_volume` runs every
check and returns a per-volume report (it raises only for programming errors);
:func:`raise_if_invalid` turns the first failed check into one
:class:`~minivess_bundle.core.errors.ValidationError` line (policy ``on_invalid:
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

from ..core.nifti import MAX_DEFLATE_RATIO, HeaderInfo, read_header, read_voxels, spatial_problem
from .checks import validate_volume
from .json_spacing import JSON_SPACING_KEYS, find_json_spacing
from .policy import (
    CHECK_PHRASES,
    aggregate_reports,
    failure_message,
    raise_if_invalid,
    write_report,
)
from .profiles import (
    MODALITIES,
    RULE_DEFAULTS,
    UNIT_UM,
    effective_rules,
    header_spacing,
    physical_affine,
    units_of_header,
)
from .stats import intensity_stats, label_values

__all__ = [
    "CHECK_PHRASES",
    "JSON_SPACING_KEYS",
    "MAX_DEFLATE_RATIO",
    "MODALITIES",
    "RULE_DEFAULTS",
    "UNIT_UM",
    "HeaderInfo",
    "aggregate_reports",
    "effective_rules",
    "failure_message",
    "find_json_spacing",
    "header_spacing",
    "intensity_stats",
    "label_values",
    "physical_affine",
    "raise_if_invalid",
    "read_header",
    "read_voxels",
    "spatial_problem",
    "units_of_header",
    "validate_volume",
    "write_report",
]
