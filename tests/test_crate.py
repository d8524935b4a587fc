"""`minivess-bundle validate-crate`: roc-validator's verdict on a bag's RO-Crate with no
network, from the context the package ships."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_utils import build, make_inputs
from conftest import require

from minivess_bundle.consumers import crate
from minivess_bundle.core.errors import ConsumerError

#: sha256 of ro-crate-py 0.16.0's rocrate/data/ro-crate.jsonld (the RO-Crate 1.3 context).
CONTEXT_SHA256 = hashlib.sha256(crate.context_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crate")
    return Path(build(make_inputs(tmp / "in"), tmp / "out")["path"])


def run(*args: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, with every proxy pointing nowhere: any HTTP request
    would fail, so a pass proves the run is offline."""
    import os

    env = dict(os.environ, HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    env.update(http_proxy=env["HTTP_PROXY"], https_proxy=env["HTTPS_PROXY"], NO_PROXY="")
    return subprocess.run(
        [sys.executable, "-m", "minivess_bundle.cli", "validate-crate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_the_package_ships_the_ro_crate_1_3_context():
    context = json.loads(crate.context_bytes())
    assert context["@context"]["conformsTo"] == "http://purl.org/dc/terms/conformsTo"
    assert context["@context"]["File"] == "http://schema.org/MediaObject"
    assert len(context["@context"]) > 3000  # schema.org terms and RO-Crate's own
    assert crate.CONTEXT_URL == "https://w3id.org/ro/crate/1.3/context"
    assert len(crate.context_bytes()) > 20_000 and CONTEXT_SHA256


def test_validate_crate_passes_a_bag_offline_and_writes_the_report(bag, tmp_path):
    require("rocrate_validator")
    ran = run(str(bag), "--json", str(tmp_path / "report.json"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    first = ran.stdout.splitlines()[0]
    assert first.startswith("RO-Crate passed (") and "severity REQUIRED" in first
    assert first.endswith(" failed") and ", 0 failed" in first
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is True and report["issues"] == []
    assert "ro-crate-1.3" in report["statistics"]["profiles"]
    assert report["statistics"]["total_passed_checks"] >= 60


def test_a_broken_crate_fails_with_its_issue_named(bag, tmp_path):
    require("rocrate_validator")
    broken = tmp_path / "bag"
    subprocess.run(["cp", "-a", str(bag), str(broken)], check=True)
    metadata = broken / "data" / "ro-crate-metadata.json"
    crate_json = json.loads(metadata.read_text())
    for entity in crate_json["@graph"]:
        if entity["@id"] == "#minivess-bundle":
            del entity["url"]
    metadata.write_text(json.dumps(crate_json))
    ran = run(str(broken))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert ran.stdout.startswith("RO-Crate FAILED")
    assert "MUST have a `url` property ./#minivess-bundle" in ran.stdout


def test_no_crate_or_a_bad_severity_is_one_clear_error(tmp_path):
    with pytest.raises(ConsumerError, match=r"no ro-crate-metadata.json in the folder"):
        crate.crate_root(tmp_path)
    with pytest.raises(ConsumerError, match=r"severity 'LOW'"):
        crate.validate_crate(tmp_path, severity="LOW")
    ran = run(str(tmp_path))
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: consumer: validate-crate: no ro-crate-metadata.json")


def test_warm_cache_answers_the_context_url_from_the_shipped_file(tmp_path):
    require("requests_cache")
    from requests_cache import CachedSession

    name = crate.warm_cache(tmp_path / "cache" / "http")
    session = CachedSession(cache_name=str(name), backend="sqlite", expire_after=-1)
    response = session.get(crate.CONTEXT_URL, only_if_cached=True)
    assert response.status_code == 200 and response.from_cache
    assert hashlib.sha256(response.content).hexdigest() == CONTEXT_SHA256
    session.close()
