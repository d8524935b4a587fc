"""Rename (inside each fetch job): new names, untouched bytes, moves or verified copies,
the job's own staging folder, clear errors."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from minivess_bundle.core import fsio
from minivess_bundle.core.errors import ConfigError, LoaderError, RenameError
from minivess_bundle.core.fsio import sha256_file
from minivess_bundle.core.volumes import renamed_names, staging_names
from minivess_bundle.fetch.rename import inventory, job_staging, land_renamed


def _paths(root, names):
    return {k: root / v for k, v in names.items()}


def _staged(tiny_staging, tmp_path, vol):
    """A copy of ``vol``'s staged files (landing moves them)."""
    folder = tmp_path / f"staged-{vol}"
    sources = _paths(folder, staging_names(vol))
    for role, path in sources.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_staging / staging_names(vol)[role], path)
    return sources


def test_landing_moves_each_staged_file_to_its_new_name_with_identical_bytes(
    tiny_staging, tmp_path
):
    sources = _staged(tiny_staging, tmp_path, "mv01")
    digests = {role: sha256_file(path) for role, path in sources.items()}
    inodes = {role: path.stat().st_ino for role, path in sources.items()}
    targets = _paths(tmp_path / "renamed", renamed_names("mv01"))
    placed = land_renamed("mv01", sources, targets)
    assert [p["method"] for p in placed] == ["move"] * 3
    for role in sources:
        assert not sources[role].exists()
        assert targets[role].stat().st_ino == inodes[role]  # moved: no byte rewritten
        assert sha256_file(targets[role]) == digests[role]


def test_a_staged_file_with_another_name_is_copied_and_verified_not_moved(tmp_path):
    cache = tmp_path / "cache" / "mv01.nii.gz"  # as the EBRAINS object cache hardlinks it
    cache.parent.mkdir()
    cache.write_bytes(b"volume bytes")
    staged = tmp_path / "staging" / "raw" / "mv01.nii.gz"
    staged.parent.mkdir(parents=True)
    os.link(cache, staged)
    target = tmp_path / "renamed" / "imagesTr" / "mv01.nii.gz"
    placed = land_renamed("mv01", {"image": staged}, {"image": target})
    assert placed[0]["method"] == "copy"
    assert target.read_bytes() == b"volume bytes"
    assert not os.path.samefile(cache, target)  # no output shares the cache's inode
    assert target.stat().st_nlink == 1


def test_job_staging_is_the_jobs_own_and_removed_after_even_on_failure(tmp_path):
    root = tmp_path / "staging"
    stale = root / "mv01.killed"  # what a SIGKILLed fetch of mv01 left
    (stale / "raw").mkdir(parents=True)
    (stale / "raw" / "mv01.nii.gz").write_bytes(b"half")
    other = root / "mv02.running"  # another volume's: not ours to touch
    other.mkdir()
    with pytest.raises(RuntimeError, match="source failed"), job_staging(root, "mv01") as mine:
        assert mine.parent == root and mine.name.startswith("mv01.")
        assert not stale.exists()
        (mine / "raw").mkdir()
        (mine / "raw" / "mv01.nii.gz").write_bytes(b"partial")
        raise RuntimeError("source failed")
    assert sorted(p.name for p in root.iterdir()) == ["mv02.running"]


def test_copy_that_differs_from_its_source_is_refused_and_removed(tmp_path, monkeypatch):
    source = tmp_path / "a.bin"
    source.write_bytes(b"original bytes")
    os.link(source, tmp_path / "a-cached.bin")  # a second name: copied, not moved
    monkeypatch.setattr(fsio.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links")))
    monkeypatch.setattr(
        fsio, "copy_extents", lambda s, d: Path(d).write_bytes(b"corrupted!!!!!") and "copy"
    )
    with pytest.raises(RenameError, match="does not match its source"):
        land_renamed(
            "mv01",
            {"image": source, "label": source, "metadata": source},
            {r: tmp_path / "out" / f"{r}.bin" for r in ("image", "label", "metadata")},
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_copy_that_fills_the_disk_leaves_no_temporary_file_and_names_the_final_one(
    tmp_path, monkeypatch
):
    import errno

    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 4096)
    os.link(source, tmp_path / "a-cached.bin")  # a second name: copied, not moved
    final = tmp_path / "out" / "a.bin"

    def copy_half_then_fail(src, dst):  # as the copy fails on a full disk
        Path(dst).write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(fsio, "copy_extents", copy_half_then_fail)
    with pytest.raises(OSError) as raised:
        fsio.link_or_copy(source, final, allow_link=False)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(final))
    assert raised.value.strerror == "No space left on device while writing"
    assert list((tmp_path / "out").iterdir()) == []  # the half-written temporary is gone
    with pytest.raises(RenameError) as said:
        land_renamed(
            "mv01",
            dict.fromkeys(("image", "label", "metadata"), source),
            {r: tmp_path / "out" / f"{r}.bin" for r in ("image", "label", "metadata")},
        )
    image = tmp_path / "out" / "image.bin"
    assert str(said.value) == (
        f"mv01: rename: cannot place file: No space left on device while writing ({image})"
    )


