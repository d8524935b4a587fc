"""Evaluation sets: what a detector compares, read as data from a verified bundle.

The drift manifest (``data/drift_manifest.json``) says which volumes are held out (the
volumes its variants were made of), which are the clean reference (each variant's
``reference_split_ids``: the valid volumes of the training split), and every variant's
(kind, level) and files with their sha256. Nothing here lists drift kinds or levels: they
are whatever the manifest holds.

**The sample unit is a patch.** With seven held-out volumes a sample of 10 or 20 volumes
does not exist, so a sample of size ``n`` is ``n`` patches (the "patch equivalent" of
``n`` volumes). Every volume has ``patches_per_volume`` patch positions of ``patch``
voxels (x, y, z), drawn uniformly from the volume's grid with a seed derived from
(global seed, ``"drift_eval/patch"``, volume); a drift variant is cut at the same
positions as its clean volume, so clean and drifted units are paired. A volume smaller
than the patch along an axis is edge-padded (logged).

A **test sample** of ``n`` units for (kind, level, fraction ``f``): ``k = floor(f n + 1/2)``
units are drifted, ``n - k`` clean; each unit's volume is taken round-robin from a seeded
permutation of the candidate volumes (the held-out volumes, or for drifted units those
that have a variant at that (kind, level)), its patch position at random without
replacement within the volume. A **control** sample is the same with ``k = 0``. The
**reference** of a repetition is every patch of ``len(reference) - len(held_out)``
reference volumes drawn at random, so that the calibrated null (:mod:`.protocol`) draws
pseudo-tests from exactly the same design.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import MinivessError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)


class DriftEvalError(MinivessError):
    """The drift evaluation cannot run (bundle, manifest, files, config or a plug-in)."""

    stage = "drift_eval"


@dataclass
class Plan:
    """The bundle's evaluation design, as the manifest states it."""

    bag: Path
    reference: list[str]
    held_out: list[str]
    #: (kind, level) -> volume -> {"image", "label", "image_sha256", "label_sha256",
    #: "same_image", "severity"}
    variants: dict[tuple[str, int], dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: volume -> {"image", "label", "image_sha256", "label_sha256"} (clean, processed)
    clean: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def groups(self) -> list[tuple[str, int]]:
        return sorted(self.variants)


def derive_seed(global_seed: int, purpose: str, *parts: object) -> int:
    """A 63-bit seed from sha256 of (global seed, purpose, parts): independent of job order."""
    text = ":".join([str(int(global_seed)), purpose, *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def read_plan(bag: str | Path) -> Plan:
    """The reference, held-out volumes and variants of a bundle (a bag folder).

    Paths in the manifest are relative to ``data/processed`` (clean) and ``data/drift``
    (drifted), as the bundle stores them.
    """
    bag = Path(bag)
    data = bag / "data" if (bag / "data").is_dir() else bag
    manifest_path = data / "drift_manifest.json"
    if not manifest_path.is_file():
        raise DriftEvalError(
            "no drift manifest in the bundle",
            expected="a bundle built with drift.enabled and bundle.drift",
            path=manifest_path,
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        variants = manifest["variants"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DriftEvalError(
            f"manifest: unreadable ({exc})",
            expected="a DriftManifest with variants",
            path=manifest_path,
        ) from exc
    if not variants:
        raise DriftEvalError("manifest: no variants", expected="at least one", path=manifest_path)
    plan = Plan(bag=bag, reference=[], held_out=[])
    reference: set[str] = set()
    for entry in variants:
        try:
            vol = entry["volume"]
            kind = str(entry["drift_type"])
            level = entry["level"]
            files = entry["files"]
            image, label = files["image"], files["label"]
        except (KeyError, TypeError) as exc:
            raise DriftEvalError(
                f"manifest: variant without {exc}",
                volume=entry.get("volume") if isinstance(entry, dict) else None,
                expected="volume, drift_type, level and files",
                path=manifest_path,
            ) from exc
        if level is None:
            continue  # a severity without a named level is not part of the design
        reference.update(entry.get("reference_split_ids") or [])
        plan.clean.setdefault(
            vol,
            {
                "image": str(data / "processed" / image["clean"]["path"]),
                "label": str(data / "processed" / label["clean"]["path"]),
                "image_sha256": image["clean"]["sha256"],
                "label_sha256": label["clean"]["sha256"],
            },
        )
        plan.variants.setdefault((kind, int(level)), {})[vol] = {
            "image": str(data / "drift" / image["drifted"]["path"]),
            "label": str(data / "drift" / label["drifted"]["path"]),
            "image_sha256": image["drifted"]["sha256"],
            "label_sha256": label["drifted"]["sha256"],
            "same_image": image["drifted"]["sha256"] == image["clean"]["sha256"],
            "severity": float(entry["severity"]),
        }
    plan.held_out = sorted(plan.clean)
    plan.reference = sorted(reference - set(plan.held_out))
    if len(plan.reference) < 2:
        raise DriftEvalError(
            f"manifest: {len(plan.reference)} reference volumes ({plan.reference})",
            expected="at least 2 clean training-split volumes (reference_split_ids)",
            path=manifest_path,
        )
    for vol in plan.reference:
        plan.clean[vol] = {
            "image": str(data / "processed" / "imagesTr" / f"{vol}.nii.gz"),
            "label": str(data / "processed" / "labelsTr" / f"{vol}.nii.gz"),
        }
    return plan


def read_checked(path: str | Path, sha256: str | None, volume: str) -> np.ndarray:
    """The voxels of a NIfTI file (float32, x/y/z), its bytes checked against the manifest."""
    import numpy as np

    from ..core.nifti import read_array

    path = Path(path)
    if not path.is_file():
        raise DriftEvalError(
            "missing file", volume=volume, expected="the file the manifest lists", path=path
        )
    if sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise DriftEvalError(
                f"sha256 {digest[:12]}… differs from the manifest's {sha256[:12]}…",
                volume=volume,
                expected="the bytes the manifest records",
                path=path,
            )
    _, array = read_array(path, volume)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DriftEvalError(
            f"shape {array.shape}", volume=volume, expected="a 3-D volume", path=path
        )
    return np.asarray(array, dtype=np.float32)


def patch_corners(
    shape: tuple[int, ...], patch: tuple[int, int, int], count: int, seed: int
) -> list[tuple[int, int, int]]:
    """``count`` seeded patch corners inside ``shape`` (0 along an axis shorter than the patch)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    spans = [max(0, int(s) - int(p)) for s, p in zip(shape, patch, strict=True)]
    return [tuple(int(rng.integers(0, span + 1)) for span in spans) for _ in range(count)]


def cut_patch(
    array: np.ndarray, corner: tuple[int, int, int], patch: tuple[int, int, int]
) -> np.ndarray:
    """One patch at ``corner``; edge-padded where the volume is smaller than the patch."""
    import numpy as np

    window = array[tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))]
    missing = [(0, p - s) for p, s in zip(patch, window.shape, strict=True)]
    if any(m for _, m in missing):
        window = np.pad(window, missing, mode="edge")
    return np.ascontiguousarray(window, dtype=np.float32)


def round_half_up(value: float) -> int:
    """``floor(value + 1/2)``: the number of drifted units in a sample (0.5 -> 1)."""
    import math

    return int(math.floor(value + 0.5 + 1e-12))


def draw_units(
    candidates: list[str],
    units_of: dict[str, list[int]],
    count: int,
    rng: np.random.Generator,
) -> list[int]:
    """``count`` unit indices: volumes round-robin over a permutation of ``candidates``, a
    patch without replacement within each volume (with replacement once a volume's
    patches are used up)."""
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    pools = {vol: list(rng.permutation(units_of[vol])) for vol in order}
    chosen = []
    for i in range(count):
        vol = order[i % len(order)]
        if not pools[vol]:
            pools[vol] = list(rng.permutation(units_of[vol]))
        chosen.append(int(pools[vol].pop()))
    return chosen
