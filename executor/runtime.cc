// executor/runtime.cc: RuntimeBuilder, Runtime, RuntimeSpawner: building
// the workers, placing spawned tasks and shutdown (Stats: runtime_stats.cc).
// The protocol and the step numbers are in internal/runtime_shared.h; the
// workers' loop is in worker_loop.cc.

#include "executor/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "executor/internal/inbox.h"
#include "executor/internal/runtime_shared.h"
#include "executor/internal/task_protocol.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::HandleAnchor;
using executor_internal::Inbox;
using executor_internal::RuntimeShared;
using executor_internal::TaskHeader;
using executor_internal::Worker;

namespace {

constexpr size_t kMaxWorkers = 1024;
// The isolation thread's niceness: the kernel runs it only on CPU time the
// workers leave, and preempts it when one wakes.
constexpr int kIsolationNice = 19;
// RuntimeBuilder::SpinBeforePark: the range and the default.
constexpr std::chrono::nanoseconds kMaxParkSpin = std::chrono::milliseconds(1);
constexpr std::chrono::nanoseconds kDefaultParkSpin =
    std::chrono::microseconds(20);
constexpr std::chrono::nanoseconds kNoSpin{0};
// RuntimeBuilder::WakeFanout's top.
constexpr uint32_t kMaxWakeFanout = 4;

// The CPUs this process may run on.
cpu_set_t AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) CPU_SET(0, &set);
  return set;
}

// Ids of runtime tasks: a per-origin sequence in the high bits, the origin
// (worker index, kMaxWorkers for other threads, kMaxWorkers + 1 for the
// isolation thread) in the low 11 bits.
uint64_t TaskId(uint64_t seq, size_t origin) noexcept {
  return (seq << 11) | origin;
}

thread_local uint64_t tl_worker_seq = 0;  // this worker's id sequence

void WorkerMain(Worker* w) {
  RuntimeShared& rt = *w->rt;
  if (w->cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  }
  const std::string name = w->isolation
                               ? std::string("spindle-iso")
                               : absl::StrCat("spindle-w", w->index);
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  if (w->isolation) {
    // Linux: a thread's own niceness (raising it needs no privilege).
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)),
                      kIsolationNice);
  }
  executor_internal::tl_worker = w;
  w->executor->RunWorker(w);
  // S3: spawns from the cancellations below see `closing` and cancel their
  // task at once.
  {
    std::unique_lock<std::mutex> lock(rt.stop_mu);
    ++rt.stopped;
    rt.stop_cv.notify_all();
    rt.stop_cv.wait(lock, [&] { return rt.stopped == rt.thread_count(); });
  }
  w->executor.reset();
  executor_internal::tl_worker = nullptr;
}

}  // namespace

// ---- RuntimeSpawner
// -----------------------------------------------------------

HandleAnchor* RuntimeSpawner::Anchor() const noexcept {
  // On a worker of this runtime: the worker's own anchor (counted without
  // atomics while its executor runs; see Worker::handle_anchor).
  Worker* self = executor_internal::tl_worker;
  if (self != nullptr && self->rt == rt_.get()) {
    return HandleAnchor::Acquire(&self->handle_anchor);
  }
  // Elsewhere: worker 0's, counted atomically (rt_ keeps it alive here).
  return HandleAnchor::Acquire(&rt_->workers[0]->handle_anchor);
}

namespace {

// P1: a stealable task spawned by a task of worker `self` (not the
// isolation thread) goes to self's own deque.  Shutdown does not race with
// it: S4 drains the deques after the threads are joined; from S1 on (the
// cancellations of S3 may spawn) the task is cancelled at once.  Kept apart
// from SubmitPlaced: it is every fork-join program's spawn path, and the
// placement switch and the registers the whole of Submit saved cost
// `mt_spawn` ~25 instructions a task (callgrind).
void SubmitFromWorker(RuntimeShared& rt, Worker& self, TaskHeader* t,
                      const RuntimeSpawnOptions& options) noexcept {
  executor_internal::FillSpawnFields(*rt.queue_map, t, options);
  TaskHeader* cur = executor_internal::tl_task;
  t->enqueue_tick =
      cur != nullptr ? cur->ctx.poll_start_tick : timing::TscClock::Now();
  t->ctx.task_id = TaskId(++tl_worker_seq, self.index);
  if (rt.closing.load(std::memory_order_relaxed)) {
    RuntimeShared::CancelUnbound(t);
    return;
  }
  if (rt.workers.size() == 1) {
    // A single worker has no thief and nobody to wake.  Its deque keeps
    // the newest spawns private (its Pop takes no locked instruction, and
    // LIFO runs a fork-join tree depth first, as `mt_fib` needs).  Past
    // the knob or the ring, the task is bound and queued in the executor
    // at once, as LocalExecutor::Spawn does, not sent to the injector:
    // there each task of a burst was touched again when taken, after the
    // burst had left the caches (`mt_spawn` on one worker spent a third
    // of its time there).
    Worker::Bump(self.wakes_skipped);
    if (self.policy->AdmitStealable(self.deque.size()) &&
        self.deque.Push(t)) {
      return;
    }
    Worker::Bump(self.started);
    self.policy->counters().AddLocal(1);
    self.executor->BindAndAdopt(t, /*unpublished=*/true);
    return;
  }
  const size_t queued = self.deque.size();
  if (self.policy->AdmitStealable(queued)) {
    // PushOrOverflow publishes the task: stealable at once, so that a
    // poll that blocks after this spawn strands nothing.
    bool overflowed = false;
    self.deque.PushOrOverflow(t, [&](TaskHeader** items, size_t k) {
      rt.Spill(self, items, k);
      Worker::Bump(self.overflowed, k);
      overflowed = true;
    });
    // Only the push that makes the deque worth stealing from looks for a
    // worker to wake (N0): onto an empty deque, or past the locality
    // margin (thieves leave a deque of that many tasks or fewer alone).
    // Whoever it found (a searcher, or the worker it woke) hands the
    // search on while the deque holds work (F3, I2).  This worker runs its
    // own deque anyway.
    if (queued != self.policy->options().locality_margin && !overflowed) {
      Worker::Bump(self.wakes_skipped);
      return;
    }
  } else {
    // Past the knob (StealOptions::stealable_queue_capacity): the older
    // half of the deque and this task are spilled as one overflow batch
    // (O1; as PushOrOverflow does when the ring is full): a long burst
    // pays an injector push and the deque's one CAS (TakeOldest) once
    // per batch, instead of two locked RMWs per task.  The deque stays
    // within the knob, and its newest tasks stay here.
    Worker::Bump(self.overflowed, rt.SpillOldest(self, queued / 2, t));
  }
  // N1-N3.
  if (!rt.NotifyOne()) Worker::Bump(self.wakes_skipped);
}

// Every other spawn: placed, from outside, or from the isolation thread
// (it has no deque others steal from: its stealable spawns go to the
// shared injector, as from outside).
[[gnu::noinline]] void SubmitPlaced(RuntimeShared& rt, Worker* self,
                                    TaskHeader* t,
                                    const RuntimeSpawnOptions& options,
                                    Worker* to) noexcept {
  const size_t n = rt.workers.size();
  executor_internal::FillSpawnFields(*rt.queue_map, t, options);
  TaskHeader* cur = executor_internal::tl_task;
  t->enqueue_tick = (self != nullptr && cur != nullptr)
                      ? cur->ctx.poll_start_tick
                      : timing::TscClock::Now();
  t->ctx.task_id =
      self != nullptr
          ? TaskId(++tl_worker_seq,
                   self->isolation ? kMaxWorkers + 1 : self->index)
          : TaskId(rt.next_id.fetch_add(1, std::memory_order_relaxed) + 1,
                   kMaxWorkers);

  const Placement& p = options.placement;
  size_t target = 0;
  bool pinned = false;
  switch (p.kind()) {
    case Placement::Kind::kStealable:
      break;
    case Placement::Kind::kStealablePreferred:
    case Placement::Kind::kPinned:
      if (p.value() >= n) {
        ABSL_RAW_LOG(FATAL,
                     "Runtime::Spawn: worker %llu is out of range (the "
                     "runtime has %zu workers: 0..%zu)",
                     static_cast<unsigned long long>(p.value()), n, n - 1);
      }
      target = static_cast<size_t>(p.value());
      pinned = p.kind() == Placement::Kind::kPinned;
      break;
    case Placement::Kind::kRoundRobin:
      target = static_cast<size_t>(
          rt.round_robin.fetch_add(1, std::memory_order_relaxed) % n);
      pinned = true;
      break;
    case Placement::Kind::kSticky:
      target = absl::HashOf(p.value()) % n;
      pinned = true;
      break;
  }
  if (to != nullptr) pinned = true;

  // Everything else may race with shutdown: bracketed by `inflight` (S1).
  rt.inflight.fetch_add(1, std::memory_order_seq_cst);
  if (rt.closing.load(std::memory_order_seq_cst)) {
    rt.inflight.fetch_sub(1, std::memory_order_seq_cst);
    RuntimeShared::CancelUnbound(t);
    return;
  }
  if (pinned) {
    Worker& w = to != nullptr ? *to : *rt.workers[target];
    Inbox& in = *w.inbox;
    executor_internal::PrepareSpawn(in, t, options, /*remote=*/true,
                                    /*task_timing=*/true);
    if (!in.Submit(in.wakes, executor_internal::WakeNodeOf(t))) {
      executor_internal::DestroyCancelled(t);
    }
  } else {
    if (p.kind() == Placement::Kind::kStealablePreferred) {
      rt.workers[target]->preferred.Push(t);
      rt.workers[target]->inbox->Nudge();
    } else {
      rt.injector.Push(t);
      rt.injected.fetch_add(1, std::memory_order_relaxed);
    }
    if (!rt.NotifyOne()) {
      rt.wakes_skipped.fetch_add(1, std::memory_order_relaxed);
    }
  }
  rt.inflight.fetch_sub(1, std::memory_order_seq_cst);
}

}  // namespace

void RuntimeSpawner::Submit(TaskHeader* t, const RuntimeSpawnOptions& options,
                            Worker* to) noexcept {
  RuntimeShared& rt = *rt_;
  Worker* self = executor_internal::tl_worker;
  if (self != nullptr && self->rt != &rt) self = nullptr;  // another runtime
  if (self != nullptr && to == nullptr && !self->isolation &&
      options.placement.kind() == Placement::Kind::kStealable) [[likely]] {
    SubmitFromWorker(rt, *self, t, options);
  } else {
    SubmitPlaced(rt, self, t, options, to);
  }
}

// ---- RuntimeBuilder
// -----------------------------------------------------------

RuntimeBuilder::RuntimeBuilder() = default;

RuntimeBuilder& RuntimeBuilder::Workers(size_t n) {
  if (n < 1 || n > kMaxWorkers) {
    errors_.push_back(absl::InvalidArgumentError(absl::StrCat(
        "RuntimeBuilder::Workers(", n, "): out of range [1, ", kMaxWorkers,
        "]")));
  }
  workers_ = n;
  return *this;
}

RuntimeBuilder& RuntimeBuilder::ThreadAffinity(std::vector<int> cpus) {
  const cpu_set_t allowed = AllowedCpus();
  for (int cpu : cpus) {
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
      errors_.push_back(absl::InvalidArgumentError(absl::StrCat(
          "RuntimeBuilder::ThreadAffinity: CPU ", cpu,
          " is not one this process may run on (", CPU_COUNT(&allowed),
          " allowed CPUs)")));
    }
  }
  if (cpus.empty()) {
    errors_.push_back(absl::InvalidArgumentError(
        "RuntimeBuilder::ThreadAffinity: the CPU list is empty (give at "
        "least one CPU, or do not call it)"));
  }
  cpus_ = std::move(cpus);
  return *this;
}

RuntimeBuilder& RuntimeBuilder::SpinBeforePark(std::chrono::nanoseconds spin) {
  if (spin < std::chrono::nanoseconds(0) || spin > kMaxParkSpin) {
    errors_.push_back(absl::InvalidArgumentError(absl::StrCat(
        "RuntimeBuilder::SpinBeforePark(", spin.count(),
        " ns): out of range [0, ", kMaxParkSpin.count(), "] ns")));
  }
  spin_ = spin;
  return *this;
}

RuntimeBuilder& RuntimeBuilder::WakeFanout(uint32_t workers) {
  if (workers < 1 || workers > kMaxWakeFanout) {
    errors_.push_back(absl::InvalidArgumentError(absl::StrCat(
        "RuntimeBuilder::WakeFanout(", workers, "): out of range [1, ",
        kMaxWakeFanout, "]")));
  }
  wake_fanout_ = workers;
  return *this;
}

RuntimeBuilder& RuntimeBuilder::Steal(steal::StealOptions options) {
  if (absl::Status s = options.Validate(); !s.ok()) errors_.push_back(s);
  steal_ = options;
  return *this;
}

#define SPINDLE_FORWARD(Name, Type)                                  \
  RuntimeBuilder& RuntimeBuilder::Name(Type v) {                     \
    apply_.push_back([v](ExecutorBuilder& b) { b.Name(v); });       \
    return *this;                                                    \
  }
