#include "training/trainer.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "cpu/adam.h"
#include "cpu/flush_denormals.h"
#include "cpu/split_threads.h"
#include "training/pixels.h"

namespace py = pybind11;

namespace fastvae {
namespace training {

namespace {

// An uninitialized tensor of t's shape in the engine's layout: the first layer's weight (and its moments) stored
// transposed, for the sparse input layer; the others as t.
at::Tensor engine_layout(const at::Tensor& t, bool first) {
  return first ? at::empty({t.size(1), t.size(0)}, t.options()).t() : at::empty_like(t);
}

// Sum of a contiguous float vector, accumulated in double (the per-update rec and kl).
double sum_of(const at::Tensor& t) {
  const float* p = t.data_ptr<float>();
  double s = 0;
  for (int64_t i = 0, n = t.numel(); i < n; ++i) s += p[i];
  return s;
}

// The thread chooser of a fit: `threads` > 0 (TrainOptions.threads) is used throughout; 0 adapts between one
// thread and torch's count, unless the user chose that count (torch.set_num_threads away from torch's default,
// or OMP_NUM_THREADS), which then stays.
ThreadChooser make_chooser(int64_t threads) {
  if (threads > 0) return ThreadChooser(static_cast<int>(threads), false);
  const int n = at::get_num_threads();
  const bool user_chose = n != at::intraop_default_num_threads() || std::getenv("OMP_NUM_THREADS") != nullptr;
  return ThreadChooser(n, !user_chose);
}

void check_images(const at::Tensor& t, int64_t D) {
  TORCH_INTERNAL_ASSERT(t.scalar_type() == at::kByte && t.dim() == 2 && t.size(1) == D && t.is_contiguous() &&
                        t.device().is_cpu());
}

}  // namespace

MlpTrainer::MlpTrainer(std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avg,
                       std::vector<at::Tensor> exp_avg_sq, std::vector<bool> trainable, const py::dict& arch,
                       const py::dict& options, py::object all_reduce, int64_t rank, int64_t world,
                       c10::optional<at::Tensor> stop)
    : spec_(spec_from_dict(arch)),
      o_(options_from_dict(options)),
      all_reduce_(std::move(all_reduce)),
      rank_(rank),
      world_(world),
      stop_(stop ? *stop : at::Tensor()),
      trainable_(std::move(trainable)),
      user_p_(std::move(params)),
      user_m_(std::move(exp_avg)),
      user_v_(std::move(exp_avg_sq)),
      eng_(spec_),
      eval_eng_(spec_),
      threads_(make_chooser(o_.threads)) {
  spec_.check_params(user_p_, at::kFloat, at::Device(at::kCPU));
  const size_t n = user_p_.size();
  TORCH_INTERNAL_ASSERT(user_m_.size() == n && user_v_.size() == n && trainable_.size() == n);
  TORCH_INTERNAL_ASSERT(world_ >= 1 && rank_ >= 0 && rank_ < world_ && (world_ == 1) == all_reduce_.is_none());
  TORCH_INTERNAL_ASSERT(world_ == 1 || o_.free_bits == 0);
  TORCH_INTERNAL_ASSERT(o_.pixels != Pixels::Intensity || likelihood_data(spec_.lik) != likelihoods::Data::Binary);
  TORCH_INTERNAL_ASSERT(!spec_.categorical() || (!o_.iwae() && o_.estimator == Estimator::Analytic && o_.free_bits == 0));
  TORCH_INTERNAL_ASSERT(!stop_.defined() || (stop_.scalar_type() == at::kInt && stop_.numel() == 1));
  // Only the current buffer exists at first, uninitialized: sync_from_user fills it before any use, and the other
  // is made when a step first needs it (next_state). Copies of the caller's state here would be paid again there.
  for (size_t k = 0; k < n; ++k) {
    buf_[0].p.push_back(engine_layout(user_p_[k], k == 0));
    buf_[0].m.push_back(engine_layout(user_m_[k], k == 0));
    buf_[0].v.push_back(engine_layout(user_v_[k], k == 0));
  }
  // The gradients are views of one flat buffer (keeping the transposed strides) followed by the batch's rec and
  // kl sums, so that data-parallel training reduces everything an update needs with one all_reduce.
  int64_t n_grad = 0;
  for (const auto& p : user_p_) n_grad += p.numel();
  flat_ = at::zeros({n_grad + 2}, at::kFloat);
  const auto& ref = buf_[0].p;
  grad_offset_.assign(n + 1, 0);
  for (int64_t i = 0, off = 0; i < static_cast<int64_t>(n); off += ref[i].numel(), ++i) {
    grads_.push_back(flat_.narrow(0, off, ref[i].numel()).as_strided(ref[i].sizes(), ref[i].strides()));
    grad_offset_[i + 1] = off + ref[i].numel();
  }
  written_.assign(n, false);
  free_bits_mask_.assign(spec_.latent_dim, 1.f);
}

// The caller's tensors are the truth between epochs (a callback may have changed them).
void MlpTrainer::sync_from_user() {
  at::AutoDispatchBelowADInplaceOrView guard;
  bounds_.reset();
  for (size_t k = 0; k < user_p_.size(); ++k) {
    buf_[cur_].p[k].copy_(user_p_[k]);
    buf_[cur_].m[k].copy_(user_m_[k]);
    buf_[cur_].v[k].copy_(user_v_[k]);
  }
}

void MlpTrainer::write_back() {
  at::AutoDispatchBelowADInplaceOrView guard;
  for (size_t k = 0; k < user_p_.size(); ++k) {
    user_p_[k].copy_(buf_[cur_].p[k]);
    user_m_[k].copy_(buf_[cur_].m[k]);
    user_v_[k].copy_(buf_[cur_].v[k]);
  }
}

// The buffer the out-of-place step writes: made on first use, like the current one; a frozen tensor never changes,
// so both buffers share it.
MlpTrainer::State& MlpTrainer::next_state() {
  State& next = buf_[1 - cur_];
  if (!next.p.empty()) return next;
  const State& c = buf_[cur_];
  for (size_t k = 0; k < c.p.size(); ++k) {
    next.p.push_back(trainable_[k] ? engine_layout(c.p[k], k == 0) : c.p[k]);
    next.m.push_back(trainable_[k] ? engine_layout(c.m[k], k == 0) : c.m[k]);
    next.v.push_back(trainable_[k] ? engine_layout(c.v[k], k == 0) : c.v[k]);
  }
  return next;
}

// Whether bounds on the current state and the gradients' bound `g` prove that an in-place step stays finite
// (cpu::adam_step_stays_finite). The bounds carried over from the last in-place step (cpu::adam_step_bounds) are
// tried first; where they prove nothing, the state's own maxima are read (one pass) and tried.
bool MlpTrainer::proves_finite(uint32_t g, int64_t step) {
  auto proves = [&] {
    return cpu::adam_step_stays_finite(*bounds_, g, step, o_.lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay);
  };
  if (bounds_ && proves()) return true;
  if (bounds_ && bounds_read_) return false;
  bounds_ = cpu::adam_state_bounds(cur().p, cur().m, cur().v, trainable_);
  bounds_read_ = true;
  return proves();
}

// After an in-place step with gradients within `g`: the new state's bounds, from the old ones.
void MlpTrainer::stepped_in_place(uint32_t g, int64_t step) {
  bounds_ = cpu::adam_step_bounds(*bounds_, g, step, o_.lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay);
  bounds_read_ = false;
}

// One Adam step, dropped if a gradient or a result is not finite, with the reason ("gradient" or "parameters").
// Gradients are checked first, then the step runs in place if the bounds of the state prove its results finite
// (always, in ordinary training); else from the current boundary into the other buffer, which becomes current only
// if every result is finite. In place saves the second buffer's memory traffic (docs/benchmarks.md).
const char* MlpTrainer::adam(int64_t step) {
  const uint32_t g = cpu::max_magnitude_bits(grads_, trainable_);
  if (g >= 0x7f800000u) return "gradient";
  if (proves_finite(g, step)) {
    cpu::adam_update_in_place(cur().p, grads_, cur().m, cur().v, trainable_, step, o_.lr, o_.beta1, o_.beta2, o_.eps,
                              o_.weight_decay);
    stepped_in_place(g, step);
    return nullptr;
  }
  State& next = next_state();
  const auto verdict =
      cpu::adam_update_into(cur().p, grads_, cur().m, cur().v, next.p, next.m, next.v, trainable_, step, o_.lr,
                            o_.beta1, o_.beta2, o_.eps, o_.weight_decay);
  if (verdict == cpu::AdamVerdict::kGradient) return "gradient";
  if (verdict == cpu::AdamVerdict::kResult) return "parameters";
  cur_ = 1 - cur_;
  bounds_.reset();
  return nullptr;
}

// adam() fused with the weight gradients (issue 21 item 3; docs/engine.md): the engine computes each block of a
// weight gradient and Adam updates that block of the parameters and moments at once, while the block is in cache;
// the gradients the backward wrote in full (biases, the learned scale) follow in one pass. In place needs the proof
// that the step stays finite before the first block is written, when the weight gradients do not exist yet: the
// engine's bound on them (R max|dPre| max|in| per layer) stands in for their max, beside the exact max of the
// others. Where that proves nothing (a gradient not finite, or too large for the proof), the gradients are
// finished and adam() decides, as without fusing. The arithmetic is adam()'s, so the bits are too.
const char* MlpTrainer::fused_adam(int64_t step) {
  for (size_t k = 0; k < grads_.size(); ++k) written_[k] = trainable_[k] && !eng_.pending(grads_[k]);
  const uint32_t g = std::max(eng_.pending_grad_bound(), cpu::max_magnitude_bits(grads_, written_));
  if (!proves_finite(g, step)) {
    eng_.finish_weight_grads([](float*, int64_t) {});
    return adam(step);
  }
  const cpu::AdamConstants<float> c(step, o_.lr, o_.beta1, o_.beta2, o_.eps, o_.weight_decay);
  p_ptr_.clear();
  m_ptr_.clear();
  v_ptr_.clear();
  for (size_t k = 0; k < grads_.size(); ++k) {
    p_ptr_.push_back(cur().p[k].data_ptr<float>());
    m_ptr_.push_back(cur().m[k].data_ptr<float>());
    v_ptr_.push_back(cur().v[k].data_ptr<float>());
  }
  const float* base = flat_.data_ptr<float>();
  eng_.finish_weight_grads([&](float* gp, int64_t len) {
    const int64_t off = gp - base;  // the piece lies in one gradient, at the same storage offset as its state
    const size_t k = std::upper_bound(grad_offset_.begin(), grad_offset_.end(), off) - grad_offset_.begin() - 1;
    if (!trainable_[k]) return;
    const int64_t lo = off - grad_offset_[k];
    cpu::adam_range_in_place(p_ptr_[k] + lo, gp, m_ptr_[k] + lo, v_ptr_[k] + lo, len, c);
  });
  cpu::adam_update_in_place(cur().p, grads_, cur().m, cur().v, written_, step, o_.lr, o_.beta1, o_.beta2, o_.eps,
                            o_.weight_decay);
  stepped_in_place(g, step);
  return nullptr;
}

// Runs the signal handlers (with the GIL) and reads the stop flag a SIGINT handler sets: the epoch stops at
// this update boundary. A handler's exception stops it the same way (returned as the epoch's error).
bool MlpTrainer::stop_requested() {
  return stop_.defined() && stop_.data_ptr<int32_t>()[0] != 0;
}

// The pixels and noise of `n` rows of a batch, drawn as one process would, then this rank's share: rows
// [a, a + m) with a = floor(r n / W), m = floor((r + 1) n / W) - a.
MlpTrainer::Batch MlpTrainer::load_batch(const at::Tensor& images, const at::Tensor& labels, const int64_t* rows,
                                         int64_t n, at::Generator& gen) {
  const int64_t B = xb_.size(0);
  Batch b;
  b.n = n;
  b.x = n == B ? xb_ : xb_.narrow(0, 0, n);
  b.y = n == B ? yb_ : yb_.narrow(0, 0, n);
  b.eps = n == B ? eps_ : eps_.narrow(1, 0, n).contiguous();
  const bool cond = spec_.cond_dim > 0;
  gather_pixels(images, rows, n, o_.threshold, o_.pixels, gen, b.x, labels, cond ? &b.y : nullptr);
  draw_noise(b.eps, spec_, gen);
  if (!cond) b.y = at::Tensor();
  const int64_t a = rank_ * n / world_;
  b.m = (rank_ + 1) * n / world_ - a;
  if (world_ > 1) {
    b.x = b.x.narrow(0, a, b.m);
    if (cond) b.y = b.y.narrow(0, a, b.m);
    b.eps = b.eps.narrow(1, a, b.m).contiguous();
  }
  return b;
}

// The objective's forward pass on this rank's rows; returns the means of rec and kl over them. Minimises
// -mean(rec - kl_weight * warm-up * kl) (kl_weight = 1: the ELBO; > 1: a beta-VAE), the warm-up rising linearly
// from 0 over kl_warmup optimizer steps; or -mean(importance-weighted bound), recorded as rec with kl 0. Weights use the global
// batch size n. Plain loops here, no tensor ops: at batch 20 each ATen call costs a few percent of an update.
std::pair<double, double> MlpTrainer::forward(const Batch& b, int64_t step) {
  const double warm = o_.kl_warmup > 0 ? std::min(1.0, double(step) / double(o_.kl_warmup)) : 1.0;
  std::fill_n(w_rec_.data_ptr<float>(), b.n, static_cast<float>(-1.0 / b.n));
  std::fill_n(w_kl_.data_ptr<float>(), b.n, static_cast<float>(o_.kl_weight * warm / b.n));
  if (b.m == 0) {  // a rank without rows this batch (n < W) adds nothing to the sums
    flat_.zero_();
    return {0, 0};
  }
  if (spec_.categorical()) {
    eng_.categorical_forward(cur().p, b.x, b.labels(), b.eps, temperature_at(o_, step), o_.hard,
                             w_rec_.data_ptr<float>());
  } else if (o_.iwae()) {
    return {sum_of(eng_.iwae_forward(cur().p, b.x, b.labels(), b.eps, o_.iw_bound())) / b.m, 0.0};
  } else {
    eng_.forward(cur().p, b.x, b.labels(), b.eps, o_.estimator, w_rec_.data_ptr<float>());
  }
  return {sum_of(eng_.rec()) / b.m, sum_of(eng_.kl()) / b.m};
}

// Free bits (Kingma et al. 2016, per-dimension groups): the KL term is sum_j max(lambda, KL_j) with KL_j the
// minibatch mean KL of dimension j; its gradient is KL_j's where KL_j > lambda, else 0.
void MlpTrainer::apply_free_bits(int64_t n) {
  auto klj = eng_.kl_per_dim();
  const double* kp = klj.data_ptr<double>();
  for (int64_t j = 0; j < spec_.latent_dim; ++j) free_bits_mask_[j] = kp[j] / n > o_.free_bits ? 1.f : 0.f;
  eng_.set_kl_dim_weights(free_bits_mask_.data());
}

void MlpTrainer::backward(const Batch& b, int64_t step) {
  if (b.m == 0) return;
  if (spec_.categorical()) {
    eng_.categorical_backward(cur().p, b.x, b.labels(), temperature_at(o_, step), o_.hard,
                              w_kl_.data_ptr<float>(), grads_);
  } else if (o_.iwae()) {
    eng_.iwae_backward(cur().p, b.x, b.labels(), b.eps, o_.iwae_estimator, w_rec_.data_ptr<float>(), grads_,
                       o_.iw_bound());
  } else {
    eng_.backward(cur().p, b.x, b.labels(), b.eps, o_.estimator, w_kl_.data_ptr<float>(), grads_);
  }
}

py::dict MlpTrainer::epoch(const at::Tensor& train_x, const c10::optional<at::Tensor>& train_y,
                           const at::Tensor& order, at::Generator gen, int64_t step, py::object on_step, int64_t start,
                           double elbo_sum, const c10::optional<at::Tensor>& val_x,
                           const c10::optional<at::Tensor>& val_y) {
  const int64_t N = train_x.size(0), D = spec_.data_dim;
  check_images(train_x, D);
  if (val_x) check_images(*val_x, D);
  TORCH_INTERNAL_ASSERT(order.scalar_type() == at::kLong && order.dim() == 1 && order.size(0) == N && N >= 1);
  TORCH_INTERNAL_ASSERT((spec_.cond_dim > 0) == train_y.has_value());
  // A batch larger than the data set is the whole data set (buffers never exceed N rows).
  const int64_t B = std::min(o_.batch_size, N), L = o_.iwae() ? o_.iw_samples() : o_.n_samples;
  const int64_t per_epoch = (N + B - 1) / B;
  TORCH_INTERNAL_ASSERT(start >= 0 && start <= per_epoch);
  if (!xb_.defined() || xb_.size(0) != B) {
    xb_ = at::empty({B, D}, at::kFloat);
    yb_ = at::empty({B}, at::kLong);
    eps_ = at::empty({L, B, spec_.noise_dim()}, at::kFloat);
    w_rec_ = at::empty({B}, at::kFloat);
    w_kl_ = at::empty({B}, at::kFloat);
  }
  const at::Tensor labels = train_y ? *train_y : at::Tensor();
  auto upd_rec = at::zeros({per_epoch - start}, at::kDouble), upd_kl = at::zeros({per_epoch - start}, at::kDouble);
  std::vector<int64_t> val_done;
  std::vector<double> val_rec, val_kl;
  const int64_t* rows = order.data_ptr<int64_t>();
  int64_t done = 0;  // updates of this call
  bool interrupted = false;
  py::object error = py::none();
  const char* diverged = nullptr;  // "loss", "gradient" or "parameters": what was not finite at update step + 1
  sync_from_user();
  {
    struct WriteBack {
      MlpTrainer& t;
      ~WriteBack() { t.write_back(); }
    } write_back_on_exit{*this};
    py::gil_scoped_release nogil;
    cpu::FlushDenormals flushed;  // this thread's share of the engine's arithmetic (cpu/flush_denormals.h)
    LocalThreads local;           // the chooser's count, on this thread only (training/threads.h)
    cpu::SplitThreads split(threads_.configured());  // the products' blocks do not follow the chooser
    // Python at an update boundary: the signal handlers (a SIGINT handler sets `stop`), then, if `report`, the
    // caller's on_step. false stops the epoch.
    auto at_boundary = [&](bool report, double r, double k) -> bool {
      cpu::FlushDenormals::Paused caller_mode(flushed);  // Python runs in the caller's floating-point mode
      LocalThreads::Paused caller_threads(local);         // and with the caller's thread count
      py::gil_scoped_acquire gil;
      try {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (report && !on_step.is_none()) on_step(start + done, r, k);
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      } catch (py::error_already_set& e) {
        error = e.value();
        return false;
      }
      interrupted = stop_requested();
      return !interrupted;
    };
    // One visit to Python per update boundary: before the first update, then after each update.
    bool go = at_boundary(false, 0, 0);
    for (int64_t b = start; go && b < per_epoch; ++b) {
      const int64_t n = std::min(B, N - b * B);
      const at::Generator before = gen.clone();  // the boundary's generator, put back if this update is dropped
      local.set(threads_.before_update());
      const auto t0 = std::chrono::steady_clock::now();
      const Batch batch = load_batch(train_x, labels, rows + b * B, n, gen);
      auto [r, k] = forward(batch, step);
      if (world_ == 1 && (!std::isfinite(r) || !std::isfinite(k))) diverged = "loss";
      if (!diverged && batch.m > 0 && o_.free_bits > 0) apply_free_bits(n);
      if (!diverged) {
        eng_.defer_weight_grads(world_ == 1);  // data-parallel ranks reduce whole gradients before Adam
        backward(batch, step);
      }
      if (!diverged && world_ > 1) {  // sum gradients and the batch's terms over the ranks; then every rank agrees
        float* terms = flat_.data_ptr<float>() + flat_.numel() - 2;
        terms[0] = static_cast<float>(r * batch.m);
        terms[1] = static_cast<float>(k * batch.m);
        cpu::FlushDenormals::Paused caller_mode(flushed);
        LocalThreads::Paused caller_threads(local);
        py::gil_scoped_acquire gil;
        try {
          all_reduce_(flat_);
        } catch (py::error_already_set& err) {
          error = err.value();
          gen.set_state(before.get_state());
          break;
        }
        r = terms[0] / n;
        k = terms[1] / n;
        if (!std::isfinite(r) || !std::isfinite(k)) diverged = "loss";
      }
      if (!diverged) diverged = world_ == 1 ? fused_adam(step + 1) : adam(step + 1);
      if (diverged) {
        gen.set_state(before.get_state());
        break;
      }
      threads_.after_update(seconds_since(t0));
      ++step;
      upd_rec.data_ptr<double>()[done] = r;
      upd_kl.data_ptr<double>()[done] = k;
      elbo_sum += (r - k) * n;
      ++done;
      if (val_x && o_.eval_every > 0 && step % o_.eval_every == 0) {
        // the schedule follows the optimizer's step, so resumed runs keep it
        const auto v = evaluate_flushed(*val_x, val_y ? *val_y : at::Tensor(), gen);
        val_done.push_back(start + done);
        val_rec.push_back(v.first);
        val_kl.push_back(v.second);
      }
      go = at_boundary(o_.callback_every > 0 && ((start + done) % o_.callback_every == 0 || b + 1 == per_epoch), r, k);
    }
  }
  py::dict out;
  out["step"] = step;
  out["updates"] = done;
  out["completed"] = start + done == per_epoch;
  out["elbo_sum"] = elbo_sum;
  out["interrupted"] = interrupted;
  out["update_rec"] = upd_rec.narrow(0, 0, done);
  out["update_kl"] = upd_kl.narrow(0, 0, done);
  out["val_done"] = val_done;
  out["val_rec"] = val_rec;
  out["val_kl"] = val_kl;
  out["error"] = error;
  out["diverged"] = diverged ? py::object(py::str(diverged)) : py::object(py::none());
  out["threads"] = threads_.chosen();
  return out;
}

std::pair<double, double> MlpTrainer::evaluate_flushed(const at::Tensor& images, const at::Tensor& labels,
                                                       at::Generator& gen) {
  const int64_t M = images.size(0), chunk = 500, Z = spec_.noise_dim();
  const bool cond = labels.defined();
  double rec = 0, kl = 0;
  auto idx = at::arange(M, at::kLong);
  for (int64_t s = 0; s < M; s += chunk) {
    const int64_t n = std::min(chunk, M - s);
    auto x = at::empty({n, images.size(1)}, at::kFloat);
    at::Tensor y = cond ? at::empty({n}, at::kLong) : at::Tensor();
    gather_pixels(images, idx.data_ptr<int64_t>() + s, n, o_.threshold, o_.pixels, gen, x, labels,
                  cond ? &y : nullptr);
    auto eps = at::empty({o_.eval_samples, n, Z}, at::kFloat);
    draw_noise(eps, spec_, gen);
    const int64_t* yp = cond ? y.data_ptr<int64_t>() : nullptr;
    if (spec_.categorical()) {  // hard samples: Gumbel-max draws of q, the discrete model's ELBO (any tau)
      eval_eng_.categorical_forward(cur().p, x, yp, eps, 1.0, true, nullptr);
    } else {
      eval_eng_.forward(cur().p, x, yp, eps, o_.estimator, nullptr);
    }
    rec += eval_eng_.rec().sum().item<double>();
    kl += eval_eng_.kl().sum().item<double>();
  }
  return {rec / M, kl / M};
}

std::pair<double, double> MlpTrainer::evaluate(const at::Tensor& images, const c10::optional<at::Tensor>& labels,
                                               at::Generator gen) {
  check_images(images, spec_.data_dim);
  TORCH_INTERNAL_ASSERT((spec_.cond_dim > 0) == labels.has_value() && images.size(0) >= 1);
  sync_from_user();
  py::gil_scoped_release nogil;
  cpu::FlushDenormals flushed;
  LocalThreads local;
  cpu::SplitThreads split(threads_.configured());
  local.set(threads_.chosen());
  return evaluate_flushed(images, labels ? *labels : at::Tensor(), gen);
}

void bind_trainer(py::module_& m) {
  m.attr("TRAIN_OPTIONS") = py::tuple(py::cast(option_names()));
  m.attr("PIXELS") = py::tuple(py::cast(pixel_names()));
  py::class_<MlpTrainer>(m, "MlpTrainer", "The C++ stepper of fastvae.VAE (cpp/training/trainer.h).")
      .def(py::init<std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<bool>,
                    py::dict, py::dict, py::object, int64_t, int64_t, c10::optional<at::Tensor>>(),
           py::arg("params"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("trainable"), py::arg("arch"),
           py::arg("options"), py::arg("all_reduce") = py::none(), py::arg("rank") = 0, py::arg("world") = 1,
           py::arg("stop") = py::none())
      .def("epoch", &MlpTrainer::epoch, py::arg("train_x"), py::arg("train_y"), py::arg("order"),
           py::arg("generator"), py::arg("step"), py::arg("on_step"), py::arg("start") = 0, py::arg("elbo_sum") = 0.0,
           py::arg("val_x") = py::none(), py::arg("val_y") = py::none())
      .def("evaluate", &MlpTrainer::evaluate, py::arg("images"), py::arg("labels"), py::arg("generator"))
      .def("_pin_threads", &MlpTrainer::pin_threads, py::arg("n"));
  m.def(
      "gather_pixels",
      [](const at::Tensor& images, const at::Tensor& rows, int64_t threshold, const std::string& pixels,
         at::Generator gen) {
        TORCH_CHECK(images.scalar_type() == at::kByte && images.dim() == 2 && images.is_contiguous() &&
                        images.device().is_cpu(),
                    "fastvae: gather_pixels: images must be contiguous uint8 [N, D] on the CPU");
        TORCH_CHECK(rows.scalar_type() == at::kLong && rows.dim() == 1 && rows.is_contiguous(),
                    "fastvae: gather_pixels: rows must be a contiguous int64 vector");
        TORCH_CHECK(threshold >= 0 && threshold <= 255, "fastvae: gather_pixels: threshold must lie in [0, 255]");
        if (rows.numel())
          TORCH_CHECK(rows.min().item<int64_t>() >= 0 && rows.max().item<int64_t>() < images.size(0),
                      "fastvae: gather_pixels: rows out of range");
        auto out = at::empty({rows.size(0), images.size(1)}, at::kFloat);
        gather_pixels(images, rows.data_ptr<int64_t>(), rows.size(0), threshold, parse_pixels(pixels), gen, out,
                      at::Tensor(), nullptr);
        return out;
      },
      py::arg("images"), py::arg("rows"), py::arg("threshold"), py::arg("pixels"), py::arg("generator"),
      "float32 [n, D]: the pixels of images[rows] as fastvae.fit feeds them to a model (TrainOptions.pixels).");
  m.def("all_finite", [](std::vector<at::Tensor> ts) { return cpu::all_finite(ts); }, py::arg("tensors"),
        "True if no entry of the float32/float64 tensors is NaN or inf (fastvae.finite's check for CPU tensors).");
  m.def(
      "_adam_step_in_place",
      [](std::vector<at::Tensor> p, std::vector<at::Tensor> g, std::vector<at::Tensor> m1, std::vector<at::Tensor> v,
         int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay) -> py::object {
        TORCH_CHECK(g.size() == p.size() && m1.size() == p.size() && v.size() == p.size() && step >= 1,
                    "fastvae: _adam_step_in_place: four lists of equal length and step >= 1");
        for (size_t k = 0; k < p.size(); ++k)
          for (const auto* t : {&p[k], &g[k], &m1[k], &v[k]})
            TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu() &&
                            t->sizes() == p[k].sizes(),
                        "fastvae: _adam_step_in_place: contiguous float32 CPU tensors, each shaped as its parameter");
        const std::vector<bool> all(p.size(), true);
        const auto bounds = cpu::adam_state_bounds(p, m1, v, all);
        const uint32_t g_bits = cpu::max_magnitude_bits(g, all);
        if (!cpu::adam_step_stays_finite(bounds, g_bits, step, lr, beta1, beta2, eps, weight_decay))
          return py::none();
        cpu::FlushDenormals flushed;  // as in the trainer
        cpu::adam_update_in_place(p, g, m1, v, all, step, lr, beta1, beta2, eps, weight_decay);
        const auto after = cpu::adam_step_bounds(bounds, g_bits, step, lr, beta1, beta2, eps, weight_decay);
        return py::make_tuple(after.p, after.m, after.v);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("step"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      "The trainer's in-place Adam step, for tests: None, leaving the tensors as they were, unless the state's bounds "
      "prove every result finite; else the step, in place, and the bounds the trainer carries to the next step "
      "(float32 bit patterns bounding max |p|, max |m| and max v, from the state's maxima before the step).");
}

}  // namespace training
}  // namespace fastvae
