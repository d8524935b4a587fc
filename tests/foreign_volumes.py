"""MiniVess-like volume pairs the project did not make, for property tests of the drift kinds.

Written independently of :mod:`minivess_bundle.fetch.synthetic` so the tests do not share the
source's assumptions. Another vessel model and another noise model:

- **Vessels**: persistent random walks in micrometres (steps of ~0.5 µm, direction drifting
  by a small random angle), each with its own smoothly varying radius (1–7 µm) and branches
  that leave from random points of their parent. The centrelines are rasterised; each voxel's
  *vesselness* is ``radius of the nearest centreline point − distance to it`` (anisotropic
  distance transform in µm). The mask is exactly the ``k`` voxels of highest vesselness, with
  ``k = max(1, round(foreground × n))``, so the requested foreground is met to one voxel
  whatever the walk drew (thinner or thicker tubes, not other shapes).
- **Image**: a background offset (100–300 counts, raised with the noise) times a slowly
  varying field (a random low-order polynomial, ±15 %), plus the vessel signal (the mask
  blurred by a small PSF, 6–20× the noise sd above the background, fading with depth); then
  **shot noise** (Poisson photon counts at a gain chosen so that shot noise carries 30–90 % of
  the background variance) and **Gaussian read noise** for the rest, so the background noise
  sd is the requested one; rounded and clipped to uint16.
- Vessels only in the *top* half (slices ``z < Z // 2``, the first acquired, nearest the
  surface), only in the *bottom* half, or anywhere (``"all"``).

:func:`write_foreign_folder` writes a ``dir``-source folder as the authors' conversion writes
one (see ``tests/data/README.md`` and the real release's header): ``raw/mvNN.nii.gz`` uint16,
``seg/mvNN_y.nii.gz`` uint8 {0, 1}, ``json/mvNN.json``; affine ``diag(X, Y, Z)`` in µm numbers,
``xyzt_units = 0``, ``sform_code = 2``, ``qform_code = 0``, ``cal_max`` 1000 (image) / 1 (mask).
Nothing here is real data: every file says so in its JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The issue's ranges for foreign volumes (the authors' ranges, widened at the edges).
XY_SPACING_UM = (0.31, 1.23)
Z_SPACING_UM = (0.5, 4.97)
SLICES = (5, 110)
FOREGROUND = (0.0005, 0.35)
NOISE_SD = (2.0, 60.0)
HALVES = ("top", "bottom", "all")
#: The smallest volume the suite draws (X, Y, Z).
MIN_SHAPE = (16, 16, 5)

UINT16_MAX = 65535


@dataclass(frozen=True)
class ForeignSpec:
    """Everything :func:`foreign_pair` needs; hypothesis draws these."""

    shape: tuple[int, int, int]
    spacing_um: tuple[float, float, float]
    foreground: float
    noise_sd: float
    half: str
    seed: int


def _walk(rng: np.random.Generator, start: np.ndarray, extent: np.ndarray, length_um: float):
    """A persistent random walk from ``start`` (µm), reflected at the box ``[0, extent]``."""
    step = 0.5
    n = max(2, int(length_um / step))
    direction = rng.normal(size=3)
    direction[2] *= 0.5  # vessels run more in-plane than across depth, as in cortex
    direction /= np.linalg.norm(direction)
    points = np.empty((n, 3))
    p = start.astype(float).copy()
    for i in range(n):
        direction = direction + rng.normal(scale=0.12, size=3)
        direction /= np.linalg.norm(direction)
        p = p + step * direction
        for axis in range(3):  # reflect at the walls instead of leaving the box
            if p[axis] < 0 or p[axis] > extent[axis]:
                direction[axis] = -direction[axis]
                p[axis] = min(max(p[axis], 0.0), extent[axis])
        points[i] = p
    # a smooth radius profile: a random base radius modulated along the walk
    base = rng.uniform(1.0, 5.0)
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(20.0, 80.0)
    s = np.arange(n) * step
    radius = np.clip(base * (1 + 0.35 * np.sin(2 * np.pi * s / period + phase)), 1.0, 7.0)
    return points, radius


def _vesselness(spec: ForeignSpec, rng: np.random.Generator) -> np.ndarray:
    """Radius of the nearest centreline point minus the distance to it (µm); -inf off-half."""
    from scipy import ndimage

    shape = np.array(spec.shape)
    spacing = np.array(spec.spacing_um)
    extent = (shape - 1) * spacing
    z_lo, z_hi = 0, spec.shape[2]
    if spec.half == "top":
        z_hi = max(1, spec.shape[2] // 2)
    elif spec.half == "bottom":
        z_lo = spec.shape[2] // 2
    box_lo = np.array([0.0, 0.0, z_lo * spacing[2]])
    box_hi = np.array([extent[0], extent[1], (z_hi - 1) * spacing[2]])
    # enough centreline for the requested volume at a ~2.5 µm radius, at least a few walks
    target_um3 = spec.foreground * np.prod(shape) * np.prod(spacing)
    wanted_length = max(3 * extent[:2].max(), target_um3 / (np.pi * 2.5**2))
    centre_r = np.zeros(spec.shape, dtype=np.float32)
    has_centre = np.zeros(spec.shape, dtype=bool)
    drawn = 0.0
    walks = 0
    while drawn < wanted_length and walks < 60:
        start = box_lo + rng.uniform(size=3) * (box_hi - box_lo)
        length = rng.uniform(0.5, 1.5) * max(extent[:2].max(), 10.0)
        points, radius = _walk(rng, start - box_lo, box_hi - box_lo, length)
        points = points + box_lo
        pieces = [(points, radius)]
        for _ in range(rng.integers(0, 3)):  # branches leave from random points, thinner
            at = rng.integers(0, len(points))
            b_points, b_radius = _walk(rng, points[at] - box_lo, box_hi - box_lo, length / 2)
            pieces.append((b_points + box_lo, np.minimum(b_radius, radius[at] * 0.8)))
        for pts, rad in pieces:
            idx = np.rint(pts / spacing).astype(int)
            idx = np.clip(idx, 0, shape - 1)
            centre_r[idx[:, 0], idx[:, 1], idx[:, 2]] = np.maximum(
                centre_r[idx[:, 0], idx[:, 1], idx[:, 2]], rad
            )
            has_centre[idx[:, 0], idx[:, 1], idx[:, 2]] = True
            drawn += len(pts) * 0.5
        walks += 1
    dist, nearest = ndimage.distance_transform_edt(
        ~has_centre, sampling=tuple(spacing), return_indices=True
    )
    field = centre_r[nearest[0], nearest[1], nearest[2]] - dist
    field[:, :, :z_lo] = -np.inf
    field[:, :, z_hi:] = -np.inf
    return field


def foreign_label(spec: ForeignSpec, rng: np.random.Generator) -> np.ndarray:
    """The uint8 {0, 1} mask: exactly ``max(1, round(foreground × n))`` voxels of the tubes."""
    field = _vesselness(spec, rng)
    n = field.size
    allowed = int(np.isfinite(field).sum())
    k = min(allowed, max(1, int(round(spec.foreground * n))))
    flat = field.ravel()
    # ties broken by voxel order (stable), so the count is exact and deterministic
    order = np.lexsort((np.arange(n), -flat))[:k]
    label = np.zeros(n, dtype=np.uint8)
    label[order] = 1
    return label.reshape(spec.shape)


def foreign_image(spec: ForeignSpec, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint16 counts: offset × slow field + vessel signal, shot noise, then read noise."""
    from scipy import ndimage

    sd = float(spec.noise_sd)
    offset = max(rng.uniform(100.0, 300.0), 5.0 * sd)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in spec.shape], indexing="ij")
    slow = np.ones(spec.shape)
    for g in grids:
        slow += rng.uniform(-0.08, 0.08) * g + rng.uniform(-0.04, 0.04) * (g**2 - 1 / 3)
    background = offset * slow
    psf_um = rng.uniform(0.4, 1.2)
    sigma = [psf_um / s for s in spec.spacing_um]
    vessel = ndimage.gaussian_filter(label.astype(np.float64), sigma=sigma)
    vessel /= max(vessel.max(), 1e-9)
    contrast = rng.uniform(6.0, 20.0) * sd
    depth = np.exp(-np.arange(spec.shape[2]) * spec.spacing_um[2] / rng.uniform(80.0, 300.0))
    signal = background + contrast * vessel * depth[None, None, :]
    shot_share = rng.uniform(0.3, 0.9)
    gain = shot_share * sd**2 / offset  # Var(gain × Poisson(s / gain)) = gain × s
    photons = rng.poisson(signal / gain)
    read = rng.normal(0.0, np.sqrt((1.0 - shot_share) * sd**2), size=spec.shape)
    counts = np.rint(gain * photons + read)
    return np.clip(counts, 0, UINT16_MAX).astype(np.uint16)


