// The activations of the engine's layers (Act, cpp/vae_spec.h): their values, their derivatives through the output,
// and the fused bias-and-activation pass over a row of a layer's pre-activations.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cpu/vec_math.h"
#include "vae_spec.h"

namespace fastvae {
namespace cpu {

// One entry's activation. The layers' pass is bias_act_row; this scalar form (std::tanh, std::exp) serves the
// posterior heads' mean and scale activations.
template <typename T>
inline T act_value(Act a, T v, T slope) {
  switch (a) {
    case Act::Identity: return v;
    case Act::ReLU: return v > T(0) ? v : T(0);
    case Act::LeakyReLU: return v > T(0) ? v : slope * v;
    case Act::Tanh: return std::tanh(v);
    case Act::Sigmoid: return T(1) / (T(1) + std::exp(-v));
  }
  return v;
}

// Derivative expressed through the activation's output y (slope >= 0 keeps leaky_relu invertible).
template <typename T>
inline T act_grad(Act a, T y, T slope) {
  switch (a) {
    case Act::Identity: return T(1);
    case Act::ReLU: return y > T(0) ? T(1) : T(0);
    case Act::LeakyReLU: return y > T(0) ? T(1) : slope;
    case Act::Tanh: return T(1) - y * y;
    case Act::Sigmoid: return y * (T(1) - y);
  }
  return T(1);
}

// Applies `f(T* row, int64_t cols)` with the activation fixed at compile time, so the inner loops
// of relu / leaky / identity vectorize.
template <typename T, typename F>
inline void with_act(Act a, F&& f) {
  switch (a) {
    case Act::Identity: f(std::integral_constant<Act, Act::Identity>()); break;
    case Act::ReLU: f(std::integral_constant<Act, Act::ReLU>()); break;
    case Act::LeakyReLU: f(std::integral_constant<Act, Act::LeakyReLU>()); break;
    case Act::Tanh: f(std::integral_constant<Act, Act::Tanh>()); break;
    case Act::Sigmoid: f(std::integral_constant<Act, Act::Sigmoid>()); break;
  }
}

// row[j] = act(row[j] + bias[j]) for j < n (no bias if bias is null), the activation pass of every engine layer.
// tanh and sigmoid are vectorized (tanh_vec, cpu/vec_math.h; sigmoid through Sleef's exp): the scalar std::tanh
// was the largest single cost of a tanh network's update (callgrind, docs/engine.md). The entries past the last
// whole vector go through the same vector code, zero-padded, so that an entry's value does not depend on its column.
template <Act A, typename T>
inline void bias_act_row(T* row, const T* bias, int64_t n, T slope) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  if constexpr (A == Act::Tanh || A == Act::Sigmoid) {
    const Vec one(T(1));
    auto act = [&](const Vec& v) { return A == Act::Tanh ? tanh_vec<T>(v) : one / (one + v.neg().exp()); };
    int64_t j = 0;
    for (; j + W <= n; j += W)
      act(bias ? Vec::loadu(row + j) + Vec::loadu(bias + j) : Vec::loadu(row + j)).store(row + j);
    if (j < n) {
      const int64_t k = n - j;
      act(bias ? Vec::loadu(row + j, k) + Vec::loadu(bias + j, k) : Vec::loadu(row + j, k)).store(row + j, k);
    }
  } else {
    for (int64_t j = 0; j < n; ++j) row[j] = act_value<T>(A, bias ? row[j] + bias[j] : row[j], slope);
  }
}

}  // namespace cpu
}  // namespace fastvae
