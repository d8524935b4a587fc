"""BagIt 1.0 (RFC 8493): bag names and dates, payload paths, manifests, bag-info, tag files."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..core.errors import BundleError
from ..core.fsio import hash_file
from ..core.layout import BAG_PREFIX, BAG_SECTIONS

log = logging.getLogger(__name__)


SECTIONS = BAG_SECTIONS


ALGORITHMS = ("sha256", "sha512")


BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


GENERATED = (
    "dataset.json",
    "quarantine.json",
    "provenance.json",
    "ro-crate-metadata.json",
    "croissant.json",
    "LICENCE.txt",
    "README.md",
)


#: Bag-info labels the assembler computes; ``bag_info`` cannot set them.
COMPUTED_LABELS = ("Payload-Oxum", "Bagging-Date", "Bag-Software-Agent", "Bag-Size")


VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]*$")


LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


def bag_name(version: str) -> str:
    """``minivess-<version>``; the version may hold digits, letters, ``.``, ``+``, ``-``."""
    if not isinstance(version, str) or not VERSION_RE.match(version) or ".." in version:
        raise BundleError(
            f"version {version!r} is not allowed", expected="e.g. 0.1.0 (letters, digits, . + -)"
        )
    return BAG_PREFIX + version


def bagging_date(source_date_epoch: int) -> str:
    """The UTC date of ``SOURCE_DATE_EPOCH`` (``YYYY-MM-DD``)."""
    if not isinstance(source_date_epoch, int) or source_date_epoch < 0:
        raise BundleError(f"SOURCE_DATE_EPOCH {source_date_epoch!r}", expected="an int >= 0")
    return dt.datetime.fromtimestamp(source_date_epoch, tz=dt.UTC).date().isoformat()


def check_bag_path(rel: str) -> str:
    """Refuse names a manifest cannot carry unambiguously (``%``, ``\\``, control chars)."""
    bad = [c for c in rel if not (" " <= c <= "~") or c in "%\\"]
    parts = rel.split("/")
    if bad or any(p in ("", ".", "..") or p != p.strip() for p in parts):
        raise BundleError(
            f"file name {rel!r} cannot go into a manifest",
            expected="printable ASCII without %, backslash, empty or dot components",
        )
    return rel


def file_digests(path: str | Path) -> tuple[int, dict[str, str]]:
    """Size and ``{"sha256", "sha512", "md5"}`` of a file, in one read."""
    return hash_file(path, ("sha256", "sha512", "md5"))


def manifest_bytes(digests: Mapping[str, str]) -> bytes:
    """A BagIt manifest: ``<hex>  <path>`` per file, sorted by path, LF line ends."""
    return "".join(f"{digests[p]}  {p}\n" for p in sorted(digests)).encode()


def parse_manifest(text: str) -> dict[str, str]:
    """``{path: hex}`` of a manifest; duplicate paths raise :class:`BundleError`."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, path = line.partition(" ")
        path = path.lstrip(" ").lstrip("*")
        if not digest or not path:
            raise BundleError(f"manifest line {number} is malformed: {line!r}")
        if path in entries:
            raise BundleError(f"manifest lists {path} twice (line {number})")
        entries[path] = digest.lower()
    return entries


def bag_info_bytes(fields: Mapping[str, str | list[str]]) -> bytes:
    """``bag-info.txt``: ``Label: value`` lines, labels sorted, one line per value."""
    lines = []
    for label in sorted(fields):
        values = fields[label]
        for value in [values] if isinstance(values, str) else values:
            lines.append(f"{label}: {value}\n")
    return "".join(lines).encode()


def parse_bag_info(text: str) -> dict[str, list[str]]:
    """``{label: [values]}`` of a tag file (continuation lines folded in)."""
    fields: dict[str, list[str]] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and last is not None:
            fields[last][-1] += " " + line.strip()
            continue
        label, sep, value = line.partition(":")
        if not sep:
            raise BundleError(f"tag line without a colon: {line!r}")
        last = label.strip()
        fields.setdefault(last, []).append(value.strip())
    return fields


def write_bag_files(bag: Path, info: Mapping[str, str | list[str]], digests: Mapping) -> str:
    """Write bagit.txt, bag-info.txt, both manifests and both tag manifests.

    ``digests`` maps payload paths (``data/...``) to ``{"sha256", "sha512"}``.
    Returns the sha256 of ``manifest-sha256.txt``.
    """
    tag_files: dict[str, bytes] = {"bagit.txt": BAGIT_TXT, "bag-info.txt": bag_info_bytes(info)}
    for alg in ALGORITHMS:
        tag_files[f"manifest-{alg}.txt"] = manifest_bytes({p: d[alg] for p, d in digests.items()})
    for rel, data in tag_files.items():
        _write(bag / rel, data)
    for alg in ALGORITHMS:
        tag_digests = {rel: hashlib.new(alg, data).hexdigest() for rel, data in tag_files.items()}
        _write(bag / f"tagmanifest-{alg}.txt", manifest_bytes(tag_digests))
    return hashlib.sha256(tag_files["manifest-sha256.txt"]).hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Write and fsync a file inside the temporary bag (the bag is renamed as a whole)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
