"""Tiny bundles and layouts for the consumer tests (MONAI loaders, training smoke, nnU-Net)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from minivess_bundle.core.fsio import write_json_atomic
from minivess_bundle.core.nifti import make_image, minivess_header, write_nifti
from minivess_bundle.fetch.synthetic import generate_volume

NIFTI_MM = 2


def write_pair(
    root: Path,
    volume: str,
    image: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    units: int = 0,
) -> dict[str, Path]:
    """Write ``imagesTr/<volume>.nii.gz`` and ``labelsTr/<volume>.nii.gz`` under ``root``."""
    paths = {}
    for key, folder, array in (("image", "imagesTr", image), ("label", "labelsTr", mask)):
        header = minivess_header(key)
        header["xyzt_units"] = units
        path = root / folder / f"{volume}.nii.gz"
        write_nifti(path, make_image(array, spacing, header))
        paths[key] = path
    return paths


def write_synthetic_layout(
    root: Path, volumes: list[str], size_xy: int = 24, max_z: int = 8, mm: bool = False
) -> Path:
    """An imagesTr/labelsTr layout of synthetic volumes; ``mm`` stores spacing as resampled
    outputs do (millimetres, ``xyzt_units`` 2), else as the release does (um, units 0)."""
    for volume in volumes:
        synthetic = generate_volume(5, volume, size_xy, max_z)
        spacing = synthetic.acquisition.spacing_um
        if mm:
            spacing = tuple(s / 1000.0 for s in spacing)
        write_pair(
            root,
            volume,
            synthetic.image,
            synthetic.mask,
            spacing,
            NIFTI_MM if mm else 0,
        )
        write_json_atomic(root / "metadata" / f"{volume}.json", {"volume": volume})
    return root


def write_dataset_json(data: Path, section: str = "processed") -> Path:
    """``data/dataset.json`` as the bundle writes it: nnU-Net v2 keys, MSD ``training``
    list and the explicit ``dataset`` file map, paths relative to ``data/``."""
    images = sorted((data / section / "imagesTr").glob("*.nii.gz"))
    ids = [p.name[: -len(".nii.gz")] for p in images]
    description = {
        "name": "MiniVess",
        "description": "test bundle",
        "licence": "CC BY-NC-SA 4.0",
        "release": "0.1.0",
        "channel_names": {"0": "two-photon"},
        "labels": {"background": 0, "vessel": 1},
        "numTraining": len(ids),
        "file_ending": ".nii.gz",
        "training": [
            {
                "image": f"./{section}/imagesTr/{v}.nii.gz",
                "label": f"./{section}/labelsTr/{v}.nii.gz",
            }
            for v in ids
        ],
        "dataset": {
            v: {
                "images": [f"{section}/imagesTr/{v}.nii.gz"],
                "label": f"{section}/labelsTr/{v}.nii.gz",
            }
            for v in ids
        },
    }
    path = data / "dataset.json"
    path.write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return path


def make_bundle(
    tmp: Path, volumes: list[str], size_xy: int = 24, max_z: int = 8, mm: bool = True
) -> Path:
    """A bundle-shaped folder ``minivess-0.1.0/data/{processed/..., dataset.json}``."""
    bag = tmp / "minivess-0.1.0"
    write_synthetic_layout(bag / "data" / "processed", volumes, size_xy, max_z, mm=mm)
    write_dataset_json(bag / "data")
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    return bag


def blob_volume(
    rng: np.random.Generator, shape: tuple[int, int, int] = (32, 32, 16), blobs: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """An easy case: bright balls on a dim noisy background, the balls being the label."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(blobs):
        centre = rng.uniform([4, 4, 3], [shape[0] - 4, shape[1] - 4, shape[2] - 3])
        radius = rng.uniform(2.5, 4.0)
        mask |= (((grid - centre) / [1.0, 1.0, 0.7]) ** 2).sum(axis=-1) <= radius**2
    image = 100.0 + 900.0 * mask + rng.normal(0.0, 30.0, shape)
    return np.clip(image, 0, 4095).astype(np.uint16), mask.astype(np.uint8)


def write_blob_layout(root: Path, volumes: list[str], seed: int = 0) -> Path:
    """An imagesTr/labelsTr layout of :func:`blob_volume` cases at 1 um (stored in mm)."""
    rng = np.random.default_rng(seed)
    for volume in volumes:
        image, mask = blob_volume(rng)
        write_pair(root, volume, image, mask, (0.001, 0.001, 0.002), NIFTI_MM)
    return root
