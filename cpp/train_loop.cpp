// Whole-epoch VAE training in C++: shuffling, batching, binarizing, the fused ELBO gradient and the
// Adam step, with the GIL released. Python sees progress through a callback every few updates and
// can stop the loop (Ctrl-C or an exception in the callback) between two updates, so the parameters
// and the optimizer state are always those of a completed step. A non-finite loss or gradient stops
// the loop before the update it would have corrupted. The generator's state comes in and goes out,
// so that successive calls draw exactly what one longer call would.
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <limits>
#include <tuple>

#include "cpu/adam.h"
#include "cpu/flush_denormals.h"
#include "cpu/vae_engine.h"
#include "train_loop.h"
#include "vae_spec.h"

namespace py = pybind11;

namespace fastvae {
namespace {

using Engine = cpu::VaeEngine<float>;

// What the loop feeds the model for a uint8 pixel p (issue 9 item 2), TrainOptions.pixels:
// threshold: p > threshold as 0/1 (static binarization, the homeworks'); dynamic: a fresh
// x ~ Bernoulli(p / 255) each time the image is used (Burda et al. 2016), drawn as u < p / 255 with
// u ~ U(0, 1) from the loop's generator (one uniform_ of [batch, D] before the batch's eps);
// intensity: p / 255 itself, for the continuous likelihoods only. Position = value; exposed as _C.PIXELS.
enum class Pixels : int64_t { Threshold = 0, Dynamic = 1, Intensity = 2 };
const std::vector<std::string>& pixel_names() {
  static const std::vector<std::string> names{"threshold", "dynamic", "intensity"};
  return names;
}
Pixels parse_pixels(const std::string& name) {
  const auto& names = pixel_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<Pixels>(i);
  TORCH_CHECK(false, "fastvae.fit: unknown pixels '", name, "'; choose one of ['threshold', 'dynamic', 'intensity']");
  return Pixels::Threshold;
}

struct Options {
  int64_t epochs = 0, batch_size = 0, n_samples = 0, threshold = 0, callback_every = 0, eval_every = 0,
          eval_samples = 0;
  Estimator estimator = Estimator::Analytic;
  Pixels pixels = Pixels::Threshold;
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, kl_weight = 0;
  bool iwae = false;  // objective "iwae": the IWAE bound with k samples instead of the ELBO
  int64_t k = 1;
  IwaeEstimator iwae_estimator = IwaeEstimator::Reparam;
  int64_t kl_warmup = 0;  // updates of the linear KL warm-up (0: off)
  double free_bits = 0;   // free bits lambda, nats per latent dimension (0: off)
  // Categorical latents: Gumbel-softmax temperature tau_0, its floor, anneal rate r and period (updates),
  // straight-through hard samples (Jang et al. 2017; see temperature_at).
  double temperature = 1, temperature_min = 0.5, anneal_rate = 0;
  int64_t anneal_every = 1000;
  bool hard = false;
};

// tau of the update that follows t completed optimizer steps: max(tau_min, tau_0 exp(-r t')), t' = t rounded
// down to a multiple of anneal_every (Jang et al. 2017 update tau every N steps); follows the optimizer's
// step, so a resumed fit continues the schedule exactly.
double temperature_at(const Options& o, int64_t t) {
  const double t_q = double(t / o.anneal_every * o.anneal_every);
  return std::max(o.temperature_min, o.temperature * std::exp(-o.anneal_rate * t_q));
}

// The loop's reparameterization noise: N(0, 1) for Gaussian latents; for categorical ones U(0, 1) clamped to
// [FLT_MIN, 1) (uniform_ can return 0, whose Gumbel -log(-log u) is -inf) for the Gumbel-softmax.
void draw_noise(at::Tensor& e, const VaeSpec& spec, at::Generator& gen) {
  if (!spec.categorical()) {
    e.normal_(0, 1, gen);
    return;
  }
  e.uniform_(0, 1, gen);
  e.clamp_min_(std::numeric_limits<float>::min());
}

// "elbo" -> false, "iwae" -> true; anything else is an error naming both.
bool parse_objective(const std::string& name) {
  TORCH_CHECK(name == "elbo" || name == "iwae", "fastvae: unknown objective '", name,
              "'; choose one of ['elbo', 'iwae']");
  return name == "iwae";
}

// The one table of training options the loop reads, by the field names of fastvae.TrainOptions
// (python/fastvae/options.py). A new option is one line here and one field there; a name on one side
// only is an error on every call (options_from_dict), and tests compare the two lists.
using OptionReader = void (*)(Options&, py::handle);
struct OptionField {
  const char* name;
  OptionReader read;
};
const OptionField kOptionFields[] = {
    {"epochs", [](Options& o, py::handle v) { o.epochs = v.cast<int64_t>(); }},
    {"batch_size", [](Options& o, py::handle v) { o.batch_size = v.cast<int64_t>(); }},
    {"n_samples", [](Options& o, py::handle v) { o.n_samples = v.cast<int64_t>(); }},
    {"lr", [](Options& o, py::handle v) { o.lr = v.cast<double>(); }},
    {"betas", [](Options& o, py::handle v) { std::tie(o.beta1, o.beta2) = v.cast<std::pair<double, double>>(); }},
    {"eps", [](Options& o, py::handle v) { o.eps = v.cast<double>(); }},
    {"weight_decay", [](Options& o, py::handle v) { o.weight_decay = v.cast<double>(); }},
    {"threshold", [](Options& o, py::handle v) { o.threshold = v.cast<int64_t>(); }},
    {"estimator", [](Options& o, py::handle v) { o.estimator = parse_estimator(v.cast<std::string>()); }},
    {"kl_weight", [](Options& o, py::handle v) { o.kl_weight = v.cast<double>(); }},
    {"eval_every", [](Options& o, py::handle v) { o.eval_every = v.cast<int64_t>(); }},
    {"eval_samples", [](Options& o, py::handle v) { o.eval_samples = v.cast<int64_t>(); }},
    {"callback_every", [](Options& o, py::handle v) { o.callback_every = v.cast<int64_t>(); }},
    {"pixels", [](Options& o, py::handle v) { o.pixels = parse_pixels(v.cast<std::string>()); }},
    {"objective", [](Options& o, py::handle v) { o.iwae = parse_objective(v.cast<std::string>()); }},
    {"k", [](Options& o, py::handle v) { o.k = v.cast<int64_t>(); }},
    {"iwae_estimator",
     [](Options& o, py::handle v) { o.iwae_estimator = parse_iwae_estimator(v.cast<std::string>()); }},
    {"kl_warmup", [](Options& o, py::handle v) { o.kl_warmup = v.cast<int64_t>(); }},
    {"free_bits", [](Options& o, py::handle v) { o.free_bits = v.cast<double>(); }},
    {"temperature", [](Options& o, py::handle v) { o.temperature = v.cast<double>(); }},
    {"temperature_min", [](Options& o, py::handle v) { o.temperature_min = v.cast<double>(); }},
    {"anneal_rate", [](Options& o, py::handle v) { o.anneal_rate = v.cast<double>(); }},
    {"anneal_every", [](Options& o, py::handle v) { o.anneal_every = v.cast<int64_t>(); }},
    {"hard", [](Options& o, py::handle v) { o.hard = v.cast<bool>(); }},
};

Options options_from_dict(const py::dict& d) {
  Options o;
  for (const auto& f : kOptionFields) {
    TORCH_CHECK(d.contains(f.name), "fastvae.fit: training option '", f.name,
                "' is missing from the options handed to the C++ loop");
    try {
      f.read(o, d[f.name]);
    } catch (const py::cast_error&) {
      TORCH_CHECK(false, "fastvae.fit: training option '", f.name, "' has the wrong type: ",
                  std::string(py::repr(d[f.name])));
    }
  }
  for (const auto& item : d) {
    const auto key = item.first.cast<std::string>();
    bool known = false;
    for (const auto& f : kOptionFields) known = known || key == f.name;
    TORCH_CHECK(known, "fastvae.fit: the C++ loop has no training option '", key, "'");
  }
  return o;
}

// The architecture from ArchSpec.as_dict() (python/fastvae/vae.py), read by name.
VaeSpec spec_from_dict(const py::dict& d) {
  auto get = [&](const char* k) -> py::object {
    TORCH_CHECK(d.contains(k), "fastvae.fit: architecture field '", k, "' is missing");
    return d[k];
  };
  TORCH_CHECK(d.size() == 15, "fastvae.fit: expected the 15 architecture fields, got ", d.size());
  const auto enc = get("encoder_hidden").cast<std::vector<int64_t>>();
  const auto dec = get("decoder_hidden").cast<std::vector<int64_t>>();
  const auto act = get("activation").cast<std::string>(), post = get("posterior").cast<std::string>();
  const auto mean_act = get("mean_activation").cast<std::string>();
  const auto scale_act = get("scale_activation").cast<std::string>();
  const auto likelihood = get("likelihood").cast<std::string>();
  const auto latent = get("latent").cast<std::string>();
  return VaeSpec::from_args(get("data_dim").cast<int64_t>(), get("cond_dim").cast<int64_t>(),
                            get("latent_dim").cast<int64_t>(), enc, dec, act,
                            get("negative_slope").cast<double>(), post, mean_act, scale_act, likelihood,
                            get("gaussian_sigma").cast<double>(), get("gaussian_scale").cast<std::string>(), latent,
                            get("categories").cast<int64_t>());
}

// x_out[i, :] = (images[idx[i], :] > threshold) as 0/1 floats.
void gather_binarize(const at::Tensor& images, const int64_t* idx, int64_t n, int64_t threshold,
                     at::Tensor& x_out, const at::Tensor& labels, at::Tensor* y_out) {
  const int64_t D = images.size(1);
  const uint8_t* src = images.data_ptr<uint8_t>();
  float* dst = x_out.data_ptr<float>();
  cpu::parallel_for_flushed(0, n, std::max<int64_t>(1, 65536 / D), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint8_t* s = src + idx[i] * D;
      float* d = dst + i * D;
      for (int64_t k = 0; k < D; ++k) d[k] = s[k] > threshold ? 1.f : 0.f;
    }
  });
  if (y_out) {
    const int64_t* ly = labels.data_ptr<int64_t>();
    int64_t* yo = y_out->data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) yo[i] = ly[idx[i]];
  }
}

