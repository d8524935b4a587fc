"""DVC 3 metadata for the bundle: ``.dvc`` files and a ``dvc.yaml``/``dvc.lock`` record.

The hashes are computed here with ``hashlib`` (DVC is not a run-time dependency)
and follow DVC 3 exactly, which ``tests/test_dvcmeta.py`` proves against
``dvc_data`` on test trees, against DVC's own golden vector and against the real
``dvc`` command line:

* a file's hash is the plain md5 of its bytes (DVC 3, ``hash: md5``; DVC 2's
  ``md5-dos2unix`` turned CRLF into LF for text files first: not any more);
* a directory's hash is the md5 of its *listing* with ``.dir`` appended, where
  the listing is ``json.dumps([{"md5": <file md5>, "relpath": <posix path>}, ...],
  sort_keys=True)`` sorted by ``relpath`` (Python's default separators and
  ``ensure_ascii``), and ``size``/``nfiles`` are the total bytes and the number
  of files (empty folders do not count).

Layout written by :func:`write_dvc_metadata`, next to the bag (DVC refuses two
outputs that overlap, so the three are alternatives — a repository keeps one)::

    <out>/minivess-<v>.dvc            the whole bag folder (what `dvc add` writes)
    <out>/dvc/parts/<section>.dvc     data/raw, data/processed, data/drift separately
    <out>/dvc/pipeline/dvc.yaml       the build as DVC stages (download frozen)
    <out>/dvc/pipeline/dvc.lock       the hashes of those stages' deps and outs
    <out>/dvc/README.md               which to use and why only one at a time
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BundleError
from ..core.fsio import CHUNK, write_bytes_atomic

#: Payload sections that get a ``.dvc`` file of their own, in pipeline order.
SECTIONS = ("raw", "processed", "drift")
DVC_DIR = "dvc"
DEFAULT_COMMAND = "snakemake --cores all all"


@dataclass(frozen=True)
class DirHash:
    """DVC 3's identity of a folder: ``md5`` (``<hex>.dir``), bytes, files, listing."""

    md5: str
    size: int
    nfiles: int
    entries: list[dict[str, str]] = field(repr=False)

    def out(self, path: str) -> dict[str, object]:
        """The ``outs`` entry of a ``.dvc`` file, in DVC's key order."""
        return {
            "md5": self.md5,
            "size": self.size,
            "nfiles": self.nfiles,
            "hash": "md5",
            "path": path,
        }


