// Device-generic objective heads in ATen operations, registered for CompositeExplicitAutograd so that CUDA,
// MPS and every other backend torch has are served; on the CPU the fused kernels (cpp/cpu/heads_kernel.cpp)
// take precedence. The _generic_* ops bind the same functions so that tests reach this path on the CPU.
// Formulas: docs/heads.md (likelihoods as docs/engine.md "Likelihoods"; IWAE: Burda et al. 2016; STL: Roeder
// et al. 2017; DReG: Tucker et al. 2019).
#include "generic/heads.h"

#include <torch/library.h>

#include <cmath>
#include <string>

#include "finite.h"

namespace fastvae {
namespace heads {

namespace {
// log p(x | out) per sample [L, B] and, if grad, d log p / d out [L, B, D or 2D]: the likelihood's ATen expression
// from its formula file (likelihoods/<name>.h), written so that no logit overflows.
std::pair<at::Tensor, at::Tensor> log_lik(const HeadShape& s, const at::Tensor& x, const at::Tensor& out,
                                          bool grad) {
  return visit_likelihood(s.lik, [&](auto l) { return decltype(l)::log_lik(x, out, s.params, grad); });
}

// The four gradients of a backward op are finite: one reduction, one host sync.
bool grads_finite(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, const at::Tensor& d) {
  auto ok = at::isfinite(b).all() & at::isfinite(c).all() & at::isfinite(d).all();
  if (a.numel()) ok = ok & at::isfinite(a).all();
  return ok.item<bool>();
}
}  // namespace

HeadShape check_heads(const char* op, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                      const at::Tensor& mu, const at::Tensor& sigma, const std::string& likelihood,
                      double gaussian_sigma, const std::string& gaussian_scale) {
  HeadShape s{};
  s.lik = parse_likelihood(likelihood, op);
  const GaussianScale scale = parse_gaussian_scale(gaussian_scale, op);
  TORCH_CHECK(scale != GaussianScale::Learned, "fastvae: ", op, ": gaussian_scale 'learned' is a parameter of "
              "fastvae.VAE; the heads take 'fixed' or 'predicted' (the log-variance as decoder output)");
  TORCH_CHECK(scale == GaussianScale::Fixed || s.lik == Likelihood::Gaussian, "fastvae: ", op,
              ": gaussian_scale 'predicted' needs likelihood gaussian, got '", likelihood, "'");
  TORCH_CHECK(std::isfinite(gaussian_sigma) && gaussian_sigma > 0, "fastvae: ", op,
              ": gaussian_sigma must be a finite number > 0, got ", gaussian_sigma);
  s.params = {gaussian_sigma, scale == GaussianScale::Predicted};
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
  const int64_t width = likelihood_outputs(s.lik, s.params.predicted) * s.D;
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
  const auto data = likelihood_data(s.lik);
  if (data == likelihoods::Data::Binary)
    TORCH_CHECK_VALUE(((x == 0) | (x == 1)).all().item<bool>(), "fastvae: ", op,
                      ": x must be binary (0 or 1) for likelihood ", likelihood_name(s.lik),
                      "; use continuous_bernoulli for intensities in [0, 1]");
  if (data == likelihoods::Data::UnitInterval)
    TORCH_CHECK_VALUE(((x >= 0) & (x <= 1)).all().item<bool>(), "fastvae: ", op,
                      ": x must lie in [0, 1] for likelihood ", likelihood_name(s.lik));
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

void not_finite(const char* op, const char* what, const HeadShape& s, const at::Tensor& x, const at::Tensor& out,
                const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma, const Estimator* kl_estimator) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor* ts[] = {&x, &out, &z, &mu, &sigma};
  const char* names[] = {"x", "decoder_out", "z", "mu", "sigma"};
  for (int i = 0; i < 5; ++i) {
    TORCH_CHECK_VALUE(!at::isnan(*ts[i]).any().item<bool>(), "fastvae: ", op, ": ", names[i], " contains NaN");
    TORCH_CHECK_VALUE(!at::isinf(*ts[i]).any().item<bool>(), "fastvae: ", op, ": ", names[i],
                      " contains inf (+-inf is no more a finite input than NaN: the heads take finite values)");
  }
  const std::string dt = dtype_name(x.scalar_type());
  const std::string head = c10::str("fastvae: ", op, ": ", what, " is not finite although x, decoder_out, z, mu and "
                                    "sigma are: ");
  const auto ll = log_lik(s, x, out, false).first;  // [L, B]
  TORCH_CHECK_VALUE(is_finite(ll), head, "the log-likelihood is not: ", likelihood_overflow(s.lik, s.params, x, out));
  const auto magnitudes = c10::str("|mu| up to ", num(max_abs(mu)), ", sigma from ", num(min_value(sigma)), " to ",
                                   num(max_value(sigma)), ", |z| up to ", num(max_abs(z)));
  at::Tensor latent;  // the KL per image, or the latent part of the log weights
  if (kl_estimator != nullptr && *kl_estimator == Estimator::Analytic) {
    latent = ((mu * mu + sigma * sigma - 1) * 0.5 - at::log(sigma)).sum(-1);
  } else {
    auto e = (z - mu) / sigma;
    latent = ((e * e - z * z) * 0.5 + at::log(sigma)).sum(-1);
  }
  TORCH_CHECK_VALUE(is_finite(latent), head, kl_estimator ? "the KL" : "the latent part of the log weights",
                    " overflows ", dt, " (", magnitudes, ")");
  TORCH_CHECK_VALUE(false, head, kl_estimator ? "rec - kl overflows " : "the log-sum-exp of the log weights overflows ",
                    dt, " (|log-likelihood| up to ", num(max_abs(ll)), ", ", magnitudes, ")");
  abort();  // unreachable
}

void grad_not_finite(const char* op, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                     const at::Tensor& mu, const at::Tensor& sigma, std::initializer_list<at::Tensor> upstream,
                     std::initializer_list<at::Tensor> grads) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  double up = 0;
  for (const auto& g : upstream) {
    if (!is_finite(g.contiguous())) return;  // a non-finite upstream gradient: not the op's doing
    up = std::max(up, max_abs(g));
  }
  for (const auto* t : {&x, &out, &z, &mu, &sigma})
    if (!is_finite(t->contiguous())) return;  // the forward refused these; a direct call gets what it gave
  const char* names[] = {"decoder_out", "z", "mu", "sigma"};
  int i = 0;
  for (const auto& g : grads) {
    if (g.numel() && !is_finite(g.contiguous())) {
      const std::string dt = dtype_name(x.scalar_type());
      const std::string from =
          i == 0 ? c10::str("|x| up to ", num(max_abs(x)), ", |decoder_out| up to ", num(max_abs(out)))
                 : c10::str("|mu| up to ", num(max_abs(mu)), ", sigma from ", num(min_value(sigma)), " to ",
                            num(max_value(sigma)), ", |z| up to ", num(max_abs(z)));
      TORCH_CHECK_VALUE(false, "fastvae: ", op, ": the gradient with respect to ", names[i], " is not finite "
                        "although the inputs and the upstream gradient are: it overflows ", dt, " (", from,
                        ", |upstream gradient| up to ", num(up), ")",
                        i == 3 ? "; 1 / sigma overflows for sigma near 0" : "");
    }
    ++i;
  }
}

Terms generic_elbo_terms_forward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu,
                                 const at::Tensor& sigma, std::string likelihood, double gaussian_sigma,
                                 std::string gaussian_scale, std::string estimator, bool decoder_grad) {
  const char* op = "elbo_terms";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  check_data(op, s, x, out, z, mu, sigma);
  const auto est = parse_estimator(estimator, op);
  auto [ll, g] = log_lik(s, x, out, decoder_grad);
  auto rec = ll.mean(0);
  at::Tensor kl;
  if (est == Estimator::Analytic) {
    kl = ((mu * mu + sigma * sigma - 1) * 0.5 - at::log(sigma)).sum(-1);
  } else {  // log q(z) - log p(z), the 2 pi terms cancel
    auto e = (z - mu) / sigma;
    kl = ((z * z - e * e) * 0.5 - at::log(sigma)).sum(-1).mean(0);
  }
  auto dg = decoder_grad ? g / static_cast<double>(s.L) : at::empty({0}, x.options());
  auto elbo = rec - kl;
  if (!is_finite(elbo)) not_finite(op, "the ELBO", s, x, out, z, mu, sigma, &est);
  return {elbo, rec, kl, dg};
}

