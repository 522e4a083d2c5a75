// Fused Adam step (Kingma & Ba 2015) with the exact update order of torch.optim.Adam
// (single-tensor path, amsgrad=False, maximize=False): one pass per element, all tensors of the
// list treated as one index range so that small and large tensors share the threads evenly.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/adam.h"
#include "cpu/flush_denormals.h"

namespace fastvae {
namespace cpu {
namespace {

template <typename T>
void adam_range(T* p, const T* g, T* m, T* v, int64_t n, double lr, double beta1, double beta2,
                double eps, double wd, double bc1, double bc2_sqrt) {
  const T b2 = T(beta2), omb1 = T(1 - beta1), omb2 = T(1 - beta2);
  // One division per element: dividing by sqrt(1 - beta2^t) becomes a multiplication (Adam is bound by
  // the divider's throughput, not memory, at these sizes).
  const T step_size = T(lr / bc1), inv_bc2s = T(1.0 / bc2_sqrt), e = T(eps), w = T(wd);
  for (int64_t i = 0; i < n; ++i) {
    T gi = g[i];
    if (w != T(0)) gi += w * p[i];
    m[i] += (gi - m[i]) * omb1;  // lerp, as torch does
    v[i] = v[i] * b2 + omb2 * gi * gi;
    T denom = std::sqrt(v[i]) * inv_bc2s + e;
    p[i] -= step_size * (m[i] / denom);
  }
}

// An entry is NaN or +-inf exactly when its exponent bits are all ones. Testing the bits with integer
// ops (OR-reduced) lets the compiler vectorize the loop; a float sum cannot be reordered without
// -ffast-math and would run one add per cycle.
template <typename T>
struct Exponent;
template <>
struct Exponent<float> {
  using U = uint32_t;
  static constexpr U mask = 0x7f800000u;
};
template <>
struct Exponent<double> {
  using U = uint64_t;
  static constexpr U mask = 0x7ff0000000000000ull;
};

template <typename T>
bool range_finite(const T* x, int64_t n) {
  using U = typename Exponent<T>::U;
  constexpr U mask = Exponent<T>::mask;
  U bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    U b;
    std::memcpy(&b, x + i, sizeof b);
    bad |= static_cast<U>((b & mask) == mask);
  }
  return bad == 0;
}

// The bits of x as an unsigned integer of its width (a register move once vectorized).
template <typename T>
inline auto bits_of(T x) {
  typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

// adam_range out of place: the same operations in the same order (so the same bits), reading p, m, v and
// writing po, mo, vo. The seven arrays never overlap (two buffers of the trainer and the gradients): __restrict__
// lets the compiler vectorize without run-time alias checks, which it gives up on for this many pointers.
// Returns the finiteness verdict bits: 1 if a gradient entry is NaN or +-inf, 2 if a result (new parameter or
// second moment) is. They are tested on the values in registers, exponent bits all ones, OR-reduced in integer
// lanes, so the loop stays vectorized and the checks cost a few instructions per vector. The first moment needs
// no test: it is not finite only if the decayed gradient g + wd p is not, and then neither is the second moment.
template <typename T>
unsigned adam_range_into(const T* __restrict__ p, const T* __restrict__ g, const T* __restrict__ m,
                         const T* __restrict__ v, T* __restrict__ po, T* __restrict__ mo, T* __restrict__ vo,
                         int64_t n, double lr, double beta1, double beta2, double eps, double wd, double bc1,
                         double bc2_sqrt) {
  using U = decltype(bits_of(T(0)));
  constexpr U mask = Exponent<T>::mask;
  const T b2 = T(beta2), omb1 = T(1 - beta1), omb2 = T(1 - beta2);
  const T step_size = T(lr / bc1), inv_bc2s = T(1.0 / bc2_sqrt), e = T(eps), w = T(wd);
  U bad_g = 0, bad_r = 0;
#pragma omp simd reduction(| : bad_g, bad_r)
  for (int64_t i = 0; i < n; ++i) {
    T gi = g[i];
    bad_g |= static_cast<U>((bits_of(gi) & mask) == mask);
    if (w != T(0)) gi += w * p[i];
    T mi = m[i];
    mi += (gi - mi) * omb1;
    const T vi = v[i] * b2 + omb2 * gi * gi;
    const T denom = std::sqrt(vi) * inv_bc2s + e;
    const T pi = p[i] - step_size * (mi / denom);
    mo[i] = mi;
    vo[i] = vi;
    po[i] = pi;
    bad_r |= static_cast<U>((bits_of(vi) & mask) == mask) | static_cast<U>((bits_of(pi) & mask) == mask);
  }
  return (bad_g ? 1u : 0u) | (bad_r ? 2u : 0u);
}

}  // namespace

// One parallel region over all tensors taken as one index range (as adam_update does): one wake-up of the
// thread pool per check instead of one per tensor, none while the total is small.
bool all_finite(at::TensorList tensors) {
  std::atomic<bool> ok{true};
  std::vector<int64_t> offset(tensors.size() + 1, 0);
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    TORCH_CHECK(t.is_non_overlapping_and_dense() &&
                    (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
                "fastvae.all_finite: dense float32 or float64 tensors only");
    offset[k + 1] = offset[k] + t.numel();
  }
  parallel_for_flushed(0, offset.back(), 262144, [&](int64_t b, int64_t e) {
    for (size_t k = 0; k < tensors.size() && b < e; ++k) {
      if (offset[k + 1] <= b) continue;
      const int64_t lo = b - offset[k], hi = std::min(e, offset[k + 1]) - offset[k];
      AT_DISPATCH_FLOATING_TYPES(tensors[k].scalar_type(), "all_finite", [&] {
        if (!range_finite(tensors[k].data_ptr<scalar_t>() + lo, hi - lo)) ok = false;
      });
      b = offset[k + 1];
    }
  });
  return ok;
}

void adam_update(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
               at::TensorList exp_avg_sq, int64_t step, double lr, double beta1, double beta2,
               double eps, double weight_decay) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && exp_avg.size() == n && exp_avg_sq.size() == n,
              "fastvae.adam_step: params, grads, exp_avg, exp_avg_sq must have equal lengths");
  TORCH_CHECK(step >= 1, "fastvae.adam_step: step counts from 1, got ", step);
  TORCH_CHECK(lr >= 0 && std::isfinite(lr), "fastvae.adam_step: invalid learning rate ", lr);
  TORCH_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
              "fastvae.adam_step: betas must lie in [0, 1), got ", beta1, ", ", beta2);
  TORCH_CHECK(eps >= 0 && weight_decay >= 0, "fastvae.adam_step: eps and weight_decay must be >= 0");
  std::vector<int64_t> offset(n + 1, 0);
  for (size_t k = 0; k < n; ++k) {
    const auto& p = params[k];
    for (const auto* t : {&grads[k], &exp_avg[k], &exp_avg_sq[k]}) {
      TORCH_CHECK(t->sizes() == p.sizes(), "fastvae.adam_step: tensor ", k, " has shape ", t->sizes(),
                  ", its parameter ", p.sizes());
      TORCH_CHECK(t->scalar_type() == p.scalar_type() && t->device() == p.device(),
                  "fastvae.adam_step: tensor ", k, " must match its parameter's dtype and device");
    }
    // Elementwise over the storage: any dense layout works if the four tensors share it.
    TORCH_CHECK(p.is_non_overlapping_and_dense() && grads[k].strides() == p.strides() &&
                    exp_avg[k].strides() == p.strides() && exp_avg_sq[k].strides() == p.strides(),
                "fastvae.adam_step: tensor ", k, " and its grad and state must be dense with equal strides");
    TORCH_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble,
                "fastvae.adam_step: float32 or float64 parameters only");
    offset[k + 1] = offset[k] + p.numel();
  }
  const double bc1 = 1 - std::pow(beta1, (double)step);
  const double bc2_sqrt = std::sqrt(1 - std::pow(beta2, (double)step));
  parallel_for_flushed(0, offset[n], 32768, [&](int64_t b, int64_t e) {
    for (size_t k = 0; k < n && b < e; ++k) {
      if (offset[k + 1] <= b) continue;
      const int64_t lo = b - offset[k], hi = std::min(e, offset[k + 1]) - offset[k];
      AT_DISPATCH_FLOATING_TYPES(params[k].scalar_type(), "adam_step", [&] {
        adam_range<scalar_t>(params[k].data_ptr<scalar_t>() + lo, grads[k].data_ptr<scalar_t>() + lo,
                             exp_avg[k].data_ptr<scalar_t>() + lo,
                             exp_avg_sq[k].data_ptr<scalar_t>() + lo, hi - lo, lr, beta1, beta2, eps,
                             weight_decay, bc1, bc2_sqrt);
      });
      b = offset[k + 1];
    }
  });
}

