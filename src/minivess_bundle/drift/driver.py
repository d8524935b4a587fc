"""Write a whole drifted dataset from a folder of clean pairs, job by job as the workflow.

:func:`generate_drifted_dataset` runs the drift plan's groups (:func:`.plan.plan_groups`,
the same (volume, kind, levels, params) groups the workflow's jobs are) through the
variant writer (:mod:`.variant`), the set writer (:mod:`.prevalence`), the
``dataset.json`` builders (:mod:`.datasets`) and the manifest (:mod:`.manifest`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import DriftError
from ..core.volumes import renamed_names
from . import plan
from .base import severity_for_level
from .datasets import variant_dataset_json
from .kinds import check_kind
from .manifest import DriftManifest
from .plan import (
    VolumeFacts,
    plan_groups,
    plan_sets,
    reference_volumes,
    skipped_jobs,
    with_defaults,
)
from .variant import Compression, VariantFiles, VariantSpec, generate_drift_levels

#: Keys of the driver beyond the config's ``drift:`` block (whose keys are the plan's).
DRIVER_KEYS = ("global_seed", "reference_ids", "codec", "compression_level")


def generate_drifted_dataset(
    source_dir: str | Path, output_dir: str | Path, drift_config: Mapping[str, Any]
) -> DriftManifest:
    """Write every planned drift variant of the volumes in ``source_dir`` (any layout
    :func:`minivess_bundle.consumers.loader.discover_nifti_pairs` reads) to
    ``output_dir/<kind>/<level>/{imagesTr,labelsTr}/``, a ``dataset.json`` per set and
    ``output_dir/drift_manifest.json``, one :func:`generate_drift_levels` call per (volume,
    kind) as the workflow's jobs. The variants are :func:`plan_jobs`'s (schema defaults;
    ``volumes`` default: every volume found); extra keys ``global_seed`` (0),
    ``reference_ids`` (default: the volumes not drifted), ``codec``, ``compression_level``.
    """
    from ..consumers.loader import discover_nifti_pairs
    from ..core.fsio import write_json_atomic

    known = (*plan.DEFAULTS, *DRIVER_KEYS)
    unknown = set(drift_config) - set(known)
    if unknown:
        raise DriftError(
            f"unknown drift config keys {sorted(unknown)}", expected=f"keys in {sorted(known)}"
        )
    output_dir = Path(output_dir)
    pairs = {p["id"]: p for p in discover_nifti_pairs(source_dir)}
    config = with_defaults({"volumes": sorted(pairs), **drift_config})
    missing = (
        [v for v in config["volumes"] if v not in pairs] if config["volumes"] != "auto" else []
    )
    if missing:
        raise DriftError(f"volumes {missing} are not in the source", path=source_dir)
    for kind in config["types"]:
        check_kind(kind)
    for kind in config["compound"]["kinds"] if "compound" in config["types"] else ():
        check_kind(kind, allow_gradual=False)
    reference = drift_config.get("reference_ids", reference_volumes(sorted(pairs), config))
    compression = Compression(config.get("codec", "isal"), int(config.get("compression_level", 2)))
    entries: dict[tuple[str, int], list[dict]] = {}
    facts = {vol: _pair_facts(vol, pairs[vol]) for vol in sorted(pairs)}
    for group in plan_groups(sorted(pairs), config, facts):  # one job per (volume, kind)
        volume, kind = group.volume, group.kind
        spec = VariantSpec(
            volume,
            kind,
            group.levels[0],
            int(config.get("global_seed", 0)),
            group.params,
            reference,
        )
        files = [
            VariantFiles(
                pairs[volume]["image"],
                pairs[volume]["label"],
                output_dir / kind / str(level) / renamed_names(volume)["image"],
                output_dir / kind / str(level) / renamed_names(volume)["label"],
                source_dir,
                output_dir,
            )
            for level in group.levels
        ]
        for entry in generate_drift_levels(spec, list(group.levels), files, compression):
            entries.setdefault((kind, entry["level"]), []).append(entry)
    for (kind, level), members in sorted(entries.items()):
        write_json_atomic(
            output_dir / kind / str(level) / "dataset.json",
            variant_dataset_json(kind, str(level), members),
        )
    sets = []
    for job in plan_sets(sorted(pairs), config):
        sets.append(_write_set(job, pairs, output_dir, source_dir, config, reference))
    manifest = DriftManifest(
        int(config.get("global_seed", 0)),
        [e for members in entries.values() for e in members],
        sets,
        skipped=skipped_jobs(sorted(pairs), config, facts),
    )
    manifest.write(output_dir / "drift_manifest.json")
    return manifest


def _pair_facts(volume: str, pair: Mapping[str, Any]) -> VolumeFacts:
    """The plan's :class:`VolumeFacts` of a pair, read from its files (the validation
    report's p1..p99 span, as the workflow's plan reads it)."""
    import numpy as np

    from ..core.nifti import read_array
    from ..validate.stats import intensity_stats

    label = read_array(pair["label"], volume)[1]
    stats = intensity_stats(read_array(pair["image"], volume)[1])
    span = None if stats["p1"] is None else float(stats["p99"]) - float(stats["p1"])
    return VolumeFacts(tuple(int(n) for n in label.shape), int(np.count_nonzero(label)), span)


def _write_set(job, pairs, output_dir: Path, source_dir, config, reference) -> dict[str, Any]:
    """One set-level job of :func:`generate_drifted_dataset` (fractions from the labels)."""
    import numpy as np

    from ..core.fsio import write_json_atomic
    from ..core.nifti import read_array
    from .prevalence import generate_set

    pool = {}
    for vol in job.params["pool"]:
        label = read_array(pairs[vol]["label"], vol)[1]
        pool[vol] = {
            "foreground_fraction": float(np.count_nonzero(label) / max(label.size, 1)),
            "image": Path(pairs[vol]["image"]),
            "label": Path(pairs[vol]["label"]),
        }
    set_dir = output_dir / job.kind / str(job.level)
    dataset, entry = generate_set(
        job.kind,
        job.level,
        severity_for_level(job.level),
        int(config.get("global_seed", 0)),
        pool,
        set_dir=set_dir,
        clean_root=source_dir,
        set_size=job.params["set_size"],
        reference_ids=reference,
    )
    write_json_atomic(set_dir / "dataset.json", dataset)
    return entry
