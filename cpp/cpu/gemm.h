// Row-major GEMM on raw pointers for the engine's layer products, C = alpha op(A) op(B) + beta C.
//
// Why not at::mm_out: at batch 20 each product is ~0.1-0.4 MFLOP, and a call through the dispatcher
// (argument checks, the views w.t() / narrow() it needs, output resize checks) costs about as much as the
// arithmetic. The BLAS that libtorch itself calls for float/double matmul (MKL's sgemm_/dgemm_ in the x86
// wheels) is looked up once in the loaded libtorch; where it is not exported (other builds), the product
// falls back to at::mm_out on tensors wrapping the same memory, which gives the same result through the
// same BLAS.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace fastvae {
namespace cpu {

// C[M, N] = alpha * op(A)[M, K] op(B)[K, N] + beta * C, all row-major with leading dimensions lda, ldb, ldc;
// op(X) = X^T when trans_x. beta is 0 or 1 (0: C is overwritten, never read).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// C[M, N] = A^T B for A [K, M] and B [K, N] row-major (leading dimensions lda, ldb, ldc) and a short inner
// dimension K: the weight gradient of a layer, K the rows of the batch. C is overwritten, never read. Each entry
// is one fused multiply-add chain over k = 0..K-1 from +0 (MKL's order for the IWAE paper model's layers, not
// for every shape: docs/engine.md, "The weight-gradient product"), without BLAS's per-call scaling of C and
// packing of the operands: at batch 20 those passes over the 784 x 200 gradient cost as much as the arithmetic.
// double goes through gemm.
template <typename T>
void gemm_at_b(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
               int64_t ldc);

// Sets the BLAS threads of the calling thread only (MKL's per-thread count; libtorch carries MKL and exports it)
// and returns the previous per-thread setting, 0 when the thread had none. A BLAS without a per-thread count has
// nothing to set (returns 0): inside the engine's chunks it is called as from any other thread.
int set_blas_local_threads(int n);

// Which path gemm takes in this process: "blas" (the BLAS symbol of libtorch) or "aten" (at::mm_out).
const char* gemm_backend();

}  // namespace cpu
}  // namespace fastvae
