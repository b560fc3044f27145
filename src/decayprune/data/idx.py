"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["IdxFormatError", "read_idx", "write_idx"]

_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file is corrupt or is not an IDX file."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, ValueError) as err:  # gzip.BadGzipFile is an OSError
        raise IdxFormatError(f"{path}: corrupt gzip stream ({err})") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip, detected from its first bytes) into a native-endian array.

    Raises:
        IdxFormatError: on a wrong magic number, an unknown type code, or a size that does not
            match the header.

    Example:
        >>> import tempfile, numpy as np
        >>> p = Path(tempfile.mkdtemp()) / "x-idx1-ubyte.gz"
        >>> write_idx(p, np.arange(5, dtype=np.uint8))
        >>> read_idx(p).tolist()
        [0, 1, 2, 3, 4]
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or code not in _TYPE_CODES or ndim == 0:
        raise IdxFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTDD with type code TT in "
            f"{{{', '.join(f'{c:02x}' for c in _TYPE_CODES)}}} and DD >= 1 dimensions); not an IDX file or corrupt"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPE_CODES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxFormatError(
            f"{path}: IDX header announces shape {shape} of {dtype.name} ({expected} bytes in all) "
            f"but the file holds {len(raw)} bytes; the file is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``; atomic.

    Supported dtypes: uint8, int8, int16, int32, float32, float64.

    Example:
        >>> import tempfile, numpy as np
        >>> p = Path(tempfile.mkdtemp()) / "img-idx3-ubyte"
        >>> write_idx(p, np.zeros((2, 28, 28), dtype=np.uint8))
        >>> read_idx(p).shape
        (2, 28, 28)
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("=").str[1:]: code for code, dt in _TYPE_CODES.items()}
    key = array.dtype.str[1:]
    if key not in codes:
        raise ValueError(
            f"write_idx cannot store dtype {array.dtype}; allowed: uint8, int8, int16, int32, float32, float64"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx needs 1 to 255 dimensions, got {array.ndim}")
    code = codes[key]
    payload = (
        bytes([0, 0, code, array.ndim])
        + np.asarray(array.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(array, dtype=_TYPE_CODES[code]).tobytes()
    )
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
