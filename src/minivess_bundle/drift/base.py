"""Levels, seeds, arrays and the domain guard shared by every drift kind.

Seeds: :func:`derive_seed` turns (global seed, volume id, kind) into one integer via
sha256 and :class:`numpy.random.SeedSequence` (never Python's ``hash()``). The
severity is *not* part of the seed: one random stream per (volume, kind) draws the
whole ordering (cut sites, noise field, jitter, ...) and each level takes a prefix
or a scale of it, so the change at level k is contained in level k + 1 (common
random numbers).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import DriftError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Named levels 1..5 and the severity each stands for.
LEVELS: dict[int, float] = {1: 0.2, 2: 0.4, 3: 0.6, 4: 0.8, 5: 1.0}
#: What a detector should see for each drift kind (the oracle's label).
EXPECTED_SIGNALS = (
    "feature_drift",
    "data_quality",
    "embedding_drift",
    "topology",
    "schema",
    "label_shift",
    "prior_shift",
)
#: Seeds are kept below 2**53 so any JSON reader holds them exactly.
SEED_BITS = 53
SEED_MASK = (1 << SEED_BITS) - 1


def check_severity(severity: float) -> float:
    """``severity`` as a float in [0, 1]; :class:`DriftError` otherwise."""
    try:
        value = float(severity)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(severity, bool) or not 0.0 <= value <= 1.0:
        raise DriftError(f"severity {severity!r} is out of range", expected="a number in [0, 1]")
    return value


def severity_for_level(level: int) -> float:
    """The severity of a named level (1..5, see :data:`LEVELS`)."""
    if isinstance(level, bool) or level not in LEVELS:
        raise DriftError(f"level {level!r} is not defined", expected="a level in 1..5")
    return LEVELS[level]


@dataclass(frozen=True)
class Scale:
    """How one kind's magnitude grows with severity (its own scale, TorchIO style).

    ``level_1`` is the magnitude at level 1 (s = 0.2) and ``level_5`` at level 5 (s = 1),
    a power law ``level_5 * s ** exponent`` in between (geometric from level to level up to
    the spacing of the severities; 0 at s = 0, strictly increasing), ``exponent =
    ln(level_5 / level_1) / ln 5``. ``parameter`` names what the magnitude is, in its
    physical unit. The end points are calibrated against new volumes with drift_eval's
    protocol (``bench/calibrate_drift.py --values``) so the KS reference detector at n = 5
    patches of one new volume has power in [0.05, 0.5] at level 1 and >= 0.9 at level 5;
    where a kind cannot reach that within a physically plausible range, ``level_5`` is that
    range's end, and the kind's docstring says why (docs/benchmark.md, "Severity scales").
    """

    parameter: str
    level_1: float
    level_5: float

    def __post_init__(self) -> None:
        if not 0.0 < self.level_1 <= self.level_5:
            raise DriftError(
                f"{self.parameter} scale {self.level_1} .. {self.level_5}",
                expected="0 < level_1 <= level_5",
            )

    @property
    def exponent(self) -> float:
        return math.log(self.level_5 / self.level_1) / math.log(1.0 / LEVELS[1])

    def at(self, severity: float) -> float:
        """The magnitude at ``severity`` (0 at 0, ``level_1`` at 0.2, ``level_5`` at 1)."""
        s = check_severity(severity)
        return 0.0 if s == 0.0 else self.level_5 * s**self.exponent

    def record(self) -> dict[str, Any]:
        """What the manifest records of the scale."""
        return {
            "parameter": self.parameter,
            "level_1": self.level_1,
            "level_5": self.level_5,
            "exponent": self.exponent,
        }


def check_seed(seed: int) -> int:
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DriftError(f"seed {seed!r} is not allowed", expected="a non-negative integer")
    return int(seed)


def derive_seed(global_seed: int, volume: str, kind: str) -> int:
    """The seed of one (volume, kind) stream, shared by all its levels.

    The strings are hashed with sha256 (stable across runs and machines, unlike
    ``hash()``) and the words feed a :class:`numpy.random.SeedSequence` together with
    the global seed. The result is below 2**53 so JSON keeps it exactly.
    """
    import numpy as np

    key = f"{volume}\x1f{kind}".encode()
    words = np.frombuffer(hashlib.sha256(key).digest(), dtype="<u4")
    sequence = np.random.SeedSequence([check_seed(global_seed), *(int(w) for w in words)])
    high, low = (int(v) for v in sequence.generate_state(2, np.uint32))
    return ((high << 32) | low) & SEED_MASK


def fresh_seed() -> int:
    import numpy as np

    return int(np.random.SeedSequence().entropy) & SEED_MASK


# --- arrays in, arrays out -------------------------------------------------------------------


def is_torch(volume: Any) -> bool:
    return type(volume).__module__.split(".")[0] == "torch" and "torch" in sys.modules


def to_numpy(volume: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """A numpy view of ``volume`` and a function turning results back into its kind."""
    import numpy as np

    if is_torch(volume):
        torch = sys.modules["torch"]
        device = volume.device
        array = volume.detach().cpu().numpy()

        def to_tensor(out: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(out)).to(device)

        return array, to_tensor
    return np.asarray(volume), lambda out: out


def cast_like(values: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, float]:
    """``values`` (a float temporary the caller owns) in ``dtype``, and the clipped fraction.

    Integers are rounded and clipped to the dtype's range in place; the fraction of
    voxels the clip moved is returned so a transform can record it.
    """
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return values > 0.5, 0.0
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(values, out=values)
        clipped = int(np.count_nonzero(values < info.min)) + int(
            np.count_nonzero(values > info.max)
        )
        np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype), clipped / max(values.size, 1)
    return values.astype(dtype), 0.0


def check_volume(array: np.ndarray, name: str) -> None:
    if array.ndim != 3:
        raise DriftError(
            f"{name} drift got an array of {array.ndim} dimensions {tuple(array.shape)}",
            expected="a 3-D volume (x, y, z)",
        )


def is_mask(array: np.ndarray) -> bool:
    """Whether ``array`` holds only 0 and 1 (a label file), without sorting it."""
    import numpy as np

    if array.size == 0:
        return False
    if array.dtype == np.bool_:
        return True
    if np.issubdtype(array.dtype, np.integer):
        return bool(array.min() >= 0 and array.max() <= 1)
    return bool(np.isin(array, (0, 1)).all())


def check_domain(array: np.ndarray, name: str, target: str, where: str = "", volume=None) -> None:
    """The domain guard: image drifts refuse label files, label drifts refuse images."""
    import numpy as np

    suffix = ""
    mask = is_mask(array)
    if target == "image" and mask:
        raise DriftError(
            f"{name} drift is an image drift and got a label file (values within {{0, 1}}){suffix}",
            expected="an intensity image",
            volume=volume,
            path=where or None,
        )
    if target == "label" and not mask:
        values = np.unique(array[:: max(1, array.size // 100000)].ravel()) if array.size else []
        shown = ", ".join(str(v) for v in list(values)[:5]) + (", ..." if len(values) > 5 else "")
        raise DriftError(
            f"{name} drift needs a mask, got values {{{shown}}}{suffix}",
            expected="a subset of {0, 1}",
            volume=volume,
            path=where or None,
        )
