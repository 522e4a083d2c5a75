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
#include "generic/heads.h"

namespace fastvae {
namespace cpu {
namespace {

using heads::HeadShape;
using heads::Lik;

// log p(x | a) of one row and, if g, g = w * d log p / da (the engine's likelihood_row for the fixed and
// predicted scales; softplus from exp(-|a|) so that no logit overflows).
// With value = false (backward) the returned value is not computed where that saves work (bernoulli rows).
template <typename T>
T row_log_lik(const HeadShape& s, const T* a, const T* x, T* g, T w, bool value = true) {
  if (s.lik == Lik::Gaussian)
    return s.predicted ? gaussian_predicted_row<T>(a, x, s.D, g, w)
                       : gaussian_fixed_row<T>(a, x, s.D, g, w, s.gaussian_sigma);
  if (s.lik == Lik::ContinuousBernoulli) {
    if (g && !value) {
      continuous_bernoulli_grad_row<T>(a, x, s.D, g, w);
      return T(0);
    }
    return continuous_bernoulli_row<T>(a, x, s.D, g, w);
  }
  if (g && !value) {
    bernoulli_grad_row<T>(a, x, s.D, g, w);
    return T(0);
  }
  return bernoulli_row<T>(a, x, s.D, g, w);
}

// The data checks of heads::check_data as one pass over each input (no temporaries): NaN anywhere, sigma <= 0,
// x not binary (bernoulli) or outside [0, 1] (continuous_bernoulli). ValueError in Python.
template <typename T>
bool has_nan(const at::Tensor& t) {
  const T* p = t.data_ptr<T>();
  const int64_t n = t.numel();
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= p[i] != p[i];  // an integer OR reduction: vectorizes
  return bad != 0;
}

template <typename T>
void check_data(const char* op, const HeadShape& s, const at::Tensor& x, const at::Tensor& out,
                const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma) {
  const at::Tensor* ts[] = {&x, &out, &z, &mu, &sigma};
  const char* names[] = {"x", "decoder_out", "z", "mu", "sigma"};
  for (int i = 0; i < 5; ++i) {
    if (i == 1) continue;  // decoder_out: its rows' log-likelihoods are NaN if it holds one (check_rows)
    TORCH_CHECK_VALUE(!has_nan<T>(*ts[i]), "fastvae: ", op, ": ", names[i], " contains NaN");
  }
  const T* sp = sigma.data_ptr<T>();
  int nonpositive = 0;
  for (int64_t i = 0; i < sigma.numel(); ++i) nonpositive |= !(sp[i] > T(0));
  TORCH_CHECK_VALUE(!nonpositive, "fastvae: ", op, ": sigma must be > 0 everywhere");
  const T* xp = x.data_ptr<T>();
  const int64_t n = x.numel();
  if (s.lik == Lik::Bernoulli) {
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) bad |= (xp[i] != T(0)) & (xp[i] != T(1));
    TORCH_CHECK_VALUE(!bad, "fastvae: ", op, ": x must be binary (0 or 1) for likelihood bernoulli; use "
                      "continuous_bernoulli for intensities in [0, 1]");
  } else if (s.lik == Lik::ContinuousBernoulli) {
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) bad |= !(xp[i] >= T(0)) | !(xp[i] <= T(1));
    TORCH_CHECK_VALUE(!bad, "fastvae: ", op, ": x must lie in [0, 1] for likelihood continuous_bernoulli");
  }
}

// After the row pass: a NaN log-likelihood means a NaN in decoder_out (the other inputs are checked before) or
// an overflow (inf logits); only the first is an input error, so decoder_out is scanned only then.
template <typename T>
void check_rows(const char* op, bool nan_seen, const at::Tensor& out) {
  if (nan_seen) TORCH_CHECK_VALUE(!has_nan<T>(out), "fastvae: ", op, ": decoder_out contains NaN");
}

int64_t grain(const HeadShape& s) { return std::max<int64_t>(1, 16384 / (s.L * s.D + 1)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> elbo_terms(const at::Tensor& x_, const at::Tensor& out_,
                                                          const at::Tensor& z_, const at::Tensor& mu_,
                                                          const at::Tensor& sigma_, std::string likelihood,
                                                          double gaussian_sigma, std::string gaussian_scale,
                                                          std::string estimator) {
  const char* op = "elbo_terms";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = heads::parse_kl(op, estimator);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous();
  auto rec = at::empty({s.B}, x.options()), kl = at::empty({s.B}, x.options());
  const int64_t W = out.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    check_data<T>(op, s, x, out, z, mu, sigma);
    const T *xp = x.data_ptr<T>(), *ap = out.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
            *sp = sigma.data_ptr<T>();
    T *rp = rec.data_ptr<T>(), *kp = kl.data_ptr<T>();
    std::atomic<bool> nan_seen{false};
    at::parallel_for(0, s.B, grain(s), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T r = 0;
        for (int64_t l = 0; l < s.L; ++l) r += row_log_lik<T>(s, ap + (l * s.B + b) * W, xp + b * s.D, nullptr, T(0));
        rp[b] = r / T(s.L);
        if (std::isnan(r)) nan_seen = true;
        const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
        T k = 0;
        if (est == heads::KlEst::Analytic) {
          for (int64_t j = 0; j < s.Z; ++j) k += T(0.5) * (m[j] * m[j] + sg[j] * sg[j] - T(1)) - std::log(sg[j]);
        } else {
          for (int64_t l = 0; l < s.L; ++l) {
            const T* zz = zp + (l * s.B + b) * s.Z;
            for (int64_t j = 0; j < s.Z; ++j) {
              const T e = (zz[j] - m[j]) / sg[j];
              k += T(0.5) * (zz[j] * zz[j] - e * e) - std::log(sg[j]);
            }
          }
          k /= T(s.L);
        }
        kp[b] = k;
      }
    });
    check_rows<T>(op, nan_seen, out);
  });
  return {rec - kl, rec, kl};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_terms_backward(
    const at::Tensor& g_rec_, const at::Tensor& g_kl_, const at::Tensor& x_, const at::Tensor& out_,
    const at::Tensor& z_, const at::Tensor& mu_, const at::Tensor& sigma_, std::string likelihood,
    double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_elbo_terms_backward";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = heads::parse_kl(op, estimator);
  heads::check_weights(op, "g_rec", g_rec_, x_, s.B);
  heads::check_weights(op, "g_kl", g_kl_, x_, s.B);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous(), g_rec = g_rec_.contiguous(), g_kl = g_kl_.contiguous();
  auto d_out = at::empty_like(out), d_z = at::empty_like(z), d_mu = at::empty_like(mu),
       d_sigma = at::empty_like(sigma);
  const int64_t W = out.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    const T *xp = x.data_ptr<T>(), *ap = out.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
            *sp = sigma.data_ptr<T>(), *gr = g_rec.data_ptr<T>(), *gk = g_kl.data_ptr<T>();
    T *dop = d_out.data_ptr<T>(), *dzp = d_z.data_ptr<T>(), *dmp = d_mu.data_ptr<T>(), *dsp = d_sigma.data_ptr<T>();
    at::parallel_for(0, s.B, grain(s), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T wr = gr[b] / T(s.L);
        for (int64_t l = 0; l < s.L; ++l) {
          const int64_t r = l * s.B + b;
          row_log_lik<T>(s, ap + r * W, xp + b * s.D, dop + r * W, wr, false);
        }
        const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
        T *dm = dmp + b * s.Z, *ds = dsp + b * s.Z;
        if (est == heads::KlEst::Analytic) {
          for (int64_t l = 0; l < s.L; ++l) std::fill_n(dzp + (l * s.B + b) * s.Z, s.Z, T(0));
          for (int64_t j = 0; j < s.Z; ++j) {
            dm[j] = gk[b] * m[j];
            ds[j] = gk[b] * (sg[j] - T(1) / sg[j]);
          }
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
        }
        if (est == heads::KlEst::Mc) {
          for (int64_t j = 0; j < s.Z; ++j) {
            dm[j] /= sg[j];
            ds[j] /= sg[j];
          }
        } else {  // stl: q's parameters held fixed
          std::fill_n(dm, s.Z, T(0));
          std::fill_n(ds, s.Z, T(0));
        }
      }
    });
  });
  return {d_out, d_z, d_mu, d_sigma};
}

