// CAVI for the Bayesian earthquake mixture (DD2434 assignment 1B, alternative 1; settings in docs/cavi.md).
// Model: Z_n ~ Cat(pi), X_n | Z_n=k ~ N(mu_k, tau^-1 I_2), S_n | Z_n=k ~ Poisson(lambda_k),
//        mu_k ~ N(nu, rho^-1 I_2), lambda_k ~ Gamma(alpha, beta) (shape, rate).
// q(mu_k) = N(m_k, prec_k^-1 I_2), q(lambda_k) = Gamma(a_k, b_k), q(Z_n) = Cat(r_n).
//
// Sufficient statistics of q(Z), one row per component, are
//   [N_k, sum_n r_nk x_n0, sum_n r_nk x_n1, sum_n r_nk ||x_n||^2, sum_n r_nk S_n]
// and, with the entropy of q(Z), they determine every r-dependent term of the ELBO, so the fit never
// stores the N x K responsibility matrix.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/Math.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace fastvae {
namespace cpu {
namespace {

using Vec = at::vec::Vectorized<double>;
constexpr int kW = Vec::size();
constexpr int kStats = 5;
// Events per reduction block. Blocks, not threads, own the partial sums, and they are added in block
// order, so the result is bit-identical for any thread count.
constexpr int64_t kBlock = 2048;
constexpr double kLog2Pi = 1.8378770664093454835606594728112;

struct Params {
  int64_t K;
  std::vector<double> m0, m1, elog, c;  // c_k = log pi_k - tau / prec_k - E[lambda_k]
  double half_tau;
};

void check_params(const at::Tensor& log_pi, const at::Tensor& m, const at::Tensor& prec,
                  const at::Tensor& shape, const at::Tensor& rate) {
  const int64_t K = log_pi.numel();
  TORCH_CHECK(K >= 1, "cavi: need at least one component");
  for (const auto* t : {&log_pi, &m, &prec, &shape, &rate}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kDouble,
                "cavi: parameters must be float64 CPU tensors");
  }
  TORCH_CHECK(log_pi.dim() == 1, "cavi: log_pi must be [K], got ", log_pi.sizes());
  TORCH_CHECK(m.dim() == 2 && m.size(0) == K && m.size(1) == 2, "cavi: m must be [K, 2] with K=", K,
              ", got ", m.sizes());
  for (const auto* t : {&prec, &shape, &rate}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == K, "cavi: prec, shape, rate must be [K] with K=", K,
                ", got ", t->sizes());
    TORCH_CHECK(t->gt(0).all().item<bool>(), "cavi: prec, shape and rate must be positive");
  }
}

void check_data(const at::Tensor& x, const at::Tensor& s) {
  TORCH_CHECK(x.device().is_cpu() && s.device().is_cpu(), "cavi: x and s must be CPU tensors");
  TORCH_CHECK(x.scalar_type() == at::kDouble && s.scalar_type() == at::kDouble,
              "cavi: x and s must be float64");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 2, "cavi: x must be [N, 2], got ", x.sizes());
  TORCH_CHECK(s.dim() == 1 && s.size(0) == x.size(0), "cavi: s must be [N] with N=", x.size(0), ", got ",
              s.sizes());
}

Params make_params(const at::Tensor& log_pi, const at::Tensor& m, const at::Tensor& prec,
                   const at::Tensor& shape, const at::Tensor& rate, double tau) {
  TORCH_CHECK(tau > 0 && std::isfinite(tau), "cavi: tau must be positive and finite, got ", tau);
  check_params(log_pi, m, prec, shape, rate);
  Params p;
  p.K = log_pi.numel();
  p.half_tau = 0.5 * tau;
  auto lp = log_pi.contiguous(), mm = m.contiguous(), pr = prec.contiguous();
  auto a = shape.contiguous(), b = rate.contiguous();
  const double *lpp = lp.data_ptr<double>(), *mp = mm.data_ptr<double>(), *prp = pr.data_ptr<double>();
  const double *ap = a.data_ptr<double>(), *bp = b.data_ptr<double>();
  for (int64_t k = 0; k < p.K; ++k) {
    p.m0.push_back(mp[2 * k]);
    p.m1.push_back(mp[2 * k + 1]);
    p.elog.push_back(calc_digamma(ap[k]) - std::log(bp[k]));
    // (tau/2) E||x - mu_k||^2 = (tau/2) ||x - m_k||^2 + tau / prec_k in two dimensions.
    p.c.push_back(lpp[k] - tau / prp[k] - ap[k] / bp[k]);
  }
  return p;
}

