"""The workflow's configuration: typed values from the command line.

Snakemake parses a nested ``--config key='{a: false, b: [1, 3]}'`` with YAML's
BaseLoader, so every value inside arrives as a string (``'false'``, ``'1'``) and the
schema refuses it. :func:`coerce` turns such strings into the type the schema asks
for where that is unambiguous (``true``/``false`` for a boolean, an integer literal
for an integer, a number for a number), so ``--config drift='{enabled: false}'``
switches drift off. Anything else is left as it is for the schema to judge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOL = {"true": True, "false": False}


def _alternatives(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]


def _types(schema: Mapping[str, Any]) -> set[str]:
    types: set[str] = set()
    for alternative in _alternatives(schema):
        kind = alternative.get("type")
        types |= set(kind) if isinstance(kind, list) else {kind} if kind else set()
    return types


def coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with command-line strings turned into the types ``schema`` asks for."""
    if isinstance(value, dict):
        properties = {}
        for alternative in _alternatives(schema):
            properties.update(alternative.get("properties", {}))
        return {key: coerce(item, properties.get(key, {})) for key, item in value.items()}
    if isinstance(value, list):
        items = next((a["items"] for a in _alternatives(schema) if "items" in a), {})
        return [coerce(item, items) for item in value]
    if not isinstance(value, str):
        return value
    types = _types(schema)
    if "string" in types and not types & {"boolean", "integer", "number"}:
        return value
    if "boolean" in types and value.lower() in _BOOL:
        return _BOOL[value.lower()]
    if "integer" in types and _INT.fullmatch(value):
        return int(value)
    if "number" in types and _FLOAT.fullmatch(value):
        return float(value)
    return value


#: Top-level keys whose outputs lie outside the bag: ``drift_eval`` scores the bag after it
#: is verified (results/drift_eval/), ``reference_model`` is drift_eval's segmenter and
#: ``ome_zarr`` writes results/omezarr/. They are left out of the configuration the bag
#: records, so changing them never rebuilds the bundle.
OUTSIDE_BAG = ("drift_eval", "reference_model", "ome_zarr")


def recorded(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that shapes the bag (recorded in its provenance)."""
    return {key: value for key, value in config.items() if key not in OUTSIDE_BAG}
