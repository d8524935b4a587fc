"""The dataset authors' DVC fingerprint of the release, and the check of a build against it.

The MiniVess authors track their reorganised copy of the EBRAINS release with DVC
(minivess-mlops ``dvc.lock``, stage ``download``, ``outs: data/raw/minivess/``): the
tree ``imagesTr/mvNN.nii.gz`` (from ``raw/``), ``labelsTr/mvNN.nii.gz`` (from
``seg/mvNN_y.nii.gz``) and ``metadata/mvNN.json`` (from ``json/``), bytes untouched, no
licence: 210 files, 984,532,972 bytes, md5 ``be49b3c0c462446c4336cdc5f2781e36.dir``.

The rename stage writes the same names and bytes under ``results/renamed/`` (plus the
licence, which their tree leaves out), so DVC's directory hash of that tree, computed
as ``dvc add`` would (:func:`minivess_bundle.bundle.dvcmeta.dir_hash_from_files`), equals theirs
exactly when every byte of all 70 volumes does: one comparison proves that a user's
copy is the authors'. A single hash cannot say which file differs; the check reports
whether the file count and the byte total differ, and which names are missing or
unexpected.

The fingerprint is recorded here, once. (The dataset's identity is moving to one
``dataset`` module; this constant moves with it.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundle.dvcmeta import dir_hash_from_files, tree_files
from ..core.errors import MinivessError
from ..core.volumes import ALL_VOLUMES, renamed_names

log = logging.getLogger(__name__)


class FingerprintError(MinivessError):
    stage = "fingerprint"


@dataclass(frozen=True)
class Fingerprint:
    """DVC 3's identity of a folder: ``md5`` (``<hex>.dir``), file count, bytes and names."""

    md5: str
    nfiles: int
    size: int
    names: frozenset[str] = field(repr=False)
    source: str = ""


def _authors_names() -> frozenset[str]:
    return frozenset(name for vol in ALL_VOLUMES for name in renamed_names(vol).values())


#: The authors' DVC record of their reorganised release (minivess-mlops dvc.lock).
AUTHORS = Fingerprint(
    md5="be49b3c0c462446c4336cdc5f2781e36.dir",
    nfiles=210,
    size=984_532_972,
    names=_authors_names(),
    source="minivess-mlops dvc.lock, stage download, outs data/raw/minivess/ (hash: md5)",
)

#: Sources that copy the release's bytes (synthetic builds have nothing to compare).
REAL_SOURCES = ("zip", "dir", "ebrains")


def applies(source: str, volumes: Iterable[str]) -> bool:
    """Whether a build is checked: a real source and all 70 volumes (any order)."""
    return source in REAL_SOURCES and sorted(volumes) == list(ALL_VOLUMES)


@dataclass(frozen=True)
class FingerprintCheck:
    """What :func:`check_tree` found: the tree's identity against the expected one."""

    expected: Fingerprint
    md5: str
    nfiles: int
    size: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return self.md5 == self.expected.md5

    def record(self) -> dict[str, Any]:
        """The check as JSON-ready data (recorded in provenance; no paths, no clock)."""
        return {
            "matches": self.matches,
            "expected": {
                "md5": self.expected.md5,
                "nfiles": self.expected.nfiles,
                "size": self.expected.size,
                "source": self.expected.source,
            },
            "observed": {"md5": self.md5, "nfiles": self.nfiles, "size": self.size},
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "message": self.message(),
        }

    def message(self) -> str:
        """One line: equal, or how the tree differs from the expected snapshot."""
        want = self.expected
        if self.matches:
            return (
                f"the renamed tree equals the authors' DVC snapshot ({want.md5}, "
                f"{want.nfiles} files, {want.size:,} bytes)"
            )
        parts = [
            f"the renamed tree differs from the authors' DVC snapshot: md5 {self.md5} "
            f"(expected {want.md5})",
            f"{self.nfiles} files (expected {want.nfiles})"
            if self.nfiles != want.nfiles
            else f"same file count ({self.nfiles})",
            f"{self.size:,} bytes (expected {want.size:,})"
            if self.size != want.size
            else f"same byte total ({self.size:,})",
        ]
        if self.missing:
            parts.append(f"missing {_names(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected {_names(self.unexpected)}")
        if not (self.missing or self.unexpected):
            parts.append("same names, so some file's contents differ")
        parts.append("the source may have changed since their snapshot")
        return "; ".join(parts)


def _names(names: tuple[str, ...], shown: int = 10) -> str:
    head = ", ".join(names[:shown])
    more = len(names) - shown
    return f"{head} and {more} more" if more > 0 else head


def check_tree(
    root: str | Path, exclude: Iterable[str] = (), expected: Fingerprint = AUTHORS
) -> FingerprintCheck:
    """DVC's directory hash of ``root`` (files named in ``exclude`` — relative posix
    paths, e.g. the licence — left out, as the authors' tree has none) against
    ``expected``."""
    skip = set(exclude)
    files = {rel: v for rel, v in tree_files(root).items() if rel not in skip}
    tree = dir_hash_from_files(files)
    names = set(files)
    return FingerprintCheck(
        expected=expected,
        md5=tree.md5,
        nfiles=tree.nfiles,
        size=tree.size,
        missing=tuple(sorted(expected.names - names)),
        unexpected=tuple(sorted(names - expected.names)),
    )


def enforce(result: FingerprintCheck, strict: bool, path: str | Path) -> None:
    """Log the result; a difference is a warning, or :class:`FingerprintError` if ``strict``."""
    if result.matches:
        log.info("%s", result.message())
        return
    if strict:
        raise FingerprintError(result.message(), path=path)
    log.warning("%s", result.message())
