#include "training/torch_uniform.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/MT19937RNGEngine.h>
#include <ATen/core/TransformationHelper.h>
#include <ATen/Context.h>

#include <algorithm>
#include <mutex>

namespace fastvae {
namespace training {

namespace {

constexpr int kN = at::MERSENNE_STATE_N, kM = at::MERSENNE_STATE_M;

inline uint32_t twist(uint32_t u, uint32_t v) {  // at::mt19937's, without the branch
  return (((u & at::UMASK) | (v & at::LMASK)) >> 1) ^ (-(v & 1u) & at::MATRIX_A);
}

// at::mt19937's next_state, in loops the compiler vectorizes: each reads only entries that the engine's own
// loop has not yet overwritten (j + 1, j + M) or has (j + M - N, 227 entries back).
void next_state(uint32_t* p) {
  for (int j = 0; j < kN - kM; ++j) p[j] = p[j + kM] ^ twist(p[j], p[j + 1]);
  for (int j = kN - kM; j < kN - 1; ++j) p[j] = p[j + kM - kN] ^ twist(p[j], p[j + 1]);
  p[kN - 1] = p[kM - 1] ^ twist(p[kN - 1], p[0]);
}

// The engine's tempering, then uniform_'s float (at::uniform_real_distribution<float>, from 0 to 1).
void temper(const uint32_t* s, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t y = s[i];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    out[i] = at::transformation::uniform_real<float>(y, 0.f, 1.f);
  }
}

}  // namespace

void uniform_floats(at::Generator& gen, float* out, int64_t n) {
  auto* g = at::get_generator_or_default<at::CPUGeneratorImpl>(gen, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(g->mutex_);  // as uniform_ holds it
  at::mt19937 engine = g->engine();
  TORCH_INTERNAL_ASSERT(engine.is_valid(), "fastvae: the generator's Mersenne Twister state is not valid");
  at::mt19937_data_pod s = engine.data();
  // The engine hands out state_[next_] while --left_ stays above 0, and refills the state when it reaches 0:
  // left_ - 1 numbers are ready before each refill.
  while (n > 0) {
    if (s.left_ == 1) {
      next_state(s.state_.data());
      s.left_ = kN + 1;
      s.next_ = 0;
    }
    const int64_t take = std::min<int64_t>(n, s.left_ - 1);
    temper(s.state_.data() + s.next_, out, take);
    s.left_ -= static_cast<int>(take);
    s.next_ += static_cast<uint32_t>(take);
    out += take;
    n -= take;
  }
  engine.set_data(s);
  g->set_engine(engine);
}

}  // namespace training
}  // namespace fastvae
