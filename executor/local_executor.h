// executor/local_executor.h: the single-threaded executor (its builder:
// executor/executor_builder.h, included here).
//
// Reach for `ExecutorBuilder` to make a `LocalExecutor`, then `Spawn` tasks
// and `Run()` or `BlockOn()`.  Tasks call `YieldNow()`, `YieldMaybe()` and
// `CurrentExecutor()`; other threads submit work through a `Spawner`.
// `SpawnOptions` picks a task's queue, its CPU `Priority` and its
// `IoPriority`.

#ifndef SPINDLE_EXECUTOR_LOCAL_EXECUTOR_H_
#define SPINDLE_EXECUTOR_LOCAL_EXECUTOR_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "budget/hooks.h"
#include "budget/tier.h"
#include "executor/driver.h"
#include "executor/executor_builder.h"
#include "executor/executor_stats.h"
#include "executor/fiber_task.h"
#include "executor/internal/monitor.h"
#include "executor/internal/spawn_api.h"
#include "executor/spawn_options.h"
#include "executor/task.h"
#include "reactor/reactor.h"
#include "sched/queue_set.h"
#include "sched/scheduler.h"
#include "timing/clock.h"

namespace spindle {

class LocalExecutor;

namespace executor_internal {

// The tiers' priority of a task spawned with CPU priority `priority`.
inline budget::TaskPriority BudgetPriorityOf(Priority priority) noexcept;

// Fills a task's spawn-time fields from `options`; the queue id is looked
// up in the inbox's immutable map (an unknown id is a bug: it crashes,
// naming the id).  `remote`: from another thread through the inbox (always
// stamped with the clock); else from the executor's own thread, where a
// spawn outside a Run is stamped only if `task_timing` (the spawn tick is
// TaskNode::enqueue_tick until Adopt).
void PrepareSpawn(Inbox& inbox, TaskHeader* task, const SpawnOptions& options,
                  bool remote, bool task_timing) noexcept;
// The part of PrepareSpawn that does not bind the task to an executor
// (queue index, priorities, name), for a Runtime's stealable tasks.
inline void FillSpawnFields(const Inbox& inbox, TaskHeader* task,
                            const SpawnOptions& options) noexcept;
struct Worker;

// Wakes a task for a Waker (executor/waker.h), consuming the waker's
// reference; a no-op on a task that is finished or already woken.
void WakeByWaker(TaskHeader* task) noexcept;

// The executor's inbox, for objects that must keep it alive (Waker).
const std::shared_ptr<Inbox>& InboxOf(const LocalExecutor& ex) noexcept;

// Test hook: called inside a cross-thread Abort between taking the
// message's reference and submitting it (nullptr: none).
void SetAbortWindowHookForTesting(void (*hook)()) noexcept;

}  // namespace executor_internal

// Spawner: submits tasks to an executor from any thread.
//
// Thread safety: copyable; every copy may be used concurrently from any
// thread.  A Spawner may outlive its executor: a task submitted after the
// executor shut down is cancelled at once (its handle reports kCancelled).
// Memory ordering: the submission happens-before the task's first poll.
class Spawner : public executor_internal::SpawnApi<Spawner> {
 private:
  friend class LocalExecutor;
  friend class executor_internal::SpawnApi<Spawner>;
  explicit Spawner(std::shared_ptr<executor_internal::Inbox> inbox)
      : inbox_(std::move(inbox)) {}
  void SubmitTask(executor_internal::TaskHeader* task,
                  const SpawnOptions& options) noexcept;
  std::shared_ptr<executor_internal::Inbox> inbox_;
};

// LocalExecutor: runs tasks on the thread that calls Run() / BlockOn().
//
// Scheduling: an EEVDF QueueSet shares CPU time between queues in
// proportion to their shares, measured in TSC ticks of real poll time; each
// queue orders its own tasks with its TaskScheduler.  Polls run in slices
// (executor/poll.cc): up to a queue's quota of its polls with one TSC read
// at the end, whose ticks are charged to the queue; polls that need their
// own time (tasks above tier monitor, schedulers that observe service,
// hooks) are timed one by one and evaluated by the tiers, whose action
// (warn, smaller budget, isolation lane) is carried out, and the monitor's
// slow-poll reports are charged for the others.  The driver is polled at a
// slice's end when the reactor has work waiting (io_uring; every 50 us
// while operations are in flight on epoll), every MaxPollsPerYield polls or
// DriverYield, whichever comes first, and blocked in when nothing is
// runnable.
//
// Requires: Spawn, Run, BlockOn, Stats and destruction on one thread (the
// owner); other threads use GetSpawner().  Run/BlockOn are not reentrant.
// Guarantees: a task's exception surfaces at its JoinHandle and the executor
// keeps running.  Destruction cancels every unfinished task (frames freed,
// handles see kCancelled, in-flight operations cancelled and reaped); no
// task runs after destruction begins.
// Thread safety: see Requires.  Spawn/yield/wake on the owner thread take no
// lock and do not allocate in steady state.
//
// Example:
//   auto ex = spindle::ExecutorBuilder().Build().value();
//   auto h = ex->Spawn([]() -> spindle::Task<int> { co_return 42; }());
//   ex->Run();
//   int v = h.Join();
class LocalExecutor : public executor_internal::SpawnApi<LocalExecutor> {
 public:
  ~LocalExecutor();
  LocalExecutor(const LocalExecutor&) = delete;
  LocalExecutor& operator=(const LocalExecutor&) = delete;

