#include "cpu/vae_engine.h"

#include "cpu/activation.h"
#include "cpu/adam.h"  // max_magnitude_bits
#include "cpu/flush_denormals.h"
#include "cpu/gemm.h"
#include "cpu/likelihood.h"
#include "cpu/split_threads.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace fastvae {
namespace cpu {

namespace {

// Elementwise passes split across threads only from this many elements on: below it a pass takes a few
// microseconds, less than waking the other threads costs (and on a busy machine a lot less).
constexpr int64_t kGrain = 65536;
// Rows per task so that each task touches at least kGrain elements.
int64_t grain_rows(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }

// Width of the column blocks of a layer product with R rows, H output columns and K inner dimension: the whole
// product in one block while it is too small to pay for waking the other threads, else an even split over the
// split count (cpu/split_threads.h). Each block is one BLAS call (sequential inside the parallel region), so
// the blocks, and with them the results, depend only on the sizes and the split count, never on how many
// threads run the blocks now: one thread runs them in turn and gives the same bits.
int64_t col_block(int64_t R, int64_t H, int64_t K) {
  constexpr int64_t kMinParallelMacs = 1 << 17;
  const int64_t nt = split_threads();
  if (nt <= 1 || R * H * K < kMinParallelMacs || H < 32) return std::max<int64_t>(H, 1);
  return std::max<int64_t>(16, (H + nt - 1) / nt);
}

// Width of the column blocks of the sparse input layer (H output columns), fixed by the split count as
// col_block's: the vector loops' tails fall on the same columns at any thread count.
int64_t sparse_block(int64_t H) {
  const int64_t nt = split_threads();
  return nt <= 1 || H <= 128 ? std::max<int64_t>(H, 1) : (H + nt - 1) / nt;
}

// Rows per block of the sparse input layer's weight gradient (ld rows of H): a few blocks per thread.
int64_t sparse_rows(int64_t ld) {
  const int64_t nt = split_threads();
  return nt <= 1 ? std::max<int64_t>(ld, 1) : (ld + 2 * nt - 1) / (2 * nt);
}

// f(j0, j1) for the blocks [b * width, min(n, (b + 1) * width)) of [0, n), spread over the threads: one
// parallel region (none when there is one block or one thread).
template <typename F>
void for_blocks(int64_t n, int64_t width, const F& f) {
  const int64_t blocks = (n + width - 1) / width;
  parallel_for_flushed(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b * width, std::min(n, (b + 1) * width));
  });
}

// log_sigma / inv_var: the learned Gaussian scale's parameter and exp(-2 log_sigma), [D]; only read by
// gaussian_scale "learned" (the engine's own parameter, so its row is dispatched here, not by the table).
// The row a has spec.out_dim() entries (2D for a predicted scale).
template <typename T>
T likelihood_row(const VaeSpec& spec, const T* a, const T* x, int64_t D, T* g, T w, const T* log_sigma = nullptr,
                 const T* inv_var = nullptr) {
  if (spec.learned_scale()) return likelihoods::Gaussian::learned_row<T>(a, x, D, g, w, log_sigma, inv_var);
  return cpu::likelihood_row<T>(spec.lik, spec.lik_params(), a, x, D, g, w);
}

// out[d] = sum_r rw[r] ((x_{r % B, d} - a_{r, d})^2 inv_var_d - 1): the gradient with respect to the learned
// log sigma_d of sum_r rw[r] log p(x | a_r). Threads own column blocks and each column sums its rows in
// order, so the result does not depend on the thread count (no shared accumulator in the row pass).
template <typename T>
void learned_scale_grad(const T* a, const T* x, const T* inv_var, const T* rw, int64_t R, int64_t B, int64_t D,
                        T* out) {
  parallel_for_flushed(0, D, std::max<int64_t>(16, kGrain / std::max<int64_t>(R, 1)), [&](int64_t d0, int64_t d1) {
    for (int64_t d = d0; d < d1; ++d) out[d] = T(0);
    for (int64_t r = 0; r < R; ++r) {
      const T* ar = a + r * D;
      const T* xr = x + (r % B) * D;
      for (int64_t d = d0; d < d1; ++d) {
        const T e = xr[d] - ar[d];
        out[d] += rw[r] * (e * e * inv_var[d] - T(1));
      }
    }
  });
}

// A weight [out, in] stored as its transpose (w.t() contiguous): the training loop keeps the input layer
// this way so that a row of w.t() is the weight column of one pixel.
bool stored_transposed(const at::Tensor& w) {
  return w.dim() == 2 && w.size(0) > 1 && w.stride(0) == 1 && w.stride(1) == w.size(0);
}

// out[0:NV W] = init + sum_k vals[k] base[idx[k] stride + (0:NV W)] (init: zeros if null), summed in k order from
// init, one fused multiply-add per term, in NV registers while the rows base[idx[k] stride] stream by.
template <int NV, typename T>
inline void gather_axpy_tile(T* out, const T* init, const T* base, int64_t stride, const int32_t* idx,
                             const T* vals, int64_t nn) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  // Unrolled from the start: GCC otherwise turns the loads and stores of acc into memcpy and memset, and acc
  // into a stack array (half of this function's time in rep movs / rep stos, perf).
  Vec acc[NV];
  if (init) {
#pragma GCC unroll 16
    for (int i = 0; i < NV; ++i) acc[i] = Vec::loadu(init + i * W);
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < NV; ++i) acc[i] = Vec(T(0));
  }
  for (int64_t k = 0; k < nn; ++k) {
    const Vec v(vals[k]);
    const T* src = base + int64_t(idx[k]) * stride;
#pragma GCC unroll 16
    for (int i = 0; i < NV; ++i) acc[i] = at::vec::fmadd(v, Vec::loadu(src + i * W), acc[i]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < NV; ++i) acc[i].store(out + i * W);
}

// gather_axpy_tile over the columns [j0, j1): tiles of 12, 4 and 1 vectors, then the last vector again, ending
// at j1 (its columns before the tail get the same bits twice), or scalar fused multiply-adds when the range is
// shorter than a vector.
template <typename T>
void gather_axpy(T* out, const T* init, const T* base, int64_t stride, const int32_t* idx, const T* vals,
                 int64_t nn, int64_t j0, int64_t j1) {
  constexpr int64_t W = at::vec::Vectorized<T>::size();
  auto init_at = [&](int64_t j) { return init ? init + j : nullptr; };
  int64_t j = j0;
  for (; j + 12 * W <= j1; j += 12 * W) gather_axpy_tile<12>(out + j, init_at(j), base + j, stride, idx, vals, nn);
  for (; j + 4 * W <= j1; j += 4 * W) gather_axpy_tile<4>(out + j, init_at(j), base + j, stride, idx, vals, nn);
  for (; j + W <= j1; j += W) gather_axpy_tile<1>(out + j, init_at(j), base + j, stride, idx, vals, nn);
  if (j == j1) return;
  if (j1 - j0 >= W) {
    gather_axpy_tile<1>(out + j1 - W, init_at(j1 - W), base + j1 - W, stride, idx, vals, nn);
    return;
  }
  for (; j < j1; ++j) {
    T s = init ? init[j] : T(0);
    for (int64_t k = 0; k < nn; ++k) s = std::fma(vals[k], base[int64_t(idx[k]) * stride + j], s);
    out[j] = s;
  }
}

}  // namespace

