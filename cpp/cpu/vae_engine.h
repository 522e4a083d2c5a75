// Fused forward and hand-derived backward of an MLP VAE with Bernoulli decoder (CPU).
//
// Model (Kingma & Welling 2014; STATS 305C HW6 Problem 3 and the other homework presets):
//   q(z|x,y) = N(mu, diag sigma^2),  [mu, s] = heads(enc([x, onehot(y)])),  z = mu + sigma * eps,
//   p(x|z,y) = Bernoulli(logits = dec([z, onehot(y)])),   p(z) = N(0, I).
// Per image i with L samples: rec_i = 1/L sum_l log p(x_i | z_il),  kl_i = KL(q || p) (analytic) or its
// Monte Carlo estimate 1/L sum_l [log q(z_il) - log p(z_il)];  elbo_i = rec_i - kl_i.
// The backward computes d/dtheta of sum_i w_rec[i] rec_i + w_kl[i] kl_i; no autograd graph is built.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/FunctionRef.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "vae_spec.h"

namespace fastvae {
namespace cpu {

template <typename T>
class VaeEngine {
 public:
  explicit VaeEngine(VaeSpec spec) : spec_(std::move(spec)) {}

  const VaeSpec& spec() const { return spec_; }

  // Encoder pass on x [B, D] (with labels y [B] if conditional): fills mu() and sigma(), each [B, Z].
  void encode(at::TensorList params, const at::Tensor& x, const int64_t* y);
  // Decoder pass on z [N, Z]; row r uses label y[r % B] (B = label period). Fills logits() [N, D].
  void decode(at::TensorList params, const at::Tensor& z, const int64_t* y, int64_t label_period);

  // Full pass with eps [L, B, Z]: rec() and kl() per image [B]. If w_rec is given, also prepares the
  // gradient of the likelihood part so that backward() can follow.
  void forward(at::TensorList params, const at::Tensor& x, const int64_t* y, const at::Tensor& eps,
               Estimator est, const T* w_rec);
  // Gradient with respect to every parameter into `grads` (same shapes as params; overwritten).
  // Must follow forward() with the same inputs and a non-null w_rec.
  void backward(at::TensorList params, const at::Tensor& x, const int64_t* y, const at::Tensor& eps,
                Estimator est, const T* w_kl, at::TensorList grads);

  // log p(x, z_l) - log q(z_l | x) for each sample of the last forward(): [L, B] (IWAE weights).
  at::Tensor log_weights(const at::Tensor& eps);

  // An importance-weighted bound per image [B] for eps [K, B, Z]: by default IWAE (Burda et al. 2016),
  // log 1/K sum_l exp(log w_l); MIWAE, CIWAE or PIWAE by `ob` (vae_spec.h; PIWAE's value is the decoder's
  // IWAE(K)). Keeps the log weights for iwae_backward(). `ob` must have passed check_iw_bound.
  at::Tensor iwae_forward(at::TensorList params, const at::Tensor& x, const int64_t* y, const at::Tensor& eps,
                          const IwBound& ob = IwBound{});
  // Gradient of sum_i u[i] bound_i with respect to every parameter into `grads`, the encoder part by the
  // estimator `est` (docs/engine.md, "IWAE and its gradient estimators"); for PIWAE the decoder's gradient is
  // IWAE(K)'s and the encoder's MIWAE(M, K/M)'s. Must follow iwae_forward() with the same `ob`.
  void iwae_backward(at::TensorList params, const at::Tensor& x, const int64_t* y, const at::Tensor& eps,
                     IwaeEstimator est, const T* u, at::TensorList grads, const IwBound& ob = IwBound{});

  // Free bits (Kingma et al. 2016): per-latent-dimension multipliers [Z] of the KL gradient in backward()
  // (nullptr: all 1). The pointer must stay valid until backward() has run.
  void set_kl_dim_weights(const T* w) { kl_dim_w_ = w; }
  // Analytic KL of the last forward() per latent dimension, summed over the batch: [Z] float64.
  at::Tensor kl_per_dim() const;
  // ---- categorical latent (spec().categorical(); cpp/cpu/categorical_latent.cpp, docs/engine.md) ----
  // Full pass with uniforms u [L, B, N*K] strictly inside (0, 1): per variable y = softmax((logits + G) / tau),
  // G = -log(-log u) (the kernel of fastvae.gumbel_softmax), one_hot(argmax y) into the decoder if `hard`;
  // rec() = 1/L sum_l log p(x | y_l), kl() = KL(q || uniform) analytic. w_rec as in forward().
  void categorical_forward(at::TensorList params, const at::Tensor& x, const int64_t* y, const at::Tensor& u,
                           double tau, bool hard, const T* w_rec);
  // Gradient of sum_i w_rec[i] rec_i + w_kl[i] kl_i into `grads`; must follow categorical_forward() with a
  // non-null w_rec. The straight-through estimator passes the decoder's gradient to the soft sample.
  void categorical_backward(at::TensorList params, const at::Tensor& x, const int64_t* y, double tau, bool hard,
                            const T* w_kl, at::TensorList grads);
  // Encoder logits [B, head width] of the last encode() (for a categorical latent: [B, N*K]).
  const at::Tensor& head() const { return head_; }

