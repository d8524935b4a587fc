"""The numpy resampling path vs SimpleITK's on random grids: how many values differ.

``python bench/resample_equivalence.py SEED [SEED ...]``: per seed, 40 random grids
(input 1..39 voxels per axis, spacings 0.3..5 um, every fourth mv68's 0.994 x 0.994 x
2 um, every fourth 2 x 0.5 x 3 um; target 1 um or random 0.5..3 um; outputs over 3 M
voxels skipped), random uint16 images and {0, 1} masks, slabs of ~5000 output voxels.
Prints the grids compared, the largest float difference of the linear image (relative
to 65535), the uint16 values that differ after rounding, and the mask voxels that differ.
"""

from __future__ import annotations

import sys

import numpy as np

from minivess_bundle.resample import output_grid, resample_slab, sitk_slab
from minivess_bundle.resample.grid import _slab_plan


def compare(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {"grids": 0, "voxels": 0, "worst_rel": 0.0, "uint16_differ": 0, "mask_differ": 0}
    for trial in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 40, 3))
        spacing = [float(np.float32(v)) for v in rng.uniform(0.3, 5, 3)]
        if trial % 4 == 0:
            spacing = [float(np.float32(v)) for v in (0.994, 0.994, 2.0)]
        if trial % 4 == 1:
            spacing = [2.0, 0.5, 3.0]
        target = [1.0, 1.0, 1.0] if trial % 3 else [float(v) for v in rng.uniform(0.5, 3, 3)]
        grid = output_grid(shape, spacing, target)
        if np.prod(grid["shape"]) > 3e6:
            continue
        out["grids"] += 1
        image = rng.integers(0, 65535, shape[::-1], dtype=np.uint16)
        mask = (rng.random(shape[::-1]) < 0.4).astype(np.uint8)
        nx, ny, _ = grid["shape"]
        for k0, k1, i0, i1 in _slab_plan(shape[2], spacing[2], grid, 2, max(1, 5000 // (nx * ny))):
            ref = sitk_slab(image, spacing, grid, k0, k1, i0, i1, "linear", True)
            ours = resample_slab(image, spacing, grid, k0, k1, i0, i1, "linear", True)
            diff = np.abs(ref.astype(np.float64) - ours)
            out["worst_rel"] = max(out["worst_rel"], float(diff.max()) / 65535)
            out["uint16_differ"] += int(np.count_nonzero(np.rint(ref) != np.rint(ours)))
            out["voxels"] += ref.size
            ref = sitk_slab(mask, spacing, grid, k0, k1, i0, i1, "nearest", False)
            ours = resample_slab(mask, spacing, grid, k0, k1, i0, i1, "nearest", False)
            out["mask_differ"] += int(np.count_nonzero(ref != ours))
    return out


if __name__ == "__main__":
    for seed in [int(v) for v in sys.argv[1:]] or [10]:
        print(f"seed {seed}: {compare(seed)}")