SPINDLE_FORWARD(SchedLatency, std::chrono::nanoseconds)
SPINDLE_FORWARD(MinSlice, std::chrono::nanoseconds)
SPINDLE_FORWARD(DriverYield, std::chrono::nanoseconds)
SPINDLE_FORWARD(MaxPollsPerYield, uint32_t)
SPINDLE_FORWARD(Tiers, budget::TierConfig)
SPINDLE_FORWARD(Hooks, std::shared_ptr<budget::HookRegistry>)
SPINDLE_FORWARD(IsolationShare, uint32_t)
SPINDLE_FORWARD(CollectStats, bool)
SPINDLE_FORWARD(TaskTiming, bool)
SPINDLE_FORWARD(StuckThreshold, std::chrono::nanoseconds)
SPINDLE_FORWARD(Reactor, reactor::ReactorOptions)
#undef SPINDLE_FORWARD

RuntimeBuilder& RuntimeBuilder::NoTiers() {
  apply_.push_back([](ExecutorBuilder& b) { b.NoTiers(); });
  return *this;
}
RuntimeBuilder& RuntimeBuilder::NoMonitor() {
  apply_.push_back([](ExecutorBuilder& b) { b.NoMonitor(); });
  return *this;
}
RuntimeBuilder& RuntimeBuilder::NoReactor() {
  apply_.push_back([](ExecutorBuilder& b) { b.NoReactor(); });
  return *this;
}
RuntimeBuilder& RuntimeBuilder::WithQueue(QueueId id, uint32_t share) {
  apply_.push_back([id, share](ExecutorBuilder& b) { b.WithQueue(id, share); });
  return *this;
}
RuntimeBuilder& RuntimeBuilder::WithQueue(
    QueueId id, uint32_t share,
    std::function<std::unique_ptr<sched::TaskScheduler>()> make_scheduler) {
  apply_.push_back([id, share, make_scheduler](ExecutorBuilder& b) {
    b.WithQueue(id, share, make_scheduler ? make_scheduler() : nullptr);
  });
  return *this;
}

absl::StatusOr<std::unique_ptr<Runtime>> RuntimeBuilder::Build() {
  if (!errors_.empty()) return errors_.front();
  const cpu_set_t allowed = AllowedCpus();
  const size_t n = workers_.value_or(
      static_cast<size_t>(std::max(1, CPU_COUNT(&allowed))));
  auto rt = std::make_shared<RuntimeShared>();
  RuntimeShared* shared = rt.get();
  auto make_worker =
      [&](size_t i, bool isolation) -> absl::StatusOr<std::unique_ptr<Worker>> {
    ExecutorBuilder b;
    for (const auto& f : apply_) f(b);
    // A stuck worker's report also wakes a sleeping worker, which takes
    // the stealable tasks queued behind the stuck poll, whatever the
    // locality margin (Worker::stuck).  Reports come only while the
    // workers run: `workers` is complete by then.
    b.OnMonitorReport([shared, i, isolation](const MonitorReport& r) {
      if (r.kind != MonitorReport::Kind::kStuck) return;
      shared->stuck_reports.fetch_add(1, std::memory_order_relaxed);
      if (!isolation) {
        shared->workers[i]->stuck.store(true, std::memory_order_relaxed);
      }
      shared->WakeOne(executor_internal::RuntimeShared::WakeIf::kAlways);
    });
    absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = b.Build();
    if (!ex.ok()) {
      return absl::Status(
          ex.status().code(),
          absl::StrCat("RuntimeBuilder: ",
                       isolation ? std::string("the isolation thread")
                                 : absl::StrCat("worker ", i),
                       ": ", ex.status().message()));
    }
    auto w = std::make_unique<Worker>();
    w->index = i;
    w->rt = shared;
    w->isolation = isolation;
    w->executor = std::move(*ex);
    w->inbox = executor_internal::InboxOf(*w->executor);
    auto policy = steal::StealPolicy::Create(steal_, /*seed=*/i + 1);
    if (!policy.ok()) return policy.status();
    w->policy.emplace(std::move(*policy));
    if (!cpus_.empty() && !isolation) w->cpu = cpus_[i % cpus_.size()];
    if (!isolation) {  // it has nothing to search for: it parks at once
      const std::chrono::nanoseconds spin = spin_.value_or(
          n <= static_cast<size_t>(CPU_COUNT(&allowed)) ? kDefaultParkSpin
                                                        : kNoSpin);
      w->spin_ticks =
          timing::TscClock::FromNanos(static_cast<uint64_t>(spin.count()));
    }
    return w;
  };
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<std::unique_ptr<Worker>> w = make_worker(i, false);
    if (!w.ok()) return w.status();
    rt->workers.push_back(std::move(*w));
  }
  // Tiers on and 2+ workers: the isolation thread gathers the tasks at tier
  // isolate, so that no worker's own tasks wait behind them.
  if (n >= 2 && rt->workers[0]->executor->tier_manager() != nullptr) {
    absl::StatusOr<std::unique_ptr<Worker>> w = make_worker(n, true);
    if (!w.ok()) return w.status();
    rt->isolation = std::move(*w);
  }
  rt->wake_fanout = wake_fanout_;
  rt->queue_map = rt->workers[0]->inbox.get();
  rt->idle_list.reserve(n);
  auto for_each = [&](auto&& f) {
    for (auto& w : rt->workers) f(*w);
    if (rt->isolation != nullptr) f(*rt->isolation);
  };
  for_each([&](Worker& w) { w.handle_anchor.Arm(w.executor.get(), rt); });
  std::unique_ptr<Runtime> runtime(new Runtime(rt));
  for_each([](Worker& w) { w.thread = std::thread(WorkerMain, &w); });
  return runtime;
}

