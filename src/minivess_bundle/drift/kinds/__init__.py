"""The drift kinds, one module per family (TorchIO style), and the registry of their names.

Families: :mod:`.photometric` (intensity, noise, attenuation, bleaching, pmt, stripes,
saturation), :mod:`.optical` (resolution, depth_blur, z_step, motion, covariate),
:mod:`.label` (topology, annotation), :mod:`.composite` (compound, gradual); their
base is :mod:`.core`. :data:`TRANSFORMS` below is the one list of single-volume kinds;
:data:`KINDS` adds the multi-volume ones. Everything else reads these.
"""

from __future__ import annotations

from typing import Any

from ...core.errors import DriftError
from .. import verify
from .composite import CompoundDrift, GradualDrift, build, gradual_severities
from .core import REGISTRY, Drift
from .label import AnnotationDrift, TopologyDrift
from .optical import CovariateDrift, DepthBlurDrift, MotionDrift, ResolutionDrift, ZStepDrift
from .photometric import (
    NOISE_SLAB,
    POISSON_EXACT_BELOW,
    AttenuationDrift,
    BleachingDrift,
    IntensityDrift,
    NoiseDrift,
    PMTDrift,
    SaturationDrift,
    StripeDrift,
    noise_sigma_fraction,
    photon_transfer,
    poisson_counts,
)

#: Every single-volume kind by name (``gradual`` wraps one of them).
TRANSFORMS: dict[str, type[Drift]] = {
    cls.name: cls
    for cls in (
        IntensityDrift,
        NoiseDrift,
        ResolutionDrift,
        TopologyDrift,
        CovariateDrift,
        AttenuationDrift,
        PMTDrift,
        MotionDrift,
        BleachingDrift,
        StripeDrift,
        SaturationDrift,
        DepthBlurDrift,
        ZStepDrift,
        CompoundDrift,
        AnnotationDrift,
    )
}

if set(TRANSFORMS) != set(REGISTRY):  # pragma: no cover - a kind class left out of the list
    raise ImportError(f"drift kinds registered but not listed: {set(REGISTRY) ^ set(TRANSFORMS)}")

#: Set-level kinds: they choose clean volumes (:mod:`.prevalence`), no voxel changes.
SET_KINDS = ("prevalence",)
#: Every drift kind, as the workflow's ``{drift}`` wildcard admits them.
KINDS = (*TRANSFORMS, "gradual", *SET_KINDS)
DRIFT_TYPES = KINDS

__all__ = [
    "DRIFT_TYPES",
    "KINDS",
    "NOISE_SLAB",
    "POISSON_EXACT_BELOW",
    "SET_KINDS",
    "TRANSFORMS",
    "AnnotationDrift",
    "AttenuationDrift",
    "BleachingDrift",
    "CompoundDrift",
    "CovariateDrift",
    "DepthBlurDrift",
    "IntensityDrift",
    "MotionDrift",
    "NoiseDrift",
    "PMTDrift",
    "ResolutionDrift",
    "SaturationDrift",
    "StripeDrift",
    "TopologyDrift",
    "ZStepDrift",
    "Drift",
    "GradualDrift",
    "apply_drift",
    "check_kind",
    "gradual_severities",
    "make_drift",
    "noise_sigma_fraction",
    "photon_transfer",
    "poisson_counts",
    "verification_figures",
]


def check_kind(kind: str, allow_gradual: bool = True) -> str:
    allowed = KINDS if allow_gradual else tuple(TRANSFORMS)
    if kind not in allowed:
        raise DriftError(f"drift type {kind!r} is not known", expected=f"one of {allowed}")
    return kind


def make_drift(kind: str, severity: float, seed: int | None, **params: Any) -> Drift:
    """The transform of a single-volume kind with its explicit parameters."""
    return build(check_kind(kind, allow_gradual=False), severity, seed, **params)


def apply_drift(
    volume: Any,
    drift_type: str,
    severity: float = 0.5,
    seed: int | None = None,
    *,
    return_record: bool = False,
    **params: Any,
) -> Any:
    """Apply one drift to a 3-D numpy array (or torch tensor) and return the result.

    ``severity`` in [0, 1] (0: byte-identical copy); ``seed`` fixes every random draw
    (``None``: fresh entropy, still recorded); the same seed at two severities gives
    nested changes. ``params`` override the kind's defaults; ``spacing`` (um) and
    ``mask`` are passed to the kinds that use them. ``drift_type="gradual"`` returns one
    volume per batch (``base``, ``n_batches`` in ``params``).
    """
    context = {
        k: params.pop(k) for k in ("spacing", "mask", "skeleton", "where", "volume") if k in params
    }
    if check_kind(drift_type) in SET_KINDS:
        raise DriftError(
            f"{drift_type} is a set-level kind (it chooses volumes, it changes none)",
            expected="drift.prevalence.PrevalenceShift(severity, seed)(vessel_fractions)",
        )
    if drift_type == "gradual":
        base = params.pop("base", "intensity")
        n_batches = params.pop("n_batches", 3)
        gradual = GradualDrift(base, n_batches, severity, seed, **params)
        outputs, record = gradual(volume, **context)
        return (outputs, record) if return_record else outputs
    out, record = make_drift(drift_type, severity, seed, **params)(volume, **context)
    return (out, record) if return_record else out


def verification_figures(kind: str, clean, drifted, *, record=None, **context) -> dict[str, Any]:
    """The figures that prove a variant is what it claims (its kind's :meth:`Drift.figures`).

    ``context``: ``mask`` (noise SNR), ``spacing`` (um; covariate), ``clean_skeleton`` and
    ``clean_topology`` (label kinds, reused when given). Floats have 6 significant
    digits; a non-finite figure is ``None``.
    """
    record = record or {"parameters": {}}
    drift = make_drift(check_kind(kind, allow_gradual=False), record.get("severity", 0.5), 0)
    return verify.round_figures(drift.figures(clean, drifted, record, **context))
