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
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/adam.h"
#include "cpu/flush_denormals.h"

namespace fastvae {
namespace cpu {
namespace {

template <typename T>
void adam_range(T* p, const T* g, T* m, T* v, int64_t n, const AdamConstants<T>& c) {
  for (int64_t i = 0; i < n; ++i) adam_element(c, p[i], g[i], m[i], v[i], p[i], m[i], v[i]);
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
                         int64_t n, const AdamConstants<T>& c) {
  using U = decltype(bits_of(T(0)));
  constexpr U mask = Exponent<T>::mask;
  U bad_g = 0, bad_r = 0;
#pragma omp simd reduction(| : bad_g, bad_r)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    bad_g |= static_cast<U>((bits_of(gi) & mask) == mask);
    T pi, mi, vi;
    adam_element(c, p[i], gi, m[i], v[i], pi, mi, vi);
    mo[i] = mi;
    vo[i] = vi;
    po[i] = pi;
    bad_r |= static_cast<U>((bits_of(vi) & mask) == mask) | static_cast<U>((bits_of(pi) & mask) == mask);
  }
  return (bad_g ? 1u : 0u) | (bad_r ? 2u : 0u);
}

// float32 magnitudes compared through their bit patterns, which order like the values for non-negative floats:
// |x| as its bits with the sign cleared, and a second moment as its raw bits, so that a negative one (or -0) reads
// as larger than any finite value. NaN and +-inf are the patterns >= kInfBits.
constexpr uint32_t kInfBits = 0x7f800000u;
inline uint32_t magnitude_bits(float x) { return bits_of(x) & 0x7fffffffu; }
// The float32 a bit pattern encodes, as a double (for the bounds' arithmetic).
inline double value_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return double(f);
}

void atomic_max(std::atomic<uint32_t>& a, uint32_t x) {
  uint32_t seen = a.load(std::memory_order_relaxed);
  while (seen < x && !a.compare_exchange_weak(seen, x, std::memory_order_relaxed)) {
  }
}

// One pass over the trainable tensors of the lists taken as one index range (as adam_update does): one wake-up
// of the thread pool per pass, none while the total is small. f(k, lo, hi) visits elements [lo, hi) of tensor k.
template <typename F>
void over_trainable(at::TensorList tensors, const std::vector<bool>& trainable, int64_t grain, const F& f) {
  const size_t n = tensors.size();
  std::vector<int64_t> offset(n + 1, 0);
  for (size_t k = 0; k < n; ++k) offset[k + 1] = offset[k] + (trainable[k] ? tensors[k].numel() : 0);
  parallel_for_flushed(0, offset[n], grain, [&](int64_t b, int64_t e) {
    for (size_t k = 0; k < n && b < e; ++k) {
      if (offset[k + 1] <= b) continue;
      f(k, b - offset[k], std::min(e, offset[k + 1]) - offset[k]);
      b = offset[k + 1];
    }
  });
}

}  // namespace

uint32_t max_magnitude_bits(const float* __restrict__ x, int64_t n) {
  uint32_t mx = 0;
#pragma omp simd reduction(max : mx)
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, magnitude_bits(x[i]));
  return mx;
}

