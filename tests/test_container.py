"""The one-shot container (Containerfile): a build in the image equals the host's, and its
files belong to the calling user.

Needs podman and the image (`bash .ci/podman.sh` builds it; CI does). Elsewhere skipped; under
CI a missing podman or image fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tree_digest, unavailable
from workflow_utils import build_digest, make_workdir, release_tree, run_snakemake

pytestmark = [pytest.mark.container, pytest.mark.workflow]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = os.environ.get("MINIVESS_IMAGE", f"localhost/minivess-bundle:{VERSION}")
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv39"],
    "drift": {"types": ["intensity", "topology"], "levels": [1]},
}
RUN_BOUND_S = 600
# What the image copies from the repository; a difference means the image is stale.
SHIPPED = ("Snakefile", "workflow", "config", "profiles", "envs", "src", "requirements")


# The runtime settings .ci/podman.sh writes (runc, ulimits this machine allows): used when
# the caller has not chosen a CONTAINERS_CONF, as in a plain `pytest` after `bash .ci/podman.sh`.
_PODMAN_CONF = Path(os.environ.get("PODMAN_WORK", "/var/tmp/minivess-podman")) / "containers.conf"
if not os.environ.get("CONTAINERS_CONF") and _PODMAN_CONF.is_file():
    os.environ["CONTAINERS_CONF"] = str(_PODMAN_CONF)


def _container_problem() -> str | None:
    """Why the container tests cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman not installed (CI: bash .ci/podman.sh)"
    try:
        exists = subprocess.run(["podman", "image", "exists", IMAGE], timeout=RUN_BOUND_S)
        if exists.returncode != 0:
            return f"image {IMAGE} missing (build it: bash .ci/podman.sh)"
        started = subprocess.run(
            [
                "podman",
                "run",
                "--rm",
                "--pull=never",
                "--entrypoint",
                "/bin/sh",
                IMAGE,
                "-c",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_BOUND_S,
        )
    except subprocess.TimeoutExpired:
        return "podman did not answer in time"
    if started.returncode != 0:
        last = (started.stderr.strip().splitlines() or ["?"])[-1]
        return f"podman cannot start a container here ({last})"
    return None


_PROBLEM = _container_problem()


@pytest.fixture(scope="module", autouse=True)
def _container_ready():
    """CI builds the image first (.ci/podman.sh): there a problem is a failure, not a skip."""
    if _PROBLEM:
        unavailable(f"container unavailable: {_PROBLEM}")


def _caller() -> tuple[int, int]:
    """The uid:gid the container runs as: a non-root user (1000) when the tests run as root,
    else the caller's own ids."""
    return (1000, 1000) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def podman_run(
    results: Path, *args: str, volumes: tuple[str, ...] = (), options: tuple[str, ...] = ()
):
    """``podman run --rm`` of the image's entrypoint with ``results`` as /results, as the
    caller's uid:gid (rootless podman: --userns=keep-id), bounded by ``timeout -s KILL``."""
    uid, gid = _caller()
    if os.geteuid() == 0:
        shutil.chown(results, uid, gid)
        for path in results.rglob("*"):
            os.chown(path, uid, gid, follow_symlinks=False)
        identity = ["--user", f"{uid}:{gid}"]
    else:
        identity = ["--userns=keep-id", "--user", f"{uid}:{gid}"]
    mounts = [arg for volume in volumes for arg in ("-v", volume)]
    command = [
        "timeout",
        "-s",
        "KILL",
        str(RUN_BOUND_S),
        "podman",
        "run",
        "--rm",
        "--pull=never",
        *identity,
        "-v",
        f"{results}:/results",
        *mounts,
        *options,
        IMAGE,
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True)


def _shipped(rel: str) -> bool:
    return "__pycache__" not in rel and ".egg-info" not in rel


def _shipped_digest_in_image() -> dict[str, str]:
    script = "cd /opt/minivess && find " + " ".join(SHIPPED) + " -type f -exec sha256sum {} +"
    result = subprocess.run(
        ["podman", "run", "--rm", "--pull=never", "--entrypoint", "/bin/sh", IMAGE, "-c", script],
        capture_output=True,
        text=True,
        timeout=RUN_BOUND_S,
        check=True,
    )
    digests = (line.split(None, 1) for line in result.stdout.splitlines())
    return {path.strip(): digest for digest, path in digests if _shipped(path)}


def _shipped_digest_here() -> dict[str, str]:
    files = {}
    for name in SHIPPED:
        root = REPO / name
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            rel = path.relative_to(REPO).as_posix()
            if _shipped(rel):
                files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.fixture(scope="module", autouse=True)
def image_matches_the_working_tree(_container_ready):
    """The image must hold this tree's workflow and package, else comparing digests is moot."""
    inside, here = _shipped_digest_in_image(), _shipped_digest_here()
    if inside != here:
        changed = sorted(k for k in inside.keys() | here.keys() if inside.get(k) != here.get(k))
        message = (
            f"image {IMAGE} is stale ({', '.join(changed[:5])}...); rebuild: bash .ci/podman.sh"
        )
        unavailable(message)


@pytest.fixture(scope="module")
def host_run(tmp_path_factory) -> Path:
    workdir = make_workdir(tmp_path_factory.mktemp("host"), **TINY)
    run_snakemake(workdir, "--cores", "2", "all")
    return workdir


@pytest.fixture(scope="module")
def container_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("container"), **TINY)
    result = podman_run(workdir, "--cores", "2", "all")
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return workdir, result


