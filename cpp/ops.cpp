// Operator schemas of the fastvae library, all in one place, each with its autograd policy (Grad, see
// cpp/autograd_guards.h): a formula registered elsewhere, not differentiable, or a private backward op that
// refuses double backward. Kernels register their implementations per backend in cpp/cpu/*_kernel.cpp (and
// cpp/cuda/ when torch has CUDA).
#include <torch/library.h>

#include <string>

#include "autograd_guards.h"
#include "vae_spec.h"

namespace {
using fastvae::Grad;
}  // namespace

TORCH_LIBRARY(fastvae, m) {
  using fastvae::def;
  // MLP VAE with Bernoulli decoder. The architecture comes as the named, typed arguments of
  // FASTVAE_ARCH_SCHEMA (cpp/vae_spec.h, written once), `params` are the Linear weights and biases in
  // order, `eps` is [L, B, Z] standard normal noise, `estimator` one of fastvae._C.ESTIMATORS.
  def(m, "vae_elbo(Tensor x, Tensor? y, Tensor eps, Tensor[] params, " FASTVAE_ARCH_SCHEMA ", str estimator) "
      "-> (Tensor elbo, Tensor rec, Tensor kl)", Grad::kFormula);
  // Gradient of sum_i w_rec[i] * rec[i] + w_kl[i] * kl[i] with respect to every parameter.
  def(m, "vae_elbo_backward(Tensor w_rec, Tensor w_kl, Tensor x, Tensor? y, Tensor eps, Tensor[] params, "
      FASTVAE_ARCH_SCHEMA ", str estimator) -> Tensor[]", Grad::kBackward);
  // Encoder pass: posterior mean and standard deviation, each [B, Z] (categorical latent: log q and q, [B, N*K]).
  def(m, "vae_encode(Tensor x, Tensor? y, Tensor[] params, " FASTVAE_ARCH_SCHEMA ") -> (Tensor mu, Tensor sigma)",
      Grad::kNone);
  // Decoder pass: Bernoulli logits [N, D] for latent codes z [N, Z].
  def(m, "vae_decode(Tensor z, Tensor? y, Tensor[] params, " FASTVAE_ARCH_SCHEMA ") -> Tensor", Grad::kNone);
  // Importance-weighted bound on log p(x) (Burda et al. 2016) with eps [K, B, Z].
  def(m, "vae_iwae(Tensor x, Tensor? y, Tensor eps, Tensor[] params, " FASTVAE_ARCH_SCHEMA ") -> Tensor",
      Grad::kNone);
  // The same bound as a training objective, differentiable with respect to params; `estimator` (one of
  // fastvae._C.IWAE_ESTIMATORS: reparam, stl, dreg) picks the encoder gradient (docs/engine.md). `objective` (one
  // of fastvae._C.OBJECTIVES but 'elbo') with `groups` and `beta` (cpp/vae_spec.h, IwBound) turns it into MIWAE,
  // CIWAE or PIWAE (Rainforth et al. 2018), eps holding groups * K samples per image.
  def(m, "vae_iwae_bound(Tensor x, Tensor? y, Tensor eps, Tensor[] params, " FASTVAE_ARCH_SCHEMA
      ", str estimator, str objective, int groups, float beta) -> Tensor", Grad::kFormula);
  // Gradient of sum_i g[i] * bound[i] with respect to every parameter.
  def(m, "vae_iwae_bound_backward(Tensor g, Tensor x, Tensor? y, Tensor eps, Tensor[] params, "
      FASTVAE_ARCH_SCHEMA ", str estimator, str objective, int groups, float beta) -> Tensor[]", Grad::kBackward);
  // One Adam step (Kingma & Ba 2015, as torch.optim.Adam), in place over a list of tensors.
  def(m, "adam_step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq, "
      "int step, float lr, float beta1, float beta2, float eps, float weight_decay) -> ()", Grad::kNone);
  // CAVI for the earthquake mixture (cpp/cpu/cavi_kernel.cpp). stats is [K, 5]:
  // [N_k, sum r x_0, sum r x_1, sum r ||x||^2, sum r S]; entropy is -sum r log r (0-d).
  def(m, "cavi_estep(Tensor x, Tensor s, Tensor log_pi, Tensor m, Tensor prec, Tensor shape, Tensor rate, "
      "float tau) -> (Tensor stats, Tensor entropy)", Grad::kNone);
  def(m, "cavi_responsibilities(Tensor x, Tensor s, Tensor log_pi, Tensor m, Tensor prec, Tensor shape, "
      "Tensor rate, float tau) -> Tensor", Grad::kNone);
  def(m, "cavi_update_mu(Tensor stats, float tau, float[] nu, float rho) -> (Tensor m, Tensor prec)", Grad::kNone);
  def(m, "cavi_update_lambda(Tensor stats, float alpha, float beta) -> (Tensor shape, Tensor rate)", Grad::kNone);
  def(m, "cavi_elbo(Tensor stats, Tensor entropy, float log_fact, Tensor log_pi, Tensor m, Tensor prec, "
      "Tensor shape, Tensor rate, float tau, float[] nu, float rho, float alpha, float beta) -> Tensor", Grad::kNone);
  // Reparameterized samplers. Exactly one of `uniform` and `seed` is given: `uniform` injects the U(0, 1)
  // draws (same shape as the output); `seed`, a 0-d int64 tensor (drawn in the caller's graph with a torch
  // random op, so that torch.compile traces it without a graph break), keys a counter-based generator, so the
  // draws do not depend on the thread count (cpp/cpu/counter_rng.h).
  // Gumbel-softmax sample softmax((logits - log(-log U)) / tau) along dim.
  def(m, "gumbel_softmax_fwd(Tensor logits, Tensor? uniform, float tau, int dim, Tensor? seed) -> Tensor",
      Grad::kFormula);
  // Softmax backward of the sample y: y * (grad - sum(grad * y, dim)) / tau.
  def(m, "_gumbel_softmax_backward(Tensor grad, Tensor y, float tau, int dim) -> Tensor", Grad::kBackward);
  // One-hot of the argmax along dim (straight-through forward).
  def(m, "one_hot_argmax(Tensor y, int dim) -> Tensor", Grad::kFormula);
  // Exp(rate) by the inverse CDF, -log(1 - U) / rate, output sample_shape + rate.shape.
  def(m, "exponential_fwd(Tensor rate, Tensor? uniform, int[] sample_shape, Tensor? seed) -> Tensor",
      Grad::kFormula);
  // Gradient for rate: -sum over sample dims of grad * z / rate.
  def(m, "_exponential_backward(Tensor grad, Tensor z, Tensor rate) -> Tensor", Grad::kBackward);
  // VAE with a categorical latent (latent='categorical'; docs/engine.md "Categorical latents"): `u` is
  // [L, B, latent_dim * categories] uniform noise strictly inside (0, 1), y = softmax((logits - log(-log u)) / tau)
  // per variable (the gumbel_softmax kernel), one_hot(argmax y) into the decoder if `hard` (straight-through),
  // kl = KL(q || uniform) analytic. Backward: gradient of sum_i w_rec[i] rec[i] + w_kl[i] kl[i].
  def(m, "vae_categorical_elbo(Tensor x, Tensor? y, Tensor u, Tensor[] params, " FASTVAE_ARCH_SCHEMA
      ", float temperature, bool hard) -> (Tensor elbo, Tensor rec, Tensor kl)", Grad::kFormula);
  def(m, "vae_categorical_elbo_backward(Tensor w_rec, Tensor w_kl, Tensor x, Tensor? y, Tensor u, Tensor[] params, "
      FASTVAE_ARCH_SCHEMA ", float temperature, bool hard) -> Tensor[]", Grad::kBackward);
  // Mean of p(x | decoder output) per pixel [..., D] for decoder_out [..., W] (W = D, or 2D for gaussian_scale
  // "predicted"): the likelihood's formula (cpp/likelihoods/), e.g. sigmoid(a) for bernoulli, the mean output for
  // gaussian; in decoder_out's dtype. Arguments as the architecture's (fastvae._C.LIKELIHOODS, GAUSSIAN_SCALES).
  def(m, "likelihood_mean(Tensor decoder_out, str likelihood, float gaussian_sigma, str gaussian_scale) -> Tensor",
      Grad::kComposite);  // cpp/generic/likelihood_mean.cpp
  // Objective heads (issue 11; cpp/generic/heads.cpp for every backend, cpp/cpu/heads_kernel.cpp fused on the
  // CPU, cpp/autograd/heads_autograd.cpp their autograd; docs/heads.md). x [B, D], decoder_out [L, B, D]
  // (gaussian "predicted": [L, B, 2D], mean | log-variance), z [L, B, Z], mu and sigma [B, Z]. likelihood:
  // bernoulli, continuous_bernoulli, gaussian; gaussian_scale: fixed or predicted; estimator: analytic, mc, stl
  // (elbo_terms) or reparam, stl, dreg (iwae_bound). Defined twice: as themselves, and with the prefix
  // _generic_ bound only to the device-generic ATen implementation, so that tests reach that path on the CPU
  // where the fused kernels otherwise take precedence.
  for (const std::string p : {"", "_generic_"}) {
    const std::string q = p.empty() ? "_" : p;  // the private ops: _elbo_terms_forward, _generic_elbo_terms_forward
    const std::string heads_args = "Tensor x, Tensor decoder_out, Tensor z, Tensor mu, Tensor sigma, str likelihood, "
                                   "float gaussian_sigma, str gaussian_scale, str estimator";
    const std::string names = "str likelihood, float gaussian_sigma, str gaussian_scale, str estimator";
    const std::string grads = "-> (Tensor d_decoder_out, Tensor d_z, Tensor d_mu, Tensor d_sigma)";
    // Per-image ELBO terms, each [B].
    def(m, p + "elbo_terms(" + heads_args + ") -> (Tensor elbo, Tensor rec, Tensor kl)", Grad::kFormula);
    // The same with, if decoder_grad, d rec / d decoder_out [L, B, W] from the same pass (the autograd backward
    // then only scales it by the upstream gradient); an empty [0] tensor otherwise. Called below autograd by
    // elbo_terms' autograd kernel only.
    def(m, q + "elbo_terms_forward(" + heads_args + ", bool decoder_grad) -> (Tensor elbo, Tensor rec, "
        "Tensor kl, Tensor decoder_grad)", Grad::kNone);
    // Gradients of sum_b g_rec[b] rec[b] + g_kl[b] kl[b] with respect to decoder_out, z, mu, sigma; with
    // decoder_out_grad false, d_decoder_out is an empty [0] tensor (the caller scales the forward's decoder_grad).
    def(m, q + "elbo_terms_backward(Tensor g_rec, Tensor g_kl, Tensor x, Tensor decoder_out, Tensor z, "
        "Tensor mu, Tensor sigma, bool decoder_out_grad, " + names + ") " + grads, Grad::kBackward);
    // IWAE bound [B] (Burda et al. 2016) and the normalised importance weights softmax_k(log w) [K, B].
    def(m, p + "iwae_bound(" + heads_args + ") -> (Tensor bound, Tensor weights)", Grad::kFormula);
    // The same with, if decoder_grad, d bound / d decoder_out [K, B, W] (weighted by the normalised weights).
    def(m, q + "iwae_bound_forward(" + heads_args + ", bool decoder_grad) -> (Tensor bound, Tensor weights, "
        "Tensor decoder_grad)", Grad::kNone);
    // Gradients of sum_b g[b] bound[b] by the estimator's rule, with respect to decoder_out, z, mu, sigma;
    // `weights` [K, B] are the forward's softmax_k(log w); decoder_out_grad as for elbo_terms.
    def(m, q + "iwae_bound_backward(Tensor g, Tensor weights, Tensor x, Tensor decoder_out, Tensor z, Tensor mu, "
        "Tensor sigma, bool decoder_out_grad, " + names + ") " + grads, Grad::kBackward);
  }
}
