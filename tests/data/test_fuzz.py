"""Fuzz tests of the file readers: hypothesis mutates valid IDX files (raw and gzip, before or after
compression) and valid ComCat CSV catalogues (byte flips, truncations, insertions, deletions, header
edits). Each reader must either return a result that matches an independent decoding of the bytes, or raise
DataFileError / ValueError; any other exception, a hang or a wrong result fails.

The CI run uses 1000 examples per reader (a few seconds). Run more offline with the environment variable
FASTVAE_FUZZ_EXAMPLES, e.g. ``FASTVAE_FUZZ_EXAMPLES=200000 pytest tests/data/test_fuzz.py``.
"""
import gzip
import os
import struct
import warnings
import zlib

import numpy as np
import pytest

from conftest import require_module  # noqa: E402

hypothesis = require_module("hypothesis")  # in the test extra: skipped locally if missing, fails under CI
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastvae.cavi import load_catalog  # noqa: E402
from fastvae.datasets import _IDX_DTYPES, DataFileError, read_idx  # noqa: E402
from reference.idx import reference_idx  # noqa: E402

EXAMPLES = int(os.environ.get("FASTVAE_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# bytes that matter to the formats: IDX dtype codes and dims, gzip magic, CSV syntax, odd encodings
INTERESTING = [b"\x00", b"\xff", b"\x08", b"\x0e", b"\x1f\x8b", b",", b'"', b"\n", b"\r", b"\r\n", b"-",
               b"nan", b"inf", b"1e30", b"999", b"\xef\xbb\xbf", b"\xe9", b"\xc3", b"  ", b"type"]


@st.composite
def mutations(draw, blob):
    """A few byte-level edits of ``blob``."""
    data = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=8)))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
    return bytes(data)


# ------------------------------------------------------------------------------------------------ IDX

@st.composite
def idx_files(draw):
    code = draw(st.sampled_from(sorted(_IDX_DTYPES)))
    dims = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    dtype = _IDX_DTYPES[code]
    payload = draw(st.binary(min_size=int(np.prod(dims)) * dtype.itemsize,
                             max_size=int(np.prod(dims)) * dtype.itemsize))
    raw = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload
    how = draw(st.sampled_from(["raw", "gzip_then_mutate", "mutate_then_gzip"]))
    if how == "raw":
        return draw(mutations(raw))
    if how == "mutate_then_gzip":
        return gzip.compress(draw(mutations(raw)))
    return draw(mutations(gzip.compress(raw)))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def test_fuzz_read_idx(scratch):
    path = scratch / "fuzz.idx"

    @FUZZ
    @given(idx_files())
    def check(blob):
        path.write_bytes(blob)
        expected = reference_idx(blob)
        try:
            arr = read_idx(path)
        except DataFileError as e:
            assert str(path) in str(e)
            assert expected is None, f"valid file refused: {e}"
            return
        assert expected is not None, "invalid file accepted"
        assert arr.dtype == expected.dtype.newbyteorder("=") and arr.shape == expected.shape
        assert arr.flags.writeable
        np.testing.assert_array_equal(arr, expected)

    check()


# ------------------------------------------------------------------------------------------------ CSV

HEADER = "time,latitude,longitude,depth,mag,nst,place,type\n"


@st.composite
def catalogues(draw):
    rows = draw(st.lists(st.tuples(st.floats(-90, 90), st.floats(-180, 180), st.integers(0, 500),
                                   st.sampled_from(["earthquake", "quarry blast"])), min_size=1, max_size=6))
    text = HEADER + "".join(f'2024-01-01T00:00:00Z,{lat!r},{lon!r},10.0,2.5,{n},"5km N of X, CA",{kind}\n'
                            for lat, lon, n, kind in rows)
    blob = text.encode()
    if draw(st.booleans()):  # a header edit: rename, drop or duplicate a column name
        names = HEADER.strip().split(",")
        i = draw(st.integers(0, len(names) - 1))
        names[i] = draw(st.sampled_from(["", "lat", "latitude", "nst", " longitude", "Type"]))
        blob = (",".join(names) + "\n").encode() + blob[len(HEADER):]
    return draw(mutations(blob)) if draw(st.integers(0, 9)) else blob


def test_fuzz_load_catalog(scratch):
    path = scratch / "fuzz.csv"

    @FUZZ
    @given(catalogues())
    def check(blob):
        path.write_bytes(blob)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # dropped rows are reported, not an error
                X, S = load_catalog(path)
        except ValueError as e:
            assert "load_catalog" in str(e)
            return
        assert X.dtype == np.float64 and X.ndim == 2 and X.shape[1] == 2 and len(X) >= 1
        assert S.dtype == np.int64 and S.shape == (len(X),)
        assert np.all(np.isfinite(X)) and np.all(np.abs(X[:, 0]) <= 180) and np.all(np.abs(X[:, 1]) <= 90)
        assert np.all(S >= 0) and np.all(S <= 2**53)

    check()