Grads generic_elbo_terms_backward(const at::Tensor& g_rec, const at::Tensor& g_kl, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu,
                                  const at::Tensor& sigma, bool decoder_out_grad, std::string likelihood,
                                  double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_elbo_terms_backward";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_estimator(estimator, op);
  check_weights(op, "g_rec", g_rec, x, s.B);
  check_weights(op, "g_kl", g_kl, x, s.B);
  // As the forward's decoder_grad, then scaled: the same bits as the autograd path that scales the saved one.
  auto d_out = decoder_out_grad
                   ? (log_lik(s, x, out, true).second / static_cast<double>(s.L)) * g_rec.view({1, s.B, 1})
                   : at::empty({0}, x.options());
  at::Tensor d_z, d_mu, d_sigma;
  if (est == Estimator::Analytic) {
    auto gk = g_kl.view({s.B, 1});
    d_z = at::zeros_like(z);
    d_mu = gk * mu;
    d_sigma = gk * (sigma - sigma.reciprocal());
  } else {
    auto gk = (g_kl / static_cast<double>(s.L)).view({1, s.B, 1});
    auto e = (z - mu) / sigma;
    d_z = gk * (z - e / sigma);
    if (est == Estimator::MonteCarlo) {
      d_mu = (gk * e).sum(0) / sigma;
      d_sigma = (gk * (e * e - 1)).sum(0) / sigma;
    } else {  // stl: q's parameters held fixed
      d_mu = at::zeros_like(mu);
      d_sigma = at::zeros_like(sigma);
    }
  }
  if (!grads_finite(d_out, d_z, d_mu, d_sigma))
    grad_not_finite(op, x, out, z, mu, sigma, {g_rec, g_kl}, {d_out, d_z, d_mu, d_sigma});
  return {d_out, d_z, d_mu, d_sigma};
}


