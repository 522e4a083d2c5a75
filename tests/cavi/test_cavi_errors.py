"""Bad inputs of the CAVI catalogue reader (load_catalog), sample_earthquakes and the EarthquakeMixture
estimator, one table row each: (id, a factory building the call from a temp folder, the exception type, a
fragment the message must contain; ``{tmp}`` is the temp folder), and the readers' edge cases."""
import re

import numpy as np
import pytest

from fastvae.cavi import EarthquakeMixture, NotFittedError, load_catalog, sample_earthquakes

NAN, INF = float("nan"), float("inf")


def write(folder, name, blob):
    path = folder / name
    path.write_bytes(blob)
    return path


HEADER = "time,latitude,longitude,depth,mag,nst,type\n"


def row(lat="34.1", lon="-117.2", nst="12", kind="earthquake"):
    return f"2024-01-01T00:00:00Z,{lat},{lon},10.0,2.5,{nst},{kind}\n"


def catalog(content, name="cat.csv", **kwargs):
    def build(t, mp):
        path = write(t, name, content if isinstance(content, bytes) else content.encode())
        return lambda: load_catalog(path, **kwargs)
    return build


LOAD_CATALOG = [
    ("latitude_999", catalog(HEADER + row() + row(lat="999")), ValueError,
     "{tmp}/cat.csv, line 3: latitude must be in [-90, 90] degrees, got 999"),
    ("latitude_minus_91", catalog(HEADER + row(lat="-91")), ValueError, "line 2: latitude must be in [-90, 90]"),
    ("longitude_200", catalog(HEADER + row(lon="200")), ValueError, "line 2: longitude must be in [-180, 180]"),
    ("latitude_nan", catalog(HEADER + row(lat="nan")), ValueError, "line 2: latitude must be finite"),
    ("longitude_inf", catalog(HEADER + row(lon="-inf")), ValueError, "line 2: longitude must be finite"),
    ("latitude_text", catalog(HEADER + row(lat="north")), ValueError, "line 2: latitude is not a number: 'north'"),
    ("count_1e30", catalog(HEADER + row() + row() + row(nst="1e30")), ValueError,
     "{tmp}/cat.csv, line 4: nst must be a non-negative integer <= 2^53, got 1e+30"),
    ("count_2_pow_60", catalog(HEADER + row(nst=str(2**60))), ValueError, "nst must be a non-negative integer"),
    ("count_fraction", catalog(HEADER + row(nst="2.5")), ValueError, "line 2: nst must be a non-negative integer"),
    ("count_negative", catalog(HEADER + row(nst="-3")), ValueError, "nst must be a non-negative integer"),
    ("count_nan", catalog(HEADER + row(nst="NaN")), ValueError, "line 2: nst must be finite"),
    ("count_text", catalog(HEADER + row(nst="many")), ValueError, "nst is not a number"),
    ("not_utf8", catalog((HEADER + row()).encode() + b"2024,34.1,-117.2,10,2.5,12,earthq\xe9ake\n"), ValueError,
     "{tmp}/cat.csv, line 3: bytes b'\\xe9' are not UTF-8"),
    ("latin1_header", catalog("time,latitude,longitude,d\xe9pth,mag,nst,type\n".encode("latin-1")), ValueError,
     "line 1: bytes b'\\xe9' are not UTF-8"),
    ("utf16", catalog((HEADER + row()).encode("utf-16")), ValueError, "not UTF-8"),
    ("short_row", catalog(HEADER + row() + "2024,34.1,-117.2\n"), ValueError, "line 3: 3 fields, the header has 7"),
    ("long_row", catalog(HEADER + row().rstrip("\n") + ",extra\n"), ValueError, "line 2: 8 fields, the header has 7"),
    ("open_quote", catalog(HEADER + row() + '2024,"34.1,-117.2,10,2.5,12,earthquake\n'), ValueError,
     "fields, the header has 7"),
    ("huge_field", catalog(HEADER + "2024," + "9" * 200_000 + ",-117.2,10,2.5,12,earthquake\n"), ValueError,
     "line 2: malformed CSV"),
    ("missing_latitude_column", catalog("time,lat,longitude,nst\n1,2,3,4\n"), ValueError,
     "column 'latitude' not in {tmp}/cat.csv"),
    ("missing_count_column", catalog(HEADER + row(), count_column="magNst"), ValueError, "column 'magNst' not in"),
    ("empty_file", catalog(""), ValueError, "column 'latitude' not in"),
    ("bom_twice", catalog(b"\xef\xbb\xbf" * 2 + b"latitude,longitude,nst\n34.1,-117.2,12\n"), ValueError,
     "column 'latitude' not in"),  # only one BOM is a BOM; the second would rename the column
    ("no_usable_rows", catalog(HEADER + row(kind="quarry blast")), ValueError,
     "no usable earthquake rows in {tmp}/cat.csv (1 of other types, 0 with missing values)"),
    ("header_only", catalog(HEADER), ValueError, "no usable earthquake rows"),
    ("path_int", lambda t, mp: lambda: load_catalog(7), TypeError, "load_catalog: path must be a str"),
    ("count_column_int", catalog(HEADER + row(), count_column=6), TypeError, "count_column must be a string"),
    ("event_type_none", catalog(HEADER + row(), event_type=None), TypeError, "event_type must be a string"),
    ("missing_file", lambda t, mp: lambda: load_catalog(t / "nope.csv"), FileNotFoundError, "nope.csv"),
]


