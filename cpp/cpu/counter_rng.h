// Counter-based uniforms: the draw for flat index i is a pure function of (seed, i), so a sample does
// not depend on how at::parallel_for splits the index range, i.e. on the thread count.
// Mixer: SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators").
#pragma once
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

namespace fastvae {
namespace cpu {

inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Stream key of a user seed (one extra mix so nearby seeds give unrelated streams).
inline uint64_t stream_key(int64_t seed) { return splitmix64_mix(static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ULL); }

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
