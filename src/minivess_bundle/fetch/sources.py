"""Land one volume from a real-data source into a staging folder.

A source is either the EBRAINS ZIP (:data:`minivess_bundle.core.dataset.EBRAINS_ZIP`)
or a folder it was already extracted to. Either way one job lands one volume in
the EBRAINS layout, which :func:`minivess_bundle.core.volumes.staging_names` spells::

    <staging>/raw/mvNN.nii.gz
    <staging>/seg/mvNN_y.nii.gz
    <staging>/json/mvNN.json

and the licence (``Licence (CCBY-NC-SA).pdf``) is landed once, by its own job.

The ZIP is untrusted input. Opening it checks the whole member list once (a
hostile archive is hostile whatever volume is asked for) and refuses absolute
names, ``..`` components, backslashes, NUL bytes, symlink members and duplicate
names. Only the members of the requested volume are read, each streamed to a
temporary sibling of its final path while its CRC-32, size and sha256 are
computed; the CRC and size are compared with the archive's central directory
before the file is moved into place, so a final path only ever holds verified
bytes. The ZIP may hold the layout at its root or under one top-level folder;
the prefix is detected when the archive is opened.

A folder source is copied with :func:`minivess_bundle.core.fsio.link_or_copy`
(``allow_link=False``: a verified copy, never a hardlink to the user's files, whose
metadata the workflow must not touch), and a symlink in it that resolves outside
the folder is refused.

Names: only the exact names of the requested volume are ever read, so a stray
file (``notes.txt``, ``mv100.nii.gz``) is ignored; the licence fetch, which runs
once per run, logs a warning listing every file under ``raw/``, ``seg/``,
``json/`` that is not named like a volume. A *near miss* of the requested
volume's name, equal up to case, spaces, zero padding or ``.nii`` for
``.nii.gz`` (``mv1.nii.gz``, ``MV01.nii.gz``, ``mv01 .nii.gz``), is named in the
"missing" error when the exact name is absent and logged as a warning when it
is present too. Files land only at ``<staging>/<staging_names(volume)>``, with
``volume`` checked to be ``mvNN`` first.

Each ``fetch_*`` function returns what it landed: the staging-relative path,
size and sha256 of every file, plus the member name and CRC-32 for a ZIP, or
the placement method (``"hardlink"`` / ``"copy"``) for a folder. No absolute
path appears in the record (the archive is named by its file name only).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from ..core import fsio
from ..core.errors import SourceError
from ..core.volumes import EBRAINS_LICENCE, staging_names

log = logging.getLogger(__name__)

#: The top-level folders of the EBRAINS layout.
EBRAINS_FOLDERS = ("raw", "seg", "json")

#: A file of the layout, optionally under one top-level folder (captured as ``prefix``).
_LAYOUT_RE = re.compile(
    r"^(?P<prefix>(?:[^/]+/)?)"
    rf"(?:(?:{'|'.join(EBRAINS_FOLDERS)})/[^/]+|{re.escape(EBRAINS_LICENCE)})$"
)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
#: Layout-relative names of a volume's files; anything else under raw/seg/json is ignored.
_VOLUME_FILE_RE = re.compile(
    r"^(?:raw/mv\d{2}\.nii\.gz|seg/mv\d{2}_y\.nii\.gz|json/mv\d{2}\.json)$"
)
#: A file name read loosely (lower case, spaces dropped): ``mv0*N``, ``_y``, extension.
_LOOSE_NAME_RE = re.compile(r"mv0*(\d+)(_y)?\.(nii\.gz|nii|json)")
#: Most names listed in one warning or error.
_MAX_NAMES = 10
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)


def _loose_key(rel: str) -> tuple[str, int, str, str] | None:
    """``rel`` compared loosely: case, spaces, zero padding and .nii vs .nii.gz ignored."""
    folder, _, base = rel.rpartition("/")
    match = _LOOSE_NAME_RE.fullmatch("".join(base.split()).lower())
    if match is None:
        return None
    kind = "json" if match[3] == "json" else "nifti"
    return folder.lower(), int(match[1]), match[2] or "", kind


def _near_misses(wanted: str, names: list[str]) -> list[str]:
    """The names (layout-relative) that are ``wanted`` up to case, spaces, padding, suffix."""
    key = _loose_key(wanted)
    return [n for n in names if n != wanted and key is not None and _loose_key(n) == key]


def _shown(names: list[str]) -> str:
    more = len(names) - _MAX_NAMES
    return ", ".join(repr(n) for n in names[:_MAX_NAMES]) + (
        f" and {more} more" if more > 0 else ""
    )


#: What a "missing" error expects when near-miss names were found.
_EXACT_NAMES = (
    "the EBRAINS layout with names exactly raw/mvNN.nii.gz, seg/mvNN_y.nii.gz, "
    "json/mvNN.json (lower case, two digits, no spaces): rename the files"
)


def _with_near_misses(check: str, near: list[str]) -> str:
    """A "missing" error's text, naming the near-miss names found instead (if any)."""
    if not near:
        return check
    return f"{check}; found near-miss name{'s' if len(near) > 1 else ''} {_shown(near)}"


