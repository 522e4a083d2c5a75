// Flush-to-zero and denormals-are-zero for the MLP engine's arithmetic, scoped: the caller's floating-point
// mode is restored on exit. As training goes on, some values fall below 1.2e-38, float32's smallest normal
// number (Adam's second moments, squares of tiny gradients, for one); on Intel cores every
// instruction that meets such an operand takes a microcode assist of about a hundred cycles, which made the
// STATS 305C VAE's epochs after the first more than twice as slow (docs/engine.md). Values that small are
// rounding noise for a loss of order 100, so they are read and written as zero (the mode that
// torch.set_flush_denormal(True) sets for a whole thread).
// MXCSR is per thread: the training loop sets it on its own thread, and the engine's parallel regions on each
// of their workers (parallel_for_flushed).
#pragma once

#include "cpu/worker_pool.h"

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

// f(b, e) over chunks of [begin, end) of at least `grain` on the engine's pool (cpu/worker_pool.h), each chunk
// under FlushDenormals (a worker's MXCSR is not the caller's).
template <typename F>
void parallel_for_flushed(int64_t begin, int64_t end, int64_t grain, const F& f) {
  run_chunks(
      begin, end, grain,
      [](const void* ctx, int64_t b, int64_t e) {
        FlushDenormals flushed;
        (*static_cast<const F*>(ctx))(b, e);
      },
      &f);
}

}  // namespace cpu
}  // namespace fastvae
