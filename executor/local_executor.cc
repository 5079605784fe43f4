// LocalExecutor: the run loop, spawning, waking, cancellation, shutdown.
//
// Task protocol (see executor/task.h for the fields).
//   Owner-thread state `run_state`:
//     kNew -> kQueued            Spawn / Adopt (from the inbox)
//     kQueued -> kRunning        picked by the loop
//     kRunning -> kYielded       YieldNow / YieldMaybe; the loop re-queues
//     kRunning -> kSuspended     an awaiter registered a wake-up (wait_kind
//                                says on what: kIo, kJoin, kWaker, or
//                                kAborted when an abort was already pending)
//     kRunning -> kDone          final_suspend of the top-level coroutine
//     kSuspended -> kQueued      Wake (owner thread directly; other threads
//                                through the inbox: `wakes`, or `waker_wakes`
//                                whose messages hold a task reference)
//   Atomic `state` (any thread): kStateNotified dedups wakes between a wake
//   and the next poll (a suspension with one waker, woken on the owner's
//   thread, skips it: a sync primitive's listed task, WakeSole for kIo and
//   kJoin); kStateCancelRequested is set by Abort and by a stop;
//   the completion bits are set once, by the owner, with a release RMW that
//   also reads kStateJoinWaiter to wake a registered joiner.
//   Cancellation (owner thread only, ProcessAbort; idempotent per
//   suspension through `abort_seen`):
//     queued             removed and cancelled, unless it was woken by an
//                        operation that completed with a real result: then
//                        it runs and is cancelled at its next suspension
//     suspended, kIo     the operation is cancelled; the completion wakes
//                        the task, which is cancelled (or, if the operation
//                        won the race, gets its result first, as above)
//     suspended, kJoin   the join registration is taken back and the task
//                        cancelled; if the target finished first, its
//                        completer wakes the task, which is cancelled then
//     suspended, kWaker  cancelled at once (a late Wake() finds it done)
//     running / yielded  acted on after the poll, at the suspension point
//                        the poll ended in (an I/O awaiter with an abort
//                        pending starts nothing: kAborted)
//   Stop (RequestStop): every live task is aborted as above, tasks spawned
//   meanwhile are cancelled at adoption, and Run returns when none is left.

// Shutdown (destructor), in order:
//   1. shutting_down_ = true: nothing is polled from here on.
//   2. Close the inbox (no producer can touch it afterwards) and adopt what
//      is in it, so spawned-from-afar tasks are cancelled like the others.
//   3. Driver::Shutdown: cancel and reap every in-flight operation; the
//      callbacks may wake tasks (queued, never run).
//   4. Take back the join registrations of waiting tasks; wait until every
//      completer that won the race (maybe on another thread) has finished
//      waking its waiter (Inbox::join_waits_remote reaches
//      join_waits_owner).
//   5. Cancel every live task: frame destroyed, then completion bits and
//      joiner wake (DestroyCancelled).
//      A destroyed frame may spawn (cancelled at once) or drop handles.

#include "executor/local_executor.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/inbox.h"
#include "executor/internal/preemption.h"
#include "executor/internal/task_protocol.h"
#include "executor/io.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::Inbox;
using executor_internal::InboxNode;
using executor_internal::RunState;
using executor_internal::TaskHeader;
using executor_internal::WaitKind;

namespace {

// Where each inbox node sits in its task (each inbox list holds one kind
// of node; `wakes` holds the base's, TaskOfWakeNode).  TaskHeader has base
// classes, so offsetof on it is only
// conditionally supported: GCC and Clang support it for a type without
// virtual bases, and warn.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
constexpr size_t kWakerNodeAt = offsetof(TaskHeader, waker_node);
constexpr size_t kAbortNodeAt = offsetof(TaskHeader, abort_node);
#pragma GCC diagnostic pop

// The task whose node, `at` bytes into it, `n` is.
TaskHeader* TaskOfNode(InboxNode* n, size_t at) noexcept {
  return reinterpret_cast<TaskHeader*>(reinterpret_cast<char*>(n) - at);
}

}  // namespace


// ---- LocalExecutor
// ------------------------------------------------------------

