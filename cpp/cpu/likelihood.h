// Per-row log-likelihoods of a decoder output and their gradients, shared by the fused VAE engine
// (vae_engine.cpp) and the objective heads (heads_kernel.cpp). One definition of each formula.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fastvae {
namespace cpu {

// log p(x | logits) = sum_d x_d a_d - softplus(a_d) and, if g != nullptr, g = w (x - sigmoid(a)),
// both from one exp and one log1p of -|a| so that no logit overflows (the homeworks' sigmoid + BCE
// is this same likelihood, computed stably).
template <typename T>
T bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  Vec acc(T(0));
  const Vec zero(T(0)), one(T(1)), wv(w);
  int64_t d = 0;
  for (; d + W <= D; d += W) {
    Vec av = Vec::loadu(a + d), xv = Vec::loadu(x + d);
    Vec e = (zero - av.abs()).exp();
    Vec sp = at::vec::maximum(av, zero) + e.log1p();
    acc = acc + (xv * av - sp);
    if (g) {
      Vec inv = one / (one + e);
      Vec sig = Vec::blendv(e * inv, inv, av >= zero);
      (wv * (xv - sig)).store(g + d);
    }
  }
  T s = at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, acc);
  for (; d < D; ++d) {
    T av = a[d], e = std::exp(-std::abs(av));
    s += x[d] * av - (std::max(av, T(0)) + std::log1p(e));
    if (g) {
      T inv = T(1) / (T(1) + e);
      g[d] = w * (x[d] - (av >= 0 ? inv : e * inv));
    }
  }
  return s;
}

// g = w (x - sigmoid(a)) only (the backward's row: no log1p, no sum).
template <typename T>
void bernoulli_grad_row(const T* a, const T* x, int64_t D, T* g, T w) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const Vec zero(T(0)), one(T(1)), wv(w);
  int64_t d = 0;
  for (; d + W <= D; d += W) {
    Vec av = Vec::loadu(a + d), xv = Vec::loadu(x + d);
    Vec e = (zero - av.abs()).exp();
    Vec inv = one / (one + e);
    (wv * (xv - Vec::blendv(e * inv, inv, av >= zero))).store(g + d);
  }
  for (; d < D; ++d) {
    T av = a[d], e = std::exp(-std::abs(av)), inv = T(1) / (T(1) + e);
    g[d] = w * (x[d] - (av >= 0 ? inv : e * inv));
  }
}

// log C and d log C / da of the continuous Bernoulli normaliser (Loaiza-Ganem & Cunningham 2019, eq. 7)
// at lambda = sigmoid(a): C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) = a / tanh(a / 2), so
// log C = log(a / tanh(a / 2)) and d log C / da = 1/a - 1/sinh(a), both finite for every logit (the
// ratio tends to |a|). Near a = 0 (0/0, and cancellation in the derivative) both come from their Taylor
// series in u = a/2, on the region torch.distributions.ContinuousBernoulli uses (|lambda - 1/2| < 1e-3,
// i.e. |a| < 2 artanh(0.002)): log C = log 2 + u^2/3 - 7u^4/90 + 62u^6/2835. Computed in double.
inline void cb_log_norm(double a, double& logc, double& dlogc) {
  constexpr double kCut = 4.0000053333e-3;  // 2 artanh(0.002)
  if (std::abs(a) < kCut) {
    const double u2 = 0.25 * a * a;
    logc = 0.69314718055994530942 + u2 * (1.0 / 3 + u2 * (-7.0 / 90 + u2 * (62.0 / 2835)));
    const double a2 = a * a;
    dlogc = a * (1.0 / 6 + a2 * (-7.0 / 360 + a2 * (31.0 / 15120)));
  } else {
    logc = std::log(a / std::tanh(0.5 * a));
    dlogc = 1.0 / a - 1.0 / std::sinh(a);
  }
}

// Each *_row returns log p(x | a) for one decoder output row a and data row x [D] and, if g != nullptr,
// writes g = w * d log p / da (the gradient a decoder backward starts from).
// Gaussian with a decoder-predicted log-variance (Kingma & Welling 2014, C.2): the row a holds the means
// a[0, D) and the log-variances lv = a[D, 2D); log p = sum_d -(x_d - mu_d)^2 / (2 exp(lv_d)) - lv_d / 2
// - log(2 pi) / 2, d/dmu = (x - mu) exp(-lv), d/dlv = ((x - mu)^2 exp(-lv) - 1) / 2; g has 2D entries.
// lv is unbounded: nothing is clamped, so an extreme lv gives inf / NaN, which the training loop reports.
template <typename T>
T gaussian_predicted_row(const T* a, const T* x, int64_t D, T* g, T w) {
  T s = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T r = x[d] - a[d], lv = a[D + d], iv = std::exp(-lv), q = r * r * iv;
    s -= T(0.5) * (q + lv);
    if (g) {
      g[d] = w * r * iv;
      g[D + d] = w * T(0.5) * (q - T(1));
    }
  }
  return s - T(D) * T(0.91893853320467274178);  // log(2 pi) / 2 per pixel
}

// Continuous Bernoulli: log p = x a - softplus(a) + log C(sigmoid(a)) = the Bernoulli row + log C terms.
template <typename T>
T continuous_bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w) {
  T s = bernoulli_row<T>(a, x, D, g, w);
  double extra = 0;
  for (int64_t d = 0; d < D; ++d) {
    double lc, dlc;
    cb_log_norm(static_cast<double>(a[d]), lc, dlc);
    extra += lc;
    if (g) g[d] += w * static_cast<T>(dlc);
  }
  return s + static_cast<T>(extra);
}

// Gaussian with fixed sigma: log p = sum_d -(x_d - a_d)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2,
// d/da = (x - a) / sigma^2.
template <typename T>
T gaussian_fixed_row(const T* a, const T* x, int64_t D, T* g, T w, double sigma) {
  const T inv_var = T(1) / static_cast<T>(sigma * sigma);
  const T norm = static_cast<T>(std::log(sigma) + 0.91893853320467274178);  // + log(2 pi) / 2
  T s = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T r = x[d] - a[d];
    s -= T(0.5) * r * r * inv_var;
    if (g) g[d] = w * r * inv_var;
  }
  return s - T(D) * norm;
}

}  // namespace cpu
}  // namespace fastvae
