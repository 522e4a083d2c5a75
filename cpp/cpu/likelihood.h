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

// Runs step(d, acc) over the whole vectors of a row of D values and returns the sum of the accumulators'
// lanes; d is left where the scalar tail starts. Two vectors per iteration with their own accumulators: the
// exp / divide / polynomial chain of a likelihood row is long, and independent work lets the core overlap two.
template <typename T, typename Step>
T vector_pass(int64_t D, int64_t& d, const Step& step) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  Vec acc0(T(0)), acc1(T(0));
  for (d = 0; d + 2 * W <= D; d += 2 * W) {
    step(d, acc0);
    step(d + W, acc1);
  }
  for (; d + W <= D; d += W) step(d, acc0);
  return at::vec::vec_reduce_all<T>([](Vec& p, Vec& q) { return p + q; }, acc0 + acc1);
}

// One Bernoulli pixel of a row's scalar tail: x a - softplus(a), and, if dlda, x - sigmoid(a) (unweighted).
template <typename T>
T bernoulli_pixel(T a, T x, T* dlda) {
  const T e = std::exp(-std::abs(a));
  if (dlda) {
    const T inv = T(1) / (T(1) + e);
    *dlda = x - (a >= 0 ? inv : e * inv);
  }
  return x * a - (std::max(a, T(0)) + std::log1p(e));
}

// log p(x | logits) = sum_d x_d a_d - softplus(a_d) and, if g != nullptr, g = w (x - sigmoid(a)),
// both from one exp and one log1p of -|a| so that no logit overflows (the homeworks' sigmoid + BCE
// is this same likelihood, computed stably).
// With nonbinary != nullptr the same pass also sets *nonbinary if some x_d is neither 0 nor 1 (NaN included):
// the heads check their data there instead of in a pass of its own.
template <typename T>
T bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w, bool* nonbinary = nullptr) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  Vec flags(T(0));
  const Vec zero(T(0)), one(T(1)), wv(w);
  auto step = [&](int64_t d, Vec& acc) {
    Vec av = Vec::loadu(a + d), xv = Vec::loadu(x + d);
    // x^2 - x is +0 exactly for x in {0, 1} and nonzero (or NaN) otherwise: OR its bits into the flags
    if (nonbinary) flags = flags | at::vec::fmsub(xv, xv, xv);
    Vec e = exp_nonpositive<T>(zero - av.abs());
    acc = at::vec::fmadd(xv, av, acc) - at::vec::maximum(av, zero) - log1p_unit<T>(e);
    if (g) {
      Vec inv = one / (one + e);
      Vec sig = Vec::blendv(e * inv, inv, av >= zero);
      (wv * (xv - sig)).store(g + d);
    }
  };
  int64_t d;
  T s = vector_pass<T>(D, d, step);
  // flags lanes have some bit set where x was bad, are +0 elsewhere
  if (nonbinary && flags.zero_mask() != (1 << W) - 1) *nonbinary = true;
  for (; d < D; ++d) {
    if (nonbinary && x[d] != T(0) && x[d] != T(1)) *nonbinary = true;
    T dl;
    s += bernoulli_pixel<T>(a[d], x[d], g ? &dl : nullptr);
    if (g) g[d] = w * dl;
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

// Continuous Bernoulli: log p = x a - softplus(a) + log C(sigmoid(a)) = the Bernoulli row + log C terms.
// Float32 rows in one pass that shares the Bernoulli part's e = exp(-|a|): with t = |a|,
// tanh(t / 2) = (1 - e) / (1 + e) and sinh(t) = (1 - e^2) / (2e), so
//   log C = log t + log1p(e) - log(1 - e)   (its log1p(e) cancels softplus's),
//   d log C / da = 1/a - sign(a) 2e / (1 - e^2) = r ((1 - e) - 2 e t / (1 + e)),   r = 1 / (a (1 - e)):
// two inline logs and one more division per pixel instead of Sleef's tanh, log and sinh and two reciprocals.
// 1/a - 1/sinh(a) loses digits to cancellation in single precision as a -> 0 (the error is about eps / (a (1 - e))),
// so the Taylor series of log C in a^2 and of d log C / da in a (eight terms each, truncation below 2e-9 at the cut)
// covers |a| < 1; beyond, the exact forms keep the gradient within a few float ulps.
inline float continuous_bernoulli_row_f32(const float* a, const float* x, int64_t D, float* g, float w) {
  using Vec = at::vec::Vectorized<float>;
  const Vec zero(0.f), one(1.f), two(2.f), cut(1.f), ln2(0.69314718f), wv(w);
  // log C = ln 2 + a^2 P(a^2) and d log C / da = a Q(a^2) (series of log(a / tanh(a / 2)) and its derivative)
  static constexpr float kLogC[] = {
      float(-16931177.0 / 12194997534720000.0), float(8191.0 / 523069747200.0),
      float(-1414477.0 / 7846046208000.0), float(73.0 / 34214400.0), float(-127.0 / 4838400.0),
      float(31.0 / 90720.0), float(-7.0 / 1440.0), float(1.0 / 12.0)};
  static constexpr float kDLogC[] = {
      float(-16931177.0 / 762187345920000.0), float(8191.0 / 37362124800.0), float(-1414477.0 / 653837184000.0),
      float(73.0 / 3421440.0), float(-127.0 / 604800.0), float(31.0 / 15120.0), float(-7.0 / 360.0),
      float(1.0 / 6.0)};
  auto step = [&](int64_t d, Vec& acc) {
    const Vec av = Vec::loadu(a + d), xv = Vec::loadu(x + d), t = av.abs();
    const Vec e = exp_nonpositive<float>(zero - t), small = t < cut, a2 = av * av;
    // the exact forms on the lanes they serve; elsewhere t = 1 keeps them finite (and unused)
    const Vec ts = Vec::blendv(t, one, small), ome = one - Vec::blendv(e, Vec(0.36787944f), small);
    // - softplus(a) + log C: the exact branch's log1p(e) cancels softplus's
    const Vec rest = Vec::blendv(log_positive<float>(ts) - log_positive<float>(ome),
                                 at::vec::fmadd(a2, horner(a2, kLogC), ln2) - log1p_unit<float>(e), small);
    acc = at::vec::fmadd(xv, av, acc) - at::vec::maximum(av, zero) + rest;
    if (g) {
      const Vec inv = one / (one + e);
      const Vec sig = Vec::blendv(e * inv, inv, av >= zero);
      const Vec r = one / (Vec::blendv(av, one, small) * ome);
      const Vec dlog_c = Vec::blendv(r * (ome - two * e * ts * inv), av * horner(a2, kDLogC), small);
      (wv * (xv - sig + dlog_c)).store(g + d);
    }
  };
  int64_t d;
  float s = vector_pass<float>(D, d, step);
  for (; d < D; ++d) {
    double lc, dlc;
    cb_log_norm(static_cast<double>(a[d]), lc, dlc);
    float dl;
    s += bernoulli_pixel<float>(a[d], x[d], g ? &dl : nullptr) + static_cast<float>(lc);
    if (g) g[d] = w * (dl + static_cast<float>(dlc));
  }
  return s;
}

template <typename T>
T continuous_bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w) {
  if constexpr (std::is_same<T, float>::value) return continuous_bernoulli_row_f32(a, x, D, g, w);
  return bernoulli_row<T>(a, x, D, g, w) + static_cast<T>(cb_log_norm_row<T>(a, D, g, w));
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
