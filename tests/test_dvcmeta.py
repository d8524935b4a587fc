"""DVC 3 metadata: our hashes equal DVC's (library, golden vector, real CLI round trip)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from bundle_utils import build, dvc_env, dvc_exe, make_inputs, run_dvc
from conftest import require, tree_digest, unavailable

from minivess_bundle.bundle.dvcmeta import dir_hash, file_md5, write_dvc_metadata


@pytest.fixture
def dvc_cli() -> str:
    """The dvc CLI (the test extra installs it); missing -> fail in CI, skip elsewhere."""
    exe = dvc_exe()
    if exe is None:
        unavailable("the dvc CLI is not installed (pip install -e '.[test]')")
    return exe


needs_dvc = pytest.mark.usefixtures("dvc_cli")


def dvc_data_build(path: Path, name: str = "md5"):
    """(meta, hash value, listing) of ``path`` as dvc-data computes them."""
    require("dvc_data")
    from dvc_data.hashfile.build import build as dvc_build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    odb = HashFileDB(fs, os.fspath(path.parent / ".dvc-odb"))
    _, meta, obj = dvc_build(odb, os.fspath(path), fs, name)
    listing = obj.as_list() if meta.isdir else None
    return meta, obj.hash_info.value, listing


def test_dir_hash_reproduces_dvcs_golden_vector(tmp_path):
    # dvc-data's tests/hashfile/test_build.py::test_build_directory
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "foo").write_bytes(b"foo")
    (tmp_path / "dir" / "bar").write_bytes(b"bar")
    tree = dir_hash(tmp_path / "dir")
    assert tree.md5 == "5ea40360f5b4ec688df672a4db9c17d1.dir"
    assert (tree.size, tree.nfiles) == (6, 2)
    assert tree.entries == [
        {"md5": "37b51d194a7513e45b56f6524f2d51f2", "relpath": "bar"},
        {"md5": "acbd18db4cc2f85cedef654fccc4a4d8", "relpath": "foo"},
    ]


def test_dir_hash_equals_dvc_data_on_nested_tree_with_crlf_unicode_and_empty_files(tmp_path):
    root = tmp_path / "tree"
    files = {
        "a.txt": b"line one\r\nline two\r\n",
        "b/c/deep.bin": bytes(range(256)) * 40,
        "b/empty": b"",
        "b-sibling/x.json": b'{"k": 1}\n',
        "b.sibling": b"dot sorts before slash",
        "caf\u00e9/na\u00efve.nii.gz": b"\x1f\x8b unicode names",
        "Z_upper": b"upper case sorts first",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    ours = dir_hash(root)
    meta, value, listing = dvc_data_build(root)
    assert ours.md5 == value
    assert (
        (ours.size, ours.nfiles)
        == (meta.size, meta.nfiles)
        == (
            sum(map(len, files.values())),
            len(files),
        )
    )
    assert ours.entries == listing


def test_file_hash_is_plain_md5_as_in_dvc_3_not_dos2unix(tmp_path):
    text = tmp_path / "crlf.txt"
    text.write_bytes(b"MiniVess\r\nvolume\r\n")
    plain = hashlib.md5(text.read_bytes()).hexdigest()
    unix = hashlib.md5(text.read_bytes().replace(b"\r\n", b"\n")).hexdigest()
    assert file_md5(text) == plain != unix
    assert dvc_data_build(text, "md5")[1] == plain  # DVC 3
    assert dvc_data_build(text, "md5-dos2unix")[1] == unix  # what DVC 2 recorded


@pytest.fixture
def bundle_dir(tmp_path):
    """results/bundle: the bag plus its DVC metadata."""
    out = tmp_path / "bundle"
    build(make_inputs(tmp_path / "in"), out)
    write_dvc_metadata(out / "minivess-0.1.0")
    return out


def test_dvc_files_have_dvc_3_shape(bundle_dir):
    import yaml

    whole = yaml.safe_load((bundle_dir / "minivess-0.1.0.dvc").read_text())
    (out,) = whole["outs"]
    assert list(out) == ["md5", "size", "nfiles", "hash", "path"]
    assert out["md5"].endswith(".dir") and out["hash"] == "md5"
    assert out["path"] == "minivess-0.1.0"
    raw = yaml.safe_load((bundle_dir / "dvc/parts/raw.dvc").read_text())["outs"][0]
    assert raw["path"] == "../../minivess-0.1.0/data/raw" and raw["nfiles"] == 6
    pipeline = yaml.safe_load((bundle_dir / "dvc/pipeline/dvc.yaml").read_text())
    assert pipeline["stages"]["download"]["frozen"] is True
    assert list(pipeline["stages"]) == ["download", "process", "drift"]


@needs_dvc
def test_dvc_add_writes_a_byte_identical_dvc_file(bundle_dir, tmp_path):
    repo = tmp_path / "repo-add"
    repo.mkdir()
    env = dvc_env(tmp_path)
    run_dvc(repo, env, "init", "--no-scm", "-q")
    shutil.copytree(bundle_dir / "minivess-0.1.0", repo / "minivess-0.1.0")
    run_dvc(repo, env, "add", "minivess-0.1.0")
    assert (repo / "minivess-0.1.0.dvc").read_bytes() == (
        bundle_dir / "minivess-0.1.0.dvc"
    ).read_bytes()


@needs_dvc
def test_dvc_accepts_the_bundle_dvc_file_and_push_pull_restores_identical_bytes(
    bundle_dir, tmp_path
):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dvc_env(tmp_path)
    run_dvc(repo, env, "init", "--no-scm", "-q")
    run_dvc(repo, env, "config", "core.analytics", "false")
    shutil.copytree(bundle_dir / "minivess-0.1.0", repo / "minivess-0.1.0")
    ours = (bundle_dir / "minivess-0.1.0.dvc").read_bytes()
    (repo / "minivess-0.1.0.dvc").write_bytes(ours)
    expected = tree_digest(repo / "minivess-0.1.0")

    run_dvc(repo, env, "commit", "-f", "minivess-0.1.0.dvc")  # rewrites it if a hash differed
    assert (repo / "minivess-0.1.0.dvc").read_bytes() == ours
    assert "up to date" in run_dvc(repo, env, "status")
    remote = tmp_path / "remote"
    run_dvc(repo, env, "remote", "add", "-d", "store", str(remote))
    run_dvc(repo, env, "push")
    unique = {file_md5(p) for p in (repo / "minivess-0.1.0").rglob("*") if p.is_file()}
    stored = sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())
    assert len(stored) == len(unique) + 1  # every distinct content once, plus the .dir listing

    shutil.rmtree(repo / "minivess-0.1.0")
    shutil.rmtree(repo / ".dvc" / "cache")
    run_dvc(repo, env, "pull")
    assert tree_digest(repo / "minivess-0.1.0") == expected
    assert "up to date" in run_dvc(repo, env, "status")


@needs_dvc
def test_dvc_accepts_the_part_files_and_the_pipeline_lock_unchanged(bundle_dir, tmp_path):
    env = dvc_env(tmp_path)
    for option, keep in (("parts", "dvc/parts"), ("pipeline", "dvc/pipeline")):
        repo = tmp_path / f"repo-{option}"
        repo.mkdir()
        run_dvc(repo, env, "init", "--no-scm", "-q")
        shutil.copytree(bundle_dir / "minivess-0.1.0", repo / "minivess-0.1.0")
        shutil.copytree(bundle_dir / keep, repo / keep)
        before = tree_digest(repo / keep)
        run_dvc(repo, env, "commit", "-f")  # rewrites .dvc files / dvc.lock if a hash differed
        assert tree_digest(repo / keep) == before, option
        status = run_dvc(repo, env, "status")
        assert "Data and pipelines are up to date." in status, status
    # Control: `dvc commit` does rewrite a .dvc file whose hash is wrong, so "unchanged"
    # above means DVC computed the same hashes.
    part = tmp_path / "repo-parts" / "dvc/parts/raw.dvc"
    good = part.read_text()
    part.write_text(good.replace(good.split("md5: ")[1][:32], "0" * 32))
    run_dvc(part.parents[2], env, "commit", "-f")
    assert part.read_text() == good


def test_known_md5s_from_the_copy_give_the_same_dvc_files_and_a_resized_file_is_rehashed(
    tmp_path,
):
    from minivess_bundle.bundle.dvcmeta import tree_files

    out = tmp_path / "bundle"
    summary = build(make_inputs(tmp_path / "in"), out)
    bag = Path(summary["path"])
    hashed = write_dvc_metadata(bag)
    known = {rel: (d["md5"], size) for rel, (size, d) in summary["digests"].items()}
    assert len(known) == 23 and all(rel.startswith("data/") for rel in known)
    assert write_dvc_metadata(bag, known=known) == hashed
    assert tree_files(bag, known) == tree_files(bag)
    # an entry whose size disagrees with the file is not trusted: the file is read again
    rel = "data/raw/imagesTr/mv01.nii.gz"
    stale = dict(known, **{rel: ("0" * 32, known[rel][1] + 1)})
    assert tree_files(bag, stale)[rel] == (file_md5(bag / rel), known[rel][1])
    # the known md5 is what DVC records (the bundle's own hashes, taken while copying)
    forged = dict(known, **{rel: ("f" * 32, known[rel][1])})
    assert tree_files(bag, forged)[rel] == ("f" * 32, known[rel][1])
