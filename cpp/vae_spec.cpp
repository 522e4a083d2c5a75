#include "vae_spec.h"

#include <cmath>
#include <string>

namespace fastvae {

namespace {
// One table per enum: the position of a name is its enum value.
template <class E>
E parse_name(const std::vector<std::string>& names, c10::string_view name, const char* what,
             const char* op = nullptr) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == std::string(name)) return static_cast<E>(i);
  std::string listing;
  for (const auto& n : names) listing += (listing.empty() ? "'" : ", '") + n + "'";
  TORCH_CHECK(false, "fastvae: ", op ? std::string(op) + ": " : std::string(), "unknown ", what, " '",
              std::string(name), "'; choose one of [", listing, "]");
  return E{};  // not reached
}
}  // namespace

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names{"identity", "relu", "leaky_relu", "tanh", "sigmoid"};
  return names;
}
const std::vector<std::string>& posterior_names() {
  static const std::vector<std::string> names{"logvar", "logstd", "std"};
  return names;
}
const std::vector<std::string>& estimator_names() {
  static const std::vector<std::string> names{"analytic", "mc", "stl"};
  return names;
}
const std::vector<std::string>& likelihood_names() {
#define FASTVAE_LIKELIHOOD_NAME(L) likelihoods::L::name,
  static const std::vector<std::string> names{FASTVAE_LIKELIHOODS(FASTVAE_LIKELIHOOD_NAME)};
#undef FASTVAE_LIKELIHOOD_NAME
  return names;
}
Likelihood parse_likelihood(c10::string_view name, const char* op) {
  return parse_name<Likelihood>(likelihood_names(), name, "likelihood", op);
}
Act parse_activation(c10::string_view name, const char* what) {
  return parse_name<Act>(activation_names(), name, what);
}
Scale parse_posterior(c10::string_view name) { return parse_name<Scale>(posterior_names(), name, "posterior"); }
Estimator parse_estimator(c10::string_view name, const char* op) {
  return parse_name<Estimator>(estimator_names(), name, "estimator", op);
}
const std::vector<std::string>& iwae_estimator_names() {
  static const std::vector<std::string> names{"reparam", "stl", "dreg"};
  return names;
}
IwaeEstimator parse_iwae_estimator(c10::string_view name, const char* op) {
  return parse_name<IwaeEstimator>(iwae_estimator_names(), name, "IWAE estimator", op);
}
const std::vector<std::string>& objective_names() {
  static const std::vector<std::string> names{"elbo", "iwae", "miwae", "ciwae", "piwae"};
  return names;
}
Objective parse_objective(c10::string_view name, const char* op) {
  return parse_name<Objective>(objective_names(), name, "objective", op);
}
IwBound check_iw_bound(const char* op, c10::string_view objective, int64_t groups, double beta, int64_t samples) {
  IwBound b{parse_objective(objective, op), groups, beta};
  const std::string name(objective);
  TORCH_CHECK(b.kind != Objective::Elbo, "fastvae: ", op, ": objective 'elbo' is not an importance-weighted bound; "
              "use the ELBO op");
  const bool grouped = b.kind == Objective::Miwae || b.kind == Objective::Piwae;
  TORCH_CHECK(groups >= 1, "fastvae: ", op, ": groups must be >= 1, got ", groups);
  TORCH_CHECK(grouped || groups == 1, "fastvae: ", op, ": groups applies to objectives 'miwae' and 'piwae', got ",
              groups, " with '", name, "'");
  TORCH_CHECK(samples % groups == 0, "fastvae: ", op, ": the ", samples, " samples per image do not split into ",
              groups, " groups of equal size");
  TORCH_CHECK(beta >= 0 && beta <= 1, "fastvae: ", op, ": beta must be in [0, 1], got ", beta);
  TORCH_CHECK(b.kind == Objective::Ciwae || beta == 0, "fastvae: ", op, ": beta applies to objective 'ciwae', got ",
              beta, " with '", name, "'");
  return b;
}

const std::vector<std::string>& gaussian_scale_names() {
  static const std::vector<std::string> names{"fixed", "learned", "predicted"};
  return names;
}
GaussianScale parse_gaussian_scale(c10::string_view name, const char* op) {
  return parse_name<GaussianScale>(gaussian_scale_names(), name, "gaussian_scale", op);
}
const std::vector<std::string>& latent_names() {
  static const std::vector<std::string> names{"gaussian", "categorical"};
  return names;
}
Latent parse_latent(c10::string_view name) { return parse_name<Latent>(latent_names(), name, "latent"); }

