// Autograd kernels for the ops that have no derivative formula. Without one, torch's autograd fallback
// lets their outputs claim to require grad and backward silently yields None. These kernels raise a
// clear error instead when grad mode is on and an input requires grad, and otherwise run the op below
// autograd, so inference (VAE.encode/decode, log_likelihood, torch.no_grad) keeps working.
// vae_elbo, gumbel_softmax_fwd, one_hot_argmax and exponential_fwd have formulas (python/fastvae/_ops.py,
// samplers.py), the objective heads theirs in cpp/autograd/heads_autograd.cpp; none is listed here.
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/GradMode.h>
#include <torch/library.h>

namespace fastvae {
namespace {

bool any_requires_grad(const torch::jit::Stack& stack, size_t n_args) {
  for (const auto& v : torch::jit::last(stack, n_args)) {
    if (v.isTensor() && v.toTensor().defined() && v.toTensor().requires_grad()) return true;
    if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorList().vec())
        if (t.defined() && t.requires_grad()) return true;
    }
  }
  return false;
}

void not_differentiable(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  const size_t n_args = op.schema().arguments().size();
  TORCH_CHECK(!(c10::GradMode::is_enabled() && any_requires_grad(*stack, n_args)), "fastvae: ",
              op.schema().name(), " is not differentiable; use fastvae.elbo for gradients (or call it "
              "under torch.no_grad() / on detached tensors)");
  at::AutoDispatchBelowADInplaceOrView guard;
  op.redispatchBoxed(ks & c10::after_ADInplaceOrView_keyset, stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, Autograd, m) {
  for (const char* name : {"vae_encode", "vae_decode", "vae_iwae", "vae_elbo_backward",
                           "vae_iwae_bound_backward", "adam_step",
                           "gumbel_softmax_bwd", "exponential_bwd", "cavi_estep", "cavi_responsibilities",
                           "cavi_update_mu", "cavi_update_lambda", "cavi_elbo", "_elbo_terms_forward",
                           "_iwae_bound_forward", "_generic_elbo_terms_forward", "_generic_iwae_bound_forward"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&not_differentiable>());
  }
}

}  // namespace fastvae
