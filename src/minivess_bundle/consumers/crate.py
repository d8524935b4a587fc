"""Validate a bag's RO-Crate with roc-validator, offline.

roc-validator (``rocrate-validator``) fetches the RO-Crate 1.3 JSON-LD context
(``https://w3id.org/ro/crate/1.3/context``) over HTTP through a requests-cache SQLite
cache; its ``--offline`` mode serves only from that cache, and ``rocrate-validator
cache warm`` needs the network to fill it. The package ships the context
(``data/ro-crate-1.3-context.jsonld``: ro-crate-py 0.16.0's ``rocrate/data/ro-crate.jsonld``,
the RO-Crate 1.3 context, CC0 1.0) and :func:`warm_cache` stores it in a cache as the
answer to that URL, so :func:`validate_crate` runs with no network at all.

A consumer: roc-validator (the ``test`` extra) is imported only here, only when asked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ..core.errors import ConsumerError

#: The context every bag's ``ro-crate-metadata.json`` names, and the file that answers it.
CONTEXT_URL = "https://w3id.org/ro/crate/1.3/context"
CONTEXT_RESOURCE = "ro-crate-1.3-context.jsonld"
METADATA = "ro-crate-metadata.json"
SEVERITIES = ("REQUIRED", "RECOMMENDED", "OPTIONAL")
DEFAULT_PROFILE = "ro-crate-1.3"


def context_bytes() -> bytes:
    """The RO-Crate 1.3 JSON-LD context shipped with the package."""
    from importlib import resources

    return resources.files("minivess_bundle").joinpath("data", CONTEXT_RESOURCE).read_bytes()


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConsumerError(
            f"validate-crate: {module} is not installed ({exc})",
            expected="roc-validator: pip install -c requirements/lock.txt -e '.[test]'",
        ) from exc


def warm_cache(cache: str | Path) -> Path:
    """A requests-cache SQLite cache (``cache``, a name without ``.sqlite``) holding the
    RO-Crate 1.3 context as roc-validator would have fetched it; returns ``cache``."""
    import io

    _need("requests_cache")
    import requests
    import urllib3
    from requests_cache import CachedSession

    body = context_bytes()
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    session = CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1)
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
    return Path(cache)


def crate_root(path: str | Path) -> Path:
    """The crate folder of a bag (``<bag>/data``) or of a crate given directly."""
    path = Path(path)
    for root in (path / "data", path):
        if (root / METADATA).is_file():
            return root
    raise ConsumerError(
        f"validate-crate: no {METADATA} in the folder or its data/", path=path, expected="a bag"
    )


_RUN_CLI = (
    "import sys; from rocrate_validator.cli import cli; "
    "sys.argv[0] = 'rocrate-validator'; sys.exit(cli())"
)


def validate_crate(
    path: str | Path,
    severity: str = "REQUIRED",
    profile: str = DEFAULT_PROFILE,
    cache: str | Path | None = None,
    timeout_s: int = 600,
) -> dict[str, Any]:
    """roc-validator's JSON report on the crate of ``path`` (a bag or a crate folder) at
    ``severity`` against ``profile``, offline; ``cache`` (default: a temporary one) is
    warmed with the shipped context first."""
    if severity not in SEVERITIES:
        raise ConsumerError(f"validate-crate: severity {severity!r}", expected=str(SEVERITIES))
    root = crate_root(path)
    _need("rocrate_validator")
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="minivess-crate-") as tmp:
        cache_name = Path(cache) if cache else Path(tmp) / "http-cache"
        warm_cache(cache_name)
        report = Path(tmp) / "report.json"
        ran = subprocess.run(
            [sys.executable, "-c", _RUN_CLI, "validate", "--offline"]
            + ["--cache-path", str(cache_name), "-p", profile, "-l", severity]
            + ["--no-paging", "-f", "json", "-o", str(report), str(root)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )  # exit code 1 on failed checks: the report says which
        if not report.is_file():
            tail = (ran.stderr or ran.stdout).strip().splitlines()[-3:]
            raise ConsumerError(
                f"validate-crate: roc-validator wrote no report (exit {ran.returncode}: "
                f"{' / '.join(tail)})",
                path=root,
            )
        return json.loads(report.read_text(encoding="utf-8"))


def summary(report: dict[str, Any], severity: str = "REQUIRED") -> list[str]:
    """Lines for the console: the verdict, the counts, then one line per issue."""
    stats = report.get("statistics", {})
    verdict = "passed" if report.get("passed") else "FAILED"
    lines = [
        f"RO-Crate {verdict} ({', '.join(stats.get('profiles', []))}, severity "
        f"{severity}): {stats.get('total_passed_checks', 0)} checks passed, "
        f"{stats.get('total_failed_checks', 0)} failed"
    ]
    for issue in report.get("issues", []):
        check = issue.get("check", {}).get("identifier", "?")
        where = issue.get("violatingEntity") or ""
        lines.append(f"  {issue.get('severity', '?')} {check}: {issue.get('message', '')} {where}")
    return lines