LocalExecutor* CurrentExecutor() noexcept {
  return executor_internal::tl_task != nullptr ? executor_internal::tl_executor
                                               : nullptr;
}

const budget::TaskContext* CurrentTaskContext() noexcept {
  TaskHeader* t = executor_internal::tl_task;
  return t != nullptr ? &t->ctx : nullptr;
}

std::optional<TaskTiming> CurrentTaskTiming() noexcept {
  TaskHeader* t = executor_internal::tl_task;
  if (t == nullptr || !executor_internal::IsTimed(t)) return std::nullopt;
  return executor_internal::TimingOf(t);
}

void LocalExecutor::SubmitTask(TaskHeader* t,
                               const SpawnOptions& options) noexcept {
  executor_internal::PrepareSpawn(*inbox_, t, options, /*remote=*/false,
                                  task_timing_);
  t->ctx.task_id = next_task_id_;  // odd; a Spawner's are even
  next_task_id_ += 2;
  Adopt(t);
}

// A queued task woken by an operation that completed with a real result
// (bytes, a descriptor): the result is delivered before a cancellation
// takes effect, so nothing is lost (an accepted socket would leak).
bool LocalExecutor::HasUndeliveredResult(const TaskHeader* t) noexcept {
  return t->wait_kind == WaitKind::kIo &&
         static_cast<const reactor::Operation*>(t->wait_object)->result !=
             -ECANCELED;
}

void LocalExecutor::ProcessAbort(TaskHeader* t) noexcept {
  if (t->run_state == RunState::kDone || t->abort_seen) return;
  const uint64_t s = t->state.load(std::memory_order_acquire);
  if (s & executor_internal::kStateDone) return;
  switch (t->run_state) {
    case RunState::kQueued:
      // Woken with a result to deliver: it runs, and is cancelled at its
      // next suspension point (PollTask).
      if (HasUndeliveredResult(t)) return;
      if (t == handoff_) {  // woken inside this poll, not queued (yet)
        handoff_ = nullptr;
        CancelTask(t);
        return;
      }
      if (queue_set_->Remove(t)) CancelTask(t);
      return;
    case RunState::kSuspended:
      switch (t->wait_kind) {
        case WaitKind::kJoin:
          t->abort_seen = true;
          if (executor_internal::DeregisterJoin(
                  t, static_cast<TaskHeader*>(t->wait_object))) {
            CancelTask(t);
          }
          // Otherwise the target finished and wakes us; cancelled then.
          return;
        case WaitKind::kIo:
          // Cancelled when the operation's completion wakes it (or its real
          // result is delivered first, if it won the race).  At shutdown
          // the driver's Shutdown cancels everything (and may run on a
          // thread that does not own the ring).
          t->abort_seen = true;
          if (!shutting_down_) driver_->Cancel(t->wait_object);
          return;
        case WaitKind::kWaker:
        case WaitKind::kAborted:
        case WaitKind::kNone:
          // Nothing refers to the frame that the cancellation would not
          // tolerate: a Waker's late Wake() is a no-op on a finished task.
          CancelTask(t);
          return;
      }
      return;
    case RunState::kRunning:
    case RunState::kYielded:
    case RunState::kNew:
    case RunState::kMoving:
    case RunState::kDone:
      // Running or yielded: acted on after the poll.  New, or on its way
      // here from another worker: when adopted (Adopt / AdoptMoved see
      // kStateCancelRequested).
      return;
  }
}

void LocalExecutor::CancelTask(TaskHeader* t) noexcept {
  if (t->run_state == RunState::kQueued) (void)queue_set_->Remove(t);
  t->run_state = RunState::kDone;
  stats_.cancellations++;
  UnlinkLive(t);
  if (tiers_ != nullptr) tiers_->OnComplete(t->ctx);
  // Without a registry: one null check, as around every poll.
  if (hooks_ != nullptr) hooks_->CallOnCancel(t->ctx);
  if (t->ticks != nullptr) t->ticks->done = timing::TscClock::Now();
  executor_internal::DestroyCancelled(t);
}

