"""Drift variants: controlled, verified distribution shifts with a ground-truth manifest.

Why: a drift detector (Evidently, alibi-detect, an embedding monitor) can only be
scored against data whose drift is known. Each variant here is a corrupted copy of a
clean volume made by one small transform with explicit, recorded parameters, and its
DriftManifest entry carries the figures that prove the corruption is what it claims.

Drift types (``severity`` s in [0, 1]; 0 is the identity with byte-identical output,
whatever the other parameters; every default below can be overridden explicitly):

================ ====== ==============================================================
type             file   what it does at severity s (defaults)
================ ====== ==============================================================
``intensity``    image  ``gain * x + offset``, gain ``1 + 0.3 s``, offset ``0.05 s``
                        of the dynamic range (``direction=-1`` darkens)
``noise``        image  Poisson-Gaussian noise, total sigma at the bright end
                        ``0.05 .. 0.20`` of the dynamic range for levels 1..5
                        (``0.25 s`` below s = 0.2), half Poisson, half Gaussian variance
``resolution``   image  in-plane anti-aliased downsampling by ``1 + 3 s`` (1.6 .. 4x),
                        then linear upsampling to the original grid (blur)
``topology``     label  cuts: ``10 s`` balls per 1000 centreline voxels, each centred
                        on a random skeleton voxel with radius ``2 r + 1`` (r: the
                        local vessel radius), so every cut severs its vessel;
                        ``mode="erode"``/``"dilate"``: ``ceil(2 s)`` 6-connected steps
``covariate``    header every voxel size multiplied by ``1 + 0.5 s``; voxels untouched
``gradual``      (base) a base type with severity ``max_severity * k / n`` in ordered
                        batches k = 1..n
``attenuation``  image  depth attenuation ``exp(-z / L)`` with L shortened from
                        ``L0 = 250 um`` to ``L0 / (1 + 3 s)``, applied above the dark level
``pmt``          image  photomultiplier drift over the acquisition (slice order):
                        gain ramps to ``1 + 0.3 s`` by the last slice with a random-walk
                        jitter (step sd ``0.005 s``), dark offset ramps to ``0.05 s``
                        of the dynamic range
================ ====== ==============================================================

The dynamic range is the 0.1th..99.9th percentile span of the clean image
(:func:`minivess_bundle.metrics.robust_range`); its low end is the dark level.

Named levels (ImageNet-C / ROOD-MRI style): :data:`LEVELS` maps 1..5 to severities
0.2, 0.4, 0.6, 0.8, 1.0.

Determinism: :func:`derive_seed` turns (global seed, volume id, drift type, severity)
into one integer via sha256 and :class:`numpy.random.SeedSequence`, never Python's
``hash()``; each transform draws only from ``default_rng(seed)``, so bytes do not
depend on job order, core count or machine.

Dtypes are preserved: integer images are rounded and clipped to their dtype's range,
masks stay {0, 1} in their dtype. Torch tensors are accepted (and returned) when torch
is installed; this module never imports torch itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from . import __version__
from .errors import DriftError

if TYPE_CHECKING:  # pragma: no cover
    import nibabel as nib
    import numpy as np

log = logging.getLogger(__name__)

#: Named levels 1..5 and the severity each stands for.
LEVELS: dict[int, float] = {1: 0.2, 2: 0.4, 3: 0.6, 4: 0.8, 5: 1.0}
#: What a detector should see for each drift type (the oracle's label).
EXPECTED_SIGNALS = ("feature_drift", "data_quality", "embedding_drift", "topology", "schema")
MANIFEST_VERSION = 1
#: Seeds are kept below 2**53 so any JSON reader holds them exactly.
SEED_BITS = 53
_SEED_MASK = (1 << SEED_BITS) - 1


# --- severities, levels and seeds ------------------------------------------------------------


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


def _check_seed(seed: int) -> int:
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DriftError(f"seed {seed!r} is not allowed", expected="a non-negative integer")
    return int(seed)


def derive_seed(global_seed: int, volume: str, drift_type: str, severity: float) -> int:
    """The seed of one variant, from (global seed, volume id, drift type, severity).

    The strings are hashed with sha256 (stable across runs and machines, unlike
    ``hash()``), severity is written with 6 decimals, and the words feed a
    :class:`numpy.random.SeedSequence` together with the global seed. The result
    is below 2**53 so JSON keeps it exactly.
    """
    import numpy as np

    key = f"{volume}\x1f{drift_type}\x1f{check_severity(severity):.6f}".encode()
    words = np.frombuffer(hashlib.sha256(key).digest(), dtype="<u4")
    sequence = np.random.SeedSequence([_check_seed(global_seed), *(int(w) for w in words)])
    high, low = (int(v) for v in sequence.generate_state(2, np.uint32))
    return ((high << 32) | low) & _SEED_MASK


def _fresh_seed() -> int:
    import numpy as np

    return int(np.random.SeedSequence().entropy) & _SEED_MASK


def noise_sigma_fraction(severity: float) -> float:
    """Noise sigma as a fraction of the dynamic range: 0.05 at level 1 .. 0.20 at level 5.

    Linear from 0 to 0.05 over s in [0, 0.2], then linear from 0.05 to 0.20 over
    s in [0.2, 1] (so levels 1..5 give 0.05, 0.0875, 0.125, 0.1625, 0.20).
    """
    s = check_severity(severity)
    return 0.25 * s if s <= 0.2 else 0.05 + 0.1875 * (s - 0.2)


# --- arrays in, arrays out -------------------------------------------------------------------


def _is_torch(volume: Any) -> bool:
    return type(volume).__module__.split(".")[0] == "torch" and "torch" in sys.modules


def _to_numpy(volume: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """A numpy view of ``volume`` and a function turning results back into its kind."""
    import numpy as np

    if _is_torch(volume):
        torch = sys.modules["torch"]
        device = volume.device
        array = volume.detach().cpu().numpy()

        def to_tensor(out: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(out)).to(device)

        return array, to_tensor
    return np.asarray(volume), lambda out: out


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` in ``dtype``: integers rounded and clipped to the dtype's range."""
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return values > 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _cast_owned(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """:func:`_cast_like` of a float temporary the caller owns: rounds and clips in place.

    Same values as :func:`_cast_like`, without its two extra full-size temporaries.
    """
    import numpy as np

    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
        return values.astype(dtype)
    return _cast_like(values, dtype)


#: Slices (along the first axis) per slab of the noise draw: bounds its float64/int64
#: temporaries to a few MB whatever the volume's size.
NOISE_SLAB = 8


def _check_volume(array: np.ndarray, name: str) -> None:
    if array.ndim != 3:
        raise DriftError(
            f"{name} drift got an array of {array.ndim} dimensions {tuple(array.shape)}",
            expected="a 3-D volume (x, y, z)",
        )


def _check_binary(array: np.ndarray, name: str) -> None:
    import numpy as np

    if array.size == 0:
        return
    if (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)) and (
        array.min() >= 0 and array.max() <= 1
    ):
        return  # fast path for integer masks: no sort of the whole volume
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(str(v) for v in values[:5].tolist()) + (
            ", ..." if values.size > 5 else ""
        )
        raise DriftError(
            f"{name} drift needs a mask, got values {{{shown}}}",
            expected="a subset of {0, 1}",
        )


# --- the transforms --------------------------------------------------------------------------


