"""A byte-reproducible tar of the bag: the same folder always gives the same bytes.

What makes ``tar`` differ between two builds of the same files, and what this
module does about it:

* entry order (directory listing order) -> entries sorted by path;
* timestamps -> every mtime is ``SOURCE_DATE_EPOCH``; GNU format, so no pax
  headers carrying atime/ctime or sub-second times are ever written;
* owners -> uid/gid 0, user/group names empty;
* permissions (umask) -> 0755 for folders and executable files, 0644 otherwise;
* hardlinks (the bag hardlinks the raw files) -> stored as regular files, so the
  archive does not depend on which files happen to share an inode;
* gzip (optional) -> header mtime 0 and no file name. The tar bytes do not
  depend on the machine; the gzip bytes depend on the zlib build, so the
  ``.tar`` sha256 is the reproducibility anchor.

Everything sits under one top folder, the bag's name (``minivess-<version>``).
MONAI's ``download_and_extract`` takes the archive's basename up to its first
dot as the extracted folder's name when deciding whether to skip extraction
(``minivess-0``), so it re-extracts on every call; the data lands in
``<output_dir>/minivess-<version>/`` as named here.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.errors import BundleError
from ..core.fsio import BIG_CHUNK, atomic_path, write_bytes_atomic

TAR_SUFFIXES = (".tar", ".tar.gz")


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def archive_members(bag_dir: Path) -> list[tuple[str, Path]]:
    """``(name in the archive, path on disk)`` for the bag's folders and files, sorted."""
    members = [(bag_dir.name, bag_dir)]
    for dirpath, dirnames, filenames in os.walk(bag_dir):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise BundleError(
                    "symbolic link or special file in the bag",
                    path=path.relative_to(bag_dir.parent),
                    expected="regular files and folders only",
                )
            members.append((path.relative_to(bag_dir.parent).as_posix(), path))
    return sorted(members, key=lambda m: m[0])


def _tarinfo(name: str, path: Path, mtime: int) -> tarfile.TarInfo:
    st = path.stat()
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.size = 0
    else:
        info.type = tarfile.REGTYPE  # hardlinks too: the bytes, not the link
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
    return info


def _write_plain_tar(members: list[tuple[str, Path]], raw, mtime: int) -> str:
    """Write the members as an uncompressed GNU tar to ``raw``; return its sha256.

    The same bytes as :mod:`tarfile` in stream mode (``"w|"``): each header from
    ``TarInfo.tobuf`` (GNU long-name blocks included), the data padded to 512 bytes,
    two zero blocks, then zeros up to a whole 10240-byte record. The data goes
    through in 4 MiB reads instead of tarfile's 10 KiB record writes, and the sha256
    of one read runs in a helper thread while that read is written (hashlib releases
    the GIL), so archiving costs one read of the bag and one write of the archive.
    """
    sha256 = hashlib.sha256()
    offset = 0
    with ThreadPoolExecutor(max_workers=1) as hasher:
        pending = None

        def put(data: bytes) -> None:
            nonlocal pending, offset
            if pending is not None:
                pending.result()
            pending = hasher.submit(sha256.update, data)
            raw.write(data)
            offset += len(data)

        for name, path in members:
            info = _tarinfo(name, path, mtime)
            put(info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape"))
            if info.isdir():
                continue
            size = 0
            with open(path, "rb") as handle:
                while chunk := handle.read(BIG_CHUNK):
                    size += len(chunk)
                    put(chunk)
            if size != info.size or path.stat().st_size != info.size:
                raise BundleError("file changed size while archiving", path=path)
            if size % tarfile.BLOCKSIZE:
                put(tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
        remainder = (offset + len(end)) % tarfile.RECORDSIZE
        put(end + tarfile.NUL * ((tarfile.RECORDSIZE - remainder) % tarfile.RECORDSIZE))
        pending.result()
    return sha256.hexdigest()


def write_archive(
    bag_dir: str | Path,
    out_tar: str | Path,
    source_date_epoch: int,
    *,
    compress: bool = False,
    compresslevel: int = 6,
) -> str:
    """Write ``bag_dir`` as a deterministic tar at ``out_tar``; returns its sha256.

    ``out_tar`` must end in ``.tar`` (or ``.tar.gz`` with ``compress=True``).
    Also writes ``<out_tar>.sha256`` in ``sha256sum`` format (``<hex>  <name>``),
    so ``sha256sum -c`` checks it. Both files are written atomically.
    """
    bag_dir, out_tar = Path(bag_dir), Path(out_tar)
    suffix = ".tar.gz" if compress else ".tar"
    if not out_tar.name.endswith(suffix) or out_tar.name == suffix:
        raise BundleError(f"archive name {out_tar.name!r}", expected=f"<name>{suffix}")
    if not bag_dir.is_dir():
        raise BundleError("bag folder does not exist", path=bag_dir)
    if not isinstance(source_date_epoch, int) or source_date_epoch < 0:
        raise BundleError(f"SOURCE_DATE_EPOCH {source_date_epoch!r}", expected="an int >= 0")
    members = archive_members(bag_dir)
    with atomic_path(out_tar) as tmp, open(tmp, "wb") as raw:
        if compress:
            sink = _HashingWriter(raw)
            stream = gzip.GzipFile(
                filename="", mode="wb", fileobj=sink, compresslevel=compresslevel, mtime=0
            )
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                for name, path in members:
                    info = _tarinfo(name, path, source_date_epoch)
                    if info.isdir():
                        tar.addfile(info)
                        continue
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
                    if path.stat().st_size != info.size:
                        raise BundleError("file changed size while archiving", path=path)
            stream.close()
            digest = sink.sha256.hexdigest()
        else:
            digest = _write_plain_tar(members, raw, source_date_epoch)
    write_bytes_atomic(sha256_path(out_tar), f"{digest}  {out_tar.name}\n".encode())
    return digest


def sha256_path(archive: str | Path) -> Path:
    """Where the ``sha256sum`` line of ``archive`` lives: ``<archive>.sha256``."""
    archive = Path(archive)
    return archive.with_name(archive.name + ".sha256")
