"""Figures that prove a drift variant is what it claims to be.

Plain functions on numpy arrays, used by :mod:`minivess_bundle.drift` to fill the
``verification`` block of each DriftManifest entry, and usable on their own:

* :func:`ks_test` — two-sample Kolmogorov-Smirnov test of voxel intensities;
* :func:`snr_db` and :func:`noise_sigma` — signal-to-noise ratio with a robust noise estimate;
* :func:`high_frequency_energy_fraction` — share of spectral energy above a cut-off frequency;
* :func:`betti_numbers` — Betti-0/1/2 of a 3-D mask via the Euler characteristic;
* :func:`cldice` — centreline Dice (Shit et al., CVPR 2021) between two masks.

Conventions for masks: foreground is 26-connected and background 6-connected (the
complementary pair, so Betti numbers and the Euler characteristic agree), and the
volume is treated as surrounded by background, as :func:`skimage.measure.euler_number`
pads it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Voxels each side of a KS test uses at most (a fixed, seeded subsample beyond that).
KS_MAX_SAMPLES = 200_000
#: Default cut-off of :func:`high_frequency_energy_fraction`, as a fraction of Nyquist.
HF_CUTOFF = 0.5
_MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^-1(3/4)


# --- intensity distributions -----------------------------------------------------------------


def _flat_sample(array: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    flat = array.reshape(-1)
    return flat if index is None else flat[index]


def kolmogorov_sf(z: float) -> float:
    """``P(K > z)`` of the Kolmogorov distribution, the limit law of ``sqrt(n) D_n``.

    The two classical series (equal to :func:`scipy.special.kolmogorov` to ~1e-15):
    ``2 sum (-1)^(k-1) exp(-2 k^2 z^2)`` for large z and the Jacobi-theta form
    ``1 - sqrt(2 pi) / z sum exp(-(2k-1)^2 pi^2 / (8 z^2))`` for small z, where
    each converges in a few terms. Plain math, so drift jobs need not import
    :mod:`scipy.stats` (1.4 s, paid by every job).
    """
    if not z > 0:
        return 1.0
    if z < 1.0:
        w = math.pi**2 / (8.0 * z * z)
        total = sum(math.exp(-((2 * k - 1) ** 2) * w) for k in range(1, 20))
        value = 1.0 - math.sqrt(2.0 * math.pi) / z * total
    else:
        value = 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * z * z) for k in range(1, 20))
    return min(max(value, 0.0), 1.0)


def ks_test(
    a: np.ndarray, b: np.ndarray, max_samples: int = KS_MAX_SAMPLES, seed: int = 0
) -> dict[str, float]:
    """Two-sample KS test of the voxel values of ``a`` and ``b``.

    Arrays larger than ``max_samples`` voxels are subsampled with a generator
    seeded by ``seed``; when both arrays have the same size the *same* voxel
    positions are drawn from both, so ``ks_test(x, x)`` is exactly statistic 0,
    p-value 1. (With millions of voxels every shift would give p = 0; the fixed
    subsample keeps the p-value informative and the test fast.)

    The statistic is :func:`scipy.stats.ks_2samp`'s (same algorithm); the p-value
    is Smirnov's asymptotic one, :func:`kolmogorov_sf` of ``sqrt(n m / (n + m)) D``.

    Returns ``{"statistic", "pvalue", "n"}``, ``n`` the sample size per side.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def index_for(size: int) -> np.ndarray | None:
        if size <= max_samples:
            return None
        return np.sort(rng.choice(size, size=max_samples, replace=False))

    index_a = index_for(a.size)
    index_b = index_a if a.size == b.size else index_for(b.size)
    sample_a = np.sort(_flat_sample(a, index_a).astype(np.float64))
    sample_b = np.sort(_flat_sample(b, index_b).astype(np.float64))
    n_a, n_b = sample_a.size, sample_b.size
    if not n_a or not n_b:
        raise ValueError("ks_test needs two non-empty arrays")
    both = np.concatenate([sample_a, sample_b])
    cdf_a = np.searchsorted(sample_a, both, side="right") / n_a
    cdf_b = np.searchsorted(sample_b, both, side="right") / n_b
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    effective_n = n_a * n_b / (n_a + n_b)
    return {
        "statistic": statistic,
        "pvalue": kolmogorov_sf(math.sqrt(effective_n) * statistic),
        "n": int(min(n_a, n_b)),
    }


