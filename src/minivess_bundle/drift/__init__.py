"""Drift variants: controlled, verified distribution shifts with a ground-truth manifest.

Why: a drift detector (Evidently, alibi-detect, an embedding monitor) can only be
scored against data whose drift is known. Each variant is a corrupted copy of a clean
volume made by one small transform with explicit, recorded parameters, and its
manifest entry carries the figures that prove the corruption is what it claims.

Modules: :mod:`.kinds` (the transforms, each owning its parameters and figures),
:mod:`.verify` (the figures), :mod:`.plan` (which jobs exist), :mod:`.variant` (one
variant on disk, a whole dataset), :mod:`.prevalence` (the set-level kind: which clean
volumes, no voxel changes), :mod:`.manifest` (schema, summary). Nothing here
imports torch; numpy, scipy and nibabel are imported inside the functions.
"""

from .base import (
    EXPECTED_SIGNALS,
    LEVELS,
    check_severity,
    derive_seed,
    severity_for_level,
)
from .datasets import variant_dataset_json
from .driver import generate_drifted_dataset
from .kinds import (
    DRIFT_TYPES,
    KINDS,
    NOISE_SLAB,
    SET_KINDS,
    TRANSFORMS,
    AnnotationDrift,
    AttenuationDrift,
    BleachingDrift,
    CompoundDrift,
    CovariateDrift,
    DepthBlurDrift,
    Drift,
    GradualDrift,
    IntensityDrift,
    MotionDrift,
    NoiseDrift,
    PMTDrift,
    ResolutionDrift,
    SaturationDrift,
    StripeDrift,
    TopologyDrift,
    ZStepDrift,
    apply_drift,
    gradual_severities,
    make_drift,
    noise_sigma_fraction,
    verification_figures,
)
from .manifest import (
    MANIFEST_VERSION,
    DriftManifest,
    manifest_schema,
    merge_manifest_entries,
    summarise,
    validate_manifest,
)
from .plan import (
    DriftGroup,
    DriftJob,
    drift_volumes,
    plan_groups,
    plan_jobs,
    plan_sets,
    reference_volumes,
)
from .prevalence import PrevalenceShift
from .variant import (
    Compression,
    VariantFiles,
    VariantSpec,
    generate_drift_levels,
    generate_drift_variant,
    variant_id,
)

__all__ = [
    "DRIFT_TYPES",
    "EXPECTED_SIGNALS",
    "KINDS",
    "LEVELS",
    "MANIFEST_VERSION",
    "NOISE_SLAB",
    "SET_KINDS",
    "TRANSFORMS",
    "AnnotationDrift",
    "AttenuationDrift",
    "BleachingDrift",
    "CompoundDrift",
    "Compression",
    "CovariateDrift",
    "DepthBlurDrift",
    "Drift",
    "DriftGroup",
    "DriftJob",
    "DriftManifest",
    "GradualDrift",
    "IntensityDrift",
    "MotionDrift",
    "NoiseDrift",
    "PMTDrift",
    "PrevalenceShift",
    "ResolutionDrift",
    "SaturationDrift",
    "StripeDrift",
    "TopologyDrift",
    "VariantFiles",
    "VariantSpec",
    "ZStepDrift",
    "apply_drift",
    "check_severity",
    "derive_seed",
    "drift_volumes",
    "generate_drift_levels",
    "generate_drift_variant",
    "generate_drifted_dataset",
    "gradual_severities",
    "make_drift",
    "manifest_schema",
    "merge_manifest_entries",
    "noise_sigma_fraction",
    "plan_groups",
    "plan_jobs",
    "plan_sets",
    "reference_volumes",
    "severity_for_level",
    "summarise",
    "validate_manifest",
    "variant_dataset_json",
    "variant_id",
    "verification_figures",
]