def test_container_build_digest_equals_the_host_build(container_run, host_run):
    workdir, _ = container_run
    assert build_digest(workdir) == build_digest(host_run)


def test_container_files_belong_to_the_calling_user_not_root(container_run):
    workdir, _ = container_run
    uid, gid = _caller()
    paths = [workdir, *workdir.rglob("*")]
    assert len(paths) > 20
    wrong = [
        (p, p.lstat().st_uid, p.lstat().st_gid)
        for p in paths
        if (p.lstat().st_uid, p.lstat().st_gid) != (uid, gid)
    ]
    assert not wrong, wrong[:5]


def test_container_copies_the_default_config_into_an_empty_results_folder(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    target = "results/renamed_inventory.json"  # a dry run of the foundation stages is enough
    result = podman_run(results, "--cores", "1", target, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    copied = results / "config" / "config.yaml"
    assert copied.read_bytes() == (REPO / "config" / "config.yaml").read_bytes()
    assert (copied.stat().st_uid, copied.stat().st_gid) == _caller()
    # An existing config is the user's and is kept.
    copied.write_text(yaml.safe_dump({"source": "synthetic", "volumes": ["mv07"]}))
    result = podman_run(results, "--cores", "1", target, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    said = result.stdout + result.stderr  # the dry-run plan (the quiet logger's stream)
    assert "mv07" in said and "mv01" not in said
    assert yaml.safe_load(copied.read_text())["volumes"] == ["mv07"]


def test_container_reads_a_local_zip_mounted_read_only(host_run, tmp_path):
    """The README's recipe: -v /local/dir:/data:ro and --config source=zip zip='{path: ...}'."""
    data = tmp_path / "data"
    data.mkdir()
    staging = release_tree(host_run, tmp_path / "release")
    with zipfile.ZipFile(data / "minivess.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(staging.rglob("*")):
            rel = file.relative_to(staging).as_posix()
            if file.is_file() and rel.split("/")[0] in {"raw", "seg", "json"}:
                archive.write(file, rel)
        archive.writestr("Licence (CCBY-NC-SA).pdf", b"%PDF-1.4 licence stand-in\n")
    results = tmp_path / "results"
    results.mkdir()
    volumes = "[" + ",".join(TINY["volumes"]) + "]"
    result = podman_run(
        results,
        "--cores",
        "2",
        "all",
        "--config",
        "source=zip",
        "zip={path: /data/minivess.zip}",
        f"volumes={volumes}",
        volumes=(f"{data}:/data:ro",),
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for layout in ("imagesTr", "labelsTr"):
        assert tree_digest(results / "results" / "renamed" / layout) == tree_digest(
            host_run / "results" / "renamed" / layout
        )


def _image_id() -> str:
    return subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        timeout=RUN_BOUND_S,
        check=True,
    ).stdout.strip()


def test_privileged_container_records_its_image_id_in_the_provenance(host_run, tmp_path):
    """Podman exposes the image in /run/.containerenv to --privileged containers; the bundle
    records it (provenance stages.container) and it equals `podman image inspect`'s id.
    Unprivileged (the test above) nothing is recorded, so that build equals the host's."""
    import json

    workdir = make_workdir(tmp_path / "privileged", **TINY)
    result = podman_run(workdir, "--cores", "2", "all", options=("--privileged",))
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    data = "results/bundle/minivess-0.1.0/data"
    recorded = json.loads((workdir / data / "provenance.json").read_text())["stages"]["container"]
    assert recorded["imageid"] == _image_id()
    assert recorded["image"] == IMAGE
    assert recorded["engine"].startswith("podman-")
    host = json.loads((host_run / data / "provenance.json").read_text())
    assert host["stages"]["container"] is None
    for section in ("raw", "processed"):  # the same bytes, only the provenance says more
        assert tree_digest(workdir / data / section) == tree_digest(host_run / data / section)


def test_two_no_cache_builds_of_the_image_have_the_same_id():
    """`.ci/podman.sh` (REPRODUCE=1, the default in CI) builds the Containerfile twice without
    cache and fails unless the image ids are equal; here: it did, for this image."""
    record = _PODMAN_CONF.parent / "reproducible.txt"
    if not record.is_file():
        unavailable(f"no {record}: run REPRODUCE=1 bash .ci/podman.sh")
    first, second = record.read_text().split()
    assert first == second
    assert first == _image_id()
