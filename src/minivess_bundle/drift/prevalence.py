"""Prevalence shift: a set-level drift kind that changes which volumes, not their voxels.

A detector monitoring a stream of volumes also meets a cohort whose *mix* differs:
animals or regions with denser (or sparser) vasculature. The set at each level is a
choice of clean volumes ranked by their vessel (foreground) fraction: the window of
``n`` consecutive volumes in that ranking slides from the median (severity 0) to the
``n`` highest (``direction`` +1) or lowest (-1) fractions (severity 1). No file is
written but the set's ``dataset.json`` (listing the clean files) and its manifest
entry; the figures prove the shift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..core.errors import DriftError
from .base import check_seed, check_severity, derive_seed, fresh_seed
from .datasets import set_dataset

#: The pseudo-volume a set kind's seed derives from (one stream per set kind).
SET_STREAM = "set"


def default_set_size(n_pool: int, n_drift_volumes: int) -> int:
    """The number of volumes in a set: as many as drift volumes, at most a quarter of the pool."""
    return max(1, min(n_drift_volumes, n_pool // 4))


def window_start(pool: int, n: int, severity: float, direction: int) -> int:
    """Rank of the first volume of the set: from the median window towards one end."""
    centre = (pool - n) // 2
    end = pool - n if direction > 0 else 0
    return centre + round(severity * (end - centre))


def feasible(pool: int, n: int, severities: Sequence[float]) -> bool:
    """Whether a pool of ``pool`` volumes gives sets of ``n`` that differ at every
    severity, in both directions (else the levels could not be strictly ordered)."""
    if pool < n + 2:
        return False
    centre = (pool - n) // 2
    for direction in (1, -1):
        starts = [window_start(pool, n, s, direction) for s in sorted(severities)]
        if centre in starts or len(set(starts)) != len(starts):
            return False
    return True


class PrevalenceShift:
    """``PrevalenceShift(severity, seed)(fractions) -> (chosen volumes, record)``.

    ``fractions`` maps each clean volume of the pool to its vessel fraction. Ranked
    ascending (ties by id), the set is the ``n`` volumes from rank ``start``:
    ``start = c + round(s (end - c))`` with ``c = (N - n) // 2`` (the median window)
    and ``end`` = ``N - n`` (direction +1) or 0 (-1); the direction is drawn once from
    the stream unless given. Primary figure: the set's mean vessel fraction minus the
    median window's, in pool standard deviations, signed by the direction (grows with
    s; 0 at s = 0).
    """

    name: ClassVar[str] = "prevalence"
    target: ClassVar[str] = "set"
    expected_signal: ClassVar[str] = "prior_shift"
    primary: ClassVar[tuple[str, str]] = ("vessel_fraction_shift_sd", "increasing")

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        set_size: int | None = None,
        direction: int | None = None,
    ) -> None:
        self.severity = check_severity(severity)
        self.seed = fresh_seed() if seed is None else check_seed(seed)
        if direction not in (None, 1, -1):
            raise DriftError(f"prevalence direction {direction!r}", expected="1 or -1")
        if set_size is not None and (isinstance(set_size, bool) or int(set_size) < 1):
            raise DriftError(f"prevalence set_size {set_size!r}", expected="a positive integer")
        self.set_size = None if set_size is None else int(set_size)
        self.direction = direction

    def __call__(self, fractions: Mapping[str, float]) -> tuple[list[str], dict[str, Any]]:
        import numpy as np

        ranked = sorted(fractions, key=lambda v: (float(fractions[v]), v))
        pool = len(ranked)
        n = self.set_size or default_set_size(pool, 1)
        if pool < n + 2:
            raise DriftError(
                f"prevalence: a pool of {pool} clean volumes for a set of {n}",
                expected=f"at least {n + 2} valid volumes",
            )
        drawn = 1 if np.random.default_rng(self.seed).random() < 0.5 else -1
        d = self.direction if self.direction is not None else drawn
        centre = (pool - n) // 2
        start = window_start(pool, n, self.severity, d)
        chosen = ranked[start : start + n]
        values = np.array([float(fractions[v]) for v in ranked])
        sd = float(values.std())
        mean_set = float(values[start : start + n].mean())
        mean_median = float(values[centre : centre + n].mean())
        record = {
            "type": self.name,
            "severity": self.severity,
            "seed": self.seed,
            "parameters": {
                "direction": d,
                "set_size": n,
                "pool_size": pool,
                "start_rank": start,
                "median_window_rank": centre,
                "ranking": "foreground_fraction ascending, ties by volume id",
                "pool_fractions": {v: float(fractions[v]) for v in ranked},
            },
        }
        figures = {
            "vessel_fraction_shift_sd": d * (mean_set - mean_median) / sd if sd else math.nan,
            "vessel_fraction_set_mean": mean_set,
            "vessel_fraction_median_window_mean": mean_median,
            "vessel_fraction_pool_mean": float(values.mean()),
            "vessel_fraction_pool_sd": sd,
            "set_fractions": [float(fractions[v]) for v in chosen],
        }
        return chosen, {**record, "figures": figures}


def set_id(kind: str, level: int) -> str:
    """``<kind>/<level>/set``."""
    return f"{kind}/{level}/set"


def set_dataset_json(kind: str, level: int, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``dataset.json`` of a set of clean volumes (paths relative to the set's folder)."""
    training = [{"image": r["image_ref"], "label": r["label_ref"]} for r in rows]
    what = "set: clean volumes chosen by vessel fraction (no voxel changes)"
    return set_dataset(kind, level, what, training, {"selection_only": True})