// One block of events [b, e): responsibilities by log-sum-exp, four events per vector.
// acc (5K vectors) gathers the statistics and ent the entropy -sum r log r = sum_n (lse_n - sum_k r_nk l_nk).
// If out is non-null the responsibilities are written there as [N, K].
void block_pass(const Params& p, const double* x, const double* s, int64_t b, int64_t e, Vec* acc,
                Vec& ent, std::vector<Vec>& l, std::vector<Vec>& w, double* out) {
  const int64_t K = p.K;
  alignas(32) double bx0[kW], bx1[kW], bs[kW], bm[kW], br[kW];
  for (int64_t i = b; i < e; i += kW) {
    const int64_t cnt = std::min<int64_t>(kW, e - i);
    for (int j = 0; j < kW; ++j) {
      const bool in = j < cnt;
      bx0[j] = in ? x[2 * (i + j)] : 0.0;
      bx1[j] = in ? x[2 * (i + j) + 1] : 0.0;
      bs[j] = in ? s[i + j] : 0.0;
      bm[j] = in ? 1.0 : 0.0;  // padding lanes get zero weight
    }
    const Vec x0 = Vec::loadu(bx0), x1 = Vec::loadu(bx1), sv = Vec::loadu(bs), mask = Vec::loadu(bm);
    const Vec ht(p.half_tau);
    Vec mx(-std::numeric_limits<double>::infinity());
    for (int64_t k = 0; k < K; ++k) {
      const Vec d0 = x0 - Vec(p.m0[k]), d1 = x1 - Vec(p.m1[k]);
      const Vec lk = at::vec::fmadd(sv, Vec(p.elog[k]), Vec(p.c[k])) - ht * at::vec::fmadd(d0, d0, d1 * d1);
      l[k] = lk;
      mx = at::vec::maximum(mx, lk);
    }
    Vec sum(0.0);
    for (int64_t k = 0; k < K; ++k) {
      w[k] = (l[k] - mx).exp();
      sum = sum + w[k];
    }
    const Vec scale = mask / sum;
    const Vec lse = mx + sum.log();
    const Vec xx = at::vec::fmadd(x0, x0, x1 * x1);
    Vec rl(0.0);
    for (int64_t k = 0; k < K; ++k) {
      const Vec r = w[k] * scale;
      rl = at::vec::fmadd(r, l[k], rl);
      Vec* a = acc + kStats * k;
      a[0] = a[0] + r;
      a[1] = at::vec::fmadd(r, x0, a[1]);
      a[2] = at::vec::fmadd(r, x1, a[2]);
      a[3] = at::vec::fmadd(r, xx, a[3]);
      a[4] = at::vec::fmadd(r, sv, a[4]);
      if (out) {
        r.store(br);
        for (int64_t j = 0; j < cnt; ++j) out[(i + j) * K + k] = br[j];
      }
    }
    ent = ent + (mask * lse - rl);
  }
}

double hsum(const Vec& v) {
  alignas(32) double t[kW];
  v.store(t);
  double s = 0.0;
  for (int j = 0; j < kW; ++j) s += t[j];
  return s;
}

// Fused E-step: one parallel pass, returns stats [K, 5] and the entropy of q(Z) (a 0-d tensor).
std::tuple<at::Tensor, at::Tensor> cavi_estep(const at::Tensor& x_, const at::Tensor& s_,
                                              const at::Tensor& log_pi, const at::Tensor& m,
                                              const at::Tensor& prec, const at::Tensor& shape,
                                              const at::Tensor& rate, double tau) {
  check_data(x_, s_);
  const Params p = make_params(log_pi, m, prec, shape, rate, tau);
  const auto x = x_.contiguous(), s = s_.contiguous();
  const int64_t N = x.size(0), K = p.K, width = kStats * K + 1;
  const int64_t nblocks = (N + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(std::max<int64_t>(nblocks, 1) * width), 0.0);
  const double *xp = x.data_ptr<double>(), *sp = s.data_ptr<double>();
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<Vec> acc(kStats * K), l(K), w(K);
    for (int64_t blk = b0; blk < b1; ++blk) {
      std::fill(acc.begin(), acc.end(), Vec(0.0));
      Vec ent(0.0);
      block_pass(p, xp, sp, blk * kBlock, std::min(N, (blk + 1) * kBlock), acc.data(), ent, l, w, nullptr);
      double* out = partial.data() + blk * width;
      for (int64_t j = 0; j < kStats * K; ++j) out[j] = hsum(acc[j]);
      out[kStats * K] = hsum(ent);
    }
  });
  auto stats = at::zeros({K, kStats}, x.options());
  double* st = stats.data_ptr<double>();
  double entropy = 0.0;
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const double* pb = partial.data() + blk * width;
    for (int64_t j = 0; j < kStats * K; ++j) st[j] += pb[j];
    entropy += pb[kStats * K];
  }
  bool finite = std::isfinite(entropy);
  for (int64_t j = 0; j < kStats * K; ++j) finite = finite && std::isfinite(st[j]);
  TORCH_CHECK(finite, "cavi_estep: non-finite statistics (NaN or inf in x or s?)");
  return {stats, at::scalar_tensor(entropy, x.options())};
}