  // Spawn / SpawnDetached (from SpawnApi): on the owner thread only.
  using SpawnApi::Spawn;
  using SpawnApi::SpawnDetached;

  // Runs until `task` finishes and returns its value (or rethrows).
  template <typename T>
  T BlockOn(Task<T> task) {
    JoinHandle<T> h = Spawn(std::move(task));
    RunUntil(h.cell_);
    if (h.status() == JoinStatus::kCancelled) throw TaskCancelledError();
    return h.Join();
  }

  // Runs until no task is left (none queued, suspended or in flight), or
  // until a RequestStop() has cancelled what was left.
  void Run() { RunUntil(nullptr); }

  // Runs within bounds, for a program that drives the executor from a loop
  // of its own (a GUI's, a game's, another runtime's): returns when every
  // task has finished (kDone), after `max_polls` polls (kPollLimit), once
  // `timeout` has passed (kTimeout; a timeout of 0 never blocks), or, with
  // `until_idle`, when nothing is runnable after one non-blocking look at
  // the reactor (kIdle).  Zero max_polls and a negative timeout are no
  // bound.  Tasks left unfinished stay, for the next Run / RunFor.
  struct RunLimits {
    uint64_t max_polls = 0;
    std::chrono::nanoseconds timeout{-1};
    bool until_idle = false;
  };
  enum class RunStatus : uint8_t { kDone, kPollLimit, kTimeout, kIdle };
  RunStatus RunFor(const RunLimits& limits);

  // Any thread (a signal-handling task, another thread, a task of this
  // executor): asks Run() to cancel every task that is left and return.
  // Tasks cancelled this way end as kCancelled (their operations cancelled
  // and reaped; a result an operation already produced is delivered first,
  // and the task is cancelled at its next suspension point).  Tasks spawned
  // while the stop runs are cancelled at once.  Takes effect at the next
  // driver poll (within MaxPollsPerYield polls or DriverYield); made before
  // Run() starts, it stops the next Run().  The executor stays usable: a
  // later Run() runs new tasks normally.
  void RequestStop() noexcept;

  ExecutorStats Stats() const;
  Spawner GetSpawner() const { return Spawner(inbox_); }

  // The isolation lane's queue index, if tiers are on.
  std::optional<uint16_t> isolation_queue() const noexcept {
    return isolation_index_;
  }
  Driver& driver() noexcept { return *driver_; }
  // driver().reactor() (nullptr without one), without a virtual call: the
  // awaiters ask once per operation.
  reactor::Reactor* io_reactor() const noexcept { return io_; }
  // Read-only: queues are fixed at Build() (per-queue state is sized then).
  const sched::QueueSet& queue_set() const noexcept { return *queue_set_; }
  budget::TierManager* tier_manager() noexcept { return tiers_.get(); }

