"""A synthetic stand-in for MiniVess: two-photon-like vessel volumes with masks.

Why: tests, benchmarks and offline users need data with the real dataset's shape,
header conventions and vessel statistics, without the 939 MB download. Every
volume is deterministic per (seed, volume id) and is labelled synthetic in its
NIfTI ``descrip`` field and its JSON, so it cannot be mistaken for real data.

The model, in physical units (micrometres):

* acquisition: X = Y = ``size_xy`` (512 like the release), Z and voxel size drawn
  from the ranges the dataset authors document (Z 5..110 slices with a median near
  22, in-plane 0.31..1.23 um, z step 0.5..4 um in the microscope's 0.5 um steps);
  three volumes are pinned to published facts (mv02 the outlier with a 4.97 um z
  step, mv39 Z = 5, mv68 0.994 x 0.994 x 2.0 um with Z = 106);
* vessels: a few penetrating vessels (radius 4..9 um) along z, and a capillary
  network of persistent random walks (median radius ~1.6 um) that branch and
  start from existing vessels, grown until a drawn foreground fraction (2..9 %)
  is reached; plus short fragments where walks leave and re-enter the field of
  view, as in real segmentations;
* image: the mask blurred by a two-photon point-spread function, uneven dye
  loading, autofluorescent background, exponential depth attenuation, then
  Poisson-Gaussian detector noise, 12-bit uint16.

Calibrated against the real mask of mv68 (see ``tests/test_synthetic.py`` and
the README's table): foreground fraction, 26-connected component count and the
skeleton radius distribution fall in a band around the real figures.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core.dataset import CITATION, EBRAINS_ID, LICENCE
from ..core.volumes import SYNTHETIC_LICENCE, check_volume_id, staging_names

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)

#: Bumped whenever the same (seed, volume) would give different bytes.
#: 2: the acquisition grid follows the authors' ranges (in-plane <= 1.23 um, z step <= 4.97 um).
GENERATOR_VERSION = 2
DESCRIP = b"SYNTHETIC minivess-bundle stand-in"

# Published facts the acquisition draw keeps (see shared realdata README): mv68 exact,
# mv02 the outlier with a 4.97 um z step, mv39 the shallowest stack.
_PINNED_SPACING = {"mv68": (0.994, 0.994, 2.0), "mv02": (None, None, 4.97)}
_PINNED_Z = {"mv68": 106, "mv39": 5}
# The authors' ranges: in-plane 0.31..1.23 um, z step 0.5..4.97 um (mv02 alone at 4.97),
# Z 5..110 slices with a median near 22.
_INPLANE_UM = (0.31, 1.23)
_Z_STEPS_UM = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
_Z_STEP_P = (0.1, 0.2, 0.15, 0.35, 0.12, 0.08)
_Z_SLICES = (5, 110)
_Z_MEDIAN, _Z_SIGMA = 22.0, 0.6  # lognormal number of slices
_MAX_DEPTH_UM = 700.0  # two-photon imaging depth in cortex
_STREAMS = {"acquisition": 1, "network": 2, "image": 3}


@dataclass(frozen=True)
class Acquisition:
    """Grid of one synthetic volume: shape (x, y, z) and voxel size in micrometres."""

    shape: tuple[int, int, int]
    spacing_um: tuple[float, float, float]


@dataclass
class SyntheticVolume:
    """One generated volume with the parameters that produced it."""

    volume: str
    image: np.ndarray
    mask: np.ndarray
    acquisition: Acquisition
    parameters: dict[str, Any] = field(default_factory=dict)


def volume_rng(seed: int, volume: str, stream: str) -> np.random.Generator:
    """Independent generator per (seed, volume, stream): order and core count never matter."""
    import numpy as np

    check_volume_id(volume)
    return np.random.default_rng(np.random.SeedSequence([seed, int(volume[2:]), _STREAMS[stream]]))


def draw_acquisition(seed: int, volume: str, size_xy: int = 512, max_z: int = 110) -> Acquisition:
    """Draw Z and voxel size for ``volume`` from the authors' documented ranges."""
    import numpy as np

    rng = volume_rng(seed, volume, "acquisition")
    # Most stacks near 1 um in-plane (mv68: 0.994), a quarter finer (zoomed in).
    if rng.random() < 0.75:
        inplane = rng.uniform(0.6, _INPLANE_UM[1])
    else:
        inplane = rng.uniform(_INPLANE_UM[0], 0.6)
    z_step = float(rng.choice(_Z_STEPS_UM, p=_Z_STEP_P))
    n_z = float(np.clip(rng.lognormal(np.log(_Z_MEDIAN), _Z_SIGMA), *_Z_SLICES))
    n_z = min(int(round(n_z)), int(_MAX_DEPTH_UM // z_step))
    pinned = _PINNED_SPACING.get(volume, (None, None, None))
    inplane = pinned[0] or inplane
    z_step = pinned[2] or z_step
    n_z = _PINNED_Z.get(volume, n_z)
    inplane = round(float(inplane), 3)
    return Acquisition((size_xy, size_xy, min(n_z, max_z)), (inplane, inplane, z_step))


# --- vessel network --------------------------------------------------------------------------


def _persistent_walk(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    length: float,
    step: float,
    stiffness: float,
) -> np.ndarray:
    """Points of a persistent random walk: direction noise accumulates, so paths curve smoothly."""
    import numpy as np

    n = max(2, int(length / step))
    turn = rng.normal(0.0, stiffness, size=(n, 3)).cumsum(axis=0)
    heading = direction[None, :] + turn
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    return start[None, :] + np.cumsum(heading * step, axis=0)


def _bridge(
    rng: np.random.Generator, a: np.ndarray, b: np.ndarray, step: float, wiggle: float
) -> np.ndarray:
    """A smooth tortuous path from ``a`` to ``b``: the chord plus low sine modes (zero at ends)."""
    import numpy as np

    chord = float(np.linalg.norm(b - a))
    n = max(2, int(chord * 1.3 / step))
    t = np.linspace(0.0, 1.0, n)[:, None]
    path = a + t * (b - a)
    for k in (1, 2, 3):
        path = path + np.sin(np.pi * k * t) * rng.normal(0.0, wiggle * chord / k, 3)
    return path


def _crossing_ends(rng: np.random.Generator, extent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two points on opposite x or y faces at one depth: a vessel across the field of view."""
    import numpy as np

    axis = int(rng.integers(2))
    z = rng.uniform(0, extent[2])
    a, b = np.zeros(3), np.zeros(3)
    a[axis], b[axis] = -10.0, extent[axis] + 10.0
    a[1 - axis], b[1 - axis] = rng.uniform(0, extent[1 - axis], 2)
    a[2], b[2] = z, np.clip(z + rng.normal(0, 20), 0, extent[2])
    return a, b


def _nearest(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    import numpy as np

    return points[int(np.argmin(((points - target) ** 2).sum(axis=1)))]


def _random_unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    import numpy as np

    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def grow_network(
    rng: np.random.Generator,
    acquisition: Acquisition,
    target_fraction: float,
    axial_elongation: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Centre-line points (um) and radii (um) of a vessel network filling ``target_fraction``.

    The returned dict counts what was grown (penetrating vessels, capillaries,
    fragments) for the volume's JSON.
    """
    import numpy as np

    spacing = np.asarray(acquisition.spacing_um, float)
    extent = np.asarray(acquisition.shape, float) * spacing
    volume_um3 = float(np.prod(extent))
    step = 0.5 * float(spacing.min())
    step = min(step, 0.5)
    points: list[np.ndarray] = []
    radii: list[np.ndarray] = []
    grown_um3 = 0.0
    counts = {"penetrating": 0, "crossing": 0, "capillaries": 0, "fragments": 0}

    # A small field of view (a test's 16 px at 0.5 um: 8 um) would be filled by one
    # penetrating vessel: no vessel is thicker than a tenth of the field's side. At the
    # release's 512 px (>= 159 um) this never binds.
    max_radius = 0.1 * float(min(extent[0], extent[1]))

    def add(path: np.ndarray, radius: float) -> None:
        nonlocal grown_um3
        radius = min(radius, max_radius)
        inside = np.all((path >= -radius) & (path <= extent + radius), axis=1)
        if inside.any():
            points.append(path[inside])
            radii.append(np.full(int(inside.sum()), radius))
            grown_um3 += np.pi * radius**2 * axial_elongation * step * int(inside.sum())

    # Penetrating arterioles/venules run roughly along z through the whole stack.
    area_mm2 = extent[0] * extent[1] / 1e6
    for _ in range(int(rng.poisson(8.0 * area_mm2)) + 1):
        start = np.array([rng.uniform(0, extent[0]), rng.uniform(0, extent[1]), -5.0])
        direction = np.array([0.0, 0.0, 1.0]) + 0.3 * _random_unit(rng)[0]
        path = _persistent_walk(rng, start, direction, extent[2] * 1.6 + 20, step, 0.01)
        add(path, float(rng.uniform(4.0, 9.0)))
        counts["penetrating"] += 1

    # Surface and feeding vessels: a few thick vessels crossing the field of view.
    for _ in range(int(rng.poisson(6.0 * area_mm2)) + 1):
        a, b = _crossing_ends(rng, extent)
        add(_bridge(rng, a, b, step, 0.12), float(rng.uniform(3.5, 7.5)))
        counts["crossing"] += 1

    # Capillary bed: segments joining a point on an existing vessel near a random
    # place to another vessel point a capillary length away. Spreads the network
    # evenly through the volume, closes loops, and keeps it one connected mesh.
    target_um3 = target_fraction * volume_um3
    anchors = np.concatenate(points)
    budget = 0
    while grown_um3 < target_um3 and budget < 50_000:
        budget += 1
        if budget % 64 == 0:
            anchors = np.concatenate(points)
        sample = anchors[rng.integers(len(anchors), size=min(len(anchors), 512))]
        start = _nearest(sample, rng.uniform(0, 1, 3) * extent)
        length = float(rng.uniform(20.0, 110.0))
        goal = start + length * _random_unit(rng)[0]
        end = _nearest(sample, goal)
        if np.linalg.norm(end - goal) > 0.5 * length:
            end = goal  # a free end: the capillary leaves the field of view or stops
        if rng.random() < 0.08:  # arterioles and venules feeding the capillary bed
            radius = float(rng.uniform(3.0, 6.0))
        else:
            radius = float(np.clip(rng.lognormal(np.log(2.0), 0.25), 1.1, 4.5))
        add(_bridge(rng, start, end, step, 0.08), radius)
        counts["capillaries"] += 1

    # Fragments: short isolated pieces where capillaries dip through the field of
    # view, as real segmentations show (mv68: ~230 components, most of them small).
    megavoxels = float(np.prod(acquisition.shape)) / 1e6
    for _ in range(int(rng.poisson(12.0 * megavoxels))):
        start = rng.uniform(0, 1, 3) * extent
        path = _persistent_walk(rng, start, _random_unit(rng)[0], rng.uniform(2, 12), step, 0.05)
        add(path, float(rng.uniform(0.9, 1.8)))
        counts["fragments"] += 1
    if not points:
        return np.zeros((0, 3)), np.zeros(0), counts
    return np.concatenate(points), np.concatenate(radii), counts


def paint_tubes(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    points: np.ndarray,
    radii: np.ndarray,
    axial_elongation: float = 1.0,
) -> np.ndarray:
    """Rasterise balls of ``radii`` at ``points`` (um; voxel i is centred at i * spacing).

    ``axial_elongation`` stretches each ball along z, as the axial point-spread
    function of a two-photon microscope stretches vessels in segmentations.
    """
    import numpy as np

    mask = np.zeros(shape, dtype=bool)
    # Measure in a space where the ball is round: z distances shrink by the elongation.
    voxel = np.asarray(spacing, float)
    sp = voxel / np.array([1.0, 1.0, axial_elongation])
    dims = np.asarray(shape)
    # A tube thinner than half a voxel would break into dots: keep it one voxel wide.
    radii = np.maximum(radii, 0.55 * sp[:2].min())
    classes = np.round(radii * 4.0) / 4.0
    for radius in np.unique(classes):
        pts = points[classes == radius]
        half = np.ceil(radius / sp + 0.5).astype(int)
        grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
        offsets = np.stack(grids, axis=-1).reshape(-1, 3)
        reach = ((np.abs(offsets) - 0.5).clip(0) * sp) ** 2
        offsets = offsets[reach.sum(axis=1) <= radius**2]
        centre = np.rint(pts / voxel).astype(np.int64)
        frac = pts / voxel - centre
        chunk = max(1, 4_000_000 // len(offsets))
        for lo in range(0, len(pts), chunk):
            d = (offsets[None, :, :] - frac[lo : lo + chunk, None, :]) * sp
            inside = np.einsum("pkc,pkc->pk", d, d) <= radius**2
            idx = (centre[lo : lo + chunk, None, :] + offsets[None, :, :])[inside]
            idx = idx[np.all((idx >= 0) & (idx < dims), axis=1)]
            mask[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return mask


# --- image formation -------------------------------------------------------------------------


def _smooth_profile(rng: np.random.Generator, n: int, waves: int = 3) -> np.ndarray:
    """A smooth random 1-D profile in [-1, 1]: a few low-frequency sines."""
    import numpy as np

    t = np.linspace(0.0, 1.0, n)
    profile = np.zeros(n)
    for k in range(1, waves + 1):
        profile += rng.normal() / k * np.sin(np.pi * k * t + rng.uniform(0, 2 * np.pi))
    peak = np.abs(profile).max()
    return profile / peak if peak > 0 else profile


def render_image(
    rng: np.random.Generator, mask: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, dict[str, float]]:
    """Two-photon-like uint16 image of ``mask`` and the parameters used."""
    import numpy as np
    from scipy import ndimage

    nx, ny, nz = mask.shape
    params = {
        "psf_sigma_xy_um": 0.35,
        "psf_sigma_z_um": 1.2,
        "vessel_signal": float(rng.uniform(700.0, 1500.0)),
        "background": float(rng.uniform(40.0, 120.0)),
        "dye_unevenness": float(rng.uniform(0.15, 0.35)),
        "attenuation_length_um": float(rng.uniform(150.0, 400.0)),
        "gain_adu_per_photon": float(rng.uniform(2.0, 6.0)),
        "read_noise_adu": float(rng.uniform(3.0, 10.0)),
        "offset_adu": float(rng.uniform(0.0, 20.0)),
    }
    sigma = (
        params["psf_sigma_xy_um"] / spacing[0],
        params["psf_sigma_xy_um"] / spacing[1],
        params["psf_sigma_z_um"] / spacing[2],
    )
    signal = ndimage.gaussian_filter(mask.astype(np.float32), sigma=sigma, truncate=3.0)
    uneven = (
        _smooth_profile(rng, nx)[:, None, None]
        + _smooth_profile(rng, ny)[None, :, None]
        + _smooth_profile(rng, nz)[None, None, :]
    ).astype(np.float32) / 3.0
    depth_um = np.arange(nz, dtype=np.float32) * spacing[2]
    attenuation = np.exp(-depth_um / params["attenuation_length_um"]).astype(np.float32)
    expected = (
        params["background"] * (1.0 + 0.5 * params["dye_unevenness"] * uneven)
        + params["vessel_signal"] * signal * (1.0 + params["dye_unevenness"] * uneven)
    ) * attenuation[None, None, :]
    del signal, uneven
    gain = params["gain_adu_per_photon"]
    photons = rng.poisson(expected / gain).astype(np.float32)
    del expected
    adu = photons * gain
    adu += rng.standard_normal(photons.shape, dtype=np.float32) * params["read_noise_adu"]
    adu += params["offset_adu"]
    return np.clip(np.rint(adu), 0, 4095).astype(np.uint16), params


def generate_volume(
    seed: int, volume: str, size_xy: int = 512, max_z: int = 110
) -> SyntheticVolume:
    """Generate one synthetic volume (image, mask, acquisition, parameters)."""
    import numpy as np

    acquisition = draw_acquisition(seed, volume, size_xy, max_z)
    rng = volume_rng(seed, volume, "network")
    target = float(np.clip(rng.lognormal(np.log(0.06), 0.3), 0.025, 0.1))
    elongation = float(rng.uniform(1.5, 2.0))
    points, radii, counts = grow_network(rng, acquisition, target, elongation)
    mask = paint_tubes(acquisition.shape, acquisition.spacing_um, points, radii, elongation)
    image, image_params = render_image(
        volume_rng(seed, volume, "image"), mask, acquisition.spacing_um
    )
    parameters = {
        "target_foreground_fraction": round(target, 6),
        "axial_elongation": round(elongation, 6),
        "network": counts,
        "image": {k: round(v, 6) for k, v in image_params.items()},
    }
    return SyntheticVolume(volume, image, mask.astype(np.uint8), acquisition, parameters)


def volume_metadata(synthetic: SyntheticVolume, seed: int) -> dict[str, Any]:
    """The per-volume JSON: what it is (synthetic), how it was made, and its grid."""
    acquisition = asdict(synthetic.acquisition)
    return {
        "synthetic": True,
        "note": "SYNTHETIC stand-in generated by minivess-bundle; not MiniVess data.",
        "volume": synthetic.volume,
        "generator": "minivess_bundle.fetch.synthetic",
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "seed": seed,
        "shape": list(acquisition["shape"]),
        "voxel_size_um": list(acquisition["spacing_um"]),
        "foreground_fraction": round(float(synthetic.mask.mean()), 6),
        "parameters": synthetic.parameters,
    }


def write_synthetic_volume(
    staging_dir: str | Path,
    volume: str,
    seed: int,
    size_xy: int = 512,
    max_z: int = 110,
    codec: str = "isal",
    level: int = 2,
) -> dict[str, str]:
    """Generate ``volume`` and write it in the EBRAINS staging layout; returns the paths."""
    from ..core.fsio import write_json_atomic
    from ..core.nifti import make_image, minivess_header, write_nifti

    synthetic = generate_volume(seed, volume, size_xy, max_z)
    spacing = synthetic.acquisition.spacing_um
    names = staging_names(volume)
    paths = {key: str(Path(staging_dir) / rel) for key, rel in names.items()}
    for key, array in (("image", synthetic.image), ("label", synthetic.mask)):
        header = minivess_header(key)
        header["descrip"] = DESCRIP
        write_nifti(paths[key], make_image(array, spacing, header), codec, level)
    write_json_atomic(paths["metadata"], volume_metadata(synthetic, seed))
    log.info(
        "%s: synthetic %s at %s um, foreground %.2f %%",
        volume,
        synthetic.acquisition.shape,
        spacing,
        100 * synthetic.mask.mean(),
    )
    return paths


_CITED = textwrap.fill(CITATION, 78, initial_indent="  ", subsequent_indent="  ")
LICENCE_TEXT = f"""\
SYNTHETIC DATA — not the MiniVess dataset.

The volumes in this tree were generated by minivess-bundle's synthetic source
(minivess_bundle.fetch.synthetic) as a stand-in with MiniVess's layout, header
conventions and calibrated vessel statistics. They contain no measured data.

The real dataset, which this stand-in imitates:
{_CITED}
  EBRAINS dataset {EBRAINS_ID}, licence {LICENCE}.
"""


def write_synthetic_licence(staging_dir: str | Path) -> Path:
    """Write the synthetic source's licence/attribution note into staging."""
    from ..core.fsio import write_bytes_atomic

    return write_bytes_atomic(Path(staging_dir) / SYNTHETIC_LICENCE, LICENCE_TEXT.encode())
