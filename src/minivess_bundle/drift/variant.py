"""Drift variants on disk (one Snakemake job per (volume, kind)) and a whole drifted dataset.

A job reads a clean (image, label) pair once; each variant applies one kind at one level with the
(volume, kind) stream's seed, writes the file the kind targets (deterministic gzip,
atomic), copies the other byte for byte, verifies the result (a severity > 0 that
shows no change in its primary figure is an error) and returns its manifest entry.
Spacing is read in micrometres by :func:`minivess_bundle.nifti.spacing_um`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DriftError
from .base import check_severity, derive_seed, severity_for_level
from .kinds import check_kind, gradual_severities, make_drift
from .manifest import DriftManifest
from .plan import (
    VolumeFacts,
    plan_jobs,
    plan_sets,
    reference_volumes,
    skipped_jobs,
    with_defaults,
)
from .verify import check_changed, round_figures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantSpec:
    """What to make: a volume, a kind, a level (gradual: batch k) and explicit parameters."""

    volume: str
    kind: str
    level: int
    global_seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    reference_ids: Sequence[str] = ()

    def severity(self) -> float:
        if self.kind != "gradual":
            return severity_for_level(self.level)
        n = int(self.params.get("n_batches", 3))
        if (
            isinstance(self.level, bool)
            or not isinstance(self.level, int)
            or not 1 <= self.level <= n
        ):
            raise DriftError(
                f"gradual batch {self.level!r}", volume=self.volume, expected=f"a batch in 1..{n}"
            )
        return gradual_severities(n, self.params.get("max_severity", 1.0))[self.level - 1]

    def base(self) -> tuple[str, dict[str, Any]]:
        """The single-volume kind and its parameters (gradual: its base's)."""
        params = dict(self.params)
        if self.kind != "gradual":
            return check_kind(self.kind), params
        for key in ("n_batches", "max_severity"):
            params.pop(key, None)
        return check_kind(params.pop("base", "intensity"), allow_gradual=False), params


@dataclass(frozen=True)
class VariantFiles:
    """The clean pair read and the drifted pair written; paths in the entry are relative
    to ``clean_root`` / ``drift_root`` when given."""

    image: str | Path
    label: str | Path
    out_image: str | Path
    out_label: str | Path
    clean_root: str | Path | None = None
    drift_root: str | Path | None = None


@dataclass(frozen=True)
class Compression:
    codec: str = "isal"
    level: int = 2


def variant_id(kind: str, level: int, volume: str) -> str:
    """``<kind>/<level>/<volume>``."""
    return f"{kind}/{level}/{volume}"


def _path_text(path: str | Path, root: str | Path | None) -> str:
    path = Path(path)
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix() if not path.is_absolute() else path.name


def _drifted_image(clean, array, note: str, spacing_factors=None):
    """``array`` with ``clean``'s header and affine (voxel sizes scaled by ``spacing_factors``)."""
    import nibabel as nib
    import numpy as np

    affine = np.array(clean.affine, dtype=np.float64)
    zooms = [float(z) for z in clean.header.get_zooms()[:3]]
    if spacing_factors is not None:
        affine[:3, :3] = affine[:3, :3] * np.asarray(spacing_factors, dtype=np.float64)
        zooms = [z * f for z, f in zip(zooms, spacing_factors, strict=True)]
    image = nib.Nifti1Image(array, affine, header=clean.header.copy())
    image.header.set_data_dtype(array.dtype)
    image.set_sform(affine, code=int(clean.header["sform_code"]))
    qform_code = int(clean.header["qform_code"])
    image.set_qform(affine if qform_code else None, code=qform_code)
    image.header.set_zooms(zooms)
    image.header.set_slope_inter(1.0, 0.0)
    old = bytes(clean.header["descrip"]).rstrip(b"\0").decode("ascii", "replace")
    image.header["descrip"] = ((old + "; " if old else "") + note)[:79].encode("ascii", "replace")
    return image


@dataclass
class _Clean:
    """The clean pair of one volume, decoded once, and what every level reads from it."""

    images: dict[str, Any]
    arrays: dict[str, Any]
    spacing: Any
    #: Level-independent figures of one kind, computed on first use.
    cache: dict[str, Any] = field(default_factory=dict)


def _load(spec: VariantSpec, files: VariantFiles) -> _Clean:
    """Decode the clean pair (read-only arrays, so no level can change another's input)."""
    from ..nifti import read_array, spacing_um

    images = dict(
        zip(
            ("image", "label"),
            (read_array(files.image, spec.volume), read_array(files.label, spec.volume)),
            strict=True,
        )
    )
    arrays = {role: pair[1] for role, pair in images.items()}
    for array in arrays.values():
        array.flags.writeable = False
    return _Clean(images, arrays, spacing_um(images["image"][0].header))


def _frozen(array):
    array.flags.writeable = False
    return array


def _cached(clean: _Clean, key: str, compute):
    """``clean.cache[key]``, computed by ``compute()`` the first time a level asks."""
    if key not in clean.cache:
        clean.cache[key] = compute()
    return clean.cache[key]


def _apply(spec: VariantSpec, files: VariantFiles, clean: _Clean, seed: int, severity: float):
    """Apply the kind to the loaded pair; (drift, drifted, record, figures)."""
    from ..metrics import skeleton as skeletonise
    from ..metrics import topology_summary

    kind, params = spec.base()
    arrays = clean.arrays
    drift = make_drift(kind, severity, seed, **params)
    role = "label" if drift.target == "label" else "image"
    context: dict[str, Any] = {
        "spacing": clean.spacing,
        "mask": arrays["label"],
        "volume": spec.volume,
        "where": str(files.label if role == "label" else files.image),
    }
    if kind in ("topology", "annotation"):  # both start from the clean centreline
        context["skeleton"] = _cached(
            clean, "skeleton", lambda: _frozen(skeletonise(arrays["label"]))
        )
    drifted, record = drift(arrays[role], **context)
    extra = {}
    if drift.target == "label":
        extra = {
            "clean_skeleton": context.get("skeleton"),
            "clean_topology": _cached(clean, "topology", lambda: topology_summary(arrays["label"]))
            if kind == "topology"
            else None,
        }
    figures = round_figures(
        drift.figures(
            arrays[role], drifted, record, mask=arrays["label"], spacing=clean.spacing, **extra
        )
    )
    check_changed(spec.kind, severity, figures, drift.primary, spec.volume, context["where"])
    return drift, drifted, record, figures


def _write(spec, files, compression, images, drift, drifted, severity) -> None:
    from ..fsio import link_or_copy
    from ..nifti import write_nifti

    note = f"drift {spec.kind} s={severity:.3f}"
    outs = {"image": files.out_image, "label": files.out_label}
    sources = {"image": files.image, "label": files.label}
    if drift.target == "header":
        factors = drift.factors if severity > 0 else None
        for role in ("image", "label"):
            image = _drifted_image(images[role][0], images[role][1], note, factors)
            write_nifti(outs[role], image, compression.codec, compression.level)
        return
    role = drift.target
    write_nifti(
        outs[role],
        _drifted_image(images[role][0], drifted, note),
        compression.codec,
        compression.level,
    )
    other = "label" if role == "image" else "image"
    # A copy, not a hardlink: Snakemake touches outputs (see minivess_bundle.rename).
    link_or_copy(sources[other], outs[other], allow_link=False)


def _files_entry(files: VariantFiles, clean: _Clean) -> dict[str, Any]:
    from ..fsio import sha256_file

    entry = {}
    for role, source, out in (
        ("image", files.image, files.out_image),
        ("label", files.label, files.out_label),
    ):
        clean_sha = _cached(clean, f"sha256:{role}", lambda source=source: sha256_file(source))
        drifted_sha = sha256_file(out)
        entry[role] = {
            "clean": {"path": _path_text(source, files.clean_root), "sha256": clean_sha},
            "drifted": {"path": _path_text(out, files.drift_root), "sha256": drifted_sha},
            "modified": clean_sha != drifted_sha,
        }
    return entry


def _json_ready(value: Any) -> Any:
    """Parameters as plain JSON values (tuples to lists, numpy scalars to Python)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


def generate_drift_variant(
    spec: VariantSpec, files: VariantFiles, compression: Compression = Compression()
) -> dict[str, Any]:
    """Make one drift variant of one volume and return its manifest entry.

    The seed is :func:`derive_seed` (global seed, volume, kind): shared by all levels
    of the pair, so levels are nested.
    """
    return generate_drift_levels(spec, [spec.level], [files], compression)[0]


def generate_drift_levels(
    spec: VariantSpec,
    levels: Sequence[int],
    files: Sequence[VariantFiles],
    compression: Compression = Compression(),
) -> list[dict[str, Any]]:
    """Make the variants of one (volume, kind) at each of ``levels`` (``files[i]`` is
    level ``levels[i]``'s, all reading one clean pair); their manifest entries in order.

    One job instead of one per level: the clean pair is decoded once (read-only, so no
    level can change another's input) and what does not depend on the level (the
    clean skeleton and topology, the clean files' sha256) is computed once. Each
    level's files and entry are the bytes :func:`generate_drift_variant` writes for it
    alone; one level's output is held at a time.
    """
    from ..volumes import check_volume_id

    check_volume_id(spec.volume)
    check_kind(spec.kind)
    levels = list(levels)
    if not levels or len(files) != len(levels) or len(set(levels)) != len(levels):
        raise DriftError(
            f"{len(levels)} levels {levels} for {len(files)} output sets",
            volume=spec.volume,
            expected="distinct levels, one output set (image, label, entry) each",
        )
    sources = {(Path(f.image), Path(f.label)) for f in files}
    if len(sources) != 1:
        raise DriftError(
            f"the levels read {len(sources)} different clean pairs",
            volume=spec.volume,
            expected="one clean pair for all levels of a (volume, kind)",
        )
    specs = [replace(spec, level=level) for level in levels]
    severities = [check_severity(s.severity()) for s in specs]
    seed = derive_seed(spec.global_seed, spec.volume, spec.kind)
    clean = _load(spec, files[0])
    return [
        _variant(level_spec, level_files, compression, clean, seed, severity)
        for level_spec, level_files, severity in zip(specs, files, severities, strict=True)
    ]


def _variant(spec, files, compression, clean, seed, severity) -> dict[str, Any]:
    """One level of :func:`generate_drift_levels`: apply, write, verify; its entry."""
    drift, drifted, record, figures = _apply(spec, files, clean, seed, severity)
    _write(spec, files, compression, clean.images, drift, drifted, severity)
    del drifted
    parameters = dict(record["parameters"])
    if spec.kind == "gradual":
        parameters = {
            "base": drift.name,
            "batch": spec.level,
            "n_batches": int(spec.params.get("n_batches", 3)),
            "max_severity": spec.params.get("max_severity", 1.0),
            "base_parameters": parameters,
        }
    log.info(
        "%s: drift %s level %s severity %.3f seed %d",
        spec.volume,
        spec.kind,
        spec.level,
        severity,
        seed,
    )
    return {
        "variant_id": variant_id(spec.kind, spec.level, spec.volume),
        "volume": spec.volume,
        "drift_type": spec.kind,
        "level": spec.level,
        "severity": severity,
        "seed": seed,
        "seed_source": {
            "global_seed": int(spec.global_seed),
            "volume": spec.volume,
            "drift_type": spec.kind,
        },
        "target": drift.target,
        "parameters": _json_ready(parameters),
        "expected_signal": drift.expected_signal,
        "files": _files_entry(files, clean),
        "verification": figures,
        "reference_split_ids": sorted(spec.reference_ids),
    }


def set_dataset(
    kind: str, level: int | str, what: str, training: list[dict[str, str]], drift: dict
) -> dict[str, Any]:
    """The ``dataset.json`` of one drift set (MONAI/MSD ``training`` list + nnU-Net keys)."""
    return {
        "name": f"MiniVess-drift-{kind}-{level}",
        "description": f"MiniVess drift {what}: {kind}, level {level}; "
        "ground truth in drift_manifest.json",
        "channel_names": {"0": "two-photon"},
        "labels": {"background": 0, "vessel": 1},
        "file_ending": ".nii.gz",
        "numTraining": len(training),
        "training": training,
        "drift": {"type": kind, "level": str(level), **drift},
    }


def variant_dataset_json(kind: str, level_dir: str, entries: Sequence[dict]) -> dict:
    """The ``dataset.json`` of one variant set (the drifted files beside it)."""
    volumes = sorted(e["volume"] for e in entries)
    training = [
        {"image": f"./imagesTr/{v}.nii.gz", "label": f"./labelsTr/{v}.nii.gz"} for v in volumes
    ]
    severities = sorted({e["severity"] for e in entries})
    return set_dataset(kind, level_dir, "variant set", training, {"severities": severities})


_CONFIG_KEYS = {
    "global_seed",
    "volumes",
    "types",
    "levels",
    "gradual",
    "enabled",
    "reference_ids",
    "codec",
    "compression_level",
}


def set_pool(
    fractions: Mapping[str, float], pool: Sequence[str], clean_root: str | Path
) -> dict[str, dict[str, Any]]:
    """The clean volumes a set chooses from: vessel fraction and files under ``clean_root``
    (``imagesTr/<vol>.nii.gz``, ``labelsTr/<vol>.nii.gz``)."""
    missing = [vol for vol in pool if vol not in fractions]
    if missing:
        raise DriftError(
            f"no foreground fraction for {missing}", expected="every pool volume in the report"
        )
    root = Path(clean_root)
    return {
        vol: {
            "foreground_fraction": float(fractions[vol]),
            "image": root / "imagesTr" / f"{vol}.nii.gz",
            "label": root / "labelsTr" / f"{vol}.nii.gz",
        }
        for vol in pool
    }


def report_fractions(validation_report: str | Path) -> dict[str, float]:
    """Each volume's foreground (vessel) fraction from the validation report."""
    import json

    report = json.loads(Path(validation_report).read_text(encoding="utf-8"))
    return {
        vol: float(row["foreground_fraction"])
        for vol, row in report.get("volumes", {}).items()
        if row.get("foreground_fraction") is not None
    }


def generate_drifted_dataset(
    source_dir: str | Path, output_dir: str | Path, drift_config: Mapping[str, Any]
) -> DriftManifest:
    """Write every planned drift variant of the volumes in ``source_dir`` (any layout
    :func:`minivess_bundle.loader.discover_nifti_pairs` reads) to
    ``output_dir/<kind>/<level>/{imagesTr,labelsTr}/``, a ``dataset.json`` per set and
    ``output_dir/drift_manifest.json``, one :func:`generate_drift_levels` call per (volume,
    kind) as the workflow's jobs. The variants are :func:`plan_jobs`'s (schema defaults;
    ``volumes`` default: every volume found); extra keys ``global_seed`` (0),
    ``reference_ids`` (default: the volumes not drifted), ``codec``, ``compression_level``.
    """
    from ..fsio import write_json_atomic
    from ..loader import discover_nifti_pairs

    unknown = set(drift_config) - _CONFIG_KEYS
    if unknown:
        raise DriftError(
            f"unknown drift config keys {sorted(unknown)}",
            expected=f"keys in {sorted(_CONFIG_KEYS)}",
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
    reference = drift_config.get("reference_ids", reference_volumes(sorted(pairs), config))
    compression = Compression(config.get("codec", "isal"), int(config.get("compression_level", 2)))
    entries: dict[tuple[str, int], list[dict]] = {}
    groups: dict[tuple[str, str], list] = {}  # one job per (volume, kind), as the workflow
    facts = {vol: _pair_facts(vol, pairs[vol]) for vol in sorted(pairs)}
    for job in plan_jobs(sorted(pairs), config, facts):
        groups.setdefault((job.volume, job.kind), []).append(job)
    for (volume, kind), jobs in groups.items():
        spec = VariantSpec(
            volume,
            kind,
            jobs[0].level,
            int(config.get("global_seed", 0)),
            jobs[0].params,
            reference,
        )
        files = [
            VariantFiles(
                pairs[volume]["image"],
                pairs[volume]["label"],
                output_dir / kind / str(job.level) / "imagesTr" / f"{volume}.nii.gz",
                output_dir / kind / str(job.level) / "labelsTr" / f"{volume}.nii.gz",
                source_dir,
                output_dir,
            )
            for job in jobs
        ]
        levels = [job.level for job in jobs]
        for entry in generate_drift_levels(spec, levels, files, compression):
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

    from ..nifti import read_array
    from ..validate.stats import intensity_stats

    label = read_array(pair["label"], volume)[1]
    stats = intensity_stats(read_array(pair["image"], volume)[1])
    span = None if stats["p1"] is None else float(stats["p99"]) - float(stats["p1"])
    return VolumeFacts(tuple(int(n) for n in label.shape), int(np.count_nonzero(label)), span)


def _write_set(job, pairs, output_dir: Path, source_dir, config, reference) -> dict[str, Any]:
    """One set-level job of :func:`generate_drifted_dataset` (fractions from the labels)."""
    import numpy as np

    from ..fsio import write_json_atomic
    from ..nifti import read_array
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