template <typename T>
void VaeEngine<T>::reserve_encoder(int64_t B, const at::TensorOptions& opt) {
  if (B == B_) return;
  const int64_t Z = spec_.latent_dim;
  auto mk = [&](int64_t r, int64_t c) { return at::empty({r, c}, opt); };
  enc_.clear();
  g_enc_.clear();
  for (auto h : spec_.enc_hidden) {
    enc_.push_back(mk(B, h));
    g_enc_.push_back(mk(B, h));
  }
  head_ = mk(B, spec_.head_dim());
  g_head_ = mk(B, spec_.head_dim());
  mu_ = mk(B, Z);
  sigma_ = mk(B, Z);
  rec_ = at::empty({B}, opt);
  kl_ = at::empty({B}, opt);
  B_ = B;
}

template <typename T>
void VaeEngine<T>::reserve_decoder(int64_t N, const at::TensorOptions& opt) {
  if (N == N_) return;
  auto mk = [&](int64_t r, int64_t c) { return at::empty({r, c}, opt); };
  dec_.clear();
  g_dec_.clear();
  for (auto h : spec_.dec_hidden) {
    dec_.push_back(mk(N, h));
    g_dec_.push_back(mk(N, h));
  }
  z_ = mk(N, spec_.code_dim());
  g_z_ = mk(N, spec_.code_dim());
  logits_ = mk(N, spec_.out_dim());
  g_logits_ = mk(N, spec_.out_dim());
  ll_ = at::empty({N}, opt);
  N_ = N;
}

template <typename T>
void VaeEngine<T>::layer_forward(const at::Tensor& in, const at::Tensor& w, const at::Tensor& b,
                                 at::Tensor& out, Act act, const int64_t* y, int64_t period,
                                 int64_t cond_offset) {
  const int64_t in_dim = in.size(1);
  const int64_t H = w.size(0), R = in.size(0), ld = w.size(1);
  if (stored_transposed(w)) {
    sparse_input_forward(in, w, b, out, act, y, period, cond_offset);
    return;
  }
  // out = in w[:, :in_dim]^T (the one-hot condition, if any, occupies columns [cond_offset, ld) of w), then
  // bias and activation, each task on its own block of output columns.
  T* o = out.data_ptr<T>();
  const T* ip = in.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T slope = static_cast<T>(spec_.slope);
  with_act<T>(act, [&](auto a) {
    constexpr Act A = decltype(a)::value;
    for_blocks(H, col_block(R, H, in_dim), [&](int64_t j0, int64_t j1) {
      gemm<T>(false, true, R, j1 - j0, in_dim, T(1), ip, in_dim, wp + j0 * ld, ld, T(0), o + j0, H);
      for (int64_t r = 0; r < R; ++r) {
        T* row = o + r * H;
        if (y) {  // one-hot input: add the weight column of this row's label
          const T* wc = wp + cond_offset + y[r % period];
          for (int64_t j = j0; j < j1; ++j) row[j] += wc[j * ld];
        }
        bias_act_row<A, T>(row + j0, bp + j0, j1 - j0, slope);
      }
    });
  });
}

template <typename T>
void VaeEngine<T>::layer_backward(at::Tensor& dA, const at::Tensor& A, const at::Tensor& in,
                                  const at::Tensor& w, Act act, const at::Tensor& gw,
                                  const at::Tensor& gb, at::Tensor* d_in, const int64_t* y,
                                  int64_t period, int64_t cond_offset, bool param_grads) {
  const int64_t R = dA.size(0), H = dA.size(1), in_dim = in.size(1), ld = w.size(1);
  const bool sparse = stored_transposed(w);
  TORCH_CHECK(!sparse || (stored_transposed(gw) && d_in == nullptr), "fastvae: internal layout mismatch");
  T* d = dA.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const bool defer = param_grads && deferring();
  PendingLayer layer{d,  in.data_ptr<T>(), param_grads ? gw.data_ptr<T>() : nullptr, R, H, in_dim, ld,
                     sparse ? sparse_rows(ld) : col_block(R, H, in_dim), sparse, y, period, cond_offset};
  auto none = [](T*, int64_t) {};
  {  // Per block of output columns j0:j1 (one parallel region): dPre = dA * act'(A) in place, the bias
     // gradient as its column sums (each entry summed in row order, whatever the thread count) and, unless
     // deferred or sparse, the weight rows gw[j0:j1, :] = dPre[:, j0:j1]^T in.
    const T* a = A.data_ptr<T>();
    T* g = param_grads ? gb.data_ptr<T>() : nullptr;
    const T slope = static_cast<T>(spec_.slope);
    const int64_t width = sparse ? H : layer.width;
    with_act<T>(act, [&](auto tag) {
      constexpr Act AC = decltype(tag)::value;
      for_blocks(H, width, [&](int64_t j0, int64_t j1) {
        if (!param_grads) {  // the input gradient only
          if (AC != Act::Identity)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t j = j0; j < j1; ++j) d[r * H + j] *= act_grad<T>(AC, a[r * H + j], slope);
          return;
        }
        for (int64_t j = j0; j < j1; ++j) g[j] = T(0);
        for (int64_t r = 0; r < R; ++r) {
          T* dr = d + r * H;
          const T* ar = a + r * H;
          for (int64_t j = j0; j < j1; ++j) {
            if (AC != Act::Identity) dr[j] *= act_grad<T>(AC, ar[j], slope);
            g[j] += dr[j];
          }
        }
        if (!sparse && !defer) weight_grad_block(layer, j0, j1, none);
      });
    });
  }
  if (defer) {
    pending_.push_back(layer);
    blocks_.clear();
  } else if (sparse && param_grads) {
    for_blocks(ld, layer.width, [&](int64_t c0, int64_t c1) { weight_grad_block(layer, c0, c1, none); });
  }
  if (d_in) {  // d_in = dPre w[:, :in_dim], each task on a block of input columns
    T* di = d_in->data_ptr<T>();
    for_blocks(in_dim, col_block(R, in_dim, H), [&](int64_t c0, int64_t c1) {
      gemm<T>(false, false, R, c1 - c0, H, T(1), d, H, wp + c0, ld, T(0), di + c0, in_dim);
    });
  }
}

