"""The consumers' own validators, run offline on what the workflow writes.

roc-validator (``rocrate-validator``) fetches the RO-Crate JSON-LD context over HTTP
through a requests-cache SQLite cache; ``--offline`` serves only from that cache. CI has
no route to w3id.org, so :func:`rocrate_http_cache` fills a cache with the context the
package ships (``minivess_bundle/data/ro-crate-1.3-context.jsonld``,
:mod:`minivess_bundle.consumers.crate`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def need(module: str):
    """Import ``module``; skip where it is missing, but FAIL in CI (``CI=true``)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed in CI ({exc}): install the test extras")
        pytest.skip(f"{module} not installed")


def rocrate_http_cache(path: Path) -> Path:
    """A requests-cache SQLite cache holding the RO-Crate 1.3 context; returns its name
    (the package's own cache fill, :func:`minivess_bundle.consumers.crate.warm_cache`)."""
    need("requests_cache")
    from minivess_bundle.consumers.crate import warm_cache

    return warm_cache(path)


def run_rocrate_validator(
    crate: Path, cache: Path, severity: str = "REQUIRED", profile: str = "ro-crate-1.3"
) -> dict:
    """``rocrate-validator validate --offline`` on ``crate``; the JSON report."""
    need("rocrate_validator")
    exe = shutil.which("rocrate-validator", path=str(Path(sys.executable).parent))
    assert exe, "rocrate-validator is not on this venv's PATH"
    report = cache.with_name(f"report-{severity}.json")
    subprocess.run(
        [
            exe,
            "validate",
            "--offline",
            "--cache-path",
            str(cache),
            "-p",
            profile,
            "-l",
            severity,
            "--no-paging",
            "-f",
            "json",
            "-o",
            str(report),
            str(crate),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # exit code 1 on failed checks: the report says which
    return json.loads(report.read_text())
