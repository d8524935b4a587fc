"""Tests for sources.py: landing volumes from the EBRAINS ZIP and from an extracted folder."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from minivess_bundle.core import fsio, nifti
from minivess_bundle.core.errors import ConfigError, SourceError
from minivess_bundle.core.volumes import EBRAINS_LICENCE
from minivess_bundle.fetch.sources import (
    fetch_from_dir,
    fetch_from_zip,
    fetch_licence_from_dir,
    fetch_licence_from_zip,
)

PREFIX = "d-bf268b89-1420-476b-b428-b85a913eb523/"
LICENCE_BYTES = b"%PDF-1.4 fake licence\n"


def volume_files(volume: str, seed: int) -> dict[str, bytes]:
    """Distinct bytes for one volume's three EBRAINS members, keyed by relative name."""
    rng = np.random.default_rng(seed)
    return {
        f"raw/{volume}.nii.gz": b"\x1f\x8b" + rng.bytes(3000),
        f"seg/{volume}_y.nii.gz": b"\x1f\x8b" + rng.bytes(2000),
        f"json/{volume}.json": f'{{"id": "{volume}", "seed": {seed}}}\n'.encode(),
    }


def release_files(volumes: tuple[str, ...] = ("mv01", "mv02")) -> dict[str, bytes]:
    files = {EBRAINS_LICENCE: LICENCE_BYTES}
    for seed, volume in enumerate(volumes):
        files.update(volume_files(volume, seed))
    return files


def write_zip(
    path: Path,
    files: dict[str, bytes],
    prefix: str = "",
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(prefix + name, data)
    return path


def all_files(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden temporaries included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- ZIP: happy paths --------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["root", "top-level-folder"])
def test_fetch_from_zip_lands_exact_bytes_and_records_crc_and_sha256(tmp_path, prefix):
    files = release_files()
    archive = write_zip(tmp_path / "release.zip", files, prefix=prefix)
    staging = tmp_path / "staging"

    record = fetch_from_zip(archive, "mv02", staging)

    assert record["volume"] == "mv02"
    assert record["source"] == "zip"
    assert record["archive"] == "release.zip"
    assert record["prefix"] == prefix
    expected_paths = {
        "image": "raw/mv02.nii.gz",
        "label": "seg/mv02_y.nii.gz",
        "metadata": "json/mv02.json",
    }
    assert set(record["files"]) == set(expected_paths)
    for key, rel in expected_paths.items():
        data = files[rel]
        entry = record["files"][key]
        assert (staging / rel).read_bytes() == data
        assert entry == {
            "path": rel,
            "member": prefix + rel,
            "size": len(data),
            "crc32": f"{zlib.crc32(data):08x}",
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def test_fetch_from_zip_extracts_only_the_requested_volume(tmp_path):
    archive = write_zip(tmp_path / "release.zip", release_files(("mv01", "mv02", "mv03")))
    staging = tmp_path / "staging"

    fetch_from_zip(archive, "mv03", staging)

    assert all_files(staging) == ["json/mv03.json", "raw/mv03.nii.gz", "seg/mv03_y.nii.gz"]


def test_fetch_from_zip_lands_a_real_nifti_that_reads_back_identically(tmp_path):
    array = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3)
    image_path = nifti.write_nifti(
        tmp_path / "src.nii.gz",
        nifti.make_image(array, (0.994, 0.994, 2.0), nifti.minivess_header("image")),
    )
    files = volume_files("mv07", seed=7)
    files["raw/mv07.nii.gz"] = image_path.read_bytes()
    archive = write_zip(tmp_path / "release.zip", files, prefix=PREFIX)

    fetch_from_zip(archive, "mv07", tmp_path / "staging")

    landed = nifti.read_nifti(tmp_path / "staging" / "raw" / "mv07.nii.gz")
    np.testing.assert_array_equal(np.asarray(landed.dataobj), array)


@pytest.mark.parametrize("prefix", ["", PREFIX], ids=["root", "top-level-folder"])
def test_fetch_licence_from_zip_lands_the_pdf_verbatim(tmp_path, prefix):
    archive = write_zip(tmp_path / "release.zip", release_files(), prefix=prefix)
    staging = tmp_path / "staging"

    record = fetch_licence_from_zip(archive, staging)

    assert (staging / EBRAINS_LICENCE).read_bytes() == LICENCE_BYTES
    assert "volume" not in record
    assert record["files"]["licence"] == {
        "path": EBRAINS_LICENCE,
        "member": prefix + EBRAINS_LICENCE,
        "size": len(LICENCE_BYTES),
        "crc32": f"{zlib.crc32(LICENCE_BYTES):08x}",
        "sha256": hashlib.sha256(LICENCE_BYTES).hexdigest(),
    }
    assert all_files(staging) == [EBRAINS_LICENCE]


# --- ZIP: hostile archives ---------------------------------------------------


@pytest.mark.parametrize(
    "evil_name, reason",
    [
        ("../evil", "'..' component"),
        ("raw/../../evil.nii.gz", "'..' component"),
        ("/abs/path", "absolute name"),
        ("C:/windows/evil", "absolute name"),
        ("raw\\..\\..\\evil", "backslash"),
    ],
)
def test_fetch_from_zip_refuses_zip_slip_member_names(tmp_path, evil_name, reason):
    files = release_files()
    files[evil_name] = b"evil"
    archive = write_zip(tmp_path / "release.zip", files)
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        fetch_from_zip(archive, "mv01", staging)

    message = str(err.value)
    assert message.startswith("mv01: fetch: member ")
    assert repr(evil_name) in message
    assert reason in message
    assert str(archive) in message
    assert not staging.exists()
    assert not (tmp_path / "evil").exists()


def test_fetch_from_zip_refuses_a_nul_byte_in_a_member_name(tmp_path):
    files = release_files()
    files["json/mv09.jsonX.txt"] = b"hidden"
    archive = write_zip(tmp_path / "release.zip", files, compression=zipfile.ZIP_STORED)
    data = archive.read_bytes()
    assert data.count(b"mv09.jsonX") == 2  # local header + central directory
    archive.write_bytes(data.replace(b"mv09.jsonX", b"mv09.json\x00"))

    with pytest.raises(SourceError, match="NUL byte"):
        fetch_from_zip(archive, "mv01", tmp_path / "staging")
    assert not (tmp_path / "staging").exists()


def test_fetch_from_zip_refuses_a_symlink_member_even_for_another_volume(tmp_path):
    archive = write_zip(tmp_path / "release.zip", release_files())
    with zipfile.ZipFile(archive, "a") as handle:
        link = zipfile.ZipInfo("raw/mv03.nii.gz")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(link, "/etc/passwd")
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        fetch_from_zip(archive, "mv01", staging)

    assert "member 'raw/mv03.nii.gz' is a symlink" in str(err.value)
    assert not staging.exists()


def test_fetch_from_zip_refuses_a_duplicated_member_name(tmp_path):
    archive = write_zip(tmp_path / "release.zip", release_files())
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(archive, "a") as handle,
    ):
        handle.writestr("raw/mv01.nii.gz", b"second copy")

    with pytest.raises(SourceError, match="'raw/mv01.nii.gz' appears twice"):
        fetch_from_zip(archive, "mv01", tmp_path / "staging")


