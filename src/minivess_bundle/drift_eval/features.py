"""Fixed representations of a patch: nothing here is fitted to the data being tested.

- :func:`intensity_features`: 13 per-patch figures on the raw intensities: quantiles
  (1, 10, 25, 50, 75, 90, 99 %), mean, standard deviation and four texture figures
  (in-plane gradient energy relative to the spread, a noise sigma from second differences,
  the in-plane high-frequency energy fraction, the relative slope of slice means along z);
- :func:`embedding`: ``log1p`` intensities, block-averaged to an 8 x 8 x 4 grid, through a
  fixed Gaussian random projection (seeded by (global seed, ``"drift_eval/projection"``))
  to ``EMBED_DIM`` dimensions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

QUANTILES = (0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99)
FEATURE_NAMES = (
    *(f"q{int(round(q * 100)):02d}" for q in QUANTILES),
    "mean",
    "std",
    "gradient_energy",
    "noise_sigma",
    "high_frequency_fraction",
    "z_slope",
)
EMBED_GRID = (8, 8, 4)
EMBED_DIM = 16
_MAD_TO_SIGMA = 1.482602218505602
_EPS = 1e-6


def intensity_features(patch: np.ndarray) -> np.ndarray:
    """The 13 :data:`FEATURE_NAMES` of one patch (x, y, z), float64."""
    import numpy as np

    x = np.asarray(patch, dtype=np.float64)
    quantiles = np.quantile(x, QUANTILES)
    mean, std = float(x.mean()), float(x.std())
    spread = std + _EPS
    gx = np.abs(np.diff(x, axis=0)).mean() if x.shape[0] > 1 else 0.0
    gy = np.abs(np.diff(x, axis=1)).mean() if x.shape[1] > 1 else 0.0
    gradient = (gx + gy) / (2 * spread)
    if x.shape[0] > 2:
        second = x[2:] - 2 * x[1:-1] + x[:-2]
        mad = np.median(np.abs(second - np.median(second)))
        noise = _MAD_TO_SIGMA * mad / np.sqrt(6.0)
    else:
        noise = 0.0
    spectrum = np.abs(np.fft.rfft2(x - x.mean(), axes=(0, 1))) ** 2
    fx = np.abs(np.fft.fftfreq(x.shape[0]))[:, None]
    fy = np.fft.rfftfreq(x.shape[1])[None, :]
    high = (np.maximum(fx, fy) > 0.25)[..., None]
    total = spectrum.sum()
    hf = float((spectrum * high).sum() / total) if total > 0 else 0.0
    slice_means = x.mean(axis=(0, 1))
    if x.shape[2] > 1:
        z = np.arange(x.shape[2], dtype=np.float64)
        slope = np.polyfit(z - z.mean(), slice_means, 1)[0] * x.shape[2] / (abs(mean) + _EPS)
    else:
        slope = 0.0
    return np.array(
        [*quantiles, mean, std, gradient, noise, hf, slope],
        dtype=np.float64,
    )


def projection_matrix(seed: int, grid: tuple[int, int, int] = EMBED_GRID) -> np.ndarray:
    """The fixed Gaussian random projection (entries N(0, 1/EMBED_DIM))."""
    import numpy as np

    rng = np.random.default_rng(seed)
    size = int(np.prod(grid))
    return rng.normal(0.0, 1.0 / np.sqrt(EMBED_DIM), size=(size, EMBED_DIM))


def block_mean(x: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """``x`` averaged over ``grid`` blocks (edges: each block covers its share of voxels)."""
    import numpy as np

    out = x
    for axis, cells in enumerate(grid):
        edges = np.linspace(0, out.shape[axis], cells + 1).round().astype(int)
        edges = np.clip(edges, 0, out.shape[axis])
        parts = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            hi = max(hi, lo + 1)
            parts.append(np.take(out, range(lo, min(hi, out.shape[axis])), axis=axis).mean(axis))
        out = np.stack(parts, axis=axis)
    return out


def embedding(patch: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """The :data:`EMBED_DIM`-dimensional embedding of one patch."""
    import numpy as np

    small = block_mean(np.log1p(np.maximum(np.asarray(patch, dtype=np.float64), 0.0)), EMBED_GRID)
    return small.reshape(-1) @ projection
