"""One spec per stage: a stage's parameters are one dataclass, handed to its job as JSON.

The workflow builds a stage's spec with a package function from the config and the
files the rule declares (e.g. :func:`minivess_bundle.bundle.release.release_spec`), passes it
as one ``--spec`` argument, and the command maps it back onto the dataclass
(:func:`read`): a parameter is spelled as its config key and its dataclass field, never
again as a rule param, a shell flag and an argparse option.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def to_json(spec: Any) -> str:
    """``spec`` (a dataclass with a ``STAGE`` name) as compact, sorted JSON: what the
    rule's ``--spec`` carries (the same spec gives the same bytes, so Snakemake's params
    trigger sees only real changes)."""
    data = {"stage": spec.STAGE, "spec": dataclasses.asdict(spec)}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def read(cls: type[T], text: str) -> T:
    """The ``cls`` spec in ``text`` (JSON, or ``@path`` to a JSON file); a spec of another
    stage or with a field ``cls`` does not have is one clear error."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"spec is not JSON ({exc.msg} at {exc.pos})") from None
    stage = getattr(cls, "STAGE", "")
    if not isinstance(data, dict) or data.get("stage") != stage:
        found = data.get("stage") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"spec of stage {found!r}", expected=f"a {stage!r} spec")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data["spec"]) - fields)
    if unknown:
        raise ConfigError(f"{stage} spec: unknown fields {unknown}", expected=f"{sorted(fields)}")
    # a spec whose JSON shape differs from its fields' (tuples as lists) maps it back itself
    from_dict = getattr(cls, "from_dict", None)
    return from_dict(data["spec"]) if from_dict else cls(**data["spec"])
