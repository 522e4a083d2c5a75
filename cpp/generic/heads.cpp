// Device-generic objective heads in ATen operations, registered for CompositeExplicitAutograd so that CUDA,
// MPS and every other backend torch has are served; on the CPU the fused kernels (cpp/cpu/heads_kernel.cpp)
// take precedence. The _generic_* ops bind the same functions so that tests reach this path on the CPU.
// Formulas: docs/heads.md (likelihoods as docs/engine.md "Likelihoods"; IWAE: Burda et al. 2016; STL: Roeder
// et al. 2017; DReG: Tucker et al. 2019).
#include "generic/heads.h"

#include <torch/library.h>

#include <cmath>
#include <string>

namespace fastvae {
namespace heads {

namespace {
constexpr double kHalfLog2Pi = 0.91893853320467274178;

// log p(x | out) per sample [L, B] and, if grad, d log p / d out [L, B, D or 2D]. Every formula is written
// so that no logit overflows (softplus from exp(-|a|)); the continuous Bernoulli normaliser uses its Taylor
// series near a = 0, on the region of torch.distributions.ContinuousBernoulli (as cb_log_norm in the engine).
std::pair<at::Tensor, at::Tensor> log_lik(const HeadShape& s, const at::Tensor& x, const at::Tensor& out,
                                          bool grad) {
  if (s.lik == Lik::Gaussian) {
    if (s.predicted) {
      auto m = out.narrow(-1, 0, s.D), lv = out.narrow(-1, s.D, s.D);
      auto r = x - m, iv = at::exp(-lv), q = r * r * iv;
      auto ll = (q + lv).sum(-1).mul(-0.5).sub(s.D * kHalfLog2Pi);
      return {ll, grad ? at::cat({r * iv, (q - 1) * 0.5}, -1) : at::Tensor()};
    }
    const double iv = 1.0 / (s.gaussian_sigma * s.gaussian_sigma);
    auto r = x - out;
    auto ll = (r * r).sum(-1).mul(-0.5 * iv).sub(s.D * (std::log(s.gaussian_sigma) + kHalfLog2Pi));
    return {ll, grad ? r * iv : at::Tensor()};
  }
  const auto& a = out;
  auto e = at::exp(-a.abs());
  auto sp = a.clamp_min(0) + at::log1p(e);  // softplus(a)
  auto lp = x * a - sp;
  at::Tensor g;
  if (grad) g = x - at::sigmoid(a);
  if (s.lik == Lik::ContinuousBernoulli) {
    constexpr double kCut = 4.0000053333e-3;  // 2 artanh(0.002)
    auto small = a.abs() < kCut;
    auto safe = at::where(small, at::ones_like(a), a);
    auto u2 = a * a * 0.25;
    auto taylor = ((u2 * (62.0 / 2835) - 7.0 / 90) * u2 + 1.0 / 3) * u2 + 0.69314718055994530942;
    lp = lp + at::where(small, taylor, at::log(safe / at::tanh(safe * 0.5)));
    if (grad) {
      auto a2 = a * a;
      auto dtaylor = a * ((a2 * (31.0 / 15120) - 7.0 / 360) * a2 + 1.0 / 6);
      g = g + at::where(small, dtaylor, safe.reciprocal() - at::sinh(safe).reciprocal());
    }
  }
  return {lp.sum(-1), g};
}
}  // namespace

HeadShape check_heads(const char* op, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                      const at::Tensor& mu, const at::Tensor& sigma, const std::string& likelihood,
                      double gaussian_sigma, const std::string& gaussian_scale) {
  HeadShape s{};
  if (likelihood == "bernoulli") s.lik = Lik::Bernoulli;
  else if (likelihood == "continuous_bernoulli") s.lik = Lik::ContinuousBernoulli;
  else if (likelihood == "gaussian") s.lik = Lik::Gaussian;
  else TORCH_CHECK(false, "fastvae: ", op, ": likelihood must be one of bernoulli, continuous_bernoulli, gaussian, got '",
                   likelihood, "'");
  TORCH_CHECK(gaussian_scale == "fixed" || gaussian_scale == "predicted", "fastvae: ", op,
              ": gaussian_scale must be fixed or predicted, got '", gaussian_scale, "'");
  TORCH_CHECK(gaussian_scale == "fixed" || s.lik == Lik::Gaussian, "fastvae: ", op,
              ": gaussian_scale 'predicted' needs likelihood gaussian, got '", likelihood, "'");
  s.predicted = gaussian_scale == "predicted";
  TORCH_CHECK(std::isfinite(gaussian_sigma) && gaussian_sigma > 0, "fastvae: ", op,
              ": gaussian_sigma must be a finite number > 0, got ", gaussian_sigma);
  s.gaussian_sigma = gaussian_sigma;
  const at::Tensor* ts[] = {&x, &out, &z, &mu, &sigma};
  const char* names[] = {"x", "decoder_out", "z", "mu", "sigma"};
  const int64_t dims[] = {2, 3, 3, 2, 2};
  for (int i = 0; i < 5; ++i) {
    const auto& t = *ts[i];
    TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "fastvae: ", op, ": ", names[i],
                " must be float32 or float64, got ", t.scalar_type());
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "fastvae: ", op, ": ", names[i], " has dtype ",
                t.scalar_type(), ", expected x's ", x.scalar_type());
    TORCH_CHECK(t.device() == x.device(), "fastvae: ", op, ": ", names[i], " is on ", t.device(),
                ", expected x's device ", x.device());
    TORCH_CHECK(t.dim() == dims[i], "fastvae: ", op, ": ", names[i], " must have ", dims[i],
                " dimensions, got shape ", t.sizes());
  }
  s.B = x.size(0);
  s.D = x.size(1);
  s.L = out.size(0);
  s.Z = mu.size(1);
  TORCH_CHECK(s.B > 0 && s.D > 0 && s.L > 0 && s.Z > 0, "fastvae: ", op, ": empty inputs, got x ", x.sizes(),
              ", decoder_out ", out.sizes(), ", mu ", mu.sizes());
  const int64_t width = s.predicted ? 2 * s.D : s.D;
  TORCH_CHECK(out.size(1) == s.B && out.size(2) == width, "fastvae: ", op, ": decoder_out must have shape [L, ", s.B,
              ", ", width, "], got ", out.sizes());
  TORCH_CHECK(z.size(0) == s.L && z.size(1) == s.B && z.size(2) == s.Z, "fastvae: ", op, ": z must have shape [",
              s.L, ", ", s.B, ", ", s.Z, "], got ", z.sizes());
  TORCH_CHECK(mu.size(0) == s.B && sigma.sizes() == mu.sizes(), "fastvae: ", op, ": mu and sigma must have shape [",
              s.B, ", Z], got ", mu.sizes(), " and ", sigma.sizes());
  return s;
}

