"""The user's configuration, checked before any job is planned: the schema's problems
(:mod:`minivess_bundle.core.config`), then what only the stages know — drift kind names against
the kind registry, and the source paths by their config key — one short line each.

An entry module beside :mod:`.cli`: the workflow (``common.smk``) and ``minivess-bundle config``
call :func:`validated`; the core stays free of stage imports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .core.config import ConfigProblems, load_yaml, schema_problems, suggest, typed
from .core.dataset import EBRAINS_ID


def _kind_problems(config: Mapping[str, Any]) -> list[str]:
    """Drift kind names against the registry (the one list of kinds)."""
    from .drift.kinds import KINDS, TRANSFORMS, CompoundDrift

    drift = config.get("drift", {})
    problems = []
    types = drift.get("types", "all")
    for i, kind in enumerate([] if types == "all" else types):
        if kind not in KINDS:
            problems.append(
                f"drift.types[{i}]: {kind!r} is not a drift kind{suggest(kind, KINDS)}"
                f" (kinds: {', '.join(KINDS)})"
            )
    base = drift.get("gradual", {}).get("base")
    if base is not None and base not in TRANSFORMS:
        problems.append(
            f"drift.gradual.base: {base!r} is not a single-volume kind{suggest(base, TRANSFORMS)}"
        )
    allowed = CompoundDrift.allowed()
    for i, kind in enumerate(drift.get("compound", {}).get("kinds", [])):
        if kind not in allowed:
            problems.append(
                f"drift.compound.kinds[{i}]: {kind!r} is not an image kind"
                f"{suggest(kind, allowed)} (image kinds: {', '.join(allowed)})"
            )
    return problems


def source_problems(config: Mapping[str, Any]) -> list[str]:
    """The source paths the config names, by their config key, checked on this machine
    (relative paths from the working directory): before any job is planned."""
    source = config.get("source")
    problems = []
    if source == "zip" and not config["zip"].get("url"):
        path = config["zip"].get("path", "")
        if not path:
            problems.append(
                "zip.path is empty but source is 'zip'; set it, e.g. "
                "--config source=zip zip='{path: /data/d-....zip}' (or zip.url)"
            )
        elif not os.path.isfile(path):
            problems.append(f"zip.path: no such file {path!r} (source: zip)")
    if source == "dir":
        path = config["dir"].get("path", "")
        if not path:
            problems.append(
                "dir.path is empty but source is 'dir'; set it, e.g. "
                "--config source=dir dir='{path: /data/minivess}'"
            )
        elif not os.path.isdir(path):
            problems.append(f"dir.path: no such folder {path!r} (source: dir)")
    bundle = config.get("ebrains", {}).get("ca_bundle", "")
    if source == "ebrains" and bundle and not os.path.isfile(bundle):
        problems.append(f"ebrains.ca_bundle: no such file {bundle!r}")
    return problems


def check(config: Mapping[str, Any]) -> list[str]:
    """Every problem of ``config`` (typed and defaulted), one short line each; [] if none."""
    problems = schema_problems(config)
    if problems:
        return problems
    return _kind_problems(config) + source_problems(config)


def validated(config: Mapping[str, Any], files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """``config`` typed (:func:`coerce`) and with the schema's defaults, or
    :class:`ConfigProblems` listing every problem, one line each. ``files``: the config
    files it was read from, checked for a key given twice (which YAML keeps silently)."""
    for path in files:
        load_yaml(path)
    config = typed(config)
    problems = check(config)
    if problems:
        raise ConfigProblems(problems)
    if not config["ebrains"]["dataset_id"]:
        config["ebrains"] = {**config["ebrains"], "dataset_id": EBRAINS_ID}
    return config