def sample(*args, **kwargs):
    return lambda t, mp: lambda: sample_earthquakes(*args, **kwargs)


SAMPLE = [
    ("n_float", sample(2.5, 2), TypeError, "sample_earthquakes: n must be an integer, got 2.5"),
    ("n_float_whole", sample(10.0, 2), TypeError, "n must be an integer, got 10.0"),
    ("n_str", sample("10", 2), TypeError, "n must be an integer"),
    ("n_zero", sample(0, 2), ValueError, "sample_earthquakes: n must be a positive integer, got 0"),
    ("k_float", sample(10, 2.5), TypeError, "n_components must be an integer, got 2.5"),
    ("k_zero", sample(10, 0), ValueError, "n_components must be a positive integer"),
    ("k_bool", sample(10, True), TypeError, "n_components must be an integer"),
    ("nu_nan", sample(10, 2, nu=(NAN, 0)), ValueError, "sample_earthquakes: nu must be two finite numbers"),
    ("nu_inf", sample(10, 2, nu=(0, INF)), ValueError, "nu must be two finite numbers"),
    ("nu_short", sample(10, 2, nu=(0,)), ValueError, "nu must be two finite numbers"),
    ("nu_text", sample(10, 2, nu=("a", "b")), TypeError, "nu must hold real numbers"),
    ("tau_zero", sample(10, 2, tau=0), ValueError, "tau must be a positive finite number"),
    ("tau_str", sample(10, 2, tau="1"), TypeError, "tau must be a positive finite number"),
    ("rho_nan", sample(10, 2, rho=NAN), ValueError, "rho must be a positive finite number"),
    ("alpha_inf", sample(10, 2, alpha=INF), ValueError, "alpha must be a positive finite number"),
    ("beta_negative", sample(10, 2, beta=-1), ValueError, "beta must be a positive finite number"),
    ("rates_too_large", sample(10, 2, alpha=1e300, random_state=0), ValueError, "beyond what a Poisson count"),
    ("pi_not_normalised", sample(10, 2, pi=[0.2, 0.2]), ValueError, "pi must be a probability vector"),
    ("pi_nan", sample(10, 2, pi=[NAN, 1.0]), ValueError, "pi must be a probability vector"),
    ("pi_shape", sample(10, 2, pi=[1.0]), ValueError, "pi must have shape (2,)"),
    ("random_state_float", sample(10, 2, random_state=1.5), TypeError, "random_state must be an integer"),
    ("random_state_negative", sample(10, 2, random_state=-1), ValueError, "random_state must be an integer >= 0"),
]

