"""Shared fixtures: repository paths and small synthetic staging trees."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REAL_MASK = REPO / "tests" / "data" / "mv68_y.nii.gz"
REAL_MASK_SHA256 = "833d06e62f70803ed6b39c2cdc464e86460b931eebc4d3ed295d0b1a92dede8a"


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root``, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tiny_staging(tmp_path: Path) -> Path:
    """An EBRAINS-layout staging tree with three tiny synthetic volumes and the licence."""
    from minivess_bundle.synthetic import write_synthetic_licence, write_synthetic_volume

    staging = tmp_path / "staging"
    for vol in ("mv01", "mv02", "mv39"):
        write_synthetic_volume(staging, vol, seed=5, size_xy=24, max_z=8)
    write_synthetic_licence(staging)
    return staging
