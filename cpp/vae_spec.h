// Architecture of an MLP VAE with a Bernoulli decoder, built from the named, typed architecture
// arguments every VAE op takes (FASTVAE_ARCH_SCHEMA below, spliced into the schemas in cpp/ops.cpp).
// Enum values travel by name; the name tables in vae_spec.cpp (the likelihoods: likelihoods/table.h) are the only
// list of valid names, read by the engine, the heads and Python (fastvae._C.ACTIVATIONS, POSTERIORS, ESTIMATORS, ...).
#pragma once
#include <ATen/ATen.h>
#include <c10/util/string_view.h>
#include <string>
#include <vector>

#include "likelihoods/table.h"

namespace fastvae {

enum class Act : int64_t { Identity = 0, ReLU = 1, LeakyReLU = 2, Tanh = 3, Sigmoid = 4 };
// How the second encoder head parameterizes the posterior spread.
enum class Scale : int64_t { LogVar = 0, LogStd = 1, Std = 2 };
// Gradient estimator of the KL part (issue "gradient estimators"; DD2434 theory, Roeder et al. 2017).
enum class Estimator : int64_t { Analytic = 0, MonteCarlo = 1, StickingTheLanding = 2 };
// Decoder likelihood p(x | z) (issue 9 item 1): enum Likelihood, from the table in likelihoods/table.h.
// Encoder gradient of the IWAE bound (Burda et al. 2016): plain reparameterization, sticking the landing
// (Roeder et al. 2017) or doubly reparameterized (Tucker et al. 2018).
enum class IwaeEstimator : int64_t { Reparam = 0, StickingTheLanding = 1, DReG = 2 };
// Training objective: the ELBO, or a bound over the samples of each image built from the log weights
// log w = log p(x, z) - log q(z | x) (Burda et al. 2016; Rainforth et al. 2018, ICML): IWAE(K); MIWAE(M, K), the
// mean of M independent IWAE(K) bounds; CIWAE(beta) = beta ELBO_K + (1 - beta) IWAE(K); PIWAE(M, K), the encoder
// trained on MIWAE(M, K) and the decoder on IWAE(M K).
enum class Objective : int64_t { Elbo = 0, Iwae = 1, Miwae = 2, Ciwae = 3, Piwae = 4 };
// An importance-weighted objective (not Elbo) over the samples of each image, sample l = m * K + k of group m
// (eps [M K, B, Z], i.e. eps.view(M, K, B, Z)). check_iw_bound validates it against the sample count.
struct IwBound {
  Objective kind = Objective::Iwae;
  int64_t groups = 1;  // M of MIWAE and PIWAE; 1 for the others
  double beta = 0;     // CIWAE's weight of the ELBO, in [0, 1]; 0 for the others
};
// Scale of the Gaussian likelihood (issue 9 item 1; Kingma & Welling 2014, C.2): fixed (gaussian_sigma),
// learned (a per-pixel log sigma vector [D], the last entry of the parameter list) or predicted (the
// decoder's last layer outputs 2D: the mean, then the log-variance).
enum class GaussianScale : int64_t { Fixed = 0, Learned = 1, Predicted = 2 };
// Latent family (issue 9 item 3): Gaussian z = mu + sigma eps, or `latent_dim` categorical variables of
// `categories` classes each, relaxed by Gumbel-softmax (Jang, Gu & Poole 2017; cpp/cpu/categorical_latent.cpp).
enum class Latent : int64_t { Gaussian = 0, Categorical = 1 };

// The architecture arguments, written once: the schema text (cpp/ops.cpp), the C++ parameter list of
// the kernels and the forwarding of those parameters. Python's fastvae.vae.ArchSpec has the same fields
// in the same order. A new architecture option is one entry in each of these three lines and one
// field of ArchSpec.
#define FASTVAE_ARCH_SCHEMA                                                                  \
  "int data_dim, int cond_dim, int latent_dim, int[] encoder_hidden, int[] decoder_hidden, " \
  "str activation, float negative_slope, str posterior, str mean_activation, str scale_activation, " \
  "str likelihood, float gaussian_sigma, str gaussian_scale, str latent, int categories, int[] upper_latents, " \
  "int[] upper_hidden"
#define FASTVAE_ARCH_PARAMS                                                                  \
  int64_t data_dim, int64_t cond_dim, int64_t latent_dim, at::IntArrayRef encoder_hidden,    \
      at::IntArrayRef decoder_hidden, c10::string_view activation, double negative_slope,    \
      c10::string_view posterior, c10::string_view mean_activation, c10::string_view scale_activation, \
      c10::string_view likelihood, double gaussian_sigma, c10::string_view gaussian_scale, c10::string_view latent, \
      int64_t categories, at::IntArrayRef upper_latents, at::IntArrayRef upper_hidden
#define FASTVAE_ARCH_ARGS                                                                          \
  data_dim, cond_dim, latent_dim, encoder_hidden, decoder_hidden, activation, negative_slope, \
      posterior, mean_activation, scale_activation, likelihood, gaussian_sigma, gaussian_scale, latent, categories, \
      upper_latents, upper_hidden

// Names of the enum values, in code order (the only list; see vae_spec.cpp).
const std::vector<std::string>& activation_names();
const std::vector<std::string>& posterior_names();
const std::vector<std::string>& estimator_names();
const std::vector<std::string>& likelihood_names();
// Name -> enum; "fastvae: unknown <what> 'name'; choose one of [...]" otherwise, with "<op>: " after "fastvae: "
// when op is given (the heads name their op).
Act parse_activation(c10::string_view name, const char* what);
Scale parse_posterior(c10::string_view name);
Estimator parse_estimator(c10::string_view name, const char* op = nullptr);
Likelihood parse_likelihood(c10::string_view name, const char* op = nullptr);
const std::vector<std::string>& iwae_estimator_names();
IwaeEstimator parse_iwae_estimator(c10::string_view name, const char* op = nullptr);
const std::vector<std::string>& objective_names();
Objective parse_objective(c10::string_view name, const char* op = nullptr);
// "fastvae: <op>: ..." unless kind is an importance-weighted objective, groups >= 1 divides the sample count
// (and is 1 for IWAE and CIWAE) and beta is in [0, 1] (and 0 except for CIWAE).
IwBound check_iw_bound(const char* op, c10::string_view objective, int64_t groups, double beta, int64_t samples);
const std::vector<std::string>& gaussian_scale_names();
GaussianScale parse_gaussian_scale(c10::string_view name, const char* op = nullptr);
const std::vector<std::string>& latent_names();
Latent parse_latent(c10::string_view name);

struct VaeSpec {
  int64_t data_dim = 0, cond_dim = 0, latent_dim = 0;
  std::vector<int64_t> enc_hidden, dec_hidden;
  Act act = Act::ReLU;
  Scale scale = Scale::LogVar;
  Act mean_act = Act::Identity, scale_act = Act::Identity;
  double slope = 0.01;
  Likelihood lik = Likelihood::Bernoulli;
  double gaussian_sigma = 1.0;  // fixed scale of the Gaussian likelihood (> 0)
  GaussianScale gscale = GaussianScale::Fixed;
  bool learned_scale() const { return lik == Likelihood::Gaussian && gscale == GaussianScale::Learned; }
  bool predicted_scale() const { return lik == Likelihood::Gaussian && gscale == GaussianScale::Predicted; }
  // What the likelihood's rows read besides a and x (the fixed scale; learned scales are the engine's own).
  likelihoods::Params lik_params() const { return {gaussian_sigma, predicted_scale()}; }
  Latent latent = Latent::Gaussian;
  int64_t categories = 0;  // K of a categorical latent (>= 2); 0 for Gaussian latents