void check_data(const char* op, const HeadShape& s, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                const at::Tensor& mu, const at::Tensor& sigma) {
  const at::Tensor* ts[] = {&x, &out, &z, &mu, &sigma};
  const char* names[] = {"x", "decoder_out", "z", "mu", "sigma"};
  for (int i = 0; i < 5; ++i)
    TORCH_CHECK_VALUE(!at::isnan(*ts[i]).any().item<bool>(), "fastvae: ", op, ": ", names[i], " contains NaN");
  TORCH_CHECK_VALUE(((sigma > 0) & (sigma < INFINITY)).all().item<bool>(), "fastvae: ", op,
                    ": sigma must be > 0 and finite everywhere");
  if (s.lik == Lik::Bernoulli)
    TORCH_CHECK_VALUE(((x == 0) | (x == 1)).all().item<bool>(), "fastvae: ", op,
                      ": x must be binary (0 or 1) for likelihood bernoulli; use continuous_bernoulli for "
                      "intensities in [0, 1]");
  if (s.lik == Lik::ContinuousBernoulli)
    TORCH_CHECK_VALUE(((x >= 0) & (x <= 1)).all().item<bool>(), "fastvae: ", op,
                      ": x must lie in [0, 1] for likelihood continuous_bernoulli");
}

KlEst parse_kl(const char* op, const std::string& e) {
  if (e == "analytic") return KlEst::Analytic;
  if (e == "mc") return KlEst::Mc;
  if (e == "stl") return KlEst::Stl;
  TORCH_CHECK(false, "fastvae: ", op, ": estimator must be one of analytic, mc, stl, got '", e, "'");
}

IwEst parse_iwae(const char* op, const std::string& e) {
  if (e == "reparam") return IwEst::Reparam;
  if (e == "stl") return IwEst::Stl;
  if (e == "dreg") return IwEst::Dreg;
  TORCH_CHECK(false, "fastvae: ", op, ": estimator must be one of reparam, stl, dreg, got '", e, "'");
}

void check_weights(const char* op, const char* name, const at::Tensor& g, const at::Tensor& x, int64_t B) {
  TORCH_CHECK(g.dim() == 1 && g.size(0) == B, "fastvae: ", op, ": ", name, " must have shape [", B, "], got ",
              g.sizes());
  TORCH_CHECK(g.scalar_type() == x.scalar_type() && g.device() == x.device(), "fastvae: ", op, ": ", name,
              " must have x's dtype and device, got ", g.scalar_type(), " on ", g.device());
}

void check_importance_weights(const char* op, const at::Tensor& w, const at::Tensor& x, int64_t K, int64_t B) {
  TORCH_CHECK(w.dim() == 2 && w.size(0) == K && w.size(1) == B, "fastvae: ", op, ": weights must have shape [", K,
              ", ", B, "], got ", w.sizes());
  TORCH_CHECK(w.scalar_type() == x.scalar_type() && w.device() == x.device(), "fastvae: ", op,
              ": weights must have x's dtype and device, got ", w.scalar_type(), " on ", w.device());
}

