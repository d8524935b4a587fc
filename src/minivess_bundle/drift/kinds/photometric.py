"""Photometric kinds: what the detector and the photon budget do to the counts.

Intensity (gain/offset), noise (Poisson with read noise), attenuation (depth),
bleaching (acquisition order), PMT gain, stripes (line artefacts), saturation.
Dynamic range: the 0.1th..99.9th percentile span of the clean image
(:func:`minivess_bundle.core.metrics.robust_range`); its low end is the dark level.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...core.errors import DriftError
from .. import verify
from ..base import Scale
from .core import Drift, along_axis, cast, draw_direction

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Slices (along the first axis) per slab of a noise draw: bounds the temporaries.
NOISE_SLAB = 8
#: Below this many expected photons a voxel's count is drawn from the exact Poisson CDF.
POISSON_EXACT_BELOW = 12.0


class IntensityDrift(Drift):
    """Global gain and offset (laser power, PMT voltage, objective transmission).

    ``x -> dark + gain (x - dark) + offset``: gain ``1 + a d``, offset ``a d / 6`` of
    the dynamic range, ``a`` the gain change of :attr:`SCALE` at severity s, ``d`` = +1
    (brighter) or -1 (dimmer) drawn per volume from its stream (``direction=`` fixes it).
    Primary figure: |std change|.

    Scale: ``a`` = 0.05 .. 0.4. Plausible up to 0.5 (gain 0.5 .. 1.5): two-photon signal goes
    as the square of the laser power, so a +-20 % power change at the sample (Pockels-cell
    or laser drift, a different objective transmission) or a PMT high-voltage step of a few
    percent gives it; beyond, the acquisition was set up differently, not drifted. Against
    new volumes (drift_eval's protocol, KS at n = 5) level 5 must leave the synthetic
    source's own spread of brightness (vessel signal 700 .. 1500 counts, background 40 ..
    120 drawn per volume); 0.4 is the smallest gain change whose power reaches the KS
    ceiling at n = 5 (docs/benchmark.md, "Severity scales").
    """

    name = "intensity"
    primary = ("std_change", "increasing")
    SCALE = Scale("gain_change", 0.05, 0.4)

    def __init__(self, severity=0.5, seed=None, *, direction: int | None = None) -> None:
        super().__init__(severity, seed)
        self.direction = direction

    def parameters(self):
        return {
            "gain_change": self.amount,
            "offset_fraction_of_range": self.amount / 6.0,
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        from ...core.metrics import robust_range

        d = draw_direction(self.direction, rng)
        lo, hi = robust_range(array)
        gain = 1.0 + d * self.amount
        offset = d * self.amount / 6.0 * (hi - lo)
        values = array.astype(np.float32)
        values -= np.float32(lo)
        values *= np.float32(gain)
        values += np.float32(lo + offset)
        out, clipped = cast(values, array.dtype)
        return out, {
            "direction": d,
            "gain": gain,
            "offset": offset,
            "dark_level": lo,
            "dynamic_range": [lo, hi],
            "clipped_fraction": clipped,
        }


def noise_sigma_fraction(severity: float) -> float:
    """Shot-noise sd at the bright end, as a fraction of the dynamic range, at ``severity``.

    :attr:`NoiseDrift.SCALE` (levels 1 .. 5; 0 at s = 0).
    """
    return NoiseDrift.SCALE.at(severity)


def poisson_counts(expected: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Poisson counts of mean ``expected`` coupled to fixed standard normals ``normal``.

    The count is the Poisson quantile of ``Phi(normal)`` (exact below
    :data:`POISSON_EXACT_BELOW` photons, the continuity-corrected normal quantile
    above): monotone in the mean for a fixed draw, so levels share one noise field.
    """
    import numpy as np
    from scipy.special import ndtr

    counts = np.floor(expected + np.sqrt(expected) * normal + 0.5)
    small = expected < POISSON_EXACT_BELOW
    if small.any():
        lam = expected[small].astype(np.float64)
        u = ndtr(normal[small].astype(np.float64))
        term = np.exp(-lam)
        cdf = term.copy()
        count = np.zeros_like(lam)
        for k in range(1, int(POISSON_EXACT_BELOW * 4) + 1):
            above = u > cdf
            if not above.any():
                break
            count += above
            term *= lam / k
            cdf += term
        counts[small] = count
    return np.maximum(counts, 0.0)


