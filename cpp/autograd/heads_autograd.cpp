// Autograd of the objective heads (schemas in cpp/ops.cpp, formulas in docs/heads.md), in C++ as torchvision's
// csrc/ops/autograd: the heads are called once per training step on tensors of a few hundred kilobytes, where a
// Python autograd.Function's bookkeeping costs as much as the kernels. The public ops (elbo_terms, iwae_bound and
// their _generic_ twins) run their private forward op, which also writes d objective / d decoder_out in the
// same pass when decoder_out needs a gradient; the backward op then only scales it by the upstream gradient.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>

namespace fastvae {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ElboForward = std::tuple<Tensor, Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                               const Tensor&, const Tensor&, std::string, double,
                                                               std::string, std::string, bool);
using IwaeForward = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                       const Tensor&, std::string, double, std::string, std::string,
                                                       bool);
using Backward = std::tuple<Tensor, Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                            const Tensor&, const Tensor&, const Tensor&,
                                                            const Tensor&, bool, std::string, double, std::string,
                                                            std::string);

// The private ops of the fused (Generic = false) or device-generic (Generic = true) path.
template <bool Generic, typename Sig>
c10::TypedOperatorHandle<Sig> private_op(const char* name) {
  const std::string full = std::string("fastvae::") + (Generic ? "_generic_" : "_") + name;
  return c10::Dispatcher::singleton().findSchemaOrThrow(full.c_str(), "").template typed<Sig>();
}

template <bool Generic>
struct Ops {
  c10::TypedOperatorHandle<ElboForward> elbo_forward = private_op<Generic, ElboForward>("elbo_terms_forward");
  c10::TypedOperatorHandle<Backward> elbo_backward = private_op<Generic, Backward>("elbo_terms_backward");
  c10::TypedOperatorHandle<IwaeForward> iwae_forward = private_op<Generic, IwaeForward>("iwae_bound_forward");
  c10::TypedOperatorHandle<Backward> iwae_backward = private_op<Generic, Backward>("iwae_bound_backward");
};

template <bool Generic>
const Ops<Generic>& ops() {
  static const Ops<Generic> handles;  // looked up once, after every schema is registered
  return handles;
}

void save_names(AutogradContext* ctx, const std::string& likelihood, double gaussian_sigma,
                const std::string& gaussian_scale, const std::string& estimator) {
  ctx->saved_data["likelihood"] = likelihood;
  ctx->saved_data["gaussian_sigma"] = gaussian_sigma;
  ctx->saved_data["gaussian_scale"] = gaussian_scale;
  ctx->saved_data["estimator"] = estimator;
}

// A private backward op called with its leading arguments and the names save_names kept. In a plain backward
// (grad mode off) the call skips the Autograd dispatch key, whose kernel boxes every argument; under
// create_graph it keeps it: that kernel (cpp/autograd_guards.cpp) makes differentiating the gradients raise
// instead of giving zeros.
template <typename Op, typename... Args>
auto call_with_names(const Op& op, AutogradContext* ctx, const Args&... args) {
  std::optional<at::AutoDispatchBelowADInplaceOrView> below_autograd;
  if (!c10::GradMode::is_enabled()) below_autograd.emplace();
  auto& d = ctx->saved_data;
  return op.call(args..., d["likelihood"].toStringRef(), d["gaussian_sigma"].toDouble(),
                 d["gaussian_scale"].toStringRef(), d["estimator"].toStringRef());
}

void no_x_grad(AutogradContext* ctx, const char* op) {
  TORCH_CHECK(!ctx->needs_input_grad(0), "fastvae: ", op, ": no gradient with respect to x (the data); detach x");
}

// The forward's d objective / d decoder_out, kept in saved_data rather than save_for_backward: the first backward
// scales it in place by the upstream gradient and hands the buffer on as decoder_out's gradient (no new
// allocation: at these sizes the page faults of a fresh buffer cost as much as the arithmetic) and drops it, so
// that autograd can move it into .grad. A second backward (retain_graph) finds it gone and recomputes.
void keep_decoder_grad(AutogradContext* ctx, bool decoder_grad, const Tensor& dg) {
  if (decoder_grad) ctx->saved_data["decoder_grad"] = dg;
}

