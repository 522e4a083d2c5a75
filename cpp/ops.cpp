// Operator schemas of the fastvae library, all in one place. Kernels register their
// implementations per backend in cpp/cpu/*_kernel.cpp (and cpp/cuda/ when torch has CUDA).
#include <torch/library.h>

#include <string>

#include "vae_spec.h"

TORCH_LIBRARY(fastvae, m) {
  // MLP VAE with Bernoulli decoder. The architecture comes as the named, typed arguments of
  // FASTVAE_ARCH_SCHEMA (cpp/vae_spec.h, written once), `params` are the Linear weights and biases in
  // order, `eps` is [L, B, Z] standard normal noise, `estimator` one of fastvae._C.ESTIMATORS.
  m.def("vae_elbo(Tensor x, Tensor? y, Tensor eps, Tensor[] params, " FASTVAE_ARCH_SCHEMA ", str estimator) "
        "-> (Tensor elbo, Tensor rec, Tensor kl)");
  // Gradient of sum_i w_rec[i] * rec[i] + w_kl[i] * kl[i] with respect to every parameter.
  m.def("vae_elbo_backward(Tensor w_rec, Tensor w_kl, Tensor x, Tensor? y, Tensor eps, Tensor[] params, "
        FASTVAE_ARCH_SCHEMA ", str estimator) -> Tensor[]");
  // Encoder pass: posterior mean and standard deviation, each [B, Z] (categorical latent: log q and q, [B, N*K]).
  m.def("vae_encode(Tensor x, Tensor? y, Tensor[] params, " FASTVAE_ARCH_SCHEMA ") -> (Tensor mu, Tensor sigma)");
  // Decoder pass: Bernoulli logits [N, D] for latent codes z [N, Z].
  m.def("vae_decode(Tensor z, Tensor? y, Tensor[] params, " FASTVAE_ARCH_SCHEMA ") -> Tensor");
  // Importance-weighted bound on log p(x) (Burda et al. 2016) with eps [K, B, Z].
  m.def("vae_iwae(Tensor x, Tensor? y, Tensor eps, Tensor[] params, " FASTVAE_ARCH_SCHEMA ") -> Tensor");
  // The same bound as a training objective, differentiable with respect to params; `estimator` (one of
  // fastvae._C.IWAE_ESTIMATORS: reparam, stl, dreg) picks the encoder gradient (docs/engine.md).
  m.def("vae_iwae_bound(Tensor x, Tensor? y, Tensor eps, Tensor[] params, " FASTVAE_ARCH_SCHEMA
        ", str estimator) -> Tensor");
  // Gradient of sum_i g[i] * bound[i] with respect to every parameter.
  m.def("vae_iwae_bound_backward(Tensor g, Tensor x, Tensor? y, Tensor eps, Tensor[] params, "
        FASTVAE_ARCH_SCHEMA ", str estimator) -> Tensor[]");
  // One Adam step (Kingma & Ba 2015, as torch.optim.Adam), in place over a list of tensors.
  m.def("adam_step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq, "
        "int step, float lr, float beta1, float beta2, float eps, float weight_decay) -> ()");
  // CAVI for the earthquake mixture (cpp/cpu/cavi_kernel.cpp). stats is [K, 5]:
  // [N_k, sum r x_0, sum r x_1, sum r ||x||^2, sum r S]; entropy is -sum r log r (0-d).
  m.def("cavi_estep(Tensor x, Tensor s, Tensor log_pi, Tensor m, Tensor prec, Tensor shape, Tensor rate, "
        "float tau) -> (Tensor stats, Tensor entropy)");
  m.def("cavi_responsibilities(Tensor x, Tensor s, Tensor log_pi, Tensor m, Tensor prec, Tensor shape, "
        "Tensor rate, float tau) -> Tensor");
  m.def("cavi_update_mu(Tensor stats, float tau, float[] nu, float rho) -> (Tensor m, Tensor prec)");
  m.def("cavi_update_lambda(Tensor stats, float alpha, float beta) -> (Tensor shape, Tensor rate)");
  m.def("cavi_elbo(Tensor stats, Tensor entropy, float log_fact, Tensor log_pi, Tensor m, Tensor prec, "
        "Tensor shape, Tensor rate, float tau, float[] nu, float rho, float alpha, float beta) -> Tensor");
  // Reparameterized samplers. `uniform` injects the U(0, 1) draws (same shape as the output); without it
  // the draws come from a counter-based generator keyed by `seed`, independent of the thread count.
  // Gumbel-softmax sample softmax((logits - log(-log U)) / tau) along dim.
  m.def("gumbel_softmax_fwd(Tensor logits, Tensor? uniform, float tau, int dim, int seed) -> Tensor");
  // Softmax backward of the sample y: y * (grad - sum(grad * y, dim)) / tau.
  m.def("gumbel_softmax_bwd(Tensor grad, Tensor y, float tau, int dim) -> Tensor");
  // One-hot of the argmax along dim (straight-through forward).
  m.def("one_hot_argmax(Tensor y, int dim) -> Tensor");
  // Exp(rate) by the inverse CDF, -log(1 - U) / rate, output sample_shape + rate.shape.
  m.def("exponential_fwd(Tensor rate, Tensor? uniform, int[] sample_shape, int seed) -> Tensor");
  // Gradient for rate: -sum over sample dims of grad * z / rate.
  m.def("exponential_bwd(Tensor grad, Tensor z, Tensor rate) -> Tensor");
  // VAE with a categorical latent (latent='categorical'; docs/engine.md "Categorical latents"): `u` is
  // [L, B, latent_dim * categories] uniform noise strictly inside (0, 1), y = softmax((logits - log(-log u)) / tau)
  // per variable (the gumbel_softmax kernel), one_hot(argmax y) into the decoder if `hard` (straight-through),
  // kl = KL(q || uniform) analytic. Backward: gradient of sum_i w_rec[i] rec[i] + w_kl[i] kl[i].
  m.def("vae_categorical_elbo(Tensor x, Tensor? y, Tensor u, Tensor[] params, " FASTVAE_ARCH_SCHEMA
        ", float temperature, bool hard) -> (Tensor elbo, Tensor rec, Tensor kl)");
  m.def("vae_categorical_elbo_backward(Tensor w_rec, Tensor w_kl, Tensor x, Tensor? y, Tensor u, Tensor[] params, "
        FASTVAE_ARCH_SCHEMA ", float temperature, bool hard) -> Tensor[]");
  // Mean of p(x | decoder output) per pixel [..., D] for decoder_out [..., W] (W = D, or 2D for gaussian_scale
  // "predicted"): the likelihood's formula (cpp/likelihoods/), e.g. sigmoid(a) for bernoulli, the mean output for
  // gaussian; in decoder_out's dtype. Arguments as the architecture's (fastvae._C.LIKELIHOODS, GAUSSIAN_SCALES).
  m.def("likelihood_mean(Tensor decoder_out, str likelihood, float gaussian_sigma, str gaussian_scale) -> Tensor");
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
    m.def((p + "elbo_terms(" + heads_args + ") -> (Tensor elbo, Tensor rec, Tensor kl)").c_str());
    // The same with, if decoder_grad, d rec / d decoder_out [L, B, W] from the same pass (the autograd backward
    // then only scales it by the upstream gradient); an empty [0] tensor otherwise.
    m.def((q + "elbo_terms_forward(" + heads_args + ", bool decoder_grad) -> (Tensor elbo, Tensor rec, "
          "Tensor kl, Tensor decoder_grad)").c_str());
    // Gradients of sum_b g_rec[b] rec[b] + g_kl[b] kl[b] with respect to decoder_out, z, mu, sigma; with
    // decoder_out_grad false, d_decoder_out is an empty [0] tensor (the caller scales the forward's decoder_grad).
    m.def((q + "elbo_terms_backward(Tensor g_rec, Tensor g_kl, Tensor x, Tensor decoder_out, Tensor z, "
          "Tensor mu, Tensor sigma, bool decoder_out_grad, " + names + ") " + grads).c_str());
    // IWAE bound [B] (Burda et al. 2016) and the normalised importance weights softmax_k(log w) [K, B].
    m.def((p + "iwae_bound(" + heads_args + ") -> (Tensor bound, Tensor weights)").c_str());
    // The same with, if decoder_grad, d bound / d decoder_out [K, B, W] (weighted by the normalised weights).
    m.def((q + "iwae_bound_forward(" + heads_args + ", bool decoder_grad) -> (Tensor bound, Tensor weights, "
          "Tensor decoder_grad)").c_str());
    // Gradients of sum_b g[b] bound[b] by the estimator's rule, with respect to decoder_out, z, mu, sigma;
    // `weights` [K, B] are the forward's softmax_k(log w); decoder_out_grad as for elbo_terms.
    m.def((q + "iwae_bound_backward(Tensor g, Tensor weights, Tensor x, Tensor decoder_out, Tensor z, Tensor mu, "
          "Tensor sigma, bool decoder_out_grad, " + names + ") " + grads).c_str());
  }
}
