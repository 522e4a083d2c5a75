// The Autograd kernels that fastvae::def attaches from the schema table in cpp/ops.cpp (see autograd_guards.h).
//
// Ops without a derivative formula: without a kernel, torch's autograd fallback lets their outputs claim to
// require grad and backward silently yields None. not_differentiable raises a clear error instead when grad
// mode is on and an input requires grad, and otherwise runs the op below autograd, so inference
// (VAE.encode/decode, log_likelihood, torch.no_grad) keeps working.
//
// Private backward ops: the hand-written kernels give first-order gradients only. As torchvision's
// *BackwardFunction, no_double_backward runs the op and, when grad mode is on (a backward under
// create_graph=True) and an input requires grad, gives the outputs an autograd node that raises when reached:
// the first-order gradient is still returned, differentiating it again is refused (torch's own
// autogradNotImplementedFallback does the same with a generic message).
#include "autograd_guards.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/variable.h>

#include <vector>

namespace fastvae {
namespace {

// The tensor arguments (entries of Tensor[] lists and present optionals included) that require grad.
std::vector<at::Tensor> inputs_requiring_grad(const torch::jit::Stack& stack, size_t n_args) {
  std::vector<at::Tensor> out;
  auto add = [&](const at::Tensor& t) {
    if (t.defined() && t.requires_grad()) out.push_back(t);
  };
  for (const auto& v : torch::jit::last(stack, n_args)) {
    if (v.isTensor()) add(v.toTensor());
    if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorList().vec()) add(t);
    }
  }
  return out;
}

void run_below_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  at::AutoDispatchBelowADInplaceOrView guard;
  op.redispatchBoxed(ks & c10::after_ADInplaceOrView_keyset, stack);
}

void not_differentiable(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  const size_t n_args = op.schema().arguments().size();
  TORCH_CHECK(!(c10::GradMode::is_enabled() && !inputs_requiring_grad(*stack, n_args).empty()), "fastvae: ",
              op.schema().name(), " is not differentiable; use fastvae.elbo for gradients (or call it "
              "under torch.no_grad() / on detached tensors)");
  run_below_autograd(op, ks, stack);
}

// Error (torch/csrc/autograd/functions/basic_ops.h) raises its message when the engine reaches it; the
// subclass only gives the node a name that says what it stands for in a grad_fn repr.
struct DoubleBackwardError : public torch::autograd::Error {
  using Error::Error;
  std::string name() const override { return "fastvae::DoubleBackwardError"; }
};

void no_double_backward(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const size_t n_args = schema.arguments().size();
  const std::vector<at::Tensor> grad_inputs =
      c10::GradMode::is_enabled() ? inputs_requiring_grad(*stack, n_args) : std::vector<at::Tensor>{};
  run_below_autograd(op, ks, stack);
  if (grad_inputs.empty()) return;  // plain backward (grad mode off) or constants only: nothing to record
  // Edges to the inputs, so that torch.autograd.grad(outputs, inputs) reaches the node and raises rather than
  // reporting the inputs as unused.
  torch::autograd::edge_list edges;
  for (const at::Tensor& t : grad_inputs) edges.push_back(torch::autograd::impl::gradient_edge(t));
  auto node = c10::make_intrusive<DoubleBackwardError>(
      schema.name() + ": double backward is not supported (fastvae's hand-written backward kernels give "
                      "first-order gradients only)",
      std::move(edges));
  auto attach = [&](at::Tensor t) {
    if (!t.defined() || !torch::autograd::isDifferentiableType(t.scalar_type())) return;
    for (const at::Tensor& in : grad_inputs)
      TORCH_INTERNAL_ASSERT(!t.is_same(in), schema.name(), " returned one of its inputs");
    torch::autograd::create_gradient_edge(t, node);
  };
  for (const auto& v : torch::jit::last(*stack, schema.returns().size())) {
    if (v.isTensor()) attach(v.toTensor());
    if (v.isTensorList()) {
      for (const at::Tensor& t : v.toTensorList().vec()) attach(t);
    }
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void def(torch::Library& m, const std::string& schema, Grad grad) {
  m.def(schema.c_str());
  const std::string name = schema.substr(0, schema.find('('));
  TORCH_CHECK(ends_with(name, "_backward") == (grad == Grad::kBackward), "fastvae::", name, ": an op is "
              "registered with Grad::kBackward if and only if its name ends in \"_backward\"");
  if (grad == Grad::kBackward) {
    m.impl(name.c_str(), torch::dispatch(c10::DispatchKey::Autograd,
                                         torch::CppFunction::makeFromBoxedFunction<&no_double_backward>()));
  } else if (grad == Grad::kNone) {
    m.impl(name.c_str(), torch::dispatch(c10::DispatchKey::Autograd,
                                         torch::CppFunction::makeFromBoxedFunction<&not_differentiable>()));
  }
}

}  // namespace fastvae