# --- ZIP: damaged archives ---------------------------------------------------


def test_fetch_from_zip_crc_mismatch_raises_and_leaves_no_file(tmp_path):
    files = release_files()
    label = files["seg/mv01_y.nii.gz"]
    archive = write_zip(tmp_path / "release.zip", files, compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    offset = bytes(data).index(label) + 100  # inside the stored member data
    data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    corrupted = bytearray(label)
    corrupted[100] ^= 0xFF
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        fetch_from_zip(archive, "mv01", staging)

    assert str(err.value) == (
        f"mv01: fetch: member seg/mv01_y.nii.gz CRC mismatch "
        f"(crc32 {zlib.crc32(bytes(corrupted)):08x}) — expected crc32 {zlib.crc32(label):08x}, "
        f"{len(label)} bytes ({archive})"
    )
    # Neither the bad label, its temporary, nor the image landed before it remain.
    assert all_files(staging) == []


def test_fetch_from_zip_corrupt_deflate_stream_raises_source_error(tmp_path):
    files = {**release_files(), "raw/mv01.nii.gz": bytes(range(256)) * 64}
    archive = write_zip(tmp_path / "release.zip", files)
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo("raw/mv01.nii.gz")
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode())
    for i in range(start, start + info.compress_size):
        data[i] ^= 0x5A
    archive.write_bytes(bytes(data))
    staging = tmp_path / "staging"

    with pytest.raises(
        SourceError, match=r"^mv01: fetch: member raw/mv01\.nii\.gz unreadable \(Error -3"
    ):
        fetch_from_zip(archive, "mv01", staging)
    assert all_files(staging) == []


