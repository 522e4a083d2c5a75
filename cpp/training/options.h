// The training options the C++ trainer reads, by the field names of fastvae.TrainOptions
// (python/fastvae/options.py validates them: here they are asserted, not re-checked).
#pragma once
// ATen and pybind11 with torch's casters (at::Tensor, at::Generator): what <torch/extension.h> gives
// these sources, without the C++ frontend (torch/nn, torch/optim) that doubles their compile time.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vae_spec.h"

namespace fastvae {
namespace training {

// What the trainer feeds the model for a uint8 pixel p, TrainOptions.pixels: threshold: p > threshold as 0/1
// (static binarization, the homeworks'); dynamic: a fresh x ~ Bernoulli(p / 255) each time the image is used
// (Burda et al. 2016); intensity: p / 255 itself, for the continuous likelihoods. Position = value.
enum class Pixels : int64_t { Threshold = 0, Dynamic = 1, Intensity = 2 };
const std::vector<std::string>& pixel_names();
Pixels parse_pixels(const std::string& name);

struct Options {
  int64_t batch_size = 0, n_samples = 0, threshold = 0, callback_every = 0, eval_every = 0,
          eval_samples = 0;
  Estimator estimator = Estimator::Analytic;
  Pixels pixels = Pixels::Threshold;
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, kl_weight = 0;
  Objective objective = Objective::Elbo;
  int64_t k = 1;
  int64_t groups = 1;     // M of MIWAE and PIWAE: groups * k samples per image
  double ciwae_beta = 0;  // CIWAE's weight of the ELBO
  bool iwae() const { return objective != Objective::Elbo; }  // an importance-weighted bound, not the ELBO
  int64_t iw_samples() const { return k * groups; }
  IwBound iw_bound() const {
    const bool grouped = objective == Objective::Miwae || objective == Objective::Piwae;
    return {objective, grouped ? groups : 1, objective == Objective::Ciwae ? ciwae_beta : 0.0};
  }
  IwaeEstimator iwae_estimator = IwaeEstimator::Reparam;
  int64_t kl_warmup = 0;  // updates of the linear KL warm-up (0: off)
  double free_bits = 0;   // free bits lambda, nats per latent dimension (0: off)
  // Categorical latents: Gumbel-softmax temperature tau_0, its floor, anneal rate r and period (updates),
  // straight-through hard samples (Jang et al. 2017; see temperature_at).
  double temperature = 1, temperature_min = 0.5, anneal_rate = 0;
  int64_t anneal_every = 1000;
  bool hard = false;
  int64_t threads = 0;  // threads of the updates; 0: chosen by timing them (training/threads.h)
};

// Reads every field of the options dict by name; an option missing on either side is an error.
Options options_from_dict(const pybind11::dict& d);
// The names of the option table, in order (exposed as fastvae._C.TRAIN_OPTIONS).
std::vector<std::string> option_names();

// tau of the update that follows t completed optimizer steps: max(tau_min, tau_0 exp(-r t')), t' = t rounded
// down to a multiple of anneal_every (Jang et al. 2017 update tau every N steps); follows the optimizer's step,
// so a resumed fit continues the schedule exactly.
double temperature_at(const Options& o, int64_t t);

// The architecture from ArchSpec.as_dict() (python/fastvae/arch.py), read by name.
VaeSpec spec_from_dict(const pybind11::dict& d);

}  // namespace training
}  // namespace fastvae
