// executor/task_protocol.cc: the task protocol's entry points that any
// thread may call (Wake, RequestAbort, join registrations, spawn
// preparation, blocking joins).  The owner's side is in local_executor.cc,
// whose top comment describes the whole protocol.

#include <algorithm>
#include <cstdlib>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/inbox.h"
#include "executor/internal/task_protocol.h"
#include "executor/io.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle::executor_internal {

constinit thread_local LocalExecutor* tl_executor = nullptr;
constinit thread_local TaskHeader* tl_task = nullptr;
void JoinWaitBegin(TaskHeader* waiter) noexcept {
  // The waiter runs on its executor's thread (it is awaiting): a plain
  // count; the registration itself is published by the state CAS.
  ++waiter->inbox->join_waits_owner;
}

void JoinWaitEnd(Inbox* waiter_inbox) noexcept {
  if (tl_executor == waiter_inbox->owner) {
    --waiter_inbox->join_waits_owner;  // the owner's own thread
    return;
  }
  // release: pairs with the destructor's acquire wait; everything the
  // completer did to the waiter happens-before the executor goes away.
  waiter_inbox->join_waits_remote.fetch_add(1, std::memory_order_release);
}

reactor::Reactor* ThisThreadReactor() noexcept {
  return tl_executor != nullptr ? tl_executor->driver().reactor() : nullptr;
}

void Wake(TaskHeader* t) noexcept {
  // acq_rel: a second waker sees the first's bit and backs off.
  if (t->state.fetch_or(kStateNotified, std::memory_order_acq_rel) &
      kStateNotified) {
    return;
  }
  if (t->owner == tl_executor) {
    t->woken = true;
    t->owner->ScheduleLocal(t);
    return;
  }
  // From another thread: through the owner's inbox.  If the owner has shut
  // down the task has been (or is being) cancelled by it.
  (void)t->inbox->Submit(t->inbox->wakes, WakeNodeOf(t));
}

namespace {
[[gnu::noinline]] void ScheduleLocalOutOfLine(TaskHeader* t) noexcept {
  t->owner->ScheduleLocal(t);
}
}  // namespace

void WakeSole(TaskHeader* t) noexcept {
  // On the owner's thread: no notified bit, as for a sync primitive's
  // listed task (RequeueListedLocal).  A suspension on one operation or one
  // join has one waker, this call: an abort cancels the operation (or takes
  // the join back) and cancels the task when this call wakes it, and no
  // Waker refers to the suspension.  So there is no second waker to back
  // off, and the two locked RMWs (set here, clear at the poll) are saved.
  // An abort already requested takes Wake's path: the poll sees the bit
  // (TakeWake) and cancels the task unless a real result is due.  One
  // requested after this relaxed load finds the task queued (ProcessAbort),
  // as for any queued task: removed and cancelled, or run once to deliver a
  // real result.  The poll resets wait_kind whether or not the task was
  // `woken` (RunSlice, PollTask).  From another thread (a join completed on another worker,
  // a reactor shutting down elsewhere): Wake.
  LocalExecutor* const ex = t->owner;
  if (ex == tl_executor &&
      !(t->state.load(std::memory_order_relaxed) & kStateCancelRequested))
      [[likely]] {
    // A stealable task that would wait here may go to an idle worker
    // (task_move.cc, Q0-Q2).
    if (ex->MayOffer(t)) [[unlikely]] {
      if (ex->OfferWoken(t)) return;
    }
    // The common case inline and without calls (no registers to save);
    // the rest in a tail call.
    if (ex->TryScheduleLocalFast(t)) [[likely]] return;
    ScheduleLocalOutOfLine(t);
    return;
  }
  Wake(t);
}

namespace {
std::atomic<void (*)()> g_abort_window_hook{nullptr};
}  // namespace

void SetAbortWindowHookForTesting(void (*hook)()) noexcept {
  g_abort_window_hook.store(hook, std::memory_order_release);
}

void RequestAbort(TaskHeader* t) noexcept {
  const uint64_t old =
      t->state.fetch_or(kStateCancelRequested, std::memory_order_acq_rel);
  if (old & (kStateDone | kStateCancelRequested)) return;
  // Not bound yet (a Runtime's task that has not run): the worker that
  // binds it sees the bit in its binding RMW and cancels it then.
  if (!(old & kStateBound)) return;
  if (t->owner == tl_executor) {
    t->owner->ProcessAbort(t);
    return;
  }
  t->state.fetch_add(kStateRefOne, std::memory_order_relaxed);  // the message's
  // The window a regression test widens: the executor may be destroyed
  // right here.  The caller's JoinHandle keeps the inbox alive, and Submit
  // sees it closed.
  if (void (*hook)() = g_abort_window_hook.load(std::memory_order_acquire)) {
    hook();
  }
  if (!t->inbox->Submit(t->inbox->aborts, &t->abort_node)) ReleaseRef(t);
}

void WakeByWaker(TaskHeader* t) noexcept {
  // acq_rel: a second waker sees the first's bit and backs off; acquires
  // the completion bits of a task cancelled meanwhile.
  const uint64_t old =
      t->state.fetch_or(kStateNotified, std::memory_order_acq_rel);
  if (old & (kStateNotified | kStateDone)) {
    ReleaseRef(t);  // woken already, or cancelled: nothing to do
    return;
  }
  if (t->owner == tl_executor) {
    LocalExecutor* const ex = t->owner;
    // A stealable task that would wait here may go to an idle worker
    // (task_move.cc, Q0-Q2): the bit set above is M1.
    if (ex->MayOffer(t) && !(old & kStateCancelRequested) &&
        ex->OfferWoken(t, /*notified=*/true)) [[unlikely]] {
      ReleaseRef(t);
      return;
    }
    t->woken = true;
    ex->ScheduleLocal(t);
    ReleaseRef(t);
    return;
  }
  // The message carries the waker's reference: the task may be cancelled
  // before the owner drains it, and the cell must outlive the node.
  if (!t->inbox->Submit(t->inbox->waker_wakes, &t->waker_node)) {
    ReleaseRef(t);
  }
}

