"""verify: an intact bundle passes; every kind of tampering is named, and bagit agrees."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
from bundle_utils import SDE, build, make_inputs
from conftest import require

from minivess_bundle.bundle.archive import write_archive
from minivess_bundle.bundle.dvcmeta import write_dvc_metadata
from minivess_bundle.bundle.verify import verdict, verify_bundle
from minivess_bundle.core.errors import BundleError

bagit = require("bagit")


@pytest.fixture
def bundle(tmp_path):
    """results/bundle with the bag, its DVC metadata and the archive; the bag is a copy."""
    out = tmp_path / "bundle"
    build(make_inputs(tmp_path / "in"), out)
    bag = out / "minivess-0.1.0"
    # Tampering must not reach the inputs through the raw hardlinks: use a plain copy.
    shutil.copytree(bag, tmp_path / "copy")
    shutil.rmtree(bag)
    shutil.move(tmp_path / "copy", bag)
    write_dvc_metadata(bag)
    write_archive(bag, out / "minivess-0.1.0.tar", SDE)
    return out


def bagit_errors(bag: Path) -> str:
    """bagit-python's verdict: validation must fail; returns its messages and file lists."""
    checked = bagit.Bag(str(bag))
    with pytest.raises(bagit.BagValidationError) as caught:
        checked.validate()
    only_in_manifest, only_on_disk = checked.compare_manifests_with_fs()
    details = [str(d) for d in getattr(caught.value, "details", None) or []]
    return " ".join([str(caught.value), *details, *only_in_manifest, *only_on_disk])


def test_intact_folder_and_archive_pass_with_their_digests(bundle):
    folder = verify_bundle(bundle / "minivess-0.1.0")
    assert folder.ok, folder.problems
    manifest = (bundle / "minivess-0.1.0" / "manifest-sha256.txt").read_bytes()
    assert folder.digest == hashlib.sha256(manifest).hexdigest()
    assert (folder.payload_files, folder.digest_of) == (23, "manifest-sha256.txt")
    # whole bag + 3 parts + dvc.lock (download out, process dep+out, drift dep+out)
    assert len(folder.dvc_checked) == 1 + 3 + 5

    archive = verify_bundle(bundle / "minivess-0.1.0.tar")
    assert archive.ok, archive.problems
    recorded = (bundle / "minivess-0.1.0.tar.sha256").read_text().split()[0]
    assert (
        archive.digest
        == recorded
        == hashlib.sha256((bundle / "minivess-0.1.0.tar").read_bytes()).hexdigest()
    )
    assert len(archive.dvc_checked) == 9
    line = verdict(archive)
    assert line.startswith("OK minivess-0.1.0.tar:") and archive.digest in line
    assert "\n" not in line


def test_flipped_byte_is_named_by_verify_and_by_bagit(bundle):
    bag = bundle / "minivess-0.1.0"
    target = bag / "data/processed/imagesTr/mv01.nii.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    result = verify_bundle(bag)
    assert not result.ok
    named = [p for p in result.problems if p.startswith("data/processed/imagesTr/mv01.nii.gz")]
    assert [p.split(": ")[1].split(" ")[0] for p in named] == ["sha256", "sha512"]
    assert any(p.startswith("minivess-0.1.0.dvc: minivess-0.1.0: DVC md5") for p in result.problems)
    assert any(p.startswith("processed.dvc:") for p in result.problems)
    assert not any(p.startswith("raw.dvc:") for p in result.problems)  # raw is intact
    assert verdict(result).startswith("FAILED minivess-0.1.0:")
    assert "data/processed/imagesTr/mv01.nii.gz" in bagit_errors(bag)


def test_deleted_file_is_named_missing_by_verify_and_by_bagit(bundle):
    bag = bundle / "minivess-0.1.0"
    (bag / "data/raw/metadata/mv01.json").unlink()
    problems = verify_bundle(bag).problems
    assert "missing file data/raw/metadata/mv01.json (listed in manifest-sha256.txt)" in problems
    assert any(p.startswith("Payload-Oxum ") and p.endswith(".22") for p in problems)
    assert "data/raw/metadata/mv01.json" in bagit_errors(bag)


def test_added_file_is_named_unexpected_by_verify_and_by_bagit(bundle):
    bag = bundle / "minivess-0.1.0"
    (bag / "data/processed/imagesTr/mv99.nii.gz").write_bytes(b"not in any manifest")
    problems = verify_bundle(bag).problems
    assert (
        "unexpected file data/processed/imagesTr/mv99.nii.gz (not in manifest-sha256.txt)"
        in problems
    )
    assert "data/processed/imagesTr/mv99.nii.gz" in bagit_errors(bag)


