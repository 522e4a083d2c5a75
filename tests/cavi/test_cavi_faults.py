"""Fault table of CAVI priors and of the files the package reads (issue 20 items 7 and 8): priors that float64
cannot carry are refused with the reason, a near-zero Gamma shape fits correctly (its ELBO was exactly 0 and
"converged"), a non-finite ELBO is never reported as converged, and paths that are not regular files (a FIFO, a
device, a folder) are refused without blocking wherever the package opens a file for reading: CAVI catalogues
(Catalogue, EarthquakeMixture.fit/score, load_catalog) and the MNIST files (read_idx, load_mnist). Each row asserts
the exception and a message fragment, or the exact state afterwards; every file row runs under a deadline."""
import os
import warnings

import numpy as np
import pytest
from blocking import deadline

from fastvae.cavi import Catalogue, ConvergenceWarning, EarthquakeMixture, load_catalog, sample_earthquakes
from fastvae.cavi import write_catalogue
from fastvae.datasets import DataFileError, load_mnist, read_idx


X, S = sample_earthquakes(300, 2, random_state=0)[:2]
S0 = np.zeros_like(S)  # no counts at all: q(lambda_k) keeps the prior's shape alpha


def fit(S=S, max_iter=60, **priors):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return EarthquakeMixture(2, random_state=0, max_iter=max_iter, **priors).fit(X, S)


# -- priors ----------------------------------------------------------------------------------------------------
PRIOR_ROWS = [
    ("alpha-subnormal", dict(alpha=1e-310), "alpha must be a normal float64 number >= 2.23e-308, got 1e-310: "
                                            "subnormal, digamma(alpha) ~ -1 / alpha overflows"),
    ("alpha-smallest", dict(alpha=5e-324), "alpha must be a normal float64 number"),
    ("beta-subnormal", dict(beta=5e-324), "beta must be a normal float64 number >= 2.23e-308, got 5e-324"),
    ("tau-subnormal", dict(tau=1e-320), "tau must be a normal float64 number >= 2.23e-308, got 1e-320"),
    ("rho-subnormal", dict(rho=1e-315), "rho must be a normal float64 number >= 2.23e-308, got 1e-315: subnormal, "
                                        "2 / rho"),
    ("alpha-lgamma-overflows", dict(alpha=1e306), "alpha=1e+306, beta=1.0: lgamma(alpha) overflows"),
    ("alpha-over-beta-overflows", dict(alpha=1e300, beta=1e-300), "alpha / beta, the prior mean rate overflows"),
    ("alpha-zero", dict(alpha=0.0), "alpha must be a positive finite number, got 0.0"),
    ("beta-inf", dict(beta=float("inf")), "beta must be a positive finite number"),
    ("tau-huge", dict(tau=1e300), "overflow float64 squared distances"),
]


@pytest.mark.parametrize("priors, fragment", [pytest.param(p, f, id=n) for n, p, f in PRIOR_ROWS])
def test_a_prior_float64_cannot_carry_is_refused_with_the_reason(priors, fragment):
    with pytest.raises(ValueError) as e:
        EarthquakeMixture(2, **priors).fit(X, S)
    assert fragment in str(e.value)


def test_a_near_zero_gamma_shape_fits_correctly_instead_of_an_elbo_of_zero():
    """alpha = 1e-300 with no counts: digamma(alpha) ~ -1e300 used to cancel every other ELBO term to exactly 0,
    reported as converged. The ELBO is a continuous function of alpha here (KL(Gamma(a, b1) || Gamma(a, b2)) and
    E[lambda] vanish with a), so it must equal the fit at alpha = 1e-12 to about 1e-9."""
    tiny, small = fit(S0, alpha=1e-300), fit(S0, alpha=1e-12)
    assert tiny.elbo_ != 0.0 and np.isfinite(tiny.elbo_history_).all()
    np.testing.assert_allclose(tiny.elbo_history_, small.elbo_history_, rtol=1e-9)
    np.testing.assert_allclose(tiny.means_, small.means_, rtol=1e-9)
    assert tiny.n_iter_ == small.n_iter_ and tiny.converged_ == small.converged_


