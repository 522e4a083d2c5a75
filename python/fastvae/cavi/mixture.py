"""Coordinate-ascent variational inference (CAVI) for the Bayesian earthquake mixture.

Model and updates: DD2434 assignment 1B, alternative 1 (settings in docs/cavi.md); the CAVI scheme is
Blei, Kucukelbir & McAuliffe (2017), "Variational inference: a review for statisticians", s.2.4.
The ELBO (derived in docs/cavi.md) keeps every constant, so it is a true lower bound on log p(X, S).
"""
import inspect
import os
import numbers
import warnings

import numpy as np
import torch
from scipy.special import gammaln

from . import _ops
from .. import _checks
from ._reduce import Reducer, resolve_group
from ._validate import (check_count, check_events, check_nu, check_pi, check_positive, check_priors, check_scale,
                        check_scale_of)
from .catalogue import open_events

_WHERE = "EarthquakeMixture"


class ConvergenceWarning(UserWarning):
    """CAVI stopped at max_iter before the relative ELBO change fell below tol."""


class NotFittedError(ValueError, AttributeError):
    """The estimator was used before fit."""


def _kmeanspp(x, k, rng, n_trials):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007): k rows of x by D^2 sampling."""
    centres = [x[rng.integers(len(x))]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else None
        cand = rng.choice(len(x), size=n_trials, p=p)
        cand_d2 = np.minimum(d2, np.sum((x[None, :, :] - x[cand][:, None, :]) ** 2, axis=2))
        best = int(np.argmin(cand_d2.sum(axis=1)))
        centres.append(x[cand[best]])
        d2 = cand_d2[best]
    return np.array(centres)


def _estep(events, reducer, k, q, tau):
    """The fused q(Z) update summed over the chunks and ranks: stats [K, 5] and entropy, one all_reduce."""
    total = torch.zeros(5 * k + 1, dtype=torch.float64)
    for x, s in events.chunks(check=False):
        # torch wants writable arrays; read-only ones (memory maps, the user's) are copied chunk by chunk
        x, s = np.require(x, np.float64, ["W"]), np.require(s, np.float64, ["W"])
        stats, ent = _ops.estep(torch.from_numpy(x), torch.from_numpy(s), *q, tau)
        total[:-1] += stats.reshape(-1)
        total[-1] += ent
    reducer.sum(total)
    return total[:-1].view(k, 5), total[-1]


class EarthquakeMixture:
    """Mean-field CAVI for the mixture of 2-D Gaussian locations and Poisson counts.

    Z_n ~ Cat(pi), X_n | Z_n=k ~ N(mu_k, tau^-1 I_2), S_n | Z_n=k ~ Poisson(lambda_k),
    mu_k ~ N(nu, rho^-1 I_2), lambda_k ~ Gamma(alpha, beta) (shape, rate); pi, tau, nu, rho, alpha, beta fixed.
    q(Z_n) = Cat(r_n), q(mu_k) = N(means_[k], mean_precisions_[k]^-1 I_2), q(lambda_k) = Gamma(rate_shape_[k],
    rate_rate_[k]).

    Parameters
    ----------
    n_components : int, K >= 1.
    pi : (K,) mixing weights, positive, summing to one; None means uniform.
    tau, rho : positive precisions of the locations and of the cluster-mean prior (units 1/location^2).
    nu : (2,) prior mean of the cluster means.
    alpha, beta : positive shape and rate of the Gamma prior on each cluster's rate.
    max_iter : iterations; one iteration updates q(Z), then q(mu), then q(lambda).
    tol : stop when |ELBO_t - ELBO_{t-1}| <= tol * |ELBO_t|.
    n_init : restarts; the one with the highest final ELBO is kept.
    init : "kmeans++" (greedy k-means++ seeds on at most 20000 sampled events) or "random" (K random
        events) for the initial m_k; q(lambda_k) starts at the pooled rate, so the first q(Z) update
        is driven by the locations.
    random_state : None, int or numpy Generator.

    Fitted attributes: means_ (K, 2), mean_precisions_ (K,), rate_shape_ (K,), rate_rate_ (K,),
    elbo_ (float, nats, total over events), elbo_history_ (n_iter_,) ELBO after each iteration,
    elbo_trace_ (n_iter_, 3) ELBO after the q(Z), q(mu) and q(lambda) updates of each iteration,
    n_iter_, converged_, n_features_in_ = 2.
    Bad arguments or data raise TypeError (wrong kind: a float for an integer, a string for a number) or
    ValueError (wrong range, NaN, shapes, coordinates so large that squared distances overflow float64 --
    rescale them, the priors are fixed --, priors that float64 cannot carry: subnormal tau, rho, alpha or beta, a
    Gamma prior whose digamma(alpha), lgamma(alpha), alpha log(beta) or alpha / beta overflows, and an ELBO that
    is not finite during the fit, which is never reported as converged); predict/score before fit raise NotFittedError. Responsibilities,
    predictions and scores are never NaN: such input is refused instead.
    """

    def __init__(self, n_components, *, pi=None, tau=1.0, nu=(0.0, 0.0), rho=1.0, alpha=1.0, beta=1.0,
                 max_iter=200, tol=1e-8, n_init=1, init="kmeans++", random_state=None):
        self.n_components = n_components
        self.pi = pi
        self.tau = tau
        self.nu = nu
        self.rho = rho
        self.alpha = alpha
        self.beta = beta
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init = init
        self.random_state = random_state

    # scikit-learn estimator conventions
    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for EarthquakeMixture (valid: {valid})")
            setattr(self, name, value)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"EarthquakeMixture({args})"

    def _check_params(self):
        k = check_count(_WHERE, "n_components", self.n_components)
        for name in ("tau", "rho", "alpha", "beta"):
            check_positive(_WHERE, name, getattr(self, name))
        check_priors(_WHERE, float(self.tau), float(self.rho), float(self.alpha), float(self.beta))
        for name in ("max_iter", "n_init"):
            check_count(_WHERE, name, getattr(self, name))
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real):
            raise TypeError(f"{_WHERE}: tol must be a non-negative number, got {self.tol!r}")
        if not self.tol >= 0 or not np.isfinite(self.tol):
            raise ValueError(f"{_WHERE}: tol must be a non-negative number, got {self.tol!r}")
        _checks.choice(_WHERE, "init", self.init, ("kmeans++", "random"))
        if self.random_state is not None and not isinstance(self.random_state, np.random.Generator):
            _checks.integer(_WHERE, "random_state", self.random_state, min=0)
        return check_pi(self.pi, k), check_nu(self.nu)

    def _initialise(self, rng, data):
        """Initial q(mu), q(lambda) from the global data; identical on every rank and for any chunking."""
        k, n = self.n_components, data["n"]
        if self.init == "kmeans++":
            index = np.arange(n) if n <= 20000 else rng.choice(n, 20000, replace=False)
            m = _kmeanspp(data["gather"](index), k, rng, 2 + int(np.log(k)))
        else:
            m = data["gather"](rng.choice(n, k, replace=False))
        size = n / k
        prec = np.full(k, self.rho + self.tau * size)
        shape = np.full(k, self.alpha + data["sum_s"] / n * size)
        rate = np.full(k, self.beta + size)
        return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in (m, prec, shape, rate)]

    def _scan(self, events, reducer, nu, centres=None, where=_WHERE + ".fit", min_events=None):
        """One validating pass over the events: global N, sum S, sum log S! and the overflow check. Every
        rank learns whether any rank failed before anyone waits in a later collective."""
        error, local = None, np.zeros(4)
        try:
            for x, s in events.chunks():
                local[1] += s.sum()
                local[2] += gammaln(s + 1.0).sum()
                local[3] = max(local[3], float(np.abs(x).max(initial=0.0)))
            local[0] = events.n
        except (TypeError, ValueError) as e:
            error = e
        reducer.agree(error)
        offset, n = reducer.offsets(events.n)
        sums = reducer.sum(torch.from_numpy(local[:3].copy())).numpy()
        max_abs = float(reducer.max(torch.from_numpy(local[3:].copy()))[0])
        min_events = self.n_components if min_events is None else min_events
        if n < min_events:
            need = f"n_components = {min_events}" if min_events == self.n_components else str(min_events)
            raise ValueError(f"{_WHERE}: need N >= {need} events, got N = {n}")
        check_scale_of(where, max_abs, n, nu if centres is None else centres, max(self.tau, self.rho))
        return dict(n=n, sum_s=float(sums[1]), log_fact=float(sums[2]),
                    gather=lambda index: reducer.gather_rows(events.take, index, offset, events.n))

    def fit(self, X, S=None, *, chunk_size=None, process_group="auto"):
        """Fit q by CAVI; returns self.

        Args:
            X: (N, 2) float64 locations with S (N,) non-negative integral counts (arrays, or memory maps read
                ``chunk_size`` rows at a time), or the path of a catalogue file (S=None;
                :func:`fastvae.cavi.write_catalogue`), read in chunks with memory bounded by ``chunk_size``.
            chunk_size: events per E-step call (int >= 1); None: all in-memory events at once, 2^20 rows of
                a file. The result does not depend on it beyond float64 rounding of the sums.
            process_group: ``"auto"`` (default): if torch.distributed is initialised, (X, S) is this rank's
                shard of the catalogue (rank r holds the rows after those of ranks < r) and the E-step's
                sums are all-reduced over the default group, once per iteration, so every rank gets the q
                and ELBO of one process on all the data; None: no reduction; or a ProcessGroup to reduce
                over. Ranks must use the same estimator parameters (and the same random_state, or None).

        Raises:
            TypeError / ValueError for bad parameters or events (on every rank of a group if one rank's
            events are bad), ValueError for an unreadable catalogue file; RuntimeError from
            torch.distributed if a rank stops during the fit (after the group's timeout at most).
        """
        pi, nu = self._check_params()
        reducer = Reducer(resolve_group(_WHERE, process_group))
        try:
            events = open_events(_WHERE, X, S, chunk_size)
        except (TypeError, ValueError) as e:
            reducer.agree(e)
        data = self._scan(events, reducer, nu)
        log_pi = torch.from_numpy(np.log(pi))
        prior = dict(tau=self.tau, nu=nu, rho=self.rho, alpha=self.alpha, beta=self.beta)
        rng = np.random.default_rng(reducer.seed(self.random_state))
        best = None
        for _ in range(self.n_init):
            run = self._fit_one(events, reducer, log_pi, data["log_fact"], prior, self._initialise(rng, data))
            if best is None or run[0][-1, 2] > best[0][-1, 2]:
                best = run
        trace, converged, (m, prec, shape, rate) = best
        self.means_, self.mean_precisions_ = m.numpy(), prec.numpy()
        self.rate_shape_, self.rate_rate_ = shape.numpy(), rate.numpy()
        self.elbo_trace_ = trace
        self.elbo_history_ = trace[:, 2].copy()
        self.elbo_ = float(trace[-1, 2])
        self.n_iter_, self.converged_ = len(trace), converged
        self.n_features_in_ = 2
        self._log_pi, self._prior = log_pi, prior
        if not converged:
            warnings.warn(f"EarthquakeMixture did not converge in {self.max_iter} iterations (relative ELBO "
                          f"change above tol={self.tol}); increase max_iter or tol", ConvergenceWarning,
                          stacklevel=2)
        return self

    def _fit_one(self, events, reducer, log_pi, log_fact, prior, q):
        m, prec, shape, rate = q
        trace, prev, converged = [], None, False
        k = self.n_components

        def elbo(stats, ent):
            return _ops.elbo(stats, ent, log_fact, log_pi, m, prec, shape, rate, **prior)

        for _ in range(self.max_iter):
            stats, ent = _estep(events, reducer, k, (log_pi, m, prec, shape, rate), self.tau)
            after_z = elbo(stats, ent)
            m, prec = _ops.update_mu(stats, self.tau, prior["nu"], self.rho)
            after_mu = elbo(stats, ent)
            shape, rate = _ops.update_lambda(stats, self.alpha, self.beta)
            after_lambda = elbo(stats, ent)
            trace.append((after_z, after_mu, after_lambda))
            if not np.isfinite(after_lambda):  # never "converged" on a NaN or an infinite bound
                raise ValueError(f"{_WHERE}.fit: the ELBO is not finite ({after_lambda}) at iteration {len(trace)} "
                                 f"although the events and the priors are (tau={self.tau!r}, rho={self.rho!r}, "
                                 f"alpha={self.alpha!r}, beta={self.beta!r}): float64 cannot carry these priors "
                                 "with this data; rescale the data or use less extreme priors")
            if prev is not None and abs(after_lambda - prev) <= self.tol * abs(after_lambda):
                converged = True
                break
            prev = after_lambda
        return np.array(trace), converged, (m, prec, shape, rate)

    def _check_fitted(self):
        if not hasattr(self, "means_"):
            raise NotFittedError("this EarthquakeMixture is not fitted yet; call fit(X, S) first")

    def _q(self):
        return [torch.from_numpy(a) for a in (self.means_, self.mean_precisions_, self.rate_shape_,
                                                 self.rate_rate_)]

    def predict_proba(self, X, S):
        """q(Z_n = k) for the given in-memory events under the fitted q(mu), q(lambda): (N, K) float64.

        Raises ValueError for a catalogue path (the (N, K) result would not fit where the events do not;
        read the rows you need with ``fastvae.cavi.Catalogue(path).read(a, b)``)."""
        self._check_fitted()
        if isinstance(X, (str, os.PathLike)):
            raise ValueError(f"{_WHERE}.predict_proba: needs events in memory, got the catalogue path {X!r}; "
                             "pass Catalogue(path).read(start, stop) for the rows you need")
        X, S = check_events(X, S)
        check_scale(_WHERE + ".predict_proba", X, self.means_, self.tau)
        r = _ops.responsibilities(torch.from_numpy(X), torch.from_numpy(S), self._log_pi, *self._q(), self.tau)
        return r.numpy()

    def predict(self, X, S):
        """Most probable component of each event: (N,) int64."""
        return self.predict_proba(X, S).argmax(axis=1)

    def score(self, X, S=None, *, chunk_size=None):
        """ELBO per event (nats) with q(Z) optimised for the given events and the fitted q(mu), q(lambda).

        X, S and chunk_size as in :meth:`fit` (a catalogue path is streamed); no reduction over ranks.
        On the training data this is >= elbo_ / N (one more q(Z) coordinate step).
        """
        self._check_fitted()
        events = open_events(_WHERE, X, S, chunk_size)
        data = self._scan(events, Reducer(None), self._prior["nu"], np.vstack([self.means_, self._prior["nu"]]),
                          _WHERE + ".score", min_events=1)
        q = self._q()
        stats, ent = _estep(events, Reducer(None), self.n_components, (self._log_pi, *q), self.tau)
        total = _ops.elbo(stats, ent, data["log_fact"], self._log_pi, *q, **self._prior)
        return total / data["n"]