def _warn_near_misses(volume: str, wanted: dict[str, str], names: list[str]) -> None:
    near = sorted({n for rel in wanted.values() for n in _near_misses(rel, names)})
    if near:
        log.warning(
            "%s: ignoring near-miss name(s) %s; only the exact names %s are read",
            volume,
            _shown(near),
            ", ".join(wanted.values()),
        )


def _warn_ignored(source: Path, names: list[str]) -> None:
    """Warn once (from the licence fetch) about files that no volume will ever read."""
    in_layout = (n for n in names if n.split("/", 1)[0] in EBRAINS_FOLDERS)
    ignored = sorted(n for n in in_layout if not _VOLUME_FILE_RE.match(n))
    if ignored:
        log.warning(
            "%s: ignoring %d file(s) not named like a volume "
            "(raw/mvNN.nii.gz, seg/mvNN_y.nii.gz, json/mvNN.json): %s",
            source,
            len(ignored),
            _shown(ignored),
        )


@contextlib.contextmanager
def _all_or_nothing() -> Iterator[list[Path]]:
    """Collect the final paths a fetch lands; if the fetch fails, remove them all."""
    landed: list[Path] = []
    try:
        yield landed
    except BaseException:
        for path in landed:
            path.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# ZIP source


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member must not be extracted, or ``None`` if its name and type are safe."""
    name = info.orig_filename  # zipfile cuts ``filename`` at a NUL; the original keeps it
    if "\x00" in name:
        return "has a NUL byte in its name"
    if "\\" in name:
        return "has a backslash in its name"
    if name.startswith("/") or _DRIVE_RE.match(name):
        return "has an absolute name"
    if ".." in PurePosixPath(name).parts:
        return "has a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symlink"
    return None


def _check_members(archive: zipfile.ZipFile, zip_path: Path, volume: str | None) -> None:
    """Refuse the archive if any member is unsafe or named twice."""
    seen: set[str] = set()
    for info in archive.infolist():
        reason = _unsafe_reason(info)
        if reason:
            raise SourceError(
                f"member {info.orig_filename!r} {reason}",
                volume=volume,
                path=zip_path,
                expected="relative member names inside the archive, no links",
            )
        if info.filename in seen:
            raise SourceError(
                f"member {info.filename!r} appears twice",
                volume=volume,
                path=zip_path,
                expected="each member name once",
            )
        seen.add(info.filename)


def _detect_prefix(archive: zipfile.ZipFile, zip_path: Path, volume: str | None) -> str:
    """The folder prefix (``""`` or ``"<top>/"``) under which the EBRAINS layout lies."""
    prefixes = set()
    for name in archive.namelist():
        match = _LAYOUT_RE.match(name)
        if match:
            prefixes.add(match["prefix"])
    if not prefixes:
        raise SourceError(
            "no EBRAINS layout in the archive",
            volume=volume,
            path=zip_path,
            expected="raw/, seg/, json/ and the licence at the root or under one top-level folder",
        )
    if len(prefixes) > 1:
        found = ", ".join(repr(p) or "''" for p in sorted(prefixes))
        raise SourceError(
            f"EBRAINS layout found under several prefixes ({found})",
            volume=volume,
            path=zip_path,
            expected="one layout per archive",
        )
    return prefixes.pop()


@contextlib.contextmanager
def _open_zip(zip_path: Path, volume: str | None) -> Iterator[tuple[zipfile.ZipFile, str]]:
    """Open, vet and locate the layout in an EBRAINS ZIP; yield ``(archive, prefix)``."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except OSError as exc:
        raise SourceError(
            f"cannot open archive: {exc.strerror or exc}", volume=volume, path=zip_path
        ) from exc
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise SourceError(
            "not a ZIP archive or truncated",
            volume=volume,
            path=zip_path,
            expected="the EBRAINS MiniVess ZIP",
        ) from exc
    with archive:
        _check_members(archive, zip_path, volume)
        yield archive, _detect_prefix(archive, zip_path, volume)


