// CPU implementations of the VAE ops declared in cpp/ops.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

#include "cpu/vae_engine.h"
#include "finite.h"
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
    TORCH_CHECK(eps->dim() == 3 && eps->size(1) == x.size(0) && eps->size(2) == s.noise_dim(),
                "fastvae: eps must have shape [n_samples, ", x.size(0), ", ", s.noise_dim(), "], got ",
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

}  // namespace

// One pass over an op's result (a [B] vector, or the encoder's [B, Z] / the decoder's [N, D] outputs): if it is
// not finite although the inputs are (check_inputs refused NaN and inf before), a ValueError saying where the
// pass left the float range (VaeEngine::overflow_cause, the rare path). `inputs` names what was checked.
template <typename T>
void check_result(const char* op, const char* what, const VaeEngine<T>& eng, at::TensorList params,
                  const at::Tensor& x, const at::Tensor& result, const char* inputs, double tau,
                  typename VaeEngine<T>::Pass pass) {
  if (is_finite(result)) return;
  TORCH_CHECK_VALUE(false, "fastvae: ", op, ": ", what, " is not finite although ", inputs, " are: ",
                    eng.overflow_cause(params, x, tau, pass));
}

// After a backward: the gradients its passes already wrote in full (the biases', the learned log sigma's; a
// layer's bias gradient is the column sum of the pre-activation gradient its weight gradient is made of) are
// finite, or, if the per-image weights are finite too, a ValueError naming the parameter.
template <typename T>
void check_grads(const char* op, const VaeEngine<T>& eng, at::TensorList params, at::TensorList grads,
                 std::initializer_list<at::Tensor> weights, const char* inputs) {
  const int64_t bad = eng.first_nonfinite_small_grad(grads);
  if (bad < 0) return;
  for (const auto& w : weights)
    if (!is_finite(w)) return;  // non-finite per-image weights: the caller's garbage, passed on
  double largest = 0;
  for (const auto& p : params) largest = std::max(largest, max_abs(p));
  TORCH_CHECK_VALUE(false, "fastvae: ", op, ": the gradient of ", eng.param_name(bad), " is not finite although ",
                    inputs, " are: the backward pass overflows ", dtype_name(params[0].scalar_type()),
                    " (largest |", eng.param_name(bad), "| ", num(max_abs(params[bad])), ", largest |parameter| ",
                    num(largest), ")");
}

template void check_result<float>(const char*, const char*, const VaeEngine<float>&, at::TensorList,
                                  const at::Tensor&, const at::Tensor&, const char*, double, VaeEngine<float>::Pass);
template void check_result<double>(const char*, const char*, const VaeEngine<double>&, at::TensorList,
                                   const at::Tensor&, const at::Tensor&, const char*, double,
                                   VaeEngine<double>::Pass);
template void check_grads<float>(const char*, const VaeEngine<float>&, at::TensorList, at::TensorList,
                                 std::initializer_list<at::Tensor>, const char*);
template void check_grads<double>(const char*, const VaeEngine<double>&, at::TensorList, at::TensorList,
                                  std::initializer_list<at::Tensor>, const char*);