void LocalExecutor::FinishTask(TaskHeader* t) noexcept {
  UnlinkLive(t);
  if (!t->threw) [[likely]] {
    stats_.completions++;
  } else {
    stats_.failed++;
    if (executor_internal::RefsOf(t->state.load(
            std::memory_order_relaxed)) == 1) {
      ReportUnhandled(t);
    }
  }
  if (tiers_ != nullptr) tiers_->OnComplete(t->ctx);
  if (hooks_ != nullptr) hooks_->CallOnComplete(t->ctx);
  executor_internal::DestroyAndComplete(t, /*cancelled=*/false);
}

bool LocalExecutor::ShouldYield(TaskHeader* t) noexcept {
  if (t->ctx.budget.Consume()) return true;
  return YieldDue(t);
}

bool LocalExecutor::YieldDue(TaskHeader* t) noexcept {
  if (queue_set_->ShouldPreempt()) return true;
  const uint64_t deadline = t->ctx.budget.deadline();
  if (io_ == nullptr) {
    return deadline != 0 && timing::TscClock::Now() >= deadline;
  }
  // I/O ready for some task (a completion, or completion work the kernel
  // holds), or a timer due: yield, and reap it first, so that the tasks it
  // wakes run before this one again and a task of a queue that should run
  // first is not kept waiting for the deadline.  Where completions cannot
  // be seen (epoll), a poll while operations wait on the kernel ends after
  // kIoIntervalNs instead (a timer alone does not: TimerDue sees it).
  if (io_peeks_ && io_->HasPendingWork()) return YieldForEvents(t);
  const bool timers = io_->NextTimerDeadline() != UINT64_MAX;
  const bool io_waits = !io_peeks_ && KernelWaits();
  // One clock read, and only when something needs it.
  if (deadline == 0 && !io_waits && !timers) return false;
  const uint64_t now = timing::TscClock::Now();
  if (timers && TimerDue(now)) return YieldForEvents(t);
  if (deadline != 0 && now >= deadline) return true;
  if (io_waits && now - t->ctx.poll_start_tick >= io_interval_ticks_) {
    return YieldForEvents(t);
  }
  return false;
}

bool LocalExecutor::TimerDue(uint64_t now) noexcept {
  const uint64_t d = io_->NextTimerDeadline();
  if (d != timer_deadline_ns_) {
    // Both clocks read afresh: a stale `now` would make the tick early.
    const uint64_t now_ns = timing::MonotonicClock::Now();
    const uint64_t tick = timing::TscClock::Now();
    timer_deadline_ns_ = d;
    timer_due_tick_ =
        d <= now_ns ? tick : tick + timing::TscClock::FromNanos(d - now_ns);
  }
  return now >= timer_due_tick_;
}

bool LocalExecutor::YieldForEvents(TaskHeader* t) noexcept {
  // Not on a fiber's stack, which may be small and deep in user code: the
  // loop reaps at the slice's end instead (IoDue sees the same event).
  if (t->fiber) return true;
  // The reactor directly (not the driver): its callbacks only queue the
  // tasks they wake, which is allowed inside a poll.  The inbox waits for
  // the loop, whose schedule of driver yields (every MaxPollsPerYield polls
  // or DriverYield) this leaves alone: frequent events must not put off
  // the inbox's wakes, spawns and aborts.
  stats_.driver_yields++;
  io_->Poll(0);
  return true;
}

