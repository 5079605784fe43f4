// bench/registry.cc: docs/measuring.md's table as Benchmarks with their
// variants.
#include <string>
#include <vector>

#include "bench/bench.h"
#include "bench/workloads.h"

namespace spindle::bench {
namespace {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif

absl::StatusOr<Rows> NoTbbUnderTsan() {
  return absl::UnavailableError(
      "oneTBB is not instrumented for ThreadSanitizer");
}

// The multi-threaded Runtime's rows: parameter = workers.
void AppendMtBenchmarks(const Config& c, std::vector<Benchmark>& all) {
  const std::vector<int64_t> workers = Or(c.workers, {1, 2});
  const int fib_n = static_cast<int>(c.fib_n);
  {
    const std::string id = "mt_fib";
    Benchmark b{id,
                "fib(FIB_N = 25), each call with n >= 2 spawns one child and "
                "awaits it; param workers; wall time",
                "tbb",
                workers,
                {}};
    b.variants.push_back({"spindle", [id, fib_n](int64_t w) {
                            return SpindleMtFib(id, w, fib_n);
                          }});
    b.variants.push_back(
        {"tbb", [id, fib_n](int64_t w) -> absl::StatusOr<Rows> {
           if (kTsan) return NoTbbUnderTsan();
           return TbbMtFib(id, w, fib_n);
         }});
    b.variants.push_back({"spindle_local", [id, fib_n](int64_t w) {
                            return SpindleLocalFib(id, w, fib_n);
                          }});
    // Calls with n >= 2 spawn: fib(n + 1) - 1 of them.
    b.ops = [fib_n](int64_t) {
      return static_cast<double>(SerialFib(fib_n + 1) - 1);
    };
    b.op = "spawn";
    all.push_back(std::move(b));
  }
  {
    // Why mt_fib scales as it does: a parked worker joins in only when
    // BlockOn or a worker that found work wakes it.
    const std::string id = "mt_ramp";
    Benchmark b{id,
                "mt_fib's run, each worker's first task timed; param "
                "workers; wall time, mt_ramp_half / mt_ramp_all: when half "
                "/ all of the workers had started a task (spindle_fanout1: "
                "workers wake each other one at a time; spindle_spin: "
                "workers spin 1 ms before they park)",
                "spindle",
                workers,
                {}};
    b.variants.push_back({"spindle", [id, fib_n](int64_t w) {
                            return SpindleMtRamp(id, w, fib_n,
                                                 RampMode::kDefault);
                          }});
    b.variants.push_back({"spindle_fanout1", [id, fib_n](int64_t w) {
                            return SpindleMtRamp(id, w, fib_n,
                                                 RampMode::kOneByOne);
                          }});
    b.variants.push_back({"spindle_spin", [id, fib_n](int64_t w) {
                            return SpindleMtRamp(id, w, fib_n, RampMode::kSpin);
                          }});
    all.push_back(std::move(b));
  }
  {
    const std::string id = "mt_spawn";
    const int64_t n = c.n_tasks.value_or(100'000);
    Benchmark b{id,
                "a root task spawns N_TASKS (100k) tasks that bump an "
                "atomic; param workers; wall time to all done",
                "tbb",
                workers,
                {}};
    b.variants.push_back(
        {"spindle", [id, n](int64_t w) { return SpindleMtSpawn(id, w, n); }});
    b.variants.push_back({"tbb", [id, n](int64_t w) -> absl::StatusOr<Rows> {
                            if (kTsan) return NoTbbUnderTsan();
                            return TbbMtSpawn(id, w, n);
                          }});
    b.ops = [n](int64_t) { return static_cast<double>(n); };
    b.op = "spawn";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "hog_mt";
    const int64_t ms = c.hog_ms;
    Benchmark b{id,
                "the hog benchmark on a Runtime of param workers (10 "
                "sleepers spread round robin; the hogs stealable); "
                "hog_mt_p50/_p99: wake-up lateness",
                "spindle_alone",
                {2},
                {}};
    b.variants.push_back({"spindle_alone", [id, ms](int64_t w) {
                            return SpindleHogMt(id, w, 10, ms, HogMode::kAlone);
                          }});
    b.variants.push_back({"spindle_tiers", [id, ms](int64_t w) {
                            return SpindleHogMt(id, w, 10, ms,
                                                HogMode::kTiersOn);
                          }});
    b.variants.push_back({"spindle_notiers", [id, ms](int64_t w) {
                            return SpindleHogMt(id, w, 10, ms,
                                                HogMode::kTiersOff);
                          }});
    b.fixed_duration = true;  // HOG_MS
    all.push_back(std::move(b));
  }
  {
    const std::string id = "pingpong";
    Benchmark b{id,
                "round trips (param) between tasks on two workers; wall time",
                "floor_msg_ring",
                Or(c.n_tasks, {10000}),
                {}};
    b.variants.push_back(
        {"spindle", [id](int64_t r) { return SpindlePingPong(id, r); }});
    b.variants.push_back({"floor_msg_ring", [id](int64_t r) {
                            return FloorMsgRingPingPong(id, r);
                          }});
    b.variants.push_back({"floor_eventfd", [id](int64_t r) {
                            return FloorEventfdPingPong(id, r);
                          }});
    b.ops = [](int64_t r) { return static_cast<double>(r); };
    b.op = "round trip";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "rebalance";
    Benchmark b{id,
                "16 tasks queued for worker 0 while the others are held, so "
                "all start there, each 100 times a 100 us sleep and 50 us "
                "of computing; param workers; wall time (spindle_spread: "
                "pinned round robin from the start)",
                "spindle_spread",
                workers,
                {}};
    b.variants.push_back({"spindle", [id](int64_t w) {
                            return SpindleRebalance(id, w, false);
                          }});
    b.variants.push_back({"spindle_spread", [id](int64_t w) {
                            return SpindleRebalance(id, w, true);
                          }});
    all.push_back(std::move(b));
  }
  {
    const std::string id = "skewed";
    Benchmark b{id,
                "fib(FIB_N + 10 = 35), the root on worker 0 spawns one "
                "serial task per subtree below n = 16; param workers; wall "
                "time (floor_threads: plain threads take the same leaves "
                "through one atomic index, the machine's own speed-up)",
                "spindle",
                workers,
                {}};
    b.variants.push_back({"spindle", [id, fib_n](int64_t w) {
                            return SpindleSkewed(id, w, fib_n + 10, 16);
                          }});
    b.variants.push_back(
        {"tbb", [id, fib_n](int64_t w) -> absl::StatusOr<Rows> {
           if (kTsan) return NoTbbUnderTsan();
           return TbbSkewed(id, w, fib_n + 10, 16);
         }});
    b.variants.push_back({"floor_threads", [id, fib_n](int64_t w) {
                            return FloorThreadsSkewed(id, w, fib_n + 10, 16);
                          }});
    all.push_back(std::move(b));
  }
}

}  // namespace

std::vector<Benchmark> AllBenchmarks(const Config& c) {
  std::vector<Benchmark> all;
  const int64_t tasks_1b = c.n_tasks.value_or(1000);
  const int64_t yields_pp = c.yields_per_task.value_or(100);
  const int64_t tasks_pp = c.n_tasks.value_or(1000);

  {
    const std::string id = "1A_spawn";
    Benchmark b{id,
                "spawn N tasks that bump an atomic; wall time to all done",
                "floor",
                Or(c.n_tasks, {1000, 10000, 100000}),
                {}};
    b.variants.push_back(
        {"spindle", [id](int64_t n) { return SpindleSpawn(id, n); }});
    b.variants.push_back(
        {"asio", [id](int64_t n) { return AsioSpawn(id, n); }});
    b.variants.push_back({"tbb", [id](int64_t n) -> absl::StatusOr<Rows> {
                            if (kTsan) {
                              return absl::UnavailableError(
                                  "oneTBB is not instrumented for "
                                  "ThreadSanitizer");
                            }
                            return TbbSpawn(id, n);
                          }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorSpawn(id, n); }});
    b.ops = [](int64_t n) { return static_cast<double>(n); };
    b.op = "spawn";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "1B_yield";
    Benchmark b{
        id,
        "T tasks (N_TASKS, 1000) each yield K times; param K; wall time",
        "floor",
        Or(c.yields_per_task, {10, 100, 1000}),
        {}};
    b.variants.push_back({"spindle", [id, tasks_1b](int64_t k) {
                            return SpindleYield(id, tasks_1b, k, 1);
                          }});
    b.variants.push_back({"spindle_eevdf2", [id, tasks_1b](int64_t k) {
                            return SpindleYield(id, tasks_1b, k, 2);
                          }});
    b.variants.push_back({"spindle_timed", [id, tasks_1b](int64_t k) {
                            return SpindleYield(id, tasks_1b, k, 1,
                                                /*task_timing=*/true);
                          }});
    b.variants.push_back({"asio", [id, tasks_1b](int64_t k) {
                            return AsioYield(id, tasks_1b, k);
                          }});
    b.variants.push_back({"floor", [id, tasks_1b](int64_t k) {
                            return FloorYieldLoop(id, tasks_1b, k);
                          }});
    b.ops = [tasks_1b](int64_t k) { return static_cast<double>(tasks_1b * k); };
    b.op = "yield";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "1C_sleep";
    Benchmark b{id,
                "N tasks x 10 sleeps of 500 us; wall time and actual sleeps",
                "floor",
                Or(c.n_tasks, {100}),
                {}};
    b.variants.push_back({"spindle", [id](int64_t n) {
                            return SpindleSleep(id, n,
                                                SpindleBackend::kIoUring);
                          }});
    b.variants.push_back({"spindle_epoll", [id](int64_t n) {
                            return SpindleSleep(id, n, SpindleBackend::kEpoll);
                          }});
    b.variants.push_back(
        {"asio", [id](int64_t n) { return AsioSleep(id, n); }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorSleep(id, n); }});
    // 10 x 500 us of sleeping set the wall time; the actual sleeps tell.
    b.fixed_duration = true;
    all.push_back(std::move(b));
  }
  {
    const std::string id = "uring_nop";
    Benchmark b{id,
                "N io_uring NOPs: 32 tasks suspend on each (floor: raw batches "
                "of 32); wall time",
                "floor",
                {c.nop_ops},
                {}};
    b.variants.push_back(
        {"spindle", [id](int64_t n) { return SpindleNop(id, n); }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorNop(id, n); }});
    b.ops = [](int64_t n) { return static_cast<double>(n); };
    b.op = "NOP";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "launch";
    Benchmark b{id,
                "N spawns, each from a running task; launch_ticks_*: TSC ticks "
                "from spawn to the task's first instruction",
                "floor",
                {1000},
                {}};
    b.variants.push_back(
        {"spindle", [id](int64_t n) { return SpindleLaunch(id, n); }});
    b.variants.push_back({"spindle_fiber", [id](int64_t n) {
                            return SpindleFiberLaunch(id, n);
                          }});
    b.variants.push_back(
        {"floor", [id](int64_t n) { return FloorLaunch(id, n); }});
    b.ops = [](int64_t n) { return static_cast<double>(n); };
    b.op = "launch";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "poll_profile";
    Benchmark b{id,
                "N_TASKS tasks x YIELDS_PER_TASK yields (param N); wall time",
                "floor",
                {tasks_pp},
                {}};
    b.variants.push_back({"spindle", [id, yields_pp](int64_t n) {
                            return SpindleYield(id, n, yields_pp, 1);
                          }});
    b.variants.push_back({"asio", [id, yields_pp](int64_t n) {
                            return AsioYield(id, n, yields_pp);
                          }});
    b.variants.push_back({"floor", [id, yields_pp](int64_t n) {
                            return FloorYieldLoop(id, n, yields_pp);
                          }});
    b.ops = [yields_pp](int64_t n) {
      return static_cast<double>(n * yields_pp);
    };
    b.op = "poll";
    all.push_back(std::move(b));
  }
  {
    const std::string id = "fairness";
    const int64_t ms = c.fairness_ms;
    Benchmark b{id,
                "CPU-bound tasks, param 2: shares 3:1, param 3: 1:1:2; "
                "fairness_error_ppm: worst |measured/share - 1|",
                "spindle",
                {2, 3},
                {}};
    b.variants.push_back({"spindle", [id, ms](int64_t q) {
                            return SpindleFairness(id, static_cast<int>(q), ms);
                          }});
    b.fixed_duration = true;  // FAIRNESS_MS
    all.push_back(std::move(b));
  }
  {
    const std::string id = "hog";
    const int64_t ms = c.hog_ms;
    Benchmark b{id,
                "N tasks sleeping 1 ms beside a yield_maybe spinner and a 3 ms "
                "overrunner; hog_p50/_p99: wake-up lateness",
                "spindle_alone",
                {10},
                {}};
    b.variants.push_back({"spindle_alone", [id, ms](int64_t n) {
                            return SpindleHog(id, n, ms, HogMode::kAlone);
                          }});
    b.variants.push_back({"spindle_tiers", [id, ms](int64_t n) {
                            return SpindleHog(id, n, ms, HogMode::kTiersOn);
                          }});
    b.variants.push_back({"spindle_notiers", [id, ms](int64_t n) {
                            return SpindleHog(id, n, ms, HogMode::kTiersOff);
                          }});
    b.fixed_duration = true;  // HOG_MS
    all.push_back(std::move(b));
  }
  {
    const std::string id = "tail_latency";
    const int64_t ms = c.tail_ms;
    Benchmark b{id,
                "arrivals at param/s, 99% thin (2 x 20 us) / 1% fat (10 x 500 "
                "us); tail_<class>_<start|total>_<pct>",
                "spindle_thin_alone",
                {1000},
                {}};
    b.variants.push_back({"spindle_thin_alone", [id, ms](int64_t r) {
                            return SpindleTail(id, r, ms, TailMode::kThinAlone);
                          }});
    b.variants.push_back({"spindle_fifo", [id, ms](int64_t r) {
                            return SpindleTail(id, r, ms, TailMode::kFifo);
                          }});
    b.variants.push_back({"spindle_eevdf", [id, ms](int64_t r) {
                            return SpindleTail(id, r, ms, TailMode::kEevdf);
                          }});
    b.fixed_duration = true;  // TAIL_MS
    all.push_back(std::move(b));
  }
  {
    const std::string id = "io_latency";
    Benchmark b{id,
                "param clients x 400 round trips over a socket pair, share-8 "
                "queue, alone or beside a saturated share-1 queue; "
                "io_latency_p50/_p99",
                "spindle_alone",
                {1},
                {}};
    b.variants.push_back({"spindle_alone", [id](int64_t c) {
                            return SpindleIoLatency(id, c, /*loaded=*/false);
                          }});
    b.variants.push_back({"spindle_loaded", [id](int64_t c) {
                            return SpindleIoLatency(id, c, /*loaded=*/true);
                          }});
    b.ops = [](int64_t c) { return static_cast<double>(c * 400); };
    b.op = "round trip";
    all.push_back(std::move(b));
  }
  AppendMtBenchmarks(c, all);
  AddDispatchBenchmarks(c, all);
  AddProcessBenchmarks(c, all);
  AddChannelBenchmarks(c, all);
  AddFiberBenchmarks(c, all);
  AddCApiBenchmarks(c, all);
  AddSlurmBenchmarks(c, all);
  return all;
}

}  // namespace spindle::bench
