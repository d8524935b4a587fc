"""Resample one image/mask pair in z-slabs, streaming the NIfTI, and estimate its memory.

Why: MiniVess voxel sizes range from 0.31 to 4.97 um in-plane and 2..10 um in z;
training wants one spacing (default isotropic 1 um). mv02 (4.97 um, 512 x 512)
becomes ~2545 x 2545 x hundreds of slices at 1 um — gigabytes — so the output
is never held in memory: each z-slab is resampled, and its bytes go straight
through a deterministic gzip stream into a temporary sibling that is renamed into
place at the end. Peak memory is the input volume plus one slab.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ResampleError
from ..core.nifti import GZIP_BLOCK, DeterministicGzipWriter

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..core.nifti import HeaderInfo

from .grid import (
    BASE_MEM_MB,
    DEFAULT_SLAB_VOXELS,
    IMAGE_INTERPOLATORS,
    LABEL_INTERPOLATORS,
    NUMPY_BASE_MEM_MB,
    SLAB_BYTES_PER_VOXEL,
    SLAB_MARGIN,
    _output_header,
    _slab_plan,
    output_affine_mm,
    output_grid,
    slab_slices,
    spacing_to_um,
    units_decision,
)
from .kernels import NUMPY_INTERPOLATORS, PASS_CHUNK, _to_uint16, _u8_histogram, resample_slab

log = logging.getLogger(__name__)


def _resample_one(
    volume: str,
    role: str,
    info: HeaderInfo,
    spacing_um: list[float],
    affine_mm: np.ndarray,
    grid: dict,
    interpolator: str | None,
    tmp_path: Path,
    out_path: Path,
    codec: str,
    level: int,
    slab_voxels: int,
    threads: int | None,
) -> dict[str, Any]:
    """Read one input, resample it slab by slab into ``tmp_path``; returns its record.

    ``out_path`` is the final name (recorded); the caller renames ``tmp_path``.
    """
    import numpy as np

    from ..core.nifti import read_voxels

    array = read_voxels(info, volume, error=ResampleError)
    is_image = role == "image"
    out_dtype = np.dtype("<u2") if is_image else np.dtype("u1")
    if not is_image:
        if array.dtype != np.uint8:
            raise ResampleError(
                f"mask dtype {array.dtype}", volume=volume, path=info.path, expected="uint8"
            )
        values = np.flatnonzero(_u8_histogram(array)).tolist()
        if not set(values) <= {0, 1}:
            raise ResampleError(
                f"mask values {values}",
                volume=volume,
                path=info.path,
                expected="a subset of {0, 1} (run validate first)",
            )
    nz = grid["shape"][2]
    slices = slab_slices(grid, info.spatial_shape, spacing_um[2], slab_voxels)
    margin = SLAB_MARGIN[interpolator] if interpolator else 0
    plan = _slab_plan(array.shape[0], spacing_um[2], grid, margin, slices) if interpolator else None
    clipped = 0
    hist = np.zeros(256, dtype=np.int64)
    with open(tmp_path, "wb") as handle:
        writer = DeterministicGzipWriter(handle, codec, level)
        writer.write(_output_header(info, grid["shape"], affine_mm, out_dtype))
        if plan is None:  # native grid: the voxels as they are
            for k0 in range(0, nz, slices):
                slab = array[k0 : k0 + slices]
                if is_image:
                    slab, n = _to_uint16(slab.astype(np.float32))
                    clipped += n
                else:
                    hist += _u8_histogram(slab)
                writer.write(np.ascontiguousarray(slab, dtype=out_dtype))
        else:
            finished = partial(
                _finished_slab, array, spacing_um, grid, interpolator, is_image, threads
            )
            pool = threads if interpolator in NUMPY_INTERPOLATORS else None
            for slab, n, counts in _in_order(finished, plan, pool):
                clipped += n
                if counts is not None:
                    hist += counts
                writer.write(slab)
                del slab
        sha256 = writer.close()
    del array
    if not is_image and not set(np.flatnonzero(hist).tolist()) <= {0, 1}:
        raise ResampleError(  # cannot happen with nearest/label-Gaussian; a guard
            f"mask values {np.flatnonzero(hist).tolist()} after resampling",
            volume=volume,
            path=info.path,
            expected="a subset of {0, 1}",
        )
    record: dict[str, Any] = {
        "path": str(out_path),
        "bytes": writer.compressed_bytes,
        "raw_bytes": writer.raw_bytes,
        "sha256": sha256,
        "dtype": out_dtype.name,
        "interpolator": interpolator or "none (native grid)",
    }
    if is_image:
        record["clipped_voxels"] = clipped
    else:
        record["values"] = [int(v) for v in np.flatnonzero(hist)]
        record["foreground_voxels"] = int(hist[1:].sum())
    if plan is not None:
        record["slabs"] = len(plan)
    return record


def _finished_slab(array, spacing_um, grid, interpolator, is_image, threads, k0, k1, i0, i1):
    """One slab as written: ``(bytes-ready array, clipped count, mask histogram or None)``."""
    import numpy as np

    slab = resample_slab(array, spacing_um, grid, k0, k1, i0, i1, interpolator, is_image, threads)
    if is_image:
        slab, n = _to_uint16(slab)
        return np.ascontiguousarray(slab, dtype="<u2"), n, None
    slab = np.ascontiguousarray(slab, dtype="u1")
    return slab, 0, _u8_histogram(slab)


def _in_order(func, items: Sequence[tuple], threads: int | None):
    """``func(*item)`` for each item, yielded in order. With ``threads`` > 1 the items
    are computed ahead on a thread pool (numpy releases the GIL in its array loops),
    at most ``threads + 1`` results held at once, while the caller writes the previous
    one; the results, and so the bytes written, do not depend on ``threads``."""
    if not threads or threads <= 1:
        for item in items:
            yield func(*item)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(func, *item))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _read_pair(
    volume: str, image_path: str | Path, label_path: str | Path, source_units: str
) -> tuple[HeaderInfo, HeaderInfo, list[float], np.ndarray]:
    """Headers of both files, the spacing in um and the affine in um; named errors."""
    import numpy as np

    from ..core.nifti import read_header, spatial_problem

    infos = []
    for path in (image_path, label_path):
        info = read_header(path, volume, error=ResampleError)
        problem = spatial_problem(info)
        if problem:
            raise ResampleError(problem, volume=volume, path=path, expected="a 3-D volume")
        infos.append(info)
    img, lbl = infos
    if img.spatial_shape != lbl.spatial_shape:
        raise ResampleError(
            f"image shape {list(img.spatial_shape)} vs mask shape {list(lbl.spatial_shape)}",
            volume=volume,
            path=label_path,
            expected="the same shape (run validate first)",
        )
    affines = []
    for info in infos:
        affine = np.array(info.header.get_best_affine(), dtype=float)
        affine[:3, :] *= spacing_to_um(info, source_units)
        affines.append(affine)
    spacing = np.linalg.norm(affines[0][:3, :3], axis=0)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ResampleError(
            f"spacing {spacing.tolist()} um", volume=volume, path=image_path, expected="> 0"
        )
    if np.max(np.abs(affines[0] - affines[1])) > 1e-4 * spacing.min():
        raise ResampleError(
            "image and mask affines differ",
            volume=volume,
            path=label_path,
            expected="the same grid (run validate first)",
        )
    return img, lbl, [float(v) for v in spacing], affines[0]


def _plan_grid(
    volume: str,
    img: HeaderInfo,
    spacing: list[float],
    spacing_um: str | Sequence[float],
    max_output_voxels: int | None,
) -> dict:
    grid = output_grid(img.spatial_shape, spacing, spacing_um)
    n_out = math.prod(grid["shape"])
    if max_output_voxels is not None and n_out > max_output_voxels:
        nx, ny, nz = grid["shape"]
        raise ResampleError(
            f"output grid {nx} x {ny} x {nz} = {n_out} voxels at "
            f"{'x'.join(f'{v:g}' for v in grid['spacing_um'])} um",
            volume=volume,
            path=img.path,
            expected=f"at most {max_output_voxels} voxels (resample.max_output_voxels); "
            "raise the limit or choose a coarser spacing",
        )
    return grid


def resample_pair(
    volume: str,
    image_path: str | Path,
    label_path: str | Path,
    out_image: str | Path,
    out_label: str | Path,
    spacing_um: str | Sequence[float] = "native",
    image_interpolator: str = "linear",
    label_interpolator: str = "nearest",
    codec: str = "isal",
    level: int = 2,
    max_output_voxels: int | None = None,
    source_units: str = "um",
    slab_voxels: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Resample an image/mask pair onto one grid and write both atomically.

    ``spacing_um``: ``"native"`` (keep the grid; files are rewritten with the mm
    units encoding only) or three spacings in um (one number means isotropic).
    ``source_units`` says how to read headers with ``xyzt_units = 0``.
    ``max_output_voxels`` fails before any data is read when the output grid is
    larger. ``slab_voxels`` bounds the output voxels resampled at once (default:
    :data:`DEFAULT_SLAB_VOXELS` of each file's interpolator; it does not change the
    output bytes). Returns the record of what was done::

        {"volume", "target_spacing", "grid_rule", "source_units",
         "input": {"shape", "spacing_um", "header_units", "interpreted_as"},
         "output": {"shape", "spacing_um", "extent_um", "affine_mm", "origin_mm"},
         "extent_um": {"input", "output"}, "interpolators": {"image", "label"},
         "compression": {"codec", "level", "block_bytes"}, "slab_slices",
         "units": units_decision(), "files": {"image": {...}, "label": {...}}}
    """
    from ..core.fsio import atomic_path
    from ..validate import units_of_header

    if isinstance(spacing_um, int | float):
        spacing_um = [float(spacing_um)] * 3
    if image_interpolator not in IMAGE_INTERPOLATORS:
        raise ResampleError(
            f"image interpolator {image_interpolator!r}", expected=f"one of {IMAGE_INTERPOLATORS}"
        )
    if label_interpolator not in LABEL_INTERPOLATORS:
        raise ResampleError(
            f"label interpolator {label_interpolator!r}", expected=f"one of {LABEL_INTERPOLATORS}"
        )
    img, lbl, spacing, affine_um = _read_pair(volume, image_path, label_path, source_units)
    grid = _plan_grid(volume, img, spacing, spacing_um, max_output_voxels)
    native = grid["shape"] == list(img.spatial_shape) and grid["start_index"] == [0.0, 0.0, 0.0]
    affine_mm = output_affine_mm(affine_um, spacing, grid)
    header_units, interpreted = units_of_header(int(img.header["xyzt_units"]), source_units)
    files = {}
    # Both files land together or not at all: each is written to a temporary
    # sibling, renamed only when both are complete.
    with atomic_path(out_image) as tmp_image, atomic_path(out_label) as tmp_label:
        for role, info, interp, tmp, out in (
            ("image", img, image_interpolator, tmp_image, out_image),
            ("label", lbl, label_interpolator, tmp_label, out_label),
        ):
            try:
                files[role] = _resample_one(
                    volume,
                    role,
                    info,
                    spacing,
                    affine_mm,
                    grid,
                    None if native else interp,
                    tmp,
                    Path(out),
                    codec,
                    level,
                    slab_voxels or DEFAULT_SLAB_VOXELS["linear" if native else interp],
                    threads,
                )
            except MemoryError as exc:
                raise ResampleError(
                    "out of memory while resampling",
                    volume=volume,
                    path=info.path,
                    expected="more memory (see estimate_resample_mem_mb) or smaller slab_voxels",
                ) from exc
            except OSError as exc:
                if exc.errno is None or exc.filename not in (None, str(tmp)):
                    raise
                # A write error (a full disk) names this file, not its sibling.
                raise OSError(exc.errno, f"{exc.strerror} while writing", str(out)) from exc
    shape_in = list(img.spatial_shape)
    image_slab_voxels = (
        slab_voxels or DEFAULT_SLAB_VOXELS["linear" if native else image_interpolator]
    )
    record = {
        "volume": volume,
        "target_spacing": spacing_um
        if isinstance(spacing_um, str)
        else [float(v) for v in spacing_um],
        "grid_rule": "n = max(1, floor(N*s/t + 0.5)); field-of-view corner kept; "
        "voxel 0 centre at input index (t/s - 1)/2",
        "source_units": source_units,
        "input": {
            "shape": shape_in,
            "spacing_um": [_f7(v) for v in spacing],
            "header_units": header_units,
            "interpreted_as": interpreted,
        },
        "output": {
            "shape": grid["shape"],
            "spacing_um": [_f7(v) for v in grid["spacing_um"]],
            "affine_mm": [[_f7(v) for v in row] for row in affine_mm.tolist()],
            "origin_mm": [_f7(v) for v in affine_mm[:3, 3].tolist()],
        },
        "extent_um": {
            "input": [_f7(n * s) for n, s in zip(shape_in, spacing, strict=True)],
            "output": [_f7(n * t) for n, t in zip(grid["shape"], grid["spacing_um"], strict=True)],
        },
        "interpolators": {
            "image": files["image"]["interpolator"],
            "label": files["label"]["interpolator"],
        },
        "compression": {"codec": codec, "level": level, "block_bytes": GZIP_BLOCK},
        "slab_slices": slab_slices(grid, shape_in, spacing[2], image_slab_voxels),
        "units": units_decision(),
        "files": files,
    }
    log.info(
        "%s: %s at %s um -> %s at %s um",
        volume,
        shape_in,
        record["input"]["spacing_um"],
        grid["shape"],
        record["output"]["spacing_um"],
    )
    return record


