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


#: The probe frequency (cycles per voxel) whose transfer through the applied PSF is the
#: resolution kinds' primary figure: half the Nyquist frequency.
PROBE_CYCLES_PER_VOXEL = 0.25


def _gaussian_blur(values, sigma) -> None:
    from scipy import ndimage

    ndimage.gaussian_filter(values, sigma=sigma, mode="nearest", output=values)


def _kernel_1d(sigma: float):
    """The discrete Gaussian kernel :func:`_gaussian_blur` applies along one axis."""
    import numpy as np
    from scipy import ndimage

    half = int(4.0 * sigma + 0.5) + 1
    impulse = np.zeros(2 * half + 1)
    impulse[half] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant") if sigma > 0 else impulse


def kept_noise_variance(sigma: Sequence[float]) -> float:
    """The share of white noise variance a Gaussian blur of sd ``sigma`` (voxels, per
    axis) keeps: the sum of squares of its discrete kernel (1 for no blur)."""
    import numpy as np

    share = 1.0
    for s in sigma:
        kernel = _kernel_1d(float(s))
        share *= float(np.dot(kernel, kernel))
    return share


def probe_transfer(sigma: float) -> float:
    """Amplitude transfer of an in-plane Gaussian blur of sd ``sigma`` voxels at
    :data:`PROBE_CYCLES_PER_VOXEL`: the discrete kernel's response to a cosine of that
    frequency. 1 without blur, strictly decreasing in ``sigma``, whatever the volume."""
    import numpy as np

    kernel = _kernel_1d(float(sigma))
    half = kernel.size // 2
    offsets = np.arange(-half, half + 1)
    return float(np.dot(kernel, np.cos(2.0 * np.pi * PROBE_CYCLES_PER_VOXEL * offsets)))


def noise_model(clean, mask) -> dict[str, float]:
    """The clean volume's detector noise: ``dark`` level, ``gain`` (ADU per photon) and
    noise ``floor`` sd (:func:`.photometric.photon_transfer`), and the background's
    high-pass noise sd ``r`` (:func:`minivess_bundle.core.metrics.noise_sigma`). Measured
    before any float temporary is allocated (the job's memory budget)."""
    import numpy as np

    from ...core.metrics import noise_sigma, robust_range
    from .photometric import photon_transfer

    has_mask = mask is not None and mask.shape == clean.shape and bool((mask == 0).any())
    dark, _ = robust_range(clean)
    gain, floor = photon_transfer(clean, mask if has_mask else None, dark)
    r = noise_sigma(clean, mask if has_mask else None)
    scale = 1.0
    if has_mask:  # anchor the model on the clean background's measured noise
        background = mask == 0
        above = np.maximum(clean - np.float32(dark), 0.0, dtype=np.float32)
        mean_above = float(np.sum(above, where=background, dtype=np.float64)) / max(
            int(np.count_nonzero(background)), 1
        )
        modelled = gain * mean_above + floor**2
        scale = r**2 / modelled if modelled > 0 else 0.0
    return {
        "dark": float(dark),
        "gain": gain * scale,
        "floor": floor * math.sqrt(scale),
        "r": r,
        "masked": has_mask,
    }


def noise_variance(blurred, model: dict[str, float], mask):
    """The detector noise variance of each voxel of ``blurred`` (float32, a new array).

    Shot noise grows with the signal: ``var = g (x - dark) + f**2`` (:func:`noise_model`),
    evaluated on the blurred signal (a wider PSF spreads the photons: fewer in a vessel,
    less shot noise there), with ``g`` and ``f`` scaled so the model gives the clean
    background's measured ``r**2`` on the clean background (:func:`noise_model`). Without
    a mask: ``r**2`` everywhere.
    """
    import numpy as np

    if not model["masked"]:  # no background to anchor the shot noise on: uniform
        return np.full(blurred.shape, model["r"] ** 2, dtype=np.float32)
    variance = blurred - np.float32(model["dark"])
    np.maximum(variance, 0.0, out=variance)
    variance *= np.float32(model["gain"])
    variance += np.float32(model["floor"] ** 2)
    return variance


def restore_noise(values, variance, kept_variance, normal) -> None:
    """Add back the detector noise a blur removed, variance-matched, in place (``variance``
    is consumed).

    A blur keeps ``kept_variance`` (:func:`kept_noise_variance`) of the white noise of
    variance ``variance`` (per voxel, :func:`noise_variance`); white noise of variance
    ``variance (1 - kept)`` from the fixed draw ``normal`` restores the total, so the
    restored sd grows smoothly from 0 with the blur (no jump between levels) and the
    detector's voxel-to-voxel noise stays at the clean level. ``kept_variance`` may be an
    array broadcasting to ``values`` (one share per slice).
    """
    import numpy as np

    added = np.maximum(1.0 - np.asarray(kept_variance, dtype=np.float64), 0.0).astype(np.float32)
    variance *= added
    np.sqrt(variance, out=variance)
    variance *= normal
    values += variance


