"""Optical and geometric kinds: what the optics, the stage and the metadata do.

Resolution (a wider PSF), depth blur (a PSF widening with depth), z-step (coarser
sectioning), motion (shifted slices) and covariate (a wrong voxel size in the header).
Spacing is always micrometres (:func:`minivess_bundle.core.nifti.spacing_um`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...core.errors import DriftError
from .. import verify
from ..base import Scale
from .core import Drift, cast

if TYPE_CHECKING:  # pragma: no cover
    pass


def _gaussian_blur(values, sigma) -> None:
    from scipy import ndimage

    ndimage.gaussian_filter(values, sigma=sigma, mode="nearest", output=values)


def _top_up_noise(values, clean_sigma: float, rng, shape) -> float:
    """Re-add white noise so the blurred volume's noise matches the clean estimate."""
    import numpy as np

    from ...core.metrics import noise_sigma

    normal = rng.standard_normal(shape, dtype=np.float32)
    left = noise_sigma(values)
    added = math.sqrt(max(clean_sigma**2 - left**2, 0.0))
    values += normal * np.float32(added)
    return added


class ResolutionDrift(Drift):
    """A wider point-spread function (objective NA, aberration, defocus).

    Gaussian blur of sd ``sigma`` voxels in-plane (:attr:`SCALE` at s; ``axial=True``
    blurs z too, by ``axial_scale`` times that), then white noise re-added so the noise sd
    matches the clean volume's estimate (blur alone would also denoise). Primary
    figure: high-frequency energy ratio (falls).
    """

    name = "resolution"
    expected_signal = "embedding_drift"
    primary = ("hf_energy_ratio", "decreasing")
    SCALE = Scale("blur_sigma_voxels", 0.3, 1.5)

    def __init__(
        self,
        severity=0.5,
        seed=None,
        *,
        axial: bool = False,
        axial_scale: float = 0.5,
    ) -> None:
        super().__init__(severity, seed)
        self.axial = bool(axial)
        self.axial_scale = float(axial_scale)
        self.sigma = self.amount

    def parameters(self):
        z = self.sigma * self.axial_scale if self.axial else 0.0
        return {"blur_sigma_voxels": [self.sigma, self.sigma, z], "axial": self.axial}

    def _apply(self, array, rng, **context):
        import numpy as np

        from ...core.metrics import noise_sigma

        clean_sigma = noise_sigma(array, context.get("mask"))
        values = array.astype(np.float32)
        _gaussian_blur(values, self.parameters()["blur_sigma_voxels"])
        added = _top_up_noise(values, clean_sigma, rng, values.shape)
        out, clipped = cast(values, array.dtype)
        return out, {
            "clean_noise_sd": clean_sigma,
            "re_added_noise_sd": added,
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, **context):
        from ...core import metrics

        before = metrics.high_frequency_energy_fraction(clean)
        after = metrics.high_frequency_energy_fraction(drifted)
        return {
            **verify.image_figures(clean, drifted),
            "hf_energy_fraction_before": before,
            "hf_energy_fraction_after": after,
            "hf_energy_ratio": after / before if before else math.nan,
        }


