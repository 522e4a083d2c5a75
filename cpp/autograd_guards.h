// How each fastvae op is served at the Autograd dispatch key, declared with its schema in cpp/ops.cpp
// (fastvae::def), so that the autograd policy of an op is written once, beside its schema.
#pragma once
#include <torch/library.h>

#include <string>

namespace fastvae {

enum class Grad {
  // A derivative formula registered elsewhere: python/fastvae/_ops.py or samplers.py
  // (torch.library.register_autograd), or cpp/autograd/ (the objective heads).
  kFormula,
  // No derivative: an error when called with inputs that require grad (cpp/autograd_guards.cpp).
  kNone,
  // A composite of ATen operations (CompositeImplicitAutograd): autograd differentiates through them.
  kComposite,
  // A private backward op (name ending in "_backward"): runs, but its outputs' own backward raises,
  // so a first-order gradient under create_graph=True works and a second-order one is refused.
  kBackward,
};

// m.def(schema) plus the Autograd kernel of `grad`. An op whose name ends in "_backward" must be kBackward
// and no other op may be, so a new backward op cannot be registered without the double-backward guard.
void def(torch::Library& m, const std::string& schema, Grad grad);

}  // namespace fastvae
