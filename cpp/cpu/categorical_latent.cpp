// Categorical latent of the VAE engine (issue 9 item 3; Jang, Gu & Poole 2017, arXiv 1611.01144).
//
// N = latent_dim variables of K = categories classes. The encoder head gives logits l [B, N*K];
// q(c_n = k | x) = softmax(l_n)_k. Sample l of image i, variable n, with uniforms u [L, B, N*K]:
//   y = softmax((l_n + G) / tau),  G = -log(-log u)      (gumbel_block, the fastvae.gumbel_softmax kernel)
//   hard (straight-through): the decoder reads one_hot(argmax y), the backward uses y's softmax Jacobian.
// rec_i = 1/L sum_l log p(x_i | y_il) (the engine's likelihood rows), kl_i = sum_n sum_k q_nk (log q_nk + log K)
// (analytic KL to the uniform prior), elbo_i = rec_i - kl_i. With hard, y's argmax is a draw of Categorical(q)
// (Gumbel-max), so the hard ELBO is the ELBO of the discrete model.
// Gradient of J = sum_i w_rec[i] rec_i + w_kl[i] kl_i with respect to the logits:
//   dJ/dl_n = sum_l y_ln * (g_ln - <g_ln, y_ln>) / tau  +  w_kl q_n * (log q_n - <q_n, log q_n>),
// g_ln = dJ/d(decoder input of variable n, sample l).
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "cpu/flush_denormals.h"
#include "cpu/gumbel_softmax.h"
#include "cpu/vae_engine.h"

namespace fastvae {
namespace cpu {

namespace {
int64_t rows_per_task(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)); }

// log q = log_softmax(l) of one variable's K logits into lq; returns sum_k q_k (log q_k + log K).
template <typename T>
T log_softmax_kl(const T* l, int64_t K, T* lq) {
  T m = l[0];
  for (int64_t k = 1; k < K; ++k) m = std::max(m, l[k]);
  T s = 0;
  for (int64_t k = 0; k < K; ++k) s += std::exp(l[k] - m);
  const T lse = m + std::log(s), log_k = std::log(T(K));
  T kl = 0;
  for (int64_t k = 0; k < K; ++k) {
    lq[k] = l[k] - lse;
    kl += std::exp(lq[k]) * (lq[k] + log_k);
  }
  return kl;
}
}  // namespace

template <typename T>
void VaeEngine<T>::categorical_forward(at::TensorList params, const at::Tensor& x, const int64_t* y,
                                       const at::Tensor& u, double tau, bool hard, const T* w_rec) {
  TORCH_CHECK(spec_.categorical(), "fastvae: categorical_forward needs latent='categorical'");
  const int64_t B = x.size(0), L = u.size(0), N = spec_.latent_dim, K = spec_.categories, NK = N * K;
  encode(params, x, y);
  reserve_decoder(L * B, x.options());
  if (hard && (!y_soft_.defined() || y_soft_.size(0) != L * B)) y_soft_ = at::empty({L * B, NK}, x.options());
  T* soft = hard ? y_soft_.data_ptr<T>() : z_.data_ptr<T>();
  T* z = z_.data_ptr<T>();
  const T* lg = head_.data_ptr<T>();
  const T* up = u.data_ptr<T>();
  const T inv_tau = static_cast<T>(1.0 / tau);
  std::atomic<int> status{0};
  parallel_for_flushed(0, L * B, rows_per_task(NK), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // row r = sample l * B + image i, as the decoder's rows
      const int st = gumbel_block<T>(lg + (r % B) * NK, up + r * NK, soft + r * NK, N, K, inv_tau, 0, 0);
      if (st) {
        status.fetch_or(st);
        return;
      }
      if (hard) {
        T* zr = z + r * NK;
        std::fill(zr, zr + NK, T(0));
        for (int64_t n = 0; n < N; ++n) zr[n * K + argmax_row(soft + r * NK + n * K, K)] = T(1);
      }
    }
  });
  const int st = status.load();
  gumbel_status_ = st;
  TORCH_CHECK(!(st & kBadNoise), "fastvae: the categorical noise u must be uniform draws strictly inside (0, 1)");
  if (st) {  // NaN or infinite logits (a diverged model): report a non-finite ELBO, the loop stops on it
    rec_.fill_(NAN);
    kl_.fill_(NAN);
    return;
  }
  decode(params, z_, y, B);
  likelihood_pass(params, x, L, w_rec);
  T* kl = kl_.data_ptr<T>();
  parallel_for_flushed(0, B, rows_per_task(NK), [&](int64_t i0, int64_t i1) {
    std::vector<T> lq(K);
    for (int64_t i = i0; i < i1; ++i) {
      T acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += log_softmax_kl(lg + i * NK + n * K, K, lq.data());
      kl[i] = acc;
    }
  });
}

template <typename T>
void VaeEngine<T>::categorical_backward(at::TensorList params, const at::Tensor& x, const int64_t* y, double tau,
                                        bool hard, const T* w_kl, at::TensorList grads) {
  const int64_t B = x.size(0), N = spec_.latent_dim, K = spec_.categories, NK = N * K, L = z_.size(0) / B;
  decoder_backward(params, y, B, grads);  // g_z_ = dJ/d(decoder input) [L*B, N*K]
  const T* soft = hard ? y_soft_.data_ptr<T>() : z_.data_ptr<T>();
  const T* gz = g_z_.data_ptr<T>();
  const T* lg = head_.data_ptr<T>();
  T* gh = g_head_.data_ptr<T>();
  const T inv_tau = static_cast<T>(1.0 / tau);
  parallel_for_flushed(0, B, rows_per_task(NK * L), [&](int64_t i0, int64_t i1) {
    std::vector<T> lq(K), tmp(NK);
    for (int64_t i = i0; i < i1; ++i) {
      T* g = gh + i * NK;
      std::fill(g, g + NK, T(0));
      for (int64_t l = 0; l < L; ++l) {  // Gumbel-softmax path: softmax backward of each sample
        const int64_t r = l * B + i;
        softmax_bwd_rows<T>(gz + r * NK, soft + r * NK, tmp.data(), N, K, inv_tau);
        for (int64_t j = 0; j < NK; ++j) g[j] += tmp[j];
      }
      for (int64_t n = 0; n < N; ++n) {  // KL(q || uniform): q_k (log q_k - sum_j q_j log q_j)
        log_softmax_kl(lg + i * NK + n * K, K, lq.data());
        T ent = 0;
        for (int64_t k = 0; k < K; ++k) ent += std::exp(lq[k]) * lq[k];
        for (int64_t k = 0; k < K; ++k) g[n * K + k] += w_kl[i] * std::exp(lq[k]) * (lq[k] - ent);
      }
    }
  });
  encoder_backward(params, x, y, grads);
  if (spec_.learned_scale()) grads[spec_.n_params() - 1].copy_(g_log_sigma_);
}

#define FASTVAE_INSTANTIATE(T)                                                                                   \
  template void VaeEngine<T>::categorical_forward(at::TensorList, const at::Tensor&, const int64_t*,             \
                                                  const at::Tensor&, double, bool, const T*);                    \
  template void VaeEngine<T>::categorical_backward(at::TensorList, const at::Tensor&, const int64_t*, double, bool, \
                                                   const T*, at::TensorList);
FASTVAE_INSTANTIATE(float)
FASTVAE_INSTANTIATE(double)
#undef FASTVAE_INSTANTIATE

}  // namespace cpu
}  // namespace fastvae
