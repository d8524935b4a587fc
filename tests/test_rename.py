"""Rename stage: new names, untouched bytes, verified copies, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minivess_bundle import fsio
from minivess_bundle.errors import RenameError
from minivess_bundle.fsio import sha256_file
from minivess_bundle.rename import inventory, rename_volume
from minivess_bundle.volumes import renamed_names, staging_names


def _paths(root, names):
    return {k: root / v for k, v in names.items()}


def test_rename_copies_under_the_new_names_with_identical_bytes(tiny_staging, tmp_path):
    sources = _paths(tiny_staging, staging_names("mv01"))
    targets = _paths(tmp_path / "renamed", renamed_names("mv01"))
    placed = rename_volume("mv01", sources, targets)
    assert [p["method"] for p in placed] == ["copy"] * 3
    for role in sources:
        assert not os.path.samefile(sources[role], targets[role])
        assert sha256_file(sources[role]) == sha256_file(targets[role])


def test_copy_that_differs_from_its_source_is_refused_and_removed(tmp_path, monkeypatch):
    source = tmp_path / "a.bin"
    source.write_bytes(b"original bytes")
    monkeypatch.setattr(fsio.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links")))
    monkeypatch.setattr(
        fsio.shutil, "copyfile", lambda s, d: Path(d).write_bytes(b"corrupted!!!!!")
    )
    with pytest.raises(RenameError, match="does not match its source"):
        rename_volume(
            "mv01",
            {"image": source, "label": source, "metadata": source},
            {r: tmp_path / "out" / f"{r}.bin" for r in ("image", "label", "metadata")},
        )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_source_names_volume_and_file(tiny_staging, tmp_path):
    sources = _paths(tiny_staging, staging_names("mv39"))
    sources["label"].unlink()
    with pytest.raises(RenameError, match=r"^mv39: rename: source file is missing \(.*mv39_y"):
        rename_volume("mv39", sources, _paths(tmp_path / "r", renamed_names("mv39")))


def test_inventory_lists_pairs_with_hashes(tiny_staging, tmp_path):
    out = tmp_path / "renamed"
    for vol in ("mv01", "mv02", "mv39"):
        rename_volume(
            vol, _paths(tiny_staging, staging_names(vol)), _paths(out, renamed_names(vol))
        )
    result = inventory(out)
    assert result["count"] == 3 and [v["id"] for v in result["volumes"]] == ["mv01", "mv02", "mv39"]
    first = result["volumes"][0]
    assert first["label"]["path"] == "labelsTr/mv01.nii.gz"
    assert first["label"]["sha256"] == sha256_file(tiny_staging / "seg" / "mv01_y.nii.gz")
