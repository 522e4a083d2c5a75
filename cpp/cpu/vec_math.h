// Inline vector exp, log1p and log for the bounded arguments of the likelihood rows and the samplers, and tanh for
// the engine's activations (float lanes). Sleef's vector functions are out-of-line calls (the loop spills around
// each one and cannot overlap iterations) and its log1p costs about ten exps; on these ranges short polynomials
// reach float accuracy. Double lanes keep Sleef (1 ulp).
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastvae {
namespace cpu {

// c[0] x^(N-1) + c[1] x^(N-2) + ... + c[N-1] by Horner's rule, one fused multiply-add per coefficient.
template <typename Vec, size_t N>
inline Vec horner(const Vec& x, const float (&c)[N]) {
  Vec p(c[0]);
  for (size_t i = 1; i < N; ++i) p = at::vec::fmadd(p, x, Vec(c[i]));
  return p;
}

// exp(x) for float lanes with x in [-87.3, 88.7] (x NaN gives some number): Cody-Waite reduction x = n ln2 + r,
// |r| <= ln2 / 2, and the Cephes expf polynomial for exp(r) (about 1 ulp); 2^n, n in [-126, 127], is built in the
// exponent bits.
inline at::vec::Vectorized<float> exp_in_range(const at::vec::Vectorized<float>& x) {
  using Vec = at::vec::Vectorized<float>;
  // n = round(x log2 e) by the shifter trick: adding 1.5 2^23 leaves n in the low mantissa bits of t (no
  // round instruction, and t's bits give 2^n below without a float-to-int conversion).
  const Vec shifter(12582912.f);
  const Vec t = at::vec::fmadd(x, Vec(1.44269504088896341f), shifter), n = t - shifter;
  Vec r = at::vec::fmadd(n, Vec(-0.693359375f), x);  // ln 2 in two parts: exact first product
  r = at::vec::fmadd(n, Vec(2.12194440e-4f), r);
  static constexpr float kExp[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f,
                                   1.6666665459e-1f, 5.0000001201e-1f};
  const Vec p = at::vec::fmadd(horner(r, kExp), r * r, r + Vec(1.f));
  // 2^n is the float with bit pattern (n + 127) << 23; t's bits are 0x4B400000 + n (n two's complement in the
  // low mantissa bits).
#if defined(CPU_CAPABILITY_AVX2)
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127 - 0x4B400000)), 23);
  return p * Vec(_mm256_castsi256_ps(bits));
#else
  alignas(64) float tf[Vec::size()];
  alignas(64) float out[Vec::size()];
  t.store(tf);
  p.store(out);
  for (int i = 0; i < Vec::size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &tf[i], sizeof bits);
    bits = (bits + (127 - 0x4B400000u)) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    out[i] *= scale;
  }
  return Vec::loadu(out);
#endif
}

// exp(v) for v <= 0 (NaN stays NaN, -inf gives 0). Float lanes: exp_in_range; below -87.3 (where exp leaves the
// normal floats) the result is flushed to 0.
template <typename T>
inline at::vec::Vectorized<T> exp_nonpositive(const at::vec::Vectorized<T>& v) {
  using Vec = at::vec::Vectorized<T>;
  if constexpr (std::is_same<T, float>::value) {
    // maximum(c, v) returns v where v is NaN (vmaxps passes its second operand through): NaN propagates.
    return Vec::blendv(exp_in_range(at::vec::maximum(Vec(-87.3f), v)), Vec(0.f), v < Vec(-87.3f));
  } else {
    return v.exp();
  }
}

// tanh(v), the activation of the engine's tanh layers. Float lanes, as the Cephes tanhf, on a = |v| with the sign of
// v put back at the end (so tanh(-v) = -tanh(v) bit for bit, -0 included): below a = 0.625 the odd polynomial
// a + a z P(z), z = a^2; from there 1 - 2 / (exp(2a) + 1), a taken at most 10 (tanh rounds to 1 in float from 9.01
// on). At most 1.34 ulp from tanh (tests/ops/test_activation.py), against 1.0 for Sleef's tanhf, at a third of its
// time: Sleef's was 4% of a batch-20 update of the IWAE paper's model. NaN stays NaN, +-inf give +-1. Double lanes
// keep Sleef.
template <typename T>
inline at::vec::Vectorized<T> tanh_vec(const at::vec::Vectorized<T>& v) {
  using Vec = at::vec::Vectorized<T>;
  if constexpr (std::is_same<T, float>::value) {
    const Vec a = v.abs(), z = a * a;
    static constexpr float kTanh[] = {-5.70498872745e-3f, 2.06390887954e-2f, -5.37397155531e-2f,
                                      1.33314422036e-1f, -3.33332819422e-1f};
    const Vec small = at::vec::fmadd(horner(z, kTanh) * z, a, a);
    const Vec c = Vec::blendv(Vec(10.f), a, a < Vec(10.f));  // a < 10 is false for NaN: c is a number
    const Vec big = Vec(1.f) - Vec(2.f) / (exp_in_range(c + c) + Vec(1.f));
    return Vec::blendv(small, big, a >= Vec(0.625f)) | (v & Vec(-0.f));
  } else {
    return v.tanh();
  }
}

