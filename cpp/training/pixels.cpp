#include "training/pixels.h"

#include <algorithm>
#include <limits>

#include "cpu/flush_denormals.h"
#include "training/torch_uniform.h"

namespace fastvae {
namespace training {

void gather_pixels(const at::Tensor& images, const int64_t* rows, int64_t n, int64_t threshold, Pixels pixels,
                   at::Generator& gen, at::Tensor& out, const at::Tensor& labels, at::Tensor* labels_out) {
  const int64_t D = images.size(1);
  const uint8_t* src = images.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  if (pixels == Pixels::Dynamic) uniform_floats(gen, dst, n * D);  // out.uniform_(0, 1, gen)'s floats
  cpu::parallel_for_flushed(0, n, std::max<int64_t>(1, 65536 / D), [&](int64_t i0, int64_t i1) {
    // The rows are a random draw from the whole image set, mostly out of cache: ask for all their lines first, so
    // that the misses overlap instead of stalling the loop one row at a time.
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t k = 0; k < D; k += 64) __builtin_prefetch(src + rows[i] * D + k);
    for (int64_t i = i0; i < i1; ++i) {
      // restrict: uint8_t may alias the floats, which would keep the loops below from vectorizing.
      const uint8_t* __restrict s = src + rows[i] * D;
      float* __restrict d = dst + i * D;
      switch (pixels) {
        case Pixels::Threshold:
          for (int64_t k = 0; k < D; ++k) d[k] = s[k] > threshold ? 1.f : 0.f;
          break;
        case Pixels::Dynamic:
          for (int64_t k = 0; k < D; ++k) d[k] = d[k] < static_cast<float>(s[k]) / 255.f ? 1.f : 0.f;
          break;
        case Pixels::Intensity:
          for (int64_t k = 0; k < D; ++k) d[k] = static_cast<float>(s[k]) / 255.f;
          break;
      }
    }
  });
  if (labels_out) {
    const int64_t* ly = labels.data_ptr<int64_t>();
    int64_t* yo = labels_out->data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) yo[i] = ly[rows[i]];
  }
}

void draw_noise(at::Tensor& e, const VaeSpec& spec, at::Generator& gen) {
  if (!spec.categorical()) {
    e.normal_(0, 1, gen);
    return;
  }
  e.uniform_(0, 1, gen);
  e.clamp_min_(std::numeric_limits<float>::min());
}

}  // namespace training
}  // namespace fastvae