void LocalExecutor::DrainInbox() noexcept {
  Inbox& in = *inbox_;
  for (;;) {
    InboxNode* n = in.wakes.Pop();
    if (n == nullptr) break;
    TaskHeader* t = executor_internal::TaskOfWakeNode(n);
    if (t->run_state == RunState::kNew) {
      Adopt(t);  // spawned from another thread
    } else if (t->run_state == RunState::kMoving) {
      AdoptMoved(t);  // handed over by another worker (MoveTo)
    } else if (!MayOffer(t) || !OfferWoken(t, /*notified=*/true)) {
      t->woken = true;
      ScheduleLocal(t);
    }  // else handed to a worker that asked (task_move.cc, Q2)
  }
  for (;;) {
    InboxNode* n = in.waker_wakes.Pop();
    if (n == nullptr) break;
    TaskHeader* t = TaskOfNode(n, kWakerNodeAt);
    // A task cancelled after the Wake() was sent: nothing to do.  A
    // movable one may go to a worker that asked (Q2: the waker's fetch_or
    // was M1; its wake node is free, the message used waker_node).
    if (t->run_state == RunState::kSuspended &&
        (!MayOffer(t) || !OfferWoken(t, /*notified=*/true))) {
      t->woken = true;
      ScheduleLocal(t);
    }
    executor_internal::ReleaseRef(t);  // the message's reference
  }
  for (;;) {
    InboxNode* n = in.aborts.Pop();
    if (n == nullptr) break;
    TaskHeader* t = TaskOfNode(n, kAbortNodeAt);
    if (t->owner != this) {
      // Moved to another worker after the sender read its owner: forwarded
      // there with the message's reference (a closed inbox drops it; that
      // executor's shutdown cancels its tasks).
      executor_internal::Inbox* to = t->inbox;
      if (!to->Submit(to->aborts, &t->abort_node)) {
        executor_internal::ReleaseRef(t);
      }
      continue;
    }
    ProcessAbort(t);
    executor_internal::ReleaseRef(t);
  }
  if (in.nudge.load(std::memory_order_relaxed)) {
    in.nudge.store(false, std::memory_order_relaxed);
  }
  // relaxed load first: the exchange (an RMW) only when a stop is pending.
  if (in.stop.load(std::memory_order_relaxed) &&
      in.stop.exchange(false, std::memory_order_acq_rel)) {
    BeginStop();
  }
}

void LocalExecutor::DriverYield(uint64_t now) noexcept {
  const uint64_t gap = now - last_driver_tick_;
  if (gap > max_ticks_without_driver_) max_ticks_without_driver_ = gap;
  stats_.driver_yields++;
  polls_since_driver_ = 0;
  last_driver_tick_ = now;
  wake_tick_ = now;
  // Keep the preemption window short (see internal/preemption.h): one
  // getrusage per kCpuMarkRefreshNs at most.
  if (tiers_ != nullptr && now - cpu_mark_.tick > cpu_mark_refresh_ticks_) {
    MarkCpu(now);
  }
  driver_->Poll(0);
  DrainInbox();
}

void LocalExecutor::Park(uint64_t timeout_ns) noexcept {
  Inbox& in = *inbox_;
  in.parked.store(true, std::memory_order_seq_cst);
  if (!in.Empty()) {
    in.parked.store(false, std::memory_order_relaxed);
    DrainInbox();
    if (queue_set_->Empty() && !in.Empty()) std::this_thread::yield();
    return;
  }
  const uint64_t p0 = timing::TscClock::Now();
  wake_tick_ = 0;  // wakes reaped after the sleep read the clock once
  driver_->Poll(timeout_ns);
  in.parked.store(false, std::memory_order_relaxed);
  const uint64_t p1 = timing::TscClock::Now();
  idle_ticks_ += p1 - p0;
  wake_tick_ = 0;  // wakes drained from the inbox next: one read
  stats_.parks++;
  // A park that slept was a voluntary switch: start a new window, or the
  // next slow poll would be judged on wall time (the switch is not its
  // own, but the counters cannot tell).  A short park most likely did not
  // sleep (completions were ready): the old window still holds, and the
  // two system calls of a mark would double the cost of a busy I/O loop's
  // park.  A short park that did sleep costs at most the discount of slow
  // polls until the next refresh.
  if (tiers_ != nullptr && (p1 - p0 > park_mark_ticks_ ||
                            p1 - cpu_mark_.tick > cpu_mark_refresh_ticks_)) {
    MarkCpu(p1);
  }
  last_driver_tick_ = p1;
  polls_since_driver_ = 0;
  DrainInbox();
}

LocalExecutor::RunStatus LocalExecutor::RunFor(const RunLimits& limits) {
  return RunLoop(nullptr, &limits);
}

