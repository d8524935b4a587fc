"""The archive: normalised headers, sorted entries, and the same sha256 from any build."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from bundle_utils import SDE, build, make_inputs
from conftest import require_tool, tree_digest

from minivess_bundle.bundle.archive import write_archive
from minivess_bundle.core.errors import BundleError


@pytest.fixture
def bag(tmp_path):
    return Path(build(make_inputs(tmp_path / "in"), tmp_path / "out")["path"])


def test_headers_have_sde_mtime_root_owner_normalised_modes_sorted_names_no_pax(bag, tmp_path):
    tar_path = tmp_path / "minivess-0.1.0.tar"
    digest = write_archive(bag, tar_path, SDE)
    raw = tar_path.read_bytes()
    assert digest == hashlib.sha256(raw).hexdigest()
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        assert tar.pax_headers == {}
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == "minivess-0.1.0"
    assert all(n == "minivess-0.1.0" or n.startswith("minivess-0.1.0/") for n in names)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (SDE, 0, 0, "", ""), m.name
        assert m.pax_headers == {}, m.name
        assert m.mode == (0o755 if m.isdir() else 0o644), m.name
        assert m.isdir() or m.isreg(), m.name  # hardlinked raw files stored as files
        header = raw[m.offset : m.offset + 512]
        assert header[156:157] in (b"0", b"5"), m.name  # no 'x'/'g' pax, no '1' hardlink
        assert header[257:265] == b"ustar  \x00"  # GNU magic
    files = [m.name for m in members if m.isreg()]
    on_disk = sorted(p.relative_to(bag.parent).as_posix() for p in bag.rglob("*") if p.is_file())
    assert files == on_disk and len([f for f in files if "/data/" in f]) == 23


def test_assembling_twice_from_other_paths_cwd_and_umask_gives_the_same_sha256(
    tmp_path, monkeypatch
):
    first_inputs = make_inputs(tmp_path / "a" / "in")
    monkeypatch.chdir(tmp_path / "a")
    bag1 = Path(build(first_inputs, tmp_path / "a" / "out")["path"])
    sha1 = write_archive(bag1, tmp_path / "a" / "minivess-0.1.0.tar", SDE)

    # Another absolute path, fresh inodes and mtimes (copytree), another cwd and umask.
    other = tmp_path / "b" / "deeper" / "checkout"
    shutil.copytree(tmp_path / "a" / "in", other / "in")
    base = first_inputs["raw"].parent
    second_inputs = {k: other / "in" / v.relative_to(base) for k, v in first_inputs.items()}
    monkeypatch.chdir(other)
    old = os.umask(0o077)
    try:
        bag2 = Path(build(second_inputs, other / "results" / "bundle")["path"])
        sha2 = write_archive(bag2, other / "minivess-0.1.0.tar", SDE)
    finally:
        os.umask(old)
    assert tree_digest(bag1) == tree_digest(bag2)
    assert sha1 == sha2
    assert (tmp_path / "a" / "minivess-0.1.0.tar").read_bytes() == (
        other / "minivess-0.1.0.tar"
    ).read_bytes()


def test_sha256_file_is_in_sha256sum_format_and_sha256sum_accepts_it(bag, tmp_path):
    digest = write_archive(bag, tmp_path / "minivess-0.1.0.tar", SDE)
    line = (tmp_path / "minivess-0.1.0.tar.sha256").read_text()
    assert line == f"{digest}  minivess-0.1.0.tar\n"
    if shutil.which("sha256sum"):
        check = subprocess.run(
            ["sha256sum", "-c", "minivess-0.1.0.tar.sha256"], cwd=tmp_path, capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_gzip_variant_has_mtime_zero_no_name_and_wraps_the_same_tar(bag, tmp_path):
    plain = write_archive(bag, tmp_path / "minivess-0.1.0.tar", SDE)
    gz_digest = write_archive(bag, tmp_path / "minivess-0.1.0.tar.gz", SDE, compress=True)
    data = (tmp_path / "minivess-0.1.0.tar.gz").read_bytes()
    assert gz_digest == hashlib.sha256(data).hexdigest()
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] & 0x08 == 0  # FNAME flag clear: no file name stored
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert hashlib.sha256(gzip.decompress(data)).hexdigest() == plain


def test_system_tar_extracts_the_bags_exact_bytes(bag, tmp_path):
    require_tool("tar")
    write_archive(bag, tmp_path / "minivess-0.1.0.tar", SDE)
    (tmp_path / "x").mkdir()
    subprocess.run(["tar", "-xf", "../minivess-0.1.0.tar"], cwd=tmp_path / "x", check=True)
    assert tree_digest(tmp_path / "x" / "minivess-0.1.0") == tree_digest(bag)
    extracted = tmp_path / "x" / "minivess-0.1.0" / "data" / "README.md"
    assert int(extracted.stat().st_mtime) == SDE


def test_links_in_the_bag_and_wrong_names_are_refused(bag, tmp_path):
    with pytest.raises(BundleError, match=r"<name>\.tar"):
        write_archive(bag, tmp_path / "minivess-0.1.0.zip", SDE)
    (bag / "data" / "link").symlink_to("README.md")
    with pytest.raises(BundleError, match="symbolic link"):
        write_archive(bag, tmp_path / "minivess-0.1.0.tar", SDE)
    assert not (tmp_path / "minivess-0.1.0.tar").exists()


def _tarfile_reference(bag: Path, mtime: int) -> bytes:
    """The archive as tarfile's stream writer gives it (what write_archive wrote before
    it wrote the tar itself): the bytes the fast writer must reproduce exactly."""
    import io

    from minivess_bundle.bundle.archive import _tarinfo, archive_members

    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        for name, path in archive_members(bag):
            info = _tarinfo(name, path, mtime)
            if info.isdir():
                tar.addfile(info)
            else:
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    return sink.getvalue()


@pytest.mark.parametrize("big", [0, (4 << 20) + 1])
def test_fast_writer_gives_tarfiles_bytes_for_long_names_odd_sizes_and_record_ends(tmp_path, big):
    """Long names (GNU long-name blocks), empty files, sizes at and around 512, an
    executable, a file over one 4 MiB read, and totals that end on and off a record."""
    bag = tmp_path / "minivess-0.1.0"
    deep = bag / "data" / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    rng = __import__("random").Random(5)
    for size in (0, 1, 511, 512, 513, 10240 - 512 * 3, 10240):
        (deep / f"{'f' * 90}-{size}.bin").write_bytes(rng.randbytes(size))
    (bag / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(bag / "run.sh", 0o755)
    if big:
        (bag / "data" / "big.bin").write_bytes(rng.randbytes(big))
    digest = write_archive(bag, tmp_path / "minivess-0.1.0.tar", SDE)
    written = (tmp_path / "minivess-0.1.0.tar").read_bytes()
    reference = _tarfile_reference(bag, SDE)
    assert len(written) % tarfile.RECORDSIZE == 0
    assert written == reference
    assert digest == hashlib.sha256(reference).hexdigest()
    assert b"././@LongLink" in written  # names over 100 characters took GNU blocks


def test_fast_writer_refuses_a_file_that_changes_size_while_archived(bag, tmp_path, monkeypatch):
    from minivess_bundle.bundle import archive

    real = archive._tarinfo

    def shrunk(name, path, mtime):
        info = real(name, path, mtime)
        if name.endswith("data/raw/imagesTr/mv01.nii.gz"):
            info.size += 1  # the header promised one byte more than the file gives
        return info

    monkeypatch.setattr(archive, "_tarinfo", shrunk)
    with pytest.raises(BundleError, match="changed size while archiving"):
        write_archive(bag, tmp_path / "minivess-0.1.0.tar", SDE)
    assert not (tmp_path / "minivess-0.1.0.tar").exists()
    assert not list(tmp_path.glob(".minivess-0.1.0.tar.tmp-*"))