def _land_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    final: Path,
    zip_path: Path,
    volume: str | None,
) -> dict[str, Any]:
    """Stream one member to ``final`` atomically, verifying its CRC-32 and size."""
    name = info.filename
    expected_crc = f"crc32 {info.CRC:08x}, {info.file_size} bytes"
    crc, size, digest = 0, 0, hashlib.sha256()
    with fsio.atomic_path(final) as tmp:
        try:
            with archive.open(info) as src, open(tmp, "wb") as dst:
                try:
                    while chunk := src.read(fsio.CHUNK):
                        crc = zlib.crc32(chunk, crc)
                        size += len(chunk)
                        digest.update(chunk)
                        dst.write(chunk)
                except zipfile.BadZipFile as exc:
                    if "CRC" not in str(exc):
                        raise
                    # zipfile checks the CRC itself when the member ends and drops the
                    # last chunk; CPython keeps the CRC of every byte it decoded.
                    observed = getattr(src, "_running_crc", None)
                    seen = f"crc32 {observed:08x}" if isinstance(observed, int) else str(exc)
                    raise SourceError(
                        f"member {name} CRC mismatch ({seen})",
                        volume=volume,
                        path=zip_path,
                        expected=expected_crc,
                    ) from exc
        except _ZIP_READ_ERRORS as exc:
            raise SourceError(
                f"member {name} unreadable ({exc})",
                volume=volume,
                path=zip_path,
                expected="an intact archive",
            ) from exc
        if crc != info.CRC or size != info.file_size:
            raise SourceError(
                f"member {name} CRC mismatch (crc32 {crc:08x}, {size} bytes)",
                volume=volume,
                path=zip_path,
                expected=expected_crc,
            )
    log.info("landed %s from %s (%d bytes, crc32 %08x)", final, zip_path.name, size, crc)
    return {"member": name, "size": size, "crc32": f"{crc:08x}", "sha256": digest.hexdigest()}


