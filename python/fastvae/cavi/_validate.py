"""Shared argument checks for the CAVI estimator and the catalogue sampler, in the style of fastvae._checks:
"<where>: <name> must be ..., got ...", TypeError for the wrong kind, ValueError for the wrong range."""
import math
import numbers

import numpy as np
from scipy.special import digamma, gammaln

from .. import _checks

# Largest log(8 N max(tau, rho, 1) c^2) for coordinates of magnitude <= c: every squared distance, its
# sum over events and its product with a precision stays below 1e300, far from float64's 1.8e308.
_LOG_FLOAT_ROOM = math.log(1e300)


def check_positive(where, name, value):
    """A finite number > 0 (precisions, Gamma shape and rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a positive finite number, got {_checks._show(value)}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be a positive finite number, got {value!r}")
    return float(value)


def check_count(where, name, value):
    """An integer >= 1 (never a float such as 2.0 or 2.5)."""
    v = _checks.integer(where, name, value)
    if v < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {v}")
    return v


def _real_array(where, name, value):
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:  # ragged lists
        raise ValueError(f"{where}: {name} must be an array of numbers, got {_checks._show(value)}") from e
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{where}: {name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def check_pi(pi, k, where="EarthquakeMixture"):
    """Mixing weights: None means uniform; otherwise K positive entries summing to one."""
    if pi is None:
        return np.full(k, 1.0 / k)
    pi = _real_array(where, "pi", pi)
    if pi.shape != (k,):
        raise ValueError(f"{where}: pi must have shape ({k},), got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi <= 0) or abs(pi.sum() - 1.0) > 1e-8:
        raise ValueError(f"{where}: pi must be a probability vector with positive entries summing to 1, got {pi}")
    return pi


def check_nu(nu, where="EarthquakeMixture"):
    arr = _real_array(where, "nu", nu)
    if arr.shape != (2,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: nu must be two finite numbers, got {_checks._show(nu)}")
    return arr


def check_events(X, S, min_events=1, where="EarthquakeMixture"):
    """X (N, 2) finite float64 and S (N,) non-negative integral counts; returns (X float64, S float64)."""
    X = _real_array(where, "X", X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"{where}: X must have shape (N, 2), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{where}: X contains NaN or inf")
    S = np.asarray(S)
    if S.dtype == bool or not (np.issubdtype(S.dtype, np.integer) or np.issubdtype(S.dtype, np.floating)):
        raise TypeError(f"{where}: S must be numeric counts, got dtype {S.dtype}")
    S = S.astype(np.float64)
    if S.shape != (X.shape[0],):
        raise ValueError(f"{where}: S must have shape ({X.shape[0]},), got {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError(f"{where}: S contains NaN or inf")
    if np.any(S < 0):
        raise ValueError(f"{where}: S must be non-negative counts")
    if np.any(S != np.floor(S)):
        raise ValueError(f"{where}: S must be integral counts")
    if np.any(S > 2.0 ** 53):
        raise ValueError(f"{where}: S holds counts above 2^53, not exact in float64 (max {S.max():g})")
    if X.shape[0] < min_events:
        raise ValueError(f"{where}: need N >= n_components = {min_events} events, got N = {X.shape[0]}")
    return np.ascontiguousarray(X), S


def check_scale(where, X, centres, precision):
    """Refuse coordinates so large that squared distances (times ``precision``, summed over events) would
    overflow float64: the responsibilities would be exp(-inf - -inf) = NaN. The model's priors are fixed,
    so rescaling silently would change the model; the caller must rescale X, nu and the precisions."""
    check_scale_of(where, float(np.abs(X).max(initial=0.0)), len(X), centres, precision)


def check_scale_of(where, max_abs, n, centres, precision):
    """check_scale from the largest |coordinate| and the number of events (for chunked or sharded data)."""
    c = max(max_abs, float(np.abs(centres).max(initial=0.0)), 1.0)
    room = math.log(8.0 * max(n, 1) * max(precision, 1.0)) + 2.0 * math.log(c)
    if room > _LOG_FLOAT_ROOM:
        raise ValueError(f"{where}: coordinates up to {c:.3g} with {n} events and precision "
                         f"{precision:g} overflow float64 squared distances; rescale X (and nu, tau, rho) "
                         "to smaller units")


_TINY = float(np.finfo(np.float64).tiny)  # the smallest normal float64, 2.2e-308
_SUBNORMAL = {
    "tau": "tau / 2 rounds or loses its digits and the locations stop counting",
    "rho": "2 / rho, the prior variance term of a component with no events, overflows",
    "alpha": "digamma(alpha) ~ -1 / alpha overflows",
    "beta": "E[lambda] = shape / rate of a component with no events overflows",
}


def check_priors(where, tau, rho, alpha, beta):
    """Refuse priors the float64 arithmetic of CAVI cannot carry (each already a finite number > 0), with the
    reason: a subnormal value (below 2.2e-308), or a Gamma prior whose normaliser or moments overflow:
    digamma(alpha), lgamma(alpha), alpha * log(beta) and the prior mean rate alpha / beta must be finite.
    (pi needs no such check: log pi_k of any positive float64, subnormal included, is finite; precisions so
    large that squared distances overflow are refused by check_scale with the data.)"""
    for name, value in (("tau", tau), ("rho", rho), ("alpha", alpha), ("beta", beta)):
        if value < _TINY:
            raise ValueError(f"{where}: {name} must be a normal float64 number >= {_TINY:.3g}, got {value!r}: "
                             f"subnormal, {_SUBNORMAL[name]}")
    with np.errstate(all="ignore"):
        terms = (("digamma(alpha)", digamma(alpha)), ("lgamma(alpha)", gammaln(alpha)),
                 ("alpha * log(beta)", alpha * math.log(beta)), ("alpha / beta, the prior mean rate", alpha / beta))
    for name, value in terms:
        if not np.isfinite(value):
            raise ValueError(f"{where}: alpha and beta must give a Gamma prior whose terms are finite in float64, got "
                             f"alpha={alpha!r}, beta={beta!r}: {name} overflows")