std::tuple<at::Tensor, at::Tensor, at::Tensor> generic_iwae_bound_forward(
    const at::Tensor& x, const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
    std::string likelihood, double gaussian_sigma, std::string gaussian_scale, std::string estimator,
    bool decoder_grad) {
  const char* op = "iwae_bound";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  check_data(op, s, x, out, z, mu, sigma);
  parse_iwae_estimator(estimator, op);
  auto [ll, g] = log_lik(s, x, out, decoder_grad);
  auto e = (z - mu) / sigma;
  auto lw = ll + ((e * e - z * z) * 0.5 + at::log(sigma)).sum(-1);
  auto w = at::softmax(lw, 0);
  auto dg = decoder_grad ? g * w.unsqueeze(-1) : at::empty({0}, x.options());
  auto bound = at::logsumexp(lw, {0}) - std::log(static_cast<double>(s.L));
  if (!is_finite(bound)) not_finite(op, "the IWAE bound", s, x, out, z, mu, sigma, nullptr);
  return {bound, w, dg};
}

Grads generic_iwae_bound_backward(const at::Tensor& g, const at::Tensor& weights, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
                                  bool decoder_out_grad, std::string likelihood,
                                  double gaussian_sigma, std::string gaussian_scale, std::string estimator) {
  const char* op = "_iwae_bound_backward";
  auto s = check_heads(op, x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale);
  const auto est = parse_iwae_estimator(estimator, op);
  check_weights(op, "g", g, x, s.B);
  check_importance_weights(op, weights, x, s.L, s.B);
  const auto& w = weights;
  auto e = (z - mu) / sigma;
  auto c = (w * g.view({1, s.B})).unsqueeze(-1);  // [K, B, 1]
  auto d_out = decoder_out_grad ? (log_lik(s, x, out, true).second * w.unsqueeze(-1)) * g.view({1, s.B, 1})
                                : at::empty({0}, x.options());
  auto h = e / sigma - z;  // d/dz [log p(z) - log q(z)] with q's parameters fixed
  at::Tensor d_z, d_mu, d_sigma;
  if (est == IwaeEstimator::DReG) {
    d_z = h * (c * w.unsqueeze(-1));
  } else {
    d_z = h * c;
  }
  if (est == IwaeEstimator::Reparam) {
    d_mu = -(c * e).sum(0) / sigma;
    d_sigma = (c * (1 - e * e)).sum(0) / sigma;
  } else {
    d_mu = at::zeros_like(mu);
    d_sigma = at::zeros_like(sigma);
  }
  if (!grads_finite(d_out, d_z, d_mu, d_sigma))
    grad_not_finite(op, x, out, z, mu, sigma, {g}, {d_out, d_z, d_mu, d_sigma});
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
