"""One CAVI iteration for the earthquake mixture at N = 10^6, K = 10: fastvae's fused C++ pass against a
vectorised NumPy implementation of the same updates and against scikit-learn's BayesianGaussianMixture
(spherical, the Gaussian part only), same data, same process, the same thread count for all three (torch's
pool for fastvae, and the BLAS pools NumPy, SciPy and scikit-learn use, limited with threadpoolctl; NumPy's
elementwise operations run on one thread whatever the limit). Each side runs once untimed before the timed
repeats. --big also fits N = 10^7 and reports memory.

    PYTHONPATH=python python bench/bench_cavi.py [--n 1000000] [--k 10] [--repeat 5] [--threads 2] [--big]
                                                 [--write-docs]

--write-docs writes the table into docs/benchmarks.md.
"""
import argparse
import resource
import time
import warnings

import numpy as np
import torch
from scipy.special import digamma, gammaln
from sklearn.mixture import BayesianGaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

from doc_tables import cpu_name, write_block
from fastvae.cavi import EarthquakeMixture, sample_earthquakes
from fastvae.cavi import _ops

PRIOR = dict(tau=1.0, nu=(0.0, 0.0), rho=0.01, alpha=5.0, beta=0.5)


def fastvae_iteration(x, s, log_pi, q, log_fact):
    """The body of EarthquakeMixture's loop: q(Z) pass, q(mu), q(lambda), the ELBO after each update."""
    m, prec, a, b = q
    stats, ent = _ops.estep(x, s, log_pi, m, prec, a, b, PRIOR["tau"])
    e1 = _ops.elbo(stats, ent, log_fact, log_pi, m, prec, a, b, **PRIOR)
    m, prec = _ops.update_mu(stats, PRIOR["tau"], PRIOR["nu"], PRIOR["rho"])
    e2 = _ops.elbo(stats, ent, log_fact, log_pi, m, prec, a, b, **PRIOR)
    a, b = _ops.update_lambda(stats, PRIOR["alpha"], PRIOR["beta"])
    e3 = _ops.elbo(stats, ent, log_fact, log_pi, m, prec, a, b, **PRIOR)
    return (m, prec, a, b), (e1, e2, e3)


def numpy_elbo(nk, sx, sxx, ss, ent, log_fact, log_pi, m, prec, a, b):
    tau, nu, rho, alpha, beta = (PRIOR[k] for k in ("tau", "nu", "rho", "alpha", "beta"))
    elog, elam = digamma(a) - np.log(b), a / b
    sq = sxx - 2 * np.sum(m * sx, 1) + nk * np.sum(m * m, 1) + 2 * nk / prec
    out = ent - log_fact + np.sum(nk * (np.log(tau / (2 * np.pi)) + log_pi) - 0.5 * tau * sq + ss * elog - nk * elam)
    out += np.sum(np.log(rho / (2 * np.pi)) - 0.5 * rho * (np.sum((m - nu) ** 2, 1) + 2 / prec))
    out += np.sum(alpha * np.log(beta) - gammaln(alpha) + (alpha - 1) * elog - beta * elam)
    out += np.sum(1 + np.log(2 * np.pi) - np.log(prec) + a - np.log(b) + gammaln(a) + (1 - a) * digamma(a))
    return out


def numpy_iteration(X, S, xx, log_pi, q, log_fact):
    """The same iteration in vectorised NumPy (N x K matrices, BLAS for the cross term and the statistics)."""
    m, prec, a, b = q
    tau = PRIOR["tau"]
    elog, elam = digamma(a) - np.log(b), a / b
    logit = X @ (tau * m.T) + S[:, None] * elog
    logit += log_pi - 0.5 * tau * np.sum(m * m, 1) - tau / prec - elam
    logit -= 0.5 * tau * xx[:, None]
    mx = logit.max(1, keepdims=True)
    r = np.exp(logit - mx)
    tot = r.sum(1, keepdims=True)
    r /= tot
    ent = np.sum(mx) + np.sum(np.log(tot)) - np.sum(r * logit)
    nk, sx, sxx, ss = r.sum(0), r.T @ X, r.T @ xx, r.T @ S
    e1 = numpy_elbo(nk, sx, sxx, ss, ent, log_fact, log_pi, m, prec, a, b)
    prec = PRIOR["rho"] + tau * nk
    m = (PRIOR["rho"] * np.asarray(PRIOR["nu"]) + tau * sx) / prec[:, None]
    e2 = numpy_elbo(nk, sx, sxx, ss, ent, log_fact, log_pi, m, prec, a, b)
    a, b = PRIOR["alpha"] + ss, PRIOR["beta"] + nk
    e3 = numpy_elbo(nk, sx, sxx, ss, ent, log_fact, log_pi, m, prec, a, b)
    return (m, prec, a, b), (e1, e2, e3)


