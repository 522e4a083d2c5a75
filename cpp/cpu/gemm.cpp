// Row-major GEMM through libtorch's own BLAS symbol (see gemm.h for why).
#include "cpu/gemm.h"

#include <ATen/ops/mm_ops.h>
#include <dlfcn.h>

#include <algorithm>

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

// The Fortran entry point, which takes a pointer: libtorch exports the lower-case C name as an alias of it.
int set_blas_local_threads(int n) {
  using Fn = int (*)(const int*);
  static const Fn fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "mkl_set_num_threads_local_"));
  return fn ? fn(&n) : 0;
}

const char* gemm_backend() { return sgemm_fn() ? "blas" : "aten"; }

}  // namespace cpu
}  // namespace fastvae