class Drift:
    """Base of the drift transforms (TorchIO style: explicit parameters, recorded).

    ``Drift(severity, seed)(volume) -> (drifted, record)``; ``record`` holds the type,
    severity, seed and every parameter applied, including those measured on the
    input (dynamic range, dark level). Subclasses define :meth:`parameters` (derived
    from severity, or given explicitly) and :meth:`_apply`.
    """

    name: ClassVar[str] = ""
    #: Which file of a (image, label) pair the drift changes: image, label or header.
    target: ClassVar[str] = "image"
    expected_signal: ClassVar[str] = "feature_drift"

    def __init__(self, severity: float = 0.5, seed: int | None = None) -> None:
        self.severity = check_severity(severity)
        self.seed = _fresh_seed() if seed is None else _check_seed(seed)

    def parameters(self) -> dict[str, Any]:
        """The explicit parameters this severity gives (before looking at data)."""
        return {}

    def _apply(
        self, array: np.ndarray, rng: np.random.Generator, **context: Any
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def __call__(self, volume: Any, **context: Any) -> tuple[Any, dict[str, Any]]:
        import numpy as np

        array, restore = _to_numpy(volume)
        _check_volume(array, self.name)
        record: dict[str, Any] = {
            "type": self.name,
            "severity": self.severity,
            "seed": self.seed,
            "parameters": self.parameters(),
        }
        if self.severity == 0.0:
            out = array.copy()
            record["identity"] = True
        else:
            out, measured = self._apply(array, np.random.default_rng(self.seed), **context)
            record["parameters"].update(measured)
            record["identity"] = False
        return restore(out), record

    def __repr__(self) -> str:
        return f"{type(self).__name__}(severity={self.severity}, seed={self.seed})"


class IntensityDrift(Drift):
    """Global gain and offset: ``gain * x + offset``.

    Defaults: gain ``1 + 0.3 s * direction``; offset ``0.05 s * direction`` of the
    dynamic range. Expected signal: feature drift.
    """

    name = "intensity"

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        gain: float | None = None,
        offset_fraction: float | None = None,
        direction: int = 1,
    ) -> None:
        super().__init__(severity, seed)
        if direction not in (1, -1):
            raise DriftError(f"direction {direction!r}", expected="1 or -1")
        self.gain = 1.0 + direction * 0.3 * self.severity if gain is None else float(gain)
        self.offset_fraction = (
            direction * 0.05 * self.severity if offset_fraction is None else float(offset_fraction)
        )

    def parameters(self) -> dict[str, Any]:
        return {"gain": self.gain, "offset_fraction_of_range": self.offset_fraction}

    def _apply(self, array, rng, **context):
        import numpy as np

        from .metrics import robust_range

        lo, hi = robust_range(array)
        offset = self.offset_fraction * (hi - lo)
        values = array.astype(np.float32)
        values *= np.float32(self.gain)
        values += np.float32(offset)
        return _cast_owned(values, array.dtype), {"dynamic_range": [lo, hi], "offset": offset}


class NoiseDrift(Drift):
    """Poisson-Gaussian detector noise added to the image.

    The total noise sigma at the bright end (99.9th percentile) is
    ``sigma_fraction`` of the dynamic range (:func:`noise_sigma_fraction`:
    0.05 .. 0.20 for levels 1..5); ``poisson_share`` of that variance is
    signal-dependent (photon counting: ``g * Poisson((x - dark) / g)``), the rest
    Gaussian read noise. Expected signal: data quality.
    """

    name = "noise"
    expected_signal = "data_quality"

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        sigma_fraction: float | None = None,
        poisson_share: float = 0.5,
    ) -> None:
        super().__init__(severity, seed)
        self.sigma_fraction = (
            noise_sigma_fraction(self.severity) if sigma_fraction is None else float(sigma_fraction)
        )
        if not 0.0 <= poisson_share <= 1.0:
            raise DriftError(f"poisson_share {poisson_share!r}", expected="a number in [0, 1]")
        self.poisson_share = float(poisson_share)

    def parameters(self) -> dict[str, Any]:
        return {"sigma_fraction_of_range": self.sigma_fraction, "poisson_share": self.poisson_share}

    def _apply(self, array, rng, **context):
        import numpy as np

        from .metrics import robust_range

        lo, hi = robust_range(array)
        span = max(hi - lo, 1.0)
        sigma = self.sigma_fraction * span
        sigma_poisson = sigma * math.sqrt(self.poisson_share)
        sigma_gauss = sigma * math.sqrt(1.0 - self.poisson_share)
        photon_gain = sigma_poisson**2 / span  # ADU per photon: Poisson sd = sigma_poisson at hi
        values = array.astype(np.float32)
        values -= np.float32(lo)
        # Slabs along the first axis visit the voxels in C order, the order a single
        # full-volume draw uses: the same random streams, the same bytes, a few MB of
        # temporaries instead of 16 bytes per voxel. All Poisson draws come first,
        # then all Gaussian ones, as in one-shot drawing.
        slabs = [slice(i, i + NOISE_SLAB) for i in range(0, values.shape[0], NOISE_SLAB)]
        if photon_gain > 0:
            for slab in slabs:
                part = values[slab]
                above = np.maximum(part, 0.0)
                below = part - above
                counts = rng.poisson(above.astype(np.float64) / photon_gain)
                part[...] = (counts * photon_gain).astype(np.float32) + below
        for slab in slabs:
            part = values[slab]
            part += rng.standard_normal(part.shape, dtype=np.float32) * np.float32(sigma_gauss)
        values += np.float32(lo)
        return _cast_owned(values, array.dtype), {
            "dynamic_range": [lo, hi],
            "sigma": sigma,
            "photon_gain": photon_gain,
            "gaussian_sigma": sigma_gauss,
        }


class ResolutionDrift(Drift):
    """Lower resolution: anti-aliased downsampling then linear upsampling to the same grid.

    Default factor ``1 + 3 s`` (1.6, 2.2, 2.8, 3.4, 4.0 for levels 1..5) along the
    in-plane ``axes`` (z, already the coarse axis, is kept). Anti-aliasing is a
    Gaussian of sigma ``(factor - 1) / 2`` voxels (scikit-image's rule). Expected
    signal: embedding drift (texture changes, histograms barely move).
    """

    name = "resolution"
    expected_signal = "embedding_drift"

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        factor: float | None = None,
        axes: Sequence[int] = (0, 1),
    ) -> None:
        super().__init__(severity, seed)
        self.factor = 1.0 + 3.0 * self.severity if factor is None else float(factor)
        if self.factor < 1.0:
            raise DriftError(f"resolution factor {self.factor}", expected="a factor >= 1")
        self.axes = tuple(int(a) for a in axes)

    def parameters(self) -> dict[str, Any]:
        return {"factor": self.factor, "axes": list(self.axes), "interpolation": "linear"}

    def _apply(self, array, rng, **context):
        import numpy as np
        from scipy import ndimage

        shape = array.shape
        small = tuple(
            max(1, round(n / self.factor)) if axis in self.axes else n
            for axis, n in enumerate(shape)
        )
        sigma = tuple(
            (n / m - 1.0) / 2.0 if axis in self.axes else 0.0
            for axis, (n, m) in enumerate(zip(shape, small, strict=True))
        )
        # One full-size float32 buffer: filtered in place, then the upsampled result
        # written back into it (same values as fresh arrays; tested).
        values = array.astype(np.float32)
        ndimage.gaussian_filter(values, sigma=sigma, mode="nearest", output=values)
        down = ndimage.zoom(
            values,
            [m / n for n, m in zip(shape, small, strict=True)],
            order=1,
            grid_mode=True,
            mode="nearest",
        )
        up_zoom = [n / m for n, m in zip(shape, down.shape, strict=True)]
        ndimage.zoom(down, up_zoom, output=values, order=1, grid_mode=True, mode="nearest")
        return _cast_owned(values, array.dtype), {
            "downsampled_shape": list(down.shape),
            "antialias_sigma_voxels": list(sigma),
        }