  // Implementation entry points used by awaiters and the Runtime (not for
  // users).  ScheduleLocal: forced inline for the channel fast paths
  // (executor/channel.h), which GCC would otherwise call out of line.
  [[gnu::always_inline]] inline void ScheduleLocal(
      executor_internal::TaskHeader* task) noexcept;
  // A sync primitive's wake of a task of this executor, inside a poll
  // (executor/internal/wait_list.h): the task runs next in the current
  // slice when it can (the hand-off slot, see handoff_), else ScheduleLocal.
  [[gnu::always_inline]] inline void HandOffLocal(
      executor_internal::TaskHeader* task) noexcept;
  // ScheduleLocal's common case (a wake tick taken, a FIFO queue runnable
  // already), without calls; false: nothing done, call ScheduleLocal.
  // WakeSole's fast path, which then needs no callee-saved registers.
  bool TryScheduleLocalFast(executor_internal::TaskHeader* task) noexcept;
  // A Runtime worker's thread: binds an unbound task to this executor and
  // queues it (or cancels it, if it was aborted before).  `unpublished`:
  // no other thread can reach the task yet (a spawn that has not returned).
  void BindAndAdopt(executor_internal::TaskHeader* task,
                    bool unpublished = false) noexcept;
  // Inline joins (executor/join_inline.cc): takes a task that `joiner`
  // awaits and that never ran back (from the worker's deque, or off this
  // executor's queue; false: it may not run inline); counts one that ran
  // inline at its end (ExecutorStats).
  bool TakeJoinTarget(executor_internal::TaskHeader* joiner,
                      executor_internal::TaskHeader* target) noexcept;
  void CountInlineJoinEnd(bool failed, bool cancelled) noexcept;
  // Moves of started tasks (executor/task_move.cc): after a poll that
  // yielded, to the isolation thread or from it to a worker (round robin);
  // MoveTo hands a movable task to `to` (`notified`: its waker set the
  // bit); false: it stays (no such thread, or a wake is in flight).
  // AdoptMoved takes one over.
  bool MoveIsolated(executor_internal::TaskHeader* task) noexcept;
  bool MoveFromIsolation(executor_internal::TaskHeader* task) noexcept;
  bool MoveTo(executor_internal::TaskHeader* task, LocalExecutor* to,
              bool notified = false) noexcept;
  void AdoptMoved(executor_internal::TaskHeader* task) noexcept;
  // A movable task woken on a Runtime worker where others wait (Q0-Q3):
  // OfferWoken hands it to a worker that asked (true) or wakes one to ask.
  // OfferWanted (after MayOffer): a worker asked, or Q0 would wake one (a
  // sync primitive's grant then goes through WakeByWaker, which offers).
  bool MayOffer(const executor_internal::TaskHeader* task) const noexcept;
  bool OfferWanted() const noexcept;
  bool OfferWoken(executor_internal::TaskHeader* task,
                  bool notified = false) noexcept;
  // A movable task that yielded where others wait (Q4): to a worker that
  // asked (true), else it stays.  Nothing is woken for a yield.
  bool OfferYielded(executor_internal::TaskHeader* task) noexcept;
  // Q2/Q4: TakeRequest takes this worker's pending request (the asker's
  // index + 1; 0: none).  MoveToAsker moves the task there (true); if M1
  // fails the task stays and the request goes back unless another came.
  uint32_t TakeRequest() noexcept;
  bool MoveToAsker(executor_internal::TaskHeader* task, uint32_t asker,
                   bool notified) noexcept;
  // A Runtime worker's run loop (executor/worker_loop.cc): runs until the
  // runtime closes.
  void RunWorker(executor_internal::Worker* worker);
  // A worker's slice whose queue ran empty: starts the worker's newest
  // stealable task; the slice's next task, or null (the slice ends).
  sched::TaskNode* RefillSlice(sched::QueueSet::SliceCursor& slice) noexcept;
  [[gnu::noinline]] sched::TaskNode* RequeueHandOffAndTakeNext(
      sched::QueueSet::SliceCursor& slice,
      executor_internal::TaskHeader* yielded) noexcept;
  [[gnu::noinline]] void FlushHandOff(
      sched::QueueSet::SliceCursor& slice) noexcept;
  void ProcessAbort(executor_internal::TaskHeader* task) noexcept;
  // YieldMaybe's test: charges one operation to the task's budget, then
  // YieldDue.  YieldDue alone (a caller that charged already): a queue
  // that should run first, the tiers' deadline, I/O or a timer due.
  bool ShouldYield(executor_internal::TaskHeader* task) noexcept;
  bool YieldDue(executor_internal::TaskHeader* task) noexcept;

 private:
  friend class ExecutorBuilder;
  friend class Spawner;
  friend const std::shared_ptr<executor_internal::Inbox>&
  executor_internal::InboxOf(const LocalExecutor& ex) noexcept;
  friend class executor_internal::SpawnApi<LocalExecutor>;
  LocalExecutor() = default;

