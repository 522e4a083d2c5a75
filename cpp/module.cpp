// Python extension module fastvae._C: loading it registers the torch.ops.fastvae operators
// (cpp/ops.cpp) and exposes the long-running calls that need the GIL released and Python callbacks.
// ATen and pybind11 with torch's casters (at::Tensor, at::Generator): what <torch/extension.h> gives
// these sources, without the C++ frontend (torch/nn, torch/optim) that doubles their compile time.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cpu/activation.h"
#include "cpu/flush_denormals.h"
#include "cpu/gemm.h"
#include "cpu/split_threads.h"
#include "cpu/vae_engine.h"
#include "cpu/worker_pool.h"  // pool_workers, pool_jobs
#include "finite.h"  // is_finite
#include "training/options.h"  // spec_from_dict
#include "training/threads.h"
#include "training/trainer.h"
#include "vae_spec.h"

namespace {

// The engine's pool over [0, n) as the kernels call it (cpu::parallel_for_flushed), at `threads` threads on this
// thread: how often each index was visited, how many threads ran chunks, and whether a call nested in a chunk
// ran on that chunk's thread. A chunk holding index throw_at throws after visiting up to it.
pybind11::tuple pool_cover(int64_t n, int64_t grain, int threads, int64_t throw_at) {
  TORCH_CHECK(n >= 0 && grain >= 1 && threads >= 1, "fastvae: _pool_cover: n >= 0, grain >= 1, threads >= 1");
  std::vector<std::atomic<int>> visits(n);
  std::mutex mu;
  std::set<std::thread::id> ids;
  std::atomic<bool> nested_inline{true};
  {
    pybind11::gil_scoped_release nogil;
    fastvae::training::LocalThreads local;  // this thread's count for the call, the caller's back after it
    local.set(threads);
    fastvae::cpu::parallel_for_flushed(0, n, grain, [&](int64_t b, int64_t e) {
      const auto id = std::this_thread::get_id();
      {
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(id);
      }
      fastvae::cpu::parallel_for_flushed(0, 8, 1, [&](int64_t, int64_t) {
        if (std::this_thread::get_id() != id) nested_inline = false;
      });
      for (int64_t i = b; i < e; ++i) {
        visits[i].fetch_add(1, std::memory_order_relaxed);
        TORCH_CHECK(i != throw_at, "fastvae: _pool_cover: chunk failed at ", i);
      }
    });
  }
  auto out = at::empty({n}, at::kInt);
  for (int64_t i = 0; i < n; ++i) out.data_ptr<int>()[i] = visits[i].load();
  return pybind11::make_tuple(out, ids.size(), nested_inline.load());
}

// The engine's gradient of the mean ELBO (analytic KL), IWAE or PIWAE (two groups) bound (DReG encoder gradient) of
// float32 `params` (the input layer's weight may be stored transposed, as the trainer keeps it: the sparse path) at
// `threads` threads, computed twice: at once, and with the weight gradients deferred
// (VaeEngine::defer_weight_grads) and finished. Returns (the first
// gradients, the second, which of the second were pending, the pending gradients' bound as a float, how often each
// entry of each gradient's storage was handed to the finishing callback).
pybind11::tuple deferred_grads(const pybind11::dict& arch, std::vector<at::Tensor> params, const at::Tensor& x,
                               c10::optional<at::Tensor> labels, const at::Tensor& eps, int threads,
                               const std::string& objective) {
  TORCH_CHECK(objective == "elbo" || objective == "iwae" || objective == "piwae",
              "fastvae: _deferred_grads: objective 'elbo', 'iwae' or 'piwae', got '", objective, "'");
  const auto spec = fastvae::training::spec_from_dict(arch);
  std::vector<at::Tensor> contiguous;  // the shapes and dtypes; the input layer's storage may be transposed
  for (const auto& p : params) contiguous.push_back(p.contiguous());
  spec.check_params(contiguous, at::kFloat, at::Device(at::kCPU));
  const int64_t B = x.size(0);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous() && eps.scalar_type() == at::kFloat && eps.is_contiguous(),
              "fastvae: _deferred_grads: contiguous float32 x and eps");
  const int64_t* y = labels ? labels->data_ptr<int64_t>() : nullptr;
  std::vector<float> w_rec(B, -1.f / B), w_kl(B, 1.f / B);
  std::vector<at::Tensor> plain, deferred, visits;
  for (const auto& p : params) {
    plain.push_back(at::empty_like(p));
    deferred.push_back(at::full_like(p, std::numeric_limits<float>::quiet_NaN()));
    visits.push_back(at::zeros({p.numel()}, at::kInt));
  }
  std::vector<bool> pending(params.size());
  float bound = 0;
  {
    pybind11::gil_scoped_release nogil;
    fastvae::training::LocalThreads local;
    local.set(threads);
    fastvae::cpu::SplitThreads split(threads);
    fastvae::cpu::VaeEngine<float> eng(spec);
    auto pass = [&](std::vector<at::Tensor>& grads) {
      if (objective == "elbo") {
        eng.forward(params, x, y, eps, fastvae::Estimator::Analytic, w_rec.data());
        eng.backward(params, x, y, eps, fastvae::Estimator::Analytic, w_kl.data(), grads);
      } else {
        const fastvae::IwBound ob{objective == "iwae" ? fastvae::Objective::Iwae : fastvae::Objective::Piwae,
                                  objective == "iwae" ? 1 : 2, 0.0};
        eng.iwae_forward(params, x, y, eps, ob);
        eng.iwae_backward(params, x, y, eps, fastvae::IwaeEstimator::DReG, w_rec.data(), grads, ob);
      }
    };
    pass(plain);
    eng.defer_weight_grads(true);
    pass(deferred);
    for (size_t k = 0; k < params.size(); ++k) pending[k] = eng.pending(deferred[k]);
    const uint32_t bits = eng.pending_grad_bound();
    std::memcpy(&bound, &bits, sizeof bound);
    std::mutex mu;
    eng.finish_weight_grads([&](float* g, int64_t n) {
      std::lock_guard<std::mutex> lock(mu);
      for (size_t k = 0; k < deferred.size(); ++k) {
        const float* start = deferred[k].data_ptr<float>();
        if (g >= start && g < start + deferred[k].numel()) {
          int* v = visits[k].data_ptr<int>();
          for (int64_t i = 0; i < n; ++i) ++v[g - start + i];
        }
      }
    });
  }
  return pybind11::make_tuple(plain, deferred, pybind11::cast(pending), bound, visits);
}

