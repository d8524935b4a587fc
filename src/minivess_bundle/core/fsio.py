"""Atomic, deterministic file writes and hashing.

A killed or failed job must never leave a half-written file at a final path, so
every output is written next to its final name under a temporary name, fsynced and
moved into place with ``os.replace`` (atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def temp_path_for(final: Path) -> Path:
    """The temporary sibling of ``final`` used while it is being written."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def remove_stale(folder: Path, pattern: str, keep: Path | None = None) -> list[Path]:
    """Remove what killed writers left in ``folder`` (files or folders matching ``pattern``,
    e.g. ``.name.tmp-*``), except ``keep``. Only one job writes a given output at a time
    (Snakemake's DAG and lock), so another process's temporary of the same name is
    garbage from a killed run, which would otherwise stay forever."""
    removed = []
    for stale in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        if stale == keep:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        removed.append(stale)
    return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(exc: BaseException, tmp: Path, final: Path) -> BaseException:
    """A write error on ``tmp`` (or one that names no file, as ``write()``'s do) renamed
    to say ``final`` (e.g. "No space left on device while writing (final)"); an error
    that already names another file (an input, an inner output) is kept as it is."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return exc
    if exc.filename not in (None, str(tmp)) and exc.filename2 != str(tmp):
        return exc  # (shutil.copyfile names the source first, then the temporary)
    return OSError(exc.errno, f"{exc.strerror or exc} while writing", str(final))


@contextlib.contextmanager
def _cleaned_up(tmp: Path, final: Path) -> Iterator[None]:
    """On any error inside, remove ``tmp`` and raise the error named for ``final``
    (:func:`_named`): a failed write (a full disk) leaves nothing behind, and its error
    names the final file rather than the temporary one."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        named = _named(exc, tmp, final)
        if named is exc:
            raise
        raise named from exc


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success move it to ``final`` atomically.

    On any exception the temporary file is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    remove_stale(final.parent, f".{glob.escape(final.name)}.tmp-*", keep=tmp)
    with _cleaned_up(tmp, final):
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)


def write_bytes_atomic(final: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, 2-space indent, UTF-8, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_json_atomic(final: str | Path, obj: Any) -> Path:
    """Write ``obj`` as canonical JSON to ``final`` atomically."""
    return write_bytes_atomic(final, json_bytes(obj))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_extents(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` with ``copy_file_range``: on a copy-on-write file
    system (btrfs, XFS with reflink) the kernel shares the extents, so the copy costs no
    disk and an edit to either file never reaches the other; elsewhere (ext4, tmpfs) it
    copies in the kernel. Falls back to :func:`shutil.copyfile` where the call is missing
    or refused (another file system on older kernels). Returns ``"copy"``."""
    size = source.stat().st_size
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            done = 0
            while done < size:
                step = os.copy_file_range(src.fileno(), dst.fileno(), size - done)
                if step == 0:
                    break
                done += step
        if done == size:
            return "copy"
    except (AttributeError, OSError) as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            raise
    shutil.copyfile(source, target)
    return "copy"


def link_or_copy(source: str | Path, final: str | Path, allow_link: bool = True) -> str:
    """Place ``source``'s bytes at ``final`` without rewriting them.

    Hardlinks when source and destination share a file system (no bytes move),
    otherwise (or with ``allow_link=False``, for files that are not ours, such as
    a user's source folder) copies to a temporary name, verifies size and sha256
    against the source, and renames atomically. Returns ``"hardlink"`` or ``"copy"``.
    """
    source, final = Path(source), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    remove_stale(final.parent, f".{glob.escape(final.name)}.tmp-*")
    method = "copy"
    with _cleaned_up(tmp, final):
        if allow_link:
            with contextlib.suppress(OSError):  # another file system: copy instead
                os.link(source, tmp)
                method = "hardlink"
        if method == "copy":
            method = copy_extents(source, tmp)
            if tmp.stat().st_size != source.stat().st_size or sha256_file(tmp) != sha256_file(
                source
            ):
                raise OSError(f"copy of {source} to {final} does not match its source")
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    return method


#: ``ioctl(FICLONE)`` (linux/fs.h): share all of a file's extents with another file.
FICLONE = 0x40049409

#: Read size of :func:`copy_hashed` and the hashing readers (big reads: fewer calls,
#: and hashlib releases the GIL on buffers over 2 KiB, so threads hash in parallel).
BIG_CHUNK = 4 << 20

#: Digests every bag file carries: the BagIt manifests' two and DVC 3's md5.
BAG_DIGESTS = ("sha256", "sha512", "md5")


def _hashers(algorithms: tuple[str, ...]) -> dict[str, Any]:
    return {
        a: hashlib.md5(usedforsecurity=False) if a == "md5" else hashlib.new(a) for a in algorithms
    }


def hash_file(path: str | Path, algorithms: tuple[str, ...] = BAG_DIGESTS):
    """Size and ``{algorithm: hex}`` of a file, every digest from one read."""
    hashers = _hashers(algorithms)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(BIG_CHUNK):
            size += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
    return size, {name: h.hexdigest() for name, h in hashers.items()}


def _reflink(source: Path, target: Path) -> bool:
    """Make ``target`` share ``source``'s extents (btrfs, XFS with reflink, bcachefs);
    False where the file system cannot (ext4, tmpfs, another file system)."""
    import fcntl

    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            os.fsync(dst.fileno())
        return True
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        return False


def copy_hashed(
    source: str | Path,
    final: str | Path,
    algorithms: tuple[str, ...] = BAG_DIGESTS,
    allow_link: bool = False,
) -> tuple[str, int, dict[str, str]]:
    """Place ``source``'s bytes at ``final`` and hash them, reading the bytes once.

    A copy-on-write file system shares the extents (``FICLONE``: no bytes written,
    an edit to either file never reaches the other), then the copy is read once for
    its digests; elsewhere one read of ``source`` feeds the write and every digest
    (no second read to check the copy: the digests are of the bytes written, and
    :mod:`minivess_bundle.bundle.verify` re-reads the bag independently). ``allow_link``
    hardlinks instead where it can. Written to a temporary sibling, fsynced and
    renamed, like :func:`link_or_copy`. Returns ``(method, size, digests)``, method
    ``"hardlink"``, ``"reflink"`` or ``"copy"``.
    """
    source, final = Path(source), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    remove_stale(final.parent, f".{glob.escape(final.name)}.tmp-*")
    with _cleaned_up(tmp, final):
        method = ""
        if allow_link:
            with contextlib.suppress(OSError):  # another file system: copy instead
                os.link(source, tmp)
                method = "hardlink"
        if not method and _reflink(source, tmp):
            method = "reflink"
        if method:
            size, digests = hash_file(tmp, algorithms)
        else:
            method, size, hashers = "copy", 0, _hashers(algorithms)
            expected = source.stat().st_size
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(BIG_CHUNK):
                    size += len(chunk)
                    for hasher in hashers.values():
                        hasher.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if size != expected:
                raise OSError(f"{source} changed size while copying to {final}")
            digests = {name: h.hexdigest() for name, h in hashers.items()}
        os.replace(tmp, final)
    return method, size, digests