class NoiseDrift(Drift):
    """Fewer detected photons: Poisson shot noise plus a small Gaussian read-noise term.

    The image above the dark level is read as photon counts at ``N_hi = 1 / f**2``
    photons at the bright end (``f`` = :func:`noise_sigma_fraction`: 400 photons at
    level 1 .. 123 at level 5), re-drawn as Poisson counts and scaled back; read noise
    has sd ``read_fraction * s`` of the range (default 0.002: a PMT's small
    amplifier noise). Counts are never negative, so nothing is clipped below the dark
    level; the clipped fraction is recorded. Primary figure: added noise sd / range.

    Scale: ``f`` = 0.09 .. 0.3 (123 .. 11 photons at the bright end). Plausible up to 0.3:
    a deep or low-power two-photon acquisition detects some ten photons per voxel at the
    brightest vessels; with fewer, vessels no longer stand out of the background (a failed
    acquisition, not a drift). The synthetic source itself has 120 .. 750 photons at the
    bright end, so level 5 must be far noisier than its noisiest volume to be seen against
    new volumes: the KS reference detector's power at n = 5 peaks near 0.8 for f = 0.2 ..
    0.3 on the quick start's volumes and falls with more noise (the background quantises
    to the dark level), so it cannot reach 0.9 there (docs/benchmark.md, "Severity scales").
    """

    name = "noise"
    expected_signal = "data_quality"
    primary = ("added_noise_fraction_of_range", "increasing")
    SCALE = Scale("sigma_fraction_of_range", 0.09, 0.3)

    def __init__(self, severity=0.5, seed=None, *, read_fraction: float = 0.002) -> None:
        super().__init__(severity, seed)
        self.read_fraction = float(read_fraction)
        self.sigma_fraction = self.amount

    def parameters(self):
        f = self.sigma_fraction
        return {
            "sigma_fraction_of_range": f,
            "photons_at_bright_end": 1.0 / f**2 if f else None,
            "read_noise_fraction_of_range": self.read_fraction * self.severity,
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        from ...core.metrics import robust_range

        lo, hi = robust_range(array)
        span = max(hi - lo, 1.0)
        gain = span * self.sigma_fraction**2  # ADU per photon
        read = self.read_fraction * self.severity * span
        values = array.astype(np.float32)
        for i in range(0, values.shape[0], NOISE_SLAB):
            part = values[i : i + NOISE_SLAB]
            normal = rng.standard_normal((2, *part.shape), dtype=np.float32)
            signal = np.maximum(part - np.float32(lo), 0.0).astype(np.float64)
            below = part - np.float32(lo) - signal.astype(np.float32)
            counts = poisson_counts(signal / gain, normal[0])
            part[...] = (counts * gain).astype(np.float32) + below + np.float32(lo)
            part += normal[1] * np.float32(read)
        out, clipped = cast(values, array.dtype)
        return out, {
            "dynamic_range": [lo, hi],
            "adu_per_photon": gain,
            "read_noise_sd": read,
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, mask=None, **context):
        from ...core import metrics

        lo, hi = metrics.robust_range(clean)
        before, after = metrics.snr_db(clean, mask), metrics.snr_db(drifted, mask)
        added = metrics.difference_std(drifted, clean)
        return {
            **verify.image_figures(clean, drifted),
            "snr_db_before": before,
            "snr_db_after": after,
            "snr_change_db": after - before,
            "added_noise_fraction_of_range": added / (hi - lo) if hi > lo else math.nan,
            "clipped_fraction": record["parameters"].get("clipped_fraction", 0.0),
        }


class AttenuationDrift(Drift):
    """Shorter attenuation length: fewer photons from depth, so SNR falls with depth.

    Two-photon signal falls as ``exp(-z / L)``; a different preparation, wavelength or
    laser-power compensation changes L. With ``L0`` (default 250 um, inside cortex's
    150..400 um) and ``L1 = L0 / (1 + a)`` (``a``: :attr:`SCALE` at s), slice k at
    depth ``z = k * dz`` um (``dz`` from the header, in um) keeps the fraction
    ``t = exp(-z (1/L1 - 1/L0))`` of its photons. The clean volume is read as ``x = dark + g N
    + e``: ``N`` photons
    (vessels *and* background above the dark level), ``g`` ADU per photon and a noise
    floor ``e`` of sd ``r`` (read noise and dark counts: the noise at the dark level),
    both fitted on the clean volume (:func:`photon_transfer`). Binomial thinning of
    ``N`` gives ``dark + t (x - dark) + sqrt(g t (1 - t) (x - dark)) z1 +
    sqrt(1 - t**2) r z2``: the photon part has mean ``t g N`` and variance ``t g**2 N``,
    the floor keeps its sd ``r`` (it does not thin). Signal falls as ``t``, noise as
    ``sqrt(t g N + r**2)``, so SNR falls with depth whether shot noise or the floor
    dominates. Primary figure: the measured change of inverse attenuation length.

    Scale: ``a`` = 0.7 .. 5 (L = 147 .. 42 um), kept: 42 um is already the short end of
    what two-photon imaging meets (through a thinned skull, in white matter); a shorter
    length is not a drift of the preparation. The reference detectors see little of it
    (level 5 power 0.1-0.2 at n = 5 against new volumes, docs/benchmark.md): MiniVess
    stacks are shallow (median 22 slices, ~45 um), an 8-slice patch spans ~16 um of depth,
    so the dimming is a brightness change inside the source's own 3x spread of brightness
    between volumes (attenuation length 150 .. 400 um, vessel signal 700 .. 1500 counts);
    a detector on the z profile of the whole volume (its fitted attenuation length) would
    see it.
    """

    name = "attenuation"
    primary = ("measured_delta_inverse_length_per_um", "increasing")
    SCALE = Scale("inverse_length_factor_minus_1", 0.7, 5.0)

    def __init__(
        self, severity=0.5, seed=None, *, attenuation_length_um: float = 250.0, axis: int = 2
    ) -> None:
        super().__init__(severity, seed)
        self.length_um = float(attenuation_length_um)
        self.axis = int(axis)
        if self.length_um <= 0:
            raise DriftError("attenuation length", expected="a positive number of um")

    def parameters(self):
        new = self.length_um / (1.0 + self.amount)
        return {
            "attenuation_length_um_before": self.length_um,
            "attenuation_length_um_after": new,
            "delta_inverse_length_per_um": 1.0 / new - 1.0 / self.length_um,
            "axis": self.axis,
        }

    def _apply(self, array, rng, spacing=None, **context):
        import numpy as np

        from ...core.metrics import robust_range

        step = verify.z_step_um(spacing, self.axis, self.name)
        lo, _ = robust_range(array)
        n = array.shape[self.axis]
        delta = self.parameters()["delta_inverse_length_per_um"]
        kept = np.exp(-np.arange(n) * step * delta)
        gain, floor = photon_transfer(array, context.get("mask"), lo)
        values = thin_photons(array, kept, self.axis, lo, gain, floor, rng)
        out, clipped = cast(values, array.dtype)
        return out, {
            "z_step_um": step,
            "dark_level": lo,
            "adu_per_photon": gain,
            "noise_floor_sd": floor,
            "photon_fraction_deepest_slice": float(kept[-1]),
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, mask=None, **context):
        params = record["parameters"]
        fit = verify.depth_fit(
            clean, drifted, params["dark_level"], params["axis"], params["z_step_um"]
        )
        return {
            **verify.image_figures(clean, drifted),
            **fit,
            **verify.depth_snr(clean, drifted, mask, params["axis"]),
        }


def thin_photons(array, kept, axis: int, dark: float, gain: float, floor: float, rng):
    """Binomial thinning of the photons of ``array`` to the fraction ``kept`` (one per
    slice along ``axis``), as a float32 volume (not yet cast).

    ``x = dark + g N + e`` (``g`` ADU per photon, a floor ``e`` of sd ``r``; see
    :func:`photon_transfer`) becomes ``dark + t (x - dark) + sqrt(g t (1 - t) (x - dark))
    z1 + sqrt(1 - t**2) r z2``: the photon part has mean ``t g N`` and variance ``t g**2
    N``, the floor keeps its sd. ``z1``, ``z2``: one fixed draw of standard normals, so
    every level thins the same photons further.
    """
    import numpy as np

    normal = rng.standard_normal((2, *array.shape), dtype=np.float32)
    values = array.astype(np.float32) - np.float32(dark)
    photons = np.maximum(values, 0.0)
    t = along_axis(np.asarray(kept).astype(np.float32), axis)
    photons *= np.float32(gain) * t * (1 - t)
    np.sqrt(photons, out=photons)
    values *= t
    values += photons * normal[0]
    values += normal[1] * (np.float32(floor) * np.sqrt(1 - t * t))
    values += np.float32(dark)
    return values


def photon_transfer(array, mask, dark: float) -> tuple[float, float]:
    """(ADU per photon ``g``, noise floor sd ``r``) of ``array`` from two noise levels.

    The noise variance grows linearly with the mean above the dark level,
    ``var = g (mean - dark) + r**2`` (Poisson photons plus a floor). It is measured
    (:func:`minivess_bundle.core.metrics.noise_sigma`, second differences) on the
    background and on the vessels (the mask; without one, the brightest 5 % of
    voxels), so ``g`` is the slope between the two and ``r`` the intercept at the
    dark level (0 when the fit says all of the background noise is photons).
    """
    import numpy as np

    from ...core.metrics import noise_sigma

    if mask is not None and mask.shape == array.shape and (mask > 0).any() and (mask == 0).any():
        bright = mask > 0
    else:
        bright = array > np.percentile(array, 95)
    levels = []
    for inside in (~bright, bright):
        mean = float(np.mean(array[inside], dtype=np.float64)) if inside.any() else dark
        # noise_sigma counts the triples where its mask is 0: pass the complement
        levels.append((mean, noise_sigma(array, ~inside)))
    (m_bg, s_bg), (m_fg, s_fg) = levels
    gain = (s_fg**2 - s_bg**2) / (m_fg - m_bg) if m_fg > m_bg else 0.0
    if not gain > 0:  # no shot-noise growth measurable: all the noise is photons at the vessels
        gain = s_fg**2 / (m_fg - dark) if m_fg > dark else 1.0
    floor_var = s_bg**2 - gain * max(m_bg - dark, 0.0)
    return float(gain), math.sqrt(max(floor_var, 0.0))


class BleachingDrift(Drift):
    """Photobleaching: the fluorophore fades along the acquisition order (slice by slice).

    Slice k of n keeps ``t_k = exp(-b k / (n - 1))`` of its photons, with ``b = -ln(1 -
    a)``, ``a`` the bleached fraction of the last slice (:attr:`SCALE` at s), independent
    of the z step (unlike attenuation). Fewer emitted photons are fewer counts, so the
    photons above the dark level are thinned binomially as attenuation thins them
    (:func:`thin_photons`, gain and noise floor from :func:`photon_transfer`): signal
    falls as ``t``, shot noise as ``sqrt(t)``, and the late slices' SNR falls. Primary
    figure: the measured bleached fraction of the last slice (slice means above the dark
    level); the SNR change of the shallowest and deepest quarters is recorded beside it.

    Scale: ``a`` = 0.3 .. 0.8. Plausible up to 0.8 (the last slice keeps a fifth of its
    photons: too much laser power on a long stack); beyond it the late slices hold no
    signal, a failed acquisition. The reference detectors see it weakly (level 5 power
    0.1-0.3 at n = 5 against new volumes, docs/benchmark.md): a patch spans 8 slices, so
    bleaching is a per-patch brightness change inside the source's spread of brightness
    between volumes, and its slope within a patch is small beside the source's own depth
    attenuation; a detector on the whole volume's slice-mean profile would see it.
    """

    name = "bleaching"
    primary = ("bleached_fraction_last_slice", "increasing")
    SCALE = Scale("bleached_fraction_last_slice", 0.3, 0.8)

    def parameters(self):
        return {"kept_fraction_last_slice": 1.0 - self.amount, "axis": 2}

    def _apply(self, array, rng, **context):
        import numpy as np

        from ...core.metrics import robust_range

        lo, _ = robust_range(array)
        n = array.shape[2]
        rate = -math.log(self.parameters()["kept_fraction_last_slice"])
        kept = np.exp(-rate * np.arange(n) / max(n - 1, 1))
        gain, floor = photon_transfer(array, context.get("mask"), lo)
        values = thin_photons(array, kept, 2, lo, gain, floor, rng)
        out, clipped = cast(values, array.dtype)
        return out, {
            "dark_level": lo,
            "adu_per_photon": gain,
            "noise_floor_sd": floor,
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, mask=None, **context):
        ratio = verify.last_slice_ratio(clean, drifted, record["parameters"]["dark_level"], 2)
        return {
            **verify.image_figures(clean, drifted),
            "bleached_fraction_last_slice": 1.0 - ratio,
            **verify.depth_snr(clean, drifted, mask, 2),
        }


class PMTDrift(Drift):
    """Photomultiplier gain/offset drift over the acquisition (warm-up, high-voltage drift).

    Slice k of n (``t = k / (n - 1)``): ``dark + (x - dark) g_k + o_k`` with
    ``g_k = 1 + a t + (a / 60) w_k`` (``a``: the gain change of :attr:`SCALE` at s;
    ``w`` one unit random walk per volume, clipped to ±30 so the jitter never exceeds half
    the ramp) and ``o_k = (a / 6) t`` of the dynamic range.

    Primary figure: the applied gain change of the last slice, ``a (1 + w_n / 60)``: the
    walk is drawn once per (volume, kind) and scaled by ``a``, so the figure grows strictly
    with the level on every volume, whatever its noise or rounding (the gain fitted from
    the files, also recorded, is not: on a 5-slice, sd-2 volume the dark clip and uint16
    rounding swapped levels 1 and 2 in the property suite).

    Scale: ``a`` = 0.1 .. 1.0. Plausible up to 1.0 (the gain doubles over one stack: a PMT
    warming up from cold or a drifting high-voltage supply, whose gain goes as a high
    power of the voltage); beyond, the detector is failing, not drifting. At 1.0 the KS
    reference detector's power at n = 5 against new volumes is ~0.7 (docs/benchmark.md):
    the ramp's mean gain change over a patch is a brightness change of at most 2x, inside
    the synthetic source's spread between volumes for the patches near the surface.
    """

    name = "pmt"
    primary = ("applied_gain_change_last_slice", "increasing")
    #: The random walk's bound (steps of sd 1): the jitter is at most half the ramp.
    WALK_BOUND = 30.0
    SCALE = Scale("gain_change_at_last_slice", 0.1, 1.0)

    def parameters(self):
        a = self.amount
        return {
            "gain_change_at_last_slice": a,
            "gain_jitter_step_sd": a / 60.0,
            "offset_fraction_of_range_at_last_slice": a / 6.0,
            "axis": 2,
        }

    def _apply(self, array, rng, **context):
        import numpy as np

        from ...core.metrics import robust_range

        params = self.parameters()
        n = array.shape[2]
        t = np.arange(n, dtype=np.float64) / max(n - 1, 1)
        walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(n - 1))])
        walk = np.clip(walk, -self.WALK_BOUND, self.WALK_BOUND)
        gains = 1.0 + params["gain_change_at_last_slice"] * t + params["gain_jitter_step_sd"] * walk
        lo, hi = robust_range(array)
        offsets = params["offset_fraction_of_range_at_last_slice"] * (hi - lo) * t
        values = array.astype(np.float32) - np.float32(lo)
        values *= along_axis(gains.astype(np.float32), 2)
        values += along_axis((offsets + lo).astype(np.float32), 2)
        out, clipped = cast(values, array.dtype)
        return out, {
            "dark_level": lo,
            "slice_gains": [float(g) for g in gains],
            "clipped_fraction": clipped,
        }

    def figures(self, clean, drifted, record, **context):
        gains = [verify.fitted_gain(clean, drifted, k, 2) for k in (0, clean.shape[2] - 1)]
        applied = record.get("parameters", {}).get("slice_gains")
        return {
            **verify.image_figures(clean, drifted),
            "applied_gain_change_last_slice": applied[-1] - 1.0 if applied else None,
            "fitted_gain_first_slice": gains[0],
            "fitted_gain_last_slice": gains[1],
            "fitted_gain_change_last_slice": gains[1] - 1.0,
        }


