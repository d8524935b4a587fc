"""The workflow's configuration: its schema, defaults, types and one short line per problem.

The schema (:data:`SCHEMA_PATH`, package data) is the one source of
every default; :func:`default` reads one and :func:`with_defaults` fills them in.
:func:`schema_problems` turns a config into a list of short problems (the unknown key with
a "did you mean", the value against what was expected); :mod:`minivess_bundle.settings` adds
what only the stages know (drift kind names against the kind registry, source paths by their
config key) and is what the workflow calls first, before Snakemake builds any job. This
module imports no stage.

Snakemake parses a nested ``--config key='{a: false, b: [1, 3]}'`` with YAML's
BaseLoader, so every value inside arrives as a string (``'false'``, ``'1'``) and the
schema refuses it. :func:`coerce` turns such strings into the type the schema asks
for where that is unambiguous (``true``/``false`` for a boolean, an integer literal
for an integer, a number for a number), so ``--config drift='{enabled: false}'``
switches drift off. Anything else is left as it is for the schema to judge.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: The config schema, package data (the workflow and the CLI read it from here).
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "data" / "config.schema.yaml"
#: Most problems one error lists (a config can be wrong in many places; the rest are counted).
MAX_PROBLEMS = 20

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


# --- the schema and its defaults ------------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    """The schema, read once per process with libyaml where present (a job that needs a
    default pays ~ms; the duplicate-key check of the file is a test's)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader


def schema() -> dict[str, Any]:
    """The config schema (a fresh copy: callers may change it)."""
    return copy.deepcopy(_schema())


def _node(path: str) -> Mapping[str, Any]:
    node: Mapping[str, Any] = _schema()
    for key in path.split(".") if path else ():
        node = node["properties"][key]
    return node


def _default_of(node: Mapping[str, Any]) -> Any:
    value = copy.deepcopy(node.get("default", {} if "properties" in node else None))
    if isinstance(value, dict) and "properties" in node:
        for key, child in node["properties"].items():
            if key not in value and ("default" in child or "properties" in child):
                value[key] = _default_of(child)
    return value


def default(path: str) -> Any:
    """The schema's default at a dotted ``path`` (``"drift"``: the whole block, nested
    defaults filled in; ``"synthetic.size_xy"``: one value)."""
    return _default_of(_node(path))


def _fill(value: Any, node: Mapping[str, Any]) -> Any:
    if not isinstance(value, dict) or "properties" not in node:
        return value
    filled = dict(value)
    for key, child in node["properties"].items():
        if key not in filled and "default" in child:
            filled[key] = _default_of(child)
        if key in filled:
            filled[key] = _fill(filled[key], child)
    return filled


def with_defaults(config: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``config`` (the block at dotted ``path``) with every missing key at its schema default."""
    return _fill(dict(config), _node(path))


# --- YAML with no silent duplicate -------------------------------------------------------


def load_yaml(path: str | Path) -> Any:
    """A YAML file's content; a key given twice in one mapping is a :class:`ConfigError`
    naming both lines (PyYAML alone keeps the last one silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(
                        f"key {key!r} is given twice (lines {seen[key]} and {line})",
                        path=path,
                        expected="each key once per mapping",
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader


# --- one short line per problem ------------------------------------------------------------


class ConfigProblems(ConfigError):
    """Every problem of a config, one line each (``config: <key>: <problem>``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def format(self) -> str:
        shown = [f"config: {p}" for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"config: ... and {len(self.problems) - MAX_PROBLEMS} more problems")
        return "\n".join(shown)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 5] + " ...]"


def _where(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def suggest(word: Any, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


def _expected(node: Mapping[str, Any]) -> str:
    if "description" in node:
        return " ".join(str(node["description"]).split()).rstrip(".")
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    return " or ".join(_TYPE_NAMES.get(k, k) for k in kinds) or "a valid value"


def _schema_problem(error) -> list[str]:
    where = _where(error.absolute_path)
    prefix = f"{where}: " if where else ""
    node = error.schema
    if error.validator == "additionalProperties":
        known = list(node.get("properties", {}))
        listing = f" (keys: {', '.join(known)})"
        return [
            f"{prefix}unknown key {key!r}{suggest(key, known) or listing}"
            for key in error.instance
            if key not in known
        ]
    if error.validator == "enum":
        choices = ", ".join(map(str, node["enum"]))
        return [
            f"{prefix}{_short(error.instance)} is not one of {choices}"
            f"{suggest(error.instance, node['enum'])}"
        ]
    if error.validator == "type":
        return [f"{prefix}{_short(error.instance)} is not {_expected({'type': node['type']})}"]
    if error.validator in ("oneOf", "anyOf"):
        alternatives = [a.get("enum", [None])[0] for a in node[error.validator] if "enum" in a]
        hint = suggest(error.instance, alternatives) if isinstance(error.instance, str) else ""
        return [f"{prefix}{_short(error.instance)} — expected {_expected(node)}{hint}"]
    message = error.message.replace(repr(error.instance), _short(error.instance))
    return [f"{prefix}{message}"]


def schema_problems(config: Mapping[str, Any]) -> list[str]:
    """The problems of ``config`` against the schema, one short line each; [] if none."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.path])
    return [line for error in errors for line in _schema_problem(error)]


def typed(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` typed from the schema (:func:`coerce`) with the schema's defaults filled in."""
    return with_defaults(coerce(dict(config), _schema()))
