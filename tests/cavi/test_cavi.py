"""CAVI for the earthquake mixture: kernels against a NumPy reference written from the model's definitions
(DD2434 assignment 1B, alternative 1; docs/cavi.md), the ELBO against the exact log evidence, monotonicity, recovery,
estimator conventions, errors, and the catalogue reader."""
import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import digamma, gammaln, logsumexp, xlogy
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from fastvae.cavi import ConvergenceWarning, EarthquakeMixture, NotFittedError, load_catalog, sample_earthquakes
from fastvae.cavi import _ops

RTOL = 1e-10


# ---------------------------------------------------------------- NumPy reference of the same updates
def ref_log_resp(X, S, pi, m, prec, a, b, tau):
    elog, elam = digamma(a) - np.log(b), a / b
    sq = ((X[:, None, :] - m[None]) ** 2).sum(-1) + 2.0 / prec  # E||x_n - mu_k||^2
    logit = np.log(pi) - 0.5 * tau * sq + S[:, None] * elog - elam
    return logit - logsumexp(logit, axis=1, keepdims=True)


def ref_update_mu(r, X, tau, nu, rho):
    nk = r.sum(0)
    prec = rho + tau * nk
    return (rho * np.asarray(nu) + tau * r.T @ X) / prec[:, None], prec


def ref_update_lambda(r, S, alpha, beta):
    return alpha + r.T @ S, beta + r.sum(0)


def ref_elbo(r, X, S, pi, m, prec, a, b, tau, nu, rho, alpha, beta):
    """E_q log p(X, S, Z, mu, lambda) + H[q], term by term over events and components."""
    elog, elam = digamma(a) - np.log(b), a / b
    sq = ((X[:, None, :] - m[None]) ** 2).sum(-1) + 2.0 / prec
    loglik_x = -np.log(2 * np.pi / tau) - 0.5 * tau * sq
    loglik_s = S[:, None] * elog - elam - gammaln(S + 1.0)[:, None]
    total = np.sum(r * (loglik_x + loglik_s + np.log(pi)))
    for k in range(len(pi)):
        e_log_prior_mu = stats.multivariate_normal(nu, np.eye(2) / rho).logpdf(m[k]) - rho / prec[k]
        e_log_prior_lam = alpha * np.log(beta) - gammaln(alpha) + (alpha - 1) * elog[k] - beta * elam[k]
        h_mu = stats.multivariate_normal(m[k], np.eye(2) / prec[k]).entropy()
        h_lam = stats.gamma(a[k], scale=1.0 / b[k]).entropy()
        total += e_log_prior_mu + e_log_prior_lam + h_mu + h_lam
    return total - np.sum(xlogy(r, r))


def ref_cavi(X, S, pi, q, n_iter, tau, nu, rho, alpha, beta):
    m, prec, a, b = q
    trace = []
    for _ in range(n_iter):
        r = np.exp(ref_log_resp(X, S, pi, m, prec, a, b, tau))
        trace.append(ref_elbo(r, X, S, pi, m, prec, a, b, tau, nu, rho, alpha, beta))
        m, prec = ref_update_mu(r, X, tau, nu, rho)
        trace.append(ref_elbo(r, X, S, pi, m, prec, a, b, tau, nu, rho, alpha, beta))
        a, b = ref_update_lambda(r, S, alpha, beta)
        trace.append(ref_elbo(r, X, S, pi, m, prec, a, b, tau, nu, rho, alpha, beta))
    return (m, prec, a, b), np.array(trace)


