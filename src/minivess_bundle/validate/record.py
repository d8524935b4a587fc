"""How checks are recorded: one entry per named check, observed vs expected."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


_LABEL_VALUE_LIMIT = 20


def _r7(value: float) -> float:
    """A float to 7 significant digits: header fields are float32 (4.97, not 4.9699998)."""
    return float(f"{value:.7g}")


def _fmt(values: Any) -> str:
    if isinstance(values, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.6g}"
    return str(values)


def _set(values: list) -> str:
    shown = values[:_LABEL_VALUE_LIMIT]
    more = f", ... ({len(values)} values)" if len(values) > len(shown) else ""
    return "{" + ", ".join(_fmt(v) for v in shown) + more + "}"


class _Checks:
    def __init__(self, files: dict[str, str | None]) -> None:
        self.files = files
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, file: str, passed: bool | None, observed: Any, expected: str) -> bool:
        self.items.append(
            {
                "name": name,
                "file": file,
                # image/mask comparisons name the mask's file
                "path": self.files.get("label" if file == "pair" else file),
                "passed": passed,
                "observed": observed,
                "expected": expected,
            }
        )
        return bool(passed)

    def skip(self, name: str, file: str, why: str, expected: str) -> None:
        self.add(name, file, None, f"skipped: {why}", expected)