// q(Z) responsibilities [N, K] (materialised; used by predict_proba, not by fit).
at::Tensor cavi_responsibilities(const at::Tensor& x_, const at::Tensor& s_, const at::Tensor& log_pi,
                                 const at::Tensor& m, const at::Tensor& prec, const at::Tensor& shape,
                                 const at::Tensor& rate, double tau) {
  check_data(x_, s_);
  const Params p = make_params(log_pi, m, prec, shape, rate, tau);
  const auto x = x_.contiguous(), s = s_.contiguous();
  const int64_t N = x.size(0), K = p.K;
  auto r = at::empty({N, K}, x.options());
  const double *xp = x.data_ptr<double>(), *sp = s.data_ptr<double>();
  double* rp = r.data_ptr<double>();
  const int64_t nblocks = (N + kBlock - 1) / kBlock;
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<Vec> acc(kStats * K, Vec(0.0)), l(K), w(K);
    Vec ent(0.0);
    for (int64_t blk = b0; blk < b1; ++blk)
      block_pass(p, xp, sp, blk * kBlock, std::min(N, (blk + 1) * kBlock), acc.data(), ent, l, w, rp);
  });
  // All K log-weights of an event are -inf when its squared distances overflow (|x| ~ 1e155): the
  // log-sum-exp is then -inf - -inf = NaN. Refuse rather than return NaN probabilities.
  TORCH_CHECK(r.isfinite().all().item<bool>(),
              "cavi_responsibilities: non-finite responsibilities (NaN or inf in x or s, or coordinates so "
              "large that squared distances overflow float64)");
  return r;
}

void check_stats(const at::Tensor& stats) {
  TORCH_CHECK(stats.device().is_cpu() && stats.scalar_type() == at::kDouble, "cavi: stats must be float64 CPU");
  TORCH_CHECK(stats.dim() == 2 && stats.size(1) == kStats, "cavi: stats must be [K, 5], got ", stats.sizes());
}

void check_prior(double tau, const std::vector<double>& nu, double rho) {
  TORCH_CHECK(tau > 0 && std::isfinite(tau), "cavi: tau must be positive and finite, got ", tau);
  TORCH_CHECK(rho > 0 && std::isfinite(rho), "cavi: rho must be positive and finite, got ", rho);
  TORCH_CHECK(nu.size() == 2 && std::isfinite(nu[0]) && std::isfinite(nu[1]),
              "cavi: nu must be two finite numbers");
}

// q(mu_k) = N(m_k, prec_k^-1 I): prec_k = rho + tau N_k, m_k = (rho nu + tau sum_n r_nk x_n) / prec_k.
std::tuple<at::Tensor, at::Tensor> cavi_update_mu(const at::Tensor& stats_, double tau, at::ArrayRef<double> nu_,
                                                  double rho) {
  check_stats(stats_);
  const std::vector<double> nu(nu_.begin(), nu_.end());
  check_prior(tau, nu, rho);
  const auto stats = stats_.contiguous();
  const int64_t K = stats.size(0);
  auto m = at::empty({K, 2}, stats.options());
  auto prec = at::empty({K}, stats.options());
  const double* st = stats.data_ptr<double>();
  double *mp = m.data_ptr<double>(), *pp = prec.data_ptr<double>();
  for (int64_t k = 0; k < K; ++k) {
    const double* r = st + kStats * k;
    pp[k] = rho + tau * r[0];
    mp[2 * k] = (rho * nu[0] + tau * r[1]) / pp[k];
    mp[2 * k + 1] = (rho * nu[1] + tau * r[2]) / pp[k];
  }
  return {m, prec};
}

// q(lambda_k) = Gamma(alpha + sum_n r_nk S_n, beta + N_k) (shape, rate).
std::tuple<at::Tensor, at::Tensor> cavi_update_lambda(const at::Tensor& stats_, double alpha, double beta) {
  check_stats(stats_);
  TORCH_CHECK(alpha > 0 && std::isfinite(alpha), "cavi: alpha must be positive and finite, got ", alpha);
  TORCH_CHECK(beta > 0 && std::isfinite(beta), "cavi: beta must be positive and finite, got ", beta);
  const auto stats = stats_.contiguous();
  const int64_t K = stats.size(0);
  auto a = at::empty({K}, stats.options());
  auto b = at::empty({K}, stats.options());
  const double* st = stats.data_ptr<double>();
  double *ap = a.data_ptr<double>(), *bp = b.data_ptr<double>();
  for (int64_t k = 0; k < K; ++k) {
    ap[k] = alpha + st[kStats * k + 4];
    bp[k] = beta + st[kStats * k];
  }
  return {a, b};
}