// x_out[i, :] = the pixels of images[idx[i], :] as the model sees them (see Pixels); for dynamic
// binarization x_out first receives the uniforms (one uniform_ of its n * D entries, in row order).
void gather_pixels(const at::Tensor& images, const int64_t* idx, int64_t n, int64_t threshold, Pixels pixels,
                   at::Generator& gen, at::Tensor& x_out, const at::Tensor& labels, at::Tensor* y_out) {
  if (pixels == Pixels::Threshold) {
    gather_binarize(images, idx, n, threshold, x_out, labels, y_out);
    return;
  }
  if (pixels == Pixels::Dynamic) x_out.uniform_(0, 1, gen);
  const int64_t D = images.size(1);
  const uint8_t* src = images.data_ptr<uint8_t>();
  float* dst = x_out.data_ptr<float>();
  const bool dynamic = pixels == Pixels::Dynamic;
  cpu::parallel_for_flushed(0, n, std::max<int64_t>(1, 65536 / D), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint8_t* s = src + idx[i] * D;
      float* d = dst + i * D;
      for (int64_t k = 0; k < D; ++k) {
        const float p = static_cast<float>(s[k]) / 255.f;
        d[k] = dynamic ? (d[k] < p ? 1.f : 0.f) : p;
      }
    }
  });
  if (y_out) {
    const int64_t* ly = labels.data_ptr<int64_t>();
    int64_t* yo = y_out->data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) yo[i] = ly[idx[i]];
  }
}