// a^T b by the engine's weight-gradient product (cpu/gemm.h) into columns [0, N) of an [M, N + pad] buffer whose
// other entries stay NaN, so a test sees any write outside C.
at::Tensor gemm_at_b(const at::Tensor& a, const at::Tensor& b, int64_t pad) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(0) == b.size(0) && a.scalar_type() == at::kFloat &&
                  b.scalar_type() == at::kFloat && a.stride(1) == 1 && b.stride(1) == 1 && pad >= 0,
              "fastvae._gemm_at_b: a [K, M] and b [K, N] float32 with contiguous rows, pad >= 0");
  const int64_t K = a.size(0), M = a.size(1), N = b.size(1);
  auto c = at::full({M, N + pad}, std::numeric_limits<float>::quiet_NaN(), a.options());
  fastvae::cpu::gemm_at_b<float>(M, N, K, a.data_ptr<float>(), a.stride(0), b.data_ptr<float>(), b.stride(0),
                                 c.data_ptr<float>(), N + pad);
  return c;
}

// Index of the first tensor with a NaN or inf entry, -1 if none: fit's check of a model's parameters before it trains
// (one vectorized pass per dense float tensor, no boolean tensor per parameter as torch.isfinite(p).all() makes).
int64_t first_nonfinite(const std::vector<at::Tensor>& tensors) {
  for (size_t k = 0; k < tensors.size(); ++k)
    if (!fastvae::is_finite(tensors[k])) return static_cast<int64_t>(k);
  return -1;
}

