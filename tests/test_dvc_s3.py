"""The bag through DVC's S3 remote and back (issue #25, item 2).

A real S3-protocol server (moto's, the test extra) listens on 127.0.0.1; DVC (with dvc-s3)
pushes a tiny build's bag to a bucket there and pulls it into a fresh git clone, where
``minivess-bundle verify`` checks every file, manifest and DVC hash. The remote is configured
as docs/dvc-remotes.md tells a user to: endpoint and bucket in the committed .dvc/config, the
credentials in .dvc/config.local, which git never sees. Nothing leaves the machine: AWS's
config files and instance metadata are switched off, proxies bypassed for the loopback.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_utils import build, dvc_env, dvc_exe, make_inputs, run_dvc
from conftest import require, require_tool, tree_digest, unavailable

from minivess_bundle.bundle.dvcmeta import file_md5, write_dvc_metadata

BAG = "minivess-0.1.0"
BUCKET = "minivess-bundles"
PREFIX = "dvcstore"
# moto accepts any key pair; these stand in for a user's (and live in .dvc/config.local only).
KEY_ID, SECRET = "minivess-test-key", "minivess-test-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_endpoint(tmp_path, monkeypatch):
    """``http://127.0.0.1:<port>`` of a running moto S3 server, with an empty bucket."""
    require("moto.server", "pip install -c requirements/lock.txt -e '.[test]' (moto[server])")
    require("dvc_s3", "pip install -c requirements/lock.txt -e '.[test]' (dvc-s3)")
    boto3 = require("boto3")
    if dvc_exe() is None:
        unavailable("the dvc CLI is not installed (pip install -e '.[test]')")
    from moto.server import ThreadedMotoServer

    # No real AWS configuration, no instance-metadata lookups, no proxy for the loopback.
    for name, value in {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        server.stop()


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _credentials(repo: Path, env: dict[str, str]) -> None:
    """The key pair in .dvc/config.local, as docs/dvc-remotes.md shows."""
    run_dvc(repo, env, "remote", "modify", "--local", "store", "access_key_id", KEY_ID)
    run_dvc(repo, env, "remote", "modify", "--local", "store", "secret_access_key", SECRET)


def test_dvc_push_to_an_s3_server_and_pull_into_a_fresh_clone_gives_a_bag_that_verifies(
    s3_endpoint, tmp_path
):
    endpoint, client = s3_endpoint
    require_tool("git")
    env = dvc_env(tmp_path)
    built = tmp_path / "bundle"
    build(make_inputs(tmp_path / "in"), built)
    write_dvc_metadata(built / BAG)  # results/bundle: the bag, its .dvc, dvc/parts, dvc/pipeline

    # The authors' repository: the bundle's DVC files in git, the bag's bytes in the bucket.
    # (The whole bag's .dvc file; dvc/parts and dvc/pipeline are the alternatives to it.)
    repo = tmp_path / "repo"
    shutil.copytree(built / BAG, repo / BAG)
    ours = (built / f"{BAG}.dvc").read_bytes()
    (repo / f"{BAG}.dvc").write_bytes(ours)
    _git(repo, "init", "-q", "-b", "main")
    run_dvc(repo, env, "init", "-q")
    run_dvc(repo, env, "remote", "add", "-d", "store", f"s3://{BUCKET}/{PREFIX}")
    run_dvc(repo, env, "remote", "modify", "store", "endpointurl", endpoint)
    run_dvc(repo, env, "remote", "modify", "store", "region", "us-east-1")
    _credentials(repo, env)
    (repo / ".gitignore").write_text(f"/{BAG}\n")
    expected = tree_digest(repo / BAG)
    run_dvc(repo, env, "commit", "-f", f"{BAG}.dvc")  # into the cache; rewrites it if it differed
    assert (repo / f"{BAG}.dvc").read_bytes() == ours
    assert "up to date" in run_dvc(repo, env, "status")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bundle")
    tracked = _git(repo, "ls-files").split()
    assert f"{BAG}.dvc" in tracked and ".dvc/config" in tracked
    assert ".dvc/config.local" not in tracked and not any(t.startswith(f"{BAG}/") for t in tracked)
    assert KEY_ID not in (repo / ".dvc" / "config").read_text()

    run_dvc(repo, env, "push")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [item["Key"] for item in page.get("Contents", [])]
    contents = {file_md5(p) for p in (repo / BAG).rglob("*") if p.is_file()}
    # DVC 3's layout: files/md5/<2>/<30>, every distinct content once, plus the .dir listing.
    assert all(k.startswith(f"{PREFIX}/files/md5/") for k in keys), keys[:3]
    stored = {k.split("/")[-2] + k.split("/")[-1] for k in keys}
    assert contents <= stored and len(stored - contents) == 1
    (listing,) = stored - contents
    assert listing.endswith(".dir")
    whole = (repo / f"{BAG}.dvc").read_text()
    assert f"md5: {listing}" in whole

    # A user's fresh clone: no bag, no cache; credentials added locally; dvc pull.
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / BAG).exists() and not (clone / ".dvc" / "config.local").exists()
    _credentials(clone, env)
    run_dvc(clone, env, "pull")
    assert tree_digest(clone / BAG) == expected
    assert "up to date" in run_dvc(clone, env, "status")

    proc = subprocess.run(
        [sys.executable, "-m", "minivess_bundle.cli", "verify", BAG],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = [p for p in (clone / BAG / "data").rglob("*") if p.is_file()]
    assert proc.stdout.startswith(f"OK {BAG}: bag {BAG}, {len(payload)} payload files")
    assert ", 1 DVC hashes match" in proc.stdout, proc.stdout  # the pulled .dvc file's


def test_a_pull_from_a_bucket_that_lost_the_objects_fails_and_writes_no_file(s3_endpoint, tmp_path):
    """The other side of the round trip: the push reached the server (the object is there,
    under DVC's key), and a pull of what the server no longer holds fails loudly."""
    endpoint, client = s3_endpoint
    env = dvc_env(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    run_dvc(repo, env, "init", "--no-scm", "-q")
    # The two files as docs/dvc-remotes.md shows them (written directly: fewer dvc start-ups).
    (repo / ".dvc" / "config").write_text(
        "[core]\n    no_scm = True\n    remote = store\n['remote \"store\"']\n"
        f"    url = s3://{BUCKET}/{PREFIX}\n    endpointurl = {endpoint}\n    region = us-east-1\n"
    )
    (repo / ".dvc" / "config.local").write_text(
        f"['remote \"store\"']\n    access_key_id = {KEY_ID}\n    secret_access_key = {SECRET}\n"
    )
    (repo / "data.txt").write_text("a volume's bytes\n")
    run_dvc(repo, env, "add", "data.txt")
    run_dvc(repo, env, "push")
    digest = hashlib.md5(b"a volume's bytes\n").hexdigest()
    assert client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/files/md5/{digest[:2]}/{digest[2:]}")

    # The server lost the objects: a pull must fail and leave no file behind.
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    (repo / "data.txt").unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    with pytest.raises(AssertionError, match="dvc pull failed"):
        run_dvc(repo, env, "pull")
    assert not (repo / "data.txt").exists()
