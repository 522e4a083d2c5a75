// Gumbel-softmax (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017) on the CPU.
// Forward: y = softmax((logits + G) / tau) along one dim, G = -log(-log U), U ~ U(0, 1) strictly inside.
// Backward: the softmax Jacobian-vector product, g_logits = y * (g - <g, y>) / tau, one fused pass.
// Rows are processed in blocks that fit in L1: uniforms, Gumbel shift and exp are vectorized over the
// whole block (rows are short, e.g. 10 classes), max and sum are per row.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "cpu/counter_rng.h"
#include "cpu/gumbel_softmax.h"
#include "finite.h"

namespace fastvae {
namespace cpu {
namespace {

using at::vec::Vectorized;

constexpr int64_t kBlockElems = 2048;  // elements per L1 block

void check_dim(const at::Tensor& t, int64_t& dim, const char* name) {
  TORCH_CHECK(t.dim() >= 1, "fastvae.", name, ": logits must have at least one dimension");
  const int64_t d = t.dim();
  TORCH_CHECK(dim >= -d && dim < d, "fastvae.", name, ": dim ", dim, " out of range for a ", d, "-d tensor");
  if (dim < 0) dim += d;
}

// No NaN, no +inf, no row all -inf: logits the sampler takes (rows x k; the rare path only).
bool usable_logits(const at::Tensor& l) {
  return !at::isnan(l).any().item<bool>() && !at::isposinf(l).any().item<bool>() &&
         !at::isneginf(l).all(1).any().item<bool>();
}

at::Tensor gumbel_softmax_fwd(const at::Tensor& logits_in, const c10::optional<at::Tensor>& uniform,
                              double tau, int64_t dim, const c10::optional<at::Tensor>& seed) {
  check_dim(logits_in, dim, "gumbel_softmax");
  TORCH_CHECK(logits_in.scalar_type() == at::kFloat || logits_in.scalar_type() == at::kDouble,
              "fastvae.gumbel_softmax: logits must be float32 or float64, got ", logits_in.scalar_type());
  TORCH_CHECK(logits_in.device().is_cpu(), "fastvae.gumbel_softmax: CPU tensors only");
  TORCH_CHECK(tau > 0 && std::isfinite(1.0 / tau), "fastvae.gumbel_softmax: temperature tau must be > 0 "
              "(and 1/tau finite), got ", tau);
  TORCH_CHECK_VALUE(logits_in.scalar_type() != at::kFloat || std::isfinite(static_cast<float>(1.0 / tau)),
                    "fastvae.gumbel_softmax: temperature ", tau, " underflows float32: 1 / tau = ", 1.0 / tau,
                    " overflows float32 (use tau >= 3e-39, or float64 logits)");
  const bool last = dim == logits_in.dim() - 1;
  const at::Tensor logits = last ? logits_in.contiguous() : logits_in.movedim(dim, -1).contiguous();
  at::Tensor noise;
  if (uniform.has_value()) {
    TORCH_CHECK(uniform->sizes() == logits_in.sizes(), "fastvae.gumbel_softmax: noise must have the shape of "
                "logits ", logits_in.sizes(), ", got ", uniform->sizes());
    TORCH_CHECK(uniform->scalar_type() == logits_in.scalar_type() && uniform->device() == logits_in.device(),
                "fastvae.gumbel_softmax: noise must have the dtype and device of logits");
    noise = last ? uniform->contiguous() : uniform->movedim(dim, -1).contiguous();
  }
  at::Tensor out = at::empty_like(logits, at::MemoryFormat::Contiguous);
  const int64_t k = logits.size(-1);
  const int64_t rows = k == 0 ? 0 : logits.numel() / k;
  TORCH_CHECK(k > 0 || logits.numel() == 0, "fastvae.gumbel_softmax: empty class dimension");
  const uint64_t key = seed_key(uniform, seed, "gumbel_softmax");
  std::atomic<int> status{0};
  const int64_t block_rows = std::max<int64_t>(1, kBlockElems / std::max<int64_t>(k, 1));
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "gumbel_softmax_fwd", [&] {
    const scalar_t* lp = logits.data_ptr<scalar_t>();
    const scalar_t* np = noise.defined() ? noise.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t inv_tau = scalar_t(1.0 / tau);
    at::parallel_for(0, rows, block_rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1 && !status.load(std::memory_order_relaxed); r += block_rows) {
        const int64_t nr = std::min(block_rows, r1 - r);
        const int64_t off = r * k;
        int st = gumbel_block<scalar_t>(lp + off, np ? np + off : nullptr, op + off, nr, k, inv_tau, key, off);
        if (st) status.fetch_or(st);
      }
    });
  });
  const int st = status.load();
  TORCH_CHECK(!(st & kBadNoise), "fastvae.gumbel_softmax: noise must be uniform draws strictly inside (0, 1)");
  // NaN, +inf or an all -inf row although the logits hold none of these (-inf entries are zero-probability
  // classes): (logits + G) / tau left the float range (the rare path).
  TORCH_CHECK_VALUE(!(st & (kNaN | kPosInf | kAllNegInf)) || !usable_logits(logits.view({rows, k})),
                    "fastvae.gumbel_softmax: the sample is not finite although the logits are: (logits + G) / tau "
                    "overflows ",
                    dtype_name(logits.scalar_type()), " (tau ", num(tau), ", |logits| up to ", num(max_abs(logits)),
                    "); use a larger tau or float64 logits");
  TORCH_CHECK(!(st & kNaN), "fastvae.gumbel_softmax: logits contain NaN");
  TORCH_CHECK(!(st & kPosInf), "fastvae.gumbel_softmax: logits contain +inf (or (logits + G) / tau overflows)");
  TORCH_CHECK(!(st & kAllNegInf), "fastvae.gumbel_softmax: a row of logits is all -inf (every class has "
              "probability zero)");
  return last ? out : out.movedim(-1, dim).contiguous();
}