def test_fetch_from_zip_truncated_archive_is_reported_as_not_a_zip(tmp_path):
    archive = write_zip(tmp_path / "release.zip", release_files())
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])

    with pytest.raises(SourceError) as err:
        fetch_from_zip(archive, "mv01", tmp_path / "staging")

    assert str(err.value) == (
        f"mv01: fetch: not a ZIP archive or truncated — expected the EBRAINS MiniVess ZIP "
        f"({archive})"
    )


def test_fetch_from_zip_non_zip_file_is_reported_as_not_a_zip(tmp_path):
    archive = tmp_path / "release.zip"
    archive.write_bytes(b"<html>404 Not Found</html>\n")

    with pytest.raises(SourceError, match="not a ZIP archive or truncated"):
        fetch_licence_from_zip(archive, tmp_path / "staging")


def test_fetch_from_zip_missing_archive_names_the_path(tmp_path):
    with pytest.raises(SourceError, match=r"cannot open archive: No such file"):
        fetch_from_zip(tmp_path / "absent.zip", "mv01", tmp_path / "staging")


def test_fetch_from_zip_lists_every_missing_member_and_lands_nothing(tmp_path):
    files = release_files()
    del files["seg/mv02_y.nii.gz"], files["json/mv02.json"]
    archive = write_zip(tmp_path / "release.zip", files, prefix=PREFIX)
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        fetch_from_zip(archive, "mv02", staging)

    assert str(err.value) == (
        f"mv02: fetch: missing members {PREFIX}seg/mv02_y.nii.gz, {PREFIX}json/mv02.json"
        f" — expected the EBRAINS layout ({archive})"
    )
    assert not staging.exists()


def test_fetch_from_zip_without_ebrains_layout_says_what_it_expected(tmp_path):
    archive = write_zip(tmp_path / "other.zip", {"imagesTr/mv01.nii.gz": b"x"})

    with pytest.raises(SourceError, match="no EBRAINS layout in the archive — expected raw/"):
        fetch_from_zip(archive, "mv01", tmp_path / "staging")


def test_fetch_from_zip_refuses_two_layout_prefixes(tmp_path):
    archive = write_zip(tmp_path / "release.zip", release_files(("mv01",)), prefix="a/")
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr("b/raw/mv01.nii.gz", b"other")

    with pytest.raises(SourceError, match=r"several prefixes \('a/', 'b/'\)"):
        fetch_from_zip(archive, "mv01", tmp_path / "staging")


# --- Folder source -----------------------------------------------------------


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_fetch_from_dir_copies_never_links_user_files_and_records_sha256(tmp_path):
    files = release_files()
    source = write_tree(tmp_path / "ebrains", files)
    staging = tmp_path / "staging"
    before = {p: p.stat().st_mtime_ns for p in source.rglob("*") if p.is_file()}

    record = fetch_from_dir(source, "mv01", staging)

    assert record["volume"] == "mv01"
    assert record["source"] == "dir"
    for key, rel in [
        ("image", "raw/mv01.nii.gz"),
        ("label", "seg/mv01_y.nii.gz"),
        ("metadata", "json/mv01.json"),
    ]:
        assert (staging / rel).stat().st_ino != (source / rel).stat().st_ino
        assert (staging / rel).read_bytes() == files[rel]
        assert record["files"][key] == {
            "path": rel,
            "size": len(files[rel]),
            "sha256": hashlib.sha256(files[rel]).hexdigest(),
            "method": "copy",
        }
    assert all_files(staging) == ["json/mv01.json", "raw/mv01.nii.gz", "seg/mv01_y.nii.gz"]
    assert {p: p.stat().st_mtime_ns for p in source.rglob("*") if p.is_file()} == before


