"""Synthetic MiniVess-shaped NIfTI datasets for downstream test suites.

:func:`create_synthetic_nifti_dataset` writes a small dataset with the release's file
layout and header conventions, so a loader, a transform pipeline or a training script can
be tested without the 939 MB download::

    from minivess_bundle.testing import create_synthetic_nifti_dataset

    ds = create_synthetic_nifti_dataset(tmp_path, n_volumes=3, spatial_size=(32, 32, 8))
    ds.pairs[0]  # {"volume": "mv01", "image": Path(".../imagesTr/mv01.nii.gz"), ...}

The same function is a pytest fixture once the package is installed (``pytest11`` entry
point ``minivess``, :mod:`minivess_bundle.consumers.pytest_plugin`), with ready-made
``synthetic_nifti_dataset`` (imagesTr/labelsTr/metadata) and ``synthetic_nifti_release``
(raw/seg/json, the EBRAINS ZIP's layout) fixtures.

What each volume is, and how it matches the release:

- image ``uint16``, ``cal_max`` 1000; mask ``uint8`` with values {0, 1}, ``cal_max`` 1,
  the same shape; ~``foreground`` (default 10 %) of the voxels are vessel (smoothed noise
  thresholded at its quantile: blob-like structures, not anatomy);
- spacing ``spacing_um`` as *micrometre numbers* in pixdim with ``xyzt_units`` 0 (unset),
  ``sform_code`` 2, ``qform_code`` 0, ``scl_slope`` 1, ``scl_inter`` 0, like every
  release file (nibabel, ITK and MONAI read 0.994 "mm": convert);
- **labelled synthetic** in the header's ``descrip`` and in each ``metadata`` JSON
  (``"synthetic": true``), so it can never pass for the real data;
- deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What every synthetic file says it is (the header's ``descrip``: 80 bytes at most).
DESCRIP = b"minivess-bundle synthetic test data (not MiniVess)"
#: The two layouts: the bundle's / nnU-Net's / MONAI's, and the EBRAINS release's.
LAYOUTS = ("imagesTr", "raw")
#: The release's mv68 grid (um): in-plane 0.994, z step 2.0.
DEFAULT_SPACING_UM = (0.994, 0.994, 2.0)


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`create_synthetic_nifti_dataset` wrote: root, layout, volumes, files."""

    root: Path
    layout: str
    volumes: tuple[str, ...]
    pairs: tuple[dict[str, Any], ...]
    spacing_um: tuple[float, float, float]
    spatial_size: tuple[int, int, int]

    def images(self) -> list[Path]:
        return [pair["image"] for pair in self.pairs]

    def labels(self) -> list[Path]:
        return [pair["label"] for pair in self.pairs]


def _volume_arrays(shape, foreground, seed, index):
    """(image uint16, mask uint8) of one volume: smoothed noise thresholded at the
    ``1 - foreground`` quantile is the mask; the image is bright on it, dim elsewhere."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, index])
    field = gaussian_filter(rng.standard_normal(shape), sigma=(2.0, 2.0, 1.0), mode="wrap")
    mask = (field > np.quantile(field, 1.0 - foreground)).astype(np.uint8)
    image = 150.0 + 700.0 * mask + rng.normal(0.0, 40.0, shape)
    return np.clip(np.rint(image), 0, 4095).astype(np.uint16), mask


def create_synthetic_nifti_dataset(
    root: str | Path,
    n_volumes: int = 3,
    spatial_size: tuple[int, int, int] = (32, 32, 8),
    *,
    layout: str = "imagesTr",
    foreground: float = 0.1,
    spacing_um: tuple[float, float, float] = DEFAULT_SPACING_UM,
    seed: int = 0,
) -> SyntheticDataset:
    """Write ``n_volumes`` synthetic image/mask pairs (mv01, mv02, ...) under ``root``.

    ``layout="imagesTr"``: ``imagesTr/mvNN.nii.gz``, ``labelsTr/mvNN.nii.gz``,
    ``metadata/mvNN.json`` (the bundle's, nnU-Net's and MONAI's). ``layout="raw"``:
    ``raw/mvNN.nii.gz``, ``seg/mvNN_y.nii.gz``, ``json/mvNN.json`` (the EBRAINS release's).
    ``foreground`` is the vessel fraction of each mask (0 < f < 1), ``spacing_um`` the
    voxel size written as the release writes it (micrometre numbers, unit unset).
    """
    from .core.fsio import write_json_atomic
    from .core.nifti import make_image, minivess_header, write_nifti
    from .core.volumes import renamed_names, staging_names

    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    if isinstance(n_volumes, bool) or not isinstance(n_volumes, int) or not 1 <= n_volumes <= 70:
        raise ValueError(f"n_volumes {n_volumes!r}: expected an integer 1..70")
    size = tuple(int(n) for n in spatial_size)
    if len(size) != 3 or min(size) < 2:
        raise ValueError(f"spatial_size {spatial_size!r}: expected 3 sizes of at least 2")
    if not 0.0 < foreground < 1.0:
        raise ValueError(f"foreground {foreground!r}: expected a fraction between 0 and 1")
    spacing = tuple(float(s) for s in spacing_um)
    names = renamed_names if layout == "imagesTr" else staging_names
    root = Path(root)
    volumes = tuple(f"mv{i:02d}" for i in range(1, n_volumes + 1))
    pairs = []
    for index, volume in enumerate(volumes):
        image, mask = _volume_arrays(size, foreground, seed, index)
        files = {role: root / rel for role, rel in names(volume).items()}
        for role, array in (("image", image), ("label", mask)):
            nifti = make_image(array, spacing, minivess_header(role))
            nifti.header["descrip"] = DESCRIP
            write_nifti(files[role], nifti)
        metadata = {
            "volume": volume,
            "synthetic": True,
            "generator": "minivess_bundle.testing.create_synthetic_nifti_dataset",
            "note": "synthetic test data, not MiniVess; spacing in micrometres",
            "shape": list(size),
            "spacing_um": list(spacing),
            "foreground_fraction": round(float(mask.mean()), 6),
            "seed": seed,
        }
        write_json_atomic(files["metadata"], metadata)
        pairs.append({"volume": volume, **files, "foreground_fraction": float(mask.mean())})
    return SyntheticDataset(root, layout, volumes, tuple(pairs), spacing, size)