class ResolutionDrift(Drift):
    """A wider point-spread function (objective NA, aberration, defocus).

    The signal is blurred with a Gaussian of sd ``sigma`` voxels in-plane (:attr:`SCALE`
    at s; ``axial=True`` blurs z too, by ``axial_scale`` times that); the blur also
    averages the detector's noise, which a wider PSF does not, so the noise is restored
    variance-matched (:func:`restore_noise`: white noise of sd ``r sqrt(1 - k)``, ``r``
    the clean noise sd, ``k`` the share of white-noise variance the kernel keeps, one
    fixed draw for every level). Primary figure: the PSF's amplitude transfer at 0.25
    cycles per voxel (:func:`probe_transfer`, falls strictly with sigma on any volume);
    the high-frequency energy ratio of the files is recorded beside it.

    Scale: ``sigma`` = 0.3 .. 1.5 voxels, kept: 1.5 voxels is 0.5 .. 1.8 um at MiniVess's
    in-plane 0.31 .. 1.23 um, a PSF 2-5x wider than a two-photon objective's (FWHM ~0.5 um);
    wider, capillaries (radius ~1.6 um) blur away: a broken objective, not a resolution
    drift. The reference detectors do not see it (power at alpha up to 4 voxels,
    docs/benchmark.md): the noise is restored, and a patch's texture features (gradient
    energy, high-frequency fraction) are dominated by that noise in the 91-98 % background;
    a detector on the sharpness of the bright (vessel) voxels would see it.
    """

    name = "resolution"
    expected_signal = "embedding_drift"
    primary = ("psf_transfer_at_probe", "decreasing")
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
        return {
            "blur_sigma_voxels": [self.sigma, self.sigma, z],
            "axial": self.axial,
            "probe_cycles_per_voxel": PROBE_CYCLES_PER_VOXEL,
            "psf_transfer_at_probe": probe_transfer(self.sigma),
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        mask = context.get("mask")
        model = noise_model(array, mask)
        sigma = self.parameters()["blur_sigma_voxels"]
        normal = rng.standard_normal(array.shape, dtype=np.float32)
        values = array.astype(np.float32)
        _gaussian_blur(values, sigma)
        kept = kept_noise_variance(sigma)
        restore_noise(values, noise_variance(values, model, mask), kept, normal)
        clean_sigma = model["r"]
        out, clipped = cast(values, array.dtype)
        return out, {
            "clean_noise_sd": clean_sigma,
            "kept_noise_variance": kept,
            "restored_noise_sd": clean_sigma * math.sqrt(max(1.0 - kept, 0.0)),
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, mask=None, **context):
        from ...core import metrics

        before = metrics.high_frequency_energy_fraction(clean)
        after = metrics.high_frequency_energy_fraction(drifted)
        params = record["parameters"]
        return {
            **verify.image_figures(clean, drifted),
            "psf_transfer_at_probe": params.get("psf_transfer_at_probe", 1.0),
            "hf_energy_fraction_before": before,
            "hf_energy_fraction_after": after,
            "hf_energy_ratio": after / before if before else math.nan,
            **verify.noise_kept(clean, drifted, mask),
        }


class DepthBlurDrift(ResolutionDrift):
    """PSF widening with depth (scattering, aberration deeper in tissue).

    Slice k of n is blurred in-plane with sd ``sigma k / (n - 1)`` voxels (``sigma``:
    :attr:`SCALE` at s, the deepest slice's; the surface slice is sharp), then the
    detector noise the blur averaged away is restored slice by slice, variance-matched
    (:func:`restore_noise`), so deep slices lose detail, not noise. Primary figure: the
    PSF's amplitude transfer at 0.25 cycles per voxel in the deepest slice (falls strictly
    with sigma on any volume); the deepest quarter's rms change in clean sd and its
    high-frequency energy ratio are recorded beside it.

    Scale: ``sigma`` = 0.8 .. 4 voxels at the deepest slice, kept (as resolution: wider is
    a broken objective, not scattering). The reference detectors do not see it (power at
    alpha up to 8 voxels, docs/benchmark.md), for resolution's reason.
    """

    name = "depth_blur"
    primary = ("deep_psf_transfer_at_probe", "decreasing")
    SCALE = Scale("blur_sigma_voxels_deepest", 0.8, 4.0)

    def parameters(self):
        return {
            "blur_sigma_voxels_deepest": self.sigma,
            "axis": 2,
            "probe_cycles_per_voxel": PROBE_CYCLES_PER_VOXEL,
            "deep_psf_transfer_at_probe": probe_transfer(self.sigma),
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        mask = context.get("mask")
        model = noise_model(array, mask)
        normal = rng.standard_normal(array.shape, dtype=np.float32)
        values = array.astype(np.float32)
        n = values.shape[2]
        kept = np.ones(n)
        for k in range(n):
            sigma = self.sigma * k / max(n - 1, 1)
            if sigma > 0:
                plane = np.ascontiguousarray(values[:, :, k])
                _gaussian_blur(plane, (sigma, sigma))
                values[:, :, k] = plane
                kept[k] = kept_noise_variance((sigma, sigma))
        restore_noise(values, noise_variance(values, model, mask), kept[None, None, :], normal)
        clean_sigma = model["r"]
        out, clipped = cast(values, array.dtype)
        return out, {
            "clean_noise_sd": clean_sigma,
            "restored_noise_sd_deepest": clean_sigma * math.sqrt(max(1.0 - kept[-1], 0.0)),
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, mask=None, **context):
        deep = slice(clean.shape[2] - max(1, clean.shape[2] // 4), None)
        figures = ResolutionDrift.figures(self, clean[:, :, deep], drifted[:, :, deep], record)
        deep_mask = None if mask is None else mask[:, :, deep]
        return {
            **verify.image_figures(clean, drifted),
            **{k: v for k, v in figures.items() if k.startswith("hf_")},
            "deep_psf_transfer_at_probe": record["parameters"].get(
                "deep_psf_transfer_at_probe", 1.0
            ),
            "deep_rms_change_fraction": _rms_change_fraction(
                clean[:, :, deep], drifted[:, :, deep]
            ),
            **{
                f"deep_{k}": v
                for k, v in verify.noise_kept(
                    clean[:, :, deep], drifted[:, :, deep], deep_mask
                ).items()
            },
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
    ``n_jumps = 2`` jump slices (also drawn once). A shift moves tissue out of the field
    of view and brings unimaged background in: nothing wraps around; the voxels shifted
    in are the background estimate (median of the clean background, the mask's zeros)
    plus noise of the clean background's sd (one fixed draw), both recorded. Primary
    figure: the fraction of displaced lines.

    Scale: ``a`` = 0.3 .. 1.5 voxels, kept (0.1 .. 1.8 um of jitter, jumps twice that:
    heartbeat and breathing in an anaesthetised mouse; awake animals move more). The
    reference detectors do not see it (power at alpha up to 6 voxels, docs/benchmark.md):
    shifting lines keeps each patch's intensity distribution and moves texture only at
    vessel edges (2-9 % of the voxels); a detector on line-to-line cross-correlation (a
    registration residual) would see it.
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

        from ...core.metrics import noise_sigma

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
        fill_normal = rng.standard_normal(array.shape, dtype=np.float32)
        offset = np.zeros(nz)
        for at, size in zip(jump_at, jumps, strict=True):
            offset[at:] += size * self.jump
        shifts = np.rint(line * self.jitter + offset[None, :]).astype(int)
        shifts = np.clip(shifts, -ny, ny)
        mask = context.get("mask")
        has_background = mask is not None and mask.shape == array.shape and (mask == 0).any()
        background = array[mask == 0] if has_background else array
        level = float(np.median(background))
        sd = noise_sigma(array, mask if has_background else None)
        fill, _ = cast(np.float32(level) + fill_normal * np.float32(sd), array.dtype)
        out = array.copy()
        for z in range(nz):
            for x in range(nx):
                shift = shifts[x, z]
                if shift > 0:
                    out[x, shift:, z] = array[x, : ny - shift, z]
                    out[x, :shift, z] = fill[x, :shift, z]
                elif shift < 0:
                    out[x, :shift, z] = array[x, -shift:, z]
                    out[x, shift:, z] = fill[x, shift:, z]
        return out, {
            "jump_slices": [int(j) for j in jump_at],
            "mean_abs_shift_voxels": float(np.abs(shifts).mean()),
            "shift_table_sha256": hashlib.sha256(shifts.astype("<i4").tobytes()).hexdigest(),
            "edge_fill": {"background_level": level, "noise_sd": sd, "wraps": False},
            "filled_voxel_fraction": float(np.abs(shifts).sum() / array.size),
        }

    def figures(self, clean, drifted, record, **context):
        import numpy as np

        moved = np.any(clean != drifted, axis=1)
        return {
            **verify.image_figures(clean, drifted),
            "displaced_line_fraction": float(moved.mean()),
        }


def z_step_sections(severity: float) -> int:
    """Every how many slices a section is acquired at ``severity``: ``1 + round(a)``, ``a``
    from :attr:`ZStepDrift.SCALE` (2, 3, 4, 5, 6 at levels 1..5; 1 at s = 0)."""
    return 1 + round(ZStepDrift.SCALE.at(severity))


class ZStepDrift(Drift):
    """A coarser z step (fewer optical sections), resampled back onto the grid.

    Every k-th slice is acquired (``k`` = :func:`z_step_sections`: 2 .. 6 at levels 1 .. 5;
    the surface slice is the first), with the same optical section, and linearly
    interpolated back onto the original grid between acquired sections (beyond the
    last one, the last acquired section is held); the header keeps its spacing, as a
    resampling pipeline's output would. Acquired sections keep their voxels (and their
    noise) byte for byte; an interpolated slice ``w`` of the way between two sections
    keeps ``(1 - w)**2 + w**2`` of the white noise variance, and the rest is restored
    (:func:`restore_noise`, one fixed draw), so axial detail falls and the detector
    noise does not. Needs ``k + 1`` slices at its highest level (two acquired sections);
    the plan skips thinner volumes (:func:`minivess_bundle.drift.plan.skip_reason`).
    Primary figure: the number of interpolated slices per gap, ``k - 1``; the axial
    detail ratio (energy of the z differences, drifted / clean) is recorded beside it.

    Scale: ``k - 1`` = 1 .. 5, kept: ``k`` = 6 needs 7 slices, and MiniVess has 5-slice
    stacks. The reference detectors do not see it (power at alpha at every level,
    docs/benchmark.md): 12 of their 13 features are in-plane or intensity figures that
    interpolation between sections (with the detector noise restored) leaves in place, and
    the 13th (the slope of slice means) does not change; a detector on the axial detail
    (energy of the z differences, axial autocorrelation) would see it.
    """

    name = "z_step"
    expected_signal = "embedding_drift"
    primary = ("interpolated_slices_per_gap", "increasing")
    SCALE = Scale("z_step_factor_minus_1", 1.0, 5.0)

    def parameters(self):
        k = z_step_sections(self.severity)
        return {"z_step_factor": k, "interpolated_slices_per_gap": k - 1, "axis": 2}

    def _apply(self, array, rng, spacing=None, **context):
        import numpy as np

        k = self.parameters()["z_step_factor"]
        n = array.shape[2]
        if n < k + 1:
            raise DriftError(
                f"z_step at severity {self.severity:g} acquires every {k}th of {n} slices: "
                "fewer than two sections",
                expected=f"at least {k + 1} slices",
                volume=context.get("volume"),
                path=context.get("where") or None,
            )
        mask = context.get("mask")
        model = noise_model(array, mask)
        normal = rng.standard_normal(array.shape, dtype=np.float32)
        acquired = np.arange(0, n, k)
        values = array.astype(np.float32)
        kept = np.ones(n)
        for z in range(n):
            if z % k == 0:
                continue
            low = acquired[acquired < z][-1]
            high = low + k
            if high >= n:  # past the last acquired section: held
                values[:, :, z] = values[:, :, low]
                kept[z] = 1.0
                continue
            w = (z - low) / k
            values[:, :, z] = (1.0 - w) * values[:, :, low] + w * values[:, :, high]
            kept[z] = (1.0 - w) ** 2 + w**2
        restore_noise(values, noise_variance(values, model, mask), kept[None, None, :], normal)
        clean_sigma = model["r"]
        values[:, :, acquired] = array[:, :, acquired]
        out, clipped = cast(values, array.dtype)
        step = None if spacing is None else float(spacing[2])
        return out, {
            "acquired_slices": [int(a) for a in acquired],
            "clean_noise_sd": clean_sigma,
            "z_step_um_before": step,
            "z_step_um_acquired": None if step is None else step * k,
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, **context):
        import numpy as np

        def energy(a):
            d = np.diff(a.astype(np.float64), axis=2)
            return float((d * d).sum())

        params = record["parameters"]
        acquired = params.get("acquired_slices", [])
        before = energy(clean)
        same = [bool(np.array_equal(clean[:, :, z], drifted[:, :, z])) for z in acquired]
        return {
            **verify.image_figures(clean, drifted),
            "interpolated_slices_per_gap": params.get("interpolated_slices_per_gap", 0),
            "acquired_slices_unchanged_fraction": float(np.mean(same)) if same else math.nan,
            "axial_detail_ratio": energy(drifted) / before if before else math.nan,
            **verify.noise_kept(clean, drifted, context.get("mask")),
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