  void SubmitTask(executor_internal::TaskHeader* task,
                  const SpawnOptions& options) noexcept;
  void Adopt(executor_internal::TaskHeader* task) noexcept;
  // The live-task list (and count) that shutdown and stops walk.
  inline void LinkLive(executor_internal::TaskHeader* task) noexcept;
  inline void UnlinkLive(executor_internal::TaskHeader* task) noexcept;
  void RunUntil(executor_internal::TaskHeader* until) {
    (void)RunLoop(until, nullptr);
  }
  RunStatus RunLoop(executor_internal::TaskHeader* until,
                    const RunLimits* limits);
  // The per-poll path (executor/poll.cc).  RunSlice polls `first` (just
  // picked) and what the queue's slice cursor gives, up to the quota, with
  // one clock read at the end (returned).  A task that must be timed on its
  // own (tier above monitor) ends the slice and comes back in *carry (null
  // on entry).  kUntil: `until` (BlockOn) is checked after each poll.
  template <bool kUntil>
  uint64_t RunSlice(executor_internal::TaskHeader* first,
                    executor_internal::TaskHeader* until, uint64_t start,
                    executor_internal::TaskHeader** carry) noexcept;
  // One poll timed on its own (tiers, hooks, per-poll service), starting at
  // tick `start`; returns the tick it ended at.
  uint64_t PollTask(executor_internal::TaskHeader* task,
                    uint64_t start) noexcept;
  // The tiers' verdict on a poll of `ticks`, with the stats it moves.
  bool JudgePoll(executor_internal::TaskHeader* task,
                 budget::PollOutcome outcome, uint64_t ticks) noexcept;
  // A poll of a slice that the monitor reported as slow while it ran.
  // Both true if the tiers charged the poll with a violation.
  bool JudgeReportedPoll(executor_internal::TaskHeader* task) noexcept;
  // After a poll: finish, re-queue or cancel the task by its run state
  // (`violated`: what JudgePoll said of the poll, for MoveAtYield).
  void FinishPoll(executor_internal::TaskHeader* task, uint64_t tick,
                  bool violated = false) noexcept;
  // A Runtime worker, at a yield of a movable task: whether it moves to the
  // isolation thread (at tier isolate, or after a poll that the tiers
  // judged a violation while other tasks of this worker waited), or, on the
  // isolation thread, back to a worker.  True: it moved.
  bool MoveAtYield(executor_internal::TaskHeader* task, bool violated) noexcept;
  // Whether a task of this executor, or a due timer or ready I/O of its
  // reactor, is waiting now (after a slow poll: whom it kept waiting).
  bool OthersWait() noexcept;
  // Charges a slice's polls to its queue, counts them, adapts the quota.
  void CloseSlice(uint16_t queue_index, uint64_t ticks, uint32_t polls,
                  uint32_t yields) noexcept;
  static bool HasUndeliveredResult(
      const executor_internal::TaskHeader* task) noexcept;
  inline void Enqueue(executor_internal::TaskHeader* task,
                      uint64_t now) noexcept;
  void FinishTask(executor_internal::TaskHeader* task) noexcept;
  void ReportUnhandled(executor_internal::TaskHeader* task) noexcept;
  void CancelTask(executor_internal::TaskHeader* task) noexcept;
  void DrainInbox() noexcept;
  void BeginStop() noexcept;
  void DriverYield(uint64_t now) noexcept;
  void Park(uint64_t timeout_ns = UINT64_MAX) noexcept;
  // A Runtime worker with nothing to run (I0), at tick `now`: waits awake
  // until `deadline` for a wake or work; true if either came.
  bool SpinBeforePark(uint64_t now, uint64_t deadline, bool yield) noexcept;
  // Context-switch accounting for slow polls (see DiscountPreemption).
  struct CpuMark {
    uint64_t tick = 0;
    uint64_t cpu_ns = 0;
    uint64_t voluntary = 0;
    uint64_t involuntary = 0;
  };
  void MarkCpu(uint64_t now) noexcept;
  uint64_t DiscountPreemption(uint64_t elapsed, uint64_t now) noexcept;
  // A poll's ticks as the tiers judge them (inline: only slow ones call).
  uint64_t JudgedTicks(uint64_t elapsed, uint64_t now) noexcept;
  uint16_t QueueOf(const executor_internal::TaskHeader* task) const noexcept {
    // A task at tier isolate runs in the isolation lane (tiers on only).
    return task->ctx.tier() == budget::Tier::kIsolate ? *isolation_index_
                                                      : task->home_queue;
  }

