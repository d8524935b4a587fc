"""Assemble the bag: place the sections and documents, describe them, write the tag files."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.dataset import AUTHORS
from ..core.errors import BundleError
from ..core.fsio import _fsync_dir, copy_hashed, hash_file, json_bytes, remove_stale
from .bagit import (
    GENERATED,
    SECTIONS,
    _write,
    bag_name,
    bagging_date,
    check_bag_path,
    write_bag_files,
)
from .croissant import croissant_metadata
from .datasheet import datasheet
from .describe import (
    CITATION,
    DATASET,
    DOI_URL,
    _bag_info_fields,
    dataset_description,
    licence_text,
    provenance_record,
)
from .rocrate import ro_crate

log = logging.getLogger(__name__)


def _place_tree(source: Path, dest: Path, section: str) -> list[tuple[Path, Path, str]]:
    """``(file, where it goes, bag path)`` for every visible regular file of ``source``,
    in sorted order; hidden ones are skipped, links and special files refused."""
    if not source.is_dir():
        raise BundleError(f"{section} folder does not exist", path=source)
    placed = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            rel = path.relative_to(source).as_posix()
            if name.startswith("."):
                log.info("%s: skipped hidden file %s", section, rel)
                continue
            if path.is_symlink() or not path.is_file():
                raise BundleError(
                    f"{section}: symbolic link or special file",
                    path=path,
                    expected="regular files only",
                )
            check_bag_path(f"{section}/{rel}")
            placed.append((path, dest / rel, f"{section}/{rel}"))
    if not placed:
        raise BundleError(f"{section} folder holds no files", path=source)
    return placed


def _is_synthetic(data: Path, payload: list[str], provenance: Mapping[str, Any]) -> bool:
    """True when the config says so or a per-volume metadata JSON says ``"synthetic": true``."""
    if (provenance.get("config") or {}).get("source") == "synthetic":
        return True
    for rel in payload:
        if rel.split("/")[0] in SECTIONS and "/metadata/" in rel and rel.endswith(".json"):
            with contextlib.suppress(ValueError, OSError, AttributeError):
                if json.loads((data / rel).read_text(encoding="utf-8")).get("synthetic") is True:
                    return True
    return False


def _forbidden_strings(paths: list[Path]) -> list[str]:
    found = {str(Path.home())}
    for path in paths:
        found.add(str(path.resolve()))
        found.add(str(path.absolute()))
    return sorted(s for s in found if len(s) > 1 and s != os.sep)


def _scan_for_leaks(bag: Path, forbidden: list[str]) -> None:
    """Refuse the bag if a text file names a local folder (absolute path, home)."""
    patterns = [(n, re.compile(rf"(?<![\w.-]){re.escape(n)}(?![\w.-])")) for n in forbidden]
    for path in sorted(bag.rglob("*")):
        if not path.is_file() or not path.name.endswith((".json", ".txt", ".md", ".yaml")):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle, pattern in patterns:
            if pattern.search(text):
                raise BundleError(
                    f"output names a local path ({needle})",
                    path=path.relative_to(bag),
                    expected="no absolute path, home folder or host-specific text in the bundle",
                )


@dataclass(frozen=True)
class _Bag:
    """What one bag is made of (the arguments of :func:`assemble_bundle`, checked)."""

    out_dir: Path
    name: str
    version: str
    date: str
    source_date_epoch: int
    sources: dict[str, Path]
    documents: dict[str, Path]
    quarantine: dict[str, str]
    provenance: dict[str, Any]
    bag_info: Mapping[str, str | list[str]]
    link: bool
    threads: int = 1


class _Payload:
    """The files under ``data/`` of the bag being built, with their digests computed once
    (the placed files' while they were copied)."""

    def __init__(self, data: Path) -> None:
        self.data, self._cache = data, {}

    def digests(self, rel: str) -> tuple[int, dict[str, str]]:
        if rel not in self._cache:
            self._cache[rel] = hash_file(self.data / rel)
        return self._cache[rel]

    def files(self) -> list[str]:
        return sorted(
            p.relative_to(self.data).as_posix() for p in self.data.rglob("*") if p.is_file()
        )

    def sizes_and_sha256(self) -> dict[str, tuple[int, str]]:
        return {rel: (self.digests(rel)[0], self.digests(rel)[1]["sha256"]) for rel in self.files()}


def _check_documents(documents: dict[str, Path], sources: dict[str, Path]) -> None:
    for doc, path in documents.items():
        if "/" in doc or doc.startswith(".") or doc in GENERATED or doc in SECTIONS:
            raise BundleError(
                f"document name {doc!r} is not allowed",
                expected=f"a plain file name other than {', '.join(GENERATED + SECTIONS)}",
            )
        check_bag_path(doc)
        if not path.is_file():
            raise BundleError(f"document {doc} does not exist", path=path)
    if not sources and not documents:
        raise BundleError("nothing to bundle", expected="at least one section or document")


def _place_payload(bag: _Bag, payload: _Payload) -> tuple[Counter, dict[str, int]]:
    """Copy (or hardlink) the sections and documents into ``data/``, hashing each file
    while it is copied, ``bag.threads`` files at a time (hashlib and file I/O release the
    GIL). The files are listed (and checked) first, in sorted order, and the results are
    taken in that order, so the first failure is always the same one."""
    jobs: list[tuple[Path, Path, str]] = []
    counts: dict[str, int] = {}
    for section, source in bag.sources.items():
        placed = _place_tree(source, payload.data / section, section)
        jobs += placed
        counts[section] = len(placed)
    jobs += [(path, payload.data / doc, doc) for doc, path in bag.documents.items()]

    def place(job: tuple[Path, Path, str]) -> tuple[str, int, dict[str, str]]:
        return copy_hashed(job[0], job[1], allow_link=bag.link)

    methods: Counter = Counter()
    with ThreadPoolExecutor(max_workers=max(1, bag.threads)) as pool:
        for (_, _, rel), (method, size, digests) in zip(jobs, pool.map(place, jobs), strict=True):
            methods[method] += 1
            payload._cache[rel] = (size, digests)
    return methods, counts


def _describe_payload(bag: _Bag, payload: _Payload, counts: dict[str, int]) -> dict | None:
    """Write dataset.json, quarantine.json, provenance.json, LICENCE.txt, README.md,
    croissant.json and ro-crate-metadata.json; return the dataset description."""
    data = payload.data
    synthetic = _is_synthetic(data, payload.files(), bag.provenance)
    sources = bag.sources
    primary = "processed" if "processed" in sources else "raw" if "raw" in sources else None
    dataset = None
    if primary:
        dataset = dataset_description(data, primary, bag.version, frozenset(bag.quarantine))
    if dataset:
        synthetic |= any(v["synthetic"] for v in dataset["volumes"])
        _write(data / "dataset.json", json_bytes(dataset))
    volumes = {v: {"reason": r} for v, r in sorted(bag.quarantine.items())}
    _write(data / "quarantine.json", json_bytes({"count": len(volumes), "volumes": volumes}))
    payload_sha = {rel: payload.digests(rel)[1]["sha256"] for rel in payload.files()}
    doc_sources = {doc: path.name for doc, path in bag.documents.items()}
    record = provenance_record(
        bag.name,
        bag.version,
        bag.source_date_epoch,
        payload_sha,
        doc_sources,
        bag.provenance,
        list(sources),
    )
    _write(data / "provenance.json", json_bytes(record))
    _write(data / "LICENCE.txt", licence_text(synthetic, bag.version).encode())
    variants = []
    if "drift" in sources:
        variants = sorted(p.name for p in (data / "drift").iterdir() if p.is_dir())
    readme = datasheet(
        bag.name,
        bag.version,
        bag.date,
        counts,
        dataset,
        bag.quarantine,
        sorted(bag.documents),
        variants,
        synthetic,
        (bag.provenance.get("config") or {}).get("source"),
    )
    _write(data / "README.md", readme.encode())
    # Croissant 1.1 (MLCommons) describes the same payload for ML tooling.
    croissant = croissant_metadata(
        name=bag.name,
        version=bag.version,
        date=bag.date,
        description=f"MiniVess {bag.version}: two-photon microscopy volumes of rodent "
        "cerebrovasculature with vessel masks, packaged by minivess-bundle"
        + (" (SYNTHETIC stand-in, no measured data)" if synthetic else ""),
        licence_url=DATASET["licence_url"],
        citation=CITATION,
        url=DOI_URL,
        creators=list(AUTHORS),
        files=payload.sizes_and_sha256(),
        dataset=dataset,
    )
    _write(data / "croissant.json", json_bytes(croissant))
    end_time = dt.datetime.fromtimestamp(bag.source_date_epoch, dt.UTC).isoformat()
    files = payload.sizes_and_sha256()
    crate = ro_crate(
        bag.name, bag.version, bag.date, files, sorted(bag.documents), synthetic, end_time
    )
    _write(data / "ro-crate-metadata.json", json_bytes(crate))
    return dataset, synthetic


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` (renames only; a crash leaves one or the other whole)."""
    out_dir = final.parent
    if final.exists():
        old = out_dir / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(out_dir)


def assemble_bundle(
    out_dir: str | Path,
    version: str,
    *,
    raw_dir: str | Path | None = None,
    processed_dir: str | Path | None = None,
    drift_dir: str | Path | None = None,
    quarantine_dir: str | Path | None = None,
    documents: Mapping[str, str | Path] | None = None,
    quarantine: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    source_date_epoch: int,
    bag_info: Mapping[str, str | list[str]] | None = None,
    link: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Build the bag ``<out_dir>/minivess-<version>/`` and return a summary.

    Files are copied (verified) by default, so the bag owns its bytes: an edit
    to a build's intermediate file can never reach a published bag through a
    shared inode, nor an edit in the bag the build's files. ``link=True``
    hardlinks instead, to save disk where that risk is accepted.

    ``raw_dir``/``processed_dir``/``drift_dir``/``quarantine_dir`` are copied
    (hardlinked) to ``data/raw|processed|drift|quarantine``; ``None`` leaves the
    section out (quarantined volumes' files only ever go to ``quarantine/``). ``documents``
    maps a file name in ``data/`` (e.g. ``"validation_report.json"``) to the file
    to place there. ``quarantine`` maps left-out volumes to their reason.
    ``provenance`` is described in :func:`provenance_record`. ``bag_info`` adds or
    overrides descriptive bag-info fields. ``source_date_epoch`` dates the bag.

    Returns ``{"name", "path", "digest" (sha256 of manifest-sha256.txt), "files",
    "bytes", "volumes", "sections", "placement": {"hardlink": n, "copy": n}}``.
    """
    sources = {
        "raw": raw_dir,
        "processed": processed_dir,
        "drift": drift_dir,
        "quarantine": quarantine_dir,
    }
    bag = _Bag(
        out_dir=Path(out_dir),
        name=bag_name(version),
        version=version,
        date=bagging_date(source_date_epoch),
        source_date_epoch=source_date_epoch,
        sources={k: Path(v) for k, v in sources.items() if v is not None},
        documents={str(k): Path(v) for k, v in (documents or {}).items()},
        quarantine={str(k): str(v) for k, v in (quarantine or {}).items()},
        provenance=dict(provenance or {}),
        bag_info=bag_info or {},
        link=link,
        threads=threads,
    )
    _check_documents(bag.documents, bag.sources)
    bag.out_dir.mkdir(parents=True, exist_ok=True)
    final = bag.out_dir / bag.name
    tmp = bag.out_dir / f".{bag.name}.tmp-{os.getpid()}"
    for pattern in (f".{bag.name}.tmp-*", f".{bag.name}.old-*"):  # left by a killed job
        remove_stale(bag.out_dir, pattern)
    try:
        payload = _Payload(tmp / "data")
        payload.data.mkdir(parents=True)
        methods, counts = _place_payload(bag, payload)
        dataset, synthetic = _describe_payload(bag, payload, counts)
        rels = payload.files()
        sizes = [payload.digests(rel)[0] for rel in rels]
        oxum = f"{sum(sizes)}.{len(rels)}"
        info = _bag_info_fields(
            bag.name, bag.version, bag.date, oxum, bag.bag_info, list(bag.sources), synthetic
        )
        digests = {f"data/{rel}": payload.digests(rel)[1] for rel in rels}
        digest = write_bag_files(tmp, info, digests)
        inputs = [bag.out_dir, *bag.sources.values(), *(p.parent for p in bag.documents.values())]
        if bag.provenance.get("lock_file"):
            inputs.append(Path(bag.provenance["lock_file"]).parent)
        _scan_for_leaks(tmp, _forbidden_strings(inputs + [Path.cwd()]))
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("bundle %s: %d files, %d bytes, %s", bag.name, len(rels), sum(sizes), dict(methods))
    return {
        "name": bag.name,
        "path": str(final),
        "digest": digest,
        "files": len(rels),
        "bytes": sum(sizes),
        "volumes": dataset["numTraining"] if dataset else 0,
        "sections": list(bag.sources),
        "placement": {
            "hardlink": methods["hardlink"],
            "copy": methods["copy"] + methods["reflink"],
        },
        "reflinked": methods["reflink"],
        "digests": {f"data/{rel}": payload.digests(rel) for rel in rels},
    }