  // ---- upper stochastic layers (spec().hierarchical(); cpp/cpu/upper_latents.cpp, docs/engine.md) ----
  // With layers z2, z3, ... above z1, eps is [L, B, noise_dim()]: z1's noise, then each upper layer's. The engine
  // treats the layers above z1 as z1's prior: log p(z1) in the log weights becomes
  //   log p(z1 | z2) + ... + log p(z_top) - log q(z2 | z1) - ... (Burda et al. 2016, Sec. 5),
  // each q(z_j | z_{j-1}) reparameterized as z_j = mu_j + sigma_j eps_j. The ELBO is then the mean of the log
  // weights, differentiable as a whole only (backward() needs w_kl = -w_rec) and without an analytic KL.

  // ---- deferred weight gradients: the trainer's fused Adam step (issue 21 item 3, docs/engine.md) ----
  // With defer_weight_grads(true), the next backward (backward, iwae_backward, categorical_backward) computes the
  // pre-activation, bias and input gradients of every layer as usual but leaves the weight gradients pending, so
  // that finish_weight_grads() computes them block by block and hands each block, still in cache, to the caller
  // (the trainer runs Adam on it). A backward that runs a layer's backward twice (PIWAE's second decoder pass) or
  // has upper stochastic layers computes its weight gradients at once, as without deferring: nothing is pending.
  // Setting the flag (either way) drops what is pending.
  void defer_weight_grads(bool on);
  // Whether the weight gradient `grad` (one of the backward's `grads`) is pending.
  bool pending(const at::Tensor& grad) const;
  // A bound on max |g| over the pending weight gradients, as float32 bits (>= 0x7f800000: not finite, or beyond
  // float32): R max|dPre| max(max|in|, 1), R rows summed, with a margin for rounding, per layer. Float32 only.
  uint32_t pending_grad_bound() const;
  // Computes the pending weight gradients into their `grads` tensors in one range over the blocks, then, after each
  // piece of a block is final, on_piece(g, n): the n entries from g on, contiguous in the tensor's storage.
  // Nothing is pending after it.
  void finish_weight_grads(c10::function_ref<void(T*, int64_t)> on_piece);

  // ---- non-finite results (cpp/cpu/vae_overflow.cpp; issue 20 item 6) ----
  // After a pass whose results are not finite although x, the noise and the parameters are (the ops check that
  // first), where the float range was left, as the end of a message: x too large for a Gaussian likelihood, the
  // first layer whose output overflows (named as in Python: encoder.k, encoder_head, decoder.k, with its largest
  // |weight|, |bias| and |input|), the posterior scale, z, a categorical latent's temperature (`tau`), the
  // likelihood, the KL, or rec - kl. The rare path: it reads the activations the pass kept.
  // `pass` says which buffers the last call filled: encode() only, decode() only (x is then its z), or a full
  // forward (forward, iwae_forward, categorical_forward).
  enum class Pass { Full, Encode, Decode };
  std::string overflow_cause(at::TensorList params, const at::Tensor& x, double tau = 0, Pass pass = Pass::Full) const;
  // The Python name of parameter i of the list ("encoder.0.weight", "encoder_head.bias", "decoder.1.weight",
  // "log_sigma").
  std::string param_name(int64_t i) const;
  // The gradients the backward's own passes already wrote in full: the biases' (column sums of each layer's
  // pre-activation gradient) and the learned log sigma's. The first that is not finite in the backward's order
  // (output to input), by index, or -1.
  int64_t first_nonfinite_small_grad(at::TensorList grads) const;

  const at::Tensor& mu() const { return mu_; }
  const at::Tensor& sigma() const { return sigma_; }
  const at::Tensor& logits() const { return logits_; }
  const at::Tensor& rec() const { return rec_; }
  const at::Tensor& kl() const { return kl_; }