def generate_set(
    kind: str,
    level: int,
    severity: float,
    global_seed: int,
    pool: Mapping[str, dict[str, Any]],
    *,
    set_dir: str | Path,
    clean_root: str | Path,
    set_size: int | None = None,
    direction: int | None = None,
    reference_ids: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(dataset.json, manifest entry) of one set.

    ``pool`` maps each clean volume to ``{"foreground_fraction", "image", "label"}``
    (file paths under ``clean_root``); ``set_dir`` is where the dataset.json goes (its
    ``training`` paths are relative to it).
    """
    import os

    from ..core.fsio import sha256_file
    from .verify import round_figures

    if kind != PrevalenceShift.name:
        raise DriftError(f"set kind {kind!r} is not known", expected=PrevalenceShift.name)
    seed = derive_seed(global_seed, SET_STREAM, kind)
    shift = PrevalenceShift(severity, seed, set_size=set_size, direction=direction)
    chosen, record = shift({v: float(p["foreground_fraction"]) for v, p in pool.items()})
    figures = round_figures(record.pop("figures"))
    if severity > 0 and not abs(figures["vessel_fraction_shift_sd"] or 0.0) > 0:
        raise DriftError(
            f"{kind} severity {severity:g}: primary figure vessel_fraction_shift_sd = "
            f"{figures['vessel_fraction_shift_sd']} shows no change",
            expected="a pool whose vessel fractions differ",
        )
    rows, volumes = [], []
    for vol in chosen:
        files = {}
        refs = {}
        for role in ("image", "label"):
            path = Path(pool[vol][role])
            files[role] = {
                "path": path.relative_to(clean_root).as_posix(),
                "sha256": sha256_file(path),
            }
            refs[f"{role}_ref"] = Path(os.path.relpath(path, set_dir)).as_posix()
        rows.append(refs)
        volumes.append(
            {"volume": vol, "foreground_fraction": float(pool[vol]["foreground_fraction"]), **files}
        )
    entry = {
        "variant_id": set_id(kind, level),
        "drift_type": kind,
        "level": level,
        "severity": severity,
        "seed": seed,
        "seed_source": {"global_seed": int(global_seed), "volume": SET_STREAM, "drift_type": kind},
        "target": "set",
        "parameters": record["parameters"],
        "expected_signal": shift.expected_signal,
        "volumes": volumes,
        "verification": figures,
        "reference_split_ids": sorted(reference_ids),
    }
    return set_dataset_json(kind, level, rows), entry
