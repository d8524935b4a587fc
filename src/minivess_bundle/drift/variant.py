"""Drift variants on disk (one Snakemake job per (volume, kind)) and a whole drifted dataset.

A job reads a clean (image, label) pair once; each variant applies one kind at one level with the
(volume, kind) stream's seed, writes the file the kind targets (deterministic gzip,
atomic), copies the other byte for byte, verifies the result (a severity > 0 that
shows no change in its primary figure is an error) and returns its manifest entry.
Spacing is read in micrometres by :func:`minivess_bundle.core.nifti.spacing_um`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.errors import DriftError
from .base import check_severity, derive_seed, severity_for_level
from .kinds import check_kind, gradual_severities, make_drift
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
    from ..core.nifti import read_array, spacing_um

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
    from ..core.metrics import skeleton as skeletonise
    from ..core.metrics import topology_summary

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
    if kind == "annotation":  # its level-independent part is computed once per job
        context["cache"] = clean.cache
    drifted, record = drift(arrays[role], **context)
    extra = {}
    if drift.target == "label":
        extra = {
            "clean_skeleton": context.get("skeleton"),
            "clean_topology": _cached(clean, "topology", lambda: topology_summary(arrays["label"]))
            if kind == "topology"
            else None,
        }
        if kind == "annotation":
            extra["cache"] = clean.cache
    figures = round_figures(
        drift.figures(
            arrays[role], drifted, record, mask=arrays["label"], spacing=clean.spacing, **extra
        )
    )
    check_changed(spec.kind, severity, figures, drift.primary, spec.volume, context["where"])
    return drift, drifted, record, figures


def _write(spec, files, compression, images, drift, drifted, severity) -> None:
    from ..core.fsio import link_or_copy
    from ..core.nifti import write_nifti

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
    # A copy, not a hardlink: Snakemake touches outputs (see minivess_bundle.fetch.rename).
    link_or_copy(sources[other], outs[other], allow_link=False)


def _files_entry(files: VariantFiles, clean: _Clean) -> dict[str, Any]:
    from ..core.fsio import sha256_file

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
    from ..core.volumes import check_volume_id

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
