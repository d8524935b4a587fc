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
import hashlib
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import MinivessError, NiftiError, ValidationError
from .fsio import atomic_path, write_bytes_atomic

if TYPE_CHECKING:  # pragma: no cover
    import nibabel as nib
    import numpy as np

log = logging.getLogger(__name__)

CODECS = ("isal", "zlib")
NIFTI1_HEADER_BYTES = 348
#: Raw bytes fed to the compressor per call by :class:`DeterministicGzipWriter`.
GZIP_BLOCK = 1 << 20
#: Uncompressed bytes per slab when :func:`write_nifti` streams an array.
WRITE_SLAB_BYTES = 8 << 20


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
    return _parse_nifti(read_raw_bytes(path, volume), path, volume)


def _parse_nifti(raw: bytes, path: str | Path, volume: str | None) -> nib.Nifti1Image:
    """The image in uncompressed NIfTI-1 ``raw`` bytes; a named error when they are not one."""
    import nibabel as nib

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


class DeterministicGzipWriter:
    """Gzip a byte stream into an open binary file, deterministically.

    The gzip header has mtime 0 and no file name; input is fed to the compressor
    in fixed :data:`GZIP_BLOCK` pieces, so the output depends only on the bytes
    written, the codec and the level — not on how callers chunk their writes.
    Tracks the sha256 and size of the compressed stream and the raw byte count.
    """

    def __init__(self, handle: BinaryIO, codec: str = "isal", level: int = 2) -> None:
        if codec == "isal":
            from isal import isal_zlib

            if not 0 <= level <= 3:
                raise ValueError(f"isal compression level must be 0..3, got {level}")
            self._compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
        elif codec == "zlib":
            import zlib

            if not 1 <= level <= 9:
                raise ValueError(f"zlib compression level must be 1..9, got {level}")
            self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        else:
            raise ValueError(f"unknown gzip codec {codec!r}; expected 'isal' or 'zlib'")
        self._handle = handle
        self._pending = bytearray()
        self._sha = hashlib.sha256()
        self.raw_bytes = 0
        self.compressed_bytes = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._handle.write(data)
            self._sha.update(data)
            self.compressed_bytes += len(data)

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        self.raw_bytes += len(view)
        pos = 0
        if self._pending:
            take = GZIP_BLOCK - len(self._pending)
            self._pending += view[:take]
            pos = take
            if len(self._pending) < GZIP_BLOCK:
                return
            self._emit(self._compressor.compress(bytes(self._pending)))
            self._pending.clear()
        while len(view) - pos >= GZIP_BLOCK:
            self._emit(self._compressor.compress(view[pos : pos + GZIP_BLOCK]))
            pos += GZIP_BLOCK
        self._pending += view[pos:]

    def close(self) -> str:
        """Flush the stream; returns the hex sha256 of all compressed bytes."""
        if self._pending:
            self._emit(self._compressor.compress(bytes(self._pending)))
            self._pending.clear()
        self._emit(self._compressor.flush())
        return self._sha.hexdigest()


def read_array(path: str | Path, volume: str | None = None) -> tuple[nib.Nifti1Image, np.ndarray]:
    """``(image, array)`` of an unscaled NIfTI-1 file, the array a read-only view of its bytes.

    One copy of the voxels in memory instead of nibabel's two (decompressed
    bytes + array). Scaled files (``scl_slope`` not 0/1 or ``scl_inter`` not 0)
    fall back to nibabel's scaled array.
    """
    import numpy as np

    raw = read_raw_bytes(path, volume)
    image = _parse_nifti(raw, path, volume)
    proxy = image.dataobj  # the offset, dtype, shape and scaling nibabel itself reads with
    shape, dtype, offset = tuple(proxy.shape), np.dtype(proxy.dtype), int(proxy.offset)
    count = int(np.prod(shape, dtype=np.int64))
    scaled = float(proxy.slope) != 1.0 or float(proxy.inter) != 0.0
    if scaled or getattr(proxy, "order", "F") != "F" or offset + count * dtype.itemsize > len(raw):
        return image, np.asanyarray(proxy)
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return image, array.reshape(shape, order="F")