def _local_radius(binary: np.ndarray, centre: np.ndarray) -> float:
    """Distance (voxels) from ``centre`` to the nearest background voxel or the volume's outside."""
    import numpy as np

    shape = np.array(binary.shape)
    border = float(min(np.min(centre + 1), np.min(shape - centre)))
    half = 4
    while True:
        lo = np.maximum(centre - half, 0)
        hi = np.minimum(centre + half + 1, shape)
        window = binary[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        holes = np.argwhere(~window)
        if holes.size:
            nearest = float(np.sqrt(((holes + lo - centre) ** 2).sum(axis=1).min()))
            if nearest <= half or half >= border:
                return min(nearest, border)
        elif half >= border:
            return border
        half *= 2


def _clear_ball(out: np.ndarray, centre: np.ndarray, radius: float) -> None:
    import numpy as np

    reach = int(math.ceil(radius))
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, np.array(out.shape))
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    inside = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = False


class TopologyDrift(Drift):
    """Break vessel connectivity in a {0, 1} mask.

    ``mode="cut"`` (default): ``cuts_per_1000 = 10 s`` cuts per 1000 centreline
    voxels (at least one), centred on skeleton voxels drawn without replacement;
    each removes a ball of radius ``radius_scale * r + 1`` voxels, r the local
    vessel radius at the centre (distance to the background in the clean mask),
    so it severs the vessel whatever its orientation. ``mode="erode"`` /
    ``"dilate"``: ``ceil(2 s)`` steps of 6-connected binary erosion (thin vessels
    vanish, connections break; the volume's faces do not erode) or dilation
    (neighbouring vessels merge, loops close). Expected signal: topology.

    Pass ``skeleton=`` (the :func:`minivess_bundle.metrics.skeleton` of the same
    mask) to the call to reuse one already computed.
    """

    name = "topology"
    target = "label"
    expected_signal = "topology"
    MODES = ("cut", "erode", "dilate")

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        mode: str = "cut",
        cuts_per_1000: float | None = None,
        radius_scale: float = 2.0,
        iterations: int | None = None,
    ) -> None:
        super().__init__(severity, seed)
        if mode not in self.MODES:
            raise DriftError(f"topology mode {mode!r}", expected=f"one of {self.MODES}")
        self.mode = mode
        self.cuts_per_1000 = 10.0 * self.severity if cuts_per_1000 is None else float(cuts_per_1000)
        self.radius_scale = float(radius_scale)
        self.iterations = (
            max(1, math.ceil(2 * self.severity)) if iterations is None else int(iterations)
        )

    def parameters(self) -> dict[str, Any]:
        if self.mode == "cut":
            return {
                "mode": "cut",
                "cuts_per_1000_skeleton_voxels": self.cuts_per_1000,
                "radius_scale": self.radius_scale,
                "radius_offset_voxels": 1.0,
            }
        return {"mode": self.mode, "iterations": self.iterations, "connectivity": 6}

    def _apply(self, array, rng, skeleton: np.ndarray | None = None, **context):
        import numpy as np
        from scipy import ndimage

        _check_binary(array, self.name)
        binary = array > 0
        if self.mode != "cut":
            structure = ndimage.generate_binary_structure(3, 1)
            if self.mode == "erode":
                out = ndimage.binary_erosion(
                    binary, structure, iterations=self.iterations, border_value=1
                )
            else:
                out = ndimage.binary_dilation(binary, structure, iterations=self.iterations)
            return out.astype(array.dtype), {}
        if skeleton is None:
            from .metrics import skeleton as skeletonise

            skeleton = skeletonise(binary)
        centres = np.argwhere(skeleton)
        n_cuts = 0
        if len(centres):
            n_cuts = min(len(centres), max(1, round(self.cuts_per_1000 * len(centres) / 1000)))
        chosen = centres[np.sort(rng.choice(len(centres), size=n_cuts, replace=False))]
        out = binary.copy()
        radii = []
        for centre in chosen:
            radius = self.radius_scale * _local_radius(binary, centre) + 1.0
            _clear_ball(out, centre, radius)
            radii.append(radius)
        table = np.column_stack([chosen, np.round(radii, 6)]) if n_cuts else np.zeros((0, 4))
        return out.astype(array.dtype), {
            "skeleton_voxels": int(len(centres)),
            "cuts": n_cuts,
            "cut_radius_voxels": {
                "min": float(min(radii)) if radii else 0.0,
                "median": float(np.median(radii)) if radii else 0.0,
                "max": float(max(radii)) if radii else 0.0,
            },
            "cut_table_sha256": hashlib.sha256(
                np.ascontiguousarray(table, dtype="<f8").tobytes()
            ).hexdigest(),
        }


class CovariateDrift(Drift):
    """Shift the spacing metadata; the voxels are untouched.

    Default: every voxel size multiplied by ``1 + 0.5 s * direction`` (``factors``
    sets one per axis). The array comes back unchanged (a copy); the record holds
    the factors and, when ``spacing`` is known, the new spacing, which
    :func:`generate_drift_variant` writes into the NIfTI header. Expected signal:
    schema (header disagrees with the metadata and with the clean volume).
    """

    name = "covariate"
    target = "header"
    expected_signal = "schema"

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        factors: Sequence[float] | None = None,
        direction: int = 1,
        spacing: Sequence[float] | None = None,
    ) -> None:
        super().__init__(severity, seed)
        if direction not in (1, -1):
            raise DriftError(f"direction {direction!r}", expected="1 or -1")
        if factors is None:
            factors = (1.0 + direction * 0.5 * self.severity,) * 3
        self.factors = tuple(float(f) for f in factors)
        if len(self.factors) != 3 or min(self.factors) <= 0:
            raise DriftError(f"spacing factors {factors!r}", expected="three positive numbers")
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)

    def drifted_spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """``spacing`` as the drifted header states it (unchanged at severity 0)."""
        if self.severity == 0.0:
            return tuple(float(s) for s in spacing)
        return tuple(float(s) * f for s, f in zip(spacing, self.factors, strict=True))

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"spacing_factors": list(self.factors)}
        if self.spacing is not None:
            params["spacing_before"] = list(self.spacing)
            params["spacing_after"] = list(self.drifted_spacing(self.spacing))
        return params

    def _apply(self, array, rng, **context):
        return array.copy(), {}


