// Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019) on intensities x in [0, 1], parameterized by the decoder's
// logits a, lambda = sigmoid(a): log p = x a - softplus(a) + log C(lambda), the Bernoulli terms plus the log of the
// normaliser C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (paper, eq. 7). In the logit C = a / tanh(a / 2), so
// log C = log(a / tanh(a / 2)) and d log C / da = 1/a - 1/sinh(a), both finite for every logit (the ratio tends to
// |a|). Near a = 0 (0/0, and cancellation in the derivative) both come from their Taylor series in u = a/2 on the
// region torch.distributions.ContinuousBernoulli uses (|lambda - 1/2| < 1e-3, i.e. |a| < 2 artanh(0.002)):
// log C = log 2 + u^2/3 - 7u^4/90 + 62u^6/2835. The mean is 1 / (1 - exp(-a)) - 1/a.
// Fused CPU rows: continuous_bernoulli_row (cpu/likelihood.h; float32 in one pass with the Bernoulli part).
#pragma once
#include <cmath>

#include "likelihoods/bernoulli.h"
#include "likelihoods/likelihood.h"

namespace fastvae {
namespace likelihoods {

struct ContinuousBernoulli {
  static constexpr const char* name = "continuous_bernoulli";
  static constexpr const char* title = "continuous Bernoulli";
  static constexpr Data data = Data::UnitInterval;
  static constexpr int64_t outputs = 1;

  // Below this |a| the normaliser and the mean use their Taylor series.
  static constexpr double kTaylorCut = 4.0000053333e-3;  // 2 artanh(0.002)
  static constexpr double kLn2 = 0.69314718055994530942;
  // log C = log 2 + u2 (c0 + u2 (c1 + u2 c2)) with u2 = a^2 / 4, and d log C / da = a (d0 + a^2 (d1 + a^2 d2)).
  static constexpr double kLogC[] = {1.0 / 3, -7.0 / 90, 62.0 / 2835};
  static constexpr double kDLogC[] = {1.0 / 6, -7.0 / 360, 31.0 / 15120};

  // log C and d log C / da at lambda = sigmoid(a), in double.
  static void log_norm(double a, double& logc, double& dlogc) {
    if (std::abs(a) < kTaylorCut) {
      const double u2 = 0.25 * a * a;
      logc = kLn2 + u2 * (kLogC[0] + u2 * (kLogC[1] + u2 * kLogC[2]));
      const double a2 = a * a;
      dlogc = a * (kDLogC[0] + a2 * (kDLogC[1] + a2 * kDLogC[2]));
    } else {
      logc = std::log(a / std::tanh(0.5 * a));
      dlogc = 1.0 / a - 1.0 / std::sinh(a);
    }
  }

  // The Bernoulli pixel plus the normaliser (computed in double, added in T).
  template <typename T>
  static T log_density(T a, T x, const Params& p, T* dlda) {
    double lc, dlc;
    log_norm(static_cast<double>(a), lc, dlc);
    T dl;
    const T v = Bernoulli::log_density<T>(a, x, p, dlda ? &dl : nullptr) + static_cast<T>(lc);
    if (dlda) *dlda = dl + static_cast<T>(dlc);
    return v;
  }

  static std::pair<at::Tensor, at::Tensor> log_lik(const at::Tensor& x, const at::Tensor& a, const Params&,
                                                   bool grad) {
    auto [lp, g] = Bernoulli::log_prob(x, a, grad);
    auto small = a.abs() < kTaylorCut;
    auto safe = at::where(small, at::ones_like(a), a);  // keeps the unused exact branch finite at a = 0
    auto u2 = a * a * 0.25;
    auto taylor = ((u2 * kLogC[2] + kLogC[1]) * u2 + kLogC[0]) * u2 + kLn2;
    lp = lp + at::where(small, taylor, at::log(safe / at::tanh(safe * 0.5)));
    if (grad) {
      auto a2 = a * a;
      auto dtaylor = a * ((a2 * kDLogC[2] + kDLogC[1]) * a2 + kDLogC[0]);
      g = g + at::where(small, dtaylor, safe.reciprocal() - at::sinh(safe).reciprocal());
    }
    return {lp.sum(-1), g};
  }

  // 1 / (1 - exp(-a)) - 1/a (= lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda))) with expm1, so that it keeps
  // its digits for large |a| (torch.distributions' float32 formula returns 1 for a = 30 instead of 1 - 1/30), and
  // 1/2 + a/12 - a^3/720 + a^5/30240 near 0; computed in float64, returned in out's dtype.
  static at::Tensor mean(const at::Tensor& out, const Params&) {
    auto a = out.to(at::kDouble);
    auto small = a.abs() < kTaylorCut;
    auto safe = at::where(small, at::ones_like(a), a);
    auto direct = -at::expm1(-safe).reciprocal() - safe.reciprocal();
    auto a2 = a * a;
    auto taylor = a * ((a2 / 30240 + (-1.0 / 720)) * a2 + 1.0 / 12) + 0.5;
    return at::where(small, taylor, direct).to(out.scalar_type());
  }
};

}  // namespace likelihoods
}  // namespace fastvae