// log1p(e) for e in [0, 1] (the softplus tail log(1 + exp(-|a|))). Float lanes: e P(e) with P the degree-8
// Chebyshev fit of log1p(e) / e on [0, 1] (relative error 3e-8 in exact arithmetic, about 2e-7 evaluated in
// float: the error of Sleef's log1pf and of torch's softplus), no division and no cancellation for small e.
template <typename T>
inline at::vec::Vectorized<T> log1p_unit(const at::vec::Vectorized<T>& e) {
  if constexpr (std::is_same<T, float>::value) {
    static constexpr float kLog1p[] = {5.253457796e-03f, -2.958850739e-02f, 7.836166802e-02f,
                                       -1.367476971e-01f, 1.911143108e-01f, -2.484436989e-01f,
                                       3.331927134e-01f, -4.999950152e-01f, 9.999999705e-01f};
    return e * horner(e, kLog1p);
  } else {
    return e.log1p();
  }
}

// log(v) for finite v > 0 (the samplers' log(u) and log(-log u) with u strictly inside (0, 1); no zero,
// infinite or NaN argument reaches it). Float lanes: v = m 2^k with m in [sqrt(1/2), sqrt(2)), and the Cephes
// logf polynomial in f = m - 1 (about 1 ulp); subnormal v are scaled by 2^24 first.
template <typename T>
inline at::vec::Vectorized<T> log_positive(const at::vec::Vectorized<T>& v) {
  using Vec = at::vec::Vectorized<T>;
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same<T, float>::value) {
    const __m256 tiny = _mm256_cmp_ps(v, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
    const __m256i bits = _mm256_castps_si256(_mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(0x1p24f)), tiny));
    // mantissa in [1, 2) and its exponent; then halve m (and raise k) where m > sqrt(2)
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                                   _mm256_set1_epi32(0x3f800000)));
    __m256 k = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
    const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
    k = _mm256_add_ps(k, _mm256_and_ps(big, _mm256_set1_ps(1.f)));
    k = _mm256_sub_ps(k, _mm256_and_ps(tiny, _mm256_set1_ps(24.f)));
    const Vec f = Vec(m) - Vec(1.f), z = f * f, kv(k);
    static constexpr float kLog[] = {7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f,
                                     1.4249322787e-1f, -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f,
                                     3.3333331174e-1f};
    Vec y = horner(f, kLog) * f * z;
    y = at::vec::fmadd(kv, Vec(-2.12194440e-4f), y);
    y = at::vec::fmadd(z, Vec(-0.5f), y);
    return at::vec::fmadd(kv, Vec(0.693359375f), f + y);
  }
#endif
  return v.log();
}

// log(1 - u) for u in (0, 1) (the exponential's inverse CDF), accurate for every u: below 1/2 from the series
// log(1 - u) = -2 artanh(t), t = u / (2 - u) in (0, 1/3] (no cancellation for tiny u); from 1/2 on 1 - u is
// exact (Sterbenz) and log_positive takes it.
template <typename T>
inline at::vec::Vectorized<T> log1m(const at::vec::Vectorized<T>& u) {
  using Vec = at::vec::Vectorized<T>;
  if constexpr (std::is_same<T, float>::value) {
    const Vec t = u / (Vec(2.f) - u), t2 = t * t;
    static constexpr float kAtanh[] = {1.f / 13, 1.f / 11, 1.f / 9, 1.f / 7, 1.f / 5, 1.f / 3, 1.f};
    const Vec series = Vec(-2.f) * t * horner(t2, kAtanh);
    return Vec::blendv(series, log_positive<T>(Vec(1.f) - u), u >= Vec(0.5f));
  } else {
    return (Vec(T(0)) - u).log1p();
  }
}

}  // namespace cpu
}  // namespace fastvae
