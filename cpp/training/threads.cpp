#include "training/threads.h"

#include <mutex>

#include "cpu/gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastvae {
namespace training {
namespace {

int omp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void omp_set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

// The last choice of any fit in this process: configured count, chosen count, when.
struct LastChoice {
  std::mutex mu;
  int configured = 0, chosen = 0;
  std::chrono::steady_clock::time_point at;
};
LastChoice& last_choice() {
  static LastChoice c;
  return c;
}

}  // namespace

LocalThreads::LocalThreads() : caller_omp_(omp_threads()), caller_mkl_(-1), current_(caller_omp_) {}

LocalThreads::~LocalThreads() {
  if (caller_mkl_ < 0) return;  // never set
  omp_set_threads(caller_omp_);
  cpu::set_blas_local_threads(caller_mkl_);
}

void LocalThreads::set(int n) {
  if (n == current_ && caller_mkl_ >= 0) return;
  omp_set_threads(n);
  if (caller_mkl_ < 0) caller_mkl_ = cpu::set_blas_local_threads(1);
  current_ = n;
}

LocalThreads::Paused::Paused(LocalThreads& t) : t_(t) {
  if (t_.caller_mkl_ < 0) return;
  omp_set_threads(t_.caller_omp_);
  cpu::set_blas_local_threads(t_.caller_mkl_);
}

LocalThreads::Paused::~Paused() {
  if (t_.caller_mkl_ < 0) return;
  omp_set_threads(t_.current_);
  cpu::set_blas_local_threads(1);
}

ThreadChooser::ThreadChooser(int configured, bool adapt)
    : configured_(configured), chosen_(configured), adapt_(adapt && configured > 1) {
  if (!adapt_) return;
  auto& last = last_choice();
  std::lock_guard<std::mutex> lock(last.mu);
  const double age = seconds_since(last.at);
  if (last.configured == configured_ && age < kHoldSeconds) {  // the rest of that hold
    chosen_ = last.chosen;
    start(Phase::Hold);
    hold_ = kHoldSeconds - age;
  }
}

void ThreadChooser::start(Phase p) {
  phase_ = p;
  updates_ = 0;
  seconds_ = 0;
  hold_ = kHoldSeconds;
}

void ThreadChooser::decide(int n) {
  chosen_ = n;
  start(Phase::Hold);
  auto& last = last_choice();
  std::lock_guard<std::mutex> lock(last.mu);
  last.configured = configured_;
  last.chosen = n;
  last.at = std::chrono::steady_clock::now();
}

int ThreadChooser::before_update() {
  if (pinned_ > 0) return chosen_ = pinned_;
  if (!adapt_) return configured_;
  switch (phase_) {
    case Phase::ProbeOne: return 1;
    case Phase::ProbeConfigured: return configured_;
    case Phase::Hold: return chosen_;
  }
  return configured_;
}

void ThreadChooser::after_update(double seconds) {
  if (!adapt_ || pinned_ > 0) return;
  if (!warm_ && phase_ != Phase::Hold) {  // the fit's first update, or the first after a change of count (the
    warm_ = true;                        // pool's wake-up): not timed
    return;
  }
  ++updates_;
  seconds_ += seconds;
  const bool measured = updates_ >= kProbeUpdates && seconds_ >= kProbeSeconds;
  switch (phase_) {
    case Phase::ProbeOne:
      if (measured) {
        per_update_one_ = seconds_ / updates_;
        start(Phase::ProbeConfigured);
        warm_ = false;
      }
      break;
    case Phase::ProbeConfigured:
      if (seconds_ / updates_ > per_update_one_ * 1.5) {
        decide(1);  // clearly slower than one thread already: stop paying for its measurement
      } else if (measured) {  // one thread only when clearly faster (kOneThreadGain): the configured count's
        // workers never hold the caller up unless they run a chunk (cpu/worker_pool.h), and a busy machine's
        // timings are noisy
        decide(seconds_ / updates_ * kOneThreadGain > per_update_one_ ? 1 : configured_);
      }
      break;
    case Phase::Hold:
      if (seconds_ >= hold_) start(Phase::ProbeOne);
      break;
  }
}

}  // namespace training
}  // namespace fastvae
