"""Read and write NIfTI-1 volumes fast and deterministically.

Reads decompress the whole file in one call (ISA-L when available) and parse it
with nibabel; writes serialise with nibabel and gzip with ``mtime=0`` and no file
name, so the same array and header always give the same bytes.

MiniVess headers carry micrometre values with ``xyzt_units = 0`` (unknown); the
helpers here keep the header fields the real release uses (see
:func:`minivess_header`).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NiftiError
from .fsio import write_bytes_atomic

if TYPE_CHECKING:  # pragma: no cover
    import nibabel as nib
    import numpy as np

CODECS = ("isal", "zlib")
NIFTI1_HEADER_BYTES = 348


def gzip_bytes(data: bytes, codec: str = "isal", level: int = 2) -> bytes:
    """Gzip ``data`` deterministically (mtime 0, no file name in the header)."""
    if codec == "isal":
        from isal import igzip

        if not 0 <= level <= 3:
            raise ValueError(f"isal compression level must be 0..3, got {level}")
        return igzip.compress(data, compresslevel=level, mtime=0)
    if codec == "zlib":
        if not 1 <= level <= 9:
            raise ValueError(f"zlib compression level must be 1..9, got {level}")
        return gzip.compress(data, compresslevel=level, mtime=0)
    raise ValueError(f"unknown gzip codec {codec!r}; expected one of {CODECS}")


def gunzip_bytes(data: bytes) -> bytes:
    """Decompress a whole gzip stream (ISA-L's decoder: ~2x zlib's speed)."""
    from isal import igzip

    return igzip.decompress(data)


def read_raw_bytes(path: str | Path, volume: str | None = None) -> bytes:
    """The uncompressed bytes of a ``.nii`` or ``.nii.gz`` file, with a named error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NiftiError(f"cannot read file: {exc.strerror}", volume=volume, path=path) from exc
    if data[:2] == b"\x1f\x8b":
        try:
            return gunzip_bytes(data)
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise NiftiError(
                f"corrupt or truncated gzip stream ({exc})", volume=volume, path=path
            ) from exc
    return data


def read_nifti(path: str | Path, volume: str | None = None) -> nib.Nifti1Image:
    """Load a NIfTI-1 image fully into memory; errors name the file."""
    import nibabel as nib

    raw = read_raw_bytes(path, volume)
    if len(raw) < NIFTI1_HEADER_BYTES:
        raise NiftiError(
            f"file holds {len(raw)} bytes",
            volume=volume,
            path=path,
            expected=f"at least a {NIFTI1_HEADER_BYTES}-byte NIfTI-1 header",
        )
    try:
        return nib.Nifti1Image.from_bytes(raw)
    except Exception as exc:  # nibabel raises several types for bad headers
        raise NiftiError(f"not a readable NIfTI-1 file ({exc})", volume=volume, path=path) from exc


def minivess_header(kind: str) -> nib.Nifti1Header:
    """A header with the fields the real MiniVess release writes.

    ``kind`` is ``"image"`` (``cal_max`` 1000) or ``"label"`` (``cal_max`` 1).
    Spacing values are micrometres stored as plain numbers (``xyzt_units = 0``).
    """
    import nibabel as nib

    header = nib.Nifti1Header()
    header["xyzt_units"] = 0
    header["cal_min"] = 0
    header["cal_max"] = 1000 if kind == "image" else 1
    return header


def make_image(
    array: np.ndarray, spacing: tuple[float, float, float], header: nib.Nifti1Header
) -> nib.Nifti1Image:
    """An image on a diagonal grid with origin 0: sform code 2 (aligned), qform code 0."""
    import nibabel as nib
    import numpy as np

    affine = np.diag([float(spacing[0]), float(spacing[1]), float(spacing[2]), 1.0])
    image = nib.Nifti1Image(array, affine, header=header)
    image.header.set_data_dtype(array.dtype)
    image.set_sform(affine, code=2)
    image.set_qform(None, code=0)
    image.header.set_zooms(tuple(float(s) for s in spacing))
    image.header.set_slope_inter(1.0, 0.0)
    return image


def nifti_bytes(image: nib.Nifti1Image) -> bytes:
    """Serialise an image to uncompressed single-file NIfTI-1 bytes."""
    data = image.to_bytes()
    # nibabel writes NaN slope/inter when no scaling is needed; the real release
    # writes 1/0, and so do we.
    slope, inter = struct.unpack_from("<ff", data, 112)
    if slope != slope or inter != inter:
        data = data[:112] + struct.pack("<ff", 1.0, 0.0) + data[120:]
    return data


def write_nifti(
    path: str | Path, image: nib.Nifti1Image, codec: str = "isal", level: int = 2
) -> Path:
    """Write ``image`` to ``path`` (``.nii.gz``) atomically and deterministically."""
    return write_bytes_atomic(path, gzip_bytes(nifti_bytes(image), codec, level))