def random_problem(seed, n=300, k=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 3, (n, 2))
    S = rng.poisson(rng.uniform(0.5, 20), n).astype(np.float64)
    pi = rng.dirichlet(np.ones(k) * 3)
    q = (rng.normal(0, 3, (k, 2)), rng.uniform(0.5, 50, k), rng.uniform(0.5, 100, k), rng.uniform(0.5, 20, k))
    prior = dict(tau=rng.uniform(0.2, 3), nu=rng.normal(0, 1, 2), rho=rng.uniform(0.05, 2),
                 alpha=rng.uniform(0.5, 5), beta=rng.uniform(0.2, 3))
    return X, S, pi, q, prior


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("seed,n", [(0, 1), (1, 7), (2, 300), (3, 5000)])
def test_kernels_match_numpy_reference(seed, n):
    X, S, pi, q, pr = random_problem(seed, n=n, k=4)
    m, prec, a, b = q
    r = np.exp(ref_log_resp(X, S, pi, m, prec, a, b, pr["tau"]))
    st, ent = _ops.estep(t(X), t(S), t(np.log(pi)), *map(t, q), pr["tau"])
    ref_stats = np.stack([r.sum(0), r.T @ X[:, 0], r.T @ X[:, 1], r.T @ (X ** 2).sum(1), r.T @ S], axis=1)
    np.testing.assert_allclose(st.numpy(), ref_stats, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(float(ent), -np.sum(xlogy(r, r)), rtol=RTOL, atol=1e-12)
    resp = _ops.responsibilities(t(X), t(S), t(np.log(pi)), *map(t, q), pr["tau"])
    np.testing.assert_allclose(resp.numpy(), r, rtol=RTOL, atol=1e-14)
    m2, p2 = _ops.update_mu(st, pr["tau"], pr["nu"], pr["rho"])
    rm, rp = ref_update_mu(r, X, pr["tau"], pr["nu"], pr["rho"])
    np.testing.assert_allclose(m2.numpy(), rm, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(p2.numpy(), rp, rtol=RTOL)
    a2, b2 = _ops.update_lambda(st, pr["alpha"], pr["beta"])
    ra, rb = ref_update_lambda(r, S, pr["alpha"], pr["beta"])
    np.testing.assert_allclose(a2.numpy(), ra, rtol=RTOL)
    np.testing.assert_allclose(b2.numpy(), rb, rtol=RTOL)
    got = _ops.elbo(st, ent, gammaln(S + 1).sum(), t(np.log(pi)), *map(t, q), **pr)
    want = ref_elbo(r, X, S, pi, m, prec, a, b, **pr)
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_estep_deterministic_across_thread_counts():
    X, S, pi, q, pr = random_problem(5, n=50_000, k=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _ops.estep(t(X), t(S), t(np.log(pi)), *map(t, q), pr["tau"])
        torch.set_num_threads(2)
        two = _ops.estep(t(X), t(S), t(np.log(pi)), *map(t, q), pr["tau"])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_ops_fake_kernels_and_schemas():
    X, S, pi, q, pr = random_problem(6, n=20, k=3)
    args = (t(X), t(S), t(np.log(pi)), *map(t, q), pr["tau"])
    torch.library.opcheck(torch.ops.fastvae.cavi_estep, args, test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.fastvae.cavi_responsibilities, args,
                          test_utils=("test_schema", "test_faketensor"))
    st, _ = _ops.estep(*args)
    torch.library.opcheck(torch.ops.fastvae.cavi_update_mu, (st, 1.0, [0.0, 0.0], 1.0),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.fastvae.cavi_update_lambda, (st, 1.0, 1.0),
                          test_utils=("test_schema", "test_faketensor"))


def test_op_errors():
    X, S, pi, q, pr = random_problem(7, n=10, k=2)
    lp = t(np.log(pi))
    with pytest.raises(RuntimeError, match="float64"):
        _ops.estep(t(X).float(), t(S), lp, *map(t, q), 1.0)
    with pytest.raises(RuntimeError, match=r"x must be \[N, 2\]"):
        _ops.estep(t(np.c_[X, X]), t(S), lp, *map(t, q), 1.0)
    with pytest.raises(RuntimeError, match="must be positive"):
        _ops.estep(t(X), t(S), lp, t(q[0]), -t(q[1]), t(q[2]), t(q[3]), 1.0)
    with pytest.raises(RuntimeError, match="tau must be positive"):
        _ops.estep(t(X), t(S), lp, *map(t, q), 0.0)
    X[3, 1] = np.nan
    with pytest.raises(RuntimeError, match="non-finite"):
        _ops.estep(t(X), t(S), lp, *map(t, q), 1.0)


# ---------------------------------------------------------------- full fits
def test_fit_matches_numpy_reference_cavi():
    X, S, _, _, _ = sample_earthquakes(400, 3, rho=0.1, alpha=5.0, beta=0.5, random_state=11)
    pi = np.array([0.5, 0.3, 0.2])
    pr = dict(tau=1.3, nu=np.array([0.5, -0.2]), rho=0.1, alpha=5.0, beta=0.5)
    est = EarthquakeMixture(3, pi=pi, max_iter=15, tol=1e-12, random_state=4, **pr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, S)
    data = dict(n=len(X), sum_s=float(S.sum()), gather=lambda index: X[index])
    q0 = [a.numpy() for a in est._initialise(np.random.default_rng(4), data)]
    (m, prec, a, b), trace = ref_cavi(X, S.astype(float), pi, q0, est.n_iter_, **pr)
    np.testing.assert_allclose(est.means_, m, rtol=RTOL)
    np.testing.assert_allclose(est.mean_precisions_, prec, rtol=RTOL)
    np.testing.assert_allclose(est.rate_shape_, a, rtol=RTOL)
    np.testing.assert_allclose(est.rate_rate_, b, rtol=RTOL)
    np.testing.assert_allclose(est.elbo_trace_.ravel(), trace, rtol=RTOL)
    assert est.elbo_ == est.elbo_history_[-1] == est.elbo_trace_[-1, 2]


def exact_log_evidence(X, S, pi, tau, nu, rho, alpha, beta):
    """log p(X, S): sum over all K^N assignments; given Z, each cluster's mean and rate integrate out in closed
    form (Gaussian with covariance tau^-1 I + rho^-1 11^T per coordinate; Poisson-Gamma for the counts)."""
    n, k = len(X), len(pi)
    terms = []
    for z in itertools.product(range(k), repeat=n):
        z = np.array(z)
        lp = np.log(pi)[z].sum()
        for c in range(k):
            idx = z == c
            nc = idx.sum()
            if nc == 0:
                continue
            cov = np.eye(nc) / tau + np.ones((nc, nc)) / rho
            for d in range(2):
                lp += stats.multivariate_normal(np.full(nc, nu[d]), cov).logpdf(X[idx, d])
            sc = S[idx].sum()
            lp += (alpha * np.log(beta) - gammaln(alpha) + gammaln(alpha + sc) - (alpha + sc) * np.log(beta + nc)
                   - gammaln(S[idx] + 1).sum())
        terms.append(lp)
    return logsumexp(terms)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elbo_below_exact_log_evidence(seed):
    pr = dict(tau=2.0, nu=np.array([0.3, -0.1]), rho=0.3, alpha=3.0, beta=0.7)
    X, S, *_ = sample_earthquakes(8, 2, random_state=seed, **pr)
    pi = np.array([0.4, 0.6])
    log_z = exact_log_evidence(X, S.astype(float), pi, **pr)
    est = EarthquakeMixture(2, pi=pi, max_iter=500, tol=1e-13, n_init=3, random_state=seed, **pr).fit(X, S)
    assert est.elbo_ <= log_z
    assert log_z - est.elbo_ < 3.0  # a loose bound on the mean-field gap: a far-too-low ELBO fails


def test_single_component_elbo_is_exact_evidence():
    # With K = 1 the posterior of (mu, lambda) factorises and is conjugate, so CAVI is exact: ELBO = log p(X, S).
    pr = dict(tau=0.7, nu=np.array([1.0, 2.0]), rho=0.4, alpha=2.5, beta=1.5)
    X, S, *_ = sample_earthquakes(8, 1, random_state=3, **pr)
    est = EarthquakeMixture(1, max_iter=5, tol=1e-14, **pr).fit(X, S)
    log_z = exact_log_evidence(X, S.astype(float), np.array([1.0]), **pr)
    np.testing.assert_allclose(est.elbo_, log_z, rtol=1e-12)


def test_elbo_monotone_on_50_problems():
    for seed in range(50):
        rng = np.random.default_rng(1000 + seed)
        k = int(rng.integers(2, 7))
        pr = dict(tau=rng.uniform(0.3, 3), nu=rng.normal(0, 1, 2), rho=rng.uniform(0.02, 1),
                  alpha=rng.uniform(0.5, 10), beta=rng.uniform(0.1, 2))
        X, S, *_ = sample_earthquakes(int(rng.integers(50, 2000)), k, random_state=seed, **pr)
        pi = rng.dirichlet(np.full(k, 2.0))
        est = EarthquakeMixture(k, pi=pi, max_iter=40, tol=0.0, init=("kmeans++", "random")[seed % 2],
                                random_state=seed, **pr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, S)
        steps = np.diff(est.elbo_trace_.ravel())
        assert steps.min() >= -1e-9 * abs(est.elbo_), (seed, steps.min())


def test_recovers_well_separated_clusters():
    pr = dict(tau=1.0, nu=(0.0, 0.0), rho=0.005, alpha=20.0, beta=1.0)
    X, S, Z, mu, lam = sample_earthquakes(10_000, 4, random_state=2, **pr)
    dist = np.linalg.norm(mu[:, None] - mu[None], axis=-1) + np.eye(4) * 1e9
    assert dist.min() > 8.0  # the precondition "well separated" (8 standard deviations of a cluster)
    est = EarthquakeMixture(4, random_state=0, **pr).fit(X, S)
    assert est.converged_
    assert adjusted_rand_score(Z, est.predict(X, S)) >= 0.95
    row, col = linear_sum_assignment(np.linalg.norm(est.means_[:, None] - mu[None], axis=-1))
    assert np.abs(est.means_[row] - mu[col]).max() <= 0.1
    rates = est.rate_shape_ / est.rate_rate_
    np.testing.assert_allclose(rates[row], lam[col], rtol=0.05)


# ---------------------------------------------------------------- estimator conventions
def test_sklearn_conventions():
    X, S, *_ = sample_earthquakes(500, 3, rho=0.05, alpha=5.0, random_state=1)
    est = EarthquakeMixture(3, tau=2.0, random_state=0)
    params = est.get_params()
    assert params["n_components"] == 3 and params["tau"] == 2.0 and params["init"] == "kmeans++"
    assert set(params) == {"n_components", "pi", "tau", "nu", "rho", "alpha", "beta", "max_iter", "tol",
                           "n_init", "init", "random_state"}
    assert est.set_params(tau=1.0, rho=0.05) is est and est.tau == 1.0
    with pytest.raises(ValueError, match="invalid parameter 'sigma'"):
        est.set_params(sigma=1.0)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(X, S)
    assert not hasattr(est, "means_")
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "means_")
    assert est.fit(X, S) is est
    for name in ("means_", "mean_precisions_", "rate_shape_", "rate_rate_", "elbo_", "elbo_history_",
                 "n_iter_", "converged_"):
        assert hasattr(est, name)
    assert est.means_.shape == (3, 2) and est.elbo_history_.shape == (est.n_iter_,)
    proba = est.predict_proba(X, S)
    assert proba.shape == (500, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X, S), proba.argmax(1))
    # score re-optimises q(Z) on the training data: one more coordinate step, never below the fitted ELBO.
    assert est.score(X, S) * len(X) >= est.elbo_ - 1e-9 * abs(est.elbo_)
    again = clone(est).fit(X, S)
    np.testing.assert_array_equal(again.means_, est.means_)
    more = EarthquakeMixture(3, tau=1.0, rho=0.05, n_init=4, random_state=0).fit(X, S)
    assert more.elbo_ >= est.elbo_ - 1e-9 * abs(est.elbo_)  # the first restart is the same as est's run


def test_non_convergence_warns():
    X, S, *_ = sample_earthquakes(300, 3, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 iterations"):
        est = EarthquakeMixture(3, max_iter=1, random_state=0).fit(X, S)
    assert not est.converged_ and est.n_iter_ == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(tau=0.0), "tau must be a positive"), (dict(rho=-1.0), "rho must be a positive"),
    (dict(alpha=0.0), "alpha must be a positive"), (dict(beta=float("nan")), "beta must be a positive"),
    (dict(pi=[0.5, 0.6]), "pi must be a probability vector"), (dict(pi=[1.0, 0.0]), "positive entries"),
    (dict(pi=[1.0]), r"pi must have shape \(2,\)"), (dict(nu=(0.0,)), "nu must be two finite"),
    (dict(max_iter=0), "max_iter must be a positive integer"), (dict(n_init=0), "n_init must be"),
    (dict(tol=-1.0), "tol must be"), (dict(init="kmeans"), "init must be"),
])
def test_bad_parameters(kwargs, match):
    X, S, *_ = sample_earthquakes(20, 2, random_state=0)
    with pytest.raises(ValueError, match=match):
        EarthquakeMixture(2, **kwargs).fit(X, S)


