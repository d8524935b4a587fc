"""Check a bundle — the bag folder or its ``.tar`` — without trusting anything in it.

:func:`verify_bundle` reads every file once (sha256, sha512 and md5 together) and
reports, by file name:

* **completeness**: files listed in a manifest but absent (*missing*), payload
  files in ``data/`` that no manifest lists and tag files no tag manifest lists
  (*unexpected*);
* **fixity**: both payload manifests (``manifest-sha256.txt``,
  ``manifest-sha512.txt``) and both tag manifests;
* **Payload-Oxum** (bytes.files of ``data/``) and ``bagit.txt`` (BagIt 1.0, UTF-8);
* **DVC hashes** in the DVC files next to PATH (``<name>.dvc``,
  ``dvc/parts/*.dvc``, ``dvc/pipeline/dvc.lock``; see :mod:`minivess_bundle.bundle.dvcmeta`)
  for every output that points into the bag, when such files exist;
* for an archive: one top folder, no absolute or ``..`` names, no links or
  special members, no duplicate names, and the ``<archive>.sha256`` line when
  present.

The **digest** identifies what was verified: for an archive, the sha256 of the
archive file (what ``<archive>.sha256`` holds); for a folder, the sha256 of its
``manifest-sha256.txt``, which pins the bytes and names of every payload file
(tag files are pinned by the tag manifests, checked too, but not by the digest).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BundleError
from ..core.fsio import BIG_CHUNK, sha256_file
from . import ALGORITHMS, file_digests, parse_bag_info, parse_manifest
from .dvcmeta import DVC_DIR, dir_hash_from_files, read_dvc_outs, subtree

#: Tag files read into memory for checking (bigger root files are only hashed).
MAX_TAG_BYTES = 64 << 20

Entries = dict[str, tuple[int, dict[str, str]]]


@dataclass
class VerifyResult:
    """What :func:`verify_bundle` found; ``ok`` when ``problems`` is empty."""

    path: str
    kind: str  # "folder" or "archive"
    name: str
    digest: str
    digest_of: str  # "archive" or "manifest-sha256.txt"
    problems: list[str] = field(default_factory=list)
    payload_files: int = 0
    payload_bytes: int = 0
    dvc_checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _short(digest: str) -> str:
    return digest[:16] + "…" if len(digest) > 16 else digest


def check_bag(entries: Entries, texts: dict[str, bytes]) -> list[str]:
    """Problems of a bag given ``{relpath: (size, digests)}`` of all its files and tag texts."""
    problems: list[str] = []
    bagit = texts.get("bagit.txt")
    if bagit is None:
        problems.append("missing tag file bagit.txt")
    else:
        try:
            declared = parse_bag_info(bagit.decode("utf-8"))
        except (UnicodeDecodeError, BundleError) as exc:
            declared = {}
            problems.append(f"bagit.txt is unreadable ({exc})")
        if declared.get("BagIt-Version") != ["1.0"]:
            problems.append(
                f"bagit.txt declares BagIt-Version {declared.get('BagIt-Version')} — expected 1.0"
            )
        if declared.get("Tag-File-Character-Encoding") != ["UTF-8"]:
            problems.append("bagit.txt does not declare Tag-File-Character-Encoding: UTF-8")

    payload = {p: v for p, v in entries.items() if p.startswith("data/")}
    missing: dict[str, str] = {}
    unexpected: dict[str, str] = {}
    for kind in ("manifest", "tagmanifest"):
        for alg in ALGORITHMS:
            manifest = f"{kind}-{alg}.txt"
            if manifest not in texts:
                problems.append(f"missing {manifest}")
                continue
            try:
                listed = parse_manifest(texts[manifest].decode("utf-8"))
            except (UnicodeDecodeError, BundleError) as exc:
                problems.append(f"{manifest} is unreadable ({exc})")
                continue
            for path, expected in sorted(listed.items()):
                norm = posixpath.normpath(path)
                if norm != path or path.startswith(("/", "../")):
                    problems.append(f"{manifest} lists an unsafe path {path!r}")
                    continue
                if kind == "manifest" and not path.startswith("data/"):
                    problems.append(f"{manifest} lists {path}, which is outside data/")
                    continue
                if path not in entries:
                    missing.setdefault(path, manifest)
                    continue
                found = entries[path][1][alg]
                if found != expected:
                    problems.append(
                        f"{path}: {alg} mismatch (file {_short(found)} — {manifest} says "
                        f"{_short(expected)})"
                    )
            if kind == "manifest":
                for path in sorted(set(payload) - set(listed)):
                    unexpected.setdefault(path, manifest)
            else:
                tag_paths = {
                    p
                    for p in entries
                    if not p.startswith("data/") and not p.startswith("tagmanifest-")
                }
                for path in sorted(tag_paths - set(listed)):
                    unexpected.setdefault(path, manifest)
    problems += [f"missing file {p} (listed in {m})" for p, m in sorted(missing.items())]
    problems += [f"unexpected file {p} (not in {m})" for p, m in sorted(unexpected.items())]

    info = texts.get("bag-info.txt")
    if info is None:
        problems.append("missing tag file bag-info.txt")
    else:
        try:
            oxum = parse_bag_info(info.decode("utf-8")).get("Payload-Oxum", [])
        except (UnicodeDecodeError, BundleError) as exc:
            oxum = []
            problems.append(f"bag-info.txt is unreadable ({exc})")
        actual = f"{sum(size for size, _ in payload.values())}.{len(payload)}"
        if oxum != [actual]:
            problems.append(f"Payload-Oxum {oxum[0] if oxum else 'absent'} — data/ holds {actual}")
    return problems


def dvc_candidates(location: Path, name: str) -> list[Path]:
    """The DVC files that may describe a bag named ``name`` sitting in ``location``."""
    found = [location / f"{name}.dvc"]
    found += sorted((location / DVC_DIR / "parts").glob("*.dvc"))
    found.append(location / DVC_DIR / "pipeline" / "dvc.lock")
    return [p for p in found if p.is_file()]


def check_dvc(entries: Entries, bag_path: Path, dvc_files: list[Path]) -> tuple[list[str], list]:
    """Compare the DVC hashes in ``dvc_files`` with the bag's files (as if at ``bag_path``)."""
    problems, checked = [], []
    files = {rel: (digests["md5"], size) for rel, (size, digests) in entries.items()}
    bag = os.path.normpath(bag_path)
    for dvc_file in dvc_files:
        try:
            outs = read_dvc_outs(dvc_file)
        except BundleError as exc:
            problems.append(str(exc))
            continue
        for out in outs:
            target = os.path.normpath(os.path.join(dvc_file.parent, str(out.get("path", ""))))
            if target == bag:
                tree_files = files
            elif target.startswith(bag + os.sep):
                tree_files = subtree(files, Path(target).relative_to(bag).as_posix())
            else:
                continue
            tree = dir_hash_from_files(tree_files)
            label = f"{dvc_file.name}: {out.get('path')}"
            for key in ("md5", "size", "nfiles"):
                if out.get(key) != getattr(tree, key):
                    problems.append(
                        f"{label}: DVC {key} {out.get(key)} — the bag gives {getattr(tree, key)}"
                    )
            checked.append(label)
    return problems, checked


