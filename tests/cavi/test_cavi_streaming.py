"""Streamed CAVI: a catalogue file (or memory-mapped arrays) read in chunks gives the in-memory fit, and
bad files or chunks get clear errors naming what is wrong."""
import warnings

import numpy as np
import pytest

from fastvae.cavi import Catalogue, ConvergenceWarning, EarthquakeMixture, sample_earthquakes, write_catalogue

FITTED = ("means_", "mean_precisions_", "rate_shape_", "rate_rate_", "elbo_trace_")


def _events(n=5000, k=4):
    X, S, *_ = sample_earthquakes(n, k, rho=0.05, alpha=20.0, beta=0.5, random_state=3)
    return X, S


def _fit(X, S=None, **kw):
    est = EarthquakeMixture(4, max_iter=12, tol=0.0, random_state=1, init=kw.pop("init", "kmeans++"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, S, **kw)


def _same(a, b):
    for name in FITTED:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize("n", [5000, 25000])  # 25000 > 20000: k-means++ seeds from a subsample
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_file_and_chunks_equal_in_memory(tmp_path, n, init):
    X, S = _events(n)
    ref = _fit(X, S, init=init)
    path = write_catalogue(tmp_path / "cat.npy", X, S, chunk_size=999)
    _same(_fit(path, chunk_size=777, init=init), ref)
    _same(_fit(X, S, chunk_size=1000, init=init), ref)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "s.npy", S)
    xm, sm = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "s.npy", mmap_mode="r")
    _same(_fit(xm, sm, chunk_size=4096, init=init), ref)
    assert ref.score(X, S) == pytest.approx(ref.score(path, chunk_size=500), rel=1e-12)


def test_catalogue_round_trip(tmp_path):
    X, S = _events(1000)
    cat = Catalogue(write_catalogue(tmp_path / "cat.npy", X, S))
    x, s = cat.read(10, 20)
    assert len(cat) == 1000
    np.testing.assert_array_equal(x, X[10:20])
    np.testing.assert_array_equal(s, S[10:20])
    np.testing.assert_array_equal(cat.take([5, 2, 999]), X[[5, 2, 999]])


def test_write_catalogue_is_atomic(tmp_path):
    X, S = _events(1000)
    path = write_catalogue(tmp_path / "cat.npy", X, S)
    before = path.read_bytes()
    S_bad = S.astype(np.float64)
    S_bad[700] = -1
    with pytest.raises(ValueError, match="S must be non-negative counts"):
        write_catalogue(path, X, S_bad, chunk_size=100)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cat.npy"]


def _write_raw(path, array):
    np.save(path, array)
    return path


def _bad_files(tmp_path):
    X, S = _events(100)
    good = np.column_stack([X, S])
    nan = good.copy()
    nan[42, 1] = np.nan
    frac = good.copy()
    frac[60, 2] = 0.5
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file at all")
    truncated = _write_raw(tmp_path / "trunc.npy", good)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    return [
        ("missing", tmp_path / "nope.npy", "cannot open catalogue file"),
        ("garbage", garbage, "is not a .npy catalogue file"),
        ("two_columns", _write_raw(tmp_path / "two.npy", X), r"shape \(N, 3\)"),
        ("float32", _write_raw(tmp_path / "f32.npy", good.astype(np.float32)), "dtype float32"),
        ("fortran", _write_raw(tmp_path / "fortran.npy", np.asfortranarray(good)), "fortran_order=True"),
        ("truncated", truncated, "is truncated"),
        ("nan", _write_raw(tmp_path / "nan.npy", nan), r"X contains NaN or inf \(catalogue rows 40\.\.59"),
        ("fractional_count", _write_raw(tmp_path / "frac.npy", frac), r"S must be integral counts \(catalogue rows 60"),
    ]


def test_bad_catalogue_files(tmp_path):
    for name, path, message in _bad_files(tmp_path):
        with pytest.raises(ValueError, match=message):
            _fit(path, chunk_size=20)
        assert name


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(chunk_size=0), ValueError, "chunk_size must be a positive integer"),
    (dict(chunk_size=2.5), TypeError, "chunk_size must be an integer"),
    (dict(chunk_size=True), TypeError, "chunk_size must be an integer"),
])
def test_bad_chunk_size(kwargs, exc, message):
    X, S = _events(100)
    with pytest.raises(exc, match=message):
        _fit(X, S, **kwargs)


def test_path_and_counts_conventions(tmp_path):
    X, S = _events(100)
    path = write_catalogue(tmp_path / "cat.npy", X, S)
    with pytest.raises(ValueError, match="S must be None when X is a catalogue file path"):
        _fit(path, S)
    with pytest.raises(TypeError, match="S \\(the counts\\) is required"):
        _fit(X)
    est = _fit(X, S)
    with pytest.raises(ValueError, match="predict_proba: needs events in memory"):
        est.predict_proba(path, None)
    nan = X.copy()
    nan[50] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(rows 40\.\.59\)"):
        _fit(nan, S, chunk_size=20)
