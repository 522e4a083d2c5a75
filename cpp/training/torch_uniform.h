// torch's CPU uniform_ draws in bulk: the same floats from the same generator, many times faster. uniform_ on a
// CPU float tensor runs the Mersenne Twister (at::mt19937) one number at a time behind a generic element loop,
// about 6 ns a number here; dynamic binarization draws one per pixel of every batch (15,680 at batch 20), which
// made it a tenth of an update of the IWAE paper's model (docs/engine.md, "Pixels in the loop").
#pragma once
#include <ATen/core/Generator.h>

#include <cstdint>

namespace fastvae {
namespace training {

// Writes to out[0:n] the floats that uniform_(0, 1, gen) writes to a contiguous float32 tensor of n entries, in
// its order, and leaves gen in the state uniform_ leaves it in (an undefined gen: torch's default CPU generator).
// tests/training/test_torch_uniform.py holds it to uniform_ bit for bit.
void uniform_floats(at::Generator& gen, float* out, int64_t n);

}  // namespace training
}  // namespace fastvae