def test_a_near_zero_gamma_shape_with_counts_fits():
    m = fit(alpha=1e-300)
    assert np.isfinite(m.elbo_history_).all() and m.elbo_ < 0
    assert np.all(np.diff(m.elbo_history_) >= -1e-6 * np.abs(m.elbo_history_[1:]))  # CAVI never lowers the bound


def elbo_term_by_term(stats, ent, log_fact, log_pi, m, prec, a, b, tau, nu, rho, alpha, beta):
    """The ELBO as docs/cavi.md writes it, each term on its own (the kernel's former order of summation)."""
    from scipy.special import digamma, gammaln
    log2pi = np.log(2 * np.pi)
    total = ent - log_fact
    for k in range(len(log_pi)):
        nk, s1, s2, sxx, ss = stats[k]
        elog, elam = digamma(a[k]) - np.log(b[k]), a[k] / b[k]
        sq = sxx - 2 * (m[k, 0] * s1 + m[k, 1] * s2) + nk * (m[k] @ m[k]) + 2 * nk / prec[k]
        total += nk * (np.log(tau) - log2pi) - 0.5 * tau * sq + ss * elog - nk * elam + nk * log_pi[k]
        d = m[k] - nu
        total += np.log(rho) - log2pi - 0.5 * rho * (d @ d + 2 / prec[k])
        total += alpha * np.log(beta) - gammaln(alpha) + (alpha - 1) * elog - beta * elam
        total += 1 + log2pi - np.log(prec[k]) + a[k] - np.log(b[k]) + gammaln(a[k]) + (1 - a[k]) * digamma(a[k])
    return total


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (2.5, 0.3), (0.01, 4.0)])
def test_the_regrouped_elbo_equals_the_term_by_term_sum_where_that_is_accurate(alpha, beta):
    """The kernel sums digamma(a_k)'s three coefficients before multiplying; away from a near-zero shape that is
    the same number as the term-by-term sum (q(lambda) not at its update, so the coefficient is not 0)."""
    import torch
    from fastvae.cavi import _ops
    rng = np.random.default_rng(0)
    k = 3
    stats = np.column_stack([rng.uniform(5, 50, k), rng.normal(0, 10, k), rng.normal(0, 10, k),
                             rng.uniform(100, 900, k), rng.uniform(1, 80, k)])
    log_pi, m = np.log(np.full(k, 1 / k)), rng.normal(0, 1, (k, 2))
    prec, a, b = rng.uniform(1, 9, k), rng.uniform(0.5, 30, k), rng.uniform(1, 9, k)
    t = [torch.from_numpy(v) for v in (stats, log_pi, m, prec, a, b)]
    got = _ops.elbo(t[0], torch.tensor(12.5, dtype=torch.float64), 7.0, t[1], t[2], t[3], t[4], t[5], 1.5,
                    (0.1, -0.2), 0.7, alpha, beta)
    want = elbo_term_by_term(stats, 12.5, 7.0, log_pi, m, prec, a, b, 1.5, np.array([0.1, -0.2]), 0.7, alpha, beta)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_pi_needs_no_float_check_a_subnormal_weight_fits():
    m = fit(pi=[1.0 - 1e-16, 1e-16])
    assert np.isfinite(m.elbo_history_).all()
    m = fit(pi=[1.0, 5e-324])  # log(5e-324) = -744.4 is finite
    assert np.isfinite(m.elbo_history_).all()
    assert m.predict_proba(X, S)[:, 1].max() < 1e-100


def test_a_non_finite_elbo_is_never_reported_as_converged(monkeypatch):
    from fastvae.cavi import _ops
    real = _ops.elbo
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        return float("nan") if len(calls) > 6 else real(*args, **kw)
    monkeypatch.setattr(_ops, "elbo", flaky)
    with pytest.raises(ValueError, match="the ELBO is not finite \\(nan\\) at iteration 3 although the events and the "
                                         "priors are"):
        EarthquakeMixture(2, random_state=0, max_iter=50).fit(X, S)