  bool categorical() const { return latent == Latent::Categorical; }
  // Stochastic layers above z1 (Burda et al. 2016, Sec. 5): z2, z3, ... of these sizes, each with a Gaussian
  // q(z_j | z_{j-1}) and p(z_{j-1} | z_j) from an MLP of `upper_hidden` layers (activation `act`, heads of mean and
  // spread as `scale` says, no head activation); p(z_top) = N(0, I). Empty: one stochastic layer.
  std::vector<int64_t> up_latents, up_hidden;
  bool hierarchical() const { return !up_latents.empty(); }
  int64_t n_upper() const { return (int64_t)up_latents.size(); }
  // Size of stochastic layer u + 2 (u = 0: z2) and of the one below it (z1 for u = 0).
  int64_t up_dim(int64_t u) const { return up_latents[u]; }
  int64_t up_below(int64_t u) const { return u == 0 ? latent_dim : up_latents[u - 1]; }
  int64_t n_up_mlp_layers() const { return (int64_t)up_hidden.size() + 1; }  // hidden layers + head
  // Index in the parameter list of the weight of layer k of upper layer u's q (p = false) or p (p = true) MLP.
  int64_t up_param(int64_t u, bool p, int64_t k) const {
    return 2 * (n_enc_layers() + n_dec_layers()) + 4 * n_up_mlp_layers() * u + (p ? 2 * n_up_mlp_layers() : 0) +
           2 * k;
  }
  // Sizes of layer k of that MLP: q maps z_below -> 2 z_u, p maps z_u -> 2 z_below.
  int64_t up_in(int64_t u, bool p, int64_t k) const {
    return k == 0 ? (p ? up_dim(u) : up_below(u)) : up_hidden[k - 1];
  }
  int64_t up_out(int64_t u, bool p, int64_t k) const {
    return k + 1 == n_up_mlp_layers() ? 2 * (p ? up_below(u) : up_dim(u)) : up_hidden[k];
  }
  // Noise per sample and image: the categorical latent's uniforms (code_dim()), or z1's normals, then each upper
  // layer's (eps [L, B, noise_dim()]).
  int64_t noise_dim() const {
    if (categorical()) return code_dim();
    int64_t n = latent_dim;
    for (auto d : up_latents) n += d;
    return n;
  }
  // Width of the decoder's latent input: Z (Gaussian) or N*K one-hot / relaxed codes (categorical).
  int64_t code_dim() const { return categorical() ? latent_dim * categories : latent_dim; }
  // Width of the encoder head: [mu | s] (2Z) or the N*K logits.
  int64_t head_dim() const { return categorical() ? latent_dim * categories : 2 * latent_dim; }