  std::unique_ptr<sched::QueueSet> queue_set_;
  std::unique_ptr<budget::TierManager> tiers_;
  std::shared_ptr<budget::HookRegistry> hooks_;
  std::unique_ptr<Driver> driver_;
  // driver_->reactor(), cached: its HasPendingWork (loads, no system call)
  // is checked at every slice's end and in YieldMaybe.
  reactor::Reactor* io_ = nullptr;
  // Whether io_->HasPendingWork sees completions; where it does not
  // (epoll), while operations wait on the kernel the driver is polled every
  // kIoIntervalNs and YieldMaybe yields after that long.  Timers are not
  // such operations: their deadlines are known (TimerDue).
  bool io_peeks_ = false;
  uint64_t io_interval_ticks_ = UINT64_MAX;
  static constexpr uint64_t kIoIntervalNs = 50'000;
  // Whether the loop should poll the driver at a slice's end at `now`: an
  // event is ready (or, on epoll, may be), or a timer is due.
  bool IoDue(uint64_t now) noexcept {
    if (io_ == nullptr) return false;
    if (io_peeks_ ? io_->HasPendingWork()
                  : KernelWaits() &&
                        now - last_driver_tick_ >= io_interval_ticks_) {
      return true;
    }
    return io_->NextTimerDeadline() != UINT64_MAX && TimerDue(now);
  }
  // Whether operations other than timers are in flight (epoll cannot see
  // their completions without a poll).
  bool KernelWaits() const noexcept {
    return io_->inflight() > io_->pending_timers();
  }
  // Whether the earliest timer is due at TSC tick `now` (its deadline is
  // converted once, when a new timer becomes the earliest).
  bool TimerDue(uint64_t now) noexcept;
  uint64_t timer_deadline_ns_ = UINT64_MAX;  // the one converted last
  uint64_t timer_due_tick_ = 0;
  // Inside a poll whose YieldMaybe found an event (a completion, a due
  // timer): reaps it now (not on a fiber's stack), so that the tasks it
  // wakes are queued before the yielding task (FIFO within a queue);
  // returns true.
  bool YieldForEvents(executor_internal::TaskHeader* t) noexcept;
  std::shared_ptr<executor_internal::Inbox> inbox_;
  std::optional<uint16_t> isolation_index_;

  uint32_t max_polls_per_yield_ = 61;
  uint32_t poll_cap_ = UINT32_MAX;  // RunFor's polls left, caps a slice
  uint64_t min_violation_ticks_ = UINT64_MAX;
  CpuMark cpu_mark_;
  uint64_t cpu_mark_refresh_ticks_ = UINT64_MAX;
  uint64_t park_mark_ticks_ = 0;  // a park this long re-marks (see Park)
  uint64_t driver_yield_ticks_ = 0;
  uint32_t default_budget_ = 2000;
  uint32_t share_scale_ = 1;  // internal weight per unit of user share
  bool collect_stats_ = true;
  bool task_timing_ = false;  // ExecutorBuilder::TaskTiming
  bool running_ = false;
  bool shutting_down_ = false;
  bool isolation_thread_ = false;  // a Runtime's isolation thread
  executor_internal::Worker* worker_ = nullptr;  // while RunWorker runs
  std::atomic<uint32_t>* work_request_ = nullptr;  // worker_->request
  bool stopping_ = false;  // RequestStop in progress

  uint32_t polls_since_driver_ = 0;
  uint64_t last_driver_tick_ = 0;
  uint64_t wake_tick_ = 0;  // enqueue tick for wakes; 0: read the clock
  uint64_t run_start_tick_ = 0;  // the current (or last) Run's start
  // The hand-off slot (empty outside RunSlice): while RunSlice runs a
  // slice of queue slice_queue_, a task of normal priority and tier monitor
  // that a sync primitive wakes for that queue while it is empty waits here
  // and runs after the poll that woke it, unless a task of high priority
  // was queued meanwhile or the slice is over: then it joins the queue
  // (FlushHandOff).  It saves the queue's push and pop of every message two
  // tasks of one worker bounce.
  static constexpr uint16_t kNoSlice = 0xffff;
  uint16_t slice_queue_ = kNoSlice;
  // slice_queue_'s scheduler; stale once the slice ends, so read only
  // after a match with slice_queue_ (no task's queue is kNoSlice).
  const sched::FifoScheduler* slice_fifo_ = nullptr;
  executor_internal::TaskHeader* handoff_ = nullptr;
  uint64_t next_task_id_ = 1;  // odd ids for local spawns
  executor_internal::TaskHeader* all_tasks_ = nullptr;  // live task list