def file_md5(path: str | Path) -> str:
    """Plain md5 of a file's bytes: DVC 3's file hash (no dos2unix)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def listing_bytes(entries: Iterable[Mapping[str, str]]) -> bytes:
    """The bytes DVC hashes for a folder (its ``.dir`` object in the cache)."""
    ordered = sorted(
        ({"md5": e["md5"], "relpath": e["relpath"]} for e in entries), key=lambda e: e["relpath"]
    )
    return json.dumps(ordered, sort_keys=True).encode("utf-8")


def dir_hash_from_files(files: Mapping[str, tuple[str, int]]) -> DirHash:
    """:class:`DirHash` of a tree given ``{posix relpath: (md5, size)}`` of its files."""
    entries = sorted(
        ({"md5": md5, "relpath": rel} for rel, (md5, _) in files.items()),
        key=lambda e: e["relpath"],
    )
    digest = hashlib.md5(listing_bytes(entries), usedforsecurity=False).hexdigest()
    return DirHash(
        md5=f"{digest}.dir",
        size=sum(size for _, size in files.values()),
        nfiles=len(files),
        entries=entries,
    )


def tree_files(
    root: str | Path, known: Mapping[str, tuple[str, int]] | None = None
) -> dict[str, tuple[str, int]]:
    """``{posix relpath: (md5, size)}`` of every regular file under ``root``.

    ``known`` gives ``(md5, size)`` of files already hashed (the bundle hashes each
    payload file while copying it); a file whose size differs from its entry is hashed
    again. Symbolic links are refused (DVC would follow them; the bundle never has any).
    """
    root = Path(root)
    known = known or {}
    if not root.is_dir():
        raise BundleError("folder to hash does not exist", path=root, expected="a folder")
    files: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames) + links:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                raise BundleError("symbolic link or special file in tree", path=path)
            rel = path.relative_to(root).as_posix()
            size = path.stat().st_size
            if rel in known and known[rel][1] == size:
                files[rel] = (known[rel][0], size)
            else:
                files[rel] = (file_md5(path), size)
    return files


def dir_hash(root: str | Path) -> DirHash:
    """DVC 3's hash of the folder ``root`` (equal to ``dvc add``'s)."""
    return dir_hash_from_files(tree_files(root))


def subtree(files: Mapping[str, tuple[str, int]], prefix: str) -> dict[str, tuple[str, int]]:
    """The files under ``prefix/`` with paths relative to it."""
    head = prefix.rstrip("/") + "/"
    return {rel[len(head) :]: v for rel, v in files.items() if rel.startswith(head)}


def _yaml(obj: object) -> bytes:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).encode()


def dvc_file_bytes(tree: DirHash, path: str) -> bytes:
    """A DVC 3 ``.dvc`` file tracking the folder at ``path`` (relative to the file)."""
    return _yaml({"outs": [tree.out(path)]})


def _lock_entry(tree: DirHash, path: str) -> dict[str, object]:
    return {"path": path, "hash": "md5", "md5": tree.md5, "size": tree.size, "nfiles": tree.nfiles}


def pipeline_bytes(
    bag_name: str, trees: Mapping[str, DirHash], commands: Mapping[str, str] | None = None
) -> tuple[bytes, bytes]:
    """``dvc.yaml`` and ``dvc.lock`` for the sections in ``trees`` (paths from ``<out>/``).

    Stages: ``download`` (frozen: the release is fetched once, never re-run by
    ``dvc repro``) -> ``raw``; ``process`` (validate + resample) -> ``processed``;
    ``drift`` -> ``drift``. Both files live in ``<out>/dvc/pipeline`` with
    ``wdir: ../..``. Commands are what rebuilds the stage from the workflow's root.
    """
    commands = dict(commands or {})
    plan = [
        ("download", "raw", None),
        ("process", "processed", "raw"),
        ("drift", "drift", "processed"),
    ]
    stages: dict[str, dict[str, object]] = {}
    locks: dict[str, dict[str, object]] = {}
    for stage, section, upstream in plan:
        if section not in trees:
            continue
        out = f"{bag_name}/data/{section}"
        entry: dict[str, object] = {}
        if stage == "download":
            entry["frozen"] = True
        entry["wdir"] = "../.."
        entry["cmd"] = commands.get(stage, DEFAULT_COMMAND)
        lock: dict[str, object] = {"cmd": entry["cmd"]}
        if upstream in trees:
            dep = f"{bag_name}/data/{upstream}"
            entry["deps"] = [dep]
            lock["deps"] = [_lock_entry(trees[upstream], dep)]
        entry["outs"] = [out]
        lock["outs"] = [_lock_entry(trees[section], out)]
        stages[stage] = entry
        locks[stage] = lock
    return _yaml({"stages": stages}), _yaml({"schema": "2.0", "stages": locks})


DVC_README = """\
# DVC metadata for {name}

DVC 3 records of the bundle `{name}/` next to this folder. DVC refuses two
outputs that overlap, so a DVC repository keeps exactly one of these:

| option | files | tracks |
|---|---|---|
| A (default) | `../{name}.dvc` | the whole bag folder: what `dvc add {name}` writes |
| B | `parts/*.dvc` | {sections} separately (delete A first) |
| C | `pipeline/dvc.yaml` + `dvc.lock` | the build; `download` frozen (delete A and B) |

Hashes are DVC 3 (`hash: md5`): plain md5 per file; a folder's md5 is the md5 of
its sorted JSON listing, suffixed `.dir`. Check them with `minivess-bundle verify
{name}` or, inside a DVC repository, `dvc status`.

Use with a remote:

    dvc init --no-scm            # or inside your git repository
    dvc commit {name}.dvc        # fills the cache; the .dvc file does not change
    dvc remote add -d store /path/to/remote && dvc push
    dvc pull                     # elsewhere: restores {name}/ byte-identical
