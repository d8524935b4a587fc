"""The Snakemake Workflow Catalog's conventions (issue #25, item 5): the catalog file says what
the workflow supports and each claim holds; config/README.md documents every key of the schema
with the schema's default; and `snakedeploy deploy-workflow` from a local clone gives a
deployment (the workflow used as a Snakemake module) that builds the tiny config."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, require_tool, unavailable
from workflow_utils import SNAKEMAKE_TIMEOUT_S

from minivess_bundle.core.config import SCHEMA_PATH

SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
CONFIG_README = REPO / "config" / "README.md"
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv39"],
    "drift": {"levels": [1]},
}


def _leaves(properties: dict, prefix: str = "") -> dict[str, dict]:
    """{dotted key: its schema} for every leaf key of the config schema."""
    leaves = {}
    for key, spec in properties.items():
        if spec.get("type") == "object" and "properties" in spec:
            leaves |= _leaves(spec["properties"], f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = spec
    return leaves


def _reference_rows() -> dict[str, tuple[str, str]]:
    """{key: (allowed, default)} from config/README.md's tables."""
    rows = {}
    for line in CONFIG_README.read_text().splitlines():
        match = re.match(r"^\| `([a-z0-9_.]+)` \| (.*?) \| `(.*?)` \| (.+) \|$", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} documented twice"
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_config_readme_documents_every_schema_key_with_the_schemas_default():
    leaves, rows = _leaves(SCHEMA["properties"]), _reference_rows()
    assert len(leaves) > 50
    assert sorted(rows) == sorted(leaves), "config/README.md and the schema list other keys"
    wrong = {
        key: (default, spec.get("default"))
        for key, (_, default) in rows.items()
        if json.loads(default) != (spec := leaves[key]).get("default")
    }
    assert not wrong, f"documented default != schema default: {wrong}"
    for key, (allowed, _) in rows.items():  # every allowed value of an enum is named
        for value in leaves[key].get("enum", []):
            assert f"`{value}`" in allowed, (key, value)


def test_config_readme_names_every_shipped_value_that_is_not_the_schemas_default():
    """The one sentence on how config/config.yaml departs from the schema stays true."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    departures = []
    for key, spec in _leaves(SCHEMA["properties"]).items():
        node, present = config, True
        for part in key.split("."):
            present = isinstance(node, dict) and part in node
            node = node[part] if present else None
            if not present:
                break
        if not present:
            departures.append(key.rsplit(".", 1)[0] if "difficulty" in key else key)
        elif node != spec.get("default"):
            departures.append(key)
    assert departures, "config.yaml now equals the schema: update config/README.md"
    intro = CONFIG_README.read_text().split("## Every key", 1)[1].split("|", 1)[0]
    for key in sorted(set(departures)):
        assert f"`{key}`" in intro, f"config/README.md does not say config.yaml departs at {key}"


def test_catalog_file_has_the_catalogs_keys_and_each_claim_holds():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = catalog["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    assert usage["mandatory-flags"]["flags"] == ""  # the quick start needs no flag
    assert "config/README.md" in usage["mandatory-flags"]["desc"]
    stack = usage["software-stack-deployment"]
    assert stack == {"conda": True, "apptainer": True, "apptainer+conda": False, "report": True}
    # conda: every rule's env file exists; apptainer: one global container directive;
    # report: the rules' report captions exist (tests/test_envs.py checks the rules' side).
    assert (REPO / "envs" / "minivess.yaml").is_file()
    snakefile = (REPO / "Snakefile").read_text()
    assert re.findall(r"^container: ", snakefile, re.M) == ["container: "]
    captions = sorted(p.name for p in (REPO / "workflow" / "report").glob("*.rst"))
    assert "workflow.rst" in captions and len(captions) >= 5
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert re.search(r'^report: "../report/workflow.rst"$', rules, re.M)


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def _tracked_copy(dest: Path) -> Path:
    """The working tree's tracked files (what a clone of it holds) copied to ``dest`` and
    committed there (a clone of the working tree as it is, uncommitted edits included)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in (f.decode() for f in files if f):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "clone")
    return dest


@pytest.mark.workflow
def test_snakedeploy_deployment_from_a_local_clone_builds_the_tiny_config(tmp_path):
    bindir = Path(sys.executable).parent
    snakedeploy = shutil.which("snakedeploy", path=str(bindir)) or shutil.which("snakedeploy")
    if snakedeploy is None:
        unavailable("snakedeploy is not installed (pip install -e '.[test]')")
    require_tool("git")
    clone = _tracked_copy(tmp_path / "minivess-bundle")
    deployment = tmp_path / "my-analysis"
    result = subprocess.run(
        [snakedeploy, "deploy-workflow", str(clone), str(deployment), "--branch", "main"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # What snakedeploy laid out: our config and profiles, the licence, a module Snakefile.
    assert (deployment / "config" / "config.yaml").read_bytes() == (
        REPO / "config" / "config.yaml"
    ).read_bytes()
    assert (deployment / "profiles" / "default" / "config.yaml").is_file()
    assert (deployment / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    module = (deployment / "workflow" / "Snakefile").read_text()
    assert re.search(r"^module minivess_bundle:$", module, re.M), module
    assert "use rule * from minivess_bundle" in module
    # snakedeploy 0.17's local provider writes the repository's Snakefile path relative to the
    # deployment's own workflow/ folder (right for github(...)/gitlab(...) sources, not for a
    # folder); point it at the clone, as docs/deploy.md tells a user to.
    assert re.search(r'^\s+"Snakefile"$', module, re.M), module
    module = re.sub(r'^(\s+)"Snakefile"$', rf'\1"{clone / "Snakefile"}"', module, flags=re.M)
    (deployment / "workflow" / "Snakefile").write_text(module)

    config = yaml.safe_load((deployment / "config" / "config.yaml").read_text())
    for key, value in TINY.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (deployment / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = _digest(clone)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MINIVESS_GIT_COMMIT", None)
    result = subprocess.run(
        [str(bindir / "snakemake"), "--cores", "2", "all"],
        cwd=deployment,
        capture_output=True,
        text=True,
        env=env,
        timeout=SNAKEMAKE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    bundle = deployment / "results" / "bundle"
    verdict = (bundle / "minivess-0.1.0.verified.txt").read_text()
    assert verdict.startswith("OK minivess-0.1.0") and re.search(
        r", \d+ DVC hashes match;", verdict
    )
    raw = sorted(
        p.name for p in (bundle / "minivess-0.1.0" / "data" / "raw" / "imagesTr").iterdir()
    )
    assert raw == ["mv01.nii.gz", "mv02.nii.gz", "mv39.nii.gz"]
    provenance = json.loads((bundle / "minivess-0.1.0" / "data" / "provenance.json").read_text())
    assert provenance["config"]["volumes"] == TINY["volumes"]
    # The commit recorded is the workflow's (the clone's), not the deployment folder's (none).
    assert provenance["workflow"]["git_commit"] == _git(clone, "rev-parse", "HEAD").strip()
    # Everything landed in the deployment; the workflow's own folder is untouched.
    assert _digest(clone) == before


def _digest(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }
