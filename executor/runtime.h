// executor/runtime.h: the multi-threaded runtime (workers that steal work).
//
// Reach for `RuntimeBuilder` to make a `Runtime` of N worker threads, each
// running its own `LocalExecutor` (its own EEVDF queues, reactor ring or
// epoll set, tiers and hooks, all built from the same options), then
// `Spawn` tasks and `BlockOn` a root task from a plain thread:
//
//   auto rt = spindle::RuntimeBuilder().Workers(4).Build().value();
//   int v = rt->BlockOn([]() -> spindle::Task<int> {
//     auto a = spindle::Runtime::Current()->Spawn(Work(1));
//     auto b = spindle::Runtime::Current()->Spawn(Work(2));
//     co_return co_await a + co_await b;
//   }());
//
// Where a task runs (`Placement`):
//   Stealable()  (the default) the task waits in the spawning worker's
//                work-stealing deque (from a plain thread: the shared
//                injector) until a worker starts it: its own worker, or an
//                idle one that steals it.  Past the deque's capacity, the
//                deque's older half goes to the shared injector (a single
//                worker queues the task in its executor instead).
//   StealablePreferred(w)  as Stealable, but queued for worker w first.
//   Pinned(w)    runs on worker w only.
//   RoundRobin() pinned to the next worker in turn.
//   Sticky(key)  pinned to the worker the key hashes to (same key, same
//                worker).
// A task is bound to the worker that first polls it and stays there: it
// suspends, wakes, does I/O (on that worker's ring) and completes there.
// Stealing moves tasks that have not started; a task blocked in one poll
// keeps its worker, and the stealable tasks queued behind it are taken by
// the others.  Tasks keep their queue id on whichever worker runs them.
// One exception: with tiers on and 2+ workers, a stealable task at tier
// isolate moves at its next yield to the runtime's isolation thread (one
// more thread, at nice 19, that runs only such tasks), and back to a worker
// at a yield once its tier comes down (pinned tasks and fibers stay; see
// docs/guides/multi_core.md).  So does, at once, a stealable task whose
// poll the tiers judge a violation while other tasks of its worker wait
// (queued, or with a timer or I/O due); it comes back once it has gone the
// tiers' demotion hysteresis without a violation.
// A wake or pinned spawn for another worker goes through that worker's
// inbox; a doorbell is rung only when it sleeps: IORING_OP_MSG_RING on the
// sending worker's ring, the eventfd from other threads or on epoll.
//
// At most half the workers (with 2+) search for work to steal at once; a
// spawn wakes a sleeping worker only when none searches, and the last
// searcher to find work wakes the next while work is left.
//
// Not yet (see docs/guides/multi_core.md): moving started tasks in general
// (for example off a worker stuck in one poll: its stealable tasks that have
// not started are taken, those bound to it wait).

#ifndef SPINDLE_EXECUTOR_RUNTIME_H_
#define SPINDLE_EXECUTOR_RUNTIME_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "executor/local_executor.h"
#include "executor/task.h"
#include "steal/steal_policy.h"
#include "steal/steal_stats.h"

namespace spindle {

namespace executor_internal {
struct RuntimeShared;
struct Worker;
}  // namespace executor_internal

// Where a Runtime task runs (see the top of this file).
class Placement {
 public:
  enum class Kind : uint8_t {
    kStealable,
    kStealablePreferred,
    kPinned,
    kRoundRobin,
    kSticky,
  };
  static Placement Stealable() noexcept { return {Kind::kStealable, 0}; }
  static Placement StealablePreferred(size_t worker) noexcept {
    return {Kind::kStealablePreferred, worker};
  }
  static Placement Pinned(size_t worker) noexcept {
    return {Kind::kPinned, worker};
  }
  static Placement RoundRobin() noexcept { return {Kind::kRoundRobin, 0}; }
  static Placement Sticky(uint64_t key) noexcept {
    return {Kind::kSticky, key};
  }
  Kind kind() const noexcept { return kind_; }
  // The worker (kPinned, kStealablePreferred) or the key (kSticky).
  uint64_t value() const noexcept { return value_; }

 private:
  Placement(Kind kind, uint64_t value) noexcept : kind_(kind), value_(value) {}
  Kind kind_;
  uint64_t value_;
};

// SpawnOptions plus where the task runs.  A worker index out of range is a
// bug: the spawn aborts the process naming the index and the worker count.
struct RuntimeSpawnOptions : SpawnOptions {
  Placement placement = Placement::Stealable();
};

// What a Runtime did.  Runtime counters are read live from any thread;
// `workers` (each worker's ExecutorStats) is filled when Stats() is called
// from a plain thread (a task on each worker takes its executor's
// snapshot; the call waits 1 s at most, see busy_workers), and left empty
// when called from inside a task.
struct RuntimeStats {
  size_t worker_count = 0;
  // Stealing, over all workers: probes, successes, scans, and where the
  // tasks that workers started came from (own deque, injectors, stolen).
  steal::StealStats steal;
  double local_hit_ratio() const noexcept { return steal.local_hit_ratio(); }
  double stolen_per_scan() const noexcept { return steal.stolen_per_scan(); }
  double steal_success_rate() const noexcept {
    return steal.steal_success_rate();
  }
  uint64_t parks = 0;           // times a worker went to sleep
  uint64_t wakes_sent = 0;      // nudges sent to sleeping workers
  // Spawns that woke nobody: a worker was searching already (it takes the
  // task or hands the search on), or none was asleep.
  uint64_t wakes_skipped = 0;
  // Searching (stealing) workers: at most half the workers search at once
  // (with 2+ workers); `max_searching` is the most seen at once, and
  // `searches_refused` counts idle workers refused a search because half
  // were searching already (they spin, and park unless room opens).
  uint64_t max_searching = 0;
  uint64_t searches_refused = 0;
  // Times an idle worker's spin (SpinBeforePark) gave its CPU to the
  // kernel: only while another awake worker last began a spin on the same
  // CPU (the one it waits for may be runnable there); a spin alone on its
  // CPU keeps it.
  uint64_t spin_yields = 0;
  uint64_t injected = 0;        // tasks queued from outside any worker
  uint64_t overflowed = 0;  // tasks full deques spilled (overflow batches)
  uint64_t stuck_reports = 0;   // monitor reports of stuck workers
  // Tasks that their joiner ran inside its own poll (a join of a task that
  // had not started: the newest in the joiner's deque, counted in
  // started_per_worker and the steal stats' local tasks too, or one bound
  // to the joiner's worker and still queued there).
  uint64_t joins_inlined = 0;
  // Requests idle workers sent for a task woken on a busy worker (answered
  // requests show as each executor's moved_in / moved_out).
  uint64_t work_requests = 0;
  // Workers woken by a worker whose steal took a batch, besides the one
  // the last searcher wakes (RuntimeBuilder::WakeFanout).
  uint64_t fanout_wakes = 0;
  // Workers BlockOn woke besides the one its spawn wakes, so that a
  // fork-join root's first spawns find them awake (WakeFanout - 1 each).
  uint64_t block_on_wakes = 0;
  // Tasks started by each worker (all placements).
  std::vector<uint64_t> started_per_worker;
  // Each worker's executor, from a plain thread only (empty from a task).
  std::vector<ExecutorStats> workers;
  // The isolation thread's executor (tiers on, 2+ workers), likewise.
  std::optional<ExecutorStats> isolation;
  // From a plain thread: the threads (worker indices; the isolation
  // thread's is worker_count) that did not answer within 1 s, held in one
  // poll: their `workers` entry is all zero (`isolation` stays empty).
  std::vector<size_t> busy_workers;
};

class Runtime;

// RuntimeSpawner: submits tasks to a Runtime from any thread.
//
// Thread safety: copyable; every copy may be used from any thread.  It may
// outlive its Runtime: a task submitted after shutdown began is cancelled
// at once (its handle reports kCancelled).
class RuntimeSpawner {
 public:
  template <typename T>
  JoinHandle<T> Spawn(Task<T> task, const RuntimeSpawnOptions& options = {}) {
    executor_internal::TaskCell<T>* cell = task.Release();
    executor_internal::AddUnpublishedRef(cell);  // the handle's
    Submit(cell, options);
    return JoinHandle<T>(cell, Anchor());
  }
  template <typename T>
  void SpawnDetached(Task<T> task, const RuntimeSpawnOptions& options = {}) {
    Submit(task.Release(), options);
  }
  // A fiber (executor/fiber.h); see SpawnApi::SpawnFiber.  It stays on the
  // worker that first runs it.
  template <typename F>
  JoinHandle<FiberResult<F>> SpawnFiber(
      F&& fn, const FiberOptions& fiber = {},
      const RuntimeSpawnOptions& options = {}) {
    auto* cell = executor_internal::MakeFiber(std::forward<F>(fn), fiber);
    executor_internal::AddUnpublishedRef(cell);  // the handle's
    Submit(cell, options);
    return JoinHandle<FiberResult<F>>(cell, Anchor());
  }
  template <typename F>
  void SpawnFiberDetached(F&& fn, const FiberOptions& fiber = {},
                          const RuntimeSpawnOptions& options = {}) {
    Submit(executor_internal::MakeFiber(std::forward<F>(fn), fiber), options);
  }

 private:
  friend class Runtime;
  explicit RuntimeSpawner(std::shared_ptr<executor_internal::RuntimeShared> rt)
      : rt_(std::move(rt)) {}
  // `to`: pinned to that worker whatever the options say (the isolation
  // thread's stats snapshot).
  void Submit(executor_internal::TaskHeader* task,
              const RuntimeSpawnOptions& options,
              executor_internal::Worker* to = nullptr) noexcept;
  template <typename T>
  void SpawnDetachedOn(executor_internal::Worker* to, Task<T> task) {
    Submit(task.Release(), {}, to);
  }
  // A handle's anchor reference (executor/internal/handle_anchor.h): the
  // calling worker's, or worker 0's from elsewhere; nullptr after shutdown.
  executor_internal::HandleAnchor* Anchor() const noexcept;
  std::shared_ptr<executor_internal::RuntimeShared> rt_;
};

// RuntimeBuilder: validated configuration of a Runtime.  The executor
// options are applied to every worker's LocalExecutor (see ExecutorBuilder
// for each one's meaning and range).
class RuntimeBuilder {
 public:
  RuntimeBuilder();
  // Worker threads, 1..1024.  Default: the CPUs this process may run on.
  RuntimeBuilder& Workers(size_t n);
  // Pins worker i to cpus[i % cpus.size()] (each a CPU the process may
  // use).  Default: no pinning.
  RuntimeBuilder& ThreadAffinity(std::vector<int> cpus);
  RuntimeBuilder& Steal(steal::StealOptions options);
  // How long an idle worker stays awake, watching for a wake, work or I/O,
  // before it parks in its driver, 0..1 ms (0: it parks at once).  A wake
  // of a parked worker is a system call for the waker and, on a VM, can
  // cost ~10 us to bring a halted CPU back; a worker still awake takes it
  // in ~0.1 us.  The cost: up to this much CPU each time a worker goes
  // idle.  Default: 20 us when the workers are no more than the CPUs the
  // process may use, else 0 (an awake idle worker would take a CPU from a
  // busy one).
  RuntimeBuilder& SpinBeforePark(std::chrono::nanoseconds spin);
  // How many parked workers a worker wakes when its steal took two or
  // more tasks while others wait in its deque (the victim had a backlog),
  // 1..4, within the bound of half the workers searching.  1: the workers
  // join in one at a time, each woken by the last to find work (as in
  // Tokio and Go); with the default, 2, each also wakes one more, so that
  // the workers awake double per wake-up (as oneTBB's wake each other).
  // A wake-up of a parked worker takes tens of microseconds on a VM
  // (13-45 us in the suite's mt_ramp row on 2-core VMs), so on 16 cores
  // the last of a fork-join run's workers would join ~15 wake-ups after
  // the first one at 1, against ~4 at 2.  No effect on 2 workers (the
  // victim is awake).  BlockOn from a plain thread also wakes
  // WakeFanout - 1 parked workers besides the one its spawn wakes, so
  // that a fork-join root's first spawns find them awake.
  RuntimeBuilder& WakeFanout(uint32_t workers);
  // Executor options, per worker.
  RuntimeBuilder& WithQueue(QueueId id, uint32_t share);
  // `make_scheduler` is called once per worker.
  RuntimeBuilder& WithQueue(
      QueueId id, uint32_t share,
      std::function<std::unique_ptr<sched::TaskScheduler>()> make_scheduler);
  RuntimeBuilder& SchedLatency(std::chrono::nanoseconds latency);
  RuntimeBuilder& MinSlice(std::chrono::nanoseconds slice);
  RuntimeBuilder& DriverYield(std::chrono::nanoseconds interval);
  RuntimeBuilder& MaxPollsPerYield(uint32_t polls);
  RuntimeBuilder& Tiers(budget::TierConfig config);
  RuntimeBuilder& NoTiers();
  RuntimeBuilder& Hooks(std::shared_ptr<budget::HookRegistry> hooks);
  RuntimeBuilder& IsolationShare(uint32_t share);
  RuntimeBuilder& CollectStats(bool enabled);
  RuntimeBuilder& TaskTiming(bool enabled = true);
  RuntimeBuilder& StuckThreshold(std::chrono::nanoseconds threshold);
  RuntimeBuilder& NoMonitor();
  RuntimeBuilder& Reactor(reactor::ReactorOptions options);
  RuntimeBuilder& NoReactor();

  // InvalidArgument naming the value and the range for a bad worker count,
  // CPU, steal knob or executor option; the reactor's error if a worker's
  // reactor cannot be set up.  Starts the worker threads.
  absl::StatusOr<std::unique_ptr<Runtime>> Build();

 private:
  std::optional<size_t> workers_;
  std::vector<int> cpus_;
  std::optional<std::chrono::nanoseconds> spin_;
  uint32_t wake_fanout_ = 2;
  steal::StealOptions steal_;
  std::vector<std::function<void(ExecutorBuilder&)>> apply_;
  std::vector<absl::Status> errors_;
};

// Runtime: N worker threads sharing tasks by work stealing.
//
// Requires: BlockOn, Stats (with per-worker snapshots) and destruction from
// a thread that is not a worker of this runtime; Spawn from anywhere.
// Destroying it from one of its own tasks aborts at once with a message
// (its destructor would join the thread it runs on).
// Guarantees: every spawned task runs exactly once or is cancelled (its
// handle reports kCancelled); a task's exception surfaces at its
// JoinHandle.  Destruction stops every worker, cancels every task that is
// left (frames freed, in-flight operations cancelled and reaped, joiners
// woken) and joins the threads; a RuntimeSpawner used afterwards cancels
// its task at once.
// Thread safety: Spawn, GetSpawner and Stats may be called concurrently
// from any thread.
class Runtime {
 public:
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // The Runtime whose worker runs the calling thread, or nullptr.
  static Runtime* Current() noexcept;

  template <typename T>
  JoinHandle<T> Spawn(Task<T> task, const RuntimeSpawnOptions& options = {}) {
    return spawner_.Spawn(std::move(task), options);
  }
  template <typename T>
  void SpawnDetached(Task<T> task, const RuntimeSpawnOptions& options = {}) {
    spawner_.SpawnDetached(std::move(task), options);
  }
  template <typename F>
  JoinHandle<FiberResult<F>> SpawnFiber(
      F&& fn, const FiberOptions& fiber = {},
      const RuntimeSpawnOptions& options = {}) {
    return spawner_.SpawnFiber(std::forward<F>(fn), fiber, options);
  }
  template <typename F>
  void SpawnFiberDetached(F&& fn, const FiberOptions& fiber = {},
                          const RuntimeSpawnOptions& options = {}) {
    spawner_.SpawnFiberDetached(std::forward<F>(fn), fiber, options);
  }

  // Runs `task` on the workers and blocks the calling thread until it
  // finishes; returns its value or rethrows its exception.  Throws
  // TaskMisuseError when called on a thread that runs an executor.
  template <typename T>
  T BlockOn(Task<T> task) {
    CheckBlockingCall("Runtime::BlockOn");
    JoinHandle<T> h = Spawn(std::move(task));
    WakeForBlockOn();
    (void)h.Wait();
    if (h.status() == JoinStatus::kCancelled) throw TaskCancelledError();
    return h.Join();
  }

  RuntimeSpawner GetSpawner() const { return spawner_; }
  size_t worker_count() const noexcept;
  RuntimeStats Stats() const;

 private:
  friend class RuntimeBuilder;
  explicit Runtime(std::shared_ptr<executor_internal::RuntimeShared> rt);
  static void CheckBlockingCall(const char* what);
  // BlockOn, after its spawn: wakes up to WakeFanout - 1 more parked
  // workers, so that the root's first spawns find them awake.
  void WakeForBlockOn() noexcept;
  std::shared_ptr<executor_internal::RuntimeShared> rt_;
  RuntimeSpawner spawner_;
};

// Inside a Runtime task: the index of the worker running it (0-based;
// worker_count() on the isolation thread); std::nullopt on any other
// thread.
std::optional<size_t> CurrentWorker() noexcept;

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_RUNTIME_H_