X0, S0, *_ = sample_earthquakes(40, 2, random_state=0)


def fit(X=X0, S=S0, **params):
    return lambda t, mp: lambda: EarthquakeMixture(params.pop("n_components", 2), **params).fit(X, S)


FITTED = EarthquakeMixture(2, random_state=0).fit(X0, S0)


def fitted(method, X=X0, S=S0):
    return lambda t, mp: lambda: getattr(FITTED, method)(X, S)


def with_value(arr, index, value):
    out = np.array(arr, dtype=np.float64)
    out[index] = value
    return out


MIXTURE = [
    ("k_float", fit(n_components=2.5), TypeError, "EarthquakeMixture: n_components must be an integer, got 2.5"),
    ("k_float_whole", fit(n_components=2.0), TypeError, "n_components must be an integer"),
    ("k_zero", fit(n_components=0), ValueError, "n_components must be a positive integer"),
    ("k_above_n", fit(n_components=50), ValueError, "need N >= n_components = 50"),
    ("tau_zero", fit(tau=0.0), ValueError, "EarthquakeMixture: tau must be a positive finite number"),
    ("tau_str", fit(tau="1"), TypeError, "tau must be a positive finite number"),
    ("rho_nan", fit(rho=NAN), ValueError, "rho must be a positive finite number"),
    ("alpha_negative", fit(alpha=-1.0), ValueError, "alpha must be a positive finite number"),
    ("beta_inf", fit(beta=INF), ValueError, "beta must be a positive finite number"),
    ("pi_bad", fit(pi=[0.9, 0.9]), ValueError, "pi must be a probability vector"),
    ("nu_nan", fit(nu=(NAN, 0.0)), ValueError, "nu must be two finite numbers"),
    ("nu_three", fit(nu=(0.0, 0.0, 0.0)), ValueError, "nu must be two finite numbers"),
    ("max_iter_float", fit(max_iter=1.5), TypeError, "max_iter must be an integer"),
    ("max_iter_zero", fit(max_iter=0), ValueError, "max_iter must be a positive integer"),
    ("n_init_zero", fit(n_init=0), ValueError, "n_init must be a positive integer"),
    ("tol_negative", fit(tol=-1.0), ValueError, "tol must be a non-negative number"),
    ("tol_nan", fit(tol=NAN), ValueError, "tol must be a non-negative number"),
    ("tol_str", fit(tol="0"), TypeError, "tol must be a non-negative number"),
    ("init_unknown", fit(init="kmeans"), ValueError, "init must be one of ['kmeans++', 'random']"),
    ("init_none", fit(init=None), TypeError, "init must be one of"),
    ("random_state_float", fit(random_state=0.5), TypeError, "random_state must be an integer"),
    ("X_shape", fit(X=np.c_[X0, X0]), ValueError, "X must have shape (N, 2)"),
    ("X_1d", fit(X=X0[:, 0]), ValueError, "X must have shape (N, 2)"),
    ("X_nan", fit(X=with_value(X0, (3, 0), NAN)), ValueError, "X contains NaN or inf"),
    ("X_text", fit(X=np.full((40, 2), "a")), TypeError, "X must hold real numbers"),
    ("X_ragged", fit(X=[[1.0, 2.0], [3.0]]), ValueError, "X must be an array of numbers"),
    ("X_1e155", fit(X=X0 * 1e155), ValueError, "EarthquakeMixture.fit: coordinates up to"),
    ("X_1e200", fit(X=X0 * 1e200), ValueError, "overflow float64 squared distances"),
    ("nu_1e200", fit(nu=(1e200, 0.0)), ValueError, "overflow float64 squared distances"),
    ("S_negative", fit(S=S0 - 100), ValueError, "S must be non-negative counts"),
    ("S_fraction", fit(S=S0 + 0.5), ValueError, "S must be integral counts"),
    ("S_1e30", fit(S=with_value(S0, 0, 1e30)), ValueError, "S holds counts above 2^53"),
    ("S_nan", fit(S=with_value(S0, 0, NAN)), ValueError, "S contains NaN or inf"),
    ("S_bool", fit(S=S0 > 1), TypeError, "S must be numeric counts"),
    ("S_shape", fit(S=S0[:-1]), ValueError, "S must have shape (40,)"),
    ("predict_unfitted", lambda t, mp: lambda: EarthquakeMixture(2).predict(X0, S0), NotFittedError, "not fitted"),
    ("score_unfitted", lambda t, mp: lambda: EarthquakeMixture(2).score(X0, S0), NotFittedError, "not fitted"),
    ("predict_proba_1e160", fitted("predict_proba", X=X0 * 1e160), ValueError,
     "EarthquakeMixture.predict_proba: coordinates up to"),
    ("predict_1e300", fitted("predict", X=X0 * 1e300), ValueError, "overflow float64 squared distances"),
    ("score_1e155", fitted("score", X=X0 * 1e155), ValueError, "EarthquakeMixture.score: coordinates up to"),
    ("predict_proba_nan", fitted("predict_proba", X=with_value(X0, (0, 1), NAN)), ValueError, "X contains NaN"),
    ("score_negative_counts", fitted("score", S=-S0 - 1), ValueError, "S must be non-negative"),
    ("predict_shape", fitted("predict", X=X0[:, :1]), ValueError, "X must have shape (N, 2)"),
    ("predict_S_shape", fitted("predict", S=S0[:3]), ValueError, "S must have shape (40,)"),
]

