// The engine's own thread pool, in which the calling thread never waits for a worker that has not started.
//
// On a machine whose cores also run other work, an OpenMP region is as slow as its slowest thread: each barrier
// waits for a thread the scheduler has put aside, and libgomp's idle threads spin for milliseconds, taking the CPU
// share the working thread needs (issue 21; docs/engine.md, "Threads on a busy machine"). Here the range is cut
// into chunks that the caller and the workers claim one at a time: the caller claims chunks itself until none is
// left, so work that no worker has picked up is done by the caller, and it only waits for chunks a worker is
// running. Idle workers spin for a short while (the next region of an update follows within microseconds) and
// then sleep. Which thread runs a chunk never changes the result: every caller writes disjoint outputs per index
// (the engine's products are cut into blocks fixed by the split count, cpu/split_threads.h).
#pragma once
#include <cstdint>

namespace fastvae {
namespace cpu {

using ChunkFn = void (*)(const void* ctx, int64_t begin, int64_t end);

// Calls fn(ctx, b, e) over chunks [b, e) that cover [begin, end), each at least `grain` long (but the last), on
// the caller and up to at::get_num_threads() - 1 workers. Runs fn(ctx, begin, end) on the caller alone when one
// thread is set, the range is no longer than grain, the caller is inside a chunk or an OpenMP region already,
// or another thread has the pool. The first exception a chunk throws is rethrown on the caller after every
// claimed chunk has ended; the chunks not claimed by then are skipped.
void run_chunks(int64_t begin, int64_t end, int64_t grain, ChunkFn fn, const void* ctx);

// Workers started so far, and ranges run by the caller with them so far (each one join: the caller waits for
// the chunks that workers claimed); for tests and bench/bench_regions.py.
int pool_workers();
int64_t pool_jobs();

}  // namespace cpu
}  // namespace fastvae