 private:
  void reserve_encoder(int64_t B, const at::TensorOptions& opt);
  void reserve_decoder(int64_t N, const at::TensorOptions& opt);
  void layer_forward(const at::Tensor& in, const at::Tensor& w, const at::Tensor& b, at::Tensor& out,
                     Act act, const int64_t* y, int64_t label_period, int64_t cond_offset);
  void heads_forward();
  void kl_forward(const at::Tensor& eps, Estimator est);
  void index_nonzeros(const at::Tensor& x);
  void sparse_input_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::Tensor& out,
                            Act act, const int64_t* y, int64_t period, int64_t cond_offset);
  // dA (grad of post-activation, in place -> grad of pre-activation), bias grad, weight grad and,
  // if d_in is defined, grad of the layer input.
  void layer_backward(at::Tensor& dA, const at::Tensor& A, const at::Tensor& in, const at::Tensor& w,
                      Act act, const at::Tensor& gw, const at::Tensor& gb, at::Tensor* d_in,
                      const int64_t* y, int64_t label_period, int64_t cond_offset, bool param_grads = true);

  VaeSpec spec_;
  int64_t B_ = -1, N_ = -1;
  // A layer whose weight gradient is pending: gw [H, ld] from dPre [R, H] and in [R, in_dim], with the layer's one-hot
  // condition columns. Blocked by `width` output columns (rows of gw); the sparse input layer (in is x, gw stored
  // transposed) by `width` rows of its storage, input columns.
  struct PendingLayer {
    const T* d;
    const T* in;
    T* gw;
    int64_t R, H, in_dim, ld, width;
    bool sparse;
    const int64_t* y;
    int64_t period, cond_offset;
    int64_t blocked() const { return sparse ? ld : H; }
  };
  bool defer_ = false;
  bool defer_suspended_ = false;  // a backward that cannot defer (see defer_weight_grads)
  std::vector<PendingLayer> pending_;
  std::vector<std::pair<int64_t, int64_t>> blocks_;  // (layer, first column) per pending block
  // Blocks the pending gradients are computed in (fixed by the sizes and the split count, as the backward's own
  // blocks, so the bits do not depend on deferring).
  int64_t pending_blocks();
  // Whether layer_backward defers this layer's weight gradient.
  bool deferring() const { return defer_ && !defer_suspended_; }
  // The weight gradient of block [j0, j1) of a layer (PendingLayer), with its condition columns; after each
  // contiguous piece is final, on_piece(piece start, length).
  template <typename F>
  void weight_grad_block(const PendingLayer& l, int64_t j0, int64_t j1, const F& on_piece);
  std::vector<at::Tensor> enc_;  // post-activations of encoder hidden layers, [B, e_k]
  at::Tensor head_;              // [B, 2Z]: post-activation mean head | post-activation scale head
  at::Tensor mu_, sigma_;        // [B, Z]
  at::Tensor z_;                 // [N, Z]
  std::vector<at::Tensor> dec_;  // [N, d_k]
  at::Tensor logits_;            // [N, D]
  at::Tensor ll_;                // [N] log p(x | z) per sample
  at::Tensor rec_, kl_;          // [B]
  at::Tensor g_logits_, g_z_, g_head_;
  std::vector<at::Tensor> g_enc_, g_dec_;
  // Nonzero pixels of the batch (index_nonzeros), for the sparse input layer: by image (nz_rptr_, nz_col_,
  // nz_rval_; the forward pass) and by pixel (nz_ptr_, nz_row_, nz_val_; the weight gradient). nz_pos_ is scratch.
  std::vector<int32_t> nz_rptr_, nz_col_, nz_ptr_, nz_row_, nz_pos_;
  std::vector<T> nz_rval_, nz_val_;
  at::Tensor log_w_;                      // [K, B] IWAE log weights of the last iwae_forward()
  at::Tensor iw_w_;                       // [3, K, B] iwae_backward's weights (kept: no allocation per update)
  at::Tensor inv_var_, g_log_sigma_;      // learned Gaussian scale: exp(-2 log sigma), d/dlog sigma [D]
  const T* kl_dim_w_ = nullptr;           // free bits mask of the KL gradient (set_kl_dim_weights)
  // The learned log sigma's data (and inv_var_ from it), or nullptr without a learned Gaussian scale.
  const T* prepare_learned_scale(at::TensorList params);
  at::Tensor y_soft_;                     // [L*B, N*K] relaxed categorical samples (hard: the soft y)
  int gumbel_status_ = 0;                 // the Gumbel-softmax status bits of the last categorical_forward()
  // log p(x | decoder output) of the last decode() for L samples per image into ll_ and rec_ and, if
  // w_rec, the logit gradient w_rec[i] / L * d log p / da into g_logits_.
  // With a learned Gaussian scale, also d/dlog sigma into g_log_sigma_ (backward passes copy it out).
  void likelihood_pass(at::TensorList params, const at::Tensor& x, int64_t L, const T* w_rec);
  // -- upper stochastic layers (cpp/cpu/upper_latents.cpp) --
  struct UpperLayer {
    std::vector<at::Tensor> qa, gqa, pa, gpa;  // the q and p MLPs' layer outputs (the last: the head) and gradients
    at::Tensor z, sig_q, sig_p, gz, gin_q, gin_p;
  };
  std::vector<UpperLayer> up_;
  int64_t N_up_ = -1;
  at::Tensor eps1_, eps_up_;  // z1's noise [L, B, Z] and the upper layers' [L, B, noise_dim - Z], split by forward()
  at::Tensor delta_;          // [N] log p_upper(z1) - log N(z1; 0, I): what the upper layers change in log w
  at::Tensor g_up1_;          // [N, Z] the upper layers' gradient with respect to z1 (upper_backward)
  at::Tensor row_w_;          // [2, N] row weights a = u c and a rho of upper_backward
  const T* w_rec_ = nullptr;  // forward()'s w_rec, for the hierarchical ELBO's backward
  void reserve_upper(int64_t N, const at::TensorOptions& opt);
  void split_noise(const at::Tensor& eps);
  const at::Tensor& z1_noise(const at::Tensor& eps) const { return spec_.hierarchical() ? eps1_ : eps; }
  // After z_ holds z1 [N, Z]: the upper layers' samples and delta_.
  void upper_forward(at::TensorList params);
  // The upper layers' share of d/dtheta sum_r a_r log w_r, a_r = u[r % B] c[r]: the p MLPs' parameter gradients
  // (weights a) if `theta`; if `phi`, the q MLPs' (weights a rho, rho = 1 if null: DReG's factor) and g_up1_, the
  // gradient with respect to z1 of a rho (log p_upper(z1) + |z1|^2 / 2) (so that the engine's N(0, I) prior
  // term completes it). est: reparam differentiates log q(z_j | z_{j-1}) totally; stl and dreg hold q's
  // parameters fixed in it.
  void upper_backward(at::TensorList params, const T* u, const T* c, const T* rho, IwaeEstimator est, int64_t B,
                      at::TensorList grads, bool theta, bool phi);
  void up_mlp_forward(at::TensorList params, int64_t u, bool p, const at::Tensor& in, std::vector<at::Tensor>& acts);
  void up_mlp_backward(at::TensorList params, int64_t u, bool p, const at::Tensor& in, std::vector<at::Tensor>& acts,
                       std::vector<at::Tensor>& gacts, at::TensorList grads, at::Tensor* d_in, bool param_grads);
  // The decoder's parameter gradients into `grads` (unless !param_grads) and z's into g_z_ (unless !z_grad), from
  // the logit gradient in g_logits_.
  void decoder_backward(at::TensorList params, const int64_t* y, int64_t B, at::TensorList grads,
                        bool param_grads = true, bool z_grad = true);
  void encoder_backward(at::TensorList params, const at::Tensor& x, const int64_t* y, at::TensorList grads);
};

// The ops' checks of their results (cpp/cpu/vae_kernels.cpp; issue 20 item 6). check_result: one pass over a
// result; if it is not finite although `inputs` (what the op checked before, e.g. "x, eps and the parameters")
// are, a ValueError "fastvae: <op>: <what> is not finite although <inputs> are: <overflow_cause>". check_grads:
// after a backward, the small gradients (first_nonfinite_small_grad) are finite, or, with finite per-image
// `weights`, a ValueError naming the parameter.
template <typename T>
void check_result(const char* op, const char* what, const VaeEngine<T>& eng, at::TensorList params,
                  const at::Tensor& x, const at::Tensor& result, const char* inputs, double tau,
                  typename VaeEngine<T>::Pass pass = VaeEngine<T>::Pass::Full);
template <typename T>
void check_grads(const char* op, const VaeEngine<T>& eng, at::TensorList params, at::TensorList grads,
                 std::initializer_list<at::Tensor> weights, const char* inputs);

}  // namespace cpu
}  // namespace fastvae
