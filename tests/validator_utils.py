"""The consumers' own validators, run offline on what the workflow writes.

roc-validator (``rocrate-validator``) fetches the RO-Crate JSON-LD context over HTTP
through a requests-cache SQLite cache; ``--offline`` serves only from that cache. CI has
no route to w3id.org, so :func:`rocrate_http_cache` fills a cache with the context shipped
in ``tests/data/ro-crate-1.3-context.jsonld`` (a copy of ro-crate-py 0.16.0's
``rocrate/data/ro-crate.jsonld``, the RO-Crate 1.3 context, CC0 1.0).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CONTEXT_FILE = DATA / "ro-crate-1.3-context.jsonld"
CONTEXT_URL = "https://w3id.org/ro/crate/1.3/context"


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
    """A requests-cache SQLite cache holding the RO-Crate 1.3 context; returns its name."""
    need("requests_cache")
    import requests
    import urllib3
    from requests_cache import CachedSession

    body = CONTEXT_FILE.read_bytes()
    session = CachedSession(cache_name=str(path), backend="sqlite", expire_after=-1)
    headers = {"Accept": "application/ld+json, application/json"}
    request = requests.Request("GET", CONTEXT_URL, headers=headers).prepare()
    response = requests.Response()
    response.status_code, response._content, response.url = 200, body, CONTEXT_URL
    response.request, response.encoding = request, "utf-8"
    response.headers["Content-Type"] = "application/ld+json"
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(body),
        headers={"Content-Type": "application/ld+json"},
        status=200,
        preload_content=False,
        request_url=CONTEXT_URL,
        request_method="GET",
    )
    session.cache.save_response(response)
    session.close()
    return path


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