// Under create_graph (grad mode on in the backward) the buffer is dropped instead: a gradient scaled from it
// would carry no autograd history to the inputs, so differentiating it again would silently give zeros. The
// backward op then writes d_decoder_out, and its outputs refuse double backward.
Tensor take_decoder_grad(AutogradContext* ctx, const Tensor& scale) {
  auto it = ctx->saved_data.find("decoder_grad");
  if (it == ctx->saved_data.end()) return Tensor();
  Tensor dg = it->second.toTensor();
  ctx->saved_data.erase(it);
  if (c10::GradMode::is_enabled()) return Tensor();
  return dg.mul_(scale.view({1, -1, 1}));
}

// Trailing inputs of both functions: likelihood, gaussian_sigma, gaussian_scale, estimator, decoder_grad.
variable_list with_no_grads_for_names(Tensor d_out, Tensor d_z, Tensor d_mu, Tensor d_sigma) {
  return {Tensor(), d_out, d_z, d_mu, d_sigma, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
}

// a + b where either may be undefined (an output without gradient); zeros shaped like `like`'s rows if both are.
Tensor sum_defined(const Tensor& a, const Tensor& b, const Tensor& like) {
  if (a.defined() && b.defined()) return a + b;
  if (a.defined()) return a;
  if (b.defined()) return b;
  return at::zeros_symint({like.sym_size(0)}, like.options());
}

template <bool Generic>
struct ElboTermsFunction : public torch::autograd::Function<ElboTermsFunction<Generic>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& out, const Tensor& z,
                               const Tensor& mu, const Tensor& sigma, const std::string& likelihood,
                               double gaussian_sigma, const std::string& gaussian_scale, const std::string& estimator,
                               bool decoder_grad) {
    ctx->set_materialize_grads(false);
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [elbo, rec, kl, dg] = ops<Generic>().elbo_forward.call(x, out, z, mu, sigma, likelihood, gaussian_sigma,
                                                                gaussian_scale, estimator, decoder_grad);
    ctx->save_for_backward({x, out, z, mu, sigma});
    keep_decoder_grad(ctx, decoder_grad, dg);
    save_names(ctx, likelihood, gaussian_sigma, gaussian_scale, estimator);
    return {elbo, rec, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    no_x_grad(ctx, "elbo_terms");
    const auto s = ctx->get_saved_variables();
    // elbo = rec - kl: an upstream gradient on elbo reaches rec with +1 and kl with -1. Outputs that took no
    // part in the loss have undefined gradients (not materialized: the usual case uses elbo alone).
    const Tensor g_rec = sum_defined(g[0], g[1], s[0]);
    const Tensor g_kl = sum_defined(g[2], g[0].defined() ? -g[0] : Tensor(), s[0]);
    Tensor d_saved = take_decoder_grad(ctx, g_rec);
    auto [d_out, d_z, d_mu, d_sigma] = call_with_names(ops<Generic>().elbo_backward, ctx, g_rec, g_kl, s[0], s[1],
                                                       s[2], s[3], s[4], !d_saved.defined());
    return with_no_grads_for_names(d_saved.defined() ? d_saved : d_out, d_z, d_mu, d_sigma);
  }
};