const std::shared_ptr<Inbox>& InboxOf(const LocalExecutor& ex) noexcept {
  return ex.inbox_;
}

void FatalMisuse(const char* what) noexcept {
  ABSL_RAW_LOG(FATAL, "spindle: %s", what);
  std::abort();  // not reached
}

void CheckJoin(const TaskHeader* target, bool from_task) {
  const uint64_t s = target->state.load(std::memory_order_acquire);
  if (s & kStateDone) return;
  if (from_task) {
    if (target == tl_task) {
      throw TaskMisuseError(
          "spindle: a task awaits its own JoinHandle (it could never "
          "finish)");
    }
    if (s & kStateJoinWaiter) {
      throw TaskMisuseError(
          "spindle: a second task awaits a JoinHandle that another task is "
          "already awaiting (one awaiter at a time)");
    }
    return;
  }
  // owner is readable once kStateBound is seen (acquire above).  A task not
  // bound yet belongs to a Runtime: blocking any thread that runs an
  // executor on it could stall the worker that would run it.
  if (tl_executor != nullptr && !(s & kStateBound)) {
    throw TaskMisuseError(
        "spindle: JoinHandle::Join()/Wait() on a thread that runs an "
        "executor, for a Runtime task that has not started: it would block "
        "a thread that may have to run it; co_await the handle from a task "
        "instead");
  }
  if (tl_executor != nullptr && tl_executor == target->owner) {
    throw TaskMisuseError(
        "spindle: JoinHandle::Join()/Wait() on the thread running the "
        "task's own executor would block it forever; co_await the handle "
        "from a task instead");
  }
}

uint16_t QueueIndexOf(const Inbox& in, uint32_t queue_id) noexcept {
  auto it = in.queue_index.find(queue_id);
  if (it == in.queue_index.end()) {
    ABSL_RAW_LOG(FATAL,
                 "Spawn: unknown queue id %u (not given to "
                 "ExecutorBuilder::WithQueue)",
                 static_cast<unsigned>(queue_id));
  }
  return it->second;
}

void PrepareSpawn(Inbox& in, TaskHeader* t, const SpawnOptions& options,
                  bool remote, bool task_timing) noexcept {
  // relaxed: `running` is set by the thread in Run; another thread reads it
  // for the misuse diagnostic only, and this thread's own Run is ordered.
  bool running = false;
  if (!remote) {
    running = in.running.load(std::memory_order_relaxed);
    if (tl_executor != in.owner && running) {
      FatalMisuse(
          "LocalExecutor::Spawn called from a thread other than the one "
          "running the executor; use GetSpawner() on other threads");
    }
  }
  FillSpawnFields(in, t, options);
  // owner and inbox are written before the task is published (a plain call
  // on the owner thread, or the inbox's release exchange) and never change:
  // Wake and RequestAbort read them from any thread.
  t->owner = in.owner;
  t->inbox = &in;
  // Not yet published: a plain store (no RMW on the spawn path).
  t->state.store(t->state.load(std::memory_order_relaxed) | kStateBound,
                 std::memory_order_relaxed);
  // Spawned by a task of the same executor: the poll's start tick stands in
  // for the spawn time (no second TSC read; the queue delay it starts is
  // at most that poll's length too long).
  // Spawned while the executor is not running (before a Run, between
  // Runs): not stamped, as its queue delay counts from the next Run's start
  // (LocalExecutor::QueueDelay), unless TaskTiming wants the spawn time.
  // (~2 ns per spawn from main in a burst, measured here.)
  TaskHeader* cur = tl_task;
  if (cur != nullptr && cur->owner == in.owner) {
    t->enqueue_tick = cur->ctx.poll_start_tick;
  } else if (!remote && !running && !task_timing) {
    t->enqueue_tick = 0;
  } else {
    t->enqueue_tick = timing::TscClock::Now();
  }
}

void BlockUntilDone(TaskHeader* t) noexcept {
  uint64_t s = t->state.load(std::memory_order_acquire);
  if (s & kStateDone) return;
  // acq_rel: ordered with the completer's RMW (see CompleteAndRelease).
  s = t->state.fetch_or(kStateThreadWaiter, std::memory_order_acq_rel) |
      kStateThreadWaiter;
  while (!(s & kStateDone)) {
    // Woken by notify_all in CompleteAndRelease.
    t->state.wait(s, std::memory_order_acquire);
    s = t->state.load(std::memory_order_acquire);
  }
}


}  // namespace spindle::executor_internal

namespace spindle {

// ---- Spawner
// ------------------------------------------------------------------

void Spawner::SubmitTask(executor_internal::TaskHeader* t,
                         const SpawnOptions& options) noexcept {
  using executor_internal::Inbox;
  Inbox& in = *inbox_;
  executor_internal::PrepareSpawn(in, t, options, /*remote=*/true,
                                  /*task_timing=*/true);
  // Ids of tasks from spawners are even, those of local spawns odd: the id
  // is final before the handle exists (no race with the adopting thread).
  t->ctx.task_id =
      in.next_remote_id.fetch_add(2, std::memory_order_relaxed) + 2;
  if (!in.Submit(in.wakes, WakeNodeOf(t))) {
    // The executor is gone: the task never runs.
    executor_internal::DestroyCancelled(t);
  }
}


}  // namespace spindle
