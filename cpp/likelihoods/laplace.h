// Laplace likelihood on real-valued pixels: the decoder output a is the location, the scale b is fixed (the
// architecture argument gaussian_sigma, > 0, serves as b): log p(x | a) = -|x - a| / b - log(2 b) per pixel,
// d/da = sign(x - a) / b, 0 at x = a (the subgradient autograd takes for |.|); mean a.
// Fused CPU row: the scalar loop over log_density (FusedRow in cpu/likelihood.h).
#pragma once
#include <cmath>

#include "likelihoods/likelihood.h"

namespace fastvae {
namespace likelihoods {

struct Laplace {
  static constexpr const char* name = "laplace";
  static constexpr const char* title = "Laplace";
  static constexpr Data data = Data::Real;
  static constexpr int64_t outputs = 1;

  template <typename T>
  static T log_density(T a, T x, const Params& p, T* dlda) {
    const T r = x - a, inv_b = T(1) / static_cast<T>(p.scale);
    if (dlda) *dlda = r > T(0) ? inv_b : r < T(0) ? -inv_b : T(0);
    return -std::abs(r) * inv_b - static_cast<T>(std::log(2 * p.scale));
  }

  static std::pair<at::Tensor, at::Tensor> log_lik(const at::Tensor& x, const at::Tensor& out, const Params& p,
                                                   bool grad) {
    auto r = x - out;
    auto ll = r.abs().sum(-1).mul(-1.0 / p.scale).sub(x.size(-1) * std::log(2 * p.scale));
    return {ll, grad ? at::sign(r) / p.scale : at::Tensor()};
  }

  static at::Tensor mean(const at::Tensor& out, const Params&) { return out.clone(at::MemoryFormat::Contiguous); }
};

}  // namespace likelihoods
}  // namespace fastvae
