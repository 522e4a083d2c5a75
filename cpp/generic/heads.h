// Shared by the objective heads' two implementations (generic ATen in heads.cpp, fused CPU in
// cpp/cpu/heads_kernel.cpp): argument checks and the parsed names. The names are the engine's (vae_spec.h: the
// likelihood table, Estimator, IwaeEstimator, GaussianScale, parsed with the op's name in their messages).
// docs/heads.md gives the formulas.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <initializer_list>
#include <tuple>

#include "vae_spec.h"

namespace fastvae {
namespace heads {

struct HeadShape {
  Likelihood lik;
  likelihoods::Params params;  // gaussian_sigma; predicted: decoder_out holds 2D entries per row (mean | log-variance)
  int64_t L, B, D, Z;
};

// TORCH_CHECKs ("fastvae: <op>: ...") on names, dtypes (float32 / float64, all equal), devices (all equal),
// dimensions and sizes; returns the parsed sizes. The data-dependent checks are check_data's.
HeadShape check_heads(const char* op, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                      const at::Tensor& mu, const at::Tensor& sigma, const std::string& likelihood,
                      double gaussian_sigma, const std::string& gaussian_scale);
// Data checks (ValueError in Python): no NaN in x, decoder_out, z, mu, sigma; sigma > 0; x as the likelihood's
// table entry says (binary, or in [0, 1]). ATen reductions (one host sync each on an accelerator).
// Run by the forward ops only: the private backward ops trust the inputs their forward has checked.
void check_data(const char* op, const HeadShape& s, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                const at::Tensor& mu, const at::Tensor& sigma);
void check_weights(const char* op, const char* name, const at::Tensor& g, const at::Tensor& x, int64_t B);

// The rare path after a forward whose result `what` ("the ELBO", "the IWAE bound") is not finite: a ValueError
// naming the input that holds NaN or +-inf ("decoder_out contains inf": a non-finite decoder output is refused
// like NaN), else the term that overflowed and why (the likelihood: x or the means too large, a log-variance too
// small; the KL or the log weights: mu, sigma, z; rec - kl). `kl_estimator` is the ELBO's (nullptr for the IWAE
// bound). Never returns.
[[noreturn]] void not_finite(const char* op, const char* what, const HeadShape& s, const at::Tensor& x,
                             const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
                             const Estimator* kl_estimator);
// After a backward op found a gradient that is not finite: nothing if an upstream gradient (g_rec, g_kl or g) is
// not finite (garbage in), else a ValueError naming the gradient (d_decoder_out, d_z, d_mu or d_sigma) and the
// magnitudes of the inputs it comes from. `grads` are the op's four outputs (d_decoder_out may be empty).
void grad_not_finite(const char* op, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                     const at::Tensor& mu, const at::Tensor& sigma, std::initializer_list<at::Tensor> upstream,
                     std::initializer_list<at::Tensor> grads);
// The importance weights given to the IWAE backward: [K, B], x's dtype and device.
void check_importance_weights(const char* op, const at::Tensor& w, const at::Tensor& x, int64_t K, int64_t B);

using Terms = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The device-generic implementations (ATen operations only) of the private forward and backward ops.
Terms generic_elbo_terms_forward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu,
                                 const at::Tensor& sigma, std::string likelihood, double gaussian_sigma,
                                 std::string gaussian_scale, std::string estimator, bool decoder_grad);
Grads generic_elbo_terms_backward(const at::Tensor& g_rec, const at::Tensor& g_kl, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu,
                                  const at::Tensor& sigma, bool decoder_out_grad, std::string likelihood,
                                  double gaussian_sigma, std::string gaussian_scale, std::string estimator);
std::tuple<at::Tensor, at::Tensor, at::Tensor> generic_iwae_bound_forward(
    const at::Tensor& x, const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
    std::string likelihood, double gaussian_sigma, std::string gaussian_scale, std::string estimator,
    bool decoder_grad);
Grads generic_iwae_bound_backward(const at::Tensor& g, const at::Tensor& weights, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& sigma,
                                  bool decoder_out_grad, std::string likelihood,
                                  double gaussian_sigma, std::string gaussian_scale, std::string estimator);

}  // namespace heads
}  // namespace fastvae
