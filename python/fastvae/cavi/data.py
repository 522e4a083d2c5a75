"""Earthquake catalogues for the CAVI mixture: synthetic draws from the model and USGS ComCat CSV files."""
import csv
import io
import math
import os
import warnings

import numpy as np

from .. import _checks
from ._validate import check_count, check_nu, check_pi, check_positive

_MAX_COUNT = 2 ** 53  # larger integers are not exact in float64, which the estimator uses


def sample_earthquakes(n, n_components, *, pi=None, tau=1.0, nu=(0.0, 0.0), rho=1.0, alpha=1.0, beta=1.0,
                       random_state=None):
    """Draw a synthetic catalogue from the earthquake mixture (DD2434 assignment 1B, alternative 1; docs/cavi.md).

    mu_k ~ N(nu, rho^-1 I_2), lambda_k ~ Gamma(alpha, beta) (shape, rate), Z_n ~ Cat(pi),
    X_n | Z_n=k ~ N(mu_k, tau^-1 I_2), S_n | Z_n=k ~ Poisson(lambda_k).

    Returns ``(X, S, Z, mu, lam)``: X (n, 2) float64 locations, S (n,) int64 counts, Z (n,) int64 labels,
    mu (K, 2) float64 cluster means, lam (K,) float64 cluster rates.
    Raises TypeError for a non-integer n / n_components / random_state (2.5 or 2.0 included) or a non-number
    tau/rho/alpha/beta; ValueError for n < 1, n_components < 1, non-positive or non-finite tau/rho/alpha/beta,
    a nu that is not two finite numbers, or a bad pi.
    """
    where = "sample_earthquakes"
    n, k = check_count(where, "n", n), check_count(where, "n_components", n_components)
    for name, v in (("tau", tau), ("rho", rho), ("alpha", alpha), ("beta", beta)):
        check_positive(where, name, v)
    pi = check_pi(pi, k, where)
    nu = check_nu(nu, where)
    if random_state is not None and not isinstance(random_state, np.random.Generator):
        _checks.integer(where, "random_state", random_state, min=0)
    rng = np.random.default_rng(random_state)
    mu = nu + rng.standard_normal((k, 2)) / np.sqrt(rho)
    lam = rng.gamma(alpha, 1.0 / beta, size=k)
    if not np.all(lam < 1e18):  # numpy's Poisson sampler refuses rates near 2^63
        raise ValueError(f"{where}: alpha={alpha:g}, beta={beta:g} drew cluster rates up to {lam.max():.3g}, "
                         "beyond what a Poisson count can hold; use a smaller alpha / beta")
    z = rng.choice(k, size=n, p=pi)
    x = mu[z] + rng.standard_normal((n, 2)) / np.sqrt(tau)
    s = rng.poisson(lam[z]).astype(np.int64)
    return x, s, z.astype(np.int64), mu, lam


def _line_of(data, offset):
    return data.count(b"\n", 0, offset) + 1


def _number(text, where, name):
    """A finite float from a CSV field; None for an empty field (a missing value)."""
    text = text.strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} is not a number: {text[:40]!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{where}: {name} must be finite, got {text[:40]!r}")
    return v


def load_catalog(path, count_column="nst", *, event_type="earthquake"):
    """Read a USGS ComCat CSV (columns time, latitude, longitude, depth, mag, magType, nst, ..., type, ...).

    The file must be UTF-8; a leading UTF-8 byte-order mark (as Excel writes) is accepted and removed, so
    the first column keeps its name.

    Returns ``X`` (N, 2) float64 = (longitude, latitude) in degrees and ``S`` (N,) int64 from the column
    ``count_column`` (e.g. nst, the number of reporting stations). Rows whose ``type`` is not ``event_type``
    are skipped (when the file has a type column); rows with an empty longitude, latitude or count are
    dropped and reported with a UserWarning giving their number.

    Raises:
        TypeError: ``path`` is not a path, ``count_column`` or ``event_type`` not a string.
        FileNotFoundError: no such file. IsADirectoryError: a folder.
        ValueError: a FIFO, a device or a socket (refused without reading); naming the file (and the line, for a bad row): bytes that are not UTF-8, a missing
            column, a row with more or fewer fields than the header, a value that is not a finite number,
            a latitude outside [-90, 90] or a longitude outside [-180, 180] degrees, a count that is
            negative, not an integer or above 2^53 (not exact in float64), or no usable row.
    """
    where = "load_catalog"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {_checks._show(path)}")
    for name, value in (("count_column", count_column), ("event_type", event_type)):
        if not isinstance(value, str):
            raise TypeError(f"{where}: {name} must be a string, got {_checks._show(value)}")
    with _checks.open_regular(where, path) as f:  # a FIFO or a device: ValueError, never a blocked read
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: {path}, line {_line_of(data, e.start)}: bytes {data[e.start:e.end]!r} are "
                         "not UTF-8; save the catalogue as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        fields = [c.strip() for c in next(reader, [])]
        for col in ("latitude", "longitude", count_column):
            if col not in fields:
                raise ValueError(f"{where}: column {col!r} not in {path} (columns: {fields[:30]})")
        i_lat, i_lon, i_cnt = fields.index("latitude"), fields.index("longitude"), fields.index(count_column)
        i_type = fields.index("type") if "type" in fields else None
        xs, ss, dropped, other = [], [], 0, 0
        for row in reader:
            at = f"{where}: {path}, line {reader.line_num}"
            if not row:
                continue  # blank line
            if len(row) != len(fields):
                raise ValueError(f"{at}: {len(row)} fields, the header has {len(fields)}")
            if i_type is not None and row[i_type].strip() != event_type:
                other += 1
                continue
            lon = _number(row[i_lon], at, "longitude")
            lat = _number(row[i_lat], at, "latitude")
            cnt = _number(row[i_cnt], at, count_column)
            if lon is None or lat is None or cnt is None:
                dropped += 1
                continue
            if not -90.0 <= lat <= 90.0:
                raise ValueError(f"{at}: latitude must be in [-90, 90] degrees, got {lat:g}")
            if not -180.0 <= lon <= 180.0:
                raise ValueError(f"{at}: longitude must be in [-180, 180] degrees, got {lon:g}")
            if cnt < 0 or cnt != math.floor(cnt) or cnt > _MAX_COUNT:
                raise ValueError(f"{at}: {count_column} must be a non-negative integer <= 2^53, got {cnt:g}")
            xs.append((lon, lat))
            ss.append(int(cnt))
    except csv.Error as e:  # e.g. a field over csv.field_size_limit(), a stray quote
        raise ValueError(f"{where}: {path}, line {reader.line_num}: malformed CSV ({e})") from None
    if dropped:
        warnings.warn(f"load_catalog: dropped {dropped} rows with missing longitude, latitude or "
                      f"{count_column}", UserWarning, stacklevel=2)
    if not xs:
        raise ValueError(f"{where}: no usable {event_type} rows in {path} ({other} of other types, "
                         f"{dropped} with missing values)")
    return np.asarray(xs, dtype=np.float64), np.asarray(ss, dtype=np.int64)