VaeSpec VaeSpec::from_args(FASTVAE_ARCH_PARAMS) {
  VaeSpec s;
  s.data_dim = data_dim;
  s.cond_dim = cond_dim;
  s.latent_dim = latent_dim;
  TORCH_CHECK(s.data_dim > 0 && s.latent_dim > 0 && s.cond_dim >= 0,
              "fastvae: data_dim and latent_dim must be positive and cond_dim >= 0");
  TORCH_CHECK(encoder_hidden.size() < 64, "fastvae: bad number of encoder layers");
  TORCH_CHECK(decoder_hidden.size() < 64, "fastvae: bad number of decoder layers");
  s.enc_hidden.assign(encoder_hidden.begin(), encoder_hidden.end());
  s.dec_hidden.assign(decoder_hidden.begin(), decoder_hidden.end());
  for (auto h : s.enc_hidden) TORCH_CHECK(h > 0, "fastvae: layer sizes must be positive");
  for (auto h : s.dec_hidden) TORCH_CHECK(h > 0, "fastvae: layer sizes must be positive");
  s.act = parse_activation(activation, "activation");
  s.scale = parse_posterior(posterior);
  s.mean_act = parse_activation(mean_activation, "mean_activation");
  s.scale_act = parse_activation(scale_activation, "scale_activation");
  TORCH_CHECK(s.scale != Scale::Std || s.scale_act == Act::Sigmoid,
              "fastvae: a standard-deviation head needs a positive activation (sigmoid)");
  const double slope = negative_slope;
  TORCH_CHECK(slope == slope, "fastvae: leaky_relu slope is NaN");
  TORCH_CHECK(std::isfinite(slope), "fastvae: leaky_relu slope must be finite, got ", slope);
  s.slope = slope;
  s.lik = parse_likelihood(likelihood);
  TORCH_CHECK(std::isfinite(gaussian_sigma) && gaussian_sigma > 0,
              "fastvae: gaussian_sigma must be finite and > 0, got ", gaussian_sigma);
  s.gaussian_sigma = gaussian_sigma;
  s.gscale = parse_gaussian_scale(gaussian_scale);
  TORCH_CHECK(s.gscale == GaussianScale::Fixed || s.lik == Likelihood::Gaussian, "fastvae: gaussian_scale '",
              std::string(gaussian_scale), "' needs likelihood 'gaussian', got '", std::string(likelihood), "'");
  s.latent = parse_latent(latent);
  if (s.categorical()) {
    TORCH_CHECK(categories >= 2 && categories < (int64_t(1) << 20),
                "fastvae: a categorical latent needs categories K >= 2 (and < 2^20), got ", categories);
    TORCH_CHECK(latent_dim * categories < (int64_t(1) << 30), "fastvae: latent_dim * categories = ",
                latent_dim * categories, " is too large");
    TORCH_CHECK(s.scale == Scale::LogVar && s.mean_act == Act::Identity && s.scale_act == Act::Identity,
                "fastvae: posterior, mean_activation and scale_activation describe a Gaussian posterior; a "
                "categorical latent takes none of them (leave them at 'logvar', 'identity', 'identity')");
  } else {
    TORCH_CHECK(categories == 0, "fastvae: categories is the class count of a categorical latent; it must be 0 "
                "for latent='gaussian', got ", categories);
  }
  s.categories = categories;
  TORCH_CHECK(upper_latents.size() < 64 && upper_hidden.size() < 64, "fastvae: bad number of upper layers");
  s.up_latents.assign(upper_latents.begin(), upper_latents.end());
  s.up_hidden.assign(upper_hidden.begin(), upper_hidden.end());
  for (auto d : s.up_latents) TORCH_CHECK(d > 0, "fastvae: upper_latents sizes must be positive, got ", d);
  for (auto h : s.up_hidden) TORCH_CHECK(h > 0, "fastvae: upper_hidden sizes must be positive, got ", h);
  if (s.hierarchical()) {
    TORCH_CHECK(!s.categorical(), "fastvae: upper stochastic layers need latent='gaussian'");
    TORCH_CHECK(s.scale != Scale::Std, "fastvae: upper stochastic layers need posterior 'logvar' or 'logstd' (their "
                "spread heads have no activation)");
  } else {
    TORCH_CHECK(s.up_hidden.empty(), "fastvae: upper_hidden describes the MLPs between upper stochastic layers; "
                "it needs upper_latents");
  }
  return s;
}

