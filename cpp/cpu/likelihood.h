// Per-row log-likelihoods of a decoder output and their gradients, shared by the fused VAE engine
// (vae_engine.cpp) and the objective heads (heads_kernel.cpp). One definition of each formula.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "cpu/vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace fastvae {
namespace cpu {

// log p(x | logits) = sum_d x_d a_d - softplus(a_d) and, if g != nullptr, g = w (x - sigmoid(a)),
// both from one exp and one log1p of -|a| so that no logit overflows (the homeworks' sigmoid + BCE
// is this same likelihood, computed stably).
// With nonbinary != nullptr the same pass also sets *nonbinary if some x_d is neither 0 nor 1 (NaN included):
// the heads check their data there instead of in a pass of its own.
template <typename T>
T bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w, bool* nonbinary = nullptr) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  Vec acc0(T(0)), acc1(T(0)), flags(T(0));
  const Vec zero(T(0)), one(T(1)), wv(w);
  auto step = [&](int64_t d, Vec& acc) {
    Vec av = Vec::loadu(a + d), xv = Vec::loadu(x + d);
    if (nonbinary) flags = flags | ((xv != zero) & (xv != one));
    Vec e = exp_nonpositive<T>(zero - av.abs());
    Vec sp = at::vec::maximum(av, zero) + log1p_unit<T>(e);
    acc = acc + (xv * av - sp);
    if (g) {
      Vec inv = one / (one + e);
      Vec sig = Vec::blendv(e * inv, inv, av >= zero);
      (wv * (xv - sig)).store(g + d);
    }
  };
  int64_t d = 0;
  // Two vectors per iteration with their own accumulators: the exp / divide / polynomial chain is long, and
  // independent work lets the core overlap two of them.
  for (; d + 2 * W <= D; d += 2 * W) {
    step(d, acc0);
    step(d + W, acc1);
  }
  for (; d + W <= D; d += W) step(d, acc0);
  T s = at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, acc0 + acc1);
  // flags lanes are all-ones bit patterns where x was bad, +0 elsewhere
  if (nonbinary && flags.zero_mask() != (1 << W) - 1) *nonbinary = true;
  for (; d < D; ++d) {
    if (nonbinary && x[d] != T(0) && x[d] != T(1)) *nonbinary = true;
    T av = a[d], e = std::exp(-std::abs(av));
    s += x[d] * av - (std::max(av, T(0)) + std::log1p(e));
    if (g) {
      T inv = T(1) / (T(1) + e);
      g[d] = w * (x[d] - (av >= 0 ? inv : e * inv));
    }
  }
  return s;
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

// sum_d log C(sigmoid(a_d)) over a row, and g_d += w * d log C / da_d if g != nullptr: cb_log_norm's formulas
// and cut, four lanes at a time in double (Sleef's log, tanh, sinh through at::vec), so that the normaliser costs
// about what the Bernoulli part does instead of three scalar libm calls per pixel.
template <typename T>
double cb_log_norm_row(const T* a, int64_t D, T* g, T w) {
  using VD = at::vec::Vectorized<double>;
  constexpr int64_t W = VD::size();
  const VD cut(4.0000053333e-3), one(1.0), half(0.5), quarter(0.25), ln2(0.69314718055994530942);
  const VD c1(1.0 / 3), c2(-7.0 / 90), c3(62.0 / 2835), d1(1.0 / 6), d2(-7.0 / 360), d3(31.0 / 15120);
  VD acc(0.0);
  alignas(64) double buf[W];
  int64_t d = 0;
  for (; d + W <= D; d += W) {
    for (int64_t j = 0; j < W; ++j) buf[j] = static_cast<double>(a[d + j]);
    const VD av = VD::loadu(buf);
    const VD small = av.abs() < cut;
    const VD safe = VD::blendv(av, one, small);  // keeps the unused exact branch finite at a = 0
    const VD u2 = av * av * quarter;
    acc = acc + VD::blendv((safe / (safe * half).tanh()).log(), ln2 + u2 * (c1 + u2 * (c2 + u2 * c3)), small);
    if (g) {
      const VD a2 = av * av;
      VD::blendv(safe.reciprocal() - safe.sinh().reciprocal(), av * (d1 + a2 * (d2 + a2 * d3)), small).store(buf);
      for (int64_t j = 0; j < W; ++j) g[d + j] += w * static_cast<T>(buf[j]);
    }
  }
  double s = at::vec::vec_reduce_all<double>([](VD& p, VD& q) { return p + q; }, acc);
  for (; d < D; ++d) {
    double lc, dlc;
    cb_log_norm(static_cast<double>(a[d]), lc, dlc);
    s += lc;
    if (g) g[d] += w * static_cast<T>(dlc);
  }
  return s;
}

// The same for float32 rows, eight lanes of float: 1/a - 1/sinh(a) loses digits to cancellation in single
// precision as a -> 0, so the Taylor series (one more term each) covers |a| < 1/4, where its truncation error
// stays below 1e-8 relative; beyond, the exact forms keep about 1e-5 relative accuracy in the gradient.
inline double cb_log_norm_row_f32(const float* a, int64_t D, float* g, float w) {
  using VF = at::vec::Vectorized<float>;
  constexpr int64_t W = VF::size();
  const VF cut(0.25f), one(1.f), half(0.5f), quarter(0.25f), ln2(0.69314718f), wv(w);
  const VF c1(1.f / 3), c2(-7.f / 90), c3(62.f / 2835), c4(-127.f / 18900);
  const VF d1(1.f / 6), d2(-7.f / 360), d3(31.f / 15120), d4(-127.f / 604800);
  VF acc(0.f);
  int64_t d = 0;
  for (; d + W <= D; d += W) {
    const VF av = VF::loadu(a + d);
    const VF small = av.abs() < cut;
    const VF safe = VF::blendv(av, one, small);
    const VF u2 = av * av * quarter;
    acc = acc + VF::blendv((safe / (safe * half).tanh()).log(), ln2 + u2 * (c1 + u2 * (c2 + u2 * (c3 + u2 * c4))),
                           small);
    if (g) {
      const VF a2 = av * av;
      const VF dl = VF::blendv(safe.reciprocal() - safe.sinh().reciprocal(),
                               av * (d1 + a2 * (d2 + a2 * (d3 + a2 * d4))), small);
      (VF::loadu(g + d) + wv * dl).store(g + d);
    }
  }
  double s = at::vec::vec_reduce_all<float>([](VF& p, VF& q) { return p + q; }, acc);
  for (; d < D; ++d) {
    double lc, dlc;
    cb_log_norm(static_cast<double>(a[d]), lc, dlc);
    s += lc;
    if (g) g[d] += w * static_cast<float>(dlc);
  }
  return s;
}

// Continuous Bernoulli: log p = x a - softplus(a) + log C(sigmoid(a)) = the Bernoulli row + log C terms.
template <typename T>
T continuous_bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w) {
  const T s = bernoulli_row<T>(a, x, D, g, w);
  if constexpr (std::is_same<T, float>::value) return s + static_cast<T>(cb_log_norm_row_f32(a, D, g, w));
  return s + static_cast<T>(cb_log_norm_row<T>(a, D, g, w));
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
