// Row-major GEMM through libtorch's own BLAS symbol, and the engine's own kernel for the weight gradients'
// short inner dimension (see gemm.h for why).
#include "cpu/gemm.h"

#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/mm_ops.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>

namespace fastvae {
namespace cpu {
namespace {

// Fortran BLAS: column-major, every argument by pointer.
using SgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);
using DgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                         const double*, const int*, const double*, const int*, const double*, double*, const int*);

// Looked up once among the symbols already loaded (libtorch_cpu is, before this module). A build whose
// BLAS is not MKL may export another sgemm_; only the one libtorch uses for matmul is wanted, so the
// symbol must come from the same object as at::mm (checked with dladdr on a libtorch function).
template <typename Fn>
Fn find_blas(const char* name) {
  void* sym = dlsym(RTLD_DEFAULT, name);
  if (!sym) return nullptr;
  Dl_info blas_info, torch_info;
  if (!dladdr(sym, &blas_info) || !dladdr(reinterpret_cast<void*>(&at::_ops::mm::call), &torch_info)) return nullptr;
  if (blas_info.dli_fbase != torch_info.dli_fbase) return nullptr;
  return reinterpret_cast<Fn>(sym);
}

SgemmFn sgemm_fn() {
  static const SgemmFn fn = find_blas<SgemmFn>("sgemm_");
  return fn;
}
DgemmFn dgemm_fn() {
  static const DgemmFn fn = find_blas<DgemmFn>("dgemm_");
  return fn;
}

// Largest dimension the int32 Fortran interface takes; the engine's products are far smaller.
constexpr int64_t kIntMax = 2147483647;

template <typename T>
void aten_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  // op(X) as a strided view of the row-major storage: X^T of an [r, c] matrix with leading dim ld.
  auto view = [&](const T* p, bool trans, int64_t rows, int64_t cols, int64_t ld) {
    auto t = at::from_blob(const_cast<T*>(p), {trans ? cols : rows, trans ? rows : cols}, {ld, 1}, opt);
    return trans ? t.t() : t;
  };
  auto a = view(A, trans_a, M, K, lda), b = view(B, trans_b, K, N, ldb);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, opt);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
    if (alpha != T(1)) c.mul_(alpha);
  } else {
    c.addmm_(a, b, beta, alpha);
  }
}

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const SgemmFn fn = sgemm_fn();
  if (!fn || std::max({M, N, K, lda, ldb, ldc}) > kIntMax || K == 0) {
    aten_gemm<float>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int m = int(N), n = int(M), k = int(K), la = int(ldb), lb = int(lda), lc = int(ldc);
  fn(&ta, &tb, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const DgemmFn fn = dgemm_fn();
  if (!fn || std::max({M, N, K, lda, ldb, ldc}) > kIntMax || K == 0) {
    aten_gemm<double>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int m = int(N), n = int(M), k = int(K), la = int(ldb), lb = int(lda), lc = int(ldc);
  fn(&ta, &tb, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
}

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kLanes = Vec::size();

// An MR x (NV vectors) tile of C = A^T B, its accumulators in registers across the whole k loop (fused
// multiply-adds in the AVX2 build). Adding +0 at the store turns a -0 sum into +0, as BLAS's C = 0 + sum does.
template <int MR, int NV>
inline void at_b_tile(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc) {
  // Unrolled from the start, so that acc never leaves the registers (without the pragmas GCC zeroes it on the
  // stack and reloads it there for the store).
  Vec acc[MR][NV];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = Vec(0.f);
  for (int64_t k = 0; k < K; ++k) {
    const float* a = A + k * lda;
    const float* b = B + k * ldb;
    Vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = Vec::loadu(b + v * kLanes);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const Vec ai(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = at::vec::fmadd(ai, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) (acc[i][v] + Vec(0.f)).store(C + i * ldc + v * kLanes);
}

// Rows [0, MR) of C, whole: column tiles of 3 vectors, then single vectors, then the last N % lanes columns one
// by one. Rows outer: a row tile's broadcasts of A stay in L1 and C is written row by row.
template <int MR>
void at_b_rows(int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
               int64_t ldc) {
  int64_t c = 0;
  for (; c + 3 * kLanes <= N; c += 3 * kLanes) at_b_tile<MR, 3>(K, A, lda, B + c, ldb, C + c, ldc);
  for (; c + kLanes <= N; c += kLanes) at_b_tile<MR, 1>(K, A, lda, B + c, ldb, C + c, ldc);
  for (; c < N; ++c)
    for (int i = 0; i < MR; ++i) {
      float s = 0.f;
      for (int64_t k = 0; k < K; ++k) s = std::fma(A[k * lda + i], B[k * ldb + c], s);
      C[i * ldc + c] = s + 0.f;
    }
}

}  // namespace

template <>
void gemm_at_b<float>(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                      float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) at_b_rows<4>(N, K, A + i, lda, B, ldb, C + i * ldc, ldc);
  switch (M - i) {
    case 3: at_b_rows<3>(N, K, A + i, lda, B, ldb, C + i * ldc, ldc); break;
    case 2: at_b_rows<2>(N, K, A + i, lda, B, ldb, C + i * ldc, ldc); break;
    case 1: at_b_rows<1>(N, K, A + i, lda, B, ldb, C + i * ldc, ldc); break;
    default: break;
  }
}

template <>
void gemm_at_b<double>(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
                       int64_t ldb, double* C, int64_t ldc) {
  gemm<double>(true, false, M, N, K, 1.0, A, lda, B, ldb, 0.0, C, ldc);
}

// The Fortran entry point, which takes a pointer: libtorch exports the lower-case C name as an alias of it.
int set_blas_local_threads(int n) {
  using Fn = int (*)(const int*);
  static const Fn fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "mkl_set_num_threads_local_"));
  return fn ? fn(&n) : 0;
}

const char* gemm_backend() { return sgemm_fn() ? "blas" : "aten"; }

}  // namespace cpu
}  // namespace fastvae
