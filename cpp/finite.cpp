#include "finite.h"

#include "cpu/adam.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include <c10/util/StringUtil.h>

namespace fastvae {
namespace {

at::Tensor finite_entries(const at::Tensor& t) {
  auto d = t.detach();
  return d.is_floating_point() ? d.masked_select(at::isfinite(d)) : d.to(at::kDouble).flatten();
}

}  // namespace

bool is_finite(const at::Tensor& t) {
  if (!t.is_floating_point() || t.numel() == 0) return true;
  if (t.device().is_cpu() && t.is_non_overlapping_and_dense() &&
      (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble))
    return cpu::all_finite({t});  // cpu/adam.h: an OR over exponent bits, vectorized
  return at::isfinite(t).all().item<bool>();
}

double max_abs(const at::Tensor& t) {
  auto f = finite_entries(t);
  return f.numel() ? f.abs().max().item<double>() : 0.0;
}

double min_value(const at::Tensor& t) {
  auto f = finite_entries(t);
  return f.numel() ? f.min().item<double>() : 0.0;
}

double max_value(const at::Tensor& t) {
  auto f = finite_entries(t);
  return f.numel() ? f.max().item<double>() : 0.0;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: return c10::toString(t);
  }
}

double dtype_max(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return std::numeric_limits<float>::max();
    case at::kHalf: return 65504.0;
    case at::kBFloat16: return 3.3895313892515355e38;
    default: return std::numeric_limits<double>::max();
  }
}

std::string likelihood_overflow(Likelihood lik, const likelihoods::Params& p, const at::Tensor& x,
                                const at::Tensor& out, const at::Tensor* log_sigma) {
  const auto t = x.scalar_type();
  const std::string dt = dtype_name(t);
  const double big = std::sqrt(dtype_max(t)), log_max = std::log(dtype_max(t));
  const int64_t D = x.size(-1);
  const at::Tensor mean = p.predicted ? out.narrow(-1, 0, D) : out;
  const double mx = max_abs(x), mm = max_abs(mean);
  if (lik == Likelihood::Gaussian) {
    if (mx >= big && mx >= mm)
      return c10::str("x holds values too large for the gaussian likelihood in ", dt, " (|x| up to ", num(mx),
                      "): (x - mean)^2 overflows ", dt, " beyond |x - mean| = ", num(big));
    if (mm >= big)
      return c10::str("the decoder output holds means too large for the gaussian likelihood in ", dt,
                      " (|mean| up to ", num(mm), ", |x| up to ", num(mx), "): (x - mean)^2 overflows ", dt);
    if (p.predicted) {
      const double lv = min_value(out.narrow(-1, D, D));
      if (-lv >= log_max)
        return c10::str("the predicted log-variance goes down to ", num(lv), ": 1 / variance = exp(-log-variance) "
                        "overflows ", dt, " below ", num(-log_max));
    } else if (log_sigma != nullptr) {
      const double ls = min_value(*log_sigma);
      if (-2.0 * ls >= log_max)
        return c10::str("the learned log_sigma goes down to ", num(ls), ": 1 / sigma^2 = exp(-2 log_sigma) "
                        "overflows ", dt, " below ", num(-log_max / 2.0));
    } else if (!std::isfinite(static_cast<double>(static_cast<float>(1.0 / (p.scale * p.scale)))) &&
               t == at::kFloat) {
      return c10::str("gaussian_sigma ", num(p.scale), " is too small for float32: 1 / gaussian_sigma^2 overflows");
    }
  }
  return c10::str("the ", likelihood_name(lik), " log-likelihood overflows ", dt, " (|x| up to ", num(mx),
                  ", |decoder output| up to ", num(max_abs(out)), ")");
}

}  // namespace fastvae