template <typename T>
template <typename F>
void VaeEngine<T>::weight_grad_block(const PendingLayer& l, int64_t j0, int64_t j1, const F& on_piece) {
  const int64_t R = l.R, H = l.H, ld = l.ld;
  if (!l.sparse) {
    T* gw = l.gw + j0 * ld;
    gemm_at_b<T>(j1 - j0, l.in_dim, R, l.d + j0, H, l.in, l.in_dim, gw, ld);
    if (l.in_dim != ld) {
      // Weight columns of the one-hot condition: sum of this layer's input-side grads per label.
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t c = l.in_dim; c < ld; ++c) l.gw[j * ld + c] = T(0);
      for (int64_t r = 0; r < R; ++r) {
        T* col = l.gw + l.cond_offset + l.y[r % l.period];
        const T* dr = l.d + r * H;
        for (int64_t j = j0; j < j1; ++j) col[j * ld] += dr[j];
      }
    }
    on_piece(gw, (j1 - j0) * ld);
    return;
  }
  // The sparse input layer, gw stored transposed as [ld, H] rows: rows j0:j1 (pixels, then the condition's columns),
  // gw.t()[c] = sum_r x[r, c] dPre[r] over the nonzero pixels (index_nonzeros). Each row is whole and summed in
  // row order r, so the bits depend on neither the blocks nor the thread count; blocks of whole rows keep the
  // threads off each other's cache lines.
  const int64_t D = l.in_dim;
  for (int64_t c = j0; c < std::min(j1, D); ++c) {
    T* g = l.gw + c * H;
    gather_axpy<T>(g, nullptr, l.d, H, nz_row_.data() + nz_ptr_[c], nz_val_.data() + nz_ptr_[c],
                   nz_ptr_[c + 1] - nz_ptr_[c], 0, H);
    on_piece(g, H);
  }
  const int64_t c0 = std::max(j0, D);
  if (c0 >= j1) return;
  for (int64_t c = c0; c < j1; ++c)
    for (int64_t j = 0; j < H; ++j) l.gw[c * H + j] = T(0);
  if (l.y) {
    for (int64_t r = 0; r < R; ++r) {
      const int64_t c = l.cond_offset + l.y[r % l.period];
      if (c < c0 || c >= j1) continue;
      T* g = l.gw + c * H;
      const T* dr = l.d + r * H;
      for (int64_t j = 0; j < H; ++j) g[j] += dr[j];
    }
  }
  on_piece(l.gw + c0 * H, (j1 - c0) * H);
}

template <typename T>
void VaeEngine<T>::defer_weight_grads(bool on) {
  defer_ = on;
  pending_.clear();
  blocks_.clear();
}

template <typename T>
bool VaeEngine<T>::pending(const at::Tensor& grad) const {
  const T* g = grad.data_ptr<T>();
  for (const auto& l : pending_)
    if (l.gw == g) return true;
  return false;
}

template <typename T>
uint32_t VaeEngine<T>::pending_grad_bound() const {
  if constexpr (!std::is_same<T, float>::value) {  // only the float32 trainer defers (cpp/training/trainer.cpp)
    TORCH_INTERNAL_ASSERT(pending_.empty(), "fastvae: deferred weight gradients are float32 only");
    return 0;
  } else {
    auto max_abs = [](const float* x, int64_t n) {  // +inf if an entry is NaN or +-inf
      const uint32_t bits = max_magnitude_bits(x, n);
      float v;
      std::memcpy(&v, &bits, sizeof v);
      return bits >= 0x7f800000u ? std::numeric_limits<double>::infinity() : double(v);
    };
    double bound = 0;
    for (const auto& l : pending_) {
      // Each entry is a sum of R products d * in, or of R entries of d (the condition columns): at most
      // R max|d| max(max|in|, 1) in exact arithmetic; computed in any order with rounding unit u = 2^-24, the float
      // sum exceeds that by at most a factor 1 + R u / (1 - R u) (Higham, Accuracy and Stability, Sec. 3.1).
      const double u = std::ldexp(1.0, -24), R = double(l.R);
      const double margin = R * u < 0.5 ? (1 + 2 * R * u) * 1.01 : std::numeric_limits<double>::infinity();
      const double b = R * max_abs(l.d, l.R * l.H) * std::max(1.0, max_abs(l.in, l.R * l.in_dim)) * margin;
      bound = std::isnan(b) ? std::numeric_limits<double>::infinity() : std::max(bound, b);
    }
    if (!(bound <= double(std::numeric_limits<float>::max()))) return 0x7f800000u;
    float f = std::nextafter(float(bound), std::numeric_limits<float>::infinity());  // rounded up
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
  }
}

template <typename T>
int64_t VaeEngine<T>::pending_blocks() {
  if (blocks_.empty())
    for (int64_t i = 0; i < static_cast<int64_t>(pending_.size()); ++i)
      for (int64_t j0 = 0; j0 < pending_[i].blocked(); j0 += pending_[i].width) blocks_.emplace_back(i, j0);
  return static_cast<int64_t>(blocks_.size());
}

template <typename T>
void VaeEngine<T>::finish_weight_grads(c10::function_ref<void(T*, int64_t)> on_piece) {
  const int64_t nb = pending_blocks();
  parallel_for_flushed(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const PendingLayer& l = pending_[blocks_[b].first];
      const int64_t j0 = blocks_[b].second;
      weight_grad_block(l, j0, std::min(l.blocked(), j0 + l.width), [&](T* g, int64_t n) { on_piece(g, n); });
    }
  });
  pending_.clear();
  blocks_.clear();
}

