"""Shared argument checks for the CAVI estimator and the catalogue sampler (ValueError with the name)."""
import numbers

import numpy as np


def check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_pi(pi, k):
    """Mixing weights: None means uniform; otherwise K positive entries summing to one."""
    if pi is None:
        return np.full(k, 1.0 / k)
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != (k,):
        raise ValueError(f"pi must have shape ({k},), got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi <= 0) or abs(pi.sum() - 1.0) > 1e-8:
        raise ValueError(f"pi must be a probability vector with positive entries summing to 1, got {pi}")
    return pi


def check_nu(nu):
    nu = np.asarray(nu, dtype=np.float64)
    if nu.shape != (2,) or not np.all(np.isfinite(nu)):
        raise ValueError(f"nu must be two finite numbers, got {nu!r}")
    return nu


def check_events(X, S, min_events=1):
    """X (N, 2) finite float64 and S (N,) non-negative integral counts; returns (X float64, S float64)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (N, 2), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    S = np.asarray(S)
    if S.dtype == bool or not (np.issubdtype(S.dtype, np.integer) or np.issubdtype(S.dtype, np.floating)):
        raise ValueError(f"S must be numeric counts, got dtype {S.dtype}")
    S = S.astype(np.float64)
    if S.shape != (X.shape[0],):
        raise ValueError(f"S must have shape ({X.shape[0]},), got {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError("S contains NaN or inf")
    if np.any(S < 0):
        raise ValueError("S must be non-negative counts")
    if np.any(S != np.floor(S)):
        raise ValueError("S must be integral counts")
    if X.shape[0] < min_events:
        raise ValueError(f"need N >= n_components = {min_events} events, got N = {X.shape[0]}")
    return np.ascontiguousarray(X), S
