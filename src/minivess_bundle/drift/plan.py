"""The drift plan: which volumes are drifted, which stay clean, every (volume, kind, level).

The one owner of the plan: ``workflow/rules/common.smk``, :func:`generate_drifted_dataset`
and the bench call these functions. ``drift_config`` is the config's ``drift:`` block;
missing keys take the schema's defaults (:data:`DEFAULTS`, read from the config schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..core.config import default
from .kinds import KINDS, SET_KINDS


def _defaults() -> dict:
    """The config schema's defaults of the ``drift:`` block (``types: all``: every kind)."""
    return default("drift")


def __getattr__(name: str):
    """``DEFAULTS``: the schema's defaults of the ``drift:`` block, read when first asked
    for (a drift job that never needs them never parses the schema)."""
    if name == "DEFAULTS":
        return _defaults()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Kinds whose variants of one volume are made by one job writing every configured
#: level (decoding the clean pair once): all but the set kinds (chosen per level) and
#: gradual (whose level is each volume's batch: one variant per volume).
LEVELLED_KINDS = tuple(kind for kind in KINDS if kind not in SET_KINDS and kind != "gradual")


#: The held-out volumes of ``volumes: auto``: three, spread over the release, so every
#: kind at levels 1, 3, 5 fits the quick start's budget (README, "Drift variants").
AUTO_VOLUMES = ("mv05", "mv35", "mv65")


#: The fewest vessel voxels saturation ranks: its levels clip the brightest 5 .. 25 % of
#: them, and the ceilings of the levels must be different voxels' values.
SATURATION_MIN_VESSEL_VOXELS = 50
#: The fewest vessel voxels topology cuts: level 5 makes at least 5 cuts, each a ball about
#: one vessel wide (~30 voxels at radius 1); a smaller tree is cut away before level 5.
TOPOLOGY_MIN_VESSEL_VOXELS = 200
#: The least change (counts) intensity's lowest configured level must make at the bright
#: end of the dynamic range: below it the integer file cannot hold the gain change.
INTENSITY_MIN_COUNTS = 2.0


@dataclass(frozen=True)
class VolumeFacts:
    """What the plan knows of a drift volume before it is drifted: the shape of its
    processed (resampled) image and its vessel voxels (estimated from the validation
    report: foreground fraction times voxels)."""

    shape: tuple[int, int, int]
    vessel_voxels: int
    #: The image's p1..p99 span in counts (``None``: not known).
    dynamic_range: float | None = None


def volume_facts(report: Mapping, target_spacing_um) -> VolumeFacts | None:
    """:class:`VolumeFacts` of one volume from its validation report entry (``shape``,
    ``spacing`` in ``units.report_units``, ``foreground_fraction``) and the resample
    target (``"native"`` or three um); ``None`` when the report lacks them."""
    import math

    from ..resample.grid import output_grid
    from ..validate.profiles import UNIT_UM

    shape, spacing = report.get("shape"), report.get("spacing")
    fraction = report.get("foreground_fraction")
    units = (report.get("units") or {}).get("report_units", "um")
    if not shape or not spacing or fraction is None or units not in UNIT_UM:
        return None
    spacing_um = [abs(float(v)) * UNIT_UM[units] for v in spacing]
    grid = output_grid([int(n) for n in shape], spacing_um, target_spacing_um)
    out = tuple(int(n) for n in grid["shape"])
    intensity = report.get("intensity") or {}
    span = None
    if intensity.get("p1") is not None and intensity.get("p99") is not None:
        span = float(intensity["p99"]) - float(intensity["p1"])
    return VolumeFacts(out, int(math.floor(float(fraction) * math.prod(out) + 0.5)), span)