def _stream_header(image: nib.Nifti1Image, array: np.ndarray) -> bytes | None:
    """The header bytes (up to the data) :func:`nifti_bytes` would write, or None when
    the data needs nibabel's scaling (``array``'s dtype differs from the header's)."""
    import io

    import numpy as np

    image.update_header()
    header = image.header.copy()
    if array.ndim < 2 or np.dtype(array.dtype).newbyteorder("=") != np.dtype(
        header.get_data_dtype()
    ).newbyteorder("="):
        return None
    header["scl_slope"], header["scl_inter"] = 1.0, 0.0  # see nifti_bytes
    buffer = io.BytesIO()
    header.write_to(buffer)
    head = buffer.getvalue()
    return head.ljust(int(header["vox_offset"]), b"\0")


def write_nifti(
    path: str | Path, image: nib.Nifti1Image, codec: str = "isal", level: int = 2
) -> Path:
    """Write ``image`` to ``path`` (``.nii.gz``) atomically and deterministically.

    The bytes are :func:`nifti_bytes`'s, streamed: the header, then the array slab
    by slab along its last axis through one :class:`DeterministicGzipWriter`, so no
    serialised copy of the volume is ever held in memory.
    """
    import numpy as np

    array = np.asanyarray(image.dataobj)
    head = _stream_header(image, array)
    if head is None:
        return write_bytes_atomic(path, gzip_bytes(nifti_bytes(image), codec, level))
    dtype = image.header.get_data_dtype()
    per_slice = max(1, array[..., 0].nbytes) if array.shape[-1] else 1
    step = max(1, WRITE_SLAB_BYTES // per_slice)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = DeterministicGzipWriter(handle, codec, level)
        writer.write(head)
        for start in range(0, array.shape[-1], step):
            slab = np.asarray(array[..., start : start + step], dtype=dtype)
            writer.write(slab.tobytes(order="F"))
        writer.close()
    return Path(path)


#: Micrometres per NIfTI ``xyzt_units`` spatial code; 0 (unknown) is the MiniVess
#: release's convention: plain micrometre numbers.
_UM_PER_XYZT_UNIT = {0: 1.0, 1: 1e6, 2: 1e3, 3: 1.0}


def spacing_um(header: nib.Nifti1Header) -> tuple[float, float, float]:
    """The voxel size in micrometres, the one way every stage reads it.

    Release headers hold micrometre numbers with ``xyzt_units = 0``; processed
    headers hold millimetres with ``xyzt_units = 2`` (pixdim 0.001 for 1 um).
    """
    scale = _UM_PER_XYZT_UNIT[int(header["xyzt_units"]) & 7]
    return tuple(float(z) * scale for z in header.get_zooms()[:3])


# ------------------------------------------------------------------- guarded reads
# The one header reader every stage uses on untrusted files: the header is checked
# against the file before anything is allocated (validate, resample, the memory
# estimates), and the voxels are streamed into one preallocated array.

#: Deflate cannot expand more than ~1032:1; a header needing more than this many
#: bytes per compressed byte is lying or the file is truncated.
MAX_DEFLATE_RATIO = 1032
NIFTI1_SIZEOF_HDR = NIFTI1_HEADER_BYTES
_READ_CHUNK = 16 << 20
_CIFTI_INTENTS = range(3000, 3100)


@dataclass
class HeaderInfo:
    """A NIfTI-1 header read without touching the data, and what it needs from the file."""

    path: Path
    header: nib.Nifti1Header
    compressed: bool
    file_bytes: int
    shape: tuple[int, ...]  # all dims the header declares (x, y, z, t, ...)
    dtype: np.dtype  # stored dtype with the header's byte order
    vox_offset: int
    data_bytes: int

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """(x, y, z); only meaningful when :func:`spatial_problem` is None."""
        dims = list(self.shape[:3]) + [1] * (3 - len(self.shape[:3]))
        return (int(dims[0]), int(dims[1]), int(dims[2]))

    @property
    def n_voxels(self) -> int:
        return math.prod(self.shape)


def _open_stream(path: Path, compressed: bool):
    if compressed:
        from isal import igzip

        return igzip.open(path, "rb")
    return open(path, "rb")


def read_header(
    path: str | Path,
    volume: str | None = None,
    error: type[MinivessError] = ValidationError,
    check_size: bool = True,
) -> HeaderInfo:
    """Read and sanity-check a NIfTI-1 header; nothing beyond the header is decompressed.

    Refuses (with ``error``) a file whose header is not single-file NIfTI-1, whose
    dims or datatype are invalid, or whose declared data cannot fit in the file:
    a ``.nii`` shorter than ``vox_offset + data`` or a gzip stream that would have
    to expand more than :data:`MAX_DEFLATE_RATIO`:1 — so a header claiming a huge
    shape is rejected before anything is allocated. ``check_size=False`` skips
    that test (for estimates from a header alone).
    """
    import nibabel as nib
    import numpy as np

    path = Path(path)
    try:
        file_bytes = path.stat().st_size
        with open(path, "rb") as handle:
            magic = handle.read(2)
        compressed = magic == b"\x1f\x8b"
        with _open_stream(path, compressed) as stream:
            raw = stream.read(NIFTI1_SIZEOF_HDR)
    except gzip.BadGzipFile as exc:  # CRC/length mismatch, bad member header
        raise error(f"corrupt gzip stream ({exc})", volume=volume, path=path) from exc
    except OSError as exc:
        raise error(f"cannot read header ({exc})", volume=volume, path=path) from exc
    except (EOFError, ValueError) as exc:
        raise error(f"corrupt or truncated gzip stream ({exc})", volume=volume, path=path) from exc
    except Exception as exc:  # isal_zlib.error and friends
        raise error(f"corrupt gzip stream ({exc})", volume=volume, path=path) from exc
    if not compressed and path.name.endswith(".gz"):
        # A text file, an HTML error page or a .nii saved under a .nii.gz name.
        raise error(
            f"not gzip / not NIfTI: the {file_bytes}-byte file starts {raw[:16]!r}, "
            "not with the gzip magic 1f 8b",
            volume=volume,
            path=path,
            expected="a gzip-compressed NIfTI-1 file (.nii.gz)",
        )
    if len(raw) < NIFTI1_SIZEOF_HDR:
        raise error(
            f"not NIfTI: the {'decompressed ' if compressed else ''}file holds only "
            f"{len(raw)} bytes, less than a header",
            volume=volume,
            path=path,
            expected=f"a {NIFTI1_SIZEOF_HDR}-byte NIfTI-1 header",
        )
    endian = None
    for candidate in "<>":
        size = struct.unpack(candidate + "i", raw[:4])[0]
        if size == NIFTI1_SIZEOF_HDR:
            endian = candidate
        elif size == 540:
            raise error(
                "NIfTI-2 header (CIFTI-2 or a >2^15 dim file)",
                volume=volume,
                path=path,
                expected="a NIfTI-1 single-file volume",
            )
    if endian is None or raw[344:348] != b"n+1\x00":
        raise error(
            f"not a NIfTI-1 single-file header (sizeof_hdr/magic {raw[:4].hex()}/{raw[344:348]!r})",
            volume=volume,
            path=path,
            expected="sizeof_hdr 348 and magic 'n+1'",
        )
    header = nib.Nifti1Header(raw, endianness=endian, check=False)
    dim = [int(d) for d in header["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dim[1 : ndim + 1]):
        raise error(f"invalid header dims {dim}", volume=volume, path=path)
    try:
        dtype = header.get_data_dtype()
    except Exception as exc:
        raise error(
            f"unknown datatype code {int(header['datatype'])}", volume=volume, path=path
        ) from exc
    if dtype.hasobject or dtype.itemsize == 0:
        raise error(f"unsupported datatype {dtype}", volume=volume, path=path)
    vox_offset = float(header["vox_offset"])
    if vox_offset < 352 or vox_offset != int(vox_offset):
        raise error(
            f"vox_offset {vox_offset}", volume=volume, path=path, expected="an integer >= 352"
        )
    shape = tuple(dim[1 : ndim + 1])
    data_bytes = math.prod(shape) * dtype.itemsize
    need = int(vox_offset) + data_bytes
    limit = file_bytes * MAX_DEFLATE_RATIO + (1 << 16) if compressed else file_bytes
    if check_size and need > limit:
        raise error(
            f"header shape {shape} {np.dtype(dtype).name} needs {need} bytes but the "
            f"{'gzip ' if compressed else ''}file of {file_bytes} bytes can hold at most {limit}",
            volume=volume,
            path=path,
            expected="a header that matches the file (truncated file or corrupt header)",
        )
    return HeaderInfo(
        path, header, compressed, file_bytes, shape, dtype, int(vox_offset), data_bytes
    )


def spatial_problem(info: HeaderInfo) -> str | None:
    """Why the header is not a 3-D volume (None when it is; trailing 1s are fine)."""
    intent = int(info.header["intent_code"])
    if intent in _CIFTI_INTENTS:
        return f"CIFTI intent code {intent}"
    if len(info.shape) < 3:
        return f"{len(info.shape)}-D shape {list(info.shape)}"
    if any(d != 1 for d in info.shape[3:]):
        return f"{len(info.shape)}-D shape {list(info.shape)}"
    return None


def read_voxels(
    info: HeaderInfo, volume: str | None = None, error: type[MinivessError] = ValidationError
) -> np.ndarray:
    """The data of a 3-D header as a native-endian array indexed ``[z, y, x]``.

    Streams the file into one preallocated array (16 MiB at a time), so peak
    memory is the array plus a chunk; reads the stream to its end so a truncated
    or corrupt gzip member (CRC, length) is detected. Trailing singleton dims
    are dropped; extra bytes after the data are ignored (and logged).
    """
    import numpy as np

    x, y, z = info.spatial_shape
    array = np.empty((z, y, x), dtype=info.dtype.newbyteorder("="))
    view = memoryview(array.reshape(-1).view(np.uint8))
    try:
        with _open_stream(info.path, info.compressed) as stream:
            skipped = len(stream.read(info.vox_offset))
            filled = 0
            while filled < len(view) and skipped == info.vox_offset:
                got = stream.readinto(view[filled : filled + _READ_CHUNK])
                if not got:
                    break
                filled += got
            trailing = 0
            while chunk := stream.read(_READ_CHUNK):
                trailing += len(chunk)
    except (EOFError, ValueError) as exc:
        raise error(
            f"corrupt or truncated gzip stream ({exc})", volume=volume, path=info.path
        ) from exc
    except gzip.BadGzipFile as exc:
        raise error(f"corrupt gzip stream ({exc})", volume=volume, path=info.path) from exc
    except OSError as exc:
        raise error(f"cannot read data ({exc})", volume=volume, path=info.path) from exc
    except Exception as exc:  # isal_zlib.error
        raise error(f"corrupt gzip stream ({exc})", volume=volume, path=info.path) from exc
    if skipped + filled < info.vox_offset + info.data_bytes:
        raise error(
            f"file ends after {skipped + filled} bytes of data",
            volume=volume,
            path=info.path,
            expected=f"{info.vox_offset + info.data_bytes} bytes (truncated file)",
        )
    if trailing:
        log.info("%s: %d bytes after the voxel data ignored", info.path, trailing)
    if not info.dtype.isnative:
        array.byteswap(inplace=True)  # the bytes were the file's order; no copy
    return array
