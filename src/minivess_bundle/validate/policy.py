"""What a failed check means: one error line (fail) or a quarantine list (quarantine)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, ValidationError
from .record import _fmt, _set

log = logging.getLogger(__name__)


#: Human phrase per check, for the one-line error of :func:`raise_if_invalid`.
CHECK_PHRASES = {
    "opens": "cannot open",
    "is_3d": "not a 3-D volume:",
    "image_dtype": "image dtype",
    "label_dtype": "mask dtype",
    "spacing_positive": "spacing",
    "spacing_consistent": "pixdim vs affine spacing",
    "shape_bounds": "shape",
    "spacing_bounds": "spacing",
    "same_shape": "image/mask shapes",
    "same_affine": "image/mask affines differ by",
    "label_values": "mask values",
    "finite": "non-finite image values:",
    "foreground_fraction": "foreground fraction",
    "json_readable": "unreadable json:",
    "json_spacing_agrees": "json spacing",
}


def failure_message(report: dict[str, Any], check: dict[str, Any]) -> str:
    """The one-line text of a failed check (without the volume/stage prefix)."""
    observed = check["observed"]
    if check["name"] == "label_values" and isinstance(observed, list):
        text = _set(observed)
    elif isinstance(observed, dict):
        text = ", ".join(f"{k} {_fmt(v)}" for k, v in observed.items())
    else:
        text = _fmt(observed)
    phrase = CHECK_PHRASES.get(check["name"], check["name"])
    return f"{check['name']}: {phrase} {text}"


def raise_if_invalid(report: dict[str, Any]) -> None:
    """Raise :class:`ValidationError` for the first failed check (``on_invalid: fail``)."""
    for check in report["checks"]:
        if check["passed"] is False:
            raise ValidationError(
                failure_message(report, check),
                volume=report["volume"],
                path=check["path"],
                expected=check["expected"],
            )


def aggregate_reports(
    report_paths: list[str | Path], on_invalid: str = "quarantine"
) -> dict[str, Any]:
    """Merge per-volume reports into ``validation_report.json``'s content.

    ``{"policy", "volumes": {id: report}, "valid": [ids], "quarantined": [{"volume",
    "reasons": [one line per failed check]}], "summary": {"total", "valid", "invalid",
    "failed_checks": {name: count}, "shape_min", "shape_max", "spacing_min",
    "spacing_max", "foreground_fraction_min", "foreground_fraction_max"}}`` —
    ranges over the valid volumes. With ``on_invalid="fail"`` an invalid volume
    raises (as :func:`raise_if_invalid`) instead of being quarantined.
    """
    if on_invalid not in ("fail", "quarantine"):
        raise ConfigError(
            f"on_invalid {on_invalid!r} is not allowed", expected='"fail" or "quarantine"'
        )
    volumes: dict[str, dict[str, Any]] = {}
    for path in report_paths:
        try:
            report = json.loads(Path(path).read_text())
            vol = report["volume"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"unreadable validation report ({exc})", path=path) from exc
        if vol in volumes:
            raise ValidationError(f"two reports for {vol}", volume=vol, path=path)
        volumes[vol] = report
    quarantined = []
    failed: dict[str, int] = {}
    for vol in sorted(volumes):
        report = volumes[vol]
        if report["valid"]:
            continue
        if on_invalid == "fail":
            raise_if_invalid(report)
        reasons = [
            f"{failure_message(report, c)} — expected {c['expected']}"
            for c in report["checks"]
            if c["passed"] is False
        ]
        for name in report["failed_checks"]:
            failed[name] = failed.get(name, 0) + 1
        quarantined.append({"volume": vol, "reasons": reasons})
    valid = [vol for vol in sorted(volumes) if volumes[vol]["valid"]]

    def _range(key: str, fn):
        values = [volumes[v][key] for v in valid if volumes[v][key] is not None]
        if not values:
            return None
        if isinstance(values[0], list):
            return [fn(column) for column in zip(*values, strict=True)]
        return fn(values)

    summary = {
        "total": len(volumes),
        "valid": len(valid),
        "invalid": len(quarantined),
        "failed_checks": dict(sorted(failed.items())),
        "shape_min": _range("shape", min),
        "shape_max": _range("shape", max),
        "spacing_min": _range("spacing", min),
        "spacing_max": _range("spacing", max),
        "foreground_fraction_min": _range("foreground_fraction", min),
        "foreground_fraction_max": _range("foreground_fraction", max),
    }
    return {
        "policy": on_invalid,
        "volumes": {vol: volumes[vol] for vol in sorted(volumes)},
        "valid": valid,
        "quarantined": quarantined,
        "summary": summary,
    }


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write a (per-volume or aggregate) report as canonical JSON, atomically."""
    from ..core.fsio import write_json_atomic

    return write_json_atomic(path, report)
