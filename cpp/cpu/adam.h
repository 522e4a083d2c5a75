#pragma once
#include <ATen/ATen.h>

namespace fastvae {
namespace cpu {
// In-place Adam update of every tensor in `params` (torch.optim.Adam semantics); validates inputs.
void adam_update(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                 at::TensorList exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
                 double eps, double weight_decay);
// True if no entry of the dense float32/float64 tensors is NaN or +-inf (one vectorized pass, threaded).
bool all_finite(at::TensorList tensors);
}  // namespace cpu
}  // namespace fastvae
