// CPU implementations of the VAE ops declared in cpp/ops.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "cpu/vae_engine.h"
#include "vae_spec.h"

namespace fastvae {
namespace cpu {
namespace {

struct Inputs {
  VaeSpec spec;
  at::Tensor x, eps;
  c10::optional<at::Tensor> y;
  std::vector<at::Tensor> params;
};

// The kernels compute their own gradients; the ATen calls inside them must not record autograd.
using NoAutograd = at::AutoDispatchBelowADInplaceOrView;

Inputs check_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& y, const at::Tensor* eps,
                    at::TensorList params, const VaeSpec& spec, bool binary_x) {
  Inputs in{spec};
  const auto& s = in.spec;
  const double slope = s.slope;
  TORCH_CHECK(slope >= 0, "fastvae: leaky_relu slope must be >= 0, got ", slope);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fastvae: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), "fastvae: x must be on the CPU for this kernel, got ", x.device());
  TORCH_CHECK(x.dim() == 2 && x.size(1) == (binary_x ? s.data_dim : s.code_dim()), "fastvae: expected ",
              binary_x ? "x" : "z", " of shape [B, ", binary_x ? s.data_dim : s.code_dim(), "], got ",
              x.sizes());
  in.x = x.contiguous();
  if (binary_x) {
    check_data(in.x, s.lik, "x");
  } else {
    check_finite(in.x, "z");
  }
  s.check_params(params, x.scalar_type(), x.device());
  s.check_labels(y, x.size(0));
  if (y) in.y = y->contiguous();
  for (const auto& p : params) check_finite(p, "a parameter");
  in.params.assign(params.begin(), params.end());
  if (eps) {
    TORCH_CHECK(!s.categorical(), "fastvae: a categorical latent takes uniform noise and a temperature (op "
                "vae_categorical_elbo, fastvae.elbo); this op is for Gaussian latents");
    TORCH_CHECK(eps->dim() == 3 && eps->size(1) == x.size(0) && eps->size(2) == s.latent_dim,
                "fastvae: eps must have shape [n_samples, ", x.size(0), ", ", s.latent_dim, "], got ",
                eps->sizes());
    TORCH_CHECK(eps->size(0) >= 1, "fastvae: need at least one Monte Carlo sample (n_samples >= 1)");
    TORCH_CHECK(eps->scalar_type() == x.scalar_type(), "fastvae: eps must have the dtype of x (",
                x.scalar_type(), "), got ", eps->scalar_type());
    TORCH_CHECK(eps->device() == x.device(), "fastvae: eps is on ", eps->device(), ", x on ", x.device());
    in.eps = eps->contiguous();
    check_finite(in.eps, "eps");
  }
  return in;
}

const int64_t* label_ptr(const c10::optional<at::Tensor>& y) {
  return y ? y->data_ptr<int64_t>() : nullptr;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> vae_elbo(const at::Tensor& x,
                                                        const c10::optional<at::Tensor>& y,
                                                        const at::Tensor& eps, at::TensorList params,
                                                        FASTVAE_ARCH_PARAMS, c10::string_view estimator) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  auto est = parse_estimator(estimator);
  at::Tensor rec, kl;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_elbo", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.forward(in.params, in.x, label_ptr(in.y), in.eps, est, nullptr);
    rec = eng.rec();
    kl = eng.kl();
  });
  return {rec - kl, rec, kl};
}

std::vector<at::Tensor> vae_elbo_backward(const at::Tensor& w_rec, const at::Tensor& w_kl,
                                          const at::Tensor& x, const c10::optional<at::Tensor>& y,
                                          const at::Tensor& eps, at::TensorList params,
                                          FASTVAE_ARCH_PARAMS, c10::string_view estimator) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  auto est = parse_estimator(estimator);
  const int64_t B = x.size(0);
  for (const auto* w : {&w_rec, &w_kl}) {
    TORCH_CHECK(w->dim() == 1 && w->size(0) == B, "fastvae: per-image weights must have shape [", B,
                "], got ", w->sizes());
    TORCH_CHECK(w->device().is_cpu(), "fastvae: per-image weights must be on the CPU, got ", w->device());
    TORCH_CHECK(w->is_floating_point(), "fastvae: per-image weights must be floating point, got ",
                w->scalar_type());
  }
  auto wr = w_rec.to(in.x.scalar_type()).contiguous();
  auto wk = w_kl.to(in.x.scalar_type()).contiguous();
  std::vector<at::Tensor> grads;
  for (const auto& p : in.params) grads.push_back(at::empty_like(p));
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_elbo_backward", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.forward(in.params, in.x, label_ptr(in.y), in.eps, est, wr.data_ptr<scalar_t>());
    eng.backward(in.params, in.x, label_ptr(in.y), in.eps, est, wk.data_ptr<scalar_t>(), grads);
  });
  return grads;
}