#: Elements per chunk of the streaming reductions (8 MiB of float64 temporaries).
CHUNK_ELEMENTS = 1 << 20


def _flat_chunks(array: np.ndarray, size: int = CHUNK_ELEMENTS):
    """Consecutive pieces of ``array``'s elements in memory order (a view when contiguous)."""
    flat = array.ravel(order="K")
    for start in range(0, flat.size, size):
        yield flat[start : start + size]


def mean_std(array: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of all voxels, accumulated in float64.

    Two passes over chunks: no float64 copy of the volume (``np.std`` makes two).
    """
    import numpy as np

    n = array.size
    if n == 0:
        return math.nan, math.nan
    mean = float(np.mean(array, dtype=np.float64))
    squares = 0.0
    for chunk in _flat_chunks(array):
        deviation = chunk.astype(np.float64) - mean
        squares += float(np.dot(deviation, deviation))
    return mean, math.sqrt(squares / n)


def difference_std(a: np.ndarray, b: np.ndarray) -> float:
    """Standard deviation of ``a - b`` in float64, chunk by chunk (no full-size temporaries)."""
    import numpy as np

    if a.shape != b.shape:
        raise ValueError(f"difference_std needs arrays of one shape, got {a.shape} and {b.shape}")
    n = a.size
    if n == 0:
        return math.nan
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    flat_a, flat_b = a.ravel(order=order), b.ravel(order=order)
    total = squares = 0.0
    shift = None
    for start in range(0, n, CHUNK_ELEMENTS):
        d = flat_a[start : start + CHUNK_ELEMENTS].astype(np.float64)
        d -= flat_b[start : start + CHUNK_ELEMENTS]
        if shift is None:
            shift = float(d[0])  # shifted sums: no cancellation when the mean is large
        d -= shift
        total += float(d.sum())
        squares += float(np.dot(d, d))
    mean = total / n
    return math.sqrt(max(squares / n - mean * mean, 0.0))


def small_int_histogram(array: np.ndarray) -> tuple[int, np.ndarray] | None:
    """``(offset, counts)`` of an 8/16-bit integer array, counted chunk by chunk; else None.

    ``counts[k]`` is the number of voxels equal to ``offset + k`` (``offset`` the dtype's
    minimum); the temporaries stay a few MB whatever the volume's size.
    """
    import numpy as np

    if array.dtype.kind not in "ui" or array.dtype.itemsize > 2 or array.size == 0:
        return None
    info = np.iinfo(array.dtype)
    counts = np.zeros(int(info.max) - int(info.min) + 1, dtype=np.int64)
    for chunk in _flat_chunks(array):
        values = chunk.astype(np.intp)
        if info.min:
            values -= int(info.min)
        counts += np.bincount(values, minlength=counts.size)
    return int(info.min), counts


def _percentiles_from_histogram(offset: int, counts: np.ndarray, q: list[float]) -> list[float]:
    """``np.percentile(data, q)`` (method "linear") from the data's histogram, exactly.

    Same virtual index ``(n - 1) q / 100`` and the same two-sided lerp as numpy, on
    the two order statistics the cumulative counts give.
    """
    import numpy as np

    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    out = []
    for percent in q:
        virtual = (n - 1) * (percent / 100)
        below = math.floor(virtual)
        gamma = virtual - below
        above = min(below + 1, n - 1)
        a = offset + int(np.searchsorted(cumulative, below, side="right"))
        b = offset + int(np.searchsorted(cumulative, above, side="right"))
        diff = b - a
        out.append(float(b - diff * (1 - gamma)) if gamma >= 0.5 else float(a + diff * gamma))
    return out


def percentiles(array: np.ndarray, q: list[float]) -> list[float]:
    """``np.percentile(array, q)`` as floats; 8/16-bit integers via a histogram.

    The histogram gives numpy's exact values (tested) without sorting a copy of
    the volume: ~10x faster, and a few MB instead of the volume's size.
    """
    import numpy as np

    histogram = small_int_histogram(array)
    if histogram is not None:
        return _percentiles_from_histogram(*histogram, q)
    return [float(v) for v in np.percentile(array, q)]


def robust_range(array: np.ndarray, low: float = 0.1, high: float = 99.9) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles: the dark level and the bright end of an image.

    The drift types express strengths as fractions of this *dynamic range*
    (``high - low``), so hot pixels and empty corners do not set the scale.
    """
    lo, hi = percentiles(array, [low, high])
    return lo, hi


# --- noise -----------------------------------------------------------------------------------


def _second_differences(
    image: np.ndarray, mask: np.ndarray | None, axis: int, slab: int = 8
) -> np.ndarray:
    """Second differences along ``axis`` (background triples only with ``mask``), float32.

    Built slab by slab along another axis, so the only full-size temporary is the
    result itself.
    """
    import numpy as np

    data = np.moveaxis(np.asarray(image), axis, 0)
    background = None if mask is None else np.moveaxis(np.asarray(mask) == 0, axis, 0)
    if data.shape[0] < 3:
        return np.zeros(0, dtype=np.float32)
    along = int(np.argmax(data.shape[1:])) + 1  # slab along the longest other axis
    out = np.empty((data.shape[0] - 2) * int(np.prod(data.shape[1:])), dtype=np.float32)
    filled = 0
    for start in range(0, data.shape[along], slab):
        index = [slice(None)] * data.ndim
        index[along] = slice(start, start + slab)
        part = data[tuple(index)].astype(np.float32)
        diff = part[:-2] + part[2:]
        diff -= part[1:-1]
        diff -= part[1:-1]
        if background is not None:
            bg = background[tuple(index)]
            diff = diff[bg[:-2] & bg[1:-1] & bg[2:]]
        out[filled : filled + diff.size] = diff.reshape(-1)
        filled += diff.size
    return out[:filled]


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None, axis: int = 0) -> float:
    """Robust estimate of the noise standard deviation of ``image``.

    The median absolute deviation of second differences ``x[i-1] - 2 x[i] + x[i+1]``
    along ``axis`` (the in-plane x axis by default), scaled to a Gaussian sigma and
    divided by sqrt(6) (the variance of such a difference of independent noise).
    Second differences cancel linear trends, and the median ignores the few steep
    edges, so this measures voxel-to-voxel noise, not structure. With ``mask``,
    only triples of background voxels count. Falls back to the standard deviation
    of the differences when the MAD is 0 (quantised, nearly constant data).
    """
    import numpy as np

    diff = _second_differences(image, mask, axis)
    if diff.size == 0:
        return 0.0
    # In place (the medians only reorder): one full-size array, not three.
    centre = float(np.median(diff, overwrite_input=True))
    np.subtract(diff, np.float32(centre), out=diff)
    np.abs(diff, out=diff)
    mad = float(np.median(diff, overwrite_input=True))
    if mad > 0:
        sigma = _MAD_TO_SIGMA * mad
    else:  # rare (quantised, nearly constant data): the differences again, for their std
        sigma = float(np.std(_second_differences(image, mask, axis), dtype=np.float64))
    return sigma / math.sqrt(6.0)