def test_bad_n_components():
    X, S, *_ = sample_earthquakes(20, 2, random_state=0)
    with pytest.raises(ValueError, match="n_components must be a positive integer"):
        EarthquakeMixture(0).fit(X, S)
    with pytest.raises(ValueError, match=r"need N >= n_components = 30"):
        EarthquakeMixture(30).fit(X, S)


def test_bad_data():
    X, S, *_ = sample_earthquakes(20, 2, random_state=0)
    est = EarthquakeMixture(2)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        est.fit(np.c_[X, X], S)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        est.fit(X[:, 0], S)
    with pytest.raises(ValueError, match=r"S must have shape \(20,\)"):
        est.fit(X, S[:-1])
    bad = X.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        est.fit(bad, S)
    with pytest.raises(ValueError, match="S contains NaN"):
        est.fit(X, np.where(np.arange(20) == 3, np.nan, S))
    with pytest.raises(ValueError, match="S must be non-negative"):
        est.fit(X, S - 100)
    with pytest.raises(ValueError, match="S must be integral"):
        est.fit(X, S + 0.5)


# ---------------------------------------------------------------- data
def test_sample_earthquakes_follows_the_model():
    pi = np.array([0.2, 0.3, 0.5])
    X, S, Z, mu, lam = sample_earthquakes(30_000, 3, pi=pi, tau=4.0, rho=0.1, alpha=9.0, beta=1.0,
                                          random_state=0)
    assert X.shape == (30_000, 2) and S.dtype == np.int64 and Z.shape == (30_000,) and mu.shape == (3, 2)
    assert stats.chisquare(np.bincount(Z, minlength=3), 30_000 * pi).pvalue > 1e-3
    for k in range(3):
        resid = (X[Z == k] - mu[k]) * 2.0  # tau = 4: standard normal after scaling by sqrt(tau)
        assert stats.kstest(resid.ravel(), "norm").pvalue > 1e-3
        assert abs(S[Z == k].mean() - lam[k]) < 5 * np.sqrt(lam[k] / (Z == k).sum())
    with pytest.raises(ValueError, match="pi must be a probability vector"):
        sample_earthquakes(10, 2, pi=[0.2, 0.2])