namespace {

constexpr const char* kInputs = "x, eps and the parameters";
constexpr const char* kBackwardInputs = "x, eps, the parameters and the per-image weights";

std::tuple<at::Tensor, at::Tensor, at::Tensor> vae_elbo(const at::Tensor& x,
                                                        const c10::optional<at::Tensor>& y,
                                                        const at::Tensor& eps, at::TensorList params,
                                                        FASTVAE_ARCH_PARAMS, c10::string_view estimator) {
  NoAutograd guard;
  const char* op = "vae_elbo";
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  auto est = parse_estimator(estimator);
  at::Tensor rec, kl, elbo;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_elbo", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    eng.forward(in.params, in.x, label_ptr(in.y), in.eps, est, nullptr);
    rec = eng.rec();
    kl = eng.kl();
    elbo = rec - kl;
    check_result(op, "the ELBO", eng, in.params, in.x, elbo, kInputs, 0);
  });
  return {elbo, rec, kl};
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
    const char* op = "vae_elbo_backward";
    VaeEngine<scalar_t> eng(in.spec);
    eng.forward(in.params, in.x, label_ptr(in.y), in.eps, est, wr.data_ptr<scalar_t>());
    check_result(op, "the ELBO", eng, in.params, in.x, eng.rec(), kInputs, 0);
    check_result(op, "the ELBO", eng, in.params, in.x, eng.kl(), kInputs, 0);
    eng.backward(in.params, in.x, label_ptr(in.y), in.eps, est, wk.data_ptr<scalar_t>(), grads);
    check_grads(op, eng, in.params, grads, {wr, wk}, kBackwardInputs);
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
      check_result("vae_encode", "the encoder's output", eng, in.params, in.x, h, "x and the parameters", 0,
                   VaeEngine<scalar_t>::Pass::Encode);
      mu = h.view({h.size(0), in.spec.latent_dim, in.spec.categories}).log_softmax(-1).reshape(h.sizes());
      sigma = mu.exp();
      return;
    }
    mu = eng.mu();
    sigma = eng.sigma();
    using Pass = typename VaeEngine<scalar_t>::Pass;
    check_result("vae_encode", "the posterior mean", eng, in.params, in.x, mu, "x and the parameters", 0,
                 Pass::Encode);
    check_result("vae_encode", "the posterior scale", eng, in.params, in.x, sigma, "x and the parameters", 0,
                 Pass::Encode);
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
    check_result("vae_decode", "the decoder's output", eng, in.params, in.x, logits, "z and the parameters", 0,
                 VaeEngine<scalar_t>::Pass::Decode);
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
    out = eng.iwae_forward(in.params, in.x, label_ptr(in.y), in.eps);  // the bound the training objective uses
    check_result("vae_iwae", "the IWAE bound", eng, in.params, in.x, out, kInputs, 0);
  });
  return out;
}

// An importance-weighted bound with a hand-written gradient: IWAE (value as vae_iwae), MIWAE, CIWAE or PIWAE by
// `objective`; the estimator only changes the backward.
at::Tensor vae_iwae_bound(const at::Tensor& x, const c10::optional<at::Tensor>& y, const at::Tensor& eps,
                          at::TensorList params, FASTVAE_ARCH_PARAMS, c10::string_view estimator,
                          c10::string_view objective, int64_t groups, double beta) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  parse_iwae_estimator(estimator);
  const IwBound ob = check_iw_bound("vae_iwae_bound", objective, groups, beta, in.eps.size(0));
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "vae_iwae_bound", [&] {
    VaeEngine<scalar_t> eng(in.spec);
    out = eng.iwae_forward(in.params, in.x, label_ptr(in.y), in.eps, ob);
    check_result("vae_iwae_bound", "the IWAE bound", eng, in.params, in.x, out, kInputs, 0);
  });
  return out;
}

std::vector<at::Tensor> vae_iwae_bound_backward(const at::Tensor& g, const at::Tensor& x,
                                                const c10::optional<at::Tensor>& y, const at::Tensor& eps,
                                                at::TensorList params, FASTVAE_ARCH_PARAMS,
                                                c10::string_view estimator, c10::string_view objective,
                                                int64_t groups, double beta) {
  NoAutograd guard;
  auto in = check_inputs(x, y, &eps, params, VaeSpec::from_args(FASTVAE_ARCH_ARGS), true);
  auto est = parse_iwae_estimator(estimator);
  const IwBound ob = check_iw_bound("vae_iwae_bound_backward", objective, groups, beta, in.eps.size(0));
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
    const char* op = "vae_iwae_bound_backward";
    auto bound = eng.iwae_forward(in.params, in.x, label_ptr(in.y), in.eps, ob);
    check_result(op, "the IWAE bound", eng, in.params, in.x, bound, kInputs, 0);
    eng.iwae_backward(in.params, in.x, label_ptr(in.y), in.eps, est, u.data_ptr<scalar_t>(), grads, ob);
    check_grads(op, eng, in.params, grads, {u}, kBackwardInputs);
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