def skip_reason(kind: str, facts: VolumeFacts | None, drift_config: Mapping) -> str | None:
    """Why ``kind`` cannot act on a volume with ``facts`` at the configured levels, or
    ``None``. Only where a kind truly cannot act: z_step needs two acquired sections at
    its highest level (``k + 1`` slices), topology :data:`TOPOLOGY_MIN_VESSEL_VOXELS`
    vessel voxels (a vessel tree to cut at each level), saturation
    :data:`SATURATION_MIN_VESSEL_VOXELS` vessel voxels, intensity a dynamic range in
    which its lowest level moves the bright end by :data:`INTENSITY_MIN_COUNTS`;
    compound and gradual inherit their components'."""
    from .base import severity_for_level
    from .kinds.optical import z_step_sections
    from .kinds.photometric import IntensityDrift

    if facts is None:
        return None
    config = with_defaults(drift_config)
    if kind == "compound":
        parts = config["compound"]["kinds"]
    elif kind == "gradual":
        parts = [config["gradual"]["base"]]
    else:
        parts = [kind]
    levels = [int(level) for level in config["levels"]]
    for part in parts:
        if part == "z_step" and levels:
            top = max(levels)
            k = z_step_sections(severity_for_level(top))
            if facts.shape[2] < k + 1:
                return (
                    f"z_step level {top} acquires every {k}th slice: needs at least {k + 1} "
                    f"slices for two sections; the processed volume has {facts.shape[2]}"
                )
        if part == "intensity" and facts.dynamic_range is not None and levels:
            low = min(levels)
            gain = IntensityDrift.SCALE.at(severity_for_level(low))
            moved = facts.dynamic_range * gain * (1.0 + 1.0 / 6.0)  # gain and offset
            if moved < INTENSITY_MIN_COUNTS:
                return (
                    f"intensity level {low} changes the gain by {gain:.3g}: "
                    f"{moved:.2g} counts at the bright end of a {facts.dynamic_range:g}-count "
                    f"range; needs at least {INTENSITY_MIN_COUNTS:g} (the file holds integers)"
                )
        if part == "topology" and facts.vessel_voxels < TOPOLOGY_MIN_VESSEL_VOXELS:
            return (
                f"topology cuts vessels: needs at least {TOPOLOGY_MIN_VESSEL_VOXELS} vessel "
                f"voxels for distinct cuts at each level; the volume has about "
                f"{facts.vessel_voxels}"
            )
        if part == "saturation" and facts.vessel_voxels < SATURATION_MIN_VESSEL_VOXELS:
            return (
                f"saturation ranks the vessel voxels: needs at least "
                f"{SATURATION_MIN_VESSEL_VOXELS}; the volume has about {facts.vessel_voxels}"
            )
    return None


def skipped_jobs(
    valid: Sequence[str], drift_config: Mapping, facts: Mapping[str, VolumeFacts | None]
) -> list[dict[str, str]]:
    """Every (volume, kind) :func:`plan_jobs` leaves out for ``facts``, with the reason
    (:func:`skip_reason`), for the drift manifest's ``skipped`` list."""
    config = with_defaults(drift_config)
    volumes = drift_volumes(valid, config)
    if not config["enabled"]:
        return []
    out = []
    for kind in config["types"]:
        if kind in SET_KINDS:
            continue
        for vol in volumes:
            reason = skip_reason(kind, facts.get(vol), config)
            if reason:
                out.append({"drift_type": kind, "volume": vol, "reason": reason})
    return out


@dataclass(frozen=True)
class DriftJob:
    """One drift variant: a volume, a kind, a level (gradual: the batch number) and parameters."""

    volume: str
    kind: str
    level: int
    params: dict = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True)
class DriftGroup:
    """One job of the workflow: a volume, a kind and every level it writes (gradual: its
    batch), with the kind's parameters. The workflow, the dataset driver and the bench
    all run these."""

    volume: str
    kind: str
    levels: tuple[int, ...]
    params: dict = field(default_factory=dict, hash=False, compare=True)

    def jobs(self) -> list[DriftJob]:
        """The group's variants, one per level."""
        return [DriftJob(self.volume, self.kind, level, self.params) for level in self.levels]


def with_defaults(drift_config: Mapping) -> dict:
    """``drift_config`` with the schema's defaults filled in (gradual merged key by key)
    and ``types: all`` spelled out as every kind of the registry, in its order."""
    defaults = _defaults()
    merged = {**defaults, **dict(drift_config)}
    for key in ("gradual", "compound"):
        merged[key] = {**defaults[key], **dict(drift_config.get(key, {}))}
    if merged["types"] == "all":
        merged["types"] = list(KINDS)
    return merged


def drift_levels(drift_config: Mapping) -> list[int]:
    """The configured levels (``drift.levels``), each written by every levelled kind's job."""
    return [int(level) for level in with_defaults(drift_config)["levels"]]


def drift_volumes(valid: Sequence[str], drift_config: Mapping) -> list[str]:
    """Held-out valid volumes the variants are made of.

    ``volumes: auto`` takes the valid :data:`AUTO_VOLUMES` (else the last valid one);
    a list keeps its valid members in the order given.
    """
    chosen = with_defaults(drift_config)["volumes"]
    if chosen != "auto":
        return [vol for vol in chosen if vol in valid]
    held_out = [vol for vol in valid if vol in AUTO_VOLUMES]
    return held_out or list(valid)[-1:]


def reference_volumes(valid: Sequence[str], drift_config: Mapping) -> list[str]:
    """Valid volumes left clean: the reference split a detector compares against."""
    held_out = set(drift_volumes(valid, drift_config))
    return [vol for vol in valid if vol not in held_out]


