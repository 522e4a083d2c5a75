// Architecture of an MLP VAE with a Bernoulli decoder, decoded from the int[] `arch` argument the ops
// receive. Python builds the same list in fastvae/vae.py (VAE.arch); keep the two in step.
#pragma once
#include <ATen/ATen.h>
#include <vector>

namespace fastvae {

enum class Act : int64_t { Identity = 0, ReLU = 1, LeakyReLU = 2, Tanh = 3, Sigmoid = 4 };
// How the second encoder head parameterizes the posterior spread.
enum class Scale : int64_t { LogVar = 0, LogStd = 1, Std = 2 };
// Gradient estimator of the KL part (issue "gradient estimators"; DD2434 theory, Roeder et al. 2017).
enum class Estimator : int64_t { Analytic = 0, MonteCarlo = 1, StickingTheLanding = 2 };

struct VaeSpec {
  int64_t data_dim = 0, cond_dim = 0, latent_dim = 0;
  std::vector<int64_t> enc_hidden, dec_hidden;
  Act act = Act::ReLU;
  Scale scale = Scale::LogVar;
  Act mean_act = Act::Identity, scale_act = Act::Identity;
  double slope = 0.01;

  // arch = [D, C, Z, n_enc, e_1..e_n, n_dec, d_1..d_m, act, scale, mean_act, scale_act]
  static VaeSpec parse(at::IntArrayRef arch, double slope);

  int64_t n_enc_layers() const { return (int64_t)enc_hidden.size() + 1; }  // hidden layers + head
  int64_t n_dec_layers() const { return (int64_t)dec_hidden.size() + 1; }  // hidden layers + logits
  int64_t n_params() const { return 2 * (n_enc_layers() + n_dec_layers()); }
  // In and out sizes of encoder layer k (the last one is the head, out = 2Z).
  int64_t enc_in(int64_t k) const { return k == 0 ? data_dim + cond_dim : enc_hidden[k - 1]; }
  int64_t enc_out(int64_t k) const {
    return k == (int64_t)enc_hidden.size() ? 2 * latent_dim : enc_hidden[k];
  }
  int64_t dec_in(int64_t k) const { return k == 0 ? latent_dim + cond_dim : dec_hidden[k - 1]; }
  int64_t dec_out(int64_t k) const {
    return k == (int64_t)dec_hidden.size() ? data_dim : dec_hidden[k];
  }
  // Checks count, shapes, dtype and device of the parameter list (weights [out, in], biases [out]).
  void check_params(at::TensorList params, at::ScalarType dtype, at::Device device) const;
  // Checks optional labels y: int64 [B] with values in [0, C); required iff C > 0.
  void check_labels(const c10::optional<at::Tensor>& y, int64_t batch) const;
};

// Checks a float tensor has only 0/1 entries (this also rejects NaN); names the argument on failure.
void check_binary(const at::Tensor& x, const char* name);
void check_finite(const at::Tensor& x, const char* name);

}  // namespace fastvae
