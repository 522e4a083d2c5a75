"""Earthquake catalogues for the CAVI mixture: synthetic draws from the model and USGS ComCat CSV files."""
import csv
import warnings

import numpy as np

from ._validate import check_pi, check_positive


def sample_earthquakes(n, n_components, *, pi=None, tau=1.0, nu=(0.0, 0.0), rho=1.0, alpha=1.0, beta=1.0,
                       random_state=None):
    """Draw a synthetic catalogue from the earthquake mixture (DD2434 assignment 1B, PRESETS.md s.4).

    mu_k ~ N(nu, rho^-1 I_2), lambda_k ~ Gamma(alpha, beta) (shape, rate), Z_n ~ Cat(pi),
    X_n | Z_n=k ~ N(mu_k, tau^-1 I_2), S_n | Z_n=k ~ Poisson(lambda_k).

    Returns ``(X, S, Z, mu, lam)``: X (n, 2) float64 locations, S (n,) int64 counts, Z (n,) int64 labels,
    mu (K, 2) float64 cluster means, lam (K,) float64 cluster rates.
    Raises ValueError for n < 1, n_components < 1, non-positive tau/rho/alpha/beta or a bad pi.
    """
    n, k = int(n), int(n_components)
    if n < 1 or k < 1:
        raise ValueError(f"sample_earthquakes: need n >= 1 and n_components >= 1, got {n}, {k}")
    for name, v in (("tau", tau), ("rho", rho), ("alpha", alpha), ("beta", beta)):
        check_positive(name, v)
    pi = check_pi(pi, k)
    nu = np.asarray(nu, dtype=np.float64)
    rng = np.random.default_rng(random_state)
    mu = nu + rng.standard_normal((k, 2)) / np.sqrt(rho)
    lam = rng.gamma(alpha, 1.0 / beta, size=k)
    z = rng.choice(k, size=n, p=pi)
    x = mu[z] + rng.standard_normal((n, 2)) / np.sqrt(tau)
    s = rng.poisson(lam[z]).astype(np.int64)
    return x, s, z.astype(np.int64), mu, lam


def load_catalog(path, count_column="nst", *, event_type="earthquake"):
    """Read a USGS ComCat CSV (columns time, latitude, longitude, depth, mag, magType, nst, ..., type, ...).

    Returns ``X`` (N, 2) float64 = (longitude, latitude) in degrees and ``S`` (N,) int64 from the column
    ``count_column`` (e.g. nst, the number of reporting stations). Rows whose ``type`` is not ``event_type``
    are skipped (when the file has a type column); rows with a missing or non-numeric longitude, latitude
    or count are dropped and reported with a UserWarning giving their number.
    Raises ValueError for a missing column, a negative or non-integral count, or no usable row.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        for col in ("latitude", "longitude", count_column):
            if col not in fields:
                raise ValueError(f"load_catalog: column {col!r} not in {path} (columns: {fields})")
        has_type = "type" in fields
        xs, ss, dropped, other = [], [], 0, 0
        for row in reader:
            if has_type and row["type"].strip() != event_type:
                other += 1
                continue
            try:
                lon, lat, cnt = float(row["longitude"]), float(row["latitude"]), float(row[count_column])
            except (TypeError, ValueError):  # empty field or short row
                dropped += 1
                continue
            if not (np.isfinite(lon) and np.isfinite(lat) and np.isfinite(cnt)):
                dropped += 1
                continue
            if cnt < 0 or cnt != np.floor(cnt):
                raise ValueError(f"load_catalog: {count_column} must be a non-negative integer, got {cnt} "
                                 f"at line {reader.line_num}")
            xs.append((lon, lat))
            ss.append(int(cnt))
    if dropped:
        warnings.warn(f"load_catalog: dropped {dropped} rows with missing longitude, latitude or "
                      f"{count_column}", UserWarning, stacklevel=2)
    if not xs:
        raise ValueError(f"load_catalog: no usable {event_type} rows in {path} ({other} of other types, "
                         f"{dropped} with missing values)")
    return np.asarray(xs, dtype=np.float64), np.asarray(ss, dtype=np.int64)
