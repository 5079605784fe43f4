// bench/workloads.h: one iteration of each benchmark, per variant.
//
// Each function builds what it needs (executor, io_context, ring) outside
// its timed region, runs one iteration and returns its Rows: the first is
// the wall time under `id`, the others statistics (see bench/README.md).
// An error means the variant cannot run here (e.g. io_uring unavailable).
// Spindle and floor workloads live in workloads_spindle.cc and
// workloads_floor.cc; the peers in workloads_asio.cc and workloads_tbb.cc.

#ifndef SPINDLE_BENCH_WORKLOADS_H_
#define SPINDLE_BENCH_WORKLOADS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/bench.h"

namespace spindle::bench {

// 1C: every task sleeps this many times for this long.
inline constexpr int kSleepsPerTask = 10;
inline constexpr int64_t kSleepNs = 500'000;
// uring_nop: Spindle's tasks; the floor's batch size.
inline constexpr int kNopTasks = 32;
inline constexpr int kNopBatch = 32;

// A benchmark's parameters: the one a variable set, or the defaults.
inline std::vector<int64_t> Or(const std::optional<int64_t>& v,
                               std::vector<int64_t> defaults) {
  if (v) return {*v};
  return defaults;
}

// Runs `f` (returning absl::StatusOr<Rows>) on a thread of its own: its
// frame allocator and fiber stack caches start empty, whatever a variant
// run before it left in this thread's.
template <typename F>
absl::StatusOr<Rows> OnFreshThread(F f) {
  absl::StatusOr<Rows> out = absl::InternalError("not run");
  std::thread([&] { out = f(); }).join();
  return out;
}

// launch's derived rows: `<id>_ticks_p50` and `_p99` of the launch ticks.
void AppendLaunchTicks(const std::string& id, const std::vector<double>& ticks,
                       Rows& rows);

// Busy-waits `ns` nanoseconds on the TSC.
void SpinFor(uint64_t ns) noexcept;

// Rows of an iteration's individual sleeps: <id>_actual_mean/_p50/_p99.
void AppendSleepRows(const std::string& id, std::vector<double>& actual_ns,
                     Rows& rows);

// ---- Spindle ----------------------------------------------------------------
enum class SpindleBackend { kIoUring, kEpoll };
enum class HogMode { kAlone, kTiersOn, kTiersOff };
enum class TailMode { kFifo, kEevdf, kThinAlone };

absl::StatusOr<Rows> SpindleSpawn(const std::string& id, int64_t n);
// `queues` queues of share 1 (tasks spread round-robin); 1 = FIFO.
// `task_timing`: ExecutorBuilder::TaskTiming on (1B_yield/spindle_timed).
absl::StatusOr<Rows> SpindleYield(const std::string& id, int64_t tasks,
                                  int64_t yields, int queues,
                                  bool task_timing = false);
absl::StatusOr<Rows> SpindleSleep(const std::string& id, int64_t tasks,
                                  SpindleBackend backend);
absl::StatusOr<Rows> SpindleNop(const std::string& id, int64_t ops);
absl::StatusOr<Rows> SpindleLaunch(const std::string& id, int64_t launches);
// io_latency: `clients` x 400 request/response round trips on a share-8
// queue; `loaded` adds a share-1 queue saturated by CPU-bound tasks.
absl::StatusOr<Rows> SpindleIoLatency(const std::string& id, int64_t clients,
                                      bool loaded);
// queues == 2: shares 3:1; queues == 3: shares 1:1:2.
absl::StatusOr<Rows> SpindleFairness(const std::string& id, int queues,
                                     int64_t ms);
absl::StatusOr<Rows> SpindleHog(const std::string& id, int64_t sensitive,
                                int64_t ms, HogMode mode);
absl::StatusOr<Rows> SpindleTail(const std::string& id, int64_t rate,
                                 int64_t ms, TailMode mode);

// ---- Floors -----------------------------------------------------------------
absl::StatusOr<Rows> FloorSpawn(const std::string& id, int64_t n);
absl::StatusOr<Rows> FloorYieldLoop(const std::string& id, int64_t tasks,
                                    int64_t yields);
absl::StatusOr<Rows> FloorSleep(const std::string& id, int64_t tasks);
absl::StatusOr<Rows> FloorNop(const std::string& id, int64_t ops);
absl::StatusOr<Rows> FloorLaunch(const std::string& id, int64_t launches);

// ---- Rows registered by their own file ------------------------------------
// `dispatch` (workloads_dispatch.cc).
void AddDispatchBenchmarks(const Config& config, std::vector<Benchmark>& all);
// `process_pool`, `process_pool_p50`, `process_pool_p99`
// (workloads_process.cc).
void AddProcessBenchmarks(const Config& config, std::vector<Benchmark>& all);
// `channel_pingpong`, `channel_throughput` (workloads_channel.cc).
void AddChannelBenchmarks(const Config& config, std::vector<Benchmark>& all);
// poll_profile's WORKLOAD=channel: two tasks on one LocalExecutor (no
// tiers, no monitor) bounce `messages` messages through two
// Channel<int64_t> of capacity 1 (workloads_channel.cc).
absl::StatusOr<Rows> SpindleChannelLocal(const std::string& id,
                                         int64_t messages);
// poll_profile's WORKLOAD=spawn / fiber_spawn: `rounds` times, N
// coroutine tasks (or fibers with 16 KiB pooled stacks) spawned in a burst,
// then Run, on one LocalExecutor (workloads_fiber.cc).
absl::StatusOr<Rows> SpindleSpawnRounds(const std::string& id, int64_t n,
                                        int64_t rounds, bool fibers);
// launch's spindle_fiber variant (workloads_fiber.cc).
absl::StatusOr<Rows> SpindleFiberLaunch(const std::string& id,
                                        int64_t launches);
// fiber_switch, fiber_spawn, fiber_nop (workloads_fiber.cc).
void AddFiberBenchmarks(const Config& config, std::vector<Benchmark>& all);
// c_api: C-function tasks through the C interface (workloads_c_api.cc).
void AddCApiBenchmarks(const Config& config, std::vector<Benchmark>& all);
// `slurm_steps`, `slurm_steps_p50`: job steps on a Slurm cluster
// (workloads_slurm.cc).
void AddSlurmBenchmarks(const Config& config, std::vector<Benchmark>& all);

// ---- Peers ------------------------------------------------------------------
absl::StatusOr<Rows> AsioSpawn(const std::string& id, int64_t n);
absl::StatusOr<Rows> AsioYield(const std::string& id, int64_t tasks,
                               int64_t yields);
absl::StatusOr<Rows> AsioSleep(const std::string& id, int64_t tasks);
absl::StatusOr<Rows> AsioChannelPingPong(const std::string& id, int64_t workers,
                                         int64_t rounds);
absl::StatusOr<Rows> TbbSpawn(const std::string& id, int64_t n);

absl::StatusOr<Rows> SpindleHogMt(const std::string& id, int64_t workers,
                                  int64_t sensitive, int64_t ms, HogMode mode);

// The multi-threaded Runtime (workloads_mt.cc) and its oneTBB peers.
uint64_t SerialFib(int n) noexcept;
absl::StatusOr<Rows> SpindleMtFib(const std::string& id, int64_t workers,
                                  int n);
absl::StatusOr<Rows> SpindleLocalFib(const std::string& id, int64_t workers,
                                     int n);
// mt_fib's run with each worker's first task timed: rows id (wall),
// id_half and id_all (when half, and all, of the workers had started a
// task).  The runtime's defaults, or its workers spin 1 ms before they
// park, or they wake each other one at a time (WakeFanout(1)).
enum class RampMode { kDefault, kSpin, kOneByOne };
absl::StatusOr<Rows> SpindleMtRamp(const std::string& id, int64_t workers,
                                   int n, RampMode mode);
absl::StatusOr<Rows> SpindleMtSpawn(const std::string& id, int64_t workers,
                                    int64_t n);
absl::StatusOr<Rows> SpindleSkewed(const std::string& id, int64_t workers,
                                   int n, int cutoff);
// skewed's floor: the same leaves, listed before the timer, taken through
// one atomic index by `workers` plain threads woken from a condition
// variable: the speed-up the machine itself gives that many threads.
absl::StatusOr<Rows> FloorThreadsSkewed(const std::string& id, int64_t workers,
                                        int n, int cutoff);
// 16 tasks of I/O and computing that all start on worker 0 (or, `spread`,
// pinned round robin).
absl::StatusOr<Rows> SpindleRebalance(const std::string& id, int64_t workers,
                                      bool spread);
absl::StatusOr<Rows> SpindlePingPong(const std::string& id, int64_t rounds);
absl::StatusOr<Rows> FloorEventfdPingPong(const std::string& id,
                                          int64_t rounds);
absl::StatusOr<Rows> FloorMsgRingPingPong(const std::string& id,
                                          int64_t rounds);
absl::StatusOr<Rows> TbbMtFib(const std::string& id, int64_t workers, int n);
absl::StatusOr<Rows> TbbSkewed(const std::string& id, int64_t workers, int n,
                               int cutoff);
absl::StatusOr<Rows> TbbMtSpawn(const std::string& id, int64_t workers,
                                int64_t n);

}  // namespace spindle::bench

#endif  // SPINDLE_BENCH_WORKLOADS_H_