TABLE = [("load_catalog", *r) for r in LOAD_CATALOG] + [("sample_earthquakes", *r) for r in SAMPLE] \
    + [("EarthquakeMixture", *r) for r in MIXTURE]
IDS = [f"{r[0]}-{r[1]}" for r in TABLE]
assert len(IDS) == len(set(IDS)) and len(IDS) >= 40  # the table is whole, its ids unique


@pytest.mark.parametrize("fn, name, build, exc, fragment", TABLE, ids=IDS)
def test_bad_input(fn, name, build, exc, fragment, tmp_path, monkeypatch):
    call = build(tmp_path, monkeypatch)
    with pytest.raises(exc, match=re.escape(fragment.replace("{tmp}", str(tmp_path)))) as err:
        call()
    assert type(err.value) is exc  # not merely a subclass: DataFileError rows say so


def test_catalog_bom_keeps_the_first_column(tmp_path):
    """A UTF-8 byte-order mark is removed, so a BOM-prefixed header still has 'latitude' when it comes first."""
    content = "latitude,longitude,nst,type\n34.5,-117.0,3,earthquake\n"
    plain = write(tmp_path, "plain.csv", content.encode())
    bom = write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + content.encode())
    for path in (plain, bom):
        X, S = load_catalog(path)
        np.testing.assert_array_equal(X, [[-117.0, 34.5]])
        np.testing.assert_array_equal(S, [3])


def test_catalog_accepts_the_range_limits(tmp_path):
    path = write(tmp_path, "edge.csv", (HEADER + row(lat="90", lon="-180", nst=str(2**53))
                                        + row(lat="-90", lon="180", nst="0")).encode())
    X, S = load_catalog(path)
    np.testing.assert_array_equal(X, [[-180.0, 90.0], [180.0, -90.0]])
    assert S.tolist() == [2**53, 0]


@pytest.mark.filterwarnings("ignore::fastvae.cavi.ConvergenceWarning")
def test_large_but_safe_coordinates_give_finite_probabilities():
    """Just below the overflow guard the fit runs and nothing it returns is NaN."""
    est = EarthquakeMixture(2, random_state=0, max_iter=20).fit(X0 * 1e100, S0)
    r = est.predict_proba(X0 * 1e100, S0)
    assert np.all(np.isfinite(r)) and np.allclose(r.sum(axis=1), 1.0)
    assert np.isfinite(est.score(X0 * 1e100, S0)) and np.isfinite(est.elbo_)