  // Validates the architecture arguments (sizes, names, slope) with clear errors.
  static VaeSpec from_args(FASTVAE_ARCH_PARAMS);

  int64_t n_enc_layers() const { return (int64_t)enc_hidden.size() + 1; }  // hidden layers + head
  int64_t n_dec_layers() const { return (int64_t)dec_hidden.size() + 1; }  // hidden layers + logits
  // Linear weights and biases, then the learned log sigma [D] of a Gaussian likelihood if any.
  int64_t n_params() const {
    return 2 * (n_enc_layers() + n_dec_layers()) + 4 * n_upper() * n_up_mlp_layers() + (learned_scale() ? 1 : 0);
  }
  // In and out sizes of encoder layer k (the last one is the head, out = 2Z).
  int64_t enc_in(int64_t k) const { return k == 0 ? data_dim + cond_dim : enc_hidden[k - 1]; }
  int64_t enc_out(int64_t k) const {
    return k == (int64_t)enc_hidden.size() ? head_dim() : enc_hidden[k];
  }
  int64_t dec_in(int64_t k) const { return k == 0 ? code_dim() + cond_dim : dec_hidden[k - 1]; }
  int64_t dec_out(int64_t k) const {
    return k == (int64_t)dec_hidden.size() ? out_dim() : dec_hidden[k];
  }
  // Width of the decoder output row: D, or 2D (mean | log-variance) for a predicted Gaussian scale.
  int64_t out_dim() const { return likelihood_outputs(lik, predicted_scale()) * data_dim; }
  // Checks count, shapes, dtype and device of the parameter list (weights [out, in], biases [out]).
  void check_params(at::TensorList params, at::ScalarType dtype, at::Device device) const;
  // Checks optional labels y: int64 [B] with values in [0, C); required iff C > 0.
  void check_labels(const c10::optional<at::Tensor>& y, int64_t batch) const;
};

// Checks a float tensor has only 0/1 entries (this also rejects NaN); names the argument (and the likelihood
// that needs binary data) on failure.
void check_binary(const at::Tensor& x, const char* name, const char* likelihood_title = "Bernoulli");
void check_finite(const at::Tensor& x, const char* name);
// Checks that data x suits the likelihood (its table entry's data): binary, in [0, 1] (no NaN), or finite.
void check_data(const at::Tensor& x, Likelihood lik, const char* name);

}  // namespace fastvae
