// Fused CPU kernels of the objective heads (schemas in cpp/ops.cpp, formulas in docs/heads.md): one pass per
// image over its L samples, each pixel read once, no temporaries of the size of decoder_out. The generic ATen
// path (cpp/generic/heads.cpp) computes the same quantities for every other backend.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/likelihood.h"
#include "finite.h"
#include "generic/heads.h"

namespace fastvae {
namespace cpu {
namespace {

using heads::HeadShape;
using likelihoods::Data;

// log p(x | a) of one row and, if g, g = w * d log p / da (the engine's likelihood rows; softplus from
// exp(-|a|) so that no logit overflows). The backward's recomputation calls it exactly as the forward does, so
// that both give the same bits (autograd expects a backward to be reentrant).
// nonbinary: likelihoods on binary data only (see FusedRow).
template <typename T>
T row_log_lik(const HeadShape& s, const T* a, const T* x, T* g, T w, bool* nonbinary = nullptr) {
  return likelihood_row<T>(s.lik, s.params, a, x, s.D, g, w, nonbinary);
}

// Some entry of p[0, n) fails ok (a vector predicate giving all-ones lanes where it holds; comparisons with NaN
// fail). Vector compares and ANDs: a scalar loop here cost as much as the KL terms at the homework's sizes.
template <typename T, typename Ok>
bool any_fails(const T* p, int64_t n, const Ok& ok) {
  using Vec = at::vec::Vectorized<T>;
  Vec good = Vec(T(0)) == Vec(T(0));  // all-ones bits; a lane drops to +0 once it has seen a failing value
  int64_t i = 0;
  for (; i + Vec::size() <= n; i += Vec::size()) good = good & ok(Vec::loadu(p + i));
  if (i < n) {  // the tail, padded with copies of its first entry (checked in lane 0 anyway)
    alignas(64) T tail[Vec::size()];
    std::fill_n(tail, Vec::size(), p[i]);
    std::copy(p + i, p + n, tail);
    good = good & ok(Vec::loadu(tail));
  }
  return good.zero_mask() != 0;
}

template <typename T>
bool has_nan(const at::Tensor& t) {
  return any_fails(t.data_ptr<T>(), t.numel(), [](const at::vec::Vectorized<T>& v) { return v == v; });
}

// x is as large as one decoder_out sample, so it gets at most one pass: for binary data none here (the row pass
// flags non-binary values, check_binary below), for data in [0, 1] the range check. The range checks also fail on
// NaN, so x's NaN scan runs only then (for the message) or for real-valued data.
template <typename T>
void check_x(const char* op, const HeadShape& s, const at::Tensor& x, bool bad) {
  const Data data = likelihood_data(s.lik);
  if (bad || data == Data::Real)
    TORCH_CHECK_VALUE(!has_nan<T>(x), "fastvae: ", op, ": x contains NaN");
  TORCH_CHECK_VALUE(!bad || data != Data::Binary, "fastvae: ", op, ": x must be binary (0 or 1) for likelihood ",
                    likelihood_name(s.lik), "; use continuous_bernoulli for intensities in [0, 1]");
  TORCH_CHECK_VALUE(!bad, "fastvae: ", op, ": x must lie in [0, 1] for likelihood ", likelihood_name(s.lik));
}

// The data checks of heads::check_data as one pass over each input (no temporaries): NaN anywhere, sigma <= 0
// or infinite, x not binary or outside [0, 1] as the likelihood's table entry says. ValueError in Python.
template <typename T>
void check_data(const char* op, const HeadShape& s, const at::Tensor& x, const at::Tensor& out,
                const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma) {
  const T* xp = x.data_ptr<T>();
  const int64_t n = x.numel();
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(T(0)), one(T(1)), inf(std::numeric_limits<T>::infinity());
  const bool bad = likelihood_data(s.lik) == Data::UnitInterval &&
                   any_fails(xp, n, [&](const Vec& v) { return (v >= zero) & (v <= one); });
  check_x<T>(op, s, x, bad);
  // decoder_out is not scanned: a NaN or +-inf there makes the result non-finite, and the one pass over the [B]
  // result (heads::not_finite on the rare path) names it.
  TORCH_CHECK_VALUE(!has_nan<T>(z), "fastvae: ", op, ": z contains NaN");
  TORCH_CHECK_VALUE(!has_nan<T>(mu), "fastvae: ", op, ": mu contains NaN");
  // NaN fails too: the NaN scan runs only then, for the message
  const bool bad_sigma =
      any_fails(sigma.data_ptr<T>(), sigma.numel(), [&](const Vec& v) { return (v > zero) & (v < inf); });
  if (bad_sigma) TORCH_CHECK_VALUE(!has_nan<T>(sigma), "fastvae: ", op, ": sigma contains NaN");
  TORCH_CHECK_VALUE(!bad_sigma, "fastvae: ", op, ": sigma must be > 0 and finite everywhere");
}

// After a bernoulli row pass that flagged x.
template <typename T>
void check_binary(const char* op, const HeadShape& s, const at::Tensor& x, bool nonbinary) {
  if (nonbinary) check_x<T>(op, s, x, true);
}

// x *= c over n entries (an IWAE sample's likelihood gradient weighted by its normalised importance weight).
template <typename T>
void scale_row(T* x, T c, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  const Vec cv(c);
  int64_t d = 0;
  for (; d + Vec::size() <= n; d += Vec::size()) (cv * Vec::loadu(x + d)).store(x + d);
  for (; d < n; ++d) x[d] *= c;
}

// The same, also telling whether every scaled entry is finite (the backward's last pass over its decoder_out
// gradient: the check rides on it, v - v is 0 for a finite v and NaN otherwise).
template <typename T>
bool scale_row_finite(T* x, T c, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  const Vec cv(c);
  Vec acc(T(0));
  int64_t d = 0;
  for (; d + Vec::size() <= n; d += Vec::size()) {
    const Vec v = cv * Vec::loadu(x + d);
    v.store(x + d);
    acc = acc + (v - v);
  }
  T r = at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, acc);
  for (; d < n; ++d) {
    x[d] *= c;
    r += x[d] - x[d];
  }
  return r == T(0);
}

// n entries all finite (a gradient row of Z latents, in cache: the loop that wrote it just ended). Vector lanes:
// a scalar chain of v - v adds cost 3% of the ELBO's backward at the homework's sizes (bench_heads.py).
template <typename T>
bool row_finite(const T* x, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  return !any_fails(x, n, [](const Vec& v) { return (v - v) == Vec(T(0)); });
}

// sum_j log s_j over a posterior's Z scales (checked finite and > 0): inline vector logs (a scalar libm log per
// latent costs as much as the whole likelihood row at the homework's sizes, an out-of-line Sleef call a quarter).
template <typename T>
T sum_log(const T* s, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  Vec acc(T(0));
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) acc = acc + log_positive<T>(Vec::loadu(s + j));
  T r = at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, acc);
  for (; j < n; ++j) r += std::log(s[j]);
  return r;
}