def gradual_batches(n_volumes: int, n_batches: int) -> list[int]:
    """Batch (1..b) of each of ``n_volumes`` ordered volumes, ``b = min(n_batches, n_volumes)``."""
    batches = min(n_batches, n_volumes)
    return [i * batches // n_volumes + 1 for i in range(n_volumes)]


def plan_jobs(
    valid: Sequence[str],
    drift_config: Mapping,
    facts: Mapping[str, VolumeFacts | None] | None = None,
) -> list[DriftJob]:
    """Every drift job; empty when drift is disabled or no volume is held out.

    Gradual drift splits the drift volumes into ``min(n_batches, volumes)`` ordered,
    contiguous batches (batch k has severity ``max_severity * k / batches``). With
    ``facts`` (volume -> :class:`VolumeFacts`), a (volume, kind) the kind cannot act on
    is left out (:func:`skip_reason`; listed by :func:`skipped_jobs`).
    """
    config = with_defaults(drift_config)
    all_volumes = drift_volumes(valid, config)
    if not config["enabled"] or not all_volumes:
        return []
    facts = facts or {}
    jobs = []
    for kind in config["types"]:
        if kind in SET_KINDS:
            continue
        volumes = [v for v in all_volumes if not skip_reason(kind, facts.get(v), config)]
        if not volumes:
            continue
        if kind == "compound":
            params = {"kinds": list(config["compound"]["kinds"])}
            jobs += [
                DriftJob(v, kind, int(level), params) for v in volumes for level in config["levels"]
            ]
        elif kind == "gradual":
            gradual = config["gradual"]
            batches = gradual_batches(len(volumes), int(gradual["n_batches"]))
            params = {**gradual, "n_batches": max(batches)}
            jobs += [DriftJob(v, kind, b, params) for v, b in zip(volumes, batches, strict=True)]
        else:
            jobs += [
                DriftJob(v, kind, int(level), {}) for v in volumes for level in config["levels"]
            ]
    return jobs


def plan_groups(
    valid: Sequence[str],
    drift_config: Mapping,
    facts: Mapping[str, VolumeFacts | None] | None = None,
) -> list[DriftGroup]:
    """:func:`plan_jobs` grouped by (volume, kind) in plan order: one job each (a levelled
    kind writes every level; gradual's one level is the volume's batch). ``facts``: as
    :func:`plan_jobs` (a kind left out where it cannot act)."""
    groups: dict[tuple[str, str], list[DriftJob]] = {}
    for job in plan_jobs(valid, drift_config, facts):
        groups.setdefault((job.volume, job.kind), []).append(job)
    return [
        DriftGroup(volume, kind, tuple(job.level for job in jobs), jobs[0].params)
        for (volume, kind), jobs in groups.items()
    ]


def plan_sets(valid: Sequence[str], drift_config: Mapping) -> list[DriftJob]:
    """Every set-level job (``volume`` is ``""``): one per (set kind, level).

    Its parameters: ``pool`` (every valid volume, the clean volumes it chooses from)
    and ``set_size`` (as many as the drift volumes, at most a quarter of the pool).
    Empty when drift is disabled, no volume is held out, or the pool is too small for
    the levels to choose different sets (:func:`.prevalence.feasible`: 7 valid volumes
    for levels 1, 3, 5).
    """
    from .base import severity_for_level
    from .prevalence import default_set_size, feasible

    config = with_defaults(drift_config)
    volumes = drift_volumes(valid, config)
    if not config["enabled"] or not volumes:
        return []
    size = default_set_size(len(valid), len(volumes))
    severities = [severity_for_level(int(level)) for level in config["levels"]]
    if not feasible(len(valid), size, severities):
        return []
    params = {"pool": list(valid), "set_size": size}
    return [
        DriftJob("", kind, int(level), params)
        for kind in config["types"]
        if kind in SET_KINDS
        for level in config["levels"]
    ]


def skipped_sets(valid: Sequence[str], drift_config: Mapping) -> list[dict[str, str]]:
    """The requested set kinds :func:`plan_sets` cannot make, each with its reason.

    A pool too small for the levels to choose different sets makes no set job; the
    drift manifest records this list so a requested kind is never dropped silently.
    """
    from .base import severity_for_level
    from .prevalence import default_set_size, feasible

    config = with_defaults(drift_config)
    volumes = drift_volumes(valid, config)
    wanted = [kind for kind in config["types"] if kind in SET_KINDS]
    if not config["enabled"] or not volumes or not wanted or plan_sets(valid, config):
        return []
    levels = [int(level) for level in config["levels"]]
    severities = [severity_for_level(level) for level in levels]
    fewest = next(
        (
            pool
            for pool in range(len(valid) + 1, 10 * len(valid) + 64)
            if feasible(pool, default_set_size(pool, len(volumes)), severities)
        ),
        None,
    )
    need = f"at least {fewest}" if fewest else "more"
    reason = (
        f"needs {need} valid volumes for levels {levels} to choose different sets; "
        f"{len(valid)} valid"
    )
    return [{"drift_type": kind, "reason": reason} for kind in wanted]