std::tuple<at::Tensor, at::Tensor> vae_encode(const at::Tensor& x, const c10::optional<at::Tensor>& y,
                                              at::TensorList params, FASTVAE_ARCH_PARAMS) {
  NoAutograd guard;
  auto in = check_inputs(x, y, nullptr, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  at::Tensor mu, sigma;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_encode", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.encode(in.params, in.x, label_ptr(in.y));
    if (in.spec.categorical()) {  // log q and q, [B, N*K] (softmax over each variable's K logits)
      const auto& h = eng.head();
      mu = h.view({h.size(0), in.spec.latent_dim, in.spec.categories}).log_softmax(-1).reshape(h.sizes());
      sigma = mu.exp();
      return;
    }
    mu = eng.mu();
    sigma = eng.sigma();
  });
  return {mu, sigma};
}

at::Tensor vae_decode(const at::Tensor& z, const c10::optional<at::Tensor>& y, at::TensorList params,
                      FASTVAE_ARCH_PARAMS) {
  NoAutograd guard;
  auto in = check_inputs(z, y, nullptr, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), false);
  at::Tensor logits;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_decode", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.decode(in.params, in.x, label_ptr(in.y), in.x.size(0));
    logits = eng.logits();
  });
  return logits;
}

at::Tensor vae_iwae(const at::Tensor& x, const c10::optional<at::Tensor>& y, const at::Tensor& eps,
                    at::TensorList params, FASTVAE_ARCH_PARAMS) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_iwae", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.forward(in.params, in.x, label_ptr(in.y), in.eps, Estimator::MonteCarlo, nullptr);
    auto lw = eng.log_weights(in.eps);  // [K, B]
    out = at::logsumexp(lw, {0}) - std::log(static_cast<double>(eps.size(0)));
  });
  return out;
}

// IWAE bound with a hand-written gradient: value as vae_iwae, the estimator only changes the backward.
at::Tensor vae_iwae_bound(const at::Tensor& x, const c10::optional<at::Tensor>& y, const at::Tensor& eps,
                          at::TensorList params, FASTVAE_ARCH_PARAMS, c10::string_view estimator) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  parse_iwae_estimator(estimator);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_iwae_bound", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    out = eng.iwae_forward(in.params, in.x, label_ptr(in.y), in.eps);
  });
  return out;
}

std::vector<at::Tensor> vae_iwae_bound_backward(const at::Tensor& g, const at::Tensor& x,
                                                const c10::optional<at::Tensor>& y, const at::Tensor& eps,
                                                at::TensorList params, FASTVAE_ARCH_PARAMS,
                                                c10::string_view estimator) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  auto est = parse_iwae_estimator(estimator);
  const int64_t B = x.size(0);
  TORCH_CHECK(g.dim() == 1 && g.size(0) == B, "fastvae: per-image weights must have shape [", B, "], got ",
              g.sizes());
  TORCH_CHECK(g.device().is_cpu(), "fastvae: per-image weights must be on the CPU, got ", g.device());
  TORCH_CHECK(g.is_floating_point(), "fastvae: per-image weights must be floating point, got ", g.scalar_type());
  auto u = g.to(in.x.scalar_type()).contiguous();
  std::vector<at::Tensor> grads;
  for (const auto& p : in.params) grads.push_back(at::empty_like(p));
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_iwae_bound_backward", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.iwae_forward(in.params, in.x, label_ptr(in.y), in.eps);
    eng.iwae_backward(in.params, in.x, label_ptr(in.y), in.eps, est, u.data_ptr<scalar_t>(), grads);
  });
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("vae_elbo", &vae_elbo);
  m.impl("vae_elbo_backward", &vae_elbo_backward);
  m.impl("vae_encode", &vae_encode);
  m.impl("vae_decode", &vae_decode);
  m.impl("vae_iwae", &vae_iwae);
  m.impl("vae_iwae_bound", &vae_iwae_bound);
  m.impl("vae_iwae_bound_backward", &vae_iwae_bound_backward);
}

}  // namespace cpu
}  // namespace fastvae