// KL(N(m, diag s^2) || N(0, I)) = sum_j (m_j^2 + s_j^2 - 1) / 2 - log s_j over Z latents, summed per latent (each
// term is >= 0, so nothing cancels) in vector lanes.
template <typename T>
T analytic_kl(const T* m, const T* s, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  const Vec one(T(1)), half(T(0.5));
  Vec acc(T(0));
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) {
    const Vec mv = Vec::loadu(m + j), sv = Vec::loadu(s + j);
    acc = acc + (at::vec::fmadd(mv, mv, at::vec::fmsub(sv, sv, one)) * half - log_positive<T>(sv));
  }
  T r = at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, acc);
  for (; j < n; ++j) r += T(0.5) * (m[j] * m[j] + s[j] * s[j] - T(1)) - std::log(s[j]);
  return r;
}

// Images per task: about 16K values of work each. A backward without decoder_out's gradient touches only the
// [L, B, Z] latents, so it mostly runs on one thread instead of waking the pool for microseconds of work.
int64_t grain(const HeadShape& s, bool decoder_rows = true) {
  return std::max<int64_t>(1, 16384 / (s.L * (decoder_rows ? s.D : s.Z) + 1));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_terms_forward(
    const at::Tensor& x_, const at::Tensor& out_, const at::Tensor& z_, const at::Tensor& mu_,
    const at::Tensor& sigma_, std::string likelihood, double gaussian_sigma, std::string gaussian_scale,
    std::string estimator, bool decoder_grad) {
  const char* op = "elbo_terms";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_estimator(estimator, op);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous();
  auto elbo = at::empty({s.B}, x.options()), rec = at::empty({s.B}, x.options()), kl = at::empty({s.B}, x.options());
  // d rec / d decoder_out, written in the same pass as the value (one exp per pixel serves both).
  auto dg = decoder_grad ? at::empty_like(out) : at::empty({0}, x.options());
  const int64_t W = out.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    check_data<T>(op, s, x, out, z, mu, sigma);
    const T *xp = x.data_ptr<T>(), *ap = out.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
            *sp = sigma.data_ptr<T>();
    T *ep = elbo.data_ptr<T>(), *rp = rec.data_ptr<T>(), *kp = kl.data_ptr<T>();
    T* gp = decoder_grad ? dg.data_ptr<T>() : nullptr;
    std::atomic<bool> nonbinary{false};
    at::parallel_for(0, s.B, grain(s), [&](int64_t b0, int64_t b1) {
      bool nb = false;
      for (int64_t b = b0; b < b1; ++b) {
        T r = 0;
        for (int64_t l = 0; l < s.L; ++l) {
          const int64_t row = (l * s.B + b) * W;
          r += row_log_lik<T>(s, ap + row, xp + b * s.D, gp ? gp + row : nullptr, T(1) / T(s.L), l ? nullptr : &nb);
        }
        rp[b] = r / T(s.L);
        const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
        T k = 0;
        if (est == Estimator::Analytic) {
          k = analytic_kl<T>(m, sg, s.Z);
        } else {
          for (int64_t l = 0; l < s.L; ++l) {
            const T* zz = zp + (l * s.B + b) * s.Z;
            for (int64_t j = 0; j < s.Z; ++j) {
              const T e = (zz[j] - m[j]) / sg[j];
              k += T(0.5) * (zz[j] * zz[j] - e * e);
            }
          }
          k /= T(s.L);
          k -= sum_log<T>(sg, s.Z);
        }
        kp[b] = k;
        ep[b] = rp[b] - k;
      }
      if (nb) nonbinary = true;
    });
    check_binary<T>(op, s, x, nonbinary);
  });
  // One pass over the [B] result: a NaN or +-inf input or an overflow is diagnosed on the rare path.
  if (!is_finite(elbo)) heads::not_finite(op, "the ELBO", s, x, out, z, mu, sigma, &est);
  return {elbo, rec, kl, dg};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_terms_backward(
    const at::Tensor& g_rec_, const at::Tensor& g_kl_, const at::Tensor& x_, const at::Tensor& out_,
    const at::Tensor& z_, const at::Tensor& mu_, const at::Tensor& sigma_, bool decoder_out_grad,
    std::string likelihood, double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_elbo_terms_backward";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_estimator(estimator, op);
  heads::check_weights(op, "g_rec", g_rec_, x_, s.B);
  heads::check_weights(op, "g_kl", g_kl_, x_, s.B);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous(), g_rec = g_rec_.contiguous(), g_kl = g_kl_.contiguous();
  auto d_out = decoder_out_grad ? at::empty_like(out) : at::empty({0}, x.options());
  auto d_z = at::empty_like(z), d_mu = at::empty_like(mu),
       d_sigma = at::empty_like(sigma);
  const int64_t W = out.size(2);
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    const T *xp = x.data_ptr<T>(), *ap = out.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
            *sp = sigma.data_ptr<T>(), *gr = g_rec.data_ptr<T>(), *gk = g_kl.data_ptr<T>();
    T* dop = decoder_out_grad ? d_out.data_ptr<T>() : nullptr;
    T *dzp = d_z.data_ptr<T>(), *dmp = d_mu.data_ptr<T>(), *dsp = d_sigma.data_ptr<T>();
    at::parallel_for(0, s.B, grain(s, decoder_out_grad), [&](int64_t b0, int64_t b1) {
      bool ok = true;
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t l = 0; l < s.L && decoder_out_grad; ++l) {  // as the forward's decoder_grad, then scaled
          const int64_t r = (l * s.B + b) * W;
          row_log_lik<T>(s, ap + r, xp + b * s.D, dop + r, T(1) / T(s.L));
          ok &= scale_row_finite<T>(dop + r, gr[b], W);
        }
        const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
        T *dm = dmp + b * s.Z, *ds = dsp + b * s.Z;
        if (est == Estimator::Analytic) {
          for (int64_t l = 0; l < s.L; ++l) std::fill_n(dzp + (l * s.B + b) * s.Z, s.Z, T(0));
          for (int64_t j = 0; j < s.Z; ++j) {
            dm[j] = gk[b] * m[j];
            ds[j] = gk[b] * (sg[j] - T(1) / sg[j]);
          }
          ok &= row_finite<T>(dm, s.Z) && row_finite<T>(ds, s.Z);
          continue;
        }
        const T w = gk[b] / T(s.L);
        std::fill_n(dm, s.Z, T(0));
        std::fill_n(ds, s.Z, T(0));
        for (int64_t l = 0; l < s.L; ++l) {
          const T* zz = zp + (l * s.B + b) * s.Z;
          T* dz = dzp + (l * s.B + b) * s.Z;
          for (int64_t j = 0; j < s.Z; ++j) {
            const T e = (zz[j] - m[j]) / sg[j];
            dz[j] = w * (zz[j] - e / sg[j]);
            dm[j] += w * e;
            ds[j] += w * (e * e - T(1));
          }
          ok &= row_finite<T>(dz, s.Z);
        }
        if (est == Estimator::MonteCarlo) {
          for (int64_t j = 0; j < s.Z; ++j) {
            dm[j] /= sg[j];
            ds[j] /= sg[j];
          }
        } else {  // stl: q's parameters held fixed
          std::fill_n(dm, s.Z, T(0));
          std::fill_n(ds, s.Z, T(0));
        }
        ok &= row_finite<T>(dm, s.Z) && row_finite<T>(ds, s.Z);
      }
      if (!ok) bad = true;
    });
  });
  if (bad) heads::grad_not_finite(op, x, out, z, mu, sigma, {g_rec, g_kl}, {d_out, d_z, d_mu, d_sigma});
  return {d_out, d_z, d_mu, d_sigma};
}