class AttenuationDrift(Drift):
    """Depth attenuation change: ``exp(-z / L)`` with the attenuation length L changed.

    Two-photon signal falls with depth as ``exp(-z / L)``; a different preparation,
    wavelength or laser power compensation changes L. With ``L0`` the clean
    volume's length (default 250 um, inside the 150..400 um of cortex) and
    ``L1 = L0 * length_factor`` (default ``1 / (1 + 3 s)``: up to 4x shorter), each
    slice at depth ``z = k * spacing[axis]`` um is scaled above the dark level by
    ``exp(-z (1/L1 - 1/L0))``. Without ``spacing`` the z step is taken as 1 um
    (recorded). Expected signal: feature drift.
    """

    name = "attenuation"

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        attenuation_length_um: float = 250.0,
        length_factor: float | None = None,
        spacing: Sequence[float] | None = None,
        axis: int = 2,
    ) -> None:
        super().__init__(severity, seed)
        self.length_um = float(attenuation_length_um)
        self.length_factor = (
            1.0 / (1.0 + 3.0 * self.severity) if length_factor is None else float(length_factor)
        )
        if self.length_um <= 0 or self.length_factor <= 0:
            raise DriftError("attenuation length and factor", expected="positive numbers")
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.axis = int(axis)

    def parameters(self) -> dict[str, Any]:
        new_length = self.length_um * self.length_factor
        return {
            "attenuation_length_um_before": self.length_um,
            "attenuation_length_um_after": new_length,
            "delta_inverse_length_per_um": 1.0 / new_length - 1.0 / self.length_um,
            "axis": self.axis,
            "z_step_um": self.spacing[self.axis] if self.spacing else 1.0,
            "z_step_assumed": self.spacing is None,
        }

    def depth_factors(self, n_slices: int) -> np.ndarray:
        """The multiplicative factor of each slice (1 at the surface slice)."""
        import numpy as np

        params = self.parameters()
        depth = np.arange(n_slices, dtype=np.float64) * params["z_step_um"]
        return np.exp(-depth * params["delta_inverse_length_per_um"])

    def _apply(self, array, rng, **context):
        import numpy as np

        from .metrics import robust_range

        lo, hi = robust_range(array)
        factors = self.depth_factors(array.shape[self.axis])
        shape = [1, 1, 1]
        shape[self.axis] = -1
        scale = factors.astype(np.float32).reshape(shape)
        values = array.astype(np.float32)
        values -= np.float32(lo)
        values *= scale
        values += np.float32(lo)
        return _cast_owned(values, array.dtype), {
            "dark_level": lo,
            "factor_deepest_slice": float(factors[-1]),
        }


class PMTDrift(Drift):
    """Photomultiplier gain/offset drift over the acquisition, slice by slice.

    A z-stack is acquired slice after slice, so a PMT warming up or a drifting
    high voltage shows as a gain and dark-offset trend along z. Slice k of n
    (``t = k / (n - 1)``) is mapped to ``dark + (x - dark) * g_k + o_k`` with
    ``g_k = 1 + direction * gain_change * t + w_k`` (``gain_change = 0.3 s``;
    ``w`` a random walk with step sd ``jitter = 0.005 s``, starting at 0) and
    ``o_k = direction * offset_fraction * t`` of the dynamic range
    (``offset_fraction = 0.05 s``). Expected signal: feature drift.
    """

    name = "pmt"

    def __init__(
        self,
        severity: float = 0.5,
        seed: int | None = None,
        *,
        gain_change: float | None = None,
        offset_fraction: float | None = None,
        jitter: float | None = None,
        direction: int = 1,
        axis: int = 2,
    ) -> None:
        super().__init__(severity, seed)
        if direction not in (1, -1):
            raise DriftError(f"direction {direction!r}", expected="1 or -1")
        s = self.severity
        self.gain_change = direction * (0.3 * s if gain_change is None else float(gain_change))
        self.offset_fraction = direction * (
            0.05 * s if offset_fraction is None else float(offset_fraction)
        )
        self.jitter = 0.005 * s if jitter is None else float(jitter)
        self.axis = int(axis)

    def parameters(self) -> dict[str, Any]:
        return {
            "gain_change_at_last_slice": self.gain_change,
            "offset_fraction_of_range_at_last_slice": self.offset_fraction,
            "gain_jitter_step_sd": self.jitter,
            "axis": self.axis,
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        from .metrics import robust_range

        n = array.shape[self.axis]
        t = np.arange(n, dtype=np.float64) / max(n - 1, 1)
        walk = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, self.jitter, n - 1))])
        gains = 1.0 + self.gain_change * t + walk
        lo, hi = robust_range(array)
        offsets = self.offset_fraction * (hi - lo) * t
        shape = [1, 1, 1]
        shape[self.axis] = -1
        values = array.astype(np.float32)
        values -= np.float32(lo)
        values *= gains.astype(np.float32).reshape(shape)
        values += (offsets + lo).astype(np.float32).reshape(shape)
        return _cast_owned(values, array.dtype), {
            "dark_level": lo,
            "dynamic_range": [lo, hi],
            "slice_gains": [float(g) for g in gains],
            "slice_offsets": [float(o) for o in offsets],
        }


#: The single-volume drift types by name (``gradual`` wraps one of them).
TRANSFORMS: dict[str, type[Drift]] = {
    cls.name: cls
    for cls in (
        IntensityDrift,
        NoiseDrift,
        ResolutionDrift,
        TopologyDrift,
        CovariateDrift,
        AttenuationDrift,
        PMTDrift,
    )
}
DRIFT_TYPES = (*TRANSFORMS, "gradual")


def _check_type(drift_type: str, allow_gradual: bool = True) -> str:
    allowed = DRIFT_TYPES if allow_gradual else tuple(TRANSFORMS)
    if drift_type not in allowed:
        raise DriftError(f"drift type {drift_type!r} is not known", expected=f"one of {allowed}")
    return drift_type


def make_drift(drift_type: str, severity: float, seed: int | None, **params: Any) -> Drift:
    """The transform of a single-volume drift type with its explicit parameters."""
    cls = TRANSFORMS[_check_type(drift_type, allow_gradual=False)]
    try:
        return cls(severity, seed, **params)
    except TypeError as exc:
        raise DriftError(f"{drift_type} parameters {sorted(params)}: {exc}") from exc


def gradual_severities(n_batches: int, max_severity: float = 1.0) -> list[float]:
    """Severity of each ordered batch: ``max_severity * k / n`` for k = 1..n (linear, rising)."""
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 1:
        raise DriftError(f"n_batches {n_batches!r}", expected="a positive integer")
    top = check_severity(max_severity)
    return [top * k / n_batches for k in range(1, n_batches + 1)]


class GradualDrift:
    """One base drift with severity rising linearly over ``n_batches`` ordered batches.

    ``GradualDrift(base, n_batches, max_severity, seed)(batches) -> (outputs, record)``:
    ``batches`` is a sequence of ``n_batches`` volumes (batch k gets severity
    ``max_severity * k / n``), or one volume seen in every batch. Batch k's seed
    is ``derive_seed(seed, "batch<k>", base, severity_k)``. The record lists each
    batch's severity, seed and the base transform's record. Expected signal: the
    base type's.
    """

    name = "gradual"

    def __init__(
        self,
        base: str = "intensity",
        n_batches: int = 5,
        max_severity: float = 1.0,
        seed: int | None = None,
        **base_params: Any,
    ) -> None:
        self.base = _check_type(base, allow_gradual=False)
        self.severities = gradual_severities(n_batches, max_severity)
        self.n_batches = n_batches
        self.max_severity = check_severity(max_severity)
        self.seed = _fresh_seed() if seed is None else _check_seed(seed)
        self.base_params = dict(base_params)
        self.target = TRANSFORMS[self.base].target
        self.expected_signal = TRANSFORMS[self.base].expected_signal

    def batch_drift(self, batch: int) -> Drift:
        """The base transform of batch ``batch`` (1-based)."""
        severity = self.severities[batch - 1]
        seed = derive_seed(self.seed, f"batch{batch}", self.base, severity)
        return make_drift(self.base, severity, seed, **self.base_params)

    def __call__(self, batches: Any) -> tuple[list[Any], dict[str, Any]]:
        single = hasattr(batches, "shape") and hasattr(batches, "dtype")
        volumes = [batches] * self.n_batches if single else list(batches)
        if len(volumes) != self.n_batches:
            raise DriftError(
                f"gradual drift got {len(volumes)} batches", expected=f"{self.n_batches}"
            )
        outputs, records = [], []
        for batch, volume in enumerate(volumes, start=1):
            out, record = self.batch_drift(batch)(volume)
            outputs.append(out)
            records.append({"batch": batch, **record})
        return outputs, {
            "type": self.name,
            "base": self.base,
            "n_batches": self.n_batches,
            "max_severity": self.max_severity,
            "seed": self.seed,
            "severities": list(self.severities),
            "batches": records,
        }