"""


def write_dvc_metadata(
    bag_dir: str | Path,
    out_dir: str | Path | None = None,
    commands: Mapping[str, str] | None = None,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> dict[str, str]:
    """Write the DVC metadata of ``bag_dir`` (see the module docstring) into ``out_dir``.

    ``out_dir`` defaults to the bag's parent. Returns ``{file written (relative to
    out_dir): its md5 .dir value}`` (for ``dvc.yaml``/``README.md``: ``""``). ``known``:
    ``{path in the bag: (md5, size)}`` already computed (see :func:`tree_files`).
    """
    bag_dir = Path(bag_dir)
    out_dir = Path(out_dir) if out_dir is not None else bag_dir.parent
    name = bag_dir.name
    files = tree_files(bag_dir, known)
    whole = dir_hash_from_files(files)
    rel_bag = os.path.relpath(bag_dir, out_dir).replace(os.sep, "/")
    written = {f"{name}.dvc": whole.md5}
    write_bytes_atomic(out_dir / f"{name}.dvc", dvc_file_bytes(whole, rel_bag))

    trees = {s: dir_hash_from_files(subtree(files, f"data/{s}")) for s in SECTIONS}
    trees = {s: t for s, t in trees.items() if t.nfiles}
    for section in SECTIONS:  # a section left out of this build leaves no stale .dvc file
        if section not in trees:
            (out_dir / DVC_DIR / "parts" / f"{section}.dvc").unlink(missing_ok=True)
    if not trees:
        for stale in ("dvc.yaml", "dvc.lock"):
            (out_dir / DVC_DIR / "pipeline" / stale).unlink(missing_ok=True)
    for section, tree in trees.items():
        rel = f"{DVC_DIR}/parts/{section}.dvc"
        write_bytes_atomic(out_dir / rel, dvc_file_bytes(tree, f"../../{rel_bag}/data/{section}"))
        written[rel] = tree.md5
    if trees:
        yaml_bytes, lock_bytes = pipeline_bytes(rel_bag, trees, commands)
        write_bytes_atomic(out_dir / DVC_DIR / "pipeline" / "dvc.yaml", yaml_bytes)
        write_bytes_atomic(out_dir / DVC_DIR / "pipeline" / "dvc.lock", lock_bytes)
        written[f"{DVC_DIR}/pipeline/dvc.yaml"] = ""
        written[f"{DVC_DIR}/pipeline/dvc.lock"] = ""
    readme = DVC_README.format(name=name, sections=", ".join(f"`data/{s}`" for s in trees) or "-")
    write_bytes_atomic(out_dir / DVC_DIR / "README.md", readme.encode())
    written[f"{DVC_DIR}/README.md"] = ""
    return written


def read_dvc_outs(path: str | Path) -> list[dict[str, object]]:
    """The outputs recorded in a ``.dvc`` file or a ``dvc.lock`` (deps and outs of every stage).

    Each entry's ``path`` is made relative to the DVC file's folder: a ``dvc.lock``
    records paths relative to its stage's ``wdir``, read from the ``dvc.yaml`` beside it.
    """
    import yaml

    path = Path(path)

    def load(file: Path) -> dict:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise BundleError(f"cannot read DVC file ({exc})", path=file) from exc
        if not isinstance(data, dict):
            raise BundleError("DVC file is not a mapping", path=file)
        return data

    data = load(path)
    if path.name != "dvc.lock":
        return [dict(out) for out in data.get("outs") or []]
    pipeline = path.with_name("dvc.yaml")
    stages = (load(pipeline).get("stages") or {}) if pipeline.is_file() else {}
    found = []
    for name, stage in (data.get("stages") or {}).items():
        wdir = str((stages.get(name) or {}).get("wdir", "."))
        for out in list(stage.get("deps") or []) + list(stage.get("outs") or []):
            entry = dict(out)
            entry["path"] = posixpath.normpath(posixpath.join(wdir, str(out.get("path", ""))))
            found.append(entry)
    return found
