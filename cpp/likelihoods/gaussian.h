// Gaussian likelihood on real-valued pixels (Kingma & Welling 2014, C.2): the decoder output a is the mean, with the
// scale set by gaussian_scale (vae_spec.h, GaussianScale): fixed (sigma = gaussian_sigma), learned (a per-pixel
// log sigma the engine holds as the last parameter) or predicted (the decoder outputs 2D per row: the means, then the
// log-variances). The rows are scalar loops the compiler vectorizes; the fused CPU code calls them directly
// (cpu/likelihood.h), so the Gaussian needs no log_density. The mean is the decoder's mean output.
#pragma once
#include <cmath>

#include "likelihoods/likelihood.h"

namespace fastvae {
namespace likelihoods {

struct Gaussian {
  static constexpr const char* name = "gaussian";
  static constexpr const char* title = "Gaussian";
  static constexpr Data data = Data::Real;
  static constexpr int64_t outputs = 1;  // 2 with a predicted scale (Params::predicted)

  static constexpr double kHalfLog2Pi = 0.91893853320467274178;  // log(2 pi) / 2

  // Each *_row returns log p(x | a) for one decoder output row a and data row x [D] and, if g != nullptr, writes
  // g = w * d log p / da (the gradient a decoder backward starts from).
  // Fixed sigma: log p = sum_d -(x_d - a_d)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2, d/da = (x - a) / sigma^2.
  template <typename T>
  static T fixed_row(const T* a, const T* x, int64_t D, T* g, T w, double sigma) {
    const T inv_var = T(1) / static_cast<T>(sigma * sigma);
    const T norm = static_cast<T>(std::log(sigma) + kHalfLog2Pi);
    T s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T r = x[d] - a[d];
      s -= T(0.5) * r * r * inv_var;
      if (g) g[d] = w * r * inv_var;
    }
    return s - T(D) * norm;
  }

  // Predicted log-variance: the row a holds the means a[0, D) and the log-variances lv = a[D, 2D);
  // log p = sum_d -(x_d - mu_d)^2 / (2 exp(lv_d)) - lv_d / 2 - log(2 pi) / 2, d/dmu = (x - mu) exp(-lv),
  // d/dlv = ((x - mu)^2 exp(-lv) - 1) / 2; g has 2D entries. lv is unbounded: nothing is clamped, so an extreme lv
  // gives inf / NaN, which the training loop reports.
  template <typename T>
  static T predicted_row(const T* a, const T* x, int64_t D, T* g, T w) {
    T s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T r = x[d] - a[d], lv = a[D + d], iv = std::exp(-lv), q = r * r * iv;
      s -= T(0.5) * (q + lv);
      if (g) {
        g[d] = w * r * iv;
        g[D + d] = w * T(0.5) * (q - T(1));
      }
    }
    return s - T(D) * T(kHalfLog2Pi);
  }

  // Learned per-pixel scale: log p = sum_d -(x_d - a_d)^2 inv_var_d / 2 - log_sigma_d - log(2 pi) / 2,
  // inv_var = exp(-2 log_sigma) (precomputed once per engine pass), d/da = (x - a) inv_var. The gradient with
  // respect to log sigma sums over rows: the engine's separate column pass (learned_scale_grad).
  template <typename T>
  static T learned_row(const T* a, const T* x, int64_t D, T* g, T w, const T* log_sigma, const T* inv_var) {
    T s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T r = x[d] - a[d];
      s -= T(0.5) * r * r * inv_var[d] + log_sigma[d];
      if (g) g[d] = w * r * inv_var[d];
    }
    return s - T(D) * T(kHalfLog2Pi);
  }

  static std::pair<at::Tensor, at::Tensor> log_lik(const at::Tensor& x, const at::Tensor& out, const Params& p,
                                                   bool grad) {
    const int64_t D = x.size(-1);
    if (p.predicted) {
      auto m = out.narrow(-1, 0, D), lv = out.narrow(-1, D, D);
      auto r = x - m, iv = at::exp(-lv), q = r * r * iv;
      auto ll = (q + lv).sum(-1).mul(-0.5).sub(D * kHalfLog2Pi);
      return {ll, grad ? at::cat({r * iv, (q - 1) * 0.5}, -1) : at::Tensor()};
    }
    const double iv = 1.0 / (p.scale * p.scale);
    auto r = x - out;
    auto ll = (r * r).sum(-1).mul(-0.5 * iv).sub(D * (std::log(p.scale) + kHalfLog2Pi));
    return {ll, grad ? r * iv : at::Tensor()};
  }

  // The mean columns, copied (an op's output must not alias its input).
  static at::Tensor mean(const at::Tensor& out, const Params& p) {
    return (p.predicted ? out.narrow_symint(-1, 0, out.sym_size(-1) / 2) : out).clone(at::MemoryFormat::Contiguous);
  }
};

}  // namespace likelihoods
}  // namespace fastvae