Terms generic_elbo_terms_forward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu,
                                 const at::Tensor& sigma, std::string likelihood, double gaussian_sigma,
                                 std::string gaussian_scale, std::string estimator, bool decoder_grad) {
  const char* op = "elbo_terms";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  check_data(op, s, x, out, z, mu, sigma);
  const auto est = parse_kl(op, estimator);
  auto [ll, g] = log_lik(s, x, out, decoder_grad);
  auto rec = ll.mean(0);
  at::Tensor kl;
  if (est == KlEst::Analytic) {
    kl = ((mu * mu + sigma * sigma - 1) * 0.5 - at::log(sigma)).sum(-1);
  } else {  // log q(z) - log p(z), the 2 pi terms cancel
    auto e = (z - mu) / sigma;
    kl = ((z * z - e * e) * 0.5 - at::log(sigma)).sum(-1).mean(0);
  }
  auto dg = decoder_grad ? g / static_cast<double>(s.L) : at::empty({0}, x.options());
  return {rec - kl, rec, kl, dg};
}

Grads generic_elbo_terms_backward(const at::Tensor& g_rec, const at::Tensor& g_kl, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu,
                                  const at::Tensor& sigma, bool decoder_out_grad, std::string likelihood,
                                  double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_elbo_terms_backward";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_kl(op, estimator);
  check_weights(op, "g_rec", g_rec, x, s.B);
  check_weights(op, "g_kl", g_kl, x, s.B);
  // As the forward's decoder_grad, then scaled: the same bits as the autograd path that scales the saved one.
  auto d_out = decoder_out_grad
                   ? (log_lik(s, x, out, true).second / static_cast<double>(s.L)) * g_rec.view({1, s.B, 1})
                   : at::empty({0}, x.options());
  at::Tensor d_z, d_mu, d_sigma;
  if (est == KlEst::Analytic) {
    auto gk = g_kl.view({s.B, 1});
    d_z = at::zeros_like(z);
    d_mu = gk * mu;
    d_sigma = gk * (sigma - sigma.reciprocal());
  } else {
    auto gk = (g_kl / static_cast<double>(s.L)).view({1, s.B, 1});
    auto e = (z - mu) / sigma;
    d_z = gk * (z - e / sigma);
    if (est == KlEst::Mc) {
      d_mu = (gk * e).sum(0) / sigma;
      d_sigma = (gk * (e * e - 1)).sum(0) / sigma;
    } else {  // stl: q's parameters held fixed
      d_mu = at::zeros_like(mu);
      d_sigma = at::zeros_like(sigma);
    }
  }
  return {d_out, d_z, d_mu, d_sigma};
}


std::tuple<at::Tensor, at::Tensor, at::Tensor> generic_iwae_bound_forward(
    const at::Tensor& x, const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
    std::string likelihood, double gaussian_sigma, std::string gaussian_scale, std::string estimator,
    bool decoder_grad) {
  const char* op = "iwae_bound";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  check_data(op, s, x, out, z, mu, sigma);
  parse_iwae(op, estimator);
  auto [ll, g] = log_lik(s, x, out, decoder_grad);
  auto e = (z - mu) / sigma;
  auto lw = ll + ((e * e - z * z) * 0.5 + at::log(sigma)).sum(-1);
  auto w = at::softmax(lw, 0);
  auto dg = decoder_grad ? g * w.unsqueeze(-1) : at::empty({0}, x.options());
  return {at::logsumexp(lw, {0}) - std::log(static_cast<double>(s.L)), w, dg};
}

Grads generic_iwae_bound_backward(const at::Tensor& g, const at::Tensor& weights, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
                                  bool decoder_out_grad, std::string likelihood,
                                  double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_iwae_bound_backward";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_iwae(op, estimator);
  check_weights(op, "g", g, x, s.B);
  check_importance_weights(op, weights, x, s.L, s.B);
  const auto& w = weights;
  auto e = (z - mu) / sigma;
  auto c = (w * g.view({1, s.B})).unsqueeze(-1);  // [K, B, 1]
  auto d_out = decoder_out_grad ? (log_lik(s, x, out, true).second * w.unsqueeze(-1)) * g.view({1, s.B, 1})
                                : at::empty({0}, x.options());
  auto h = e / sigma - z;  // d/dz [log p(z) - log q(z)] with q's parameters fixed
  at::Tensor d_z, d_mu, d_sigma;
  if (est == IwEst::Dreg) {
    d_z = h * (c * w.unsqueeze(-1));
  } else {
    d_z = h * c;
  }
  if (est == IwEst::Reparam) {
    d_mu = -(c * e).sum(0) / sigma;
    d_sigma = (c * (1 - e * e)).sum(0) / sigma;
  } else {
    d_mu = at::zeros_like(mu);
    d_sigma = at::zeros_like(sigma);
  }
  return {d_out, d_z, d_mu, d_sigma};
}

TORCH_LIBRARY_IMPL(fastvae, CompositeExplicitAutograd, m) {
  for (const char* p : {"_", "_generic_"}) {
    const std::string q = p;
    m.impl((q + "elbo_terms_forward").c_str(), &generic_elbo_terms_forward);
    m.impl((q + "elbo_terms_backward").c_str(), &generic_elbo_terms_backward);
    m.impl((q + "iwae_bound_forward").c_str(), &generic_iwae_bound_forward);
    m.impl((q + "iwae_bound_backward").c_str(), &generic_iwae_bound_backward);
  }
}

}  // namespace heads
}  // namespace fastvae
