// The C++ trainer of the MLP VAE: the stepper of fastvae.VAE. Python's training driver (fastvae.training)
// owns the epochs, the data order, the generator, callbacks, checkpoints and History; this class runs one
// epoch's updates with the GIL released (pixels, noise, the fused forward and backward, the data-parallel
// reduction and Adam) and evaluates data sets. Every buffer of the update loop is allocated once, here.
#pragma once
// ATen and pybind11 with torch's casters (at::Tensor, at::Generator): what <torch/extension.h> gives
// these sources, without the C++ frontend (torch/nn, torch/optim) that doubles their compile time.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <utility>
#include <vector>

#include "cpu/adam.h"
#include "cpu/vae_engine.h"
#include "training/options.h"
#include "training/threads.h"
#include "vae_spec.h"

namespace fastvae {
namespace training {

class __attribute__((visibility("hidden"))) MlpTrainer {  // hidden, as the pybind11 objects it holds
 public:
  // params, exp_avg, exp_avg_sq: the model's parameters and Adam moments (engine order); the trainer works on
  // two buffers of its own and writes the current one back to these tensors at the end of every epoch, however
  // it ends (so they only ever hold an update boundary). trainable: false for a frozen parameter (not updated).
  // arch: ArchSpec.as_dict(); options: TrainOptions.engine_dict(), validated by fastvae.options.
  // all_reduce: None, or a callable summing a flat float32 tensor over the `world` data-parallel ranks.
  // stop: None, or an int32 [1] tensor that a SIGINT handler sets to ask for a stop at the next update boundary.
  MlpTrainer(std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avg, std::vector<at::Tensor> exp_avg_sq,
             std::vector<bool> trainable, const pybind11::dict& arch, const pybind11::dict& options,
             pybind11::object all_reduce, int64_t rank, int64_t world, c10::optional<at::Tensor> stop);

  // The updates of an epoch over `order` (int64 [N]: rows of train_x in the order to train on) in minibatches of
  // batch_size, from update `start` of the epoch on (a resumed epoch; elbo_sum carries the sum so far), after
  // `step` completed optimizer steps. on_step(updates done in this epoch, rec, kl) runs every callback_every
  // updates and after the last one. Between two updates the epoch stops on an exception in on_step or a signal
  // handler, or when `stop` is set (interrupted). An update whose loss, gradient or result (parameters, moments)
  // is not finite is dropped whole, the generator put back to where it was before it (divergence). Returns step,
  // updates, update_rec, update_kl, completed, elbo_sum, interrupted, val_done / val_rec / val_kl (validations,
  // after that many of the epoch's updates), diverged ("loss", "gradient", "parameters" or None), error and
  // threads (the count the chooser keeps now, see training/threads.h).
  pybind11::dict epoch(const at::Tensor& train_x, const c10::optional<at::Tensor>& train_y, const at::Tensor& order,
                       at::Generator gen, int64_t step, pybind11::object on_step, int64_t start, double elbo_sum,
                       const c10::optional<at::Tensor>& val_x, const c10::optional<at::Tensor>& val_y);

  // Mean rec and kl over uint8 images [M, D] (eval_samples samples each, chunks of 500 images, pixels and noise
  // from gen); a categorical latent is evaluated with hard samples: the discrete model's ELBO.
  std::pair<double, double> evaluate(const at::Tensor& images, const c10::optional<at::Tensor>& labels,
                                     at::Generator gen);
  // Tests: run the updates at n threads from now on (ThreadChooser::pin).
  void pin_threads(int64_t n) { threads_.pin(static_cast<int>(n)); }

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
  const char* adam(int64_t step);
  bool proves_finite(uint32_t g, int64_t step);
  void stepped_in_place(uint32_t g, int64_t step);
  const char* fused_adam(int64_t step);
  bool stop_requested();
  std::pair<double, double> evaluate_flushed(const at::Tensor& images, const at::Tensor& labels, at::Generator& gen);
  void sync_from_user();
  void write_back();

  // The parameters and Adam moments of one update boundary.
  struct State {
    std::vector<at::Tensor> p, m, v;
  };
  const State& cur() const { return buf_[cur_]; }
  State& next_state();

  VaeSpec spec_;
  Options o_;
  pybind11::object all_reduce_;
  int64_t rank_, world_;
  at::Tensor stop_;
  std::vector<bool> trainable_;
  std::vector<at::Tensor> user_p_, user_m_, user_v_;  // the caller's tensors
  // Two boundaries: Adam updates the current one in place when its bounds prove that the step stays finite
  // (bounds_, cpu::adam_step_stays_finite); otherwise it reads the current one and writes the other, which becomes
  // current only if every result is finite. The input layer is in transposed storage so that its forward product and weight gradient can skip
  // the zero pixels of binarized images (cpu::VaeEngine::sparse_input_forward). A frozen parameter is one tensor
  // shared by both buffers.
  State buf_[2];
  int cur_ = 0;
  std::optional<cpu::AdamStateBounds> bounds_;  // of buf_[cur_]; unset when not known
  bool bounds_read_ = false;  // bounds_ are the state's own maxima, not carried over from a step
  at::Tensor flat_;  // the gradients, then the batch's rec and kl sums: one all_reduce per update
  std::vector<at::Tensor> grads_;
  std::vector<int64_t> grad_offset_;  // where each gradient starts in flat_, then its gradients' total
  // fused_adam's buffers: the trainable parameters whose gradient the backward wrote in full (not pending in the
  // engine), and the current boundary's data pointers.
  std::vector<bool> written_;
  std::vector<float*> p_ptr_, m_ptr_, v_ptr_;
  at::Tensor xb_, yb_, eps_, w_rec_, w_kl_;
  std::vector<float> free_bits_mask_;
  Engine eng_, eval_eng_;
  ThreadChooser threads_;  // the thread count of each update (training/threads.h)
};

void bind_trainer(pybind11::module_& m);

}  // namespace training
}  // namespace fastvae