// Mean over a data set of rec, kl (L samples per image, chunks of 500 images).
std::pair<double, double> evaluate(Engine& eng, at::TensorList params, const at::Tensor& images,
                                   const at::Tensor& labels, int64_t threshold, int64_t L,
                                   Estimator est, at::Generator& gen, Pixels pixels = Pixels::Threshold) {
  const int64_t M = images.size(0), chunk = 500, Z = eng.spec().code_dim();
  const bool cond = labels.defined();
  double rec = 0, kl = 0;
  auto idx = at::arange(M, at::kLong);
  for (int64_t s = 0; s < M; s += chunk) {
    const int64_t n = std::min(chunk, M - s);
    auto x = at::empty({n, images.size(1)}, at::kFloat);
    at::Tensor y = cond ? at::empty({n}, at::kLong) : at::Tensor();
    gather_pixels(images, idx.data_ptr<int64_t>() + s, n, threshold, pixels, gen, x, labels, cond ? &y : nullptr);
    auto eps = at::empty({L, n, Z}, at::kFloat);
    draw_noise(eps, eng.spec(), gen);
    if (eng.spec().categorical()) {  // hard samples: Gumbel-max draws of q, the discrete model's ELBO (any tau)
      eng.categorical_forward(params, x, cond ? y.data_ptr<int64_t>() : nullptr, eps, 1.0, true, nullptr);
    } else {
      eng.forward(params, x, cond ? y.data_ptr<int64_t>() : nullptr, eps, est, nullptr);
    }
    rec += eng.rec().sum().item<double>();
    kl += eng.kl().sum().item<double>();
  }
  return {rec / M, kl / M};
}

