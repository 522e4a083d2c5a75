// Reparameterized Exp(rate) samples by the inverse CDF (DD2434 A1B): z = -log(1 - u) / rate,
// u ~ U(0, 1) strictly inside, so 0 < z < inf. Backward: dz/drate = -z / rate, summed over the sample
// dims, one fused pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "cpu/counter_rng.h"
#include "cpu/vec_math.h"

namespace fastvae {
namespace cpu {
namespace {

using at::vec::Vectorized;

constexpr int64_t kBlockElems = 2048;
enum : int { kBadRate = 1, kTinyRate = 2, kBadNoise = 4 };

// Largest -log(1 - u) on the uniform grid of counter_rng.h, so z = e / rate stays finite iff
// rate > e_max / max(T).
template <typename T>
T e_max() { return -std::log1p(-(T(1) - (sizeof(T) == 4 ? T(0x1p-24) : T(0x1p-53)))); }

// z[0:n] for rates r[0:n]; flat sample indices first .. first + n - 1.
template <typename T>
int exp_segment(const T* rate, const T* noise, T* out, int64_t n, uint64_t key, int64_t first, T min_rate) {
  using V = Vectorized<T>;
  // branch-free flags (the loop vectorizes): a NaN, infinite or non-positive rate is bad, else one not above
  // min_rate is tiny
  int bad = 0, tiny = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T r = rate[i];
    bad |= !(r > T(0)) | !(r < std::numeric_limits<T>::infinity());
    tiny |= !(r > min_rate);
  }
  int status = bad ? kBadRate : (tiny ? kTinyRate : 0);
  if (!load_uniforms(noise, out, n, key, first)) status |= kBadNoise;
  if (status) return status;
  if (noise) {  // any u in (0, 1): log(1 - u) accurate for tiny u too
    vec_apply<T>(out, rate, n, [](V u, V r) { return (log1m<T>(u) / r).neg(); });
  } else {  // the counter grid (multiples of 2^-24 / 2^-53 below 1): 1 - u is exact
    vec_apply<T>(out, rate, n, [](V u, V r) { return (log_positive<T>(V(T(1)) - u) / r).neg(); });
  }
  return 0;
}

at::Tensor exponential_fwd(const at::Tensor& rate_in, const c10::optional<at::Tensor>& uniform,
                           at::IntArrayRef sample_shape, const c10::optional<at::Tensor>& seed) {
  TORCH_CHECK(rate_in.scalar_type() == at::kFloat || rate_in.scalar_type() == at::kDouble,
              "fastvae.exponential_rsample: rate must be float32 or float64, got ", rate_in.scalar_type());
  TORCH_CHECK(rate_in.device().is_cpu(), "fastvae.exponential_rsample: CPU tensors only");
  for (auto s : sample_shape)
    TORCH_CHECK(s >= 0, "fastvae.exponential_rsample: sample_shape must be non-negative, got ", sample_shape);
  const at::Tensor rate = rate_in.contiguous();
  std::vector<int64_t> shape(sample_shape.begin(), sample_shape.end());
  shape.insert(shape.end(), rate.sizes().begin(), rate.sizes().end());
  at::Tensor noise;
  if (uniform.has_value()) {
    TORCH_CHECK(uniform->sizes() == at::IntArrayRef(shape), "fastvae.exponential_rsample: noise must have shape "
                "sample_shape + rate.shape = ", at::IntArrayRef(shape), ", got ", uniform->sizes());
    TORCH_CHECK(uniform->scalar_type() == rate.scalar_type() && uniform->device() == rate.device(),
                "fastvae.exponential_rsample: noise must have the dtype and device of rate");
    noise = uniform->contiguous();
  }
  at::Tensor out = at::empty(shape, rate.options());
  const int64_t m = rate.numel();
  const int64_t total = out.numel();
  const uint64_t key = seed_key(uniform, seed, "exponential_rsample");
  std::atomic<int> status{0};
  AT_DISPATCH_FLOATING_TYPES(rate.scalar_type(), "exponential_fwd", [&] {
    const scalar_t* rp = rate.data_ptr<scalar_t>();
    const scalar_t* np = noise.defined() ? noise.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t min_rate = e_max<scalar_t>() / std::numeric_limits<scalar_t>::max();
    at::parallel_for(0, total, 4 * kBlockElems, [&](int64_t b, int64_t e) {
      // segments end at block boundaries and at the end of each sample's copy of rate
      for (int64_t i = b; i < e && !status.load(std::memory_order_relaxed);) {
        const int64_t j = i % m;
        const int64_t n = std::min({e - i, m - j, kBlockElems});
        int st = exp_segment<scalar_t>(rp + j, np ? np + i : nullptr, op + i, n, key, i, min_rate);
        if (st) status.fetch_or(st);
        i += n;
      }
    });
  });
  const int st = status.load();
  TORCH_CHECK(!(st & kBadRate), "fastvae.exponential_rsample: rate must be positive and finite (no NaN)");
  TORCH_CHECK(!(st & kBadNoise), "fastvae.exponential_rsample: noise must be uniform draws strictly inside (0, 1)");
  TORCH_CHECK(!(st & kTinyRate), "fastvae.exponential_rsample: rate too small, samples would overflow to inf");
  return out;
}

at::Tensor exponential_backward(const at::Tensor& grad_in, const at::Tensor& z_in, const at::Tensor& rate_in) {
  TORCH_CHECK(grad_in.sizes() == z_in.sizes(), "fastvae._exponential_backward: grad shape ", grad_in.sizes(),
              " differs from the sample's ", z_in.sizes());
  TORCH_CHECK(grad_in.scalar_type() == rate_in.scalar_type() && z_in.scalar_type() == rate_in.scalar_type(),
              "fastvae._exponential_backward: grad, z and rate must share a dtype");
  TORCH_CHECK(rate_in.scalar_type() == at::kFloat || rate_in.scalar_type() == at::kDouble,
              "fastvae._exponential_backward: float32 or float64 tensors only, got ", rate_in.scalar_type());
  TORCH_CHECK(grad_in.device().is_cpu() && z_in.device().is_cpu() && rate_in.device().is_cpu(),
              "fastvae._exponential_backward: CPU tensors only");
  const int64_t m = rate_in.numel();
  TORCH_CHECK(z_in.dim() >= rate_in.dim() &&
              z_in.sizes().slice(z_in.dim() - rate_in.dim()) == rate_in.sizes(),
              "fastvae._exponential_backward: z must have shape sample_shape + rate.shape");
  const at::Tensor g = grad_in.contiguous(), z = z_in.contiguous(), rate = rate_in.contiguous();
  at::Tensor out = at::empty_like(rate, at::MemoryFormat::Contiguous);
  const int64_t s = m == 0 ? 0 : z.numel() / m;
  AT_DISPATCH_FLOATING_TYPES(rate.scalar_type(), "_exponential_backward", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* zp = z.data_ptr<scalar_t>();
    const scalar_t* rp = rate.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, m, 4 * kBlockElems, [&](int64_t b, int64_t e) {
      if (s == 1) {
        int64_t i = b;
        for (; i + V::size() <= e; i += V::size())
          (V::loadu(gp + i) * V::loadu(zp + i) / V::loadu(rp + i)).neg().store(op + i);
        for (; i < e; ++i) op[i] = -gp[i] * zp[i] / rp[i];
        return;
      }
      for (int64_t i = b; i < e; ++i) op[i] = 0;
      for (int64_t k = 0; k < s; ++k)
        for (int64_t i = b; i < e; ++i) op[i] += gp[k * m + i] * zp[k * m + i];
      for (int64_t i = b; i < e; ++i) op[i] = -op[i] / rp[i];
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("exponential_fwd", &exponential_fwd);
  m.impl("_exponential_backward", &exponential_backward);
}

}  // namespace cpu
}  // namespace fastvae