def snr_db(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Signal-to-noise ratio in decibels, ``20 log10(signal / noise)``.

    Signal: mean of the vessel voxels minus mean of the background voxels when
    a ``mask`` is given; otherwise the 99th percentile minus the median (vessels
    are a few per cent of a MiniVess volume, so these stand for the vessel and
    background levels). Noise: :func:`noise_sigma` (background voxels only when
    a mask is given). Returns ``inf`` for noise-free data and ``-inf`` when there
    is no signal.
    """
    import numpy as np

    if mask is not None and (mask > 0).any() and (mask == 0).any():
        foreground = np.asarray(mask) > 0
        n_fg = int(np.count_nonzero(foreground))
        sum_all = float(np.sum(image, dtype=np.float64))
        sum_fg = float(np.sum(image[foreground], dtype=np.float64))
        signal = sum_fg / n_fg - (sum_all - sum_fg) / (image.size - n_fg)
    else:
        p50, p99 = percentiles(image, [50, 99])
        signal = p99 - p50
    noise = noise_sigma(image, mask)
    if noise == 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 20.0 * math.log10(signal / noise)


# --- spatial frequency -----------------------------------------------------------------------


def high_frequency_energy_fraction(image: np.ndarray, cutoff: float = HF_CUTOFF) -> float:
    """Share of the (mean-removed) spectral energy above ``cutoff``.

    The spectrum is the orthonormal DCT-II (an FFT of the mirrored volume, so the
    volume's faces add no spurious edges the way a periodic FFT's wrap-around
    does). Coefficient k of an axis of n voxels stands for ``k / (2 n)`` cycles
    per voxel, i.e. ``k / n`` of the Nyquist frequency; a coefficient counts as
    high-frequency when its normalised radius ``sqrt(sum_i (k_i / n_i)^2)``
    exceeds ``cutoff``. Computed in voxel units, single-threaded (identical
    figures on any machine). Returns 0.0 for a constant image. Blur lowers it;
    added noise raises it; white noise gives ``1 - pi / 48 = 0.9346`` at 0.5.

    The DCT is taken in place on one float32 copy; energies are summed in float64
    slice by slice (no full-size float64 power array).
    """
    import numpy as np
    from scipy import fft

    data = np.array(image, dtype=np.float32, order="C")
    data -= np.float32(data.mean(dtype=np.float64))
    coeffs = fft.dctn(data, type=2, norm="ortho", workers=1, overwrite_x=True)
    del data
    n_first, *rest = coeffs.shape
    radius2_rest = np.zeros(rest, dtype=np.float64)
    for axis, n in enumerate(rest):
        shape = [1] * len(rest)
        shape[axis] = n
        radius2_rest = radius2_rest + ((np.arange(n) / n) ** 2).reshape(shape)
    radius2_first = (np.arange(n_first) / n_first) ** 2
    total = high = 0.0
    for k in range(n_first):  # contiguous slices of the C-ordered coefficients
        power = coeffs[k].astype(np.float64) ** 2
        total += float(power.sum())
        high += float(power[radius2_rest + radius2_first[k] > cutoff**2].sum())
    if total <= 0:
        return 0.0
    return high / total


# --- topology --------------------------------------------------------------------------------


def _binary(mask: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.asarray(mask) > 0


def euler_characteristic(mask: np.ndarray) -> int:
    """Euler characteristic of a 3-D mask with 26-connected foreground (closed unit cubes).

    ``V - E + F - C`` of the cubical complex the foreground voxels span, counted
    plane by plane: equal to :func:`skimage.measure.euler_number` with
    ``connectivity=3`` (tested), in memory of a few 2-D planes instead of 16 bytes
    per voxel.
    """
    import numpy as np

    binary = _binary(mask)
    if binary.ndim != 3:
        raise ValueError(f"euler_characteristic needs a 3-D mask, got {binary.ndim} dimensions")
    nx, ny, nz = binary.shape

    def pad(plane: np.ndarray) -> np.ndarray:
        out = np.zeros((nx + 2, ny + 2), dtype=bool)
        out[1:-1, 1:-1] = plane
        return out

    def corners(p: np.ndarray) -> int:  # lattice points touched by a padded footprint
        return int(np.count_nonzero(p[:-1, :-1] | p[:-1, 1:] | p[1:, :-1] | p[1:, 1:]))

    def x_edges(p: np.ndarray) -> int:  # edges along x in a lattice plane
        return int(np.count_nonzero(p[1:-1, :-1] | p[1:-1, 1:]))

    def y_edges(p: np.ndarray) -> int:
        return int(np.count_nonzero(p[:-1, 1:-1] | p[1:, 1:-1]))

    empty = np.zeros((nx, ny), dtype=bool)
    vertices = edges = faces = cubes = 0
    previous = empty
    for k in range(nz + 1):
        current = binary[:, :, k] if k < nz else empty
        footprint = pad(previous | current)  # what touches lattice plane k
        vertices += corners(footprint)
        edges += x_edges(footprint) + y_edges(footprint)
        faces += int(np.count_nonzero(footprint))  # z-normal faces in plane k
        if k < nz:  # between lattice planes k and k+1: voxel plane k itself
            inside = pad(current)
            edges += corners(inside)  # z-directed edges
            faces += x_edges(inside) + y_edges(inside)  # x- and y-normal faces
            cubes += int(np.count_nonzero(current))
        previous = current
    return vertices - edges + faces - cubes


def betti_numbers(mask: np.ndarray) -> dict[str, int]:
    """Betti numbers and Euler characteristic of a 3-D binary mask.

    * ``betti0``: 26-connected foreground components (vessel pieces);
    * ``betti2``: cavities — 6-connected background components that touch no face
      of the volume (the volume counts as surrounded by background, so every
      background region that reaches the border belongs to the one outside);
    * ``euler``: :func:`euler_characteristic` (= :func:`skimage.measure.euler_number`
      with ``connectivity=3``: 26-connected foreground, 6-connected background,
      zero padding);
    * ``betti1``: independent loops (tunnels), ``betti0 + betti2 - euler``.

    About 2.5 s for a 512 x 512 x 106 MiniVess mask on one core.
    """
    import numpy as np
    from scipy import ndimage

    binary = _binary(mask)
    if binary.ndim != 3:
        raise ValueError(f"betti_numbers needs a 3-D mask, got {binary.ndim} dimensions")
    labels, betti0 = ndimage.label(binary, structure=np.ones((3, 3, 3), dtype=bool))
    del labels
    background, count = ndimage.label(~binary)  # default structure: 6-connected
    touching = np.zeros(count + 1, dtype=bool)
    for axis in range(3):
        for end in (0, -1):
            touching[np.take(background, end, axis=axis).reshape(-1)] = True
    touching[0] = True  # label 0 is foreground
    betti2 = int(count - (touching.sum() - 1))
    del background
    euler = euler_characteristic(binary)
    return {
        "betti0": int(betti0),
        "betti1": int(betti0 + betti2 - euler),
        "betti2": betti2,
        "euler": euler,
    }


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Boolean centreline of a mask (:func:`skimage.morphology.skeletonize`, Lee's method in 3-D).

    skimage >= 0.25 has no ``skeletonize_3d``; ``skeletonize`` handles 3-D input.
    A non-empty mask whose skeleton comes out empty stands for its own skeleton,
    so a non-empty mask never has an empty centreline.
    """
    from skimage.morphology import skeletonize

    binary = _binary(mask)
    if not binary.any():
        return binary.copy()
    centre = skeletonize(binary).astype(bool, copy=False)
    return centre if centre.any() else binary.copy()


def cldice(
    mask_a: np.ndarray,
    mask_b: np.ndarray,
    skeleton_a: np.ndarray | None = None,
    skeleton_b: np.ndarray | None = None,
) -> float:
    """Centreline Dice between two binary masks (symmetric), in [0, 1].

    ``Tprec = |S(a) & b| / |S(a)|`` and ``Tsens = |S(b) & a| / |S(b)|``, with ``S``
    the :func:`skeleton`; clDice is their harmonic mean. Pass precomputed
    skeletons to save the (seconds-long) skeletonisation of a full volume; a mask
    inside the other (a cut or eroded copy) needs none, its term is exactly 1.

    Guards: two empty masks agree perfectly (1.0); an empty mask against a
    non-empty one scores 0.0; when neither centreline touches the other mask
    (``Tprec + Tsens = 0``, e.g. disjoint masks) the score is 0.0.
    """
    import numpy as np

    a, b = _binary(mask_a), _binary(mask_b)
    if a.shape != b.shape:
        raise ValueError(f"clDice needs masks of one shape, got {a.shape} and {b.shape}")
    a_empty, b_empty = not a.any(), not b.any()
    if a_empty and b_empty:
        return 1.0
    if a_empty or b_empty:
        return 0.0

    def covered(skel: np.ndarray | None, inner: np.ndarray, outer: np.ndarray) -> float:
        """Share of ``inner``'s centreline inside ``outer``."""
        if skel is None and not np.logical_and(inner, ~outer).any():
            return 1.0  # a centreline lies inside its mask: no need to compute it
        skel = skeleton(inner) if skel is None else np.asarray(skel, dtype=bool)
        return np.count_nonzero(skel & outer) / max(np.count_nonzero(skel), 1)

    t_prec = covered(skeleton_a, a, b)
    t_sens = covered(skeleton_b, b, a)
    if t_prec + t_sens == 0:
        return 0.0
    return float(2.0 * t_prec * t_sens / (t_prec + t_sens))


def topology_summary(mask: np.ndarray) -> dict[str, Any]:
    """Betti numbers plus the foreground fraction of a mask (one call, for manifests)."""
    import numpy as np

    summary: dict[str, Any] = dict(betti_numbers(mask))
    summary["foreground_fraction"] = float(np.count_nonzero(mask) / mask.size)
    return summary