template <bool Generic>
struct IwaeBoundFunction : public torch::autograd::Function<IwaeBoundFunction<Generic>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& out, const Tensor& z,
                               const Tensor& mu, const Tensor& sigma, const std::string& likelihood,
                               double gaussian_sigma, const std::string& gaussian_scale, const std::string& estimator,
                               bool decoder_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [bound, weights, dg] = ops<Generic>().iwae_forward.call(x, out, z, mu, sigma, likelihood, gaussian_sigma,
                                                                 gaussian_scale, estimator, decoder_grad);
    ctx->save_for_backward({x, out, z, mu, sigma, weights});  // the weights: the backward does not recompute
    keep_decoder_grad(ctx, decoder_grad, dg);
    save_names(ctx, likelihood, gaussian_sigma, gaussian_scale, estimator);
    ctx->mark_non_differentiable({weights});
    return {bound, weights};
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    no_x_grad(ctx, "iwae_bound");
    const auto s = ctx->get_saved_variables();
    Tensor d_saved = take_decoder_grad(ctx, g[0]);
    auto [d_out, d_z, d_mu, d_sigma] = call_with_names(ops<Generic>().iwae_backward, ctx, g[0], s[5], s[0], s[1],
                                                       s[2], s[3], s[4], !d_saved.defined());
    return with_no_grads_for_names(d_saved.defined() ? d_saved : d_out, d_z, d_mu, d_sigma);
  }
};

// The forward writes decoder_out's gradient only when a backward will use it.
bool wants_decoder_grad(const Tensor& out) { return c10::GradMode::is_enabled() && out.requires_grad(); }

template <bool Generic>
std::tuple<Tensor, Tensor, Tensor> elbo_terms_autograd(const Tensor& x, const Tensor& out, const Tensor& z,
                                                       const Tensor& mu, const Tensor& sigma, std::string likelihood,
                                                       double gaussian_sigma, std::string gaussian_scale,
                                                       std::string estimator) {
  auto r = ElboTermsFunction<Generic>::apply(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale,
                                             estimator, wants_decoder_grad(out));
  return {r[0], r[1], r[2]};
}

template <bool Generic>
std::tuple<Tensor, Tensor> iwae_bound_autograd(const Tensor& x, const Tensor& out, const Tensor& z, const Tensor& mu,
                                               const Tensor& sigma, std::string likelihood, double gaussian_sigma,
                                               std::string gaussian_scale, std::string estimator) {
  auto r = IwaeBoundFunction<Generic>::apply(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale,
                                             estimator, wants_decoder_grad(out));
  return {r[0], r[1]};
}

// Below autograd (inference mode, meta tensors, tracing): the private forward without the gradient.
template <bool Generic>
std::tuple<Tensor, Tensor, Tensor> elbo_terms_value(const Tensor& x, const Tensor& out, const Tensor& z,
                                                    const Tensor& mu, const Tensor& sigma, std::string likelihood,
                                                    double gaussian_sigma, std::string gaussian_scale,
                                                    std::string estimator) {
  auto r = ops<Generic>().elbo_forward.call(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale,
                                            estimator, false);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

template <bool Generic>
std::tuple<Tensor, Tensor> iwae_bound_value(const Tensor& x, const Tensor& out, const Tensor& z, const Tensor& mu,
                                            const Tensor& sigma, std::string likelihood, double gaussian_sigma,
                                            std::string gaussian_scale, std::string estimator) {
  auto r = ops<Generic>().iwae_forward.call(x, out, z, mu, sigma, likelihood, gaussian_sigma, gaussian_scale,
                                            estimator, false);
  return {std::get<0>(r), std::get<1>(r)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, Autograd, m) {
  m.impl("elbo_terms", &elbo_terms_autograd<false>);
  m.impl("iwae_bound", &iwae_bound_autograd<false>);
  m.impl("_generic_elbo_terms", &elbo_terms_autograd<true>);
  m.impl("_generic_iwae_bound", &iwae_bound_autograd<true>);
}

TORCH_LIBRARY_IMPL(fastvae, CompositeExplicitAutograd, m) {
  m.impl("elbo_terms", &elbo_terms_value<false>);
  m.impl("iwae_bound", &iwae_bound_value<false>);
  m.impl("_generic_elbo_terms", &elbo_terms_value<true>);
  m.impl("_generic_iwae_bound", &iwae_bound_value<true>);
}

}  // namespace fastvae
