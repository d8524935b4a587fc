"""The interpolation of one z-slab: numpy's separable linear and nearest passes (SimpleITK's
float32 values bit for bit), SimpleITK's B-spline and label-Gaussian, and the casts back.

The default interpolators run in numpy (:func:`_numpy_slab`): trilinear on an axis-aligned grid
is separable, so three 1-D passes (x, y, z, each ``a + (b - a) * d`` in float64, ITK's operation
order) give SimpleITK's float32 values bit for bit, and nearest neighbour is three index gathers.
B-spline and label-Gaussian call SimpleITK (:func:`sitk_slab`), imported only then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


log = logging.getLogger(__name__)

#: Interpolators :func:`resample_slab` computes in numpy; the others call SimpleITK.
NUMPY_INTERPOLATORS = ("linear", "nearest")


def _positions(n_out: int, origin_out: float, step_um: float, origin_in: float, spacing: float):
    """Output samples' continuous input indices along one axis, as ITK computes them:
    output index ``k`` is the point ``origin_out + k * t``, and a point the input index
    ``(point - origin_in) * (1 / s)`` (ITK's physical-to-index matrix is the inverse of
    the spacing). In float64, like ITK, so the indices are the same numbers."""
    import numpy as np

    points = origin_out + np.arange(n_out, dtype=np.float64) * step_um
    return (points - origin_in) * (1.0 / spacing)


def _linear_taps(positions, n_in: int):
    """``(i0, i1, d)`` for linear interpolation at ``positions`` on ``n_in`` samples.

    ITK's ``LinearInterpolateImageFunction`` clamps the base index at the first
    sample (a negative distance then counts as 0) and takes the base value alone
    past the last; with the nearest-neighbour extrapolator beyond half a voxel this
    is linear interpolation at the position clamped to ``[0, n_in - 1]``.
    """
    import numpy as np

    base = np.floor(positions)
    base = np.clip(base, 0, n_in - 1)
    dist = positions - base
    dist[dist < 0] = 0.0
    i0 = base.astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    dist[i1 == i0] = 0.0
    return i0, i1, dist


def _nearest_taps(positions, n_in: int):
    """Input index of the nearest sample: ``floor(p + 0.5)`` clamped (ITK's rounding
    half up, and the nearest-neighbour extrapolator beyond the buffer)."""
    import numpy as np

    return np.clip(np.floor(positions + 0.5), 0, n_in - 1).astype(np.intp)


#: Elements per step of a pass (rows of a plane at a time): bounds the float64
#: temporaries (2 MiB) whatever the plane size (mv02 at 1 um: 2545 x 2545).
PASS_CHUNK = 1 << 18


def _lerp(a, b, d, out) -> None:
    """``out = a + (b - a) * d``, computed in float64 in ITK's operation order (no fused
    multiply-add) and cast to ``out``'s dtype."""
    import numpy as np

    diff = np.subtract(b, a, dtype=np.float64)
    diff *= d
    np.add(a, diff, out=out, dtype=np.float64)