def best_of(fn, repeat):
    """Best wall time of ``repeat`` calls after one untimed warm-up call, and the last result."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="threads for every side (torch and BLAS pools)")
    ap.add_argument("--big", action="store_true", help="also fit N = 10^7 and report peak memory")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        run(args)


def run(args):
    pools = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info())
    print(f"machine: {cpu_name()}, torch threads {torch.get_num_threads()}, "
          f"thread pools: {pools}; torch {torch.__version__}, numpy {np.__version__}")
    X, S, *_ = sample_earthquakes(args.n, args.k, random_state=0, **PRIOR)
    Sf = S.astype(np.float64)
    k = args.k
    log_pi = np.full(k, -np.log(k))
    log_fact = float(gammaln(Sf + 1).sum())
    q0 = [a.numpy() for a in EarthquakeMixture(k, random_state=0, **PRIOR)._initialise(X, Sf, np.random.default_rng(0))]
    x, s, tq = torch.from_numpy(X), torch.from_numpy(Sf), [torch.from_numpy(a) for a in q0]
    t_lp = torch.from_numpy(log_pi)
    xx = np.sum(X * X, 1)

    t_fast, (qf, ef) = best_of(lambda: fastvae_iteration(x, s, t_lp, tq, log_fact), args.repeat)
    t_np, (qn, en) = best_of(lambda: numpy_iteration(X, Sf, xx, log_pi, q0, log_fact), args.repeat)
    err = max(np.max(np.abs(a.numpy() - b) / np.maximum(np.abs(b), 1e-300)) for a, b in zip(qf, qn))
    err = max(err, np.max(np.abs(np.array(ef) - np.array(en)) / np.abs(np.array(en))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgm = BayesianGaussianMixture(n_components=k, covariance_type="spherical", max_iter=1,
                                      random_state=0).fit(X)

    def sklearn_iteration():  # the body of sklearn's BaseMixture.fit_predict loop
        log_prob_norm, log_resp = bgm._e_step(X)
        bgm._m_step(X, log_resp)
        return bgm._compute_lower_bound(log_resp, log_prob_norm)

    t_sk, _ = best_of(sklearn_iteration, args.repeat)
    print(f"N={args.n} K={k}: one CAVI iteration (best of {args.repeat})")
    print(f"  fastvae (fused C++)         {t_fast * 1e3:9.2f} ms")
    print(f"  NumPy (same updates)        {t_np * 1e3:9.2f} ms   max rel. difference {err:.1e}")
    print(f"  sklearn BGM spherical (X)   {t_sk * 1e3:9.2f} ms")
    print(f"ratio NumPy/fastvae = {t_np / t_fast:.1f}x, sklearn/fastvae = {t_sk / t_fast:.1f}x")
    rows = [f"| fastvae (one fused C++ pass) | {t_fast * 1e3:.2f} ms | 1 |",
            f"| NumPy, the same updates vectorised (max. rel. difference {err:.1e}) | {t_np * 1e3:.2f} ms | "
            f"{t_np / t_fast:.1f}x |",
            f"| scikit-learn `BayesianGaussianMixture(covariance_type=\"spherical\")`, locations only | "
            f"{t_sk * 1e3:.2f} ms | {t_sk / t_fast:.1f}x |"]

    if args.big:
        del X, S, Sf, x, s, xx, bgm
        n = 10_000_000
        Xb, Sb, *_ = sample_earthquakes(n, k, random_state=1, **PRIOR)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = EarthquakeMixture(k, max_iter=10, random_state=0, **PRIOR).fit(Xb, Sb)
        dt = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"N={n} K={k}: fit of {est.n_iter_} iterations in {dt:.2f} s ({dt / est.n_iter_ * 1e3:.0f} ms per "
              f"iteration incl. setup), ELBO/event {est.elbo_ / n:.4f}, peak RSS {peak:.2f} GiB")
        rows += ["", f"`--big`: EarthquakeMixture fit of N = 10^7 events, K = {k}: {est.n_iter_} iterations in "
                 f"{dt:.2f} s, peak resident memory {peak:.2f} GiB."]
    if args.write_docs:
        write_block("bench_cavi", [
            f"One iteration (q(Z) pass, q(mu), q(lambda), the ELBO after each), N = {args.n:,} events, K = {k}, "
            f"best of {args.repeat} after one untimed run per side.", "",
            "| implementation | time per iteration | time / fastvae |", "|---|---|---|", *rows], args.threads)


if __name__ == "__main__":
    main()
