// The pixels a model sees of uint8 images (TrainOptions.pixels), and the reparameterization noise: one
// definition, used by the C++ trainer and, through fastvae._C.gather_pixels, by the Python stepper of models
// with custom networks and the tests.
#pragma once
#include <ATen/ATen.h>

#include "training/options.h"
#include "vae_spec.h"

namespace fastvae {
namespace training {

// out[i, :] = the pixels of images[rows[i], :] as the model sees them, float32 [n, D]: p > threshold (0/1),
// x ~ Bernoulli(p / 255) drawn as u < p / 255 with the floats of one uniform_ of out's n * D entries in row
// order (dynamic; drawn by training/torch_uniform.h), or p / 255 (intensity). labels_out[i] = labels[rows[i]]
// when labels are given.
void gather_pixels(const at::Tensor& images, const int64_t* rows, int64_t n, int64_t threshold, Pixels pixels,
                   at::Generator& gen, at::Tensor& out, const at::Tensor& labels, at::Tensor* labels_out);

// N(0, 1) noise for Gaussian latents; for categorical ones U(0, 1) clamped to [FLT_MIN, 1) (uniform_ can
// return 0, whose Gumbel -log(-log u) is -inf), the Gumbel-softmax's uniforms.
void draw_noise(at::Tensor& e, const VaeSpec& spec, at::Generator& gen);

}  // namespace training
}  // namespace fastvae
