"""An IDX file decoder (the MNIST format: magic 0 0, a dtype code, the number of dimensions, big-endian uint32
sizes, then the payload), written from the format's definition with whole-buffer NumPy, optionally gzip
compressed: the reference of fastvae.datasets.read_idx."""
import gzip
import struct
import zlib

import numpy as np

# The format's dtype codes (big-endian), from its definition.
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def reference_idx(blob):
    """Independent decoding (whole-buffer numpy), or None where the bytes are not a valid IDX file."""
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error):
            return None
    if len(blob) < 4 or blob[0] or blob[1] or blob[2] not in IDX_DTYPES or blob[3] == 0:
        return None
    ndim, dtype = blob[3], IDX_DTYPES[blob[2]]
    if len(blob) < 4 + 4 * ndim:
        return None
    dims = struct.unpack(f">{ndim}I", blob[4:4 + 4 * ndim])
    if len(blob) - 4 - 4 * ndim != int(np.prod(dims, dtype=object)) * dtype.itemsize:
        return None
    return np.frombuffer(blob, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
