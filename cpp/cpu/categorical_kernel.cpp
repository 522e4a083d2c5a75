// CPU kernels of the categorical-latent VAE ops (schemas in cpp/ops.cpp; math in categorical_latent.cpp).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>

#include "cpu/vae_engine.h"
#include "vae_spec.h"

namespace fastvae {
namespace cpu {
namespace {

struct CatInputs {
  VaeSpec spec;
  at::Tensor x, u;
  c10::optional<at::Tensor> y;
  std::vector<at::Tensor> params;
};

CatInputs check_categorical(const at::Tensor& x, const c10::optional<at::Tensor>& y, const at::Tensor& u,
                            at::TensorList params, VaeSpec spec, double temperature) {
  TORCH_CHECK(spec.categorical(), "fastvae: vae_categorical_elbo needs latent='categorical', got a Gaussian latent "
              "(use vae_elbo)");
  TORCH_CHECK(spec.slope >= 0, "fastvae: leaky_relu slope must be >= 0, got ", spec.slope);
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0 && std::isfinite(1.0 / temperature),
              "fastvae: temperature must be finite and > 0, got ", temperature);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fastvae: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.scalar_type() != at::kFloat || std::isfinite(static_cast<float>(1.0 / temperature)),
                    "fastvae: vae_categorical_elbo: temperature ", temperature, " underflows float32: 1 / temperature "
                    "= ", 1.0 / temperature, " overflows float32 (the model computes in float32; use a temperature "
                    ">= 3e-39 or a float64 model)");
  TORCH_CHECK(x.device().is_cpu(), "fastvae: x must be on the CPU for this kernel, got ", x.device());
  TORCH_CHECK(x.dim() == 2 && x.size(1) == spec.data_dim, "fastvae: expected x of shape [B, ", spec.data_dim,
              "], got ", x.sizes());
  CatInputs in{std::move(spec)};
  const auto& s = in.spec;
  in.x = x.contiguous();
  check_data(in.x, s.lik, "x");
  s.check_params(params, x.scalar_type(), x.device());
  s.check_labels(y, x.size(0));
  if (y) in.y = y->contiguous();
  for (const auto& p : params) check_finite(p, "a parameter");
  in.params.assign(params.begin(), params.end());
  TORCH_CHECK(u.dim() == 3 && u.size(1) == x.size(0) && u.size(2) == s.code_dim(),
              "fastvae: the categorical noise u must have shape [n_samples, ", x.size(0), ", ", s.code_dim(),
              "] (latent_dim * categories), got ", u.sizes());
  TORCH_CHECK(u.size(0) >= 1, "fastvae: need at least one Monte Carlo sample (n_samples >= 1)");
  TORCH_CHECK(u.scalar_type() == x.scalar_type(), "fastvae: u must have the dtype of x (", x.scalar_type(),
              "), got ", u.scalar_type());
  TORCH_CHECK(u.device() == x.device(), "fastvae: u is on ", u.device(), ", x on ", x.device());
  in.u = u.contiguous();
  if (in.u.numel()) {
    TORCH_CHECK(at::logical_and(in.u > 0, in.u < 1).all().item<bool>(),
                "fastvae: the categorical noise u must be uniform draws strictly inside (0, 1) (no NaN)");
  }
  return in;
}

const int64_t* labels(const c10::optional<at::Tensor>& y) { return y ? y->data_ptr<int64_t>() : nullptr; }
constexpr const char* kInputs = "x, u, the temperature and the parameters";

std::tuple<at::Tensor, at::Tensor, at::Tensor> vae_categorical_elbo(
    const at::Tensor& x, const c10::optional<at::Tensor>& y, const at::Tensor& u, at::TensorList params,
    FASTVAE_ARCH_PARAMS, double temperature, bool hard) {
  at::AutoDispatchBelowADInplaceOrView guard;
  auto in = check_categorical(x, y, u, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), temperature);
  at::Tensor rec, kl, elbo;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_categorical_elbo", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.categorical_forward(in.params, in.x, labels(in.y), in.u, temperature, hard, nullptr);
    rec = eng.rec();
    kl = eng.kl();
    elbo = rec - kl;
    check_result("vae_categorical_elbo", "the ELBO", eng, in.params, in.x, elbo, kInputs, temperature);
  });
  return {elbo, rec, kl};
}

std::vector<at::Tensor> vae_categorical_elbo_backward(const at::Tensor& w_rec, const at::Tensor& w_kl,
                                                      const at::Tensor& x, const c10::optional<at::Tensor>& y,
                                                      const at::Tensor& u, at::TensorList params,
                                                      FASTVAE_ARCH_PARAMS, double temperature, bool hard) {
  at::AutoDispatchBelowADInplaceOrView guard;
  auto in = check_categorical(x, y, u, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), temperature);
  const int64_t B = x.size(0);
  for (const auto* w : {&w_rec, &w_kl}) {
    TORCH_CHECK(w->dim() == 1 && w->size(0) == B, "fastvae: per-image weights must have shape [", B, "], got ",
                w->sizes());
    TORCH_CHECK(w->device().is_cpu(), "fastvae: per-image weights must be on the CPU, got ", w->device());
    TORCH_CHECK(w->is_floating_point(), "fastvae: per-image weights must be floating point, got ", w->scalar_type());
  }
  auto wr = w_rec.to(in.x.scalar_type()).contiguous();
  auto wk = w_kl.to(in.x.scalar_type()).contiguous();
  std::vector<at::Tensor> grads;
  for (const auto& p : in.params) grads.push_back(at::empty_like(p));
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_categorical_elbo_backward", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    const char* op = "vae_categorical_elbo_backward";
    eng.categorical_forward(in.params, in.x, labels(in.y), in.u, temperature, hard, wr.data_ptr<scalar_t>());
    check_result(op, "the ELBO", eng, in.params, in.x, eng.rec(), kInputs, temperature);
    check_result(op, "the ELBO", eng, in.params, in.x, eng.kl(), kInputs, temperature);
    eng.categorical_backward(in.params, in.x, labels(in.y), temperature, hard, wk.data_ptr<scalar_t>(), grads);
    check_grads(op, eng, in.params, grads, {wr, wk}, "x, u, the temperature, the parameters and the per-image "
                "weights");
  });
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("vae_categorical_elbo", &vae_categorical_elbo);
  m.impl("vae_categorical_elbo_backward", &vae_categorical_elbo_backward);
}

}  // namespace cpu
}  // namespace fastvae
