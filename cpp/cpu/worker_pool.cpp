#include "cpu/worker_pool.h"

#include <ATen/Parallel.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "cpu/gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace fastvae {
namespace cpu {
namespace {

// How long an idle thread spins before it sleeps: long enough to catch the next region of an update (they
// follow each other within microseconds), short enough that an idle worker leaves a shared core to others.
constexpr auto kSpin = std::chrono::microseconds(50);
// Chunks per thread: a worker that starts late finds work left, and the caller is never left with a large
// chunk to wait for.
constexpr int64_t kChunksPerThread = 4;
// A range this short at grain 1 is taken one index per chunk: such ranges are lists of blocks of work (the engine's
// column blocks, its pending weight gradients), often of unequal size, and a thread claims the next block as it
// finishes one (two per chunk put both large blocks of a layer on one thread). Claims are one atomic add each.
constexpr int64_t kMaxBlocks = 64;

thread_local bool in_chunk = false;  // this thread is running a chunk: nested calls run inline

class InChunk {
 public:
  InChunk() : saved_(in_chunk) { in_chunk = true; }
  ~InChunk() { in_chunk = saved_; }
  InChunk(const InChunk&) = delete;
  InChunk& operator=(const InChunk&) = delete;

 private:
  bool saved_;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until pred() or kSpin has passed; returns pred().
template <typename P>
bool spin_for(const P& pred) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() - t0 > kSpin) return pred();
  }
}

// OpenMP and BLAS threads of this thread set to one for a scope: what a chunk calls runs on its own thread.
class OneThreadInside {
 public:
  OneThreadInside() : blas_(set_blas_local_threads(1)) {
#ifdef _OPENMP
    omp_ = omp_get_max_threads();
    if (omp_ != 1) omp_set_num_threads(1);
#endif
  }
  ~OneThreadInside() {
    set_blas_local_threads(blas_);
#ifdef _OPENMP
    if (omp_ != 1) omp_set_num_threads(omp_);
#endif
  }
  OneThreadInside(const OneThreadInside&) = delete;
  OneThreadInside& operator=(const OneThreadInside&) = delete;

 private:
  int blas_, omp_ = 1;
};

struct Job {
  ChunkFn fn;
  const void* ctx;
  int64_t begin, end, chunk, chunks;
  int workers;  // workers with an index below this take part
  alignas(64) std::atomic<int64_t> next{0};  // claims and completions on lines of their own
  alignas(64) std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::exception_ptr error;

  // Claims and runs chunks until none is left; true if this call ran the last one to finish.
  bool work() {
    bool last = false;
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      if (!failed.load(std::memory_order_relaxed)) {
        const int64_t b = begin + c * chunk;
        try {
          fn(ctx, b, std::min(end, b + chunk));
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      last = done.fetch_add(1, std::memory_order_seq_cst) + 1 == chunks;
    }
    return last;
  }
};

class Pool {
 public:
  int workers() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  int64_t jobs() const { return jobs_.load(std::memory_order_relaxed); }

  // False (nothing run) when another thread has the pool.
  bool run(Job& job) {
    bool expected = false;
    if (!owned_.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
    job.workers = start_workers(job.workers);
    job_.store(&job, std::memory_order_seq_cst);
    seq_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(mu_); }
      wake_.notify_all();
    }
    job.work();
    const auto finished = [&] { return job.done.load(std::memory_order_seq_cst) == job.chunks; };
    if (!spin_for(finished)) {  // a worker is still in a chunk (perhaps put aside by the scheduler): sleep
      std::unique_lock<std::mutex> lock(mu_);
      caller_waits_.store(true, std::memory_order_seq_cst);
      finished_.wait(lock, finished);
      caller_waits_.store(false, std::memory_order_relaxed);
    }
    // Closed: a worker that looks now finds no job; one that took the pointer before is waited for.
    job_.store(nullptr, std::memory_order_seq_cst);
    const auto left = [&] { return users_.load(std::memory_order_seq_cst) == 0; };
    while (!spin_for(left)) std::this_thread::yield();  // a worker put aside between two instructions
    jobs_.fetch_add(1, std::memory_order_relaxed);
    owned_.store(false, std::memory_order_release);
    return true;
  }

 private:
  // Starts workers up to n; returns how many there are, up to n (fewer if the system refuses a thread).
  int start_workers(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      for (; started_ < n; ++started_) std::thread([this, i = started_] { loop(i); }).detach();
    } catch (const std::system_error&) {
    }
    return std::min(n, started_);
  }

  void loop(int index) {
    in_chunk = true;  // what a chunk calls runs inline
    OneThreadInside one;
    uint64_t seen = seq_.load(std::memory_order_acquire);
    for (;;) {
      const auto posted = [&] { return seq_.load(std::memory_order_seq_cst) != seen; };
      if (!spin_for(posted)) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, posted);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      seen = seq_.load(std::memory_order_seq_cst);
      users_.fetch_add(1, std::memory_order_seq_cst);
      Job* job = job_.load(std::memory_order_seq_cst);
      if (job && index < job->workers && job->work() &&
          caller_waits_.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> lock(mu_); }
        finished_.notify_one();
      }
      users_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  // What the idle workers spin on has a cache line of its own, apart from what the caller writes while they spin.
  alignas(64) std::atomic<uint64_t> seq_{0};
  std::atomic<Job*> job_{nullptr};
  alignas(64) std::atomic<int> users_{0};
  alignas(64) std::atomic<bool> owned_{false}, caller_waits_{false};
  std::atomic<int> sleepers_{0};
  std::atomic<int64_t> jobs_{0};
  std::mutex mu_;
  std::condition_variable wake_, finished_;
  int started_ = 0;  // guarded by mu_
};

// One pool per process, never destroyed (workers sleep through exit). A child process made by fork has none of
// the parent's workers: it starts a pool of its own.
Pool* pool_ptr = nullptr;
std::once_flag pool_once;

Pool& pool() {
  std::call_once(pool_once, [] {
    pool_ptr = new Pool;
    pthread_atfork(nullptr, nullptr, [] { pool_ptr = new Pool; });
  });
  return *pool_ptr;
}

}  // namespace

void run_chunks(int64_t begin, int64_t end, int64_t grain, ChunkFn fn, const void* ctx) {
  if (begin >= end) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t n = end - begin;
  const int64_t threads =
      in_chunk || at::in_parallel_region() ? 1 : std::min<int64_t>(at::get_num_threads(), (n + grain - 1) / grain);
  if (threads <= 1) {  // as at::parallel_for: what the range calls runs inline too
    InChunk inside;
    fn(ctx, begin, end);
    return;
  }
  Job job;
  job.fn = fn;
  job.ctx = ctx;
  job.begin = begin;
  job.end = end;
  job.chunk = grain == 1 && n <= kMaxBlocks
                  ? 1
                  : std::max(grain, (n + threads * kChunksPerThread - 1) / (threads * kChunksPerThread));
  job.chunks = (n + job.chunk - 1) / job.chunk;
  job.workers = int(threads) - 1;
  {
    InChunk inside;
    OneThreadInside one;
    if (!pool().run(job)) {  // another thread has the pool: this one runs the range alone
      fn(ctx, begin, end);
      return;
    }
  }
  if (job.error) std::rethrow_exception(job.error);
}

int pool_workers() { return pool().workers(); }

int64_t pool_jobs() { return pool().jobs(); }

}  // namespace cpu
}  // namespace fastvae