def test_temporaries_left_by_killed_writers_are_removed_by_the_next_write(tmp_path):
    final = tmp_path / "out" / "a.bin"
    final.parent.mkdir()
    stale = [final.with_name(f".a.bin.tmp-{pid}") for pid in (123, 4567)]
    for path in stale:
        path.write_bytes(b"half a file from a SIGKILLed job")
    other = final.with_name(".b.bin.tmp-123")  # another output's: not ours to touch
    other.write_bytes(b"x")
    fsio.write_bytes_atomic(final, b"new")
    assert sorted(p.name for p in final.parent.iterdir()) == [".b.bin.tmp-123", "a.bin"]
    stale[0].write_bytes(b"again")
    fsio.link_or_copy(other, final, allow_link=False)
    assert sorted(p.name for p in final.parent.iterdir()) == [".b.bin.tmp-123", "a.bin"]
    assert final.read_bytes() == b"x"


def test_missing_source_names_volume_and_file(tiny_staging, tmp_path):
    sources = _staged(tiny_staging, tmp_path, "mv39")
    sources["label"].unlink()
    with pytest.raises(RenameError, match=r"^mv39: rename: source file is missing \(.*mv39_y"):
        land_renamed("mv39", sources, _paths(tmp_path / "r", renamed_names("mv39")))


def test_inventory_lists_pairs_with_hashes(tiny_staging, tmp_path):
    out = tmp_path / "renamed"
    for vol in ("mv01", "mv02", "mv39"):
        land_renamed(vol, _staged(tiny_staging, tmp_path, vol), _paths(out, renamed_names(vol)))
    result = inventory(out)
    assert result["count"] == 3 and [v["id"] for v in result["volumes"]] == ["mv01", "mv02", "mv39"]
    first = result["volumes"][0]
    assert first["label"]["path"] == "labelsTr/mv01.nii.gz"
    assert first["label"]["sha256"] == sha256_file(tiny_staging / "seg" / "mv01_y.nii.gz")


# --- Names outside mvNN (issue #10) -------------------------------------------


def _touch(root, *rels):
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\x1f\x8b" + rel.encode())


@pytest.mark.parametrize(
    ("image", "label"),
    [("MV01", "mv01"), ("mv1", "mv01"), ("mv01 ", "mv01"), ("mv02", "Mv002")],
)
def test_inventory_calls_out_orphans_that_differ_only_in_case_spaces_or_padding(
    tmp_path, image, label
):
    _touch(tmp_path, f"imagesTr/{image}.nii.gz", f"labelsTr/{label}.nii.gz")

    with pytest.raises(LoaderError) as err:
        inventory(tmp_path)

    assert str(err.value) == (
        f"loader: image {tmp_path / 'imagesTr' / image}.nii.gz has no label, label "
        f"{tmp_path / 'labelsTr' / label}.nii.gz has no image; near misses (ids differ only in "
        f"case, spaces or zero padding): image {image!r} vs label {label!r} — expected one "
        f"labelsTr/<id>.nii.gz per imagesTr/<id>.nii.gz ({tmp_path})"
    )


def test_inventory_orphans_without_a_near_miss_get_no_hint(tmp_path):
    _touch(tmp_path, "imagesTr/mv01.nii.gz", "labelsTr/mv10.nii.gz")

    with pytest.raises(LoaderError) as err:
        inventory(tmp_path)

    assert "has no image" in str(err.value) and "near misses" not in str(err.value)


def test_inventory_ignores_stray_files_and_lists_only_pairs(tmp_path):
    _touch(
        tmp_path,
        "imagesTr/mv01.nii.gz",
        "labelsTr/mv01.nii.gz",
        "imagesTr/notes.txt",
        "labelsTr/mv01.nii.gz.bak",
        "metadata/notes.txt",
    )

    result = inventory(tmp_path)

    assert result["count"] == 1
    assert [sorted(v) for v in result["volumes"]] == [["id", "image", "label"]]


@pytest.mark.parametrize("volume", ["../mv01", "mv1", "MV01", "mv100", "mv01 "])
def test_rename_refuses_ids_outside_mvnn_and_writes_nothing(tiny_staging, tmp_path, volume):
    sources = _staged(tiny_staging, tmp_path, "mv01")
    targets = {r: tmp_path / "results" / f"{r}.nii.gz" for r in ("image", "label", "metadata")}

    with pytest.raises(ConfigError, match=rf"volume id {re.escape(repr(volume))} is not allowed"):
        land_renamed(volume, sources, targets)

    assert not (tmp_path / "results").exists()


def test_copy_extents_gives_the_bytes_and_falls_back_where_the_kernel_refuses(
    tmp_path, monkeypatch
):
    import errno
    import os

    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(3 << 20) + b"tail")
    assert fsio.copy_extents(source, tmp_path / "b.bin") == "copy"
    assert (tmp_path / "b.bin").read_bytes() == source.read_bytes()

    def refuse(*args):  # another file system on an older kernel
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(fsio.os, "copy_file_range", refuse)
    assert fsio.copy_extents(source, tmp_path / "c.bin") == "copy"
    assert (tmp_path / "c.bin").read_bytes() == source.read_bytes()

    def full(*args):  # a full disk is not a reason to try again another way
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio.os, "copy_file_range", full)
    with pytest.raises(OSError) as raised:
        fsio.copy_extents(source, tmp_path / "d.bin")
    assert raised.value.errno == errno.ENOSPC
