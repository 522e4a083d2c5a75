// Row math of the Gumbel-softmax sample (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017), shared by the
// sampler kernel fastvae.gumbel_softmax (gumbel_softmax_kernel.cpp) and the categorical latent of the VAE
// engine (categorical_latent.cpp), so both draw and differentiate the same way:
//   y = softmax((logits + G) / tau),  G = -log(-log U),  U ~ U(0, 1) strictly inside (injected or counter-based);
//   backward: g_logits = y * (g - <g, y>) / tau;  straight-through forward: one_hot(argmax y).
#pragma once
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/counter_rng.h"
#include "cpu/vec_math.h"

namespace fastvae {
namespace cpu {

using at::vec::Vectorized;

// Status bits raised by the forward pass; checked after the parallel loop.
enum : int { kNaN = 1, kAllNegInf = 2, kPosInf = 4, kBadNoise = 8 };

// rows x k samples into out from logits and the uniforms `noise` (nullptr: counter-based draws keyed by `key`
// at element offset `first`); returns the status bits (nonzero: out is incomplete).
template <typename T>
inline int gumbel_block(const T* logits, const T* noise, T* out, int64_t rows, int64_t k, T inv_tau,
                        uint64_t key, int64_t first) {
  using V = Vectorized<T>;
  const int64_t n = rows * k;
  int status = 0;
  if (!load_uniforms(noise, out, n, key, first)) status |= kBadNoise;
  // z = (logits + G) / tau with G = -log(-log u)
  const V vinv_tau(inv_tau);
  vec_apply<T>(out, logits, n, [&](V u, V l) { return (l - log_positive<T>(V(T(0)) - log_positive<T>(u))) * vinv_tau; });
  // per row: subtract the max (finite unless the row is all -inf or overflowed)
  for (int64_t r = 0; r < rows; ++r) {
    T* z = out + r * k;
    T m = -std::numeric_limits<T>::infinity();
    bool nan = false;
    for (int64_t j = 0; j < k; ++j) {
      nan |= std::isnan(z[j]);
      m = std::max(m, z[j]);
    }
    if (nan) status |= kNaN;
    if (m == -std::numeric_limits<T>::infinity()) status |= kAllNegInf;
    if (m == std::numeric_limits<T>::infinity()) status |= kPosInf;
    if (status) return status;
    for (int64_t j = 0; j < k; ++j) z[j] -= m;
  }
  vec_apply<T>(out, out, n, [](V z, V) { return exp_nonpositive<T>(z); }, T(0), T(0));  // z <= 0 after the max
  for (int64_t r = 0; r < rows; ++r) {
    T* z = out + r * k;
    T s = 0;
    for (int64_t j = 0; j < k; ++j) s += z[j];
    const T inv = T(1) / s;  // s >= 1: the max entry contributes exp(0)
    for (int64_t j = 0; j < k; ++j) z[j] *= inv;
  }
  return status;
}

// Softmax backward of the sample rows y: gx = y * (g - <g, y>) / tau. Returns whether every gx written is finite
// (v - v summed in the writing loop: 0 for finite values, NaN otherwise).
template <typename T>
inline bool softmax_bwd_rows(const T* g, const T* y, T* gx, int64_t rows, int64_t k, T inv_tau) {
  T check = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * k;
    const T* yr = y + r * k;
    T* o = gx + r * k;
    T dot = 0;
    for (int64_t j = 0; j < k; ++j) dot += gr[j] * yr[j];
    for (int64_t j = 0; j < k; ++j) {
      o[j] = yr[j] * (gr[j] - dot) * inv_tau;
      check += o[j] - o[j];
    }
  }
  return check == T(0);
}

// Index of the largest entry of a row (ties: the first), the straight-through forward.
template <typename T>
inline int64_t argmax_row(const T* y, int64_t k) {
  int64_t best = 0;
  for (int64_t j = 1; j < k; ++j)
    if (y[j] > y[best]) best = j;
  return best;
}

}  // namespace cpu
}  // namespace fastvae