// The full ELBO E_q[log p(X, S, Z, mu, lambda)] + H[q], every constant included (derivation in docs/cavi.md).
// log_fact = sum_n log S_n!, entropy = -sum_nk r_nk log r_nk.
at::Tensor cavi_elbo(const at::Tensor& stats_, const at::Tensor& entropy, double log_fact,
                     const at::Tensor& log_pi, const at::Tensor& m, const at::Tensor& prec,
                     const at::Tensor& shape, const at::Tensor& rate, double tau, at::ArrayRef<double> nu_,
                     double rho, double alpha, double beta) {
  check_stats(stats_);
  const std::vector<double> nu(nu_.begin(), nu_.end());
  check_prior(tau, nu, rho);
  TORCH_CHECK(alpha > 0 && beta > 0, "cavi: alpha and beta must be positive");
  check_params(log_pi, m, prec, shape, rate);
  TORCH_CHECK(stats_.size(0) == log_pi.numel(), "cavi: stats has ", stats_.size(0), " rows for K=",
              log_pi.numel());
  TORCH_CHECK(entropy.numel() == 1, "cavi: entropy must be a scalar");
  const auto stats = stats_.contiguous(), mm = m.contiguous();
  const auto lp = log_pi.contiguous(), pr = prec.contiguous(), a = shape.contiguous(), b = rate.contiguous();
  const double *st = stats.data_ptr<double>(), *mp = mm.data_ptr<double>(), *lpp = lp.data_ptr<double>();
  const double *pp = pr.data_ptr<double>(), *ap = a.data_ptr<double>(), *bp = b.data_ptr<double>();
  const int64_t K = stats.size(0);
  const double log_tau = std::log(tau), log_rho = std::log(rho);
  const double prior_lambda_norm = alpha * std::log(beta) - std::lgamma(alpha);
  double elbo = entropy.item<double>() - log_fact;
  for (int64_t k = 0; k < K; ++k) {
    const double* r = st + kStats * k;
    const double Nk = r[0], m0 = mp[2 * k], m1 = mp[2 * k + 1], P = pp[k];
    const double log_b = std::log(bp[k]), elam = ap[k] / bp[k];
    // sum_n r_nk E||x_n - mu_k||^2
    const double sq = r[3] - 2.0 * (m0 * r[1] + m1 * r[2]) + Nk * (m0 * m0 + m1 * m1) + 2.0 * Nk / P;
    elbo += Nk * (log_tau - kLog2Pi) - 0.5 * tau * sq;                          // E log p(X | Z, mu)
    elbo += Nk * lpp[k];                                                         // E log p(Z)
    const double dm0 = m0 - nu[0], dm1 = m1 - nu[1];
    elbo += log_rho - kLog2Pi - 0.5 * rho * (dm0 * dm0 + dm1 * dm1 + 2.0 / P);  // E log p(mu_k)
    elbo += 1.0 + kLog2Pi - std::log(P);                                         // H[q(mu_k)]
    // The terms in E log lambda_k = digamma(a_k) - log b_k, from E log p(S | Z, lambda) (r4), E log p(lambda_k)
    // (alpha - 1) and H[q(lambda_k)] (1 - a_k), with digamma's coefficient summed first:
    //   (r4 + alpha - a_k) digamma(a_k) - (r4 + alpha - 1) log b_k.
    // After the q(lambda) update a_k = alpha + r4 and the coefficient is exactly 0: for a small shape
    // digamma(a_k) ~ -1 / a_k is huge, and adding its three multiples one by one cancelled every other term of
    // the ELBO to 0 in float64 (a near-zero alpha with an empty or count-free component gave ELBO = 0).
    const double psi_coef = (r[4] + alpha) - ap[k];
    elbo += (psi_coef != 0.0 ? psi_coef * calc_digamma(ap[k]) : 0.0) - (r[4] + alpha - 1.0) * log_b;
    elbo += -Nk * elam + prior_lambda_norm - beta * elam;                        // the E lambda_k terms
    elbo += ap[k] - log_b + std::lgamma(ap[k]);                                  // the rest of H[q(lambda_k)]
  }
  return at::scalar_tensor(elbo, stats.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("cavi_estep", &cavi_estep);
  m.impl("cavi_responsibilities", &cavi_responsibilities);
  m.impl("cavi_update_mu", &cavi_update_mu);
  m.impl("cavi_update_lambda", &cavi_update_lambda);
  m.impl("cavi_elbo", &cavi_elbo);
}

}  // namespace cpu
}  // namespace fastvae