LocalExecutor::RunStatus LocalExecutor::RunLoop(TaskHeader* until,
                                                const RunLimits* limits) {
  ABSL_RAW_CHECK(!running_, "LocalExecutor::Run/BlockOn is not reentrant");
  ABSL_RAW_CHECK(executor_internal::tl_executor == nullptr ||
                     executor_internal::tl_executor == this,
                 "another executor is running on this thread");
  if (reactor::Reactor* r = driver_->reactor();
      r != nullptr && !r->OwnedByCurrentThread()) {
    // The ring (and the epoll set) belong to the first thread that ran the
    // executor: a second thread would get kernel errors on every call.
    ABSL_RAW_LOG(FATAL,
                 "LocalExecutor::Run/BlockOn on thread %d: this executor's "
                 "reactor belongs to thread %d, the first that ran it; an "
                 "executor runs on one thread (build it anywhere, run it on "
                 "one thread, destroy it anywhere once it is not running)",
                 static_cast<int>(gettid()), r->owner_thread_id());
  }
  running_ = true;
  if (monitored_) executor_internal::Monitor::Get().RunStarted();
  // relaxed: read only by PrepareSpawn's misuse diagnostic.
  inbox_->running.store(true, std::memory_order_relaxed);
  LocalExecutor* const prev = executor_internal::tl_executor;
  executor_internal::tl_executor = this;
  DrainInbox();
  // One TSC read per poll: the end of one poll is the start of the next
  // (what lies between, the pick and the charge, is scheduling overhead
  // billed to the next task's queue).  Re-read after the driver ran.
  uint64_t now = timing::TscClock::Now();
  last_driver_tick_ = now;
  run_start_tick_ = now;
  if (tiers_ != nullptr) MarkCpu(now);
  TaskHeader* carry = nullptr;  // picked by the last slice, not yet polled
  RunStatus status = RunStatus::kDone;
  // RunFor's bounds: polls (a slice is capped to what is left), a deadline
  // on the TSC, and the idle probe (one non-blocking driver poll before
  // returning kIdle).
  const uint64_t polls0 = stats_.polls;
  const uint64_t max_polls = limits != nullptr ? limits->max_polls : 0;
  uint64_t deadline = 0;
  if (limits != nullptr && limits->timeout.count() >= 0) {
    deadline = now + timing::TscClock::FromNanos(
                         static_cast<uint64_t>(limits->timeout.count()));
  }
  bool probed_idle = false;
  for (;;) {
    stats_.loop_iterations++;
    if (limits != nullptr) [[unlikely]] {
      if (max_polls != 0) {
        const uint64_t done = stats_.polls - polls0;
        if (done >= max_polls) {
          status = RunStatus::kPollLimit;
          break;
        }
        poll_cap_ = static_cast<uint32_t>(
            std::min<uint64_t>(max_polls - done, UINT32_MAX));
      }
      if (deadline != 0 && now >= deadline && carry == nullptr) {
        status = RunStatus::kTimeout;
        break;
      }
    }
    sched::TaskNode* node = carry;
    carry = nullptr;
    if (node == nullptr) {
      // (With a carried task nothing ran since the last check.)
      if (until != nullptr && (until->state.load(std::memory_order_acquire) &
                               executor_internal::kStateDone)) {
        break;
      }
      node = queue_set_->Pick();
    }
    if (node == nullptr) {
      if (until == nullptr && stats_.live_tasks == 0 && inbox_->Empty()) break;
      uint64_t park_ns = UINT64_MAX;
      if (limits != nullptr) [[unlikely]] {
        if (limits->until_idle) {
          if (probed_idle) {
            status = RunStatus::kIdle;
            break;
          }
          probed_idle = true;
          park_ns = 0;
        } else if (deadline != 0) {
          park_ns = timing::TscClock::ToNanos(deadline - std::min(now, deadline));
        }
      }
      Park(park_ns);
      now = timing::TscClock::Now();
      continue;
    }
    probed_idle = false;
    now = until != nullptr
              ? RunSlice<true>(static_cast<TaskHeader*>(node), until, now,
                               &carry)
              : RunSlice<false>(static_cast<TaskHeader*>(node), nullptr, now,
                                &carry);
    // Not while a task is carried: the driver's wakes and aborts must find
    // it in its queue.  It is polled next, on its own.
    // Completions are looked for at every slice's end, not only every
    // MaxPollsPerYield polls or DriverYield: a ready one is reaped at once.
    // Not when nothing is runnable: parking polls the driver anyway, in the
    // same system call as its wait.
    if (carry == nullptr &&
        (polls_since_driver_ >= max_polls_per_yield_ ||
         now - last_driver_tick_ >= driver_yield_ticks_ ||
         (!queue_set_->Empty() && IoDue(now)))) {
      DriverYield(now);
      now = timing::TscClock::Now();
    }
  }
  poll_cap_ = UINT32_MAX;
  // A stop ends with the Run it interrupted (the next Run starts afresh).
  if (stopping_ && stats_.live_tasks == 0) stopping_ = false;
  executor_internal::tl_executor = prev;
  inbox_->running.store(false, std::memory_order_relaxed);
  if (monitored_) executor_internal::Monitor::Get().RunEnded();
  running_ = false;
  return status;
}

