// executor/internal/local_executor_inl.h: LocalExecutor's inline hot-path
// members (the live-task list, same-thread wakes) and the spawn fields.
// Include executor/local_executor.h instead; it includes this at its end.

#ifndef SPINDLE_EXECUTOR_INTERNAL_LOCAL_EXECUTOR_INL_H_
#define SPINDLE_EXECUTOR_INTERNAL_LOCAL_EXECUTOR_INL_H_

#include "executor/internal/inbox.h"
#include "executor/local_executor.h"
#include "executor/task.h"
#include "timing/clock.h"

namespace spindle {

inline void LocalExecutor::LinkLive(executor_internal::TaskHeader* t) noexcept {
  stats_.live_tasks++;
  t->all_prev = nullptr;
  t->all_next = all_tasks_;
  if (all_tasks_ != nullptr) all_tasks_->all_prev = t;
  all_tasks_ = t;
}

inline void LocalExecutor::UnlinkLive(
    executor_internal::TaskHeader* t) noexcept {
  stats_.live_tasks--;
  if (t->all_prev != nullptr) t->all_prev->all_next = t->all_next;
  if (t->all_next != nullptr) t->all_next->all_prev = t->all_prev;
  if (all_tasks_ == t) all_tasks_ = t->all_next;
}

// Inline: every same-thread wake (an I/O completion, a Waker, a join)
// comes through here.
inline void LocalExecutor::ScheduleLocal(
    executor_internal::TaskHeader* t) noexcept {
  // wait_kind stays until the poll: an abort of a queued task needs to know
  // whether an operation's result waits to be delivered.
  // No clock read per wake: a wake inside a poll is stamped with that poll's
  // start, a wake from a driver poll with the tick the loop read for it
  // (after a park, one read for the whole batch).  The queue delay is thus
  // over-stated by at most one poll or one reap.
  if (wake_tick_ == 0) wake_tick_ = timing::TscClock::Now();
  Enqueue(t, wake_tick_);
}

inline void LocalExecutor::HandOffLocal(
    executor_internal::TaskHeader* t) noexcept {
  // Tier monitor (0): its queue is home_queue, and RunSlice takes it
  // without carrying it out of the slice.  An empty queue: it would be
  // next there too (see handoff_).
  if (handoff_ == nullptr && t->home_queue == slice_queue_ &&
      t->priority == sched::Priority::kNormal &&
      t->ctx.budget.tier() == 0 && slice_fifo_->IsEmpty()) [[likely]] {
    t->run_state = executor_internal::RunState::kQueued;
    t->enqueue_tick = wake_tick_;
    t->queue_index = slice_queue_;  // where FlushHandOff may queue it
    handoff_ = t;
    return;
  }
  ScheduleLocal(t);
}

inline bool LocalExecutor::MayOffer(
    const executor_internal::TaskHeader* t) const noexcept {
  return work_request_ != nullptr && t->movable && !queue_set_->Empty();
}

inline bool LocalExecutor::TryScheduleLocalFast(
    executor_internal::TaskHeader* t) noexcept {
  if (wake_tick_ == 0) return false;
  if (!queue_set_->TryPushToRunnableFifo(QueueOf(t), t)) return false;
  t->run_state = executor_internal::RunState::kQueued;
  t->enqueue_tick = wake_tick_;
  return true;
}

inline uint64_t LocalExecutor::JudgedTicks(uint64_t elapsed,
                                           uint64_t now) noexcept {
  return elapsed > min_violation_ticks_ ? DiscountPreemption(elapsed, now)
                                        : elapsed;
}

inline void LocalExecutor::Enqueue(executor_internal::TaskHeader* t,
                                   uint64_t now) noexcept {
  t->run_state = executor_internal::RunState::kQueued;
  t->enqueue_tick = now;
  queue_set_->Push(QueueOf(t), t);
}

// Every spawned task comes through here once (SubmitTask, BindAndAdopt).
inline void LocalExecutor::Adopt(executor_internal::TaskHeader* t) noexcept {
  stats_.spawns++;
  LinkLive(t);
  if (tiers_ != nullptr) tiers_->OnSpawn(t->ctx);
  // A timed task keeps its spawn tick, even if it is cancelled here.
  if (task_timing_) {
    (void)executor_internal::AttachTicks(t->ticks, t->enqueue_tick);
  }
  if (shutting_down_ || stopping_) {
    CancelTask(t);
    return;
  }
  if (t->state.load(std::memory_order_relaxed) &
      executor_internal::kStateCancelRequested) {
    CancelTask(t);
    return;
  }
  Enqueue(t, t->enqueue_tick);
}

namespace executor_internal {

inline budget::TaskPriority BudgetPriorityOf(Priority priority) noexcept {
  // The tiers' critical column is not reachable from SpawnOptions; a value
  // past kLow counts as kLow, as in the schedulers.
  switch (priority) {
    case Priority::kHigh:
      return budget::TaskPriority::kHigh;
    case Priority::kNormal:
      return budget::TaskPriority::kNormal;
    default:
      return budget::TaskPriority::kLow;
  }
}

// FillSpawnFields's lookup of a queue id given in SpawnOptions (an unknown
// id crashes, naming it).
uint16_t QueueIndexOf(const Inbox& inbox, uint32_t queue_id) noexcept;

// Inline: every spawn comes through here (a call cost ~15 instructions of
// the ~600 a spawned task costs, measured with callgrind on `mt_spawn`).
inline void FillSpawnFields(const Inbox& in, TaskHeader* t,
                            const SpawnOptions& options) noexcept {
  t->home_queue = options.queue.has_value()
                      ? QueueIndexOf(in, *options.queue)
                      : in.default_queue;
  t->priority = options.priority;
  t->ctx.priority = BudgetPriorityOf(options.priority);
  t->ctx.name = options.name;
  t->io_priority = static_cast<uint8_t>(options.io_priority);
}

}  // namespace executor_internal
}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_INTERNAL_LOCAL_EXECUTOR_INL_H_
