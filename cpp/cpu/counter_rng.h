// Counter-based uniforms: the draw for flat index i is a pure function of (seed, i), so a sample does
// not depend on how at::parallel_for splits the index range, i.e. on the thread count.
// Mixer: SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators").
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace fastvae {
namespace cpu {

inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Stream key of a user seed (one extra mix so nearby seeds give unrelated streams).
inline uint64_t stream_key(int64_t seed) { return splitmix64_mix(static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ULL); }

// The stream key of a sampler op's arguments: exactly one of `uniform` (injected draws; the key is unused, 0)
// and `seed`, a 0-d int64 tensor. The seed travels as a tensor, not an int, so that the caller draws it inside
// a torch.compile graph (a torch random op) instead of reading it out with .item().
inline uint64_t seed_key(const c10::optional<at::Tensor>& uniform, const c10::optional<at::Tensor>& seed,
                         const char* where) {
  TORCH_CHECK(uniform.has_value() != seed.has_value(), "fastvae.", where, ": give exactly one of noise (the "
              "uniform draws) and seed");
  if (!seed.has_value()) return 0;
  TORCH_CHECK(seed->dim() == 0 && seed->scalar_type() == at::kLong && seed->device().is_cpu(), "fastvae.", where,
              ": seed must be a 0-d int64 CPU tensor, got ", seed->dim(), "-d ", seed->scalar_type(), " on ",
              seed->device());
  return stream_key(seed->item<int64_t>());
}

// Uniform strictly inside (0, 1) on a grid of half-open cells, exact in T:
// float: (k + 1/2) 2^-23, k < 2^23, so u in [2^-24, 1 - 2^-24]; double: (k + 1/2) 2^-52.
template <typename T>
inline T open_uniform(uint64_t key, int64_t i);

template <>
inline float open_uniform<float>(uint64_t key, int64_t i) {
  const uint64_t b = splitmix64_mix(key + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ULL);
  return (static_cast<float>(b >> 41) + 0.5f) * 0x1p-23f;
}

template <>
inline double open_uniform<double>(uint64_t key, int64_t i) {
  const uint64_t b = splitmix64_mix(key + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ULL);
  return (static_cast<double>(b >> 12) + 0.5) * 0x1p-52;
}

#if defined(CPU_CAPABILITY_AVX2)
// a * c mod 2^64 in each of four 64-bit lanes (AVX2 has no 64-bit multiply: three 32 x 32 -> 64 products).
inline __m256i mul64_const(__m256i a, uint64_t c) {
  const __m256i c_lo = _mm256_set1_epi64x(static_cast<int64_t>(c & 0xffffffffULL));
  const __m256i c_hi = _mm256_set1_epi64x(static_cast<int64_t>(c >> 32));
  const __m256i lo = _mm256_mul_epu32(a, c_lo);
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c_lo), _mm256_mul_epu32(a, c_hi));
  return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

// splitmix64_mix in four lanes: the same bits as the scalar function.
inline __m256i splitmix64_mix4(__m256i z) {
  z = mul64_const(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xBF58476D1CE4E5B9ULL);
  z = mul64_const(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94D049BB133111EBULL);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

// open_uniform<float> for flat indices first .. first + n - 1 into out, four at a time (identical values).
inline void open_uniforms4(float* out, int64_t n, uint64_t key, int64_t first) {
  constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
  const uint64_t base = key + static_cast<uint64_t>(first + 1) * kGolden;
  __m256i ctr = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(base)),
                                 _mm256_setr_epi64x(0, static_cast<int64_t>(kGolden),
                                                    static_cast<int64_t>(2 * kGolden),
                                                    static_cast<int64_t>(3 * kGolden)));
  const __m256i step = _mm256_set1_epi64x(static_cast<int64_t>(4 * kGolden));
  const __m256i low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4, ctr = _mm256_add_epi64(ctr, step)) {
    const __m256i k = _mm256_srli_epi64(splitmix64_mix4(ctr), 41);  // < 2^23: its low dword
    const __m128i k32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(k, low_dwords));
    const __m128 u = _mm_mul_ps(_mm_add_ps(_mm_cvtepi32_ps(k32), _mm_set1_ps(0.5f)), _mm_set1_ps(0x1p-23f));
    _mm_storeu_ps(out + i, u);
  }
  for (; i < n; ++i) out[i] = open_uniform<float>(key, first + i);
}
#endif

// Fills out[0, n) with uniforms for flat indices first.. : the injected `noise` if given (returns false if
// any value is outside (0, 1)), else counter-based draws.
template <typename T>
inline bool load_uniforms(const T* noise, T* out, int64_t n, uint64_t key, int64_t first) {
  bool ok = true;
  if (noise) {
    for (int64_t i = 0; i < n; ++i) {
      const T u = noise[i];
      ok &= u > T(0) && u < T(1);
      out[i] = u;
    }
  } else {
#if defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same<T, float>::value) {
      open_uniforms4(out, n, key, first);
      return ok;
    }
#endif
    for (int64_t i = 0; i < n; ++i) out[i] = open_uniform<T>(key, first + i);
  }
  return ok;
}

// out[i] = f(out[i], b[i]) for i < n with Vectorized<T> code, the tail included (padded with pad_out and
// pad_b), so each element gets the same arithmetic whichever block or thread it falls in: a sample then
// does not depend on how the work was split.
template <typename T, typename F>
inline void vec_apply(T* out, const T* b, int64_t n, F f, T pad_out = T(0.5), T pad_b = T(1)) {
  using V = at::vec::Vectorized<T>;
  int64_t i = 0;
  for (; i + V::size() <= n; i += V::size()) f(V::loadu(out + i), V::loadu(b + i)).store(out + i);
  if (i < n) {
    T to[V::size()], tb[V::size()];
    std::fill(to, to + V::size(), pad_out);
    std::fill(tb, tb + V::size(), pad_b);
    std::copy(out + i, out + n, to);
    std::copy(b + i, b + n, tb);
    f(V::loadu(to), V::loadu(tb)).store(to);
    std::copy(to, to + (n - i), out + i);
  }
}

}  // namespace cpu
}  // namespace fastvae