// adam_range for float32 with restrict pointers, so that it vectorizes without run-time alias checks.
void adam_range_in_place(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                         float* __restrict__ v, int64_t n, const AdamConstants<float>& c) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) adam_element(c, p[i], g[i], m[i], v[i], p[i], m[i], v[i]);
}

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
  parallel_for_flushed(0, offset[n], 32768, [&](int64_t b, int64_t e) {
    for (size_t k = 0; k < n && b < e; ++k) {
      if (offset[k + 1] <= b) continue;
      const int64_t lo = b - offset[k], hi = std::min(e, offset[k + 1]) - offset[k];
      AT_DISPATCH_FLOATING_TYPES(params[k].scalar_type(), "adam_step", [&] {
        adam_range<scalar_t>(params[k].data_ptr<scalar_t>() + lo, grads[k].data_ptr<scalar_t>() + lo,
                             exp_avg[k].data_ptr<scalar_t>() + lo, exp_avg_sq[k].data_ptr<scalar_t>() + lo, hi - lo,
                             AdamConstants<scalar_t>(step, lr, beta1, beta2, eps, weight_decay));
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
  std::atomic<bool> bad_gradient{false}, bad_result{false};
  over_trainable(params, trainable, 32768, [&](size_t k, int64_t lo, int64_t hi) {
    AT_DISPATCH_FLOATING_TYPES(params[k].scalar_type(), "adam_update_into", [&] {
      using T = scalar_t;
      const unsigned verdict = adam_range_into<T>(
          params[k].data_ptr<T>() + lo, grads[k].data_ptr<T>() + lo, exp_avg[k].data_ptr<T>() + lo,
          exp_avg_sq[k].data_ptr<T>() + lo, out_params[k].data_ptr<T>() + lo, out_exp_avg[k].data_ptr<T>() + lo,
          out_exp_avg_sq[k].data_ptr<T>() + lo, hi - lo,
          AdamConstants<T>(step, lr, beta1, beta2, eps, weight_decay));
      if (verdict & 1u) bad_gradient = true;
      if (verdict & 2u) bad_result = true;
    });
  });
  // A non-finite gradient makes the results non-finite too: it is the cause to report.
  return bad_gradient ? AdamVerdict::kGradient : bad_result ? AdamVerdict::kResult : AdamVerdict::kFinite;
}

uint32_t max_magnitude_bits(at::TensorList tensors, const std::vector<bool>& trainable) {
  TORCH_INTERNAL_ASSERT(trainable.size() == tensors.size());
  std::atomic<uint32_t> mx{0};
  over_trainable(tensors, trainable, 262144, [&](size_t k, int64_t lo, int64_t hi) {
    TORCH_INTERNAL_ASSERT(tensors[k].scalar_type() == at::kFloat);
    atomic_max(mx, max_magnitude_bits(tensors[k].data_ptr<float>() + lo, hi - lo));
  });
  return mx;
}

AdamStateBounds adam_state_bounds(at::TensorList params, at::TensorList exp_avg, at::TensorList exp_avg_sq,
                                  const std::vector<bool>& trainable) {
  TORCH_INTERNAL_ASSERT(exp_avg.size() == params.size() && exp_avg_sq.size() == params.size());
  std::atomic<uint32_t> bv{0};
  over_trainable(exp_avg_sq, trainable, 262144, [&](size_t k, int64_t lo, int64_t hi) {
    TORCH_INTERNAL_ASSERT(exp_avg_sq[k].scalar_type() == at::kFloat);
    const float* v = exp_avg_sq[k].data_ptr<float>() + lo;
    uint32_t mx = 0;
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < hi - lo; ++i) mx = std::max(mx, bits_of(v[i]));
    atomic_max(bv, mx);
  });
  return {max_magnitude_bits(params, trainable), max_magnitude_bits(exp_avg, trainable), bv};
}

bool adam_step_stays_finite(const AdamStateBounds& s, uint32_t grad_bits, int64_t step, double lr, double beta1,
                            double beta2, double eps, double weight_decay) {
  if (s.p >= kInfBits || s.m >= kInfBits || s.v >= kInfBits || grad_bits >= kInfBits) return false;
  const AdamConstants<float> c(step, lr, beta1, beta2, eps, weight_decay);
  // A zero or subnormal eps (flushed to zero in the engine) lets a denominator vanish: no bound.
  if (!(c.e >= std::numeric_limits<float>::min()) || !(c.w >= 0)) return false;
  const double G = value_of(grad_bits), P = value_of(s.p), M = value_of(s.m), V = value_of(s.v);
  // Bounds on the magnitude of every float result of adam_element, in the order it computes them. k covers the
  // rounding of each operation (relative 2^-24) many times over; each bound must stay far below FLT_MAX (3.4e38).
  const double k = 1.01, limit = 1e37;
  const double g = (G + double(c.w) * P) * k;        // g + wd p
  const double m = (2 * M + g) * k * k;              // g - m, and the new m
  const double gg = g * g * k;                       // (1 - beta2) g^2 <= g^2
  const double v = (V + gg) * k;                     // the new v
  const double denom = std::sqrt(v) * k * double(c.inv_bc2s) * k + double(c.e);
  const double ratio = m / double(c.e) * k;          // |m / denom|, denom >= eps
  const double delta = double(c.step_size) * ratio * k;
  const double p = (P + delta) * k;
  for (double x : {g, m, gg, v, denom, ratio, delta, p})
    if (!(x < limit)) return false;  // also false for NaN and inf (an overflowing step size)
  return true;
}

AdamStateBounds adam_step_bounds(const AdamStateBounds& s, uint32_t grad_bits, int64_t step, double lr, double beta1,
                                 double beta2, double eps, double weight_decay) {
  const AdamConstants<float> c(step, lr, beta1, beta2, eps, weight_decay);  // the constants the step used
  // The float32 bit pattern of the smallest float >= x (inf beyond the largest).
  auto bits_up = [](double x) -> uint32_t {
    if (!(x <= double(std::numeric_limits<float>::max()))) return kInfBits;
    float f = static_cast<float>(x);
    if (double(f) < x) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return bits_of(f);
  };
  // One step rounds at most six times on the way to each result (relative 2^-24 each); 2^-20 covers them and the
  // rounding of these double expressions.
  const double k = 1 + 0x1p-20;
  const double G = value_of(grad_bits), P = value_of(s.p), M = value_of(s.m), V = value_of(s.v);
  const double g = (G + double(c.w) * P) * k;   // |g + wd p|
  const double m = std::max(M, g) * k;           // m + (g - m)(1 - beta1)
  const double v = std::max(V, g * g) * k;       // beta2 v + (1 - beta2) g^2
  const double p = (P + double(c.step_size) * m / double(c.e)) * k;  // the denominator is at least eps
  return {bits_up(p), bits_up(m), bits_up(v)};
}

void adam_update_in_place(at::TensorList params, at::TensorList grads, at::TensorList exp_avg,
                          at::TensorList exp_avg_sq, const std::vector<bool>& trainable, int64_t step, double lr,
                          double beta1, double beta2, double eps, double weight_decay) {
  const size_t n = params.size();
  TORCH_INTERNAL_ASSERT(grads.size() == n && exp_avg.size() == n && exp_avg_sq.size() == n && trainable.size() == n &&
                        step >= 1);
  const AdamConstants<float> c(step, lr, beta1, beta2, eps, weight_decay);
  over_trainable(params, trainable, 32768, [&](size_t k, int64_t lo, int64_t hi) {
    TORCH_INTERNAL_ASSERT(params[k].scalar_type() == at::kFloat);
    adam_range_in_place(params[k].data_ptr<float>() + lo, grads[k].data_ptr<float>() + lo,
                        exp_avg[k].data_ptr<float>() + lo, exp_avg_sq[k].data_ptr<float>() + lo, hi - lo, c);
  });
}

TORCH_LIBRARY_IMPL(fastvae, CPU, m) { m.impl("adam_step", &adam_update); }

}  // namespace cpu
}  // namespace fastvae