// The engine's activation pass (cpu/activation.h, bias_act_row) on each row of x [R, n], with the bias [n] if given.
at::Tensor activation(const at::Tensor& x, const c10::optional<at::Tensor>& bias, const std::string& name,
                      double slope) {
  const fastvae::Act act = fastvae::parse_activation(name, "fastvae._activation");
  TORCH_CHECK(x.dim() == 2 && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) &&
                  (!bias || (bias->dim() == 1 && bias->size(0) == x.size(1) &&
                             bias->scalar_type() == x.scalar_type())),
              "fastvae._activation: x [R, n] float32 or float64, bias [n] of its dtype");
  auto out = x.contiguous().clone();
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  fastvae::cpu::FlushDenormals flush;  // the engine's arithmetic mode
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "_activation", [&] {
    fastvae::cpu::with_act<scalar_t>(act, [&](auto tag) {
      constexpr fastvae::Act A = decltype(tag)::value;
      const int64_t n = out.size(1);
      for (int64_t r = 0; r < out.size(0); ++r)
        fastvae::cpu::bias_act_row<A, scalar_t>(out.data_ptr<scalar_t>() + r * n,
                                                b.defined() ? b.data_ptr<scalar_t>() : nullptr, n,
                                                static_cast<scalar_t>(slope));
    });
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastvae C++ core";
#ifdef FASTVAE_BUILT_AVX2
  m.attr("built_with_avx2") = true;
#else
  m.attr("built_with_avx2") = false;
#endif
  // The valid enum names, from the one table of each (cpp/vae_spec.cpp), in code order.
  auto names = [](const std::vector<std::string>& v) { return pybind11::tuple(pybind11::cast(v)); };
  m.attr("ACTIVATIONS") = names(fastvae::activation_names());
  m.attr("POSTERIORS") = names(fastvae::posterior_names());
  m.attr("ESTIMATORS") = names(fastvae::estimator_names());
  m.attr("LIKELIHOODS") = names(fastvae::likelihood_names());
  m.attr("IWAE_ESTIMATORS") = names(fastvae::iwae_estimator_names());
  m.attr("OBJECTIVES") = names(fastvae::objective_names());
  m.attr("GAUSSIAN_SCALES") = names(fastvae::gaussian_scale_names());
  m.attr("LATENTS") = names(fastvae::latent_names());
  // What data each likelihood takes ("binary", "unit_interval", "real"), from the likelihood table.
  pybind11::dict data;
  for (size_t i = 0; i < fastvae::likelihood_names().size(); ++i) {
    const auto lik = static_cast<fastvae::Likelihood>(i);
    data[fastvae::likelihood_name(lik)] = fastvae::likelihoods::data_name(fastvae::likelihood_data(lik));
  }
  m.attr("LIKELIHOOD_DATA") = data;
  fastvae::training::bind_trainer(m);
  // The engine's thread pool (cpp/cpu/worker_pool.h), for tests and bench/bench_regions.py.
  m.def("_pool_stats", [] { return pybind11::make_tuple(fastvae::cpu::pool_workers(), fastvae::cpu::pool_jobs()); },
        "(workers started, ranges run with them) of the engine's thread pool in this process.");
  m.def("_pool_cover", &pool_cover, pybind11::arg("n"), pybind11::arg("grain"), pybind11::arg("threads"),
        pybind11::arg("throw_at") = -1,
        "For tests: (int32 [n] visits per index, threads that ran chunks, nested calls ran inline) of one range "
        "run on the engine's pool at `threads` threads; a chunk holding index throw_at raises.");
  m.def("_gemm_at_b", &gemm_at_b, pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("pad") = 0,
        "For tests: a^T b [M, N + pad] by the engine's weight-gradient product (cpp/cpu/gemm.h), NaN in the pad.");
  m.def("_first_nonfinite", &first_nonfinite, pybind11::arg("tensors"),
        "Index of the first tensor holding a NaN or inf, -1 if none (fit's check of the parameters).");
  m.def("_activation", &activation, pybind11::arg("x"), pybind11::arg("bias") = pybind11::none(),
        pybind11::arg("name"), pybind11::arg("negative_slope") = 0.01,
        "For tests: act(x + bias) row by row, by the engine's activation pass (cpp/cpu/activation.h).");
  m.def("_deferred_grads", &deferred_grads, pybind11::arg("arch"), pybind11::arg("params"), pybind11::arg("x"),
        pybind11::arg("labels"), pybind11::arg("eps"), pybind11::arg("threads"), pybind11::arg("objective") = "elbo",
        "For tests: (gradients computed at once, the same deferred and finished, which were pending, the pending "
        "ones' bound, int32 visits per storage entry of the finishing callback) of the engine's ELBO, IWAE or PIWAE "
        "backward.");
}