def apply_drift(
    volume: Any,
    drift_type: str,
    severity: float = 0.5,
    seed: int | None = None,
    *,
    return_record: bool = False,
    **params: Any,
) -> Any:
    """Apply one drift to a 3-D numpy array (or torch tensor) and return the result.

    ``severity`` in [0, 1] (0: byte-identical copy; see :data:`LEVELS` for the
    named levels); ``seed`` fixes every random draw (``None``: fresh entropy, still
    recorded). ``params`` override the defaults of the type's transform (e.g.
    ``direction=-1``, ``spacing=(0.994, 0.994, 2.0)``, ``mode="erode"``). With
    ``return_record=True`` the result is ``(drifted, record)``.

    ``drift_type="gradual"`` returns a list, one volume per batch: ``volume`` is
    one volume (seen in every batch) or a sequence of them; ``severity`` is the
    last batch's; ``params`` may hold ``base`` (default ``"intensity"``) and
    ``n_batches`` (default 5) plus the base type's parameters.
    """
    if _check_type(drift_type) == "gradual":
        base = params.pop("base", "intensity")
        n_batches = params.pop("n_batches", 5)
        outputs, record = GradualDrift(base, n_batches, severity, seed, **params)(volume)
        return (outputs, record) if return_record else outputs
    out, record = make_drift(drift_type, severity, seed, **params)(volume)
    return (out, record) if return_record else out


# --- verification ----------------------------------------------------------------------------


def _figure(value: float) -> float | None:
    """A figure for the manifest: 6 significant digits; ``None`` when not finite."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _image_figures(clean: np.ndarray, drifted: np.ndarray) -> dict[str, Any]:
    from .metrics import ks_test, mean_std

    ks = ks_test(clean, drifted)
    mean_0, std_0 = mean_std(clean)
    mean_1, std_1 = mean_std(drifted)
    return {
        "ks_statistic": ks["statistic"],
        "ks_pvalue": ks["pvalue"],
        "ks_samples": ks["n"],
        "mean_before": mean_0,
        "mean_after": mean_1,
        "mean_shift": mean_1 - mean_0,
        "std_before": std_0,
        "std_after": std_1,
        "std_ratio": std_1 / std_0 if std_0 else math.nan,
        "std_change": std_1 / std_0 - 1.0 if std_0 else math.nan,
    }


def _slice_means(array: np.ndarray, axis: int) -> np.ndarray:
    import numpy as np

    other = tuple(a for a in range(array.ndim) if a != axis)
    return array.mean(axis=other, dtype=np.float64)


def verification_figures(
    drift_type: str,
    clean: np.ndarray,
    drifted: np.ndarray,
    *,
    record: dict[str, Any] | None = None,
    mask: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    clean_skeleton: np.ndarray | None = None,
    clean_topology: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The figures that prove a variant is what it claims (see the module table).

    Image types: KS statistic and p-value of intensities vs the clean volume,
    mean/std shift; plus SNR before/after (noise, using ``mask`` when given),
    high-frequency energy fraction before/after and their ratio (resolution),
    the measured change of inverse attenuation length (attenuation), the
    first/last slice's fitted gain (pmt). Topology: Betti-0/1/2 and Euler
    characteristic before/after, clDice vs the clean mask. Covariate: spacing
    before/after, delta and relative delta, and whether the voxels are identical.
    Gradual entries carry their base type's figures. Floats have 6 significant
    digits; a non-finite figure is ``None``.
    """
    import numpy as np

    from . import metrics

    figures: dict[str, Any] = {}
    if drift_type in ("intensity", "noise", "resolution", "attenuation", "pmt"):
        figures.update(_image_figures(clean, drifted))
    if drift_type == "noise":
        before, after = metrics.snr_db(clean, mask), metrics.snr_db(drifted, mask)
        lo, hi = metrics.robust_range(clean)
        added = metrics.difference_std(drifted, clean)
        figures.update(
            snr_db_before=before,
            snr_db_after=after,
            snr_change_db=after - before,
            added_noise_fraction_of_range=added / (hi - lo) if hi > lo else math.nan,
        )
    elif drift_type == "resolution":
        before = metrics.high_frequency_energy_fraction(clean)
        after = metrics.high_frequency_energy_fraction(drifted)
        figures.update(
            hf_energy_fraction_before=before,
            hf_energy_fraction_after=after,
            hf_energy_ratio=after / before if before else math.nan,
        )
    elif drift_type == "attenuation":
        params = (record or {}).get("parameters", {})
        axis = params.get("axis", 2)
        dark = params.get("dark_level", metrics.robust_range(clean)[0])
        step = params.get("z_step_um", spacing[axis] if spacing else 1.0)
        m0 = _slice_means(clean, axis) - dark
        m1 = _slice_means(drifted, axis) - dark
        depth = np.arange(m0.size) * step
        good = (m0 > 0) & (m1 > 0)
        if good.sum() >= 2 and depth[good].any():
            log_ratio = np.log(m1[good] / m0[good])
            measured = -float((depth[good] * log_ratio).sum() / (depth[good] ** 2).sum())
        else:
            measured = math.nan
        figures.update(
            measured_delta_inverse_length_per_um=measured,
            slice_mean_ratio_deepest=float(m1[-1] / m0[-1]) if m0[-1] > 0 else math.nan,
        )
    elif drift_type == "pmt":
        axis = (record or {}).get("parameters", {}).get("axis", 2)
        gains = []
        for k in (0, clean.shape[axis] - 1):
            x = np.take(clean, k, axis=axis).astype(np.float64).ravel()
            y = np.take(drifted, k, axis=axis).astype(np.float64).ravel()
            var = x.var()
            gains.append(float(((x - x.mean()) * (y - y.mean())).mean() / var) if var else math.nan)
        figures.update(
            fitted_gain_first_slice=gains[0],
            fitted_gain_last_slice=gains[1],
            fitted_gain_change_last_slice=gains[1] - 1.0,
        )
    elif drift_type == "topology":
        before = clean_topology or metrics.topology_summary(clean)
        after = metrics.topology_summary(drifted)
        for key in ("betti0", "betti1", "betti2", "euler", "foreground_fraction"):
            figures[f"{key}_before"] = before[key]
            figures[f"{key}_after"] = after[key]
        figures["cldice"] = metrics.cldice(drifted, clean, skeleton_b=clean_skeleton)
    elif drift_type == "covariate":
        params = (record or {}).get("parameters", {})
        before = list(params.get("spacing_before", spacing or []))
        after = list(params.get("spacing_after", before))
        relative = [(a - b) / b for a, b in zip(after, before, strict=True)]
        figures.update(
            spacing_before=before,
            spacing_after=after,
            spacing_delta=[a - b for a, b in zip(after, before, strict=True)],
            spacing_relative_delta=relative,
            spacing_max_abs_relative_delta=max((abs(r) for r in relative), default=0.0),
            voxels_identical=bool(
                clean.shape == drifted.shape
                and clean.dtype == drifted.dtype
                and np.array_equal(clean, drifted)
            ),
        )
    else:
        _check_type(drift_type)
    return _round_figures(figures)