// Nonzero pixels of x [R, D], by image (compressed sparse rows) and by pixel (compressed sparse columns), each
// with the values, for the sparse input layer; neither pass then reads x with a stride of D. x is read once, 8
// pixels per compare in the AVX2 build; the by-pixel lists are filled from the by-image ones, rows in order.
template <typename T>
void VaeEngine<T>::index_nonzeros(const at::Tensor& x) {
  const int64_t R = x.size(0), D = x.size(1);
  const T* xp = x.data_ptr<T>();
  nz_rptr_.resize(R + 1);
  nz_col_.resize(R * D);  // room for every pixel: capacity kept, no allocation after the first batch
  nz_rval_.resize(R * D);
  int32_t* col = nz_col_.data();
  T* val = nz_rval_.data();
  int32_t n = 0;
  nz_rptr_[0] = 0;
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = xp + r * D;
    int64_t d = 0;
#if defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same<T, float>::value) {
      // 8 pixels per compare, with no branch: the nonzero lanes are moved to the front (their lane numbers from a
      // table by the compare's mask) and all 8 are stored, the count advancing by the nonzeros only. The stores
      // stay inside the buffers: n + 8 <= r D + d + 8 <= R D.
      static const auto lanes = [] {
        std::array<std::array<int32_t, 8>, 256> t{};
        for (int m = 0; m < 256; ++m)
          for (int l = 0, k = 0; l < 8; ++l)
            if (m >> l & 1) t[m][k++] = l;
        return t;
      }();
      for (; d + 8 <= D; d += 8) {
        const __m256 v = _mm256_loadu_ps(xr + d);
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes[mask].data()));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(col + n),
                            _mm256_add_epi32(idx, _mm256_set1_epi32(static_cast<int32_t>(d))));
        _mm256_storeu_ps(val + n, _mm256_permutevar8x32_ps(v, idx));
        n += __builtin_popcount(mask);
      }
    }
#endif
    for (; d < D; ++d) {  // written always, kept only when nonzero
      col[n] = static_cast<int32_t>(d);
      val[n] = xr[d];
      n += xr[d] != T(0);
    }
    nz_rptr_[r + 1] = n;
  }
  nz_ptr_.assign(D + 1, 0);
  for (int32_t k = 0; k < n; ++k) ++nz_ptr_[col[k] + 1];
  for (int64_t d = 0; d < D; ++d) nz_ptr_[d + 1] += nz_ptr_[d];
  nz_row_.resize(n);
  nz_val_.resize(n);
  nz_pos_.assign(nz_ptr_.begin(), nz_ptr_.end() - 1);
  for (int64_t r = 0; r < R; ++r)
    for (int32_t k = nz_rptr_[r]; k < nz_rptr_[r + 1]; ++k) {
      const int32_t p = nz_pos_[col[k]]++;
      nz_row_[p] = static_cast<int32_t>(r);
      nz_val_[p] = val[k];
    }
}

// Input layer on sparse (binarized) images: out[r] = b + sum over nonzero pixels d of x[r, d] * w[:, d], in
// pixel order. w is stored transposed, so w[:, d] is a contiguous row. Each image's sum stays in registers, 12
// vectors of columns at a time, while its pixels' weight rows stream by: about twice as fast as keeping the
// batch's outputs in L1 and adding each pixel's row to them, which stores every partial sum. Binarized MNIST has
// ~13-19% nonzero pixels, so this does a fifth of the dense product's work. Threads own disjoint column blocks.
template <typename T>
void VaeEngine<T>::sparse_input_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                                        at::Tensor& out, Act act, const int64_t* y, int64_t period,
                                        int64_t cond_offset) {
  const int64_t R = x.size(0), H = w.size(0);
  index_nonzeros(x);
  const T* wt = w.data_ptr<T>();  // [in, H] rows
  const T* bp = b.data_ptr<T>();
  T* o = out.data_ptr<T>();
  const int32_t* rptr = nz_rptr_.data();
  const int32_t* cols = nz_col_.data();
  const T* vals = nz_rval_.data();
  const T slope = static_cast<T>(spec_.slope);
  with_act<T>(act, [&](auto tag) {
    constexpr Act A = decltype(tag)::value;
    for_blocks(H, sparse_block(H), [&](int64_t j0, int64_t j1) {
      for (int64_t r = 0; r < R; ++r) {
        T* row = o + r * H;
        gather_axpy(row, bp, wt, H, cols + rptr[r], vals + rptr[r], rptr[r + 1] - rptr[r], j0, j1);
        if (y) {
          const T* wr = wt + (cond_offset + y[r % period]) * H;
          for (int64_t jj = j0; jj < j1; ++jj) row[jj] += wr[jj];
        }
        bias_act_row<A, T>(row + j0, nullptr, j1 - j0, slope);
      }
    });
  });
}

template <typename T>
void VaeEngine<T>::encode(at::TensorList params, const at::Tensor& x, const int64_t* y) {
  const int64_t B = x.size(0);
  reserve_encoder(B, x.options());
  const int64_t ne = spec_.n_enc_layers();
  for (int64_t k = 0; k + 1 < ne; ++k) {
    const at::Tensor& in = k == 0 ? x : enc_[k - 1];
    layer_forward(in, params[2 * k], params[2 * k + 1], enc_[k], spec_.act, k == 0 ? y : nullptr, B,
                  spec_.data_dim);
  }
  const at::Tensor& last = ne == 1 ? x : enc_[ne - 2];
  layer_forward(last, params[2 * (ne - 1)], params[2 * (ne - 1) + 1], head_, Act::Identity,
                ne == 1 ? y : nullptr, B, spec_.data_dim);
  if (!spec_.categorical()) heads_forward();  // categorical: head_ holds the logits
}

template <typename T>
void VaeEngine<T>::heads_forward() {
  const int64_t B = head_.size(0), Z = spec_.latent_dim;
  T* h = head_.data_ptr<T>();
  T* mu = mu_.data_ptr<T>();
  T* sg = sigma_.data_ptr<T>();
  const T slope = static_cast<T>(spec_.slope);
  const Act ma = spec_.mean_act, sa = spec_.scale_act;
  const Scale sc = spec_.scale;
  parallel_for_flushed(0, B, grain_rows(2 * Z), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* hr = h + i * 2 * Z;
      for (int64_t j = 0; j < Z; ++j) {
        T m = act_value<T>(ma, hr[j], slope);
        T s = act_value<T>(sa, hr[Z + j], slope);
        hr[j] = m;
        hr[Z + j] = s;
        mu[i * Z + j] = m;
        sg[i * Z + j] = sc == Scale::LogVar ? std::exp(T(0.5) * s) : sc == Scale::LogStd ? std::exp(s) : s;
      }
    }
  });
}

template <typename T>
void VaeEngine<T>::decode(at::TensorList params, const at::Tensor& z, const int64_t* y,
                          int64_t period) {
  const int64_t N = z.size(0);
  reserve_decoder(N, z.options());
  const int64_t ne = spec_.n_enc_layers(), nd = spec_.n_dec_layers();
  for (int64_t k = 0; k < nd; ++k) {
    const at::Tensor& in = k == 0 ? z : dec_[k - 1];
    at::Tensor& out = k + 1 == nd ? logits_ : dec_[k];
    layer_forward(in, params[2 * (ne + k)], params[2 * (ne + k) + 1], out,
                  k + 1 == nd ? Act::Identity : spec_.act, k == 0 ? y : nullptr, period,
                  spec_.code_dim());
  }
}