def _fetch_members(
    zip_path: str | Path, wanted: dict[str, str], staging_dir: str | Path, volume: str | None
) -> dict[str, Any]:
    """Land the staging-relative paths in ``wanted`` (key -> path) from the ZIP."""
    zip_path, staging_dir = Path(zip_path), Path(staging_dir)
    with _open_zip(zip_path, volume) as (archive, prefix):
        infos: dict[str, zipfile.ZipInfo] = {}
        missing = []
        for key, rel in wanted.items():
            try:
                info = archive.getinfo(prefix + rel)
            except KeyError:
                missing.append(prefix + rel)
                continue
            if info.is_dir():
                missing.append(prefix + rel)
                continue
            infos[key] = info
        names = [
            n[len(prefix) :] for n in archive.namelist() if n.startswith(prefix) and n[-1:] != "/"
        ]
        if missing:
            near = sorted({n for rel in wanted.values() for n in _near_misses(rel, names)})
            raise SourceError(
                _with_near_misses(
                    f"missing member{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                    [prefix + n for n in near],
                ),
                volume=volume,
                path=zip_path,
                expected=_EXACT_NAMES if near else "the EBRAINS layout",
            )
        if volume is None:
            _warn_ignored(zip_path, names)
        else:
            _warn_near_misses(volume, wanted, names)
        for info in infos.values():
            if info.flag_bits & 0x1:
                raise SourceError(
                    f"member {info.filename} is encrypted",
                    volume=volume,
                    path=zip_path,
                    expected="an unencrypted archive",
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise SourceError(
                    f"member {info.filename} uses compression method {info.compress_type}",
                    volume=volume,
                    path=zip_path,
                    expected="stored (0) or deflated (8)",
                )
        files = {}
        with _all_or_nothing() as landed:
            for key, rel in wanted.items():
                final = staging_dir / rel
                files[key] = {
                    "path": rel,
                    **_land_member(archive, infos[key], final, zip_path, volume),
                }
                landed.append(final)
    return {"source": "zip", "archive": zip_path.name, "prefix": prefix, "files": files}


def fetch_from_zip(zip_path: str | Path, volume: str, staging_dir: str | Path) -> dict[str, Any]:
    """Land ``volume``'s image, label and metadata from the EBRAINS ZIP into ``staging_dir``.

    Reads only that volume's three members. Returns::

        {"volume": "mv07", "source": "zip", "archive": "<zip file name>", "prefix": "" | "<top>/",
         "files": {"image" | "label" | "metadata":
                   {"path": "raw/mv07.nii.gz", "member": "<name in zip>", "size": int,
                    "crc32": "89ab0123", "sha256": "<hex>"}}}

    Raises :class:`SourceError` for an unreadable or hostile archive, a missing
    member or a CRC/size mismatch; no partial file is ever left at a final path.
    """
    wanted = staging_names(volume)
    return {"volume": volume, **_fetch_members(zip_path, wanted, staging_dir, volume)}


def fetch_licence_from_zip(zip_path: str | Path, staging_dir: str | Path) -> dict[str, Any]:
    """Land the licence PDF from the EBRAINS ZIP as ``<staging_dir>/Licence (CCBY-NC-SA).pdf``.

    Returns the :func:`fetch_from_zip` record without ``volume``, with one file
    under the key ``"licence"``.
    """
    return _fetch_members(zip_path, {"licence": EBRAINS_LICENCE}, staging_dir, None)


# ---------------------------------------------------------------------------
# Folder source


def _fetch_files(
    source_dir: str | Path, wanted: dict[str, str], staging_dir: str | Path, volume: str | None
) -> dict[str, Any]:
    """Place the relative paths in ``wanted`` (key -> path) from ``source_dir``."""
    source_dir, staging_dir = Path(source_dir), Path(staging_dir)
    if not source_dir.is_dir():
        raise SourceError(
            "source folder missing",
            volume=volume,
            path=source_dir,
            expected="an extracted EBRAINS folder with raw/, seg/, json/",
        )
    root = source_dir.resolve()
    missing: list[str] = []  # staging-relative names, a missing folder as "raw/"
    for rel in wanted.values():
        folder = PurePosixPath(rel).parent
        if folder.parts and not (source_dir / folder).is_dir():
            name = f"{folder}/"
        elif not (source_dir / rel).exists():  # also true for a dangling symlink
            name = rel
        else:
            continue
        if name not in missing:
            missing.append(name)
    names = [
        f"{folder}/{entry.name}"
        for folder in EBRAINS_FOLDERS
        if (source_dir / folder).is_dir()
        for entry in sorted((source_dir / folder).iterdir())
        if not entry.is_dir()
    ]
    if missing:
        near = sorted({n for rel in wanted.values() for n in _near_misses(rel, names)})
        raise SourceError(
            _with_near_misses(f"missing {', '.join(missing)}", near),
            volume=volume,
            path=source_dir / missing[0] if len(missing) == 1 else source_dir,
            expected=_EXACT_NAMES
            if near
            else "the EBRAINS layout raw/, seg/, json/ and the licence",
        )
    if volume is None:
        _warn_ignored(source_dir, names)
    else:
        _warn_near_misses(volume, wanted, names)
    sources: dict[str, Path] = {}
    for key, rel in wanted.items():
        path = source_dir / rel
        resolved = path.resolve(strict=True)
        if not resolved.is_relative_to(root):
            raise SourceError(
                f"{rel} links outside the source folder (to {resolved})",
                volume=volume,
                path=path,
                expected=f"a file inside {root}",
            )
        if not resolved.is_file():
            raise SourceError(
                f"{rel} is not a regular file", volume=volume, path=path, expected="a regular file"
            )
        sources[key] = resolved
    files = {}
    with _all_or_nothing() as landed:
        for key, rel in wanted.items():
            final = staging_dir / rel
            # Copies: the user's folder is never linked, so nothing we do later
            # (e.g. aligning modification times) can touch the user's files.
            method = fsio.link_or_copy(sources[key], final, allow_link=False)
            landed.append(final)
            log.info("placed %s from %s (%s)", final, sources[key], method)
            files[key] = {
                "path": rel,
                "size": final.stat().st_size,
                "sha256": fsio.sha256_file(final),
                "method": method,
            }
    return {"source": "dir", "files": files}


def fetch_from_dir(source_dir: str | Path, volume: str, staging_dir: str | Path) -> dict[str, Any]:
    """Place ``volume``'s image, label and metadata from an extracted EBRAINS folder.

    Hardlinks when possible, else copies and verifies (never rewrites bytes).
    Returns::

        {"volume": "mv07", "source": "dir",
         "files": {"image" | "label" | "metadata":
                   {"path": "raw/mv07.nii.gz", "size": int, "sha256": "<hex>",
                    "method": "hardlink" | "copy"}}}

    Raises :class:`SourceError` naming the path for a missing folder or file, a
    non-regular file, or a symlink that resolves outside ``source_dir``.
    """
    wanted = staging_names(volume)
    return {"volume": volume, **_fetch_files(source_dir, wanted, staging_dir, volume)}


def fetch_licence_from_dir(source_dir: str | Path, staging_dir: str | Path) -> dict[str, Any]:
    """Place the licence PDF from an extracted EBRAINS folder into ``staging_dir``.

    Returns the :func:`fetch_from_dir` record without ``volume``, with one file
    under the key ``"licence"``.
    """
    return _fetch_files(source_dir, {"licence": EBRAINS_LICENCE}, staging_dir, None)
