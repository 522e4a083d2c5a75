// Shared by the objective heads' two implementations (generic ATen in heads.cpp, fused CPU in
// cpp/cpu/heads_kernel.cpp): argument checks and the parsed names. docs/heads.md gives the formulas.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace fastvae {
namespace heads {

enum class Lik { Bernoulli, ContinuousBernoulli, Gaussian };
enum class KlEst { Analytic, Mc, Stl };
enum class IwEst { Reparam, Stl, Dreg };

struct HeadShape {
  Lik lik;
  bool predicted;  // gaussian with decoder-predicted log-variance: decoder_out has 2D entries per row
  double gaussian_sigma;
  int64_t L, B, D, Z;
};

// TORCH_CHECKs ("fastvae: <op>: ...") on names, dtypes (float32 / float64, all equal), devices (all equal),
// dimensions and sizes; returns the parsed sizes. The data-dependent checks are check_data's.
HeadShape check_heads(const char* op, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                      const at::Tensor& mu, const at::Tensor& sigma, const std::string& likelihood,
                      double gaussian_sigma, const std::string& gaussian_scale);
KlEst parse_kl(const char* op, const std::string& estimator);
IwEst parse_iwae(const char* op, const std::string& estimator);
// Data checks (ValueError in Python): no NaN in x, decoder_out, z, mu, sigma; sigma > 0; x binary for
// bernoulli, in [0, 1] for continuous_bernoulli. ATen reductions (one host sync each on an accelerator).
// Run by the forward ops only: the private backward ops trust the inputs their forward has checked.
void check_data(const char* op, const HeadShape& s, const at::Tensor& x, const at::Tensor& out, const at::Tensor& z,
                const at::Tensor& mu, const at::Tensor& sigma);
void check_weights(const char* op, const char* name, const at::Tensor& g, const at::Tensor& x, int64_t B);
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