def foreign_pair(
    shape: tuple[int, int, int],
    spacing_um: tuple[float, float, float],
    foreground: float,
    noise_sd: float,
    half: str,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(image uint16, label uint8 {0, 1}, spacing_um) for one foreign volume.

    ``half`` is ``"top"`` (vessels only in slices ``z < Z // 2``), ``"bottom"`` (only in
    ``z >= Z // 2``) or ``"all"``. Same arguments ⇒ identical arrays.
    """
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    spec = ForeignSpec(tuple(shape), tuple(spacing_um), foreground, noise_sd, half, seed)
    rng = np.random.default_rng([seed, 0x6F7265])
    label = foreign_label(spec, rng)
    image = foreign_image(spec, label, rng)
    return image, label, spec.spacing_um


def pair_from_spec(spec: ForeignSpec):
    """:func:`foreign_pair` on a :class:`ForeignSpec`."""
    return foreign_pair(
        spec.shape, spec.spacing_um, spec.foreground, spec.noise_sd, spec.half, spec.seed
    )


# --- hypothesis strategies ------------------------------------------------------------------


def specs(max_xy: int = 48, max_z: int = 110, min_foreground: float = FOREGROUND[0]):
    """A hypothesis strategy of :class:`ForeignSpec` over the issue's ranges.

    Sizes from 16×16×5 up to ``max_xy``×``max_xy``×``max_z`` (keep them small in tests);
    XY spacing 0.31–1.23 µm (3 decimals, as the authors parse it), Z 0.5–4.97 µm (2 decimals),
    foreground 0.05–35 % (log-uniform-ish), noise sd 2–60 counts, vessels top/bottom/all.
    """
    from hypothesis import strategies as st

    xy_spacing = st.floats(*XY_SPACING_UM).map(lambda v: round(v, 3))
    z_spacing = st.floats(*Z_SPACING_UM).map(lambda v: round(v, 2))
    log_fg = st.floats(np.log10(max(min_foreground, FOREGROUND[0])), np.log10(FOREGROUND[1]))

    @st.composite
    def _spec(draw):
        sx = draw(st.integers(MIN_SHAPE[0], max_xy))
        sy = draw(st.integers(MIN_SHAPE[1], max_xy))
        sz = draw(st.integers(SLICES[0], max(SLICES[0], min(SLICES[1], max_z))))
        xy = draw(xy_spacing)
        return ForeignSpec(
            shape=(sx, sy, sz),
            spacing_um=(xy, xy, draw(z_spacing)),
            foreground=float(np.clip(10 ** draw(log_fg), *FOREGROUND)),
            noise_sd=draw(st.floats(*NOISE_SD)),
            half=draw(st.sampled_from(HALVES)),
            seed=draw(st.integers(0, 2**31 - 1)),
        )

    return _spec()


# --- a dir-source folder, written as the authors' conversion writes it ----------------------


def save_authors_nifti(array: np.ndarray, spacing_um, cal_max: float, path: Path) -> None:
    """Write ``array`` as the authors' conversion does: diag(µm numbers), units unset."""
    import nibabel as nib

    affine = np.diag([*map(float, spacing_um), 1.0])
    image = nib.Nifti1Image(array, affine)  # sform_code 2 (aligned), qform_code 0
    header = image.header
    header.set_xyzt_units(0, 0)  # the authors leave units unset: the numbers are µm
    header["cal_max"] = cal_max
    header["cal_min"] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def write_foreign_folder(path: str | Path, n: int, seed: int, **overrides) -> list[ForeignSpec]:
    """Write ``n`` foreign volumes mv01..mvNN under ``path`` in the EBRAINS folder layout.

    Each volume draws its own shape (32–64 px in-plane, 8–40 slices), spacing, foreground
    (0.1–30 %), noise sd (2–40) and half from ``seed``; ``overrides`` fixes any
    :class:`ForeignSpec` field for all of them (e.g. ``shape=(24, 24, 8)`` for speed).
    Returns the specs written, in volume order.
    """
    path = Path(path)
    rng = np.random.default_rng([seed, 0x666F6C])
    written = []
    for i in range(1, n + 1):
        vol = f"mv{i:02d}"
        xy = round(float(rng.uniform(*XY_SPACING_UM)), 3)
        fields = {
            "shape": (int(rng.integers(32, 65)),) * 2 + (int(rng.integers(8, 41)),),
            "spacing_um": (xy, xy, round(float(rng.uniform(*Z_SPACING_UM)), 2)),
            "foreground": float(10 ** rng.uniform(-3, np.log10(0.3))),
            "noise_sd": float(rng.uniform(2.0, 40.0)),
            "half": str(rng.choice(HALVES)),
            "seed": int(rng.integers(0, 2**31 - 1)),
        }
        fields.update(overrides)
        spec = ForeignSpec(**fields)
        image, label, spacing = pair_from_spec(spec)
        save_authors_nifti(image, spacing, 1000.0, path / "raw" / f"{vol}.nii.gz")
        save_authors_nifti(label, spacing, 1.0, path / "seg" / f"{vol}_y.nii.gz")
        meta = {
            "Note": "foreign test volume generated by tests/foreign_volumes.py, not MiniVess data",
            "SizeX": spec.shape[0],
            "SizeY": spec.shape[1],
            "SizeZ": spec.shape[2],
            "PhysicalSizeX": spacing[0],
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": spacing[1],
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZ": spacing[2],
            "PhysicalSizeZUnit": "µm",
        }
        (path / "json").mkdir(parents=True, exist_ok=True)
        (path / "json" / f"{vol}.json").write_text(json.dumps(meta, indent=2) + "\n")
        written.append(spec)
    return written