void VaeSpec::check_params(at::TensorList params, at::ScalarType dtype, at::Device device) const {
  TORCH_CHECK((int64_t)params.size() == n_params(), "fastvae: expected ", n_params(),
              " parameter tensors for this architecture, got ", params.size());
  auto check_layer = [&](int64_t idx, int64_t out, int64_t in, const std::string& name) {
    const auto& w = params[idx];
    const auto& b = params[idx + 1];
    TORCH_CHECK(w.dim() == 2 && w.size(0) == out && w.size(1) == in, "fastvae: ", name,
                " weight must have shape [", out, ", ", in, "], got ", w.sizes());
    TORCH_CHECK(b.dim() == 1 && b.size(0) == out, "fastvae: ", name, " bias must have shape [", out,
                "], got ", b.sizes());
    for (const auto* t : {&w, &b}) {
      TORCH_CHECK(t->scalar_type() == dtype, "fastvae: ", name, " parameters must be ", dtype,
                  " like the data, got ", t->scalar_type());
      TORCH_CHECK(t->device() == device, "fastvae: ", name, " parameters are on ", t->device(),
                  " but the data is on ", device);
      TORCH_CHECK(t->is_contiguous(), "fastvae: ", name, " parameters must be contiguous");
    }
  };
  int64_t idx = 0;
  for (int64_t k = 0; k < n_enc_layers(); ++k, idx += 2)
    check_layer(idx, enc_out(k), enc_in(k), "encoder layer " + std::to_string(k));
  for (int64_t k = 0; k < n_dec_layers(); ++k, idx += 2)
    check_layer(idx, dec_out(k), dec_in(k), "decoder layer " + std::to_string(k));
  for (int64_t u = 0; u < n_upper(); ++u)
    for (bool p : {false, true})
      for (int64_t k = 0; k < n_up_mlp_layers(); ++k, idx += 2)
        check_layer(idx, up_out(u, p, k), up_in(u, p, k),
                    std::string(p ? "upper decoder " : "upper encoder ") + std::to_string(u) + " layer " +
                        std::to_string(k));
  if (learned_scale()) {  // the learned per-pixel log sigma of the Gaussian likelihood, last
    const auto& t = params[idx];
    TORCH_CHECK(t.dim() == 1 && t.size(0) == data_dim, "fastvae: the learned Gaussian log sigma must have shape [",
                data_dim, "], got ", t.sizes());
    TORCH_CHECK(t.scalar_type() == dtype, "fastvae: the learned Gaussian log sigma must be ", dtype,
                " like the data, got ", t.scalar_type());
    TORCH_CHECK(t.device() == device, "fastvae: the learned Gaussian log sigma is on ", t.device(),
                " but the data is on ", device);
    TORCH_CHECK(t.is_contiguous(), "fastvae: the learned Gaussian log sigma must be contiguous");
  }
}

void VaeSpec::check_labels(const c10::optional<at::Tensor>& y, int64_t batch) const {
  if (cond_dim == 0) {
    TORCH_CHECK(!y.has_value(), "fastvae: labels y were given to an unconditional VAE");
    return;
  }
  TORCH_CHECK(y.has_value(), "fastvae: this conditional VAE needs labels y (int64 [B])");
  const auto& t = *y;
  TORCH_CHECK(t.scalar_type() == at::kLong, "fastvae: labels y must be int64, got ", t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), "fastvae: labels y must be on the CPU for this kernel, got ", t.device());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == batch, "fastvae: labels y must have shape [", batch,
              "], got ", t.sizes());
  if (batch > 0) {
    TORCH_CHECK(t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < cond_dim,
                "fastvae: labels y must lie in [0, ", cond_dim, ")");
  }
}

void check_binary(const at::Tensor& x, const char* name, const char* likelihood_title) {
  if (x.numel() == 0) return;
  TORCH_CHECK(!at::isnan(x).any().item<bool>(), "fastvae: ", name, " contains NaN");
  TORCH_CHECK(at::logical_or(x == 0, x == 1).all().item<bool>(), "fastvae: ", name,
              " must be binary (every entry 0 or 1) for the ", likelihood_title, " likelihood; binarize it first "
              "(fastvae.datasets.binarize)");
}

void check_data(const at::Tensor& x, Likelihood lik, const char* name) {
  switch (likelihood_data(lik)) {
    case likelihoods::Data::Binary: return check_binary(x, name, likelihood_title(lik));
    case likelihoods::Data::Real: return check_finite(x, name);
    case likelihoods::Data::UnitInterval: break;
  }
  if (x.numel() == 0) return;
  TORCH_CHECK(!at::isnan(x).any().item<bool>(), "fastvae: ", name, " contains NaN");
  TORCH_CHECK(at::logical_and(x >= 0, x <= 1).all().item<bool>(), "fastvae: ", name, " must lie in [0, 1] for the ",
              likelihood_title(lik), " likelihood (intensities, e.g. pixel / 255)");
}

void check_finite(const at::Tensor& x, const char* name) {
  if (x.numel() == 0) return;
  TORCH_CHECK(at::isfinite(x).all().item<bool>(), "fastvae: ", name, " contains NaN or inf");
}

}  // namespace fastvae