class StripeDrift(Drift):
    """Resonant-scanner stripes: a fixed gain pattern across the lines of every slice.

    Line y gets gain ``1 + a p_y`` (``a``: :attr:`SCALE` at s); ``p`` is the resonant
    scanner's sinusoidal dwell-time profile (edges slower, brighter:
    ``cos(pi (y/(n-1) - 0.5))`` inverted) plus a per-line random pattern drawn once per volume,
    normalised to unit sd.
    Primary figure: the sd of the line-mean ratio drifted / clean.

    Scale: ``a`` = 0.03 .. 0.15, kept: a 15 % line-to-line gain sd is already a strong,
    uncorrected resonant-scanner artefact. The reference detectors do not see it (power at
    alpha up to a = 0.5, docs/benchmark.md): their 13 per-patch features see the stripes
    only as in-plane texture (gradient energy, high-frequency fraction), which a 16-line
    patch's detector noise and the source's spread of noise between volumes swamp; a
    detector on the profile of line means across a slice (its variance or spectral peak
    after dividing out the column profile) would see it.
    """

    name = "stripes"
    primary = ("line_gain_sd", "increasing")
    SCALE = Scale("line_gain_sd", 0.03, 0.15)

    def parameters(self):
        return {"line_gain_sd": self.amount, "axis": 1}

    def _apply(self, array, rng, **context):
        import numpy as np

        from ...core.metrics import robust_range

        ny = array.shape[1]
        y = np.arange(ny) / max(ny - 1, 1)
        pattern = (1.0 - np.cos(np.pi * (y - 0.5))) + rng.standard_normal(ny)
        pattern = (pattern - pattern.mean()) / (pattern.std() or 1.0)
        gains = 1.0 + self.parameters()["line_gain_sd"] * pattern
        lo, _ = robust_range(array)
        values = array.astype(np.float32) - np.float32(lo)
        values *= gains.astype(np.float32)[None, :, None]
        values += np.float32(lo)
        out, clipped = cast(values, array.dtype)
        return out, {"dark_level": lo, "clipped_fraction": clipped}

    def figures(self, clean, drifted, record, **context):
        import numpy as np

        dark = record["parameters"]["dark_level"]
        before = clean.mean(axis=(0, 2), dtype=np.float64) - dark
        after = drifted.mean(axis=(0, 2), dtype=np.float64) - dark
        good = before > 0
        ratio = after[good] / before[good]
        return {
            **verify.image_figures(clean, drifted),
            "line_gain_sd": float(ratio.std()) if ratio.size else math.nan,
        }


