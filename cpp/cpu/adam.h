#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace fastvae {
namespace cpu {
// In-place Adam update of every tensor in `params` (torch.optim.Adam semantics); validates inputs.
void adam_update(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                 at::TensorList exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                 double eps, double weight_decay);
// True if no entry of the dense float32/float64 tensors is NaN or +-inf (one vectorized pass, threaded).
bool all_finite(at::TensorList tensors);

// What the checked Adam step found: every gradient and result finite, a non-finite gradient, or a non-finite
// result from finite gradients (an overflowing learning rate or weight decay, 0/0 with eps = 0).
enum class AdamVerdict : int { kFinite = 0, kGradient = 1, kResult = 2 };
// The Adam step of adam_update from (params, exp_avg, exp_avg_sq) into (out_params, out_exp_avg, out_exp_avg_sq),
// the same arithmetic, leaving the inputs as they were, so that a caller keeping both (the C++ trainer's two
// buffers) can drop a step that is not finite. Tensors with trainable[k] false are left out (a frozen parameter).
// The finiteness of the gradients and the results is checked in the same pass, chunk by chunk while they are in
// cache. Inputs are the trainer's own buffers, asserted rather than validated.
AdamVerdict adam_update_into(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                             at::TensorList exp_avg_sq, at::TensorList out_params, at::TensorList out_exp_avg,
                             at::TensorList out_exp_avg_sq, const std::vector<bool>& trainable, int64_t step,
                             double lr, double beta1, double beta2, double eps, double weight_decay);
}  // namespace cpu
}  // namespace fastvae