template <typename T>
void VaeEngine<T>::kl_forward(const at::Tensor& eps, Estimator est) {
  const int64_t B = mu_.size(0), Z = spec_.latent_dim, L = eps.size(0);
  const T* mu = mu_.data_ptr<T>();
  const T* sg = sigma_.data_ptr<T>();
  const T* hs = head_.data_ptr<T>();
  const T* ep = eps.data_ptr<T>();
  T* kl = kl_.data_ptr<T>();
  const Scale sc = spec_.scale;
  parallel_for_flushed(0, B, grain_rows(Z * L), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T acc = 0;
      for (int64_t j = 0; j < Z; ++j) {
        T s = hs[i * 2 * Z + Z + j], m = mu[i * Z + j], sd = sg[i * Z + j];
        T log_sd = sc == Scale::LogVar ? T(0.5) * s : sc == Scale::LogStd ? s : std::log(s);
        if (est == Estimator::Analytic) {
          T var = sc == Scale::LogVar ? std::exp(s) : sd * sd;
          acc += T(0.5) * (m * m + var - T(1)) - log_sd;
        } else {  // 1/L sum_l log q(z_l) - log p(z_l); the 2 pi constants cancel
          T mc = 0;
          for (int64_t l = 0; l < L; ++l) {
            T e = ep[(l * B + i) * Z + j], zz = m + sd * e;
            mc += T(0.5) * (zz * zz - e * e);
          }
          acc += mc / T(L) - log_sd;
        }
      }
      kl[i] = acc;
    }
  });
}

template <typename T>
void VaeEngine<T>::forward(at::TensorList params, const at::Tensor& x, const int64_t* y,
                           const at::Tensor& eps, Estimator est, const T* w_rec) {
  const int64_t B = x.size(0), L = eps.size(0), Z = spec_.latent_dim;
  TORCH_CHECK(!spec_.categorical(), "fastvae: a categorical latent takes uniform noise and a temperature "
              "(op vae_categorical_elbo, fastvae.elbo); this op is for Gaussian latents");
  TORCH_CHECK(!spec_.hierarchical() || est != Estimator::Analytic, "fastvae: a VAE with upper stochastic layers "
              "has no analytic KL; use estimator 'mc' or 'stl'");
  w_rec_ = w_rec;
  split_noise(eps);
  encode(params, x, y);
  reserve_decoder(L * B, x.options());
  {  // reparameterization: z_l = mu + sigma * eps_l
    const T* mu = mu_.data_ptr<T>();
    const T* sg = sigma_.data_ptr<T>();
    const T* ep = z1_noise(eps).template data_ptr<T>();
    T* z = z_.data_ptr<T>();
    for (int64_t l = 0; l < L; ++l)
      for (int64_t k = 0; k < B * Z; ++k) z[l * B * Z + k] = mu[k] + sg[k] * ep[l * B * Z + k];
  }
  decode(params, z_, y, B);
  // With upper layers, backward() goes through iwae_backward, which writes the likelihood's gradient itself.
  likelihood_pass(params, x, L, spec_.hierarchical() ? nullptr : w_rec);
  kl_forward(z1_noise(eps), est);
  if (spec_.hierarchical()) {  // the Monte Carlo KL against the upper layers' prior: minus the mean of delta
    upper_forward(params);
    const T* d = delta_.data_ptr<T>();
    T* kl = kl_.data_ptr<T>();
    for (int64_t i = 0; i < B; ++i) {
      T m = 0;
      for (int64_t l = 0; l < L; ++l) m += d[l * B + i];
      kl[i] -= m / T(L);
    }
  }
}

template <typename T>
void VaeEngine<T>::likelihood_pass(at::TensorList params, const at::Tensor& x, int64_t L, const T* w_rec) {
  const int64_t B = x.size(0), D = spec_.data_dim;
  const T* a = logits_.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  T* ll = ll_.data_ptr<T>();
  T* g = w_rec ? g_logits_.data_ptr<T>() : nullptr;
  const int64_t Do = spec_.out_dim();  // decoder row width (2D for a predicted Gaussian scale)
  const T* ls = prepare_learned_scale(params);
  const T* iv = ls ? inv_var_.data_ptr<T>() : nullptr;
  // exp and log1p per pixel make this pass worth splitting at a quarter of the usual grain.
  parallel_for_flushed(0, L * B, grain_rows(D) / 4 + 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r % B;
      ll[r] = likelihood_row<T>(spec_, a + r * Do, xp + i * D, D, g ? g + r * Do : nullptr,
                                g ? w_rec[i] / T(L) : T(0), ls, iv);
    }
  });
  if (ls && g) {  // gradient of the likelihood part with respect to the learned log sigma, for backward()
    std::vector<T> rw(L * B);
    for (int64_t r = 0; r < L * B; ++r) rw[r] = w_rec[r % B] / T(L);
    g_log_sigma_ = at::empty({D}, x.options());
    learned_scale_grad<T>(a, xp, iv, rw.data(), L * B, B, D, g_log_sigma_.data_ptr<T>());
  }
  T* rec = rec_.data_ptr<T>();
  for (int64_t i = 0; i < B; ++i) {
    T s = 0;
    for (int64_t l = 0; l < L; ++l) s += ll[l * B + i];
    rec[i] = s / T(L);
  }
}

