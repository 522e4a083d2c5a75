// Finiteness of an op's results and the words of its error (issue 20 item 6: no silent NaN). An op checks its
// outputs (a [B] vector: one cheap pass) after computing them; only when one is not finite although the inputs
// were does it look, on that rare path, for the input or parameter that left the float range, and raise a
// ValueError (TORCH_CHECK_VALUE) naming it.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "vae_spec.h"

namespace fastvae {

// Every entry of t is finite (no NaN, no +-inf). Dense CPU float32 / float64 tensors: one vectorized pass, no
// temporaries (cpu::all_finite); others: an ATen reduction (one host sync on an accelerator).
bool is_finite(const at::Tensor& t);
// The largest |entry| of a floating tensor over its finite entries (0 for an empty one), and the smallest and
// largest entry; for messages only (the rare path).
double max_abs(const at::Tensor& t);
double min_value(const at::Tensor& t);
double max_value(const at::Tensor& t);
// "3.4e+38": a number in messages (three significant digits).
std::string num(double v);
// "float32" / "float64" / ... as Python spells the dtype.
std::string dtype_name(at::ScalarType t);
// The largest finite value of the dtype, as a double.
double dtype_max(at::ScalarType t);

// Why log p(x | out) of a likelihood is not finite although x and out [..., W] (W = D, or 2D with a predicted
// scale) are, as the end of a message: x or the Gaussian means so large that (x - mean)^2 overflows, a
// log-variance (predicted, or the learned log_sigma if given) so small that 1 / variance overflows, a fixed scale
// whose 1 / sigma^2 overflows, else the magnitudes of x and out. Rare path (ATen reductions).
std::string likelihood_overflow(Likelihood lik, const likelihoods::Params& p, const at::Tensor& x,
                                const at::Tensor& out, const at::Tensor* log_sigma = nullptr);

}  // namespace fastvae