def _f7(value: float) -> float:
    """A float to 7 significant digits (float32 header precision), for records."""
    return float(f"{value:.7g}")


# ------------------------------------------------------------------------ memory


def estimate_resample_mem_mb(
    image_path: str | Path,
    spacing_um: str | Sequence[float] = "native",
    source_units: str = "um",
    slab_voxels: int | None = None,
    interpolator: str = "linear",
    threads: int = 1,
) -> int:
    """Peak memory (MiB) of :func:`resample_pair` for this image, from its header alone.

    The base (:func:`base_mem_mb`) + the input image (the larger of the two inputs;
    the mask is read after the image is freed) + the slabs in flight (one; ``threads
    + 1`` with a thread pool) + 25 %. A slab of the numpy path holds 8 bytes per output
    voxel (float32 result, its uint16 copy, the written copy), the float64 x pass over
    the input slices it uses (``used x rows in x columns out x 8``) and a few
    :data:`PASS_CHUNK` temporaries; SimpleITK's, ``SLAB_BYTES_PER_VOXEL`` per output
    voxel plus its input slices with the interpolator's margin.
    """
    import numpy as np

    from ..core.nifti import read_header

    info = read_header(image_path, error=ResampleError, check_size=False)
    norms = np.linalg.norm(np.asarray(info.header.get_best_affine())[:3, :3], axis=0)
    spacing = [float(v) * spacing_to_um(info, source_units) for v in norms]
    grid = output_grid(info.spatial_shape, spacing, spacing_um)
    nx, ny, nz = grid["shape"]
    voxels = slab_voxels or DEFAULT_SLAB_VOXELS[interpolator]
    slices = slab_slices(grid, info.spatial_shape, spacing[2], voxels)
    ratio = grid["spacing_um"][2] / spacing[2]  # input slices per output slice
    ny_in = int(info.spatial_shape[1])
    if interpolator in NUMPY_INTERPOLATORS:
        used = min(slices * ratio + 2, 2 * slices)
        slab = 8 * slices * nx * ny + used * ny_in * nx * 8 + 4 * PASS_CHUNK * 8
    else:
        plane_in = info.spatial_shape[0] * ny_in * info.dtype.itemsize
        slab_in = (slices * ratio + 2 * SLAB_MARGIN[interpolator]) * plane_in
        slab = SLAB_BYTES_PER_VOXEL * slices * nx * ny + slab_in
    in_flight = threads + 1 if threads > 1 and interpolator in NUMPY_INTERPOLATORS else 1
    total = info.n_voxels * info.dtype.itemsize + in_flight * slab
    return int(math.ceil(base_mem_mb(interpolator) + 1.25 * total / (1 << 20)))


def base_mem_mb(interpolator: str = "linear") -> int:
    """The fixed part of :func:`estimate_resample_mem_mb` (MiB): without SimpleITK for
    the numpy interpolators."""
    return NUMPY_BASE_MEM_MB if interpolator in NUMPY_INTERPOLATORS else BASE_MEM_MB