AdamVerdict adam_update_into(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                             at::TensorList exp_avg_sq, at::TensorList out_params, at::TensorList out_exp_avg,
                             at::TensorList out_exp_avg_sq, const std::vector<bool>& trainable, int64_t step,
                             double lr, double beta1, double beta2, double eps, double weight_decay) {
  const size_t n = params.size();
  TORCH_INTERNAL_ASSERT(grads.size() == n && exp_avg.size() == n && exp_avg_sq.size() == n && out_params.size() == n &&
                        out_exp_avg.size() == n && out_exp_avg_sq.size() == n && trainable.size() == n && step >= 1);
  std::vector<int64_t> offset(n + 1, 0);
  for (size_t k = 0; k < n; ++k) offset[k + 1] = offset[k] + (trainable[k] ? params[k].numel() : 0);
  const double bc1 = 1 - std::pow(beta1, (double)step);
  const double bc2_sqrt = std::sqrt(1 - std::pow(beta2, (double)step));
  std::atomic<bool> bad_gradient{false}, bad_result{false};
  parallel_for_flushed(0, offset[n], 32768, [&](int64_t b, int64_t e) {
    for (size_t k = 0; k < n && b < e; ++k) {
      if (offset[k + 1] <= b) continue;
      const int64_t lo = b - offset[k], hi = std::min(e, offset[k + 1]) - offset[k];
      AT_DISPATCH_FLOATING_TYPES(params[k].scalar_type(), "adam_update_into", [&] {
        using T = scalar_t;
        const unsigned verdict = adam_range_into<T>(
            params[k].data_ptr<T>() + lo, grads[k].data_ptr<T>() + lo, exp_avg[k].data_ptr<T>() + lo,
            exp_avg_sq[k].data_ptr<T>() + lo, out_params[k].data_ptr<T>() + lo, out_exp_avg[k].data_ptr<T>() + lo,
            out_exp_avg_sq[k].data_ptr<T>() + lo, hi - lo, lr, beta1, beta2, eps, weight_decay, bc1, bc2_sqrt);
        if (verdict & 1u) bad_gradient = true;
        if (verdict & 2u) bad_result = true;
      });
      b = offset[k + 1];
    }
  });
  // A non-finite gradient makes the results non-finite too: it is the cause to report.
  return bad_gradient ? AdamVerdict::kGradient : bad_result ? AdamVerdict::kResult : AdamVerdict::kFinite;
}

TORCH_LIBRARY_IMPL(fastvae, CPU, m) { m.impl("adam_step", &adam_update); }

}  // namespace cpu
}  // namespace fastvae