template <typename T>
void VaeEngine<T>::backward(at::TensorList params, const at::Tensor& x, const int64_t* y,
                            const at::Tensor& eps, Estimator est, const T* w_kl,
                            at::TensorList grads) {
  const auto& s = spec_;
  const int64_t B = x.size(0), L = eps.size(0), Z = s.latent_dim;
  if (s.hierarchical()) {
    // The ELBO is the mean of the log weights (CIWAE with beta = 1); its rec and kl parts share the upper layers,
    // so it is differentiated as a whole: w_kl = -w_rec.
    for (int64_t i = 0; i < B; ++i)
      TORCH_CHECK(w_kl[i] == -w_rec_[i], "fastvae: a VAE with upper stochastic layers differentiates the ELBO as a "
                  "whole (rec - kl): rec or kl alone, or a KL weight other than 1, is not supported");
    log_w_ = log_weights(eps);
    iwae_backward(params, x, y, eps, est == Estimator::StickingTheLanding ? IwaeEstimator::StickingTheLanding
                                                                         : IwaeEstimator::Reparam,
                  w_rec_, grads, IwBound{Objective::Ciwae, 1, 1.0});
    return;
  }
  decoder_backward(params, y, B, grads);  // from the logits down to z: g_z_
  // Posterior heads: path gradient through z = mu + sigma * eps plus the KL term.
  {
    const T* gz = g_z_.data_ptr<T>();
    const T* ep = eps.data_ptr<T>();
    const T* mu = mu_.data_ptr<T>();
    const T* sg = sigma_.data_ptr<T>();
    const T* h = head_.data_ptr<T>();
    T* gh = g_head_.data_ptr<T>();
    const T slope = static_cast<T>(s.slope);
    parallel_for_flushed(0, B, grain_rows(Z * L), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const T wk = w_kl[i];
        for (int64_t j = 0; j < Z; ++j) {
          const int64_t ij = i * Z + j;
          const T m = mu[ij], sd = sg[ij], sv = h[i * 2 * Z + Z + j];
          T g_mu = 0, g_sd = 0, mean_ze = 0, mean_z = 0, mean_ee = 0, mean_e = 0;
          for (int64_t l = 0; l < L; ++l) {
            const int64_t r = (l * B + i) * Z + j;
            const T e = ep[r], zz = m + sd * e;
            g_mu += gz[r];
            g_sd += gz[r] * e;
            mean_z += zz;
            mean_ze += zz * e;
            mean_ee += e * e;
            mean_e += e;
          }
          mean_z /= T(L);
          mean_ze /= T(L);
          mean_ee /= T(L);
          mean_e /= T(L);
          // d sigma / d s and d log sigma / d s for the head's parameterization
          const T dsd = s.scale == Scale::LogVar ? T(0.5) * sd : s.scale == Scale::LogStd ? sd : T(1);
          const T dlog = s.scale == Scale::LogVar ? T(0.5) : s.scale == Scale::LogStd ? T(1) : T(1) / sv;
          T kl_mu, kl_s;
          if (est == Estimator::Analytic) {
            kl_mu = m;
            kl_s = s.scale == Scale::LogVar   ? T(0.5) * (std::exp(sv) - T(1))
                   : s.scale == Scale::LogStd ? sd * sd - T(1)
                                              : sd - T(1) / sd;
          } else if (est == Estimator::MonteCarlo) {
            kl_mu = mean_z;
            kl_s = mean_ze * dsd - dlog;
          } else {  // sticking the landing: q's parameters held fixed inside log q
            kl_mu = mean_z - mean_e / sd;
            kl_s = mean_ze * dsd - mean_ee * dlog;
          }
          const T wkj = kl_dim_w_ ? wk * kl_dim_w_[j] : wk;  // free bits: 0 for dimensions under the floor
          const T gm = g_mu + wkj * kl_mu;
          const T gs = g_sd * dsd + wkj * kl_s;
          gh[i * 2 * Z + j] = gm * act_grad<T>(s.mean_act, h[i * 2 * Z + j], slope);
          gh[i * 2 * Z + Z + j] = gs * act_grad<T>(s.scale_act, sv, slope);
        }
      }
    });
  }
  encoder_backward(params, x, y, grads);  // from the heads down to the input
  if (s.learned_scale()) grads[s.n_params() - 1].copy_(g_log_sigma_);
}

template <typename T>
at::Tensor VaeEngine<T>::log_weights(const at::Tensor& eps) {
  const int64_t B = mu_.size(0), Z = spec_.latent_dim, L = eps.size(0);
  auto out = at::empty({L, B}, mu_.options());
  const T* mu = mu_.data_ptr<T>();
  const T* sg = sigma_.data_ptr<T>();
  const T* hs = head_.data_ptr<T>();
  const T* ep = z1_noise(eps).template data_ptr<T>();
  const T* ll = ll_.data_ptr<T>();
  const T* delta = spec_.hierarchical() ? delta_.data_ptr<T>() : nullptr;
  T* o = out.data_ptr<T>();
  const Scale sc = spec_.scale;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t i = 0; i < B; ++i) {
      T acc = ll[l * B + i];
      for (int64_t j = 0; j < Z; ++j) {
        const T s = hs[i * 2 * Z + Z + j], e = ep[(l * B + i) * Z + j];
        const T zz = mu[i * Z + j] + sg[i * Z + j] * e;
        const T log_sd = sc == Scale::LogVar ? T(0.5) * s : sc == Scale::LogStd ? s : std::log(s);
        acc -= T(0.5) * (zz * zz - e * e) - log_sd;  // log p(z) - log q(z|x)
      }
      o[l * B + i] = delta ? acc + delta[l * B + i] : acc;
    }
  return out;
}

// ---- IWAE bound and its gradient estimators (docs/engine.md, "IWAE and its gradient estimators") ----

namespace {
// log sum_l exp(v[l * stride]) in a plain loop: at::logsumexp and at::softmax over a [K, B] tensor split B by
// threads, and elements that fall in a vector tail round differently, so the bound and its gradient would
// depend on the thread count. The sum is kept in double: the evaluation's K = 5000 terms in float32 would
// lose digits one by one.
template <typename T>
T column_logsumexp(const T* v, int64_t K, int64_t stride) {
  T m = v[0];
  for (int64_t l = 1; l < K; ++l) m = std::max(m, v[l * stride]);
  if (!std::isfinite(m)) return m;
  double sum = 0;
  for (int64_t l = 0; l < K; ++l) sum += std::exp(static_cast<double>(v[l * stride] - m));
  return m + static_cast<T>(std::log(sum));
}

// The objective's value for image i from its log weights lw[l * B] (sample l = m * Kg + k of group m).
template <typename T>
T iw_value(const T* lw, int64_t K, int64_t B, const IwBound& ob) {
  const int64_t M = ob.groups, Kg = K / M;
  switch (ob.kind) {
    case Objective::Miwae: {  // 1/M sum_m [logsumexp_k log w_mk - log Kg]
      double sum = 0;
      for (int64_t m = 0; m < M; ++m) sum += static_cast<double>(column_logsumexp(lw + m * Kg * B, Kg, B));
      return static_cast<T>(sum / M) - std::log(static_cast<T>(Kg));
    }
    case Objective::Ciwae: {  // beta 1/K sum_l log w_l + (1 - beta) [logsumexp_l log w_l - log K]
      double mean = 0;
      for (int64_t l = 0; l < K; ++l) mean += static_cast<double>(lw[l * B]);
      const T iwae = column_logsumexp(lw, K, B) - std::log(static_cast<T>(K));
      return static_cast<T>(ob.beta * mean / K) + static_cast<T>(1 - ob.beta) * iwae;
    }
    default:  // IWAE(K); PIWAE reports the decoder's objective IWAE(M Kg)
      return column_logsumexp(lw, K, B) - std::log(static_cast<T>(K));
  }
}

// The weights of the objective's gradient for image i, from its log weights lw[l * B] into c_dec, c_enc and r
// (each written at [l * B]): d objective / d log w_l for the decoder (c_dec) and the encoder (c_enc; different
// for PIWAE only), and the factor r of DReG's decoder path (its encoder weight is r c_enc; docs/engine.md).
// With wt the softmax of the log weights over the image's K samples and wg the softmax within the group:
//   IWAE  c = wt,                         r = wt
//   MIWAE c = wg / M,                     r = wg
//   CIWAE c = beta / K + (1 - beta) wt,   r = (beta / K + (1 - beta) wt^2) / c
//   PIWAE c_dec = wt, c_enc = wg / M,     r = wg
template <typename T>
void iw_weights(const T* lw, int64_t K, int64_t B, const IwBound& ob, T* c_dec, T* c_enc, T* r) {
  const int64_t M = ob.groups, Kg = K / M;
  const bool grouped = ob.kind == Objective::Miwae || ob.kind == Objective::Piwae;
  if (ob.kind != Objective::Miwae) {  // the softmax over all K samples
    const T lse = column_logsumexp(lw, K, B);
    for (int64_t l = 0; l < K; ++l) {
      const T wt = std::exp(lw[l * B] - lse);
      if (ob.kind == Objective::Ciwae) {
        const T a = static_cast<T>(ob.beta / K), b = static_cast<T>(1 - ob.beta);
        c_dec[l * B] = c_enc[l * B] = a + b * wt;
        r[l * B] = ob.beta > 0 ? (a + b * wt * wt) / (a + b * wt) : wt;
      } else {
        c_dec[l * B] = wt;
        if (!grouped) c_enc[l * B] = r[l * B] = wt;
      }
    }
  }
  if (grouped) {
    for (int64_t m = 0; m < M; ++m) {
      const T* g = lw + m * Kg * B;
      const T lse = column_logsumexp(g, Kg, B);
      for (int64_t k = 0; k < Kg; ++k) {
        const int64_t l = (m * Kg + k) * B;
        const T wg = std::exp(lw[l] - lse);
        c_enc[l] = wg / static_cast<T>(M);
        r[l] = wg;
        if (ob.kind == Objective::Miwae) c_dec[l] = c_enc[l];
      }
    }
  }
}
}  // namespace

