"""The evaluation's units: every clean patch of the volumes a run uses and, for its test
volumes, the same patches of each in-process drift variant; and the bundle's own held-out
drift files for the harm scorer.

The drift is applied in-process to every test volume with the package's own kinds, seeds
and context (:func:`drifted_image`: the stream a drift job would use for that volume, at the
severity the manifest records for (kind, level)), because the bundle's drift files exist
only for its few held-out volumes while the roles rotate over all of them. Label-, header-
and set-level kinds leave the image unchanged: their units are the clean ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..core.errors import DriftError
from . import features as feat
from .roles import Roles
from .sets import Plan, cut_patch, derive_seed, patch_corners, read_checked, read_volume
from .table import Units

log = logging.getLogger(__name__)


def drifted_image(recipe: dict[str, Any], volume: dict[str, Any], vol: str, global_seed: int):
    """The drifted image of ``vol`` for a manifest (kind, level): its kind (gradual: its base)
    at the recorded severity, with the seed and context a drift job uses for that volume."""
    from ..drift import derive_seed as drift_seed
    from ..drift import make_drift

    kind = recipe["kind"]
    seed = drift_seed(int(global_seed), vol, recipe["stream"])
    drift = make_drift(kind, float(recipe["severity"]), seed, **recipe.get("params", {}))
    out, _ = drift(volume["image"], spacing=volume["spacing"], mask=volume["label"], volume=vol)
    return out


def collect_units(
    plan: Plan,
    cfg: dict[str, Any],
    seed: int,
    roles: list[Roles],
    softmax: Callable | None = None,
    drift_seed: int | None = None,
) -> Units:
    """Cut every clean patch of every non-training volume and, for every volume that is a
    test volume of some replication, the same patches of each in-process drift variant.

    ``drift_seed``: the bundle's seed, whose streams the drift jobs used (default ``seed``).
    Volumes are read one at a time (their memory is freed before the next)."""
    import numpy as np

    from .harm import volume_scale

    changes_image = image_kinds()
    patch = tuple(int(p) for p in cfg["patch"])
    projection = feat.projection_matrix(derive_seed(seed, "drift_eval/projection"))
    units = Units(keep_patches=bool(cfg["plugins"]), softmax=softmax)
    tested = sorted({v for r in roles for v in r.test})
    used = sorted({v for r in roles for v in (*r.reference, *r.calibration, *r.test)})
    for vol in used:
        volume = read_volume(plan, vol)
        image = volume["image"]
        if any(s < p for s, p in zip(image.shape, patch, strict=True)):
            log.warning("%s: shape %s < patch %s: edge-padded", vol, image.shape, patch)
        corners = patch_corners(
            image.shape,
            patch,
            int(cfg["patches_per_volume"]),
            derive_seed(seed, "drift_eval/patch", vol),
        )

        def cut(array, corners=corners):
            array = np.asarray(array, dtype=np.float32)
            return [cut_patch(array, c, patch) for c in corners]

        units.add(("clean", vol), cut(image), volume_scale(image), projection, corners)
        if vol in tested:
            for kind, level in plan.groups:
                recipe = {**plan.recipes[(kind, level)], "stream": kind}
                if recipe["target"] != "image" or recipe["kind"] not in changes_image:
                    units.alias((kind, level, vol), ("clean", vol))
                    continue
                try:
                    drifted = drifted_image(
                        recipe, volume, vol, seed if drift_seed is None else drift_seed
                    )
                except DriftError as exc:
                    # a kind that cannot act on this volume (e.g. z_step on 3 slices): the
                    # drift plan skips it too; this set's tests use the other test volumes
                    log.warning("%s: %s level %s not applicable: %s", vol, kind, level, exc)
                    units.not_applicable.append(
                        {"kind": kind, "level": int(level), "volume": vol, "reason": str(exc)}
                    )
                    continue
                units.add(
                    (kind, level, vol),
                    cut(drifted),
                    volume_scale(drifted),
                    projection,
                    corners,
                    recipe["severity"],
                )
        log.info("%s: patches cut%s", vol, " (clean and drifted)" if vol in tested else "")
    return units


def image_kinds() -> frozenset[str]:
    """The single-volume kinds that change the image (their ``target`` is ``image``)."""
    from ..drift.kinds import TRANSFORMS

    return frozenset(k for k, cls in TRANSFORMS.items() if cls.target == "image")


def manifest_harm(plan: Plan, scorer: Any, levels: set[int] | None = None) -> None:
    """Feed the manifest's clean and drifted held-out files to the harm ``scorer``
    (:class:`.harm.HarmScorer`): the variants the bundle holds, whose volumes the reference
    model never trained on. A label-only variant (same image) is not image harm. ``levels``:
    only these levels' variants (``bench/harm.py``); default every level."""
    if scorer is None:
        return
    for vol in plan.held_out:
        files = plan.clean[vol]
        array = read_checked(files["image"], files.get("image_sha256"), vol)
        label = read_checked(files["label"], files.get("label_sha256"), vol)
        scorer.add_clean(vol, array, label)
    for kind, level in plan.groups:
        if levels is not None and level not in levels:
            continue
        for vol, files in sorted(plan.variants[(kind, level)].items()):
            if files["same_image"]:
                scorer.add_variant(kind, level, vol, files["severity"], None, None)
                continue
            array = read_checked(files["image"], files["image_sha256"], vol)
            label = read_checked(files["label"], files["label_sha256"], vol)
            scorer.add_variant(kind, level, vol, files["severity"], array, label)