COMCAT_HEADER = ("time,latitude,longitude,depth,mag,magType,nst,gap,dmin,rms,net,id,updated,place,type,"
                 "horizontalError,depthError,magError,magNst,status,locationSource,magSource\n")


def comcat_row(lat, lon, nst, kind="earthquake"):
    return (f"2024-01-01T00:00:00.000Z,{lat},{lon},10.0,2.5,ml,{nst},80,0.1,0.2,ci,ci1,2024-01-02T00:00:00.000Z,"
            f"\"5km N of Somewhere, CA\",{kind},0.3,0.5,0.1,20,reviewed,ci,ci\n")


def test_load_catalog(tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(COMCAT_HEADER + comcat_row(34.1, -117.2, 12) + comcat_row(35.0, -118.0, 30, "quarry blast")
                    + comcat_row(33.5, -116.9, "") + comcat_row("", -116.0, 8) + comcat_row(36.2, -120.5, 7)
                    + comcat_row(37.0, -121.0, 9, "explosion") + comcat_row(38.1, -122.3, "15.0"))
    with pytest.warns(UserWarning, match="dropped 2 rows with missing longitude, latitude or nst"):
        X, S = load_catalog(path, count_column="nst")
    np.testing.assert_array_equal(X, [[-117.2, 34.1], [-120.5, 36.2], [-122.3, 38.1]])
    np.testing.assert_array_equal(S, [12, 7, 15])
    assert S.dtype == np.int64
    with pytest.raises(ValueError, match="column 'magNstX' not in"):
        load_catalog(path, count_column="magNstX")
    bad = tmp_path / "bad.csv"
    bad.write_text(COMCAT_HEADER + comcat_row(34.1, -117.2, -3))
    with pytest.raises(ValueError, match="nst must be a non-negative integer"):
        load_catalog(bad)
    frac = tmp_path / "frac.csv"
    frac.write_text(COMCAT_HEADER + comcat_row(34.1, -117.2, 2.5))
    with pytest.raises(ValueError, match="nst must be a non-negative integer"):
        load_catalog(frac)
    none = tmp_path / "none.csv"
    none.write_text(COMCAT_HEADER + comcat_row(34.1, -117.2, 3, "quarry blast"))
    with pytest.raises(ValueError, match="no usable earthquake rows"):
        load_catalog(none)