template <typename T>
at::Tensor VaeEngine<T>::iwae_forward(at::TensorList params, const at::Tensor& x, const int64_t* y,
                                      const at::Tensor& eps, const IwBound& ob) {
  forward(params, x, y, eps, Estimator::MonteCarlo, nullptr);
  log_w_ = log_weights(eps);  // [K, B]
  const int64_t K = log_w_.size(0), B = log_w_.size(1);
  TORCH_INTERNAL_ASSERT(ob.kind != Objective::Elbo && ob.groups >= 1 && K % ob.groups == 0);
  auto out = at::empty({B}, log_w_.options());
  const T* lw = log_w_.data_ptr<T>();
  T* o = out.data_ptr<T>();
  for (int64_t i = 0; i < B; ++i) o[i] = iw_value(lw + i, K, B, ob);
  return out;
}

template <typename T>
void VaeEngine<T>::decoder_backward(at::TensorList params, const int64_t* y, int64_t B, at::TensorList grads,
                                    bool param_grads, bool z_grad) {
  const auto& s = spec_;
  const int64_t ne = s.n_enc_layers(), nd = s.n_dec_layers();
  for (int64_t k = nd - 1; k >= 0; --k) {
    const at::Tensor& in = k == 0 ? z_ : dec_[k - 1];
    at::Tensor& dA = k + 1 == nd ? g_logits_ : g_dec_[k];
    const at::Tensor& A = k + 1 == nd ? logits_ : dec_[k];
    at::Tensor* d_in = k == 0 ? (z_grad ? &g_z_ : nullptr) : &g_dec_[k - 1];
    layer_backward(dA, A, in, params[2 * (ne + k)], k + 1 == nd ? Act::Identity : s.act,
                   grads[2 * (ne + k)], grads[2 * (ne + k) + 1], d_in, k == 0 ? y : nullptr, B,
                   s.code_dim(), param_grads);
  }
}

template <typename T>
void VaeEngine<T>::encoder_backward(at::TensorList params, const at::Tensor& x, const int64_t* y,
                                    at::TensorList grads) {
  const auto& s = spec_;
  const int64_t ne = s.n_enc_layers(), B = x.size(0);
  for (int64_t k = ne - 1; k >= 0; --k) {
    const at::Tensor& in = k == 0 ? x : enc_[k - 1];
    at::Tensor& dA = k + 1 == ne ? g_head_ : g_enc_[k];
    const at::Tensor& A = k + 1 == ne ? head_ : enc_[k];
    at::Tensor* d_in = k == 0 ? nullptr : &g_enc_[k - 1];
    layer_backward(dA, A, in, params[2 * k], k + 1 == ne ? Act::Identity : s.act, grads[2 * k],
                   grads[2 * k + 1], d_in, k == 0 ? y : nullptr, B, s.data_dim);
  }
}