// Sum of a contiguous float vector, accumulated in double (the per-update rec and kl of the loop).
double sum_of(const at::Tensor& t) {
  const float* p = t.data_ptr<float>();
  double s = 0;
  for (int64_t i = 0, n = t.numel(); i < n; ++i) s += p[i];
  return s;
}

void check_images(const at::Tensor& t, const char* name, int64_t D) {
  TORCH_CHECK(t.scalar_type() == at::kByte, "fastvae.fit: ", name, " must be uint8 pixel intensities");
  TORCH_CHECK(t.dim() == 2 && t.size(1) == D, "fastvae.fit: ", name, " must have shape [N, ", D,
              "], got ", t.sizes());
  TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), "fastvae.fit: ", name, " must be contiguous, on CPU");
}

py::dict train_vae(std::vector<at::Tensor> params, std::vector<at::Tensor> exp_avg,
                   std::vector<at::Tensor> exp_avg_sq, int64_t step, py::dict arch,
                   at::Tensor train_x, c10::optional<at::Tensor> train_y,
                   c10::optional<at::Tensor> test_x, c10::optional<at::Tensor> test_y,
                   c10::optional<at::Tensor> val_x, c10::optional<at::Tensor> val_y, py::dict options,
                   at::Tensor generator_state, py::object callback, py::object all_reduce, int64_t rank,
                   int64_t world) {
  const VaeSpec spec = spec_from_dict(arch);
  const Options o = options_from_dict(options);
  spec.check_params(params, at::kFloat, at::Device(at::kCPU));
  const int64_t D = spec.data_dim, Z = spec.latent_dim, N = train_x.size(0);
  check_images(train_x, "train images", D);
  if (test_x) check_images(*test_x, "test images", D);
  if (val_x) check_images(*val_x, "validation images", D);
  const bool cond = spec.cond_dim > 0;
  spec.check_labels(train_y, N);
  if (test_x) spec.check_labels(test_y, test_x->size(0));
  if (val_x) spec.check_labels(val_y, val_x->size(0));
  TORCH_CHECK(o.epochs >= 0 && o.batch_size >= 1 && o.n_samples >= 1 && N >= 1,
              "fastvae.fit: need epochs >= 0, batch_size >= 1, n_samples >= 1 and some training data");
  TORCH_CHECK(o.threshold >= 0 && o.threshold <= 255, "fastvae.fit: threshold must lie in [0, 255]");
  TORCH_CHECK(o.kl_weight >= 0 && std::isfinite(o.kl_weight), "fastvae.fit: kl_weight must be finite and >= 0");
  TORCH_CHECK(o.pixels != Pixels::Intensity || spec.lik != Likelihood::Bernoulli,
              "fastvae.fit: pixels='intensity' feeds intensities in [0, 1], which the bernoulli likelihood "
              "cannot take; use pixels='threshold' or 'dynamic', or a continuous likelihood");
  TORCH_CHECK(!o.iwae || (o.k >= 1 && o.kl_weight == 1.0),
              "fastvae.fit: objective 'iwae' needs k >= 1 and kl_weight 1");
  TORCH_CHECK(o.kl_warmup >= 0 && (!o.iwae || o.kl_warmup == 0),
              "fastvae.fit: kl_warmup must be >= 0, and 0 with objective 'iwae'");
  TORCH_CHECK(o.free_bits >= 0 && std::isfinite(o.free_bits), "fastvae.fit: free_bits must be finite and >= 0");
  TORCH_CHECK(o.free_bits == 0 || (!o.iwae && o.estimator == Estimator::Analytic && !spec.categorical()),
              "fastvae.fit: free_bits needs objective 'elbo' with estimator 'analytic' and a Gaussian latent");
  TORCH_CHECK(!spec.categorical() || (!o.iwae && o.estimator == Estimator::Analytic),
              "fastvae.fit: a categorical latent trains the ELBO with its analytic KL (objective 'elbo', estimator "
              "'analytic')");
  TORCH_CHECK(o.temperature > 0 && o.temperature_min > 0 && o.temperature_min <= o.temperature &&
                  std::isfinite(o.temperature) && o.anneal_rate >= 0 && std::isfinite(o.anneal_rate) &&
                  o.anneal_every >= 1,
              "fastvae.fit: need 0 < temperature_min <= temperature (finite), anneal_rate >= 0, anneal_every >= 1");
  TORCH_CHECK(exp_avg.size() == params.size() && exp_avg_sq.size() == params.size(),
              "fastvae.fit: optimizer state does not match the parameters");
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world && (world == 1) == all_reduce.is_none(),
              "fastvae.fit: need 0 <= rank < world, and an all_reduce callable exactly when world > 1");
  TORCH_CHECK(world == 1 || o.free_bits == 0,
              "fastvae.fit: free_bits needs the minibatch's KL per dimension before the backward pass, which "
              "data-parallel training does not gather; train with free_bits=0 or in one process");
  const auto est = o.estimator;
  // A batch larger than the data set is the whole data set (buffers never exceed N rows).
  const int64_t B = std::min(o.batch_size, N), L = o.iwae ? o.k : o.n_samples;
  const int64_t per_epoch = (N + B - 1) / B;

  // The input layer is trained in transposed storage so its forward product and weight gradient can
  // skip the zero pixels of binarized images (cpu::VaeEngine::sparse_input_forward). The user's tensors
  // get the result back when the loop ends, however it ends.
  auto transposed = [](const at::Tensor& t) { return t.t().contiguous().t(); };
  std::vector<at::Tensor> user_p = params, user_m = exp_avg, user_v = exp_avg_sq;
  params[0] = transposed(user_p[0]);
  exp_avg[0] = transposed(user_m[0]);
  exp_avg_sq[0] = transposed(user_v[0]);
  struct CopyBack {
    std::vector<at::Tensor>&a, &b, &c, &ua, &ub, &uc;
    ~CopyBack() {
      at::AutoDispatchBelowADInplaceOrView guard;
      ua[0].copy_(a[0]);
      ub[0].copy_(b[0]);
      uc[0].copy_(c[0]);
    }
  } copy_back{params, exp_avg, exp_avg_sq, user_p, user_m, user_v};

  // Every buffer of the hot loop is allocated here, once. The gradients are views of one flat buffer
  // (keeping the transposed strides) followed by the batch's rec and kl sums, so that data-parallel
  // training reduces everything an update needs with one all_reduce.
  int64_t n_grad = 0;
  for (const auto& p : params) n_grad += p.numel();
  auto flat = at::zeros({n_grad + 2}, at::kFloat);
  std::vector<at::Tensor> grads;
  for (int64_t i = 0, off = 0; i < static_cast<int64_t>(params.size()); off += params[i].numel(), ++i)
    grads.push_back(flat.narrow(0, off, params[i].numel()).as_strided(params[i].sizes(), params[i].strides()));
  float* flat_terms = flat.data_ptr<float>() + n_grad;
  auto perm = at::empty({N}, at::kLong);
  auto xb = at::empty({B, D}, at::kFloat);
  auto yb = at::empty({B}, at::kLong);
  auto eps = at::empty({L, B, spec.code_dim()}, at::kFloat);
  auto w_rec = at::empty({B}, at::kFloat), w_kl = at::empty({B}, at::kFloat);
  std::vector<float> free_bits_mask(Z, 1.f);  // per latent dimension: KL_j > free_bits
  const int64_t total = o.epochs * per_epoch;
  auto upd_rec = at::zeros({total}, at::kDouble), upd_kl = at::zeros({total}, at::kDouble);
  auto ep_train = at::zeros({o.epochs}, at::kDouble), ep_test = at::full({o.epochs}, NAN, at::kDouble);
  auto ep_sec = at::zeros({o.epochs}, at::kDouble);
  std::vector<int64_t> val_step;
  std::vector<double> val_rec, val_kl;
  auto gen = at::make_generator<at::CPUGeneratorImpl>();
  gen.set_state(generator_state);  // validates the byte tensor (size, dtype)
  Engine eng(spec), eval_eng(spec);
  const at::Tensor no_labels;

  int64_t done = 0, epochs_done = 0;
  py::object error = py::none();
  const char* diverged = nullptr;  // "loss" or "gradient": what was not finite at update step + 1
  {
    py::gil_scoped_release nogil;
    cpu::FlushDenormals flushed;  // this thread's share of the engine's arithmetic (cpu/flush_denormals.h)
    auto report = [&](const char* event, py::dict info) -> bool {
      cpu::FlushDenormals::Paused caller_mode(flushed);  // the user's callback runs in the user's mode
      py::gil_scoped_acquire gil;
      try {
        if (!callback.is_none()) callback(event, info);
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      } catch (py::error_already_set& e) {
        error = e.value();
        return false;
      }
      return true;
    };
    auto record_val = [&]() {
      auto r = evaluate(eval_eng, params, *val_x, val_y ? *val_y : no_labels, o.threshold,
                        o.eval_samples, est, gen, o.pixels);
      val_step.push_back(step);  // the schedule follows the optimizer's step, so resumed runs keep it
      val_rec.push_back(r.first);
      val_kl.push_back(r.second);
    };
    bool stop = false;
    if (val_x && o.eval_every > 0 && step == 0) record_val();
    for (int64_t epoch = 0; epoch < o.epochs && !stop; ++epoch) {
      auto t0 = std::chrono::steady_clock::now();
      at::randperm_out(perm, N, gen);
      const int64_t* pi = perm.data_ptr<int64_t>();
      double elbo_sum = 0;
      for (int64_t b = 0; b < per_epoch; ++b) {
        const int64_t s = b * B, n = std::min(B, N - s);
        at::Tensor x = n == B ? xb : xb.narrow(0, 0, n);
        at::Tensor y = n == B ? yb : yb.narrow(0, 0, n);
        at::Tensor e = n == B ? eps : eps.narrow(1, 0, n).contiguous();
        gather_pixels(train_x, pi + s, n, o.threshold, o.pixels, gen, x, cond ? *train_y : no_labels,
                      cond ? &y : nullptr);
        draw_noise(n == B ? eps : e, spec, gen);
        // Data parallel: every rank draws the whole batch as one process would and trains on its rows
        // [a, a + m) (rank r of W: rows floor(r n / W) .. floor((r + 1) n / W)), weighted by the global 1 / n.
        const int64_t a = rank * n / world, m = (rank + 1) * n / world - a;
        if (world > 1) {
          x = x.narrow(0, a, m);
          y = y.narrow(0, a, m);
          e = e.narrow(1, a, m).contiguous();
        }
        // Minimise -mean (rec - kl_weight * kl): kl_weight = 1 is the ELBO, > 1 a beta-VAE.
        // KL warm-up: the weight rises linearly from 0 over kl_warmup optimizer steps (resumes with step).
        // Plain loops and sums here, no tensor ops: at batch 20 each ATen call costs a few percent of an update.
        const double warm = o.kl_warmup > 0 ? std::min(1.0, double(step) / double(o.kl_warmup)) : 1.0;
        std::fill_n(w_rec.data_ptr<float>(), n, static_cast<float>(-1.0 / n));
        std::fill_n(w_kl.data_ptr<float>(), n, static_cast<float>(o.kl_weight * warm / n));
        const int64_t* yp = cond ? y.data_ptr<int64_t>() : nullptr;
        double r = 0, k = 0;
        const double tau = temperature_at(o, step);
        if (m == 0) {  // a rank without rows this batch (n < W) adds nothing to the sums
          flat.zero_();
        } else if (spec.categorical()) {
          eng.categorical_forward(params, x, yp, e, tau, o.hard, w_rec.data_ptr<float>());
          r = sum_of(eng.rec()) / m;
          k = sum_of(eng.kl()) / m;
        } else if (o.iwae) {  // maximise mean IWAE bound; recorded as rec (the bound) and kl 0
          r = sum_of(eng.iwae_forward(params, x, yp, e)) / m;
          k = 0;
        } else {
          eng.forward(params, x, yp, e, est, w_rec.data_ptr<float>());
          r = sum_of(eng.rec()) / m;
          k = sum_of(eng.kl()) / m;
        }
        if (world == 1 && (!std::isfinite(r) || !std::isfinite(k))) {
          diverged = "loss";
          stop = true;
          break;
        }
        if (m > 0 && o.free_bits > 0) {
          // Free bits (Kingma et al. 2016, per-dimension groups): the KL term is sum_j max(lambda, KL_j) with
          // KL_j the minibatch mean KL of dimension j; its gradient is KL_j's where KL_j > lambda, else 0.
          auto klj = eng.kl_per_dim();
          const double* kp = klj.data_ptr<double>();
          for (int64_t j = 0; j < Z; ++j) free_bits_mask[j] = kp[j] / n > o.free_bits ? 1.f : 0.f;
          eng.set_kl_dim_weights(free_bits_mask.data());
        }
        if (m == 0) {
        } else if (spec.categorical()) {
          eng.categorical_backward(params, x, yp, tau, o.hard, w_kl.data_ptr<float>(), grads);
        } else if (o.iwae) {
          eng.iwae_backward(params, x, yp, e, o.iwae_estimator, w_rec.data_ptr<float>(), grads);
        } else {
          eng.backward(params, x, yp, e, est, w_kl.data_ptr<float>(), grads);
        }
        if (world > 1) {  // sum gradients and the batch's terms over the ranks; then every rank agrees
          flat_terms[0] = static_cast<float>(r * m);
          flat_terms[1] = static_cast<float>(k * m);
          cpu::FlushDenormals::Paused caller_mode(flushed);
          py::gil_scoped_acquire gil;
          try {
            all_reduce(flat);
          } catch (py::error_already_set& err) {
            error = err.value();
            stop = true;
            break;
          }
          r = flat_terms[0] / n;
          k = flat_terms[1] / n;
          if (!std::isfinite(r) || !std::isfinite(k)) {
            diverged = "loss";
            stop = true;
            break;
          }
        }
        if (!cpu::all_finite(grads)) {
          diverged = "gradient";
          stop = true;
          break;
        }
        cpu::adam_update(params, grads, exp_avg, exp_avg_sq, ++step, o.lr, o.beta1, o.beta2, o.eps,
                         o.weight_decay);
        upd_rec.data_ptr<double>()[done] = r;
        upd_kl.data_ptr<double>()[done] = k;
        elbo_sum += (r - k) * n;
        ++done;
        if (val_x && o.eval_every > 0 && step % o.eval_every == 0) record_val();
        if (o.callback_every > 0 && (done % o.callback_every == 0 || b + 1 == per_epoch)) {
          py::gil_scoped_acquire gil;
          py::dict info;
          info["update"] = done;
          info["epoch"] = epoch;
          info["rec"] = r;
          info["kl"] = k;
          py::gil_scoped_release again;
          if (!report("step", info)) {
            stop = true;
            break;
          }
        }
      }
      if (stop) break;
      ep_train[epoch] = elbo_sum / N;
      if (test_x) {
        auto r = evaluate(eval_eng, params, *test_x, test_y ? *test_y : no_labels, o.threshold,
                          o.eval_samples, est, gen, o.pixels);
        ep_test[epoch] = r.first - r.second;
      }
      ep_sec[epoch] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      epochs_done = epoch + 1;
      py::gil_scoped_acquire gil;
      py::dict info;
      info["epoch"] = epoch;
      info["train_elbo"] = ep_train[epoch].item<double>();
      info["test_elbo"] = ep_test[epoch].item<double>();
      info["seconds"] = ep_sec[epoch].item<double>();
      py::gil_scoped_release again;
      if (!report("epoch", info)) stop = true;
    }
  }
  py::dict out;
  out["step"] = step;
  out["updates"] = done;
  out["epochs"] = epochs_done;
  out["update_rec"] = upd_rec.narrow(0, 0, done);
  out["update_kl"] = upd_kl.narrow(0, 0, done);
  out["train_elbo"] = ep_train.narrow(0, 0, epochs_done);
  out["test_elbo"] = ep_test.narrow(0, 0, epochs_done);
  out["epoch_seconds"] = ep_sec.narrow(0, 0, epochs_done);
  out["val_update"] = val_step;
  out["val_rec"] = val_rec;
  out["val_kl"] = val_kl;
  out["error"] = error;
  out["diverged"] = diverged ? py::object(py::str(diverged)) : py::object(py::none());
  out["generator_state"] = gen.get_state();
  return out;
}

}  // namespace

void bind_train_loop(py::module_& m) {
  py::tuple names(std::size(kOptionFields));
  for (size_t i = 0; i < std::size(kOptionFields); ++i) names[i] = kOptionFields[i].name;
  m.attr("TRAIN_OPTIONS") = names;
  py::tuple pixels(pixel_names().size());
  for (size_t i = 0; i < pixel_names().size(); ++i) pixels[i] = pixel_names()[i];
  m.attr("PIXELS") = pixels;
  m.def("train_vae", &train_vae, py::arg("params"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("step"), py::arg("arch"), py::arg("train_x"), py::arg("train_y"),
        py::arg("test_x"), py::arg("test_y"), py::arg("val_x"), py::arg("val_y"), py::arg("options"),
        py::arg("generator_state"), py::arg("callback"), py::arg("all_reduce") = py::none(),
        py::arg("rank") = 0, py::arg("world") = 1,
        "Train an MLP VAE in place for whole epochs (GIL released); see fastvae.VAE.fit.");
  m.def("all_finite", [](std::vector<at::Tensor> ts) { return cpu::all_finite(ts); }, py::arg("tensors"),
        "True if no entry of the float32/float64 tensors is NaN or inf (the loop's gradient check).");
}

}  // namespace fastvae
