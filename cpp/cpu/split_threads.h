// The thread count the engine's matrix products are split for. Each product is cut into column blocks, one BLAS
// call each, and a BLAS call's results depend on its block's shape; so the blocks must not follow the number of
// threads running now, or one and two threads would give different bits. The trainer fixes the split count for
// a run (its configured thread count, training/threads.h) while it changes the threads that run the blocks.
#pragma once
#include <ATen/Parallel.h>

#include <cstdint>

namespace fastvae {
namespace cpu {

namespace detail {
inline thread_local int split_override = 0;  // 0: none, the current thread count
}

// The split count on this thread: the override of an enclosing SplitThreads, else at::get_num_threads().
inline int split_threads() {
  return detail::split_override > 0 ? detail::split_override : at::get_num_threads();
}

// Fixes split_threads() on this thread to `n` for its lifetime.
class SplitThreads {
 public:
  explicit SplitThreads(int n) : saved_(detail::split_override) { detail::split_override = n; }
  ~SplitThreads() { detail::split_override = saved_; }
  SplitThreads(const SplitThreads&) = delete;
  SplitThreads& operator=(const SplitThreads&) = delete;

 private:
  int saved_;
};

}  // namespace cpu
}  // namespace fastvae