// d/dtheta of sum_i u_i bound_i = sum_i u_i sum_l c_il d log w_il / dtheta with c_il = d bound_i / d log w_il
// (iw_weights; for IWAE c = wn = softmax_l log w). Decoder: c_il d log p(x | z_il) / dtheta. Encoder, with
// z = mu + sigma eps and G_l = d log p(x|z_l)/dz:
//   reparam  sum_l c_l [(G_l - z_l) dz_l/dphi] + d log sigma/dphi          (total derivative of log w_l)
//   stl      sum_l c_l [(G_l - z_l + eps_l / sigma) dz_l/dphi]             (q's parameters fixed in log q)
//   dreg     sum_l r_l c_l [(G_l - z_l + eps_l / sigma) dz_l/dphi]         (Tucker et al. 2018: r c = wn^2 for IWAE)
// PIWAE's encoder weights differ from its decoder's: the decoder is run back a second time, for z's gradient only.
template <typename T>
void VaeEngine<T>::iwae_backward(at::TensorList params, const at::Tensor& x, const int64_t* y,
                                 const at::Tensor& eps, IwaeEstimator est, const T* u, at::TensorList grads,
                                 const IwBound& ob) {
  const auto& s = spec_;
  const int64_t B = x.size(0), K = eps.size(0), Z = s.latent_dim, D = s.data_dim;
  if (!iw_w_.defined() || iw_w_.numel() != 3 * K * B) iw_w_ = at::empty({3, K, B}, log_w_.options());
  T* c_dec = iw_w_.data_ptr<T>();  // c_dec, c_enc, r, each [K, B]
  T* c_enc = c_dec + K * B;
  T* rr = c_enc + K * B;
  {
    const T* lw = log_w_.data_ptr<T>();
    for (int64_t i = 0; i < B; ++i) iw_weights(lw + i, K, B, ob, c_dec + i, c_enc + i, rr + i);
  }
  const T* ls = s.learned_scale() ? params[s.n_params() - 1].data_ptr<T>() : nullptr;
  // The likelihood gradient of each sample, weighted by u_i c_il, from the per-row likelihood function.
  auto likelihood_grad = [&](const T* c) {
    const T* a = logits_.data_ptr<T>();
    const T* xp = x.data_ptr<T>();
    T* g = g_logits_.data_ptr<T>();
    const int64_t Do = s.out_dim();
    const T* iv = ls ? inv_var_.data_ptr<T>() : nullptr;  // set by iwae_forward()
    parallel_for_flushed(0, K * B, grain_rows(D) / 4 + 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r % B;
        likelihood_row<T>(spec_, a + r * Do, xp + i * D, D, g + r * Do, u[i] * c[r], ls, iv);
      }
    });
  };
  likelihood_grad(c_dec);
  if (ls) {  // log sigma gradient sum_r u_i c_r d log p / d log sigma, in its own column pass
    std::vector<T> rw(K * B);
    for (int64_t r = 0; r < K * B; ++r) rw[r] = u[r % B] * c_dec[r];
    learned_scale_grad<T>(logits_.data_ptr<T>(), x.data_ptr<T>(), inv_var_.data_ptr<T>(), rw.data(), K * B, B, D,
                          grads[s.n_params() - 1].data_ptr<T>());
  }
  const bool partitioned = ob.kind == Objective::Piwae;
  // PIWAE's second decoder pass overwrites the first's pre-activation gradients, and the upper layers' backward
  // runs their layers more than once: their weight gradients are computed at once (defer_weight_grads).
  struct Suspend {
    bool& flag;
    const bool before;
    ~Suspend() { flag = before; }
  } suspend{defer_suspended_, defer_suspended_};
  if (partitioned || s.hierarchical()) defer_suspended_ = true;
  decoder_backward(params, y, B, grads, true, !partitioned);  // g_z_ = u c G
  if (partitioned) {
    likelihood_grad(c_enc);
    decoder_backward(params, y, B, grads, false, true);
  }
  const T* dreg = est == IwaeEstimator::DReG ? rr : nullptr;
  if (s.hierarchical()) {  // the upper layers: their parameters' gradients and g_up1_, their share of dz1
    if (partitioned) {
      upper_backward(params, u, c_dec, nullptr, est, B, grads, true, false);
      upper_backward(params, u, c_enc, dreg, est, B, grads, false, true);
    } else {
      upper_backward(params, u, c_enc, dreg, est, B, grads, true, true);
    }
  }
  {
    const T* gz = g_z_.data_ptr<T>();
    const T* gup = s.hierarchical() ? g_up1_.data_ptr<T>() : nullptr;
    const T* ep = z1_noise(eps).template data_ptr<T>();
    const T* mu = mu_.data_ptr<T>();
    const T* sg = sigma_.data_ptr<T>();
    const T* h = head_.data_ptr<T>();
    T* gh = g_head_.data_ptr<T>();
    const T slope = static_cast<T>(s.slope);
    parallel_for_flushed(0, B, grain_rows(Z * K), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = 0; j < Z; ++j) {
          const int64_t ij = i * Z + j;
          const T m = mu[ij], sd = sg[ij], sv = h[i * 2 * Z + Z + j];
          const T dsd = s.scale == Scale::LogVar ? T(0.5) * sd : s.scale == Scale::LogStd ? sd : T(1);
          const T dlog = s.scale == Scale::LogVar ? T(0.5) : s.scale == Scale::LogStd ? T(1) : T(1) / sv;
          T g_mu = 0, g_sd = 0, g_log = 0;  // d/dmu, d/dsigma (path), d/dlog sigma (direct)
          for (int64_t l = 0; l < K; ++l) {
            const int64_t r = (l * B + i) * Z + j;
            const T w = c_enc[l * B + i], e = ep[r], zz = m + sd * e;
            T dz;  // d(weighted log w_l)/dz_l
            if (est == IwaeEstimator::Reparam) {
              dz = gz[r] - u[i] * w * zz;
              g_log += u[i] * w;
            } else if (est == IwaeEstimator::StickingTheLanding) {
              dz = gz[r] + u[i] * w * (e / sd - zz);
            } else {  // DReG: every path term weighted by r
              dz = rr[l * B + i] * (gz[r] + u[i] * w * (e / sd - zz));
            }
            if (gup) dz += gup[r];  // already weighted by r for DReG
            g_mu += dz;
            g_sd += dz * e;
          }
          const T gs = g_sd * dsd + g_log * dlog;
          gh[i * 2 * Z + j] = g_mu * act_grad<T>(s.mean_act, h[i * 2 * Z + j], slope);
          gh[i * 2 * Z + Z + j] = gs * act_grad<T>(s.scale_act, sv, slope);
        }
      }
    });
  }
  encoder_backward(params, x, y, grads);
}

// ---- learned Gaussian scale and free bits (issue 9 items 1 and 4) ----

template <typename T>
const T* VaeEngine<T>::prepare_learned_scale(at::TensorList params) {
  if (!spec_.learned_scale()) return nullptr;
  const at::Tensor& ls = params[spec_.n_params() - 1];
  inv_var_ = at::exp(ls * -2.0).contiguous();  // 1 / sigma^2 per pixel, once per pass
  return ls.data_ptr<T>();
}

template <typename T>
at::Tensor VaeEngine<T>::kl_per_dim() const {
  const int64_t B = mu_.size(0), Z = spec_.latent_dim;
  auto out = at::zeros({Z}, at::kDouble);
  double* o = out.data_ptr<double>();
  const T* mu = mu_.data_ptr<T>();
  const T* sg = sigma_.data_ptr<T>();
  const T* hs = head_.data_ptr<T>();
  const Scale sc = spec_.scale;
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < Z; ++j) {  // the analytic KL of kl_forward, per dimension
      const T s = hs[i * 2 * Z + Z + j], m = mu[i * Z + j], sd = sg[i * Z + j];
      const T log_sd = sc == Scale::LogVar ? T(0.5) * s : sc == Scale::LogStd ? s : std::log(s);
      const T var = sc == Scale::LogVar ? std::exp(s) : sd * sd;
      o[j] += static_cast<double>(T(0.5) * (m * m + var - T(1)) - log_sd);
    }
  return out;
}

template class VaeEngine<float>;
template class VaeEngine<double>;

}  // namespace cpu
}  // namespace fastvae
