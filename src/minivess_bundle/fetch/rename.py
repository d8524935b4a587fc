"""Rename stage: EBRAINS layout (raw/seg/json) -> imagesTr/labelsTr/metadata.

Why a stage of its own: every tool downstream (MONAI, nnU-Net) expects matching
names in imagesTr/labelsTr, while the release names masks ``mvNN_y``. The bytes
are never rewritten: each file is copied and verified against its source's sha256.

Why a copy and not a hardlink: Snakemake touches every output when its job ends
(to guard against clock skew). A hardlinked output shares its inode with its
input, so that touch would also move the input's modification time, making the
other outputs of the same job look older than their inputs and later jobs look
out of date. Copies keep every file of the chain its own inode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..core.errors import RenameError
from ..core.fsio import link_or_copy, sha256_file
from ..core.volumes import check_volume_id

log = logging.getLogger(__name__)
ROLES = ("image", "label", "metadata")


def place_file(source: str | Path, target: str | Path, volume: str | None = None) -> dict[str, Any]:
    """Put ``source``'s exact bytes at ``target`` (a copy verified by sha256, atomic)."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise RenameError("source file is missing", volume=volume, path=source)
    try:
        method = link_or_copy(source, target, allow_link=False)
    except OSError as exc:
        # An error about the target is said once; one about another file keeps its name.
        said = exc.strerror if exc.strerror and exc.filename == str(target) else exc
        raise RenameError(f"cannot place file: {said}", volume=volume, path=target) from exc
    return {
        "source": source.name,
        "target": target.name,
        "method": method,
        "bytes": target.stat().st_size,
    }


def rename_volume(
    volume: str, sources: dict[str, str | Path], targets: dict[str, str | Path]
) -> list[dict[str, Any]]:
    """Place one volume's image, label and metadata under their new names.

    ``sources`` and ``targets`` map ``"image"``, ``"label"``, ``"metadata"`` to paths.
    """
    check_volume_id(volume)
    placed = []
    for role in ROLES:
        record = place_file(sources[role], targets[role], volume)
        log.info(
            "%s: %s %s -> %s (%s, %d bytes)",
            volume,
            role,
            sources[role],
            targets[role],
            record["method"],
            record["bytes"],
        )
        placed.append(record)
    return placed


def inventory(data_dir: str | Path) -> dict[str, Any]:
    """Every pair the loader finds in ``data_dir``, with sizes and sha256, paths relative."""
    from ..consumers.loader import discover_nifti_pairs

    data_dir = Path(data_dir)
    records = []
    for pair in discover_nifti_pairs(data_dir):
        entry: dict[str, Any] = {"id": pair["id"]}
        for role in ROLES:
            if role in pair:
                path = Path(pair[role])
                entry[role] = {
                    "path": path.relative_to(data_dir).as_posix(),
                    "bytes": path.stat().st_size,
                    "sha256": sha256_file(path),
                }
        records.append(entry)
    return {"count": len(records), "volumes": records}