// ---- Runtime
// ------------------------------------------------------------------

Runtime::Runtime(std::shared_ptr<RuntimeShared> rt)
    : rt_(rt), spawner_(std::move(rt)) {
  rt_->runtime = this;
}

Runtime::~Runtime() {
  RuntimeShared& rt = *rt_;
  // On one of its own threads the joins below would wait for this thread
  // (S3 waits for every worker): a hang, or std::system_error out of a
  // destructor.  Fail at once, saying what to do instead.
  if (const Worker* self = executor_internal::tl_worker;
      self != nullptr && self->rt == &rt) [[unlikely]] {
    const std::string where =
        self->isolation ? std::string("the isolation thread")
                        : absl::StrCat("worker ", self->index);
    executor_internal::FatalMisuse(
        absl::StrCat("Runtime destroyed from one of its own tasks (on ",
                     where,
                     "): its destructor joins every worker thread, this one "
                     "included; destroy it from a thread outside the runtime "
                     "(e.g. the one that built it)")
            .c_str());
  }
  // S1.
  rt.closing.store(true, std::memory_order_seq_cst);
  while (rt.inflight.load(std::memory_order_seq_cst) != 0) {
    std::this_thread::yield();
  }
  std::vector<Worker*> all;
  for (auto& w : rt.workers) all.push_back(w.get());
  if (rt.isolation != nullptr) all.push_back(rt.isolation.get());
  // S2-S3.
  for (Worker* w : all) w->inbox->Nudge();
  for (Worker* w : all) w->thread.join();
  // S4: no worker runs; the deques are ours now (the joins synchronise).
  for (Worker* w : all) {
    while (TaskHeader* t = w->deque.Pop()) RuntimeShared::CancelUnbound(t);
    while (TaskHeader* t = w->preferred.Pop()) RuntimeShared::CancelUnbound(t);
  }
  while (TaskHeader* t = rt.injector.Pop()) RuntimeShared::CancelUnbound(t);
  while (executor_internal::OverflowBatch* b = rt.overflow.Pop()) {
    for (uint32_t i = b->next; i < b->size; ++i) {
      RuntimeShared::CancelUnbound(b->items[i]);
    }
    b->home->GiveBack(b);
  }
  // Breaks the cycle RuntimeShared -> Worker::handle_anchor ->
  // RuntimeShared (after the joins: the workers' plain counts are ours to
  // read); the JoinHandles still out hold their anchors (and so the state)
  // alive.
  for (Worker* w : all) w->handle_anchor.Retire();
  rt.runtime = nullptr;
}

Runtime* Runtime::Current() noexcept {
  Worker* w = executor_internal::tl_worker;
  return w != nullptr ? w->rt->runtime : nullptr;
}

std::optional<size_t> CurrentWorker() noexcept {
  Worker* w = executor_internal::tl_worker;
  if (w == nullptr) return std::nullopt;
  return w->index;
}

size_t Runtime::worker_count() const noexcept { return rt_->workers.size(); }

void Runtime::WakeForBlockOn() noexcept { rt_->WakeForBlockOn(); }

void Runtime::CheckBlockingCall(const char* what) {
  if (executor_internal::tl_executor != nullptr) {
    throw TaskMisuseError(absl::StrCat(
        "spindle: ", what,
        " on a thread that runs an executor (a worker, or inside a task) "
        "would block it; co_await a JoinHandle from a task instead"));
  }
}

}  // namespace spindle