def _rows(n_rows: int, row_len: int):
    """Row ranges of at most :data:`PASS_CHUNK` elements."""
    step = max(1, PASS_CHUNK // max(1, row_len))
    return ((r, min(n_rows, r + step)) for r in range(0, n_rows, step))


def _numpy_slab(
    source, spacing_um: Sequence[float], grid: dict, k0: int, k1: int, i0: int, interpolator: str
):
    """:func:`resample_slab` for linear (float32 out) and nearest (input dtype out).

    Trilinear on an axis-aligned grid is separable: three 1-D passes, x then y then
    z, each ``a + (b - a) * d`` in float64 — the same operations in the same order as
    ITK's 3-D linear interpolator (x, then y, then z), cast to float32 at the end as
    SimpleITK's float32 output does. Nearest neighbour is three index gathers.
    """
    import numpy as np

    sx, sy, sz = (float(v) for v in spacing_um)
    tx, ty, tz = (float(v) for v in grid["spacing_um"])
    cx, cy, cz = (float(v) for v in grid["start_index"])
    nz_in, ny_in, nx_in = source.shape
    # the slab images of sitk_slab: input origin (0, 0, i0 * sz), output origin
    # (cx * sx, cy * sy, cz * sz + k0 * tz)
    px = _positions(int(grid["shape"][0]), cx * sx, tx, 0.0, sx)
    py = _positions(int(grid["shape"][1]), cy * sy, ty, 0.0, sy)
    pz = _positions(k1 - k0, cz * sz + k0 * tz, tz, i0 * sz, sz)
    if interpolator == "nearest":
        iz, iy, ix = (_nearest_taps(p, n) for p, n in ((pz, nz_in), (py, ny_in), (px, nx_in)))
        return source.take(iz, axis=0).take(iy, axis=1).take(ix, axis=2)
    x0, x1, dx = _linear_taps(px, nx_in)
    y0, y1, dy = _linear_taps(py, ny_in)
    z0, z1, dz = _linear_taps(pz, nz_in)
    # x pass: only the input slices the z taps use
    used = np.zeros(nz_in, dtype=bool)  # (np.unique would import numpy.ma: 8 ms)
    used[z0] = used[z1] = True
    sub = source[used]
    zmap = (np.cumsum(used) - 1)[np.stack([z0, z1])]
    nx, ny, nz = len(x0), len(y0), k1 - k0
    xs = np.empty((len(sub), ny_in, nx), dtype=np.float64)
    for z, plane in enumerate(sub):  # x: plane by plane, a few rows at a time
        for r0, r1 in _rows(ny_in, nx):
            rows = plane[r0:r1]
            _lerp(rows.take(x0, axis=1), rows.take(x1, axis=1), dx, xs[z, r0:r1])
    del sub
    out = np.empty((nz, ny, nx), dtype=np.float32)
    for r0, r1 in _rows(ny, nx * len(xs)):  # y then z, a band of output rows at a time
        ys = np.empty((len(xs), r1 - r0, nx), dtype=np.float64)
        for z, plane in enumerate(xs):
            _lerp(
                plane.take(y0[r0:r1], axis=0), plane.take(y1[r0:r1], axis=0), dy[r0:r1, None], ys[z]
            )
        for k in range(nz):
            a, b = ys[zmap[0, k]], ys[zmap[1, k]]
            if dz[k] == 0.0:
                out[k, r0:r1] = a
            else:
                _lerp(a, b, dz[k], out[k, r0:r1])
    del xs
    # A sample outside [-0.5, n - 0.5) along any axis is ITK's nearest-neighbour
    # extrapolation along every axis: those planes of the slab are overwritten.
    near = [_nearest_taps(p, n) for p, n in ((pz, nz_in), (py, ny_in), (px, nx_in))]
    for axis, (p, n) in enumerate(((pz, nz_in), (py, ny_in), (px, nx_in))):
        outside = np.flatnonzero(~((p >= -0.5) & (p < n - 0.5)))
        if outside.size:
            taps = list(near)
            taps[axis] = near[axis][outside]
            values = source.take(taps[0], axis=0).take(taps[1], axis=1).take(taps[2], axis=2)
            index = [slice(None)] * 3
            index[axis] = outside
            out[tuple(index)] = values
    return out


def _sitk_interpolator(name: str):
    import SimpleITK as sitk

    return {
        "nearest": sitk.sitkNearestNeighbor,
        "linear": sitk.sitkLinear,
        "bspline": sitk.sitkBSpline,
        "label_gaussian": sitk.sitkLabelGaussian,
    }[name]


def resample_slab(
    array_zyx: np.ndarray,
    spacing_um: Sequence[float],
    grid: dict,
    k0: int,
    k1: int,
    i0: int,
    i1: int,
    interpolator: str,
    output_float: bool,
    threads: int | None = None,
) -> np.ndarray:
    """Output slices ``[k0, k1)`` of the grid, from input slices ``[i0, i1)``; ``[z, y, x]``.

    Works in the index-aligned frame (origin 0, identity direction, spacing in
    um): resampling along the array axes with the output sharing the input's
    direction is the same as resampling in the true frame. Linear and nearest run
    in numpy (:func:`_numpy_slab`, the same values as SimpleITK's, tested); B-spline
    and label-Gaussian call SimpleITK (:func:`sitk_slab`), imported only then.
    """
    if interpolator in NUMPY_INTERPOLATORS:
        slab = _numpy_slab(array_zyx[i0:i1], spacing_um, grid, k0, k1, i0, interpolator)
        return slab.astype("float32", copy=False) if output_float else slab
    return sitk_slab(
        array_zyx, spacing_um, grid, k0, k1, i0, i1, interpolator, output_float, threads
    )


def sitk_slab(
    array_zyx: np.ndarray,
    spacing_um: Sequence[float],
    grid: dict,
    k0: int,
    k1: int,
    i0: int,
    i1: int,
    interpolator: str,
    output_float: bool,
    threads: int | None = None,
) -> np.ndarray:
    """:func:`resample_slab` by SimpleITK's ``ResampleImageFilter`` (any interpolator):
    identity transform, nearest-neighbour extrapolator, float32 output for images."""
    import SimpleITK as sitk

    sx, sy, sz = (float(v) for v in spacing_um)
    tx, ty, tz = (float(v) for v in grid["spacing_um"])
    cx, cy, cz = (float(v) for v in grid["start_index"])
    source = sitk.GetImageFromArray(array_zyx[i0:i1], isVector=False)
    source.SetSpacing((sx, sy, sz))
    source.SetOrigin((0.0, 0.0, i0 * sz))
    f = sitk.ResampleImageFilter()
    f.SetSize([int(grid["shape"][0]), int(grid["shape"][1]), int(k1 - k0)])
    f.SetOutputSpacing((tx, ty, tz))
    f.SetOutputOrigin((cx * sx, cy * sy, cz * sz + k0 * tz))
    f.SetOutputDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    f.SetTransform(sitk.Transform(3, sitk.sitkIdentity))
    f.SetInterpolator(_sitk_interpolator(interpolator))
    f.SetDefaultPixelValue(0)
    f.SetUseNearestNeighborExtrapolator(True)
    f.SetOutputPixelType(sitk.sitkFloat32 if output_float else source.GetPixelID())
    if threads:
        f.SetNumberOfThreads(int(threads))
    return sitk.GetArrayFromImage(f.Execute(source))


def _to_uint16(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Round half-to-even and clip to 0..65535; returns the array and the clipped count.

    Linear interpolation of uint16 never leaves [0, 65535] and is never NaN: then two
    reductions (min, max) replace the counting, NaN and clip passes, whose results
    would be the identity (a value in [-0.5, 0) rounds to -0 and casts to 0, one in
    (65535, 65535.5) rounds to 65535) — the same bytes at ~half the cost.
    """
    import numpy as np

    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if not (low >= -0.5 and high < 65535.5):  # out of range, or NaN (validate rejects it)
        clipped = int(np.count_nonzero(values < -0.5)) + int(np.count_nonzero(values >= 65535.5))
        np.nan_to_num(values, copy=False, nan=0.0)
        np.clip(values, 0.0, 65535.0, out=values)
    else:
        clipped = 0
    np.rint(values, out=values)
    return values.astype("<u2"), clipped


def _u8_histogram(values: np.ndarray) -> np.ndarray:
    """``np.bincount(values, minlength=256)`` of a uint8 array; for a {0, 1} mask from one
    max and one count instead of widening every voxel to int64 (~10x faster)."""
    import numpy as np

    hist = np.zeros(256, dtype=np.int64)
    if values.size == 0:
        return hist
    if int(values.max()) > 1:
        return np.bincount(values.reshape(-1), minlength=256)
    ones = int(np.count_nonzero(values))
    hist[0], hist[1] = values.size - ones, ones
    return hist
