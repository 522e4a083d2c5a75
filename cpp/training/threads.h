// The thread count of the trainer's updates, chosen from how long they take (docs/engine.md, "Threads on a busy
// machine"). On a machine whose cores also run other work, a range of an update waits for a worker that the
// scheduler puts aside while it runs a chunk (cpu/worker_pool.h), and one thread can be faster than two; on an
// idle machine the configured count usually wins. An update's results do not depend on how many threads run it (its products
// are split for the configured count, cpu/split_threads.h; tests/training/test_threads.py), so the choice
// changes the time of a run, never its numbers.
#pragma once
#include <chrono>
#include <cstdint>

namespace fastvae {
namespace training {

// Sets the OpenMP thread count of the calling thread, and MKL's to one (the engine splits its products itself,
// cpu/split_threads.h; a BLAS call that threaded on its own would round by its own split), both per thread,
// and puts the caller's back when destroyed; Paused puts the caller's back for a while (Python callbacks).
class LocalThreads {
 public:
  LocalThreads();
  ~LocalThreads();
  LocalThreads(const LocalThreads&) = delete;
  LocalThreads& operator=(const LocalThreads&) = delete;
  void set(int n);
  class Paused {
   public:
    explicit Paused(LocalThreads& t);
    ~Paused();

   private:
    LocalThreads& t_;
  };

 private:
  int caller_omp_, caller_mkl_, current_;
};

// With `adapt`, alternates between measuring and keeping: times kProbeUpdates updates (at least kProbeSeconds)
// at one thread, then at the configured count, and keeps one thread for kHoldSeconds of updates if it was clearly
// faster (kOneThreadGain), else the configured count, before it
// measures both again. The first update after a change of count is not timed (the pool wakes up), and the
// configured count's measurement stops as soon as its mean is 1.5x one thread's (on a busy machine its updates
// can be many times slower: each one measured costs). A fit that starts
// within kHoldSeconds of another's choice for the same configured count keeps that choice for the rest of its
// hold (a notebook's fits one after the other). Without `adapt`, the configured count throughout.
class ThreadChooser {
 public:
  ThreadChooser(int configured, bool adapt);
  // The count for the next update; time it, then report the seconds it took with after_update.
  int before_update();
  void after_update(double seconds);
  // The count of the updates since the last measurement, or the configured one before any.
  int chosen() const { return chosen_; }
  int configured() const { return configured_; }
  // Every later update at `n` threads, the split count staying the configured one (tests: the bits of an update
  // do not depend on the threads that run it); 0 gives the choice back.
  void pin(int n) { pinned_ = n; }

  static constexpr int kProbeUpdates = 3;
  static constexpr double kOneThreadGain = 0.9;  // one thread is kept if its mean is below 0.9x the configured's
  static constexpr double kProbeSeconds = 0.02, kHoldSeconds = 2.0;

 private:
  enum class Phase { ProbeOne, ProbeConfigured, Hold };
  void start(Phase p);
  void decide(int n);
  int configured_, chosen_;
  bool adapt_;
  int pinned_ = 0;
  bool warm_ = false;  // false: the next update is not timed (the fit's first, or the pool waking up)
  Phase phase_ = Phase::ProbeOne;
  int64_t updates_ = 0;
  double seconds_ = 0, per_update_one_ = 0, hold_ = kHoldSeconds;
};

// Seconds since `t0` on a monotonic clock.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace training
}  // namespace fastvae