// log w_kb into lw [K] for image b (log p(x | out_k) + log p(z_k) - log q(z_k)), then softmax in place into w.
template <typename T>
T image_log_weights(const HeadShape& s, int64_t W, const T* xp, const T* ap, const T* zp, const T* mp, const T* sp,
                    int64_t b, T* lw, T* w) {
  const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t k = 0; k < s.L; ++k) {
    const int64_t r = k * s.B + b;
    T v = row_log_lik<T>(s, ap + r * W, xp + b * s.D, nullptr, T(0));
    const T* zz = zp + r * s.Z;
    for (int64_t j = 0; j < s.Z; ++j) {
      const T e = (zz[j] - m[j]) / sg[j];
      v += T(0.5) * (e * e - zz[j] * zz[j]) + std::log(sg[j]);
    }
    lw[k] = v;
    mx = std::max(mx, v);
  }
  T sum = 0;
  for (int64_t k = 0; k < s.L; ++k) sum += (w[k] = std::exp(lw[k] - mx));
  for (int64_t k = 0; k < s.L; ++k) w[k] /= sum;
  return mx + std::log(sum) - std::log(T(s.L));  // logsumexp - log K
}

std::tuple<at::Tensor, at::Tensor> iwae_bound(const at::Tensor& x_, const at::Tensor& out_, const at::Tensor& z_,
                                              const at::Tensor& mu_, const at::Tensor& sigma_, std::string likelihood,
                                              double gaussian_sigma, std::string gaussian_scale,
                                              std::string estimator) {
  const char* op = "iwae_bound";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  heads::parse_iwae(op, estimator);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous();
  auto bound = at::empty({s.B}, x.options()), weights = at::empty({s.L, s.B}, x.options());
  const int64_t W = out.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    check_data<T>(op, s, x, out, z, mu, sigma);
    T *bp = bound.data_ptr<T>(), *wp = weights.data_ptr<T>();
    std::atomic<bool> nan_seen{false};
    at::parallel_for(0, s.B, grain(s), [&](int64_t b0, int64_t b1) {
      std::vector<T> lw(s.L), w(s.L);
      for (int64_t b = b0; b < b1; ++b) {
        bp[b] = image_log_weights<T>(s, W, x.data_ptr<T>(), out.data_ptr<T>(), z.data_ptr<T>(), mu.data_ptr<T>(),
                                     sigma.data_ptr<T>(), b, lw.data(), w.data());
        for (int64_t k = 0; k < s.L; ++k) wp[k * s.B + b] = w[k];
        if (std::isnan(bp[b])) nan_seen = true;
      }
    });
    check_rows<T>(op, nan_seen, out);
  });
  return {bound, weights};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> iwae_bound_backward(
    const at::Tensor& g_, const at::Tensor& weights_, const at::Tensor& x_, const at::Tensor& out_,
    const at::Tensor& z_, const at::Tensor& mu_, const at::Tensor& sigma_, std::string likelihood, double gaussian_sigma, std::string gaussian_scale,
    std::string estimator) {
  const char* op = "_iwae_bound_backward";
  const auto s = heads::check_heads(op, x_, out_, z_, mu_, sigma_, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = heads::parse_iwae(op, estimator);
  heads::check_weights(op, "g", g_, x_, s.B);
  heads::check_importance_weights(op, weights_, x_, s.L, s.B);
  auto x = x_.contiguous(), out = out_.contiguous(), z = z_.contiguous(), mu = mu_.contiguous(),
       sigma = sigma_.contiguous(), g = g_.contiguous(), weights = weights_.contiguous();
  auto d_out = at::empty_like(out), d_z = at::empty_like(z), d_mu = at::empty_like(mu),
       d_sigma = at::empty_like(sigma);
  const int64_t W = out.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastvae_heads", [&] {
    using T = scalar_t;
    const T *xp = x.data_ptr<T>(), *ap = out.data_ptr<T>(), *zp = z.data_ptr<T>(), *mp = mu.data_ptr<T>(),
            *sp = sigma.data_ptr<T>(), *gp = g.data_ptr<T>(), *wp = weights.data_ptr<T>();
    T *dop = d_out.data_ptr<T>(), *dzp = d_z.data_ptr<T>(), *dmp = d_mu.data_ptr<T>(), *dsp = d_sigma.data_ptr<T>();
    at::parallel_for(0, s.B, grain(s), [&](int64_t b0, int64_t b1) {
      std::vector<T> w(s.L);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t k = 0; k < s.L; ++k) w[k] = wp[k * s.B + b];  // the forward's softmax_k(log w)
        const T *m = mp + b * s.Z, *sg = sp + b * s.Z;
        T *dm = dmp + b * s.Z, *ds = dsp + b * s.Z;
        std::fill_n(dm, s.Z, T(0));
        std::fill_n(ds, s.Z, T(0));
        for (int64_t k = 0; k < s.L; ++k) {
          const int64_t r = k * s.B + b;
          const T c = gp[b] * w[k];
          row_log_lik<T>(s, ap + r * W, xp + b * s.D, dop + r * W, c, false);
          const T cz = est == heads::IwEst::Dreg ? c * w[k] : c;
          const T* zz = zp + r * s.Z;
          T* dz = dzp + r * s.Z;
          for (int64_t j = 0; j < s.Z; ++j) {
            const T e = (zz[j] - m[j]) / sg[j];
            dz[j] = cz * (e / sg[j] - zz[j]);
            dm[j] -= c * e;
            ds[j] += c * (T(1) - e * e);
          }
        }
        for (int64_t j = 0; j < s.Z; ++j) {
          if (est == heads::IwEst::Reparam) {
            dm[j] /= sg[j];
            ds[j] /= sg[j];
          } else {  // stl and dreg: no direct gradient to q's parameters
            dm[j] = T(0);
            ds[j] = T(0);
          }
        }
      }
    });
  });
  return {d_out, d_z, d_mu, d_sigma};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("elbo_terms", &elbo_terms);
  m.impl("_elbo_terms_backward", &elbo_terms_backward);
  m.impl("iwae_bound", &iwae_bound);
  m.impl("_iwae_bound_backward", &iwae_bound_backward);
}

}  // namespace cpu
}  // namespace fastvae
