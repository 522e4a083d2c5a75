#include "training/threads.h"

#include <dlfcn.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastvae {
namespace training {
namespace {

// MKL's per-thread count (libtorch carries MKL and exports it); returns the previous per-thread setting, 0 when
// the thread had none. A build without MKL has nothing to set. The Fortran entry point, which takes a pointer:
// libtorch exports the lower-case C name as an alias of it.
int mkl_local_threads(int n) {
  using Fn = int (*)(const int*);
  static const Fn fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "mkl_set_num_threads_local_"));
  return fn ? fn(&n) : 0;
}

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

}  // namespace

LocalThreads::LocalThreads() : caller_omp_(omp_threads()), caller_mkl_(-1), current_(caller_omp_) {}

LocalThreads::~LocalThreads() {
  if (caller_mkl_ < 0) return;  // never set
  omp_set_threads(caller_omp_);
  mkl_local_threads(caller_mkl_);
}

void LocalThreads::set(int n) {
  if (n == current_ && caller_mkl_ >= 0) return;
  omp_set_threads(n);
  if (caller_mkl_ < 0) caller_mkl_ = mkl_local_threads(1);
  current_ = n;
}

LocalThreads::Paused::Paused(LocalThreads& t) : t_(t) {
  if (t_.caller_mkl_ < 0) return;
  omp_set_threads(t_.caller_omp_);
  mkl_local_threads(t_.caller_mkl_);
}

LocalThreads::Paused::~Paused() {
  if (t_.caller_mkl_ < 0) return;
  omp_set_threads(t_.current_);
  mkl_local_threads(1);
}

ThreadChooser::ThreadChooser(int configured, bool adapt)
    : configured_(configured), chosen_(configured), adapt_(adapt && configured > 1) {}

void ThreadChooser::start(Phase p) {
  phase_ = p;
  updates_ = 0;
  seconds_ = 0;
}

int ThreadChooser::before_update() {
  if (pinned_ > 0) return chosen_ = pinned_;
  if (!adapt_) return configured_;
  switch (phase_) {
    case Phase::ProbeConfigured: return configured_;
    case Phase::ProbeOne: return 1;
    case Phase::Hold: return chosen_;
  }
  return configured_;
}

void ThreadChooser::after_update(double seconds) {
  if (!adapt_ || pinned_ > 0) return;
  if (!warm_) {
    warm_ = true;
    return;
  }
  ++updates_;
  seconds_ += seconds;
  const bool measured = updates_ >= kProbeUpdates && seconds_ >= kProbeSeconds;
  switch (phase_) {
    case Phase::ProbeConfigured:
      if (measured) {
        per_update_configured_ = seconds_ / updates_;
        start(Phase::ProbeOne);
      }
      break;
    case Phase::ProbeOne:
      if (measured) {
        chosen_ = seconds_ / updates_ < per_update_configured_ ? 1 : configured_;
        start(Phase::Hold);
      }
      break;
    case Phase::Hold:
      if (seconds_ >= kHoldSeconds) start(Phase::ProbeConfigured);
      break;
  }
}

}  // namespace training
}  // namespace fastvae