def _round_figures(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _round_figures(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round_figures(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    return _figure(value)


# --- variants on disk ------------------------------------------------------------------------

#: The figure that orders each type's levels (and gradual's batches) by magnitude, and its
#: direction. Chosen to depend little on the volume, so a gradual stream of different
#: volumes is ordered too.
PRIMARY_FIGURES = {
    "intensity": ("std_change", "increasing"),
    "noise": ("added_noise_fraction_of_range", "increasing"),
    "resolution": ("hf_energy_ratio", "decreasing"),
    "topology": ("cldice", "decreasing"),
    "covariate": ("spacing_max_abs_relative_delta", "increasing"),
    "attenuation": ("measured_delta_inverse_length_per_um", "increasing"),
    "pmt": ("fitted_gain_change_last_slice", "increasing"),
}


def _load(path: str | Path, volume: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The image and its voxels as a read-only view of the decompressed bytes (one copy)."""
    from .nifti import read_array

    return read_array(path, volume)


def _drifted_image(
    clean: nib.Nifti1Image,
    array: np.ndarray,
    note: str,
    spacing_factors: Sequence[float] | None = None,
) -> nib.Nifti1Image:
    """``array`` with ``clean``'s header and affine (voxel sizes scaled by ``spacing_factors``).

    The header's ``descrip`` keeps its text (e.g. the SYNTHETIC label) and gains
    the drift ``note``, cut to the field's 79 characters.
    """
    import nibabel as nib
    import numpy as np

    affine = np.array(clean.affine, dtype=np.float64)
    zooms = [float(z) for z in clean.header.get_zooms()[:3]]
    if spacing_factors is not None:
        affine[:3, :3] = affine[:3, :3] * np.asarray(spacing_factors, dtype=np.float64)
        zooms = [z * f for z, f in zip(zooms, spacing_factors, strict=True)]
    header = clean.header.copy()
    image = nib.Nifti1Image(array, affine, header=header)
    image.header.set_data_dtype(array.dtype)
    image.set_sform(affine, code=int(clean.header["sform_code"]))
    qform_code = int(clean.header["qform_code"])
    image.set_qform(affine if qform_code else None, code=qform_code)
    image.header.set_zooms(zooms)
    image.header.set_slope_inter(1.0, 0.0)
    old = bytes(clean.header["descrip"]).rstrip(b"\0").decode("ascii", "replace")
    image.header["descrip"] = ((old + "; " if old else "") + note)[:79].encode("ascii", "replace")
    return image


def _path_text(path: str | Path, root: str | Path | None) -> str:
    path = Path(path)
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix() if not path.is_absolute() else path.name


def variant_id(drift_type: str, level: int | None, severity: float, volume: str) -> str:
    """``<type>/<level>/<volume>``, or ``<type>/s<severity>/<volume>`` without a level."""
    return f"{drift_type}/{level if level is not None else f's{severity:.3f}'}/{volume}"


def generate_drift_variant(
    volume: str,
    image_path: str | Path,
    label_path: str | Path,
    out_image: str | Path,
    out_label: str | Path,
    drift_type: str,
    *,
    severity: float | None = None,
    level: int | None = None,
    global_seed: int = 0,
    params: dict[str, Any] | None = None,
    reference_ids: Sequence[str] = (),
    codec: str = "isal",
    compression_level: int = 2,
    clean_root: str | Path | None = None,
    drift_root: str | Path | None = None,
) -> dict[str, Any]:
    """Make one drift variant of one volume (one Snakemake job) and return its manifest entry.

    Give ``level`` (1..5, see :data:`LEVELS`) or ``severity`` (level wins when
    both). For ``drift_type="gradual"``, ``level`` is the batch number k and
    ``params`` holds ``base``, ``n_batches`` and ``max_severity`` (severity
    ``max_severity * k / n_batches``) plus the base type's parameters.

    The file the drift targets is written with :func:`minivess_bundle.nifti.write_nifti`
    (deterministic gzip, atomic); the other file of the pair is
    copied byte for byte (verified). Covariate drift rewrites both with the shifted spacing.
    The seed is :func:`derive_seed` (global seed, volume, type, severity). Paths in
    the entry are relative to ``clean_root`` / ``drift_root`` when given.
    """
    from .fsio import link_or_copy, sha256_file
    from .metrics import skeleton as skeletonise
    from .metrics import topology_summary
    from .nifti import write_nifti
    from .volumes import check_volume_id

    check_volume_id(volume)
    _check_type(drift_type)
    params = dict(params or {})
    if level is not None:
        if drift_type == "gradual":
            n_batches = params.get("n_batches", 5)
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= n_batches:
                raise DriftError(
                    f"gradual batch {level!r}", volume=volume, expected=f"a batch in 1..{n_batches}"
                )
            severity = gradual_severities(n_batches, params.get("max_severity", 1.0))[level - 1]
        else:
            severity = severity_for_level(level)
    if severity is None:
        raise DriftError("neither severity nor level given", volume=volume)
    severity = check_severity(severity)
    seed = derive_seed(global_seed, volume, drift_type, severity)

    base_type = drift_type
    base_params = params
    if drift_type == "gradual":
        base_params = {k: v for k, v in params.items() if k not in ("n_batches", "max_severity")}
        base_type = _check_type(base_params.pop("base", "intensity"), allow_gradual=False)

    clean_image, image_array = _load(image_path, volume)
    clean_label, label_array = _load(label_path, volume)
    spacing = tuple(float(z) for z in clean_image.header.get_zooms()[:3])
    if base_type in ("covariate", "attenuation"):
        base_params.setdefault("spacing", spacing)
    drift = make_drift(base_type, severity, seed, **base_params)
    target = drift.target
    note = f"drift {drift_type} s={severity:.3f}"

    clean_topology = clean_skeleton = None
    if target == "label":
        clean_skeleton = skeletonise(label_array)
        drifted, record = drift(label_array, skeleton=clean_skeleton)
        clean_topology = topology_summary(label_array)
    else:
        drifted, record = drift(image_array)
    figures = verification_figures(
        base_type,
        label_array if target == "label" else image_array,
        drifted,
        record=record,
        mask=label_array,
        spacing=spacing,
        clean_skeleton=clean_skeleton,
        clean_topology=clean_topology,
    )
    factors = drift.factors if base_type == "covariate" and severity > 0 else None
    written = {"image": target in ("image", "header"), "label": target in ("label", "header")}
    if target == "image":
        write_nifti(out_image, _drifted_image(clean_image, drifted, note), codec, compression_level)
    elif target == "label":
        write_nifti(out_label, _drifted_image(clean_label, drifted, note), codec, compression_level)
    else:
        for clean, array, out in (
            (clean_image, image_array, out_image),
            (clean_label, label_array, out_label),
        ):
            write_nifti(out, _drifted_image(clean, array, note, factors), codec, compression_level)
    # Copies, not hardlinks: Snakemake touches outputs, which would move the
    # input's mtime through a shared inode (see minivess_bundle.rename).
    if not written["image"]:
        link_or_copy(image_path, out_image, allow_link=False)
    if not written["label"]:
        link_or_copy(label_path, out_label, allow_link=False)

    files = {}
    for role, source, out in (("image", image_path, out_image), ("label", label_path, out_label)):
        clean_sha, drifted_sha = sha256_file(source), sha256_file(out)
        files[role] = {
            "clean": {"path": _path_text(source, clean_root), "sha256": clean_sha},
            "drifted": {"path": _path_text(out, drift_root), "sha256": drifted_sha},
            "modified": clean_sha != drifted_sha,
        }
    parameters = dict(record["parameters"])
    if drift_type == "gradual":
        parameters = {
            "base": base_type,
            "batch": level,
            "n_batches": params.get("n_batches", 5),
            "max_severity": params.get("max_severity", 1.0),
            "base_parameters": parameters,
        }
    entry = {
        "variant_id": variant_id(drift_type, level, severity, volume),
        "volume": volume,
        "drift_type": drift_type,
        "level": level,
        "severity": severity,
        "seed": seed,
        "seed_source": {
            "global_seed": int(global_seed),
            "volume": volume,
            "drift_type": drift_type,
            "severity": f"{severity:.6f}",
        },
        "target": target,
        "parameters": _json_ready(parameters),
        "expected_signal": drift.expected_signal,
        "files": files,
        "verification": figures,
        "reference_split_ids": sorted(reference_ids),
    }
    log.info(
        "%s: drift %s severity %.3f seed %d -> %s", volume, drift_type, severity, seed, out_image
    )
    return entry


def _json_ready(value: Any) -> Any:
    """Parameters as plain JSON values (tuples to lists, numpy scalars to Python)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


# --- the manifest ----------------------------------------------------------------------------

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_FILE_PAIR = {
    "type": "object",
    "required": ["clean", "drifted", "modified"],
    "additionalProperties": False,
    "properties": {
        "clean": {"$ref": "#/$defs/file"},
        "drifted": {"$ref": "#/$defs/file"},
        "modified": {"type": "boolean"},
    },
}

#: JSON Schema (draft 2020-12) of ``drift_manifest.json``.
DRIFT_MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://minivess-bundle.invalid/schemas/drift_manifest.schema.json",
    "title": "minivess-bundle DriftManifest",
    "description": (
        "Ground truth of the drift variants: per variant its source volume, files and "
        "hashes, type, severity, level, exact parameters, seed, verification figures, "
        "the signal a detector should raise and the clean reference split."
    ),
    "type": "object",
    "required": [
        "manifest_version",
        "generator",
        "global_seed",
        "levels",
        "drift_types",
        "expected_signals",
        "variants",
        "summary",
    ],
    "additionalProperties": False,
    "properties": {
        "manifest_version": {"const": MANIFEST_VERSION},
        "generator": {
            "type": "object",
            "required": ["module", "package_version"],
            "properties": {"module": {"type": "string"}, "package_version": {"type": "string"}},
        },
        "global_seed": {"type": "integer", "minimum": 0},
        "levels": {
            "type": "object",
            "description": "named level -> severity",
            "patternProperties": {"^[1-9][0-9]*$": {"type": "number", "minimum": 0, "maximum": 1}},
            "additionalProperties": False,
        },
        "drift_types": {"type": "array", "items": {"enum": list(DRIFT_TYPES)}},
        "expected_signals": {"type": "array", "items": {"enum": list(EXPECTED_SIGNALS)}},
        "variants": {"type": "array", "items": {"$ref": "#/$defs/variant"}},
        "summary": {
            "type": "object",
            "description": "per drift type: its primary figure averaged per level, and "
            "whether it is ordered in the expected direction across levels",
            "additionalProperties": {
                "type": "object",
                "required": ["figure", "direction", "by_level", "monotonic"],
                "properties": {
                    "figure": {"type": "string"},
                    "direction": {"enum": ["increasing", "decreasing"]},
                    "by_level": {"type": "object", "additionalProperties": _NUMBER_OR_NULL},
                    "monotonic": {"type": "boolean"},
                },
            },
        },
    },
    "$defs": {
        "file": {
            "type": "object",
            "required": ["path", "sha256"],
            "additionalProperties": False,
            "properties": {"path": {"type": "string", "minLength": 1}, "sha256": _SHA256},
        },
        "variant": {
            "type": "object",
            "required": [
                "variant_id",
                "volume",
                "drift_type",
                "level",
                "severity",
                "seed",
                "seed_source",
                "target",
                "parameters",
                "expected_signal",
                "files",
                "verification",
                "reference_split_ids",
            ],
            "additionalProperties": False,
            "properties": {
                "variant_id": {"type": "string"},
                "volume": {"type": "string", "pattern": "^mv[0-9]{2}$"},
                "drift_type": {"enum": list(DRIFT_TYPES)},
                "level": {"type": ["integer", "null"], "minimum": 1},
                "severity": {"type": "number", "minimum": 0, "maximum": 1},
                "seed": {"type": "integer", "minimum": 0, "maximum": _SEED_MASK},
                "seed_source": {
                    "type": "object",
                    "required": ["global_seed", "volume", "drift_type", "severity"],
                    "additionalProperties": False,
                    "properties": {
                        "global_seed": {"type": "integer", "minimum": 0},
                        "volume": {"type": "string"},
                        "drift_type": {"type": "string"},
                        "severity": {"type": "string", "pattern": "^[01]\\.[0-9]{6}$"},
                    },
                },
                "target": {"enum": ["image", "label", "header"]},
                "parameters": {"type": "object"},
                "expected_signal": {"enum": list(EXPECTED_SIGNALS)},
                "files": {
                    "type": "object",
                    "required": ["image", "label"],
                    "additionalProperties": False,
                    "properties": {"image": _FILE_PAIR, "label": _FILE_PAIR},
                },
                "verification": {"type": "object"},
                "reference_split_ids": {
                    "type": "array",
                    "items": {"type": "string"},
                    "uniqueItems": True,
                },
            },
        },
    },
}


def validate_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Check ``manifest`` against :data:`DRIFT_MANIFEST_SCHEMA`.

    Raises :class:`DriftError` naming the first failing field.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(DRIFT_MANIFEST_SCHEMA)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise DriftError(
            f"manifest field {where}: {first.message}",
            expected="a manifest matching DRIFT_MANIFEST_SCHEMA"
            + (f" ({len(errors) - 1} more errors)" if len(errors) > 1 else ""),
        )
    return manifest


def _sort_key(entry: dict[str, Any]) -> tuple:
    return (entry["drift_type"], entry["severity"], entry["level"] or 0, entry["volume"])


def summarise(variants: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per drift type, the mean primary figure per level and whether the levels are ordered.

    The figure is :data:`PRIMARY_FIGURES`'s, by magnitude (absolute value, so a
    darkening intensity drift orders like a brightening one). Gradual variants
    use their base type's figure, per batch. ``monotonic`` is true when the
    per-level means are strictly ordered in the expected direction (a single
    level counts as ordered).
    """
    grouped: dict[str, dict[float, list[float]]] = {}
    figures: dict[str, tuple[str, str]] = {}
    for entry in variants:
        kind = entry["drift_type"]
        base = entry["parameters"].get("base", kind) if kind == "gradual" else kind
        figure, direction = PRIMARY_FIGURES[base]
        figures[kind] = (figure, direction)
        value = entry["verification"].get(figure)
        key = entry["level"] if entry["level"] is not None else entry["severity"]
        if value is not None:
            grouped.setdefault(kind, {}).setdefault((entry["severity"], key), []).append(abs(value))
    summary = {}
    for kind, (figure, direction) in sorted(figures.items()):
        levels = grouped.get(kind, {})
        ordered = [sum(v) / len(v) for _, v in sorted(levels.items())]
        pairs = list(zip(ordered, ordered[1:], strict=False))
        if direction == "increasing":
            monotonic = all(b > a for a, b in pairs)
        else:
            monotonic = all(b < a for a, b in pairs)
        summary[kind] = {
            "figure": figure,
            "direction": direction,
            "by_level": {
                str(key): _figure(sum(v) / len(v)) for (_, key), v in sorted(levels.items())
            },
            "monotonic": bool(monotonic and ordered),
        }
    return summary


@dataclass
class DriftManifest:
    """All variants of a drift run (``drift_manifest.json``), validated by its schema.

    ``to_dict``/``to_json`` sort the variants and add the derived ``summary``;
    ``from_json`` reads back what ``to_json`` wrote (the summary is recomputed).
    """

    global_seed: int
    variants: list[dict[str, Any]] = field(default_factory=list)
    levels: dict[str, float] = field(default_factory=lambda: {str(k): v for k, v in LEVELS.items()})
    manifest_version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        self.variants = sorted(self.variants, key=_sort_key)

    def to_dict(self) -> dict[str, Any]:
        variants = sorted(self.variants, key=_sort_key)
        seen = set()
        for entry in variants:
            if entry["variant_id"] in seen:
                raise DriftError(f"variant {entry['variant_id']} appears twice in the manifest")
            seen.add(entry["variant_id"])
        manifest = {
            "manifest_version": self.manifest_version,
            "generator": {"module": __name__, "package_version": __version__},
            "global_seed": self.global_seed,
            "levels": dict(self.levels),
            "drift_types": list(DRIFT_TYPES),
            "expected_signals": list(EXPECTED_SIGNALS),
            "variants": variants,
            "summary": summarise(variants),
        }
        return validate_manifest(manifest)

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, 2-space indent, trailing newline)."""
        from .fsio import json_bytes

        return json_bytes(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str) -> DriftManifest:
        import json

        data = validate_manifest(json.loads(text))
        return cls(
            global_seed=data["global_seed"],
            variants=data["variants"],
            levels=data["levels"],
            manifest_version=data["manifest_version"],
        )

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        from .fsio import write_bytes_atomic

        return write_bytes_atomic(path, self.to_json().encode())

    @classmethod
    def read(cls, path: str | Path) -> DriftManifest:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def merge_manifest_entries(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Merge per-job entry files (one JSON entry each) into one validated manifest dict.

    All entries must share one global seed; a variant present twice is an error.
    """
    import json

    entries = []
    for path in paths:
        try:
            entries.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise DriftError(f"cannot read manifest entry ({exc})", path=path) from exc
    seeds = {e.get("seed_source", {}).get("global_seed") for e in entries}
    if len(seeds) > 1:
        raise DriftError(
            f"entries come from several global seeds {sorted(map(str, seeds))}",
            expected="one global seed per manifest",
        )
    global_seed = seeds.pop() if seeds else 0
    return DriftManifest(global_seed=global_seed, variants=entries).to_dict()


# --- a whole drifted dataset -----------------------------------------------------------------

_CONFIG_KEYS = {
    "global_seed",
    "volumes",
    "types",
    "levels",
    "params",
    "gradual",
    "reference_ids",
    "codec",
    "compression_level",
}


def variant_dataset_json(drift_type: str, level_dir: str, entries: Sequence[dict]) -> dict:
    """The ``dataset.json`` of one variant set (MONAI/MSD ``training`` list + nnU-Net keys)."""
    volumes = sorted(e["volume"] for e in entries)
    severities = sorted({e["severity"] for e in entries})
    return {
        "name": f"MiniVess-drift-{drift_type}-{level_dir}",
        "description": (
            f"MiniVess drift variant set: {drift_type}, level {level_dir}; "
            "ground truth in drift_manifest.json"
        ),
        "channel_names": {"0": "two-photon"},
        "labels": {"background": 0, "vessel": 1},
        "file_ending": ".nii.gz",
        "numTraining": len(volumes),
        "training": [
            {"image": f"./imagesTr/{v}.nii.gz", "label": f"./labelsTr/{v}.nii.gz"} for v in volumes
        ],
        "drift": {"type": drift_type, "level": level_dir, "severities": severities},
    }


def generate_drifted_dataset(
    source_dir: str | Path, output_dir: str | Path, drift_config: dict[str, Any]
) -> DriftManifest:
    """Write every configured drift variant of the volumes in ``source_dir``.

    ``source_dir`` is any layout :func:`minivess_bundle.loader.discover_nifti_pairs`
    reads. Output: ``output_dir/<type>/<level>/{imagesTr,labelsTr}/<id>.nii.gz`` and
    a ``dataset.json`` per ``<type>/<level>`` set, plus ``output_dir/drift_manifest.json``.
    Each variant is :func:`generate_drift_variant` (what one Snakemake job runs).

    ``drift_config`` keys (all optional): ``global_seed`` (0), ``volumes``
    (``"all"`` or ids; default all found), ``types`` (default all of
    :data:`DRIFT_TYPES`), ``levels`` (default 1..5), ``params`` (type -> explicit
    parameters), ``gradual`` (``base``, ``n_batches`` (5), ``max_severity`` (1.0);
    the sorted volumes are split into ``n_batches`` contiguous ordered batches,
    written to ``gradual/<batch>/``), ``reference_ids`` (default: the volumes found
    but not drifted), ``codec``, ``compression_level``.
    """
    from .fsio import write_json_atomic
    from .loader import discover_nifti_pairs

    unknown = set(drift_config) - _CONFIG_KEYS
    if unknown:
        raise DriftError(
            f"unknown drift config keys {sorted(unknown)}",
            expected=f"keys in {sorted(_CONFIG_KEYS)}",
        )
    output_dir = Path(output_dir)
    pairs = {p["id"]: p for p in discover_nifti_pairs(source_dir)}
    selection = drift_config.get("volumes", "all")
    volumes = sorted(pairs) if selection == "all" else sorted(selection)
    missing = [v for v in volumes if v not in pairs]
    if missing:
        raise DriftError(f"volumes {missing} are not in the source", path=source_dir)
    types = [_check_type(t) for t in drift_config.get("types", DRIFT_TYPES)]
    levels = [int(level) for level in drift_config.get("levels", sorted(LEVELS))]
    for level in levels:
        severity_for_level(level)
    all_params = drift_config.get("params", {})
    reference = drift_config.get("reference_ids", sorted(set(pairs) - set(volumes)))
    global_seed = int(drift_config.get("global_seed", 0))
    codec = drift_config.get("codec", "isal")
    compression_level = int(drift_config.get("compression_level", 2))

    jobs: list[tuple[str, str, int, dict[str, Any]]] = []
    for drift_type in types:
        if drift_type == "gradual":
            gradual = {"base": "intensity", "n_batches": 5, "max_severity": 1.0}
            gradual.update(drift_config.get("gradual", {}))
            n_batches = int(gradual["n_batches"])
            if len(volumes) < n_batches:
                raise DriftError(
                    f"gradual: {len(volumes)} volumes for {n_batches} batches",
                    expected="at least one volume per batch",
                )
            params = {**all_params.get(gradual["base"], {}), **gradual}
            for index, volume in enumerate(volumes):
                batch = index * n_batches // len(volumes) + 1
                jobs.append((volume, drift_type, batch, params))
        else:
            for level in levels:
                for volume in volumes:
                    jobs.append((volume, drift_type, level, all_params.get(drift_type, {})))

    entries = []
    for volume, drift_type, level, params in jobs:
        variant_dir = output_dir / drift_type / str(level)
        entries.append(
            generate_drift_variant(
                volume,
                pairs[volume]["image"],
                pairs[volume]["label"],
                variant_dir / "imagesTr" / f"{volume}.nii.gz",
                variant_dir / "labelsTr" / f"{volume}.nii.gz",
                drift_type,
                level=level,
                global_seed=global_seed,
                params=params,
                reference_ids=reference,
                codec=codec,
                compression_level=compression_level,
                clean_root=source_dir,
                drift_root=output_dir,
            )
        )
    sets: dict[tuple[str, int], list[dict]] = {}
    for (_, drift_type, level, _), entry in zip(jobs, entries, strict=True):
        sets.setdefault((drift_type, level), []).append(entry)
    for (drift_type, level), members in sorted(sets.items()):
        write_json_atomic(
            output_dir / drift_type / str(level) / "dataset.json",
            variant_dataset_json(drift_type, str(level), members),
        )
    manifest = DriftManifest(global_seed=global_seed, variants=entries)
    manifest.write(output_dir / "drift_manifest.json")
    return manifest
