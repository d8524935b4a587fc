"""The DriftManifest: every variant's entry, its schema (a data file) and the per-kind summary.

The schema lives in ``minivess_bundle/data/drift_manifest.schema.json`` (JSON Schema
draft 2020-12). The summary gives, per kind, its primary figure averaged per level and,
for a levelled kind, per volume; writing a manifest where a levelled kind is not strictly
monotone over its levels on some volume (gradual and set kinds: on the mean), or shows no
change at some level, is refused with an error naming the kind and the volume.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.errors import DriftError
from .base import EXPECTED_SIGNALS, LEVELS
from .kinds import KINDS, TRANSFORMS
from .verify import UNCHANGED, figure

MANIFEST_VERSION = 2
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "drift_manifest.schema.json"


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema, read from the package's data file."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def validate_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Check ``manifest`` against its schema; :class:`DriftError` names the first bad field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        more = f" ({len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise DriftError(
            f"manifest field {where}: {first.message}",
            expected="a manifest matching drift_manifest.schema.json" + more,
        )
    entries = [*manifest["variants"], *manifest["sets"]]
    unknown = {v["drift_type"] for v in entries} - set(KINDS)
    if unknown:
        raise DriftError(f"manifest kinds {sorted(unknown)} are not known", expected=str(KINDS))
    return manifest


def primary_figure(entry: dict[str, Any]) -> tuple[str, str]:
    """(figure, direction) of an entry's kind (gradual: its base kind's)."""
    from .prevalence import PrevalenceShift

    kind = entry["drift_type"]
    if kind == PrevalenceShift.name:
        return PrevalenceShift.primary
    if kind == "gradual":
        kind = entry["parameters"]["base"]
    return TRANSFORMS[kind].primary


def _sort_key(entry: dict[str, Any]) -> tuple:
    return (entry["drift_type"], entry["severity"], entry["level"] or 0, entry.get("volume", ""))


def is_set_entry(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` is a set-level drift (``target`` "set": chosen volumes, no files)."""
    return entry.get("target") == "set"


def _ordered(values: Sequence[float], direction: str) -> bool:
    pairs = list(zip(values, values[1:], strict=False))
    return bool(values) and all((b > a) if direction == "increasing" else (b < a) for a, b in pairs)


def _changed(values: Sequence[float], direction: str) -> bool:
    return bool(values) and all(abs(v - UNCHANGED[direction]) > 1e-9 for v in values)


def _per_volume(kind: str, entries: Sequence[dict[str, Any]]) -> bool:
    """Whether a kind's guarantee is checked volume by volume: every levelled kind (one
    job per volume writes all its levels); gradual (one batch per volume) and the set
    kinds (no volume) are ordered across volumes, by their mean."""
    return kind != "gradual" and all(e.get("volume") for e in entries)