// log w_kb into lw [K] for image b (log p(x | out_k) + log p(z_k) - log q(z_k)), then softmax in place into w.
// With dg (decoder_grad rows of this image's samples), also d bound / d out_k = w_k d log p(x | out_k) / d out_k.
template <typename T>
T image_log_weights(const HeadShape& s, int64_t W, const T* xp, const T* ap, const T* zp, const T* mp, const T* sp,
                    int64_t b, T* lw, T* w, T* dg, bool* nonbinary) {
  const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
  const T log_sigma = sum_log<T>(sg, s.Z);
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < s.L; ++k) {
    const int64_t r = k * s.B + b;
    T v = row_log_lik<T>(s, ap + r * W, xp + b * s.D, dg ? dg + r * W : nullptr, T(1), k ? nullptr : nonbinary);
    const T* zz = zp + r * s.Z;
    for (int64_t j = 0; j < s.Z; ++j) {
      const T e = (zz[j] - m[j]) / sg[j];
      v += T(0.5) * (e * e - zz[j] * zz[j]);
    }
    v += log_sigma;
    lw[k] = v;
    mx = std::max(mx, v);
  }
  T sum = 0;
  for (int64_t k = 0; k < s.L; ++k) sum += (w[k] = std::exp(lw[k] - mx));
  for (int64_t k = 0; k < s.L; ++k) w[k] /= sum;
  if (dg)  // the rows are still in cache: weight them now
    for (int64_t k = 0; k < s.L; ++k) scale_row<T>(dg + (k * s.B + b) * W, w[k], W);
  return mx + std::log(sum) - std::log(T(s.L));  // logsumexp - log K
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> iwae_bound_forward(
    const at::Tensor& x_, const at::Tensor& out_, const at::Tensor& z_, const at::Tensor& mu_,
    const at::Tensor& sigma_, std::string likelihood, double gaussian_sigma, std::string gaussian_scale,
    std::string estimator, bool decoder_grad) {
  const char* op = "iwae_bound";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  parse_iwae_estimator(estimator, op);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous();
  auto bound = at::empty({s.B}, x.options()), weights = at::empty({s.L, s.B}, x.options());
  auto dg = decoder_grad ? at::empty_like(out) : at::empty({0}, x.options());
  const int64_t W = out.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    check_data<T>(op, s, x, out, z, mu, sigma);
    T *bp = bound.data_ptr<T>(), *wp = weights.data_ptr<T>(), *gp = decoder_grad ? dg.data_ptr<T>() : nullptr;
    std::atomic<bool> nonbinary{false};
    at::parallel_for(0, s.B, grain(s), [&](int64_t b0, int64_t b1) {
      std::vector<T> lw(s.L), w(s.L);
      bool nb = false;
      for (int64_t b = b0; b < b1; ++b) {
        bp[b] = image_log_weights<T>(s, W, x.data_ptr<T>(), out.data_ptr<T>(), z.data_ptr<T>(), mu.data_ptr<T>(),
                                     sigma.data_ptr<T>(), b, lw.data(), w.data(), gp, &nb);
        for (int64_t k = 0; k < s.L; ++k) wp[k * s.B + b] = w[k];
      }
      if (nb) nonbinary = true;
    });
    check_binary<T>(op, s, x, nonbinary);
  });
  if (!is_finite(bound)) heads::not_finite(op, "the IWAE bound", s, x, out, z, mu, sigma, nullptr);
  return {bound, weights, dg};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> iwae_bound_backward(
    const at::Tensor& g_, const at::Tensor& weights_, const at::Tensor& x_, const at::Tensor& out_,
    const at::Tensor& z_, const at::Tensor& mu_, const at::Tensor& sigma_, bool decoder_out_grad,
    std::string likelihood, double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_iwae_bound_backward";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_iwae_estimator(estimator, op);
  heads::check_weights(op, "g", g_, x_, s.B);
  heads::check_importance_weights(op, weights_, x_, s.L, s.B);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous(), g = g_.contiguous(), weights = weights_.contiguous();
  auto d_out = decoder_out_grad ? at::empty_like(out) : at::empty({0}, x.options());
  auto d_z = at::empty_like(z), d_mu = at::empty_like(mu),
       d_sigma = at::empty_like(sigma);
  const int64_t W = out.size(2);
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    const T *xp = x.data_ptr<T>(), *ap = out.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
            *sp = sigma.data_ptr<T>(), *gp = g.data_ptr<T>(), *wp = weights.data_ptr<T>();
    T* dop = decoder_out_grad ? d_out.data_ptr<T>() : nullptr;
    T *dzp = d_z.data_ptr<T>(), *dmp = d_mu.data_ptr<T>(), *dsp = d_sigma.data_ptr<T>();
    at::parallel_for(0, s.B, grain(s, decoder_out_grad), [&](int64_t b0, int64_t b1) {
      std::vector<T> w(s.L);
      bool ok = true;
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t k = 0; k < s.L; ++k) w[k] = wp[k * s.B + b];  // the forward's softmax_k(log w)
        const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
        T *dm = dmp + b * s.Z, *ds = dsp + b * s.Z;
        std::fill_n(dm, s.Z, T(0));
        std::fill_n(ds, s.Z, T(0));
        for (int64_t k = 0; k < s.L; ++k) {
          const int64_t r = k * s.B + b;
          const T c = gp[b] * w[k];
          if (decoder_out_grad) {  // as the forward's decoder_grad, then scaled
            row_log_lik<T>(s, ap + r * W, xp + b * s.D, dop + r * W, T(1));
            scale_row<T>(dop + r * W, w[k], W);
            ok &= scale_row_finite<T>(dop + r * W, gp[b], W);
          }
          const T cz = est == IwaeEstimator::DReG ? c * w[k] : c;
          const T* zz = zp + r * s.Z;
          T* dz = dzp + r * s.Z;
          for (int64_t j = 0; j < s.Z; ++j) {
            const T e = (zz[j] - m[j]) / sg[j];
            dz[j] = cz * (e / sg[j] - zz[j]);
            dm[j] -= c * e;
            ds[j] += c * (T(1) - e * e);
          }
          ok &= row_finite<T>(dz, s.Z);
        }
        for (int64_t j = 0; j < s.Z; ++j) {
          if (est == IwaeEstimator::Reparam) {
            dm[j] /= sg[j];
            ds[j] /= sg[j];
          } else {  // stl and dreg: no direct gradient to q's parameters
            dm[j] = T(0);
            ds[j] = T(0);
          }
        }
        ok &= row_finite<T>(dm, s.Z) && row_finite<T>(ds, s.Z);
      }
      if (!ok) bad = true;
    });
  });
  if (bad) heads::grad_not_finite(op, x, out, z, mu, sigma, {g}, {d_out, d_z, d_mu, d_sigma});
  return {d_out, d_z, d_mu, d_sigma};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("_elbo_terms_forward", &elbo_terms_forward);
  m.impl("_elbo_terms_backward", &elbo_terms_backward);
  m.impl("_iwae_bound_forward", &iwae_bound_forward);
  m.impl("_iwae_bound_backward", &iwae_bound_backward);
}

}  // namespace cpu
}  // namespace fastvae