class SaturationDrift(Drift):
    """Detector / digitiser saturation at the bright end (gain set too high).

    The ceiling comes from the vessel signal: the brightest ``p`` percent of the vessel
    voxels (the clean mask's ones; without a mask, the brightest 5 % of voxels stand for
    them) reach it, ``p`` = :attr:`SCALE` at s, and every voxel above it is clipped to
    it. Ranking the vessel voxels (not the whole volume) keeps a sparse volume's
    background below the ceiling, so what saturates is vessel. Primary figure: the
    measured fraction of voxels at the new maximum; the share of them that is vessel is
    recorded beside it.

    Scale: ``p`` = 5 .. 25 %, kept: a quarter of the vessel voxels at the ceiling is a
    badly set detector gain; beyond, vessel interiors are flat. The reference detectors do
    not see it (power at alpha up to 90 %, docs/benchmark.md): it lowers a patch's top
    quantiles only where the patch holds bright vessel (2-9 % of the voxels), and the
    clipped values stay inside the source's 2x spread of vessel brightness between
    volumes; a detector on the histogram's top bin (a pile-up at one value) would see it.
    """

    name = "saturation"
    expected_signal = "data_quality"
    primary = ("saturated_fraction", "increasing")
    SCALE = Scale("saturated_vessel_percent", 5.0, 25.0)

    def parameters(self):
        return {"saturated_vessel_percent": self.amount}

    def _apply(self, array, rng, **context):
        import numpy as np

        mask = context.get("mask")
        if mask is not None and mask.shape == array.shape and (mask > 0).any():
            vessel = np.sort(array[mask > 0], kind="stable")
            source = "mask"
        else:
            vessel = np.sort(array, axis=None)
            vessel = vessel[vessel.size - max(1, vessel.size // 20) :]
            source = "brightest 5 percent"
        count = max(1, math.ceil(vessel.size * self.amount / 100.0))
        ceiling = vessel[vessel.size - count]
        out = np.minimum(array, np.asarray(ceiling).astype(array.dtype))
        return out, {
            "ceiling": float(ceiling),
            "ceiling_source": source,
            "vessel_voxels": int(vessel.size),
            "saturated_vessel_voxels_ranked": count,
        }

    def figures(self, clean, drifted, record, mask=None, **context):
        import numpy as np

        top = drifted.max()
        at_top = drifted == top
        n_top = int(np.count_nonzero(at_top))
        share = math.nan
        if mask is not None and mask.shape == drifted.shape and n_top:
            share = int(np.count_nonzero(at_top & (mask > 0))) / n_top
        return {
            **verify.image_figures(clean, drifted),
            "saturated_fraction": float(n_top / drifted.size),
            "saturated_vessel_share": share,
        }