  ExecutorStats stats_;
  executor_internal::PollBeacon beacon_;  // read by the monitor
  bool monitored_ = false;
  uint64_t max_ticks_without_driver_ = 0;
  uint64_t idle_ticks_ = 0;
  std::vector<std::array<uint64_t, 65>> delay_histograms_;
  std::vector<std::array<uint64_t, 65>> poll_histograms_;
  std::vector<uint64_t> preemptions_;
  // Per queue: how many polls a slice may hold (1: every poll timed on its
  // own), adapted from the mean poll length (see RunSlice).
  struct SliceQuota {
    uint64_t mean_ticks = 0;  // smoothed mean poll length
    uint32_t quota = 1;
    uint32_t max_quota = 1;   // 1 for queues that need per-poll service
  };
  std::vector<SliceQuota> slice_quota_;
  uint64_t slice_target_ticks_ = 0;
  // A tier-monitor poll's budget and deadline per priority (the tiers'
  // policy, or the untiered budget and no deadline).
  struct FastBudget {
    uint32_t budget = 0;
    uint64_t deadline_ticks = 0;  // 0: none
  };
  FastBudget fast_budget_[budget::kNumPriorities];
  static constexpr uint64_t kSliceTargetNs = 25'000;
  // A poll that begins while other tasks are queued (a task woken by a
  // timer or I/O between two polls of a task that calls YieldMaybe) yields
  // at YieldMaybe after this long instead of at the tiers' deadline (half
  // the violation threshold): the woken task waited behind it.  Without
  // tiers there is no deadline, and none is added: YieldMaybe yields for
  // its budget and for events only, as documented.
  static constexpr uint64_t kBusyDeadlineNs = 50'000;
  uint64_t busy_deadline_ticks_ = 0;
  // The queue delay of `t` picked at tick `at`: from its enqueue tick, or
  // from this Run's start for a task queued while the executor was not
  // running (before the Run or between Runs: spawned unstamped, or woken
  // with a stale wake_tick_), the earliest it could have been picked.
  uint64_t QueueDelay(const executor_internal::TaskHeader* t,
                      uint64_t at) const noexcept {
    const uint64_t from = std::max(t->enqueue_tick, run_start_tick_);
    return at - std::min(at, from);
  }
  // The longest a poll beginning now may run to YieldMaybe's deadline, from
  // the queues: busy_deadline_ticks_ while tasks are queued, else
  // UINT64_MAX (no bound).
  uint64_t BusyDeadline() const noexcept {
    return queue_set_->Empty() ? UINT64_MAX : busy_deadline_ticks_;
  }
  static constexpr uint32_t kMaxQuota = 32;
  void AdaptQuota(SliceQuota& sq, uint64_t ticks, uint32_t polls) noexcept;
};

// The executor running the calling task, or nullptr outside a task.
LocalExecutor* CurrentExecutor() noexcept;

// The calling task's budget context (id, name, tier, budget), or nullptr
// outside a task.
const budget::TaskContext* CurrentTaskContext() noexcept;

// The calling task's timeline so far (its current poll began at
// last_resumed), or nullopt outside a task or on an executor without
// ExecutorBuilder::TaskTiming.
std::optional<TaskTiming> CurrentTaskTiming() noexcept;

// Awaitable: re-queues the calling task behind the runnable ones.
struct YieldNowAwaiter {
  bool await_ready() const noexcept { return false; }
  // Inline: one store each, on the hottest path there is.
  void await_suspend(std::coroutine_handle<> h) const noexcept {
    executor_internal::TaskHeader* t = executor_internal::tl_task;
    t->resume_point = h;
    t->run_state = executor_internal::RunState::kYielded;
  }
  void await_resume() const noexcept {}
};
inline YieldNowAwaiter YieldNow() noexcept { return {}; }

// Awaitable: yields only when the task's budget or CPU slice for this poll is
// used up, another queue should run first (cross-queue preemption), or an
// event waits: an I/O completion or a due timer, reaped before it yields so
// that the tasks it wakes run before this one again.
struct YieldMaybeAwaiter {
  bool await_ready() const noexcept;
  void await_suspend(std::coroutine_handle<> h) const noexcept;
  void await_resume() const noexcept {}
};
inline YieldMaybeAwaiter YieldMaybe() noexcept { return {}; }

}  // namespace spindle

// The hot path's inline members (live list, same-thread wakes).
#include "executor/internal/local_executor_inl.h"  // IWYU pragma: export

#endif  // SPINDLE_EXECUTOR_LOCAL_EXECUTOR_H_