# -- files that are not regular files ---------------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


DEVICE = "/dev/zero"
needs_device = pytest.mark.skipif(not os.path.exists(DEVICE), reason="no /dev/zero on this system")


def test_a_catalogue_fifo_is_refused_without_blocking(fifo):
    with deadline(), pytest.raises(ValueError, match="pipe' must be a regular file, got a FIFO"):
        Catalogue(fifo)


def test_fit_on_a_fifo_catalogue_is_refused_without_blocking(fifo):
    with deadline(), pytest.raises(ValueError, match="EarthquakeMixture: .*pipe' must be a regular file, got a FIFO"):
        EarthquakeMixture(2).fit(fifo)


def test_score_on_a_fifo_catalogue_is_refused_without_blocking(fifo):
    m = fit(max_iter=3)
    with deadline(), pytest.raises(ValueError, match="must be a regular file, got a FIFO"):
        m.score(fifo)


def test_a_catalogue_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be a regular file, got a folder"):
        Catalogue(tmp_path)


@needs_device
def test_a_catalogue_device_is_refused_without_reading():
    with deadline(), pytest.raises(ValueError, match="'/dev/zero' must be a regular file, got a character device"):
        EarthquakeMixture(2).fit(DEVICE)


def test_a_catalogue_replaced_by_a_fifo_after_opening_is_refused_at_the_next_read(tmp_path):
    path = tmp_path / "cat.npy"
    write_catalogue(path, X, S)
    cat = Catalogue(path)
    assert len(cat) == len(X)
    path.unlink()
    os.mkfifo(path)
    with deadline(), pytest.raises(ValueError, match="must be a regular file, got a FIFO"):
        cat.read(0, 10)


def test_a_missing_catalogue_keeps_its_message(tmp_path):
    with pytest.raises(ValueError, match="cannot open catalogue file .*nope.npy.*no such file"):
        Catalogue(tmp_path / "nope.npy")


def test_a_symlinked_catalogue_reads(tmp_path):
    write_catalogue(tmp_path / "cat.npy", X, S)
    (tmp_path / "link.npy").symlink_to(tmp_path / "cat.npy")
    x, s = Catalogue(tmp_path / "link.npy").read(0, 5)
    np.testing.assert_array_equal(x, X[:5])
    np.testing.assert_array_equal(s, S[:5])


def test_load_catalog_refuses_a_fifo_without_blocking(fifo):
    with deadline(), pytest.raises(ValueError, match="load_catalog: .*pipe' must be a regular file, got a FIFO"):
        load_catalog(fifo)


def test_load_catalog_refuses_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="load_catalog: .* must be a regular file, got a folder"):
        load_catalog(tmp_path)


@needs_device
def test_load_catalog_refuses_a_device_without_reading():
    with deadline(), pytest.raises(ValueError, match="must be a regular file, got a character device"):
        load_catalog(DEVICE)


def test_read_idx_refuses_a_fifo_without_blocking(fifo):
    with deadline(), pytest.raises(DataFileError, match="pipe' must be a regular file, got a FIFO"):
        read_idx(fifo)


@needs_device
def test_read_idx_refuses_a_device_without_reading():
    with deadline(), pytest.raises(DataFileError, match="'/dev/zero' must be a regular file, got a character device"):
        read_idx(DEVICE)


def test_read_idx_refuses_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="must be a regular file, got a folder"):
        read_idx(tmp_path)


def test_load_mnist_refuses_a_fifo_in_place_of_a_file_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "t10k-images-idx3-ubyte")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with deadline(), pytest.raises(DataFileError, match="t10k-images-idx3-ubyte' must be a regular file, got a FIFO"):
        load_mnist("test", root=tmp_path, download=False)
