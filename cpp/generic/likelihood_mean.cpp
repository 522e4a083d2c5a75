// The mean E[x | decoder output] of a likelihood (op likelihood_mean, schema in cpp/ops.cpp): the formula file's
// mean (likelihoods/<name>.h) through the table, for VAE.decode, NetworkVAE.decode and
// fastvae.heads.likelihood_mean. ATen operations only, registered for CompositeImplicitAutograd: every
// device, shapes for torch.compile and gradients (where they exist) come from those operations.
#include <torch/library.h>

#include <cmath>
#include <string>

#include "vae_spec.h"

namespace fastvae {
namespace {

at::Tensor likelihood_mean(const at::Tensor& out, c10::string_view likelihood, double gaussian_sigma,
                           c10::string_view gaussian_scale) {
  const char* op = "likelihood_mean";
  const Likelihood lik = parse_likelihood(likelihood, op);
  const GaussianScale scale = parse_gaussian_scale(gaussian_scale, op);
  TORCH_CHECK(scale == GaussianScale::Fixed || lik == Likelihood::Gaussian, "fastvae: ", op, ": gaussian_scale '",
              std::string(gaussian_scale), "' needs likelihood 'gaussian', got '", std::string(likelihood), "'");
  TORCH_CHECK(std::isfinite(gaussian_sigma) && gaussian_sigma > 0, "fastvae: ", op,
              ": gaussian_sigma must be a finite number > 0, got ", gaussian_sigma);
  TORCH_CHECK(at::isFloatingType(out.scalar_type()), "fastvae: ", op,
              ": decoder_out must be a floating-point tensor, got ", out.scalar_type());
  TORCH_CHECK(out.dim() >= 1, "fastvae: ", op, ": decoder_out must have at least one dimension (the outputs of a row)");
  const bool predicted = scale == GaussianScale::Predicted;
  TORCH_CHECK(out.sym_size(-1) % likelihood_outputs(lik, predicted) == 0, "fastvae: ", op, ": decoder_out rows hold ",
              likelihood_outputs(lik, predicted), " outputs per pixel, got ", out.sym_size(-1), " columns");
  const likelihoods::Params params{gaussian_sigma, predicted};
  return visit_likelihood(lik, [&](auto l) { return decltype(l)::mean(out, params); });
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CompositeImplicitAutograd, m) { m.impl("likelihood_mean", &likelihood_mean); }

}  // namespace fastvae