def test_fetch_from_dir_copies_identical_bytes_when_hardlinks_fail(tmp_path, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(fsio.os, "link", no_link)
    files = release_files()
    source = write_tree(tmp_path / "ebrains", files)
    staging = tmp_path / "staging"

    record = fetch_from_dir(source, "mv02", staging)

    image = staging / "raw" / "mv02.nii.gz"
    assert image.read_bytes() == files["raw/mv02.nii.gz"]
    assert image.stat().st_ino != (source / "raw" / "mv02.nii.gz").stat().st_ino
    assert {entry["method"] for entry in record["files"].values()} == {"copy"}
    assert all_files(staging) == ["json/mv02.json", "raw/mv02.nii.gz", "seg/mv02_y.nii.gz"]


def test_fetch_licence_from_dir_places_the_pdf(tmp_path):
    source = write_tree(tmp_path / "ebrains", release_files())
    staging = tmp_path / "staging"

    record = fetch_licence_from_dir(source, staging)

    assert (staging / EBRAINS_LICENCE).read_bytes() == LICENCE_BYTES
    assert record == {
        "source": "dir",
        "files": {
            "licence": {
                "path": EBRAINS_LICENCE,
                "size": len(LICENCE_BYTES),
                "sha256": hashlib.sha256(LICENCE_BYTES).hexdigest(),
                "method": "copy",
            }
        },
    }


def test_fetch_from_dir_missing_folder_names_the_folder_path(tmp_path):
    files = {k: v for k, v in release_files().items() if not k.startswith("seg/")}
    source = write_tree(tmp_path / "ebrains", files)
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        fetch_from_dir(source, "mv01", staging)

    assert str(err.value) == (
        "mv01: fetch: missing seg/ — expected the EBRAINS layout raw/, seg/, json/ and the "
        f"licence ({source / 'seg'})"
    )
    assert not staging.exists()


def test_fetch_from_dir_missing_file_names_the_file_path(tmp_path):
    source = write_tree(tmp_path / "ebrains", release_files())
    (source / "json" / "mv02.json").unlink()

    with pytest.raises(SourceError) as err:
        fetch_from_dir(source, "mv02", tmp_path / "staging")

    assert "missing json/mv02.json" in str(err.value)
    assert str(err.value).endswith(f"({source / 'json' / 'mv02.json'})")


def test_fetch_from_dir_missing_source_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="source folder missing"):
        fetch_licence_from_dir(tmp_path / "nowhere", tmp_path / "staging")


def test_fetch_from_dir_refuses_a_symlink_resolving_outside_the_source(tmp_path):
    files = release_files()
    source = write_tree(tmp_path / "ebrains", files)
    outside = tmp_path / "secret.nii.gz"
    outside.write_bytes(b"secret")
    (source / "raw" / "mv01.nii.gz").unlink()
    (source / "raw" / "mv01.nii.gz").symlink_to(outside)
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        fetch_from_dir(source, "mv01", staging)

    assert "raw/mv01.nii.gz links outside the source folder" in str(err.value)
    assert not staging.exists()


def test_fetch_from_dir_follows_a_symlink_that_stays_inside_the_source(tmp_path):
    files = release_files()
    source = write_tree(tmp_path / "ebrains", files)
    store = source / "store" / "mv01.nii.gz"
    store.parent.mkdir()
    os.replace(source / "raw" / "mv01.nii.gz", store)
    (source / "raw" / "mv01.nii.gz").symlink_to("../store/mv01.nii.gz")
    staging = tmp_path / "staging"

    record = fetch_from_dir(source, "mv01", staging)

    landed = staging / "raw" / "mv01.nii.gz"
    assert not landed.is_symlink()
    assert landed.read_bytes() == store.read_bytes()
    assert (
        record["files"]["image"]["sha256"] == hashlib.sha256(files["raw/mv01.nii.gz"]).hexdigest()
    )


# --- Names outside mvNN (issue #10) -------------------------------------------

EXACT_NAMES = (
    "the EBRAINS layout with names exactly raw/mvNN.nii.gz, seg/mvNN_y.nii.gz, "
    "json/mvNN.json (lower case, two digits, no spaces): rename the files"
)
NEAR_MISSES = ["raw/mv1.nii.gz", "raw/MV01.nii.gz", "raw/mv01 .nii.gz", "raw/mv01.nii"]
STRAYS = {
    "notes.txt": b"top-level notes",
    "raw/notes.txt": b"notes",
    "raw/mv100.nii.gz": b"\x1f\x8b not a volume of the release",
    "json/mv01.json.bak": b"{}",
}


def _source(kind: str, root: Path, files: dict[str, bytes]) -> Path:
    """The release as a ZIP (under its top-level folder) or as an extracted folder."""
    if kind == "zip":
        return write_zip(root / "release.zip", files, prefix=PREFIX)
    return write_tree(root / "ebrains", files)


def _fetch(kind: str, source: Path, volume: str, staging: Path) -> dict:
    return (fetch_from_zip if kind == "zip" else fetch_from_dir)(source, volume, staging)


