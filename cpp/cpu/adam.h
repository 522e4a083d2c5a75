#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace fastvae {
namespace cpu {
// The constants of one Adam step in the parameters' type, and the arithmetic of one element: every Adam kernel
// (adam_kernel.cpp, and through adam_range_in_place the trainer's fused step) calls adam_element, so the in-place,
// out-of-place, fused and op paths give the same bits.
template <typename T>
struct AdamConstants {
  T b2, omb1, omb2, step_size, inv_bc2s, e, w;
  // Step `step` (from 1): the bias corrections 1 - beta1^t and sqrt(1 - beta2^t) in double.
  AdamConstants(int64_t step, double lr, double beta1, double beta2, double eps, double wd)
      : AdamConstants(lr, beta1, beta2, eps, wd, 1 - std::pow(beta1, (double)step),
                      std::sqrt(1 - std::pow(beta2, (double)step))) {}

 private:
  AdamConstants(double lr, double beta1, double beta2, double eps, double wd, double bc1, double bc2_sqrt)
      // One division per element: dividing by sqrt(1 - beta2^t) becomes a multiplication.
      : b2(T(beta2)), omb1(T(1 - beta1)), omb2(T(1 - beta2)), step_size(T(lr / bc1)), inv_bc2s(T(1.0 / bc2_sqrt)),
        e(T(eps)), w(T(wd)) {}
};

template <typename T>
inline void adam_element(const AdamConstants<T>& c, T p, T g, T m, T v, T& po, T& mo, T& vo) {
  if (c.w != T(0)) g += c.w * p;
  m += (g - m) * c.omb1;  // lerp, as torch does
  v = v * c.b2 + c.omb2 * g * g;
  const T denom = std::sqrt(v) * c.inv_bc2s + c.e;
  po = p - c.step_size * (m / denom);
  mo = m;
  vo = v;
}

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

// The trainer's in-place step (float32 only). Adam runs in place when it provably cannot produce a NaN or inf, so
// that a dropped step never needs the old state back; otherwise the trainer falls back to adam_update_into.
// The bounds are float32 bit patterns, which order like the magnitudes they encode: max |p| and max |m| with the
// sign cleared, and the largest second moment with its sign, so that a negative one (or -0) reads as unsafe.
// Patterns >= 0x7f800000 are NaN or inf.
struct AdamStateBounds {
  uint32_t p = 0, m = 0, v = 0;
};
// max |x| over the trainable tensors, as bits (a non-finite entry gives >= 0x7f800000): the gradient check.
uint32_t max_magnitude_bits(at::TensorList tensors, const std::vector<bool>& trainable);
// The same over n floats from x, on this thread (one vectorized pass).
uint32_t max_magnitude_bits(const float* __restrict__ x, int64_t n);
AdamStateBounds adam_state_bounds(at::TensorList params, at::TensorList exp_avg, at::TensorList exp_avg_sq,
                                  const std::vector<bool>& trainable);
// True if, from any state within `s` and gradients with max |g| of bits `grad_bits`, every value one Adam step
// computes stays finite (bounds with rounding margins, in double; eps must be a normal float32).
bool adam_step_stays_finite(const AdamStateBounds& s, uint32_t grad_bits, int64_t step, double lr, double beta1,
                            double beta2, double eps, double weight_decay);
// Bounds on the state after an in-place step from any state within `s` with gradients within `grad_bits`, for a step
// that adam_step_stays_finite accepted: computed from the bounds alone, so that the step need not track the maxima
// of what it writes (about 4% of a batch-20 update of the IWAE paper's model). Each bound covers the float rounding
// of the step: the first moment is a convex combination of the old one and the decayed gradient, the second moment
// of the old one and the squared gradient, and |m / (sqrt(v) / bc2 + eps)| <= |m| / eps. They only grow from step
// to step; the trainer reads the state again (adam_state_bounds) when they no longer prove a step finite.
AdamStateBounds adam_step_bounds(const AdamStateBounds& s, uint32_t grad_bits, int64_t step, double lr, double beta1,
                                 double beta2, double eps, double weight_decay);
// adam_update_in_place on one range of a float32 tensor and its gradient and state (elements [0, n) of each):
// the trainer's fused step (training/trainer.cpp), which runs it on each block of a weight gradient as the engine
// finishes it.
void adam_range_in_place(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                         float* __restrict__ v, int64_t n, const AdamConstants<float>& c);
// adam_update on the trainable tensors, in place, the arithmetic of adam_update_into. Only for a step
// adam_step_stays_finite accepted.
void adam_update_in_place(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                          at::TensorList exp_avg_sq, const std::vector<bool>& trainable, int64_t step, double lr,
                          double beta1, double beta2, double eps, double weight_decay);
}  // namespace cpu
}  // namespace fastvae
