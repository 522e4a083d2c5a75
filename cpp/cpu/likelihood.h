// The fused CPU rows of the likelihoods, shared by the VAE engine (vae_engine.cpp) and the objective heads
// (heads_kernel.cpp): likelihood_row dispatches through the table (likelihoods/table.h) to a likelihood's FusedRow,
// which is a scalar loop over its formula file's log_density unless it is specialised below with a hand-written row
// (the Bernoulli and continuous Bernoulli rows, vectorized with at::vec; the Gaussian's scalar rows).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "cpu/vec_math.h"
#include "likelihoods/table.h"

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

using likelihoods::Bernoulli;
using likelihoods::ContinuousBernoulli;
using likelihoods::Gaussian;

// Each *_row returns log p(x | a) for one decoder output row a and data row x [D] and, if g != nullptr, writes
// g = w * d log p / da (the gradient a decoder backward starts from).

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
    s += Bernoulli::log_density<T>(a[d], x[d], {}, g ? &dl : nullptr);
    if (g) g[d] = w * dl;
  }
  return s;
}

// sum_d log C(sigmoid(a_d)) over a row, and g_d += w * d log C / da_d if g != nullptr: the formulas and cut of
// ContinuousBernoulli::log_norm, four lanes at a time in double (Sleef's log, tanh, sinh through at::vec), so that
// the normaliser costs about what the Bernoulli part does instead of three scalar libm calls per pixel.
template <typename T>
double cb_log_norm_row(const T* a, int64_t D, T* g, T w) {
  using VD = at::vec::Vectorized<double>;
  constexpr int64_t W = VD::size();
  using CB = ContinuousBernoulli;
  const VD cut(CB::kTaylorCut), one(1.0), half(0.5), quarter(0.25), ln2(CB::kLn2);
  const VD c1(CB::kLogC[0]), c2(CB::kLogC[1]), c3(CB::kLogC[2]), d1(CB::kDLogC[0]), d2(CB::kDLogC[1]),
      d3(CB::kDLogC[2]);
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
    ContinuousBernoulli::log_norm(static_cast<double>(a[d]), lc, dlc);
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
  using CB = ContinuousBernoulli;
  const Vec zero(0.f), one(1.f), two(2.f), cut(1.f), ln2(static_cast<float>(CB::kLn2)), wv(w);
  // log C = ln 2 + a^2 P(a^2) and d log C / da = a Q(a^2) (series of log(a / tanh(a / 2)) and its derivative); the
  // three lowest terms are the formula file's (kLogC is in u^2 = a^2 / 4: the divisions by 4^k are exact).
  static constexpr float kLogC[] = {
      float(-16931177.0 / 12194997534720000.0), float(8191.0 / 523069747200.0),
      float(-1414477.0 / 7846046208000.0), float(73.0 / 34214400.0), float(-127.0 / 4838400.0),
      float(CB::kLogC[2] / 64), float(CB::kLogC[1] / 16), float(CB::kLogC[0] / 4)};
  static constexpr float kDLogC[] = {
      float(-16931177.0 / 762187345920000.0), float(8191.0 / 37362124800.0), float(-1414477.0 / 653837184000.0),
      float(73.0 / 3421440.0), float(-127.0 / 604800.0), float(CB::kDLogC[2]), float(CB::kDLogC[1]),
      float(CB::kDLogC[0])};
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
    float dl;
    s += ContinuousBernoulli::log_density<float>(a[d], x[d], {}, g ? &dl : nullptr);
    if (g) g[d] = w * dl;
  }
  return s;
}

template <typename T>
T continuous_bernoulli_row(const T* a, const T* x, int64_t D, T* g, T w) {
  if constexpr (std::is_same<T, float>::value) return continuous_bernoulli_row_f32(a, x, D, g, w);
  return bernoulli_row<T>(a, x, D, g, w) + static_cast<T>(cb_log_norm_row<T>(a, D, g, w));
}



// The fused row of likelihood L: log p(x | a) of one decoder output row and, if g, g = w * d log p / da. By default
// a scalar loop over its formula file's log_density; with nonbinary (data Binary only) the pass also flags an x_d
// that is neither 0 nor 1 (NaN included), as bernoulli_row does.
template <class L>
struct FusedRow {
  static_assert(L::outputs == 1, "a likelihood with several decoder outputs per pixel needs a FusedRow of its own");
  template <typename T>
  static T run(const T* a, const T* x, int64_t D, T* g, T w, const likelihoods::Params& params, bool* nonbinary) {
    const likelihoods::Params p = params;  // a local copy, so that loop-invariant terms (log of the scale) hoist
    T s = 0;
    for (int64_t d = 0; d < D; ++d) {
      if (L::data == likelihoods::Data::Binary && nonbinary && x[d] != T(0) && x[d] != T(1)) *nonbinary = true;
      T dl;
      s += L::template log_density<T>(a[d], x[d], p, g ? &dl : nullptr);
      if (g) g[d] = w * dl;
    }
    return s;
  }
};

template <>
struct FusedRow<Bernoulli> {
  template <typename T>
  static T run(const T* a, const T* x, int64_t D, T* g, T w, const likelihoods::Params&, bool* nonbinary) {
    return bernoulli_row<T>(a, x, D, g, w, nonbinary);
  }
};

template <>
struct FusedRow<ContinuousBernoulli> {
  template <typename T>
  static T run(const T* a, const T* x, int64_t D, T* g, T w, const likelihoods::Params&, bool*) {
    return continuous_bernoulli_row<T>(a, x, D, g, w);
  }
};

template <>
struct FusedRow<Gaussian> {
  template <typename T>
  static T run(const T* a, const T* x, int64_t D, T* g, T w, const likelihoods::Params& p, bool*) {
    return p.predicted ? Gaussian::predicted_row<T>(a, x, D, g, w) : Gaussian::fixed_row<T>(a, x, D, g, w, p.scale);
  }
};

// log p(x | a) of one row of likelihood lik and, if g, g = w * d log p / da; the row a has
// likelihood_outputs(lik, p.predicted) * D entries. nonbinary: see FusedRow (likelihoods on binary data).
template <typename T>
T likelihood_row(Likelihood lik, const likelihoods::Params& p, const T* a, const T* x, int64_t D, T* g, T w,
                 bool* nonbinary = nullptr) {
  return visit_likelihood(lik, [&](auto l) {
    return FusedRow<decltype(l)>::template run<T>(a, x, D, g, w, p, nonbinary);
  });
}

}  // namespace cpu
}  // namespace fastvae
