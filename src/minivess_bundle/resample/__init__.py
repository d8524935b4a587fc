"""Resample one image/mask pair onto a target grid, in z-slabs, streaming the NIfTI.

Why: MiniVess voxel sizes range from 0.31 to 1.23 um in-plane and 0.5..4.97 um in z; training
wants one spacing (default isotropic 1 um). The output is never held in memory: each z-slab is
resampled and its bytes go straight through a deterministic gzip stream into a temporary
sibling renamed into place at the end; peak memory is the input volume plus one slab.

Modules: :mod:`.grid` (units, output grid, affine, header, slab plan), :mod:`.kernels` (one
slab's interpolation: numpy's linear and nearest, SimpleITK's B-spline and label-Gaussian),
:mod:`.pair` (a pair end to end, and its memory estimate), :mod:`.spec` (the stage's parameters).
"""

from .grid import (
    BASE_MEM_MB,
    DEFAULT_SLAB_VOXELS,
    IMAGE_INTERPOLATORS,
    LABEL_INTERPOLATORS,
    NIFTI_UNITS_MM,
    NUMPY_BASE_MEM_MB,
    OUTPUT_UNIT_UM,
    OUTPUT_UNITS,
    SLAB_BYTES_PER_VOXEL,
    SLAB_MARGIN,
    output_affine_mm,
    output_grid,
    slab_slices,
    spacing_to_um,
    units_decision,
)
from .kernels import NUMPY_INTERPOLATORS, resample_slab, sitk_slab
from .pair import base_mem_mb, estimate_resample_mem_mb, resample_pair
from .spec import ResampleSpec

__all__ = [
    "BASE_MEM_MB",
    "DEFAULT_SLAB_VOXELS",
    "IMAGE_INTERPOLATORS",
    "LABEL_INTERPOLATORS",
    "NIFTI_UNITS_MM",
    "NUMPY_BASE_MEM_MB",
    "NUMPY_INTERPOLATORS",
    "OUTPUT_UNITS",
    "OUTPUT_UNIT_UM",
    "ResampleSpec",
    "SLAB_BYTES_PER_VOXEL",
    "SLAB_MARGIN",
    "base_mem_mb",
    "estimate_resample_mem_mb",
    "output_affine_mm",
    "output_grid",
    "resample_pair",
    "resample_slab",
    "sitk_slab",
    "slab_slices",
    "spacing_to_um",
    "units_decision",
]
