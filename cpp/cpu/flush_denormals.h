// Flush-to-zero and denormals-are-zero for the MLP engine's arithmetic, scoped: the caller's floating-point
// mode is restored on exit. Late in training some of Adam's second moments, gradients of rarely active units
// and products of tiny weights fall below 1.2e-38 (float32's smallest normal); on Intel cores every
// instruction that meets such an operand takes a microcode assist of about a hundred cycles, which made the
// third epoch of the STATS 305C VAE twice as slow as the first (docs/engine.md). Values that small are
// rounding noise for a loss of order 100, so they are read and written as zero, as oneDNN and GPU kernels do.
// MXCSR is per thread: the training loop sets it on its own thread, and the engine's parallel regions on each
// of their workers (parallel_for_flushed).
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define FASTVAE_HAS_MXCSR 1
#endif

namespace fastvae {
namespace cpu {

class FlushDenormals {
 public:
  FlushDenormals() {
#ifdef FASTVAE_HAS_MXCSR
    saved_ = _mm_getcsr();
#endif
    set(saved_ | kFlushToZero | kDenormalsAreZero);
  }
  ~FlushDenormals() { set(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

  // The caller's mode for a scope inside (Python callbacks, collectives), then flushing again.
  class Paused {
   public:
    explicit Paused(const FlushDenormals& f) : f_(f) { f_.set(f_.saved_); }
    ~Paused() { f_.set(f_.saved_ | kFlushToZero | kDenormalsAreZero); }
    Paused(const Paused&) = delete;
    Paused& operator=(const Paused&) = delete;

   private:
    const FlushDenormals& f_;
  };

 private:
  static void set(unsigned mxcsr) {
#ifdef FASTVAE_HAS_MXCSR
    _mm_setcsr(mxcsr);
#else
    (void)mxcsr;
#endif
  }

  static constexpr unsigned kFlushToZero = 1u << 15, kDenormalsAreZero = 1u << 6;  // MXCSR bits
  unsigned saved_ = 0;
};

// at::parallel_for whose tasks run under FlushDenormals (the workers' MXCSR is not the caller's).
template <typename F>
void parallel_for_flushed(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    FlushDenormals flushed;
    f(b, e);
  });
}

}  // namespace cpu
}  // namespace fastvae