def test_edited_tag_file_and_stray_tag_file_are_named(bundle):
    bag = bundle / "minivess-0.1.0"
    info = bag / "bag-info.txt"
    info.write_text(
        info.read_text().replace("Bagging-Date: 2023-11-14", "Bagging-Date: 2024-01-01")
    )
    (bag / "notes.txt").write_text("stray")
    problems = verify_bundle(bag).problems
    assert any(p.startswith("bag-info.txt: sha256 mismatch") for p in problems)
    assert "unexpected file notes.txt (not in tagmanifest-sha256.txt)" in problems
    assert "bag-info.txt" in bagit_errors(bag)


def test_tampered_archive_names_the_member_and_the_sha256_file(bundle):
    tar_path = bundle / "minivess-0.1.0.tar"
    with tarfile.open(tar_path) as tar:
        member = tar.getmember("minivess-0.1.0/data/raw/labelsTr/mv02.nii.gz")
    data = bytearray(tar_path.read_bytes())
    data[member.offset_data + 10] ^= 0xFF
    tar_path.write_bytes(bytes(data))
    result = verify_bundle(tar_path)
    assert any(
        p.startswith("data/raw/labelsTr/mv02.nii.gz: sha256 mismatch") for p in result.problems
    )
    assert any(p.startswith("minivess-0.1.0.tar.sha256 says") for p in result.problems)
    assert result.digest == hashlib.sha256(bytes(data)).hexdigest()


def test_archive_with_unsafe_or_extra_members_is_refused_by_name(bundle, tmp_path):
    evil = tmp_path / "minivess-0.1.0.tar"
    with tarfile.open(bundle / "minivess-0.1.0.tar") as src, tarfile.open(evil, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        for name in ("../escape.txt", "minivess-0.1.0/data/extra.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            dst.addfile(info, io.BytesIO(b"bad"))
    problems = verify_bundle(evil).problems
    assert "unsafe member name '../escape.txt'" in problems
    assert "unexpected file data/extra.txt (not in manifest-sha256.txt)" in problems


def test_wrong_hash_in_a_dvc_file_is_named(bundle):
    dvc_file = bundle / "dvc" / "parts" / "drift.dvc"
    text = dvc_file.read_text()
    dvc_file.write_text(text.replace("nfiles: 2", "nfiles: 3"))
    problems = verify_bundle(bundle / "minivess-0.1.0").problems
    assert problems == [
        "drift.dvc: ../../minivess-0.1.0/data/drift: DVC nfiles 3 — the bag gives 2"
    ]


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(BundleError, match="no bag folder or archive"):
        verify_bundle(tmp_path / "nowhere.tar")


def test_rebuild_without_a_section_leaves_no_stale_dvc_file(tmp_path):
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "bundle"
    write_dvc_metadata(build(inputs, out)["path"])
    assert (out / "dvc/parts/drift.dvc").is_file()
    write_dvc_metadata(build(inputs, out, drift_dir=None)["path"])
    assert sorted(p.name for p in (out / "dvc/parts").iterdir()) == ["processed.dvc", "raw.dvc"]
    result = verify_bundle(out / "minivess-0.1.0")
    assert result.ok, result.problems
    assert len(result.dvc_checked) == 1 + 2 + 3


def _tamper(bundle: Path) -> None:
    """A flipped byte, a deleted and an added payload file, an edited tag file, and a
    flipped byte in the archive: many problems, whose order the threads must not change."""
    bag = bundle / "minivess-0.1.0"
    target = bag / "data/processed/imagesTr/mv01.nii.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    (bag / "data/raw/metadata/mv01.json").unlink()
    (bag / "data/processed/imagesTr/mv99.nii.gz").write_bytes(b"not in any manifest")
    info = bag / "bag-info.txt"
    info.write_text(info.read_text().replace("Bagging-Date: 2023-11-14", "Bagging-Date: 2024"))
    tar_path = bundle / "minivess-0.1.0.tar"
    with tarfile.open(tar_path) as tar:
        member = tar.getmember("minivess-0.1.0/data/raw/labelsTr/mv02.nii.gz")
    raw = bytearray(tar_path.read_bytes())
    raw[member.offset_data + 10] ^= 0xFF
    tar_path.write_bytes(bytes(raw))


@pytest.mark.parametrize("tampered", [False, True])
def test_threads_give_the_same_verdict_problems_and_digest(bundle, tampered):
    if tampered:
        _tamper(bundle)
    for path in (bundle / "minivess-0.1.0", bundle / "minivess-0.1.0.tar"):
        one = verify_bundle(path, threads=1)
        assert one.ok is not tampered, one.problems
        for threads in (2, 4):
            many = verify_bundle(path, threads=threads)
            assert many == one, (path.name, threads)
            assert verdict(many) == verdict(one)
    if tampered:
        assert len(verify_bundle(bundle / "minivess-0.1.0", threads=2).problems) >= 5