def _scan_folder(bag: Path, threads: int = 1) -> tuple[Entries, dict[str, bytes], list[str]]:
    found: list[tuple[str, Path]] = []
    texts: dict[str, bytes] = {}
    problems = []
    for dirpath, dirnames, filenames in os.walk(bag):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            path = Path(dirpath, name)
            rel = path.relative_to(bag).as_posix()
            if path.is_symlink() or not path.is_file():
                problems.append(f"unexpected link or special file {rel}")
                continue
            found.append((rel, path))
    # Files hashed ``threads`` at a time (hashlib and reads release the GIL), taken in
    # the listing's order: the same entries, in the same order, as one at a time.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        digests = list(pool.map(file_digests, [path for _, path in found]))
    entries: Entries = {}
    for (rel, path), digest in zip(found, digests, strict=True):
        entries[rel] = digest
        if "/" not in rel and digest[0] <= MAX_TAG_BYTES:
            texts[rel] = path.read_bytes()
    return entries, texts, problems


class _Hashers:
    """sha256, sha512 and md5 of one stream; with a pool, sha512 runs beside the other two
    on each chunk (hashlib releases the GIL), so a member is hashed at ~2 cores' speed."""

    def __init__(self, pool: ThreadPoolExecutor | None) -> None:
        self.pool = pool
        self.hashers = {
            "sha256": hashlib.sha256(),
            "sha512": hashlib.sha512(),
            "md5": hashlib.md5(usedforsecurity=False),
        }
        names = [["sha512"], ["sha256", "md5"]] if pool else [list(self.hashers)]
        self.lanes = [[self.hashers[n] for n in lane] for lane in names]

    @staticmethod
    def _update(lane: list, chunk: bytes) -> None:
        for hasher in lane:
            hasher.update(chunk)

    def update(self, chunk: bytes) -> None:
        if self.pool is None:
            self._update(self.lanes[0], chunk)
            return
        for future in [self.pool.submit(self._update, lane, chunk) for lane in self.lanes]:
            future.result()

    def hexdigests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self.hashers.items()}


