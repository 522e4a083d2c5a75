// Bernoulli likelihood on binary pixels, parameterized by the decoder's logits a:
// log p(x | a) = x a - softplus(a), d/da = x - sigmoid(a), both from one exp(-|a|) and one log1p so that no logit
// overflows (the homeworks' sigmoid + binary cross-entropy is this same likelihood, computed stably); mean sigmoid(a).
// Fused CPU row: the hand-vectorized bernoulli_row (cpu/likelihood.h), whose scalar tail is log_density.
#pragma once
#include <algorithm>
#include <cmath>

#include "likelihoods/likelihood.h"

namespace fastvae {
namespace likelihoods {

struct Bernoulli {
  static constexpr const char* name = "bernoulli";
  static constexpr const char* title = "Bernoulli";
  static constexpr Data data = Data::Binary;
  static constexpr int64_t outputs = 1;

  template <typename T>
  static T log_density(T a, T x, const Params&, T* dlda) {
    const T e = std::exp(-std::abs(a));
    if (dlda) {
      const T inv = T(1) / (T(1) + e);
      *dlda = x - (a >= 0 ? inv : e * inv);
    }
    return x * a - (std::max(a, T(0)) + std::log1p(e));
  }

  // Per pixel, before the sum (the continuous Bernoulli adds its normaliser): x a - softplus(a), x - sigmoid(a).
  static std::pair<at::Tensor, at::Tensor> log_prob(const at::Tensor& x, const at::Tensor& a, bool grad) {
    auto e = at::exp(-a.abs());
    auto sp = a.clamp_min(0) + at::log1p(e);  // softplus(a)
    return {x * a - sp, grad ? x - at::sigmoid(a) : at::Tensor()};
  }

  static std::pair<at::Tensor, at::Tensor> log_lik(const at::Tensor& x, const at::Tensor& out, const Params&,
                                                   bool grad) {
    auto [lp, g] = log_prob(x, out, grad);
    return {lp.sum(-1), g};
  }

  static at::Tensor mean(const at::Tensor& out, const Params&) { return at::sigmoid(out); }
};

}  // namespace likelihoods
}  // namespace fastvae