void LocalExecutor::RequestStop() noexcept {
  // On the thread running this executor (a task, a hook): at once; the
  // calling task itself is cancelled at its next suspension point.
  if (executor_internal::tl_executor == this && running_) {
    BeginStop();
    return;
  }
  inbox_->RequestStop();
}

void LocalExecutor::BeginStop() noexcept {
  stopping_ = true;
  stats_.stops++;
  // Every live task is aborted.  A reference on each keeps the list's
  // cells alive while cancellations run user destructors (which may abort
  // or drop other tasks).
  std::vector<TaskHeader*> live;
  live.reserve(stats_.live_tasks);
  for (TaskHeader* t = all_tasks_; t != nullptr; t = t->all_next) {
    t->state.fetch_add(executor_internal::kStateRefOne,
                       std::memory_order_relaxed);
    live.push_back(t);
  }
  for (TaskHeader* t : live) {
    t->state.fetch_or(executor_internal::kStateCancelRequested,
                      std::memory_order_acq_rel);
    ProcessAbort(t);
    executor_internal::ReleaseRef(t);
  }
}

LocalExecutor::~LocalExecutor() {
  ABSL_RAW_CHECK(!running_, "LocalExecutor destroyed while running");
  if (monitored_) executor_internal::Monitor::Get().Unregister(&beacon_);
  if (driver_ == nullptr) {  // Build() failed half way: nothing ran.
    if (inbox_ != nullptr) inbox_->handle_anchor.Retire();
    return;
  }
  shutting_down_ = true;
  LocalExecutor* const prev = executor_internal::tl_executor;
  executor_internal::tl_executor = this;
  inbox_->Close();
  DrainInbox();
  driver_->Shutdown();
  DrainInbox();
  // Tasks waiting on joins: take their registrations back, then wait for
  // the completers (maybe on other threads) that got there first to finish
  // waking them; only then may their frames and this inbox go.
  for (TaskHeader* t = all_tasks_; t != nullptr; t = t->all_next) {
    if (t->run_state == RunState::kSuspended &&
        t->wait_kind == WaitKind::kJoin) {
      (void)executor_internal::DeregisterJoin(
          t, static_cast<TaskHeader*>(t->wait_object));
    }
  }
  // acquire: pairs with JoinWaitEnd's release.
  while (inbox_->join_waits_remote.load(std::memory_order_acquire) !=
         inbox_->join_waits_owner) {
    std::this_thread::yield();
  }
  while (all_tasks_ != nullptr) CancelTask(all_tasks_);
  executor_internal::tl_executor = prev;
  // After the last frame (whose handles counted plainly): the handles
  // still out keep the inbox alive from here.
  inbox_->handle_anchor.Retire();
  driver_.reset();
  queue_set_.reset();
}

// ---- awaiters
// -------------------------------------------------------------------

bool YieldMaybeAwaiter::await_ready() const noexcept {
  TaskHeader* t = executor_internal::tl_task;
  return !t->owner->ShouldYield(t);
}

void YieldMaybeAwaiter::await_suspend(
    std::coroutine_handle<> h) const noexcept {
  TaskHeader* t = executor_internal::tl_task;
  t->resume_point = h;
  t->run_state = RunState::kYielded;
}

}  // namespace spindle