@pytest.mark.parametrize("kind", ["zip", "dir"])
@pytest.mark.parametrize("near", NEAR_MISSES)
def test_missing_volume_error_names_the_near_miss_found_instead(tmp_path, kind, near):
    files = release_files()
    files[near] = files.pop("raw/mv01.nii.gz")
    source = _source(kind, tmp_path, files)
    staging = tmp_path / "staging"

    with pytest.raises(SourceError) as err:
        _fetch(kind, source, "mv01", staging)

    prefix = PREFIX if kind == "zip" else ""
    missing = (
        f"missing member {PREFIX}raw/mv01.nii.gz" if kind == "zip" else "missing raw/mv01.nii.gz"
    )
    path = source if kind == "zip" else source / "raw" / "mv01.nii.gz"
    assert str(err.value) == (
        f"mv01: fetch: {missing}; found near-miss name {prefix + near!r} — expected "
        f"{EXACT_NAMES} ({path})"
    )
    assert not staging.exists() or all_files(staging) == []


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_stray_files_are_ignored_and_listed_once_by_the_licence_fetch(tmp_path, kind, caplog):
    files = {**release_files(), **STRAYS}
    source = _source(kind, tmp_path, files)
    staging = tmp_path / "staging"

    with caplog.at_level("WARNING", logger="minivess_bundle.fetch.sources"):
        _fetch(kind, source, "mv01", staging)
        assert caplog.messages == []  # a volume's fetch is not the place to list strays
        (fetch_licence_from_zip if kind == "zip" else fetch_licence_from_dir)(source, staging)

    assert all_files(staging) == [
        EBRAINS_LICENCE,
        "json/mv01.json",
        "raw/mv01.nii.gz",
        "seg/mv01_y.nii.gz",
    ]
    assert (staging / "raw" / "mv01.nii.gz").read_bytes() == files["raw/mv01.nii.gz"]
    assert caplog.messages == [
        f"{source}: ignoring 3 file(s) not named like a volume (raw/mvNN.nii.gz, "
        "seg/mvNN_y.nii.gz, json/mvNN.json): 'json/mv01.json.bak', 'raw/mv100.nii.gz', "
        "'raw/notes.txt'"
    ]


@pytest.mark.parametrize("kind", ["zip", "dir"])
def test_near_miss_next_to_the_exact_name_is_warned_and_never_read(tmp_path, kind, caplog):
    files = {**release_files(), "raw/MV01.nii.gz": b"\x1f\x8b an older copy?"}
    source = _source(kind, tmp_path, files)
    staging = tmp_path / "staging"

    with caplog.at_level("WARNING", logger="minivess_bundle.fetch.sources"):
        record = _fetch(kind, source, "mv01", staging)

    assert (
        record["files"]["image"]["sha256"] == hashlib.sha256(files["raw/mv01.nii.gz"]).hexdigest()
    )
    assert caplog.messages == [
        "mv01: ignoring near-miss name(s) 'raw/MV01.nii.gz'; only the exact names "
        "raw/mv01.nii.gz, seg/mv01_y.nii.gz, json/mv01.json are read"
    ]


@pytest.mark.parametrize("kind", ["zip", "dir"])
@pytest.mark.parametrize("volume", ["../mv01", "mv1", "MV01", "mv100", "mv01 ", "mv01/../../x"])
def test_volume_ids_outside_mvnn_are_refused_before_anything_is_written(tmp_path, kind, volume):
    (tmp_path / "in").mkdir()
    source = _source(kind, tmp_path / "in", release_files())
    results = tmp_path / "results"
    before = all_files(tmp_path)

    with pytest.raises(ConfigError, match=r"volume id .* not allowed — expected mv and two ASCII"):
        _fetch(kind, source, volume, results / "staging")

    assert all_files(tmp_path) == before
    assert not results.exists()


@pytest.mark.parametrize("evil", ["../mv01.nii.gz", "raw/../../mv01.nii.gz", "../results/x"])
def test_zip_member_escaping_the_staging_folder_writes_nothing_anywhere(tmp_path, evil):
    files = {**release_files(), evil: b"escape"}
    (tmp_path / "in").mkdir()
    archive = write_zip(tmp_path / "in" / "release.zip", files)
    staging = tmp_path / "results" / "staging"

    with pytest.raises(SourceError, match=r"has a '\.\.' component"):
        fetch_from_zip(archive, "mv01", staging)

    assert all_files(tmp_path) == ["in/release.zip"]