at::Tensor gumbel_softmax_backward(const at::Tensor& grad_in, const at::Tensor& y_in, double tau, int64_t dim) {
  check_dim(y_in, dim, "_gumbel_softmax_backward");
  TORCH_CHECK(grad_in.sizes() == y_in.sizes(), "fastvae._gumbel_softmax_backward: grad shape ", grad_in.sizes(),
              " differs from the sample's ", y_in.sizes());
  TORCH_CHECK(grad_in.scalar_type() == y_in.scalar_type() &&
              (y_in.scalar_type() == at::kFloat || y_in.scalar_type() == at::kDouble),
              "fastvae._gumbel_softmax_backward: grad and sample must share a float32/float64 dtype");
  TORCH_CHECK(tau > 0 && std::isfinite(1.0 / tau), "fastvae._gumbel_softmax_backward: tau must be > 0 (and 1/tau "
              "finite), got ", tau);
  TORCH_CHECK(grad_in.device().is_cpu() && y_in.device().is_cpu(), "fastvae._gumbel_softmax_backward: CPU tensors only");
  const bool last = dim == y_in.dim() - 1;
  const at::Tensor y = last ? y_in.contiguous() : y_in.movedim(dim, -1).contiguous();
  const at::Tensor g = last ? grad_in.contiguous() : grad_in.movedim(dim, -1).contiguous();
  at::Tensor gx = at::empty_like(y, at::MemoryFormat::Contiguous);
  const int64_t k = y.size(-1);
  const int64_t rows = k == 0 ? 0 : y.numel() / k;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "_gumbel_softmax_backward", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    const scalar_t inv_tau = scalar_t(1.0 / tau);
    std::atomic<bool> bad{false};
    at::parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(k, 1)), [&](int64_t r0, int64_t r1) {
      if (!softmax_bwd_rows<scalar_t>(gp + r0 * k, yp + r0 * k, op + r0 * k, r1 - r0, k, inv_tau)) bad = true;
    });
    // A gradient that is not finite from a finite upstream gradient and sample: 1 / tau times them overflowed.
    TORCH_CHECK_VALUE(!bad || !is_finite(g) || !is_finite(y), "fastvae._gumbel_softmax_backward: the gradient "
                      "with respect to the logits is not finite although the upstream gradient and the sample are: "
                      "y * (grad - <grad, y>) / tau overflows ", dtype_name(y.scalar_type()), " (tau ", num(tau),
                      ", |grad| up to ", num(max_abs(g)), ")");
  });
  return last ? gx : gx.movedim(-1, dim).contiguous();
}

// One-hot of the argmax along dim (ties: first index), the forward of the straight-through sample.
at::Tensor one_hot_argmax(const at::Tensor& y_in, int64_t dim) {
  check_dim(y_in, dim, "one_hot_argmax");
  TORCH_CHECK(y_in.scalar_type() == at::kFloat || y_in.scalar_type() == at::kDouble,
              "fastvae.one_hot_argmax: float32 or float64 input only");
  TORCH_CHECK(y_in.device().is_cpu(), "fastvae.one_hot_argmax: CPU tensors only");
  const bool last = dim == y_in.dim() - 1;
  const at::Tensor y = last ? y_in.contiguous() : y_in.movedim(dim, -1).contiguous();
  at::Tensor out = at::zeros_like(y, at::MemoryFormat::Contiguous);
  const int64_t k = y.size(-1);
  const int64_t rows = k == 0 ? 0 : y.numel() / k;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "one_hot_argmax", [&] {
    const scalar_t* yp = y.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(k, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        op[r * k + argmax_row(yp + r * k, k)] = scalar_t(1);
      }
    });
  });
  return last ? out : out.movedim(-1, dim).contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvae, CPU, m) {
  m.impl("gumbel_softmax_fwd", &gumbel_softmax_fwd);
  m.impl("_gumbel_softmax_backward", &gumbel_softmax_backward);
  m.impl("one_hot_argmax", &one_hot_argmax);
}

}  // namespace cpu
}  // namespace fastvae
