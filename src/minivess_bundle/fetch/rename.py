"""Rename: EBRAINS layout (raw/seg/json) -> imagesTr/labelsTr/metadata.

Why a rename at all: every tool downstream (MONAI, nnU-Net) expects matching names in
imagesTr/labelsTr, while the release names masks ``mvNN_y``. The bytes are never
rewritten.

Where it runs: inside the fetch job (:func:`landed`). A source lands a volume in a
staging folder of that job's own, under the EBRAINS names every source adapter speaks
(:func:`minivess_bundle.core.volumes.staging_names`), and :func:`land_renamed` moves the
files to their final names: one process and one write per file instead of a second job
that copies and re-hashes every byte. A staged file that shares its inode with another
file (the EBRAINS object cache hardlinks into staging) is copied and verified instead of
moved, so that no output shares an inode with anything else: Snakemake touches every
output when its job ends, and a shared inode would move the other file's modification
time too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..core.errors import RenameError
from ..core.fsio import link_or_copy, remove_stale, sha256_file
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


def move_file(source: str | Path, target: str | Path, volume: str | None = None) -> dict[str, Any]:
    """Move ``source`` to ``target`` (atomic, same bytes); a verified copy where they are
    on different file systems or ``source`` has another name (a hardlink)."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise RenameError("source file is missing", volume=volume, path=source)
    if source.stat().st_nlink == 1:
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another file system: copy below
            os.replace(source, target)
            return {
                "source": source.name,
                "target": target.name,
                "method": "move",
                "bytes": target.stat().st_size,
            }
    return place_file(source, target, volume)


@contextlib.contextmanager
def job_staging(root: str | Path, owner: str) -> Iterator[Path]:
    """A staging folder of one job's own under ``root`` (``<root>/<owner>.<random>``),
    removed when the job is done, whatever happens; what a killed job of the same
    ``owner`` left there is removed first (only one job lands a given volume at a time)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root, f"{owner}.*")
    folder = Path(tempfile.mkdtemp(prefix=f"{owner}.", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def land_renamed(
    volume: str | None, staged: Mapping[str, str | Path], targets: Mapping[str, str | Path]
) -> list[dict[str, Any]]:
    """Move each staged file (role -> path) to its renamed target (role -> path)."""
    if volume is not None:
        check_volume_id(volume)
    placed = []
    for role, target in targets.items():
        record = move_file(staged[role], target, volume)
        log.info(
            "%s: %s %s -> %s (%s, %d bytes)",
            volume or "-",
            role,
            Path(staged[role]).name,
            target,
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