def summarise(variants: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: the mean |primary figure| per level, and whether it is strictly ordered
    in the expected direction (``monotonic``) and changed at every level (``nonzero``).

    For a levelled kind both hold *per volume* (``by_volume``: each volume's figure per
    level; ``failing_volumes``: the volumes whose own series is not strictly ordered or
    unchanged somewhere), never only on the mean; gradual and set kinds, whose levels are
    different volumes, are judged on the mean per level.
    """
    grouped: dict[str, dict[tuple, list[float]]] = {}
    entries_of: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, tuple[str, str]] = {}
    for entry in variants:
        kind = entry["drift_type"]
        figures[kind] = primary_figure(entry)
        entries_of.setdefault(kind, []).append(entry)
        value = entry["verification"].get(figures[kind][0])
        key = (entry["severity"], entry["level"])
        grouped.setdefault(kind, {}).setdefault(key, []).append(
            abs(value) if value is not None else float("nan")
        )
    summary = {}
    for kind, (name, direction) in sorted(figures.items()):
        levels = sorted(grouped[kind].items())
        means = [sum(v) / len(v) for _, v in levels]
        row: dict[str, Any] = {
            "figure": name,
            "direction": direction,
            "by_level": {
                str(level): figure(m) for ((_, level), _), m in zip(levels, means, strict=True)
            },
        }
        if _per_volume(kind, entries_of[kind]):
            series: dict[str, list[tuple[float, int, float]]] = {}
            for entry in entries_of[kind]:
                value = entry["verification"].get(name)
                series.setdefault(entry["volume"], []).append(
                    (
                        entry["severity"],
                        entry["level"],
                        abs(value) if value is not None else float("nan"),
                    )
                )
            row["by_volume"] = {}
            failing = []
            for volume, points in sorted(series.items()):
                points.sort()
                values = [v for _, _, v in points]
                row["by_volume"][volume] = {str(level): figure(v) for _, level, v in points}
                if not (_ordered(values, direction) and _changed(values, direction)):
                    failing.append(volume)
            row["failing_volumes"] = failing
            row["monotonic"] = all(
                _ordered([v for _, _, v in sorted(p)], direction) for p in series.values()
            )
            row["nonzero"] = all(_changed([v for _, _, v in p], direction) for p in series.values())
        else:
            row["monotonic"] = _ordered(means, direction)
            row["nonzero"] = _changed(means, direction)
        summary[kind] = row
    return summary


def check_summary(summary: dict[str, Any]) -> None:
    """Refuse a kind whose primary figure is not strictly monotone or shows no change
    (per volume for a levelled kind: the error names the first failing volume)."""
    for kind, row in sorted(summary.items()):
        if row["monotonic"] and row["nonzero"]:
            continue
        what = "strictly " + row["direction"] if not row["monotonic"] else "non-zero"
        failing = row.get("failing_volumes") or []
        if failing:
            volume = failing[0]
            more = f" (and {len(failing) - 1} more volumes)" if len(failing) > 1 else ""
            raise DriftError(
                f"{kind}: {row['figure']} by level {row['by_volume'][volume]} is not {what}{more}",
                volume=volume,
                expected=f"a {row['direction']}, non-zero primary figure over the levels "
                "on every volume",
            )
        raise DriftError(
            f"{kind}: {row['figure']} by level {row['by_level']} is not {what}",
            expected=f"a {row['direction']}, non-zero primary figure over the levels",
        )


@dataclass
class DriftManifest:
    """All variants of a drift run (``drift_manifest.json``), validated by its schema."""

    global_seed: int
    variants: list[dict[str, Any]] = field(default_factory=list)
    sets: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    levels: dict[str, float] = field(default_factory=lambda: {str(k): v for k, v in LEVELS.items()})
    manifest_version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        self.variants = sorted(self.variants, key=_sort_key)
        self.sets = sorted(self.sets, key=_sort_key)

    def to_dict(self) -> dict[str, Any]:
        seen = set()
        for entry in [*self.variants, *self.sets]:
            if entry["variant_id"] in seen:
                raise DriftError(f"variant {entry['variant_id']} appears twice in the manifest")
            seen.add(entry["variant_id"])
        return validate_manifest(
            {
                "manifest_version": self.manifest_version,
                "generator": {"module": "minivess_bundle.drift", "package_version": __version__},
                "global_seed": self.global_seed,
                "levels": dict(self.levels),
                "drift_types": list(KINDS),
                "expected_signals": list(EXPECTED_SIGNALS),
                "variants": list(self.variants),
                "sets": list(self.sets),
                "skipped": sorted(
                    self.skipped, key=lambda s: (s["drift_type"], s.get("volume", ""))
                ),
                "summary": summarise([*self.variants, *self.sets]),
            }
        )

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, 2-space indent, trailing newline)."""
        from ..core.fsio import json_bytes

        return json_bytes(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str) -> DriftManifest:
        data = validate_manifest(json.loads(text))
        return cls(
            global_seed=data["global_seed"],
            variants=data["variants"],
            sets=data["sets"],
            skipped=data.get("skipped", []),
            levels=data["levels"],
            manifest_version=data["manifest_version"],
        )

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        from ..core.fsio import write_bytes_atomic

        return write_bytes_atomic(path, self.to_json().encode())

    @classmethod
    def read(cls, path: str | Path) -> DriftManifest:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def merge_manifest_entries(
    paths: Sequence[str | Path],
    check: bool = True,
    skipped: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """Merge per-job entry files into one validated manifest dict (one global seed).

    ``skipped``: the requested kinds the plan could not make, each with its reason
    (:func:`.plan.skipped_sets`), recorded so a missing kind is never silent.

    With ``check`` (the workflow's manifest step) a kind whose summary is not strictly
    monotone and non-zero over its levels is refused (:func:`check_summary`).
    """
    entries = []
    for path in paths:
        try:
            entries.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise DriftError(f"cannot read manifest entry ({exc})", path=path) from exc
    seeds = {e.get("seed_source", {}).get("global_seed") for e in entries}
    if len(seeds) > 1:
        raise DriftError(
            f"entries come from several global seeds {sorted(map(str, seeds))}",
            expected="one global seed per manifest",
        )
    manifest = DriftManifest(
        global_seed=seeds.pop() if seeds else 0,
        variants=[e for e in entries if not is_set_entry(e)],
        sets=[e for e in entries if is_set_entry(e)],
        skipped=list(skipped),
    ).to_dict()
    if check:
        check_summary(manifest["summary"])
    return manifest
