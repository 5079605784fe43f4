// executor/task_protocol.cc: the task protocol's entry points that any
// thread may call (Wake, RequestAbort, join registrations, spawn
// preparation, blocking joins).  The owner's side is in local_executor.cc,
// whose top comment describes the whole protocol.

#include <algorithm>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/inbox.h"
#include "executor/internal/task_protocol.h"
#include "executor/io.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle::executor_internal {

constinit thread_local LocalExecutor* tl_executor = nullptr;
constinit thread_local TaskHeader* tl_task = nullptr;

TaskHeader* CurrentTask() noexcept { return tl_task; }

void JoinWaitBegin(TaskHeader* waiter) noexcept {
  // relaxed: the registration itself is published by the state CAS.
  waiter->inbox->join_waits.fetch_add(1, std::memory_order_relaxed);
}

void JoinWaitEnd(Inbox* waiter_inbox) noexcept {
  // release: pairs with the destructor's acquire wait; everything the
  // completer did to the waiter happens-before the executor goes away.
  waiter_inbox->join_waits.fetch_sub(1, std::memory_order_release);
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
  (void)t->inbox->Submit(t->inbox->wakes, &t->wake_node);
}

void RequestAbort(TaskHeader* t) noexcept {
  const uint32_t old =
      t->state.fetch_or(kStateCancelRequested, std::memory_order_acq_rel);
  if (old & (kStateDone | kStateCancelRequested)) return;
  if (t->owner == tl_executor) {
    t->owner->ProcessAbort(t);
    return;
  }
  t->refs.fetch_add(1, std::memory_order_relaxed);  // held by the message
  if (!t->inbox->Submit(t->inbox->aborts, &t->abort_node)) ReleaseRef(t);
}

void PrepareSpawn(Inbox& in, TaskHeader* t,
                  const SpawnOptions& options) noexcept {
  uint16_t q = in.default_queue;
  if (options.queue.has_value()) {
    auto it = in.queue_index.find(*options.queue);
    if (it == in.queue_index.end()) {
      ABSL_RAW_LOG(FATAL,
                   "Spawn: unknown queue id %u (not given to "
                   "ExecutorBuilder::WithQueue)",
                   static_cast<unsigned>(*options.queue));
    }
    q = it->second;
  }
  t->home_queue = q;
  t->priority = options.priority;
  t->ctx.priority = options.budget_priority;
  t->ctx.name = options.name;
  t->io_priority = static_cast<uint8_t>(options.io_priority);
  // owner and inbox are written before the task is published (a plain call
  // on the owner thread, or the inbox's release exchange) and never change:
  // Wake and RequestAbort read them from any thread.
  t->owner = in.owner;
  t->inbox = &in;
  // Spawned by a task of the same executor: the poll's start tick stands in
  // for the spawn time (no second TSC read, ~10 ns on these VMs; the queue
  // delay it starts is at most that poll's length too long).
  TaskHeader* cur = tl_task;
  t->spawn_tick = (cur != nullptr && cur->owner == in.owner)
                      ? cur->ctx.poll_start_tick
                      : timing::TscClock::Now();
}

void BlockUntilDone(TaskHeader* t) noexcept {
  uint32_t s = t->state.load(std::memory_order_acquire);
  while (!(s & kStateDone)) {
    // Woken by notify_all in CompleteState.
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
  executor_internal::PrepareSpawn(in, t, options);
  if (!in.Submit(in.wakes, &t->wake_node)) {
    // The executor is gone: the task never runs.
    executor_internal::CompleteState(t, /*cancelled=*/true);
    t->frame.destroy();
  }
}


}  // namespace spindle