def _scan_archive(
    archive: Path, pool: ThreadPoolExecutor | None = None
) -> tuple[str, Entries, dict[str, bytes], list[str]]:
    entries: Entries = {}
    texts: dict[str, bytes] = {}
    problems: list[str] = []
    top = None
    seen: set[str] = set()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = member.name.rstrip("/")
                parts = name.split("/")
                if name.startswith("/") or ".." in parts or "" in parts or "\\" in name:
                    problems.append(f"unsafe member name {member.name!r}")
                    continue
                if name in seen:
                    problems.append(f"member {name} appears twice")
                    continue
                seen.add(name)
                top = top or parts[0]
                if parts[0] != top:
                    problems.append(f"member {name} is outside the top folder {top}/")
                    continue
                if member.isdir():
                    continue
                if not member.isreg():
                    problems.append(f"member {name} is a link or special file")
                    continue
                if len(parts) == 1:
                    problems.append(f"member {name} is a file, expected the top folder")
                    continue
                rel = "/".join(parts[1:])
                handle = tar.extractfile(member)
                hashers = _Hashers(pool)
                keep = len(parts) == 2 and member.size <= MAX_TAG_BYTES
                chunks, size = [], 0
                while chunk := handle.read(BIG_CHUNK):
                    size += len(chunk)
                    hashers.update(chunk)
                    if keep:
                        chunks.append(chunk)
                entries[rel] = (size, hashers.hexdigests())
                if keep:
                    texts[rel] = b"".join(chunks)
    except (tarfile.TarError, OSError, EOFError) as exc:
        problems.append(f"archive is unreadable or truncated ({exc})")
    if top is None:
        problems.append("archive holds no bag folder")
    return top or "", entries, texts, problems


def verify_bundle(path: str | Path, threads: int = 1) -> VerifyResult:
    """Verify a bag folder or a ``.tar``/``.tar.gz`` of one; see the module docstring.

    ``threads`` > 1 hashes in parallel (a folder: that many files at once; an archive:
    its own sha256 in one thread while the members are read and hashed in two); the
    result is the same whatever ``threads`` is.
    """
    path = Path(path)
    if path.is_dir():
        entries, texts, problems = _scan_folder(path, threads)
        name, location = path.name, path.parent
        manifest = texts.get("manifest-sha256.txt")
        digest = hashlib.sha256(manifest).hexdigest() if manifest is not None else ""
        kind, digest_of = "folder", "manifest-sha256.txt"
    elif path.is_file():
        if threads > 1:
            with ThreadPoolExecutor(max_workers=3) as pool:
                whole = pool.submit(sha256_file, path)
                name, entries, texts, problems = _scan_archive(path, pool)
                digest = whole.result()
        else:
            digest = sha256_file(path)
            name, entries, texts, problems = _scan_archive(path)
        location = path.parent
        kind, digest_of = "archive", "archive"
        sidecar = path.with_name(path.name + ".sha256")
        if sidecar.is_file():
            recorded = sidecar.read_text(encoding="utf-8", errors="replace").split()
            if not recorded or recorded[0].lower() != digest:
                problems.append(
                    f"{sidecar.name} says {_short(recorded[0]) if recorded else 'nothing'} — "
                    f"the archive's sha256 is {_short(digest)}"
                )
    else:
        raise BundleError("no bag folder or archive at this path", path=path)

    problems += check_bag(entries, texts)
    dvc_problems, checked = check_dvc(entries, location / name, dvc_candidates(location, name))
    problems += dvc_problems
    payload = [size for rel, (size, _) in entries.items() if rel.startswith("data/")]
    return VerifyResult(
        path=path.name,
        kind=kind,
        name=name,
        digest=digest,
        digest_of=digest_of,
        problems=problems,
        payload_files=len(payload),
        payload_bytes=sum(payload),
        dvc_checked=checked,
    )


def verdict(result: VerifyResult) -> str:
    """One line for the CLI: OK or FAILED, what was checked, and the digest."""
    digest = f"sha256 {result.digest} ({result.digest_of})"
    if result.ok:
        dvc = f", {len(result.dvc_checked)} DVC hashes" if result.dvc_checked else ""
        return (
            f"OK {result.path}: bag {result.name}, {result.payload_files} payload files "
            f"({result.payload_bytes} bytes), manifests sha256+sha512, tag manifests, "
            f"Payload-Oxum{dvc} match; {digest}"
        )
    first = result.problems[0]
    more = f" (+{len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
    return f"FAILED {result.path}: {len(result.problems)} problem(s): {first}{more}; {digest}"