class DepthBlurDrift(ResolutionDrift):
    """PSF widening with depth (scattering, aberration deeper in tissue).

    Slice k of n is blurred in-plane with sd ``sigma k / (n - 1)`` voxels (``sigma``:
    :attr:`SCALE` at s, the deepest slice's; the surface
    slice is sharp; no noise is re-added: deep slices also lose noise). Primary figure: the
    rms change of the deepest quarter of slices, in units of its clean sd. A Gaussian blur
    removes a share ``1 - exp(-sigma**2 w**2 / 2)`` of every frequency ``w``, which grows
    with sigma, so the change grows strictly with the level on any volume with detail; the
    deepest quarter's high-frequency energy ratio (also recorded) does not: once the blur
    has removed the in-plane detail it sits at the rounding noise's floor and levels 3 and 5
    can swap (seen on a 48 px volume).
    """

    name = "depth_blur"
    primary = ("deep_rms_change_fraction", "increasing")
    SCALE = Scale("blur_sigma_voxels_deepest", 0.8, 4.0)

    def parameters(self):
        return {"blur_sigma_voxels_deepest": self.sigma, "axis": 2}

    def _apply(self, array, rng, **context):
        import numpy as np

        values = array.astype(np.float32)
        n = values.shape[2]
        for k in range(n):
            sigma = self.sigma * k / max(n - 1, 1)
            if sigma > 0:
                plane = np.ascontiguousarray(values[:, :, k])
                _gaussian_blur(plane, (sigma, sigma))
                values[:, :, k] = plane
        out, clipped = cast(values, array.dtype)
        return out, {"clipped_fraction": clipped}

    def figures(self, clean, drifted, record, **context):
        deep = slice(clean.shape[2] - max(1, clean.shape[2] // 4), None)
        figures = ResolutionDrift.figures(self, clean[:, :, deep], drifted[:, :, deep], record)
        return {
            **verify.image_figures(clean, drifted),
            **{k: v for k, v in figures.items() if k.startswith("hf_")},
            "deep_rms_change_fraction": _rms_change_fraction(
                clean[:, :, deep], drifted[:, :, deep]
            ),
        }


def _rms_change_fraction(clean, drifted) -> float:
    """rms(drifted - clean) / sd(clean), summed in float64 slice by slice (0.0 if flat)."""
    import numpy as np

    squares = total = 0.0
    for k in range(clean.shape[2]):
        diff = drifted[:, :, k].astype(np.float64) - clean[:, :, k].astype(np.float64)
        squares += float(np.dot(diff.ravel(), diff.ravel()))
    mean = float(clean.mean(dtype=np.float64))
    for k in range(clean.shape[2]):
        centred = clean[:, :, k].astype(np.float64) - mean
        total += float(np.dot(centred.ravel(), centred.ravel()))
    return math.sqrt(squares / total) if total else 0.0


class MotionDrift(Drift):
    """In-vivo motion (heartbeat, breathing): line jitter within slices, jumps between slices.

    Every line (fixed x, z) is shifted along y by ``round(a w)`` voxels and every
    slice after a jump by ``round(2 a v)``: ``w``, ``v`` standard normals drawn once per
    volume, ``a`` voxels of line jitter (:attr:`SCALE` at s), jumps of twice that at
    ``n_jumps = 2`` jump slices (also drawn once). Primary figure: the fraction of displaced lines.
    """

    name = "motion"
    expected_signal = "embedding_drift"
    primary = ("displaced_line_fraction", "increasing")
    SCALE = Scale("line_jitter_sd_voxels", 0.3, 1.5)

    def __init__(self, severity=0.5, seed=None, *, n_jumps: int = 2) -> None:
        super().__init__(severity, seed)
        self.n_jumps = n_jumps
        self.jitter, self.jump = self.amount, 2.0 * self.amount

    def parameters(self):
        return {
            "line_jitter_sd_voxels": self.jitter,
            "jump_sd_voxels": self.jump,
            "n_jumps": self.n_jumps,
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        nx, ny, nz = array.shape
        line = rng.standard_normal((nx, nz))
        jump_at = (
            np.sort(
                rng.choice(np.arange(1, max(nz, 2)), size=min(self.n_jumps, nz - 1), replace=False)
            )
            if nz > 1
            else np.array([], int)
        )
        jumps = rng.standard_normal(len(jump_at))
        offset = np.zeros(nz)
        for at, size in zip(jump_at, jumps, strict=True):
            offset[at:] += size * self.jump
        shifts = np.rint(line * self.jitter + offset[None, :]).astype(int)
        out = np.empty_like(array)
        for z in range(nz):
            for x in range(nx):
                out[x, :, z] = np.roll(array[x, :, z], shifts[x, z])
        return out, {
            "jump_slices": [int(j) for j in jump_at],
            "mean_abs_shift_voxels": float(np.abs(shifts).mean()),
            "shift_table_sha256": hashlib.sha256(shifts.astype("<i4").tobytes()).hexdigest(),
        }

    def figures(self, clean, drifted, record, **context):
        import numpy as np

        moved = np.any(clean != drifted, axis=1)
        return {
            **verify.image_figures(clean, drifted),
            "displaced_line_fraction": float(moved.mean()),
        }


class ZStepDrift(Drift):
    """A coarser z step (fewer optical sections), resampled back onto the grid.

    The stack is acquired at ``f = 1 + a`` times the z step (``a``: :attr:`SCALE` at s)
    with the same optical section, then interpolated back onto the original grid
    (the header keeps its spacing, as a resampling pipeline's output would). Linear
    interpolation from sections f slices apart is a triangle kernel of variance
    ``f**2 / 6`` slices**2 where the clean grid's is ``1 / 6``; the extra band limit is
    applied as a Gaussian along z of sd ``sqrt((f**2 - 1) / 6)`` slices, without the
    aliasing of one particular section phase, so the loss grows strictly with s. Axial
    detail and axial noise fall; in-plane nothing changes. Primary figure: the axial detail
    ratio, energy of the z differences
    drifted / clean (falls).
    """

    name = "z_step"
    expected_signal = "embedding_drift"
    primary = ("axial_detail_ratio", "decreasing")
    SCALE = Scale("z_step_factor_minus_1", 0.5, 4.0)

    def parameters(self):
        factor = 1.0 + self.amount
        return {
            "z_step_factor": factor,
            "axial_sd_slices": math.sqrt((factor**2 - 1.0) / 6.0),
            "axis": 2,
        }

    def _apply(self, array, rng, spacing=None, **context):
        import numpy as np

        params = self.parameters()
        values = array.astype(np.float32)
        _gaussian_blur(values, (0.0, 0.0, params["axial_sd_slices"]))
        out, clipped = cast(values, array.dtype)
        step = None if spacing is None else float(spacing[2])
        return out, {
            "z_step_um_before": step,
            "z_step_um_acquired": None if step is None else step * params["z_step_factor"],
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, **context):
        import numpy as np

        def energy(a):
            d = np.diff(a.astype(np.float64), axis=2)
            return float((d * d).sum())

        before = energy(clean)
        return {
            **verify.image_figures(clean, drifted),
            "axial_detail_ratio": energy(drifted) / before if before else math.nan,
        }


class CovariateDrift(Drift):
    """A wrong voxel size in the header (a mis-set scale, another microscope's metadata).

    Every voxel size multiplied by ``1 + 0.5 s d`` (``d`` = +1 unless ``direction=-1``,
    ``factors`` sets one per axis); the voxels are untouched. Primary figure: the
    largest relative spacing change.
    """

    name = "covariate"
    target = "header"
    expected_signal = "schema"
    primary = ("spacing_max_abs_relative_delta", "increasing")

    def __init__(
        self, severity=0.5, seed=None, *, factors: Sequence[float] | None = None, direction: int = 1
    ) -> None:
        super().__init__(severity, seed)
        if direction not in (1, -1):
            raise DriftError(f"direction {direction!r}", expected="1 or -1")
        if factors is None:
            factors = (1.0 + direction * 0.5 * self.severity,) * 3
        self.factors = tuple(float(f) for f in factors)
        if len(self.factors) != 3 or min(self.factors) <= 0:
            raise DriftError(f"spacing factors {factors!r}", expected="three positive numbers")

    def drifted_spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """``spacing`` as the drifted header states it (unchanged at severity 0)."""
        if self.severity == 0.0:
            return tuple(float(s) for s in spacing)
        return tuple(float(s) * f for s, f in zip(spacing, self.factors, strict=True))

    def parameters(self):
        return {"spacing_factors": list(self.factors)}

    def _apply(self, array, rng, spacing=None, **context):
        if spacing is None:
            return array.copy(), {}
        return array.copy(), {
            "spacing_um_before": list(spacing),
            "spacing_um_after": list(self.drifted_spacing(spacing)),
        }

    def figures(self, clean, drifted, record, spacing=None, **context):
        return verify.spacing_figures(clean, drifted, record, spacing)
