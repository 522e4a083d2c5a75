// The C++ trainer of the MLP VAE: the stepper of fastvae.VAE. Python's training driver (fastvae.training)
// owns the epochs, the data order, the generator, callbacks, checkpoints and History; this class runs one
// epoch's updates with the GIL released (pixels, noise, the fused forward and backward, the data-parallel
// reduction and Adam) and evaluates data sets. Every buffer of the update loop is allocated once, here.
#pragma once
#include <torch/extension.h>

#include <utility>
#include <vector>

#include "cpu/vae_engine.h"
#include "training/options.h"
#include "vae_spec.h"

namespace fastvae {
namespace training {

class __attribute__((visibility("hidden"))) MlpTrainer {  // hidden, as the pybind11 objects it holds
 public:
  // params, exp_avg, exp_avg_sq: the model's parameters and Adam moments (engine order), updated in place.
  // arch: ArchSpec.as_dict(); options: TrainOptions.engine_dict(), validated by fastvae.options.
  // all_reduce: None, or a callable summing a flat float32 tensor over the `world` data-parallel ranks.
  MlpTrainer(std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avg, std::vector<at::Tensor> exp_avg_sq,
             const pybind11::dict& arch, const pybind11::dict& options, pybind11::object all_reduce, int64_t rank,
             int64_t world);

  // One pass over `order` (int64 [N]: rows of train_x in the order to train on) in minibatches of batch_size,
  // starting after `step` completed optimizer steps. on_step(updates done in this epoch, rec, kl) runs every
  // callback_every updates and after the last one; an exception there, or Ctrl-C, stops the epoch between two
  // updates. A non-finite loss or gradient stops it before the update it would have corrupted. Returns step,
  // updates, update_rec, update_kl, completed, train_elbo (mean over the epoch's images if completed),
  // val_done / val_rec / val_kl (validations, after that many of the epoch's updates), diverged ("loss",
  // "gradient" or None) and error (the exception that stopped it, or None).
  pybind11::dict epoch(const at::Tensor& train_x, const c10::optional<at::Tensor>& train_y, const at::Tensor& order,
                       at::Generator gen, int64_t step, pybind11::object on_step,
                       const c10::optional<at::Tensor>& val_x, const c10::optional<at::Tensor>& val_y);

  // Mean rec and kl over uint8 images [M, D] (eval_samples samples each, chunks of 500 images, pixels and noise
  // from gen); a categorical latent is evaluated with hard samples: the discrete model's ELBO.
  std::pair<double, double> evaluate(const at::Tensor& images, const c10::optional<at::Tensor>& labels,
                                     at::Generator gen);

 private:
  using Engine = cpu::VaeEngine<float>;
  struct Batch {
    at::Tensor x, y, eps;  // this rank's rows of the batch
    int64_t n = 0, m = 0;  // rows of the global batch, of this rank's share
    const int64_t* labels() const { return y.defined() && y.numel() ? y.data_ptr<int64_t>() : nullptr; }
  };
  Batch load_batch(const at::Tensor& images, const at::Tensor& labels, const int64_t* rows, int64_t n,
                   at::Generator& gen);
  std::pair<double, double> forward(const Batch& b, int64_t step);
  void apply_free_bits(int64_t n);
  void backward(const Batch& b, int64_t step);
  std::pair<double, double> evaluate_flushed(const at::Tensor& images, const at::Tensor& labels, at::Generator& gen);
  void sync_from_user();
  void write_back();

  VaeSpec spec_;
  Options o_;
  pybind11::object all_reduce_;
  int64_t rank_, world_;
  std::vector<at::Tensor> user_p_, user_m_, user_v_;  // the caller's tensors
  // The same tensors, the input layer in transposed storage so that its forward product and weight gradient
  // can skip the zero pixels of binarized images (cpu::VaeEngine::sparse_input_forward).
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_;
  at::Tensor flat_;  // the gradients, then the batch's rec and kl sums: one all_reduce per update
  std::vector<at::Tensor> grads_;
  at::Tensor xb_, yb_, eps_, w_rec_, w_kl_;
  std::vector<float> free_bits_mask_;
  Engine eng_, eval_eng_;
};

void bind_trainer(pybind11::module_& m);

}  // namespace training
}  // namespace fastvae
