// executor/poll.cc: the per-poll path of the run loop.
//
// Slices.  The loop reads the TSC at slice boundaries, not per poll.  A
// slice is a run of polls of one queue: RunSlice polls the task the loop
// picked, then takes the queue's next tasks with QueueSet::SliceCursor
// (which stops at a pending cross-queue preemption, an empty queue or the
// end of the queue's EEVDF request) up to the queue's quota, reads the clock
// once and charges the whole slice to the queue (QueueSet::ChargeSlice).
// A slice never crosses MaxPollsPerYield.
//
// Quota.  Each queue's quota is the number of its mean-length polls that
// fit in kSliceTarget (25 us), at most kMaxQuota (32), at least 1.  A
// quota of 1 times every poll on its own (PollTask), as do:
//   - tasks at a tier above monitor (the tiers count their good polls),
//   - queues whose scheduler observes per-poll service (not the FIFO:
//     LasScheduler, a user's scheduler),
//   - every poll while a hook registry is installed (hooks get the time).
// Tiers.  A slice of n polls that took E ticks: if E is within the tiers'
// smallest violation threshold, no poll in it was slow.  If it is not and
// n > 1, the culprit is unknown: nothing is charged to any task, and the
// queue's quota drops to 1 so that its next slow poll is timed on its own
// (the monitor, which watches every poll from its thread, reports it
// while it runs either way).  So a task that turns slow is charged from its
// second slow poll at the latest.
// Inside a slice, a poll's budget deadline (YieldMaybe) counts from the
// slice's start, which is at most one slice (~25 us) before the poll's.
// Queue delays are sampled: one per slice, its first poll's.  A slice's
// polls enter the poll histogram at the slice's mean length.

#include <algorithm>
#include <cstdint>

#include "executor/internal/fiber_switch.h"
#include "executor/internal/inbox.h"
#include "executor/internal/preemption.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::RunState;
using executor_internal::TaskHeader;
using executor_internal::TaskTicks;
using executor_internal::WaitKind;

namespace {

// The histogram bucket of a tick count: 0 for 0, b for [2^(b-1), 2^b).  A
// clz, no clock conversion: Stats() says how long a tick is.
inline int Log2Bucket(uint64_t ticks) noexcept {
  return ticks == 0 ? 0 : 64 - __builtin_clzll(ticks);
}

// A woken task's first step at its poll: clears the notified bit; true if
// the task was cancelled instead (an abort came while it was queued).
inline bool TakeWake(TaskHeader* t) noexcept {
  t->woken = false;
  const uint64_t old = t->state.fetch_and(~executor_internal::kStateNotified,
                                          std::memory_order_acq_rel);
  return (old & executor_internal::kStateCancelRequested) != 0;
}

}  // namespace

uint64_t LocalExecutor::PollTask(TaskHeader* t, uint64_t t0) noexcept {
  if (t->woken && TakeWake(t) && !HasUndeliveredResult(t)) {
    CancelTask(t);
    return t0;
  }
  t->wait_kind = WaitKind::kNone;
  t->abort_seen = false;
  const uint16_t q = t->queue_index;
  if (collect_stats_) {
    // Buckets of TSC ticks (no conversion on the hot path); Stats() says
    // how long a tick is.
    delay_histograms_[q][Log2Bucket(QueueDelay(t, t0))]++;
  }
  if (tiers_ != nullptr) {
    tiers_->BeforePoll(t->ctx, t0);
    // The tiers' deadline, at most busy_deadline_ticks_ away while other
    // tasks wait (as RunSlice's).
    if (const uint64_t d = t->ctx.budget.deadline(); d != 0) {  // 0: none
      const uint64_t busy = BusyDeadline();
      if (d - t0 > busy) t->ctx.budget.set_deadline(t0 + busy);
    }
  } else {
    t->ctx.budget.Reset(default_budget_);
    t->ctx.poll_start_tick = t0;
  }
  if (hooks_ != nullptr) hooks_->CallBeforePoll(t->ctx);

  if (task_timing_) {
    if (TaskTicks* k = t->ticks.get(); k != nullptr) {
      // t0 may predate the spawn: a Runtime worker can take a task spawned
      // after it last read the clock.  The poll began after both.
      const uint64_t start = std::max(t0, k->spawned);
      if (k->first_run == 0) k->first_run = start;
      k->resumed = start;
    }
  }
  t->run_state = RunState::kRunning;
  wake_tick_ = t0;
  executor_internal::tl_task = t;
  beacon_.Begin(t->ctx.task_id, t->ctx.name);
  // `bounce` is false whenever a poll begins (see RunSlice).
  t->ops->resume(t);
  while (t->bounce) {
    t->bounce = false;
    t->ops->resume(t);
  }
  beacon_.End();
  executor_internal::tl_task = nullptr;

  const uint64_t t1 = timing::TscClock::Now();
  const uint64_t elapsed = t1 - t0;
  queue_set_->Charge(t, elapsed);  // also t->attained_service
  stats_.polls++;
  if (collect_stats_) poll_histograms_[q][Log2Bucket(elapsed)]++;

  const bool done = t->run_state == RunState::kDone;
  if (task_timing_) {
    if (TaskTicks* k = t->ticks.get(); k != nullptr) {
      if (done) {
        k->done = t1;
      } else {
        k->suspended = t1;
      }
    }
  }
  const budget::PollOutcome outcome =
      done ? budget::PollOutcome::kReady : budget::PollOutcome::kPending;
  if (hooks_ != nullptr) hooks_->CallAfterPoll(t->ctx, outcome, elapsed);
  bool violated = false;
  if (tiers_ != nullptr) {
    // A poll long enough to be a violation is checked against the thread's
    // context switches: time the OS took the thread away (involuntary
    // switches only) is not the task's doing.  Rare: only slow polls pay.
    violated = JudgePoll(t, outcome, JudgedTicks(elapsed, t1));
  }
  // Counted, not cleared: the next Pick clears it when it switches queues
  // (clearing it here would cancel the preemption it asks for).
  if (queue_set_->ShouldPreempt()) preemptions_[q]++;

  FinishPoll(t, t1, violated);
  return t1;
}

bool LocalExecutor::JudgePoll(TaskHeader* t, budget::PollOutcome outcome,
                              uint64_t ticks) noexcept {
  const budget::Tier before = t->ctx.tier();
  const uint32_t violations = t->ctx.tier_state().total_violations;
  switch (tiers_->AfterPoll(t->ctx, outcome, ticks)) {
    case budget::Action::kNone:
    case budget::Action::kIsolate:  // counted from the tier change below
      break;
    case budget::Action::kWarn:
      stats_.tier_warnings++;
      break;
    case budget::Action::kYield:
      stats_.tier_yields++;
      break;
  }
  // The isolation lane is where a task at tier isolate is queued (see
  // QueueOf); count the moves in and out.
  const budget::Tier after = t->ctx.tier();
  if (after != before) {
    if (after == budget::Tier::kIsolate) stats_.tier_isolations++;
    if (before == budget::Tier::kIsolate) stats_.tier_restores++;
  }
  return t->ctx.tier_state().total_violations != violations;
}

bool LocalExecutor::JudgeReportedPoll(TaskHeader* t) noexcept {
  // The monitor saw this poll run past the tiers' threshold while it ran.
  // Its length: from when the monitor first saw it (at most one sampling
  // period after it began) to now, a lower bound.
  // As in PollTask, the time the OS took the thread away (preemption only)
  // is not the task's: the monitor judges wall time.
  const uint64_t since = beacon_.SlowSinceNs();
  const uint64_t now = timing::MonotonicClock::Now();
  const uint64_t ns = now > since ? now - since : 0;
  const budget::PollOutcome outcome = t->run_state == RunState::kDone
                                          ? budget::PollOutcome::kReady
                                          : budget::PollOutcome::kPending;
  const uint64_t tick = timing::TscClock::Now();
  const uint64_t ticks = JudgedTicks(timing::TscClock::FromNanos(ns), tick);
  // The tiers date the poll's end as its start plus its length.  The slice
  // loop sets poll_start_tick at the slice's start (one clock read per
  // slice), which may be several polls before this one: dated from there,
  // the violation (and a tier change) landed up to a slice early, and the
  // hysteresis windows that start there ended early.  So the start is set
  // back from now by the judged length.
  t->ctx.poll_start_tick = tick - ticks;
  return JudgePoll(t, outcome, ticks);
}

void LocalExecutor::FinishPoll(TaskHeader* t, uint64_t tick,
                               bool violated) noexcept {
  switch (t->run_state) {
    case RunState::kDone:
      FinishTask(t);
      break;
    case RunState::kYielded:
      if (t->state.load(std::memory_order_relaxed) &
          executor_internal::kStateCancelRequested) {
        CancelTask(t);
        break;
      }
      if (tiers_ != nullptr) tiers_->OnYield(t->ctx);
      if (hooks_ != nullptr) hooks_->CallOnYield(t->ctx);
      if (t->movable && MoveAtYield(t, violated)) break;
      Enqueue(t, tick);
      break;
    case RunState::kSuspended:
    case RunState::kQueued:  // woken during its own poll
      // Aborted during the poll (by itself, a hook, or another thread):
      // the cancellation takes effect at this suspension point.
      if (t->state.load(std::memory_order_relaxed) &
          executor_internal::kStateCancelRequested) {
        ProcessAbort(t);
      }
      break;
    case RunState::kRunning:
    case RunState::kNew:
    case RunState::kMoving:
      break;
  }
}

template <bool kUntil>
uint64_t LocalExecutor::RunSlice(TaskHeader* t, TaskHeader* until,
                                 uint64_t start, TaskHeader** carry) noexcept {
  const uint16_t q = t->queue_index;
  stats_.slices++;
  SliceQuota& sq = slice_quota_[q];
  if (sq.quota <= 1 || t->ctx.budget.tier() != 0) [[unlikely]] {
    const uint64_t end = PollTask(t, start);
    polls_since_driver_++;
    AdaptQuota(sq, end - start, 1);
    return end;
  }
  wake_tick_ = start;  // wakes inside the slice are stamped with its start
  if (collect_stats_) {
    delay_histograms_[q][Log2Bucket(QueueDelay(t, start))]++;
  }
  // Never past MaxPollsPerYield; at least this one poll.
  const uint32_t room = max_polls_per_yield_ > polls_since_driver_
                            ? max_polls_per_yield_ - polls_since_driver_
                            : 1;
  const uint32_t limit = std::min({sq.quota, room, poll_cap_});
  // Tier monitor's budget and deadline per priority, for this slice; while
  // other tasks wait, at most busy_deadline_ticks_ (see BusyDeadline).
  const uint64_t busy = BusyDeadline();
  uint64_t deadline[budget::kNumPriorities];
  for (int p = 0; p < budget::kNumPriorities; ++p) {
    const uint64_t d = fast_budget_[p].deadline_ticks;  // 0: none
    deadline[p] = d != 0 ? start + std::min(d, busy) : 0;
  }
  sched::QueueSet::SliceCursor slice = queue_set_->CurrentSlice();
  uint32_t left = limit;  // polls the slice may still hold
  uint32_t others = 0;  // polls that did not end in a yield
  slice_queue_ = q;  // opens the hand-off slot (handoff_)
  slice_fifo_ = slice.fifo();
  for (;;) {
    // One poll, inline: no clock read.  wait_kind and abort_seen are reset
    // for every task, as PollTask does: a task requeued in place by the one
    // waker of its suspension (WakeSole, a sync primitive's grant) carries
    // no `woken`, and its wait_kind must not outlive the poll (an abort of
    // it queued after a yield would take a finished operation for a
    // result still to deliver).
    bool cancel = false;
    if (t->woken) [[unlikely]] {
      cancel = TakeWake(t) && !HasUndeliveredResult(t);
    }
    t->wait_kind = WaitKind::kNone;
    t->abort_seen = false;
    bool yielded = false;
    if (!cancel) [[likely]] {
      const unsigned p = static_cast<unsigned>(t->ctx.priority) & 3u;
      t->ctx.budget.Reset(fast_budget_[p].budget);
      t->ctx.budget.set_deadline(deadline[p]);
      t->ctx.poll_start_tick = start;
      t->run_state = RunState::kRunning;
      executor_internal::tl_task = t;
      beacon_.Begin(t->ctx.task_id, t->ctx.name);
      // `bounce` is false whenever a poll begins: only a resume sets it,
      // and this loop clears it before resuming again.
      if (!t->fiber) [[likely]] {
        // A coroutine's resume entry, called directly (one indirect call
        // instead of two).
        t->resume_point.resume();
        while (t->bounce) [[unlikely]] {
          t->bounce = false;
          t->resume_point.resume();
        }
      } else {
        // A fiber, switched in from this frame (see
        // executor/internal/fiber_switch.h).  It bounces on its own stack
        // (this_fiber::Await), so `bounce` is false when it switches out.
        executor_internal::PollFiber(executor_internal::FiberOfHeader(t));
      }
      // No beacon_.End() here: the next poll's Begin, or the one after the
      // loop, ends it for the monitor.
      if (beacon_.EndedPollWasSlow()) [[unlikely]] {
        // Reported by the monitor while it ran: charged now, and re-queued
        // the general way (its tier, and so its queue, may change).
        executor_internal::tl_task = nullptr;
        ++others;
        const bool violated = tiers_ != nullptr && JudgeReportedPoll(t);
        FinishPoll(t, start, violated);
      } else if (const bool cancel_requested =
                     t->state.load(std::memory_order_relaxed) &
                     executor_internal::kStateCancelRequested;
                 t->run_state == RunState::kYielded && !cancel_requested)
          [[likely]] {
        // Still at tier monitor, so its queue is the slice's: re-queued
        // below.  tl_task stays until the next poll or the slice's end:
        // nothing but this loop runs meanwhile.
        t->run_state = RunState::kQueued;
        t->enqueue_tick = start;
        yielded = true;
      } else if (t->run_state == RunState::kSuspended && !cancel_requested) {
        // Waits for a wake (I/O, a join, a Waker): nothing to do, as
        // FinishPoll would find.
        ++others;
      } else if (t->run_state == RunState::kDone) {
        // Finished: FinishPoll's first case, without its call (~24
        // instructions a task in `mt_spawn`, callgrind).
        executor_internal::tl_task = nullptr;
        ++others;
        FinishTask(t);
      } else {
        executor_internal::tl_task = nullptr;
        ++others;
        FinishPoll(t, start);
      }
    } else {
      ++others;
      CancelTask(t);
    }
    if (--left == 0 ||
        (kUntil && (until->state.load(std::memory_order_acquire) &
                    executor_internal::kStateDone))) {
      // The task in the hand-off slot goes first: it was woken before the
      // task that yielded had finished its poll.
      if (handoff_ != nullptr) [[unlikely]] FlushHandOff(slice);
      // A task that yielded goes to a worker that asked (Q4,
      // executor/task_move.cc), or back to its queue.
      if (yielded && !(MayOffer(t) && OfferYielded(t))) slice.Requeue(t);
      break;
    }
    sched::TaskNode* next;
    if (handoff_ == nullptr) [[likely]] {
      next = yielded ? slice.YieldNext(t) : slice.Next();
    } else if (slice.TakesHandOff()) [[likely]] {
      // The task a sync primitive woke in this poll runs next, as the
      // queue would have had it (see handoff_).
      if (yielded) slice.Requeue(t);
      next = handoff_;
      handoff_ = nullptr;
      stats_.handoffs++;
    } else {
      next = RequeueHandOffAndTakeNext(slice, yielded ? t : nullptr);
    }
    if (next == nullptr) {
      // A Runtime worker goes on with its own deque's tasks: one slice, not
      // one per task, for a burst of short spawned tasks.
      if (worker_ == nullptr || yielded) break;
      next = RefillSlice(slice);
      if (next == nullptr) break;
    }
    t = static_cast<TaskHeader*>(next);
    if (t->ctx.budget.tier() != 0) [[unlikely]] {
      // Timed on its own, in the next slice.
      *carry = t;
      break;
    }
  }
  slice_queue_ = kNoSlice;  // the slot is empty: every exit above takes it
  beacon_.End();
  executor_internal::tl_task = nullptr;
  const uint64_t end = timing::TscClock::Now();
  const uint32_t polls = limit - left;
  // Every task the slice ran but its first, and the one it carries, came
  // from the cursor.
  slice.Close(polls - 1 + (*carry != nullptr ? 1 : 0));
  CloseSlice(q, end - start, polls, polls - others);
  return end;
}

// A task of high priority was queued since the hand-off, or the slice is
// over: the slot's task joins the queue (FlushHandOff), and the slice goes
// on as Next / YieldNext say.  `yielded`: the task of the poll that just
// ended, if it yielded (it goes behind).
sched::TaskNode* LocalExecutor::RequeueHandOffAndTakeNext(
    sched::QueueSet::SliceCursor& slice, TaskHeader* yielded) noexcept {
  FlushHandOff(slice);
  return yielded != nullptr ? slice.YieldNext(yielded) : slice.Next();
}

// The hand-off slot's task joins the slice's queue where ScheduleLocal
// would have put it: first of its priority (the queue was empty then).
void LocalExecutor::FlushHandOff(sched::QueueSet::SliceCursor& slice) noexcept {
  slice.RequeueHandOff(handoff_);
  handoff_ = nullptr;
}

template uint64_t LocalExecutor::RunSlice<true>(TaskHeader*, TaskHeader*,
                                                uint64_t,
                                                TaskHeader**) noexcept;
template uint64_t LocalExecutor::RunSlice<false>(TaskHeader*, TaskHeader*,
                                                 uint64_t,
                                                 TaskHeader**) noexcept;

void LocalExecutor::CloseSlice(uint16_t q, uint64_t ticks, uint32_t n,
                               uint32_t yields) noexcept {
  queue_set_->ChargeSlice(q, ticks, n);
  if (tiers_ != nullptr && yields != 0) tiers_->CountYields(yields);
  stats_.polls += n;
  polls_since_driver_ += n;
  if (collect_stats_) poll_histograms_[q][Log2Bucket(ticks / n)] += n;
  if (queue_set_->ShouldPreempt()) preemptions_[q]++;
  SliceQuota& sq = slice_quota_[q];
  if (n > 1 && ticks > min_violation_ticks_) [[unlikely]] {
    // Some poll may have been slow and which one is unknown: time the
    // queue's next polls one by one (see the file comment).
    sq.mean_ticks = ticks;
    sq.quota = 1;
    return;
  }
  AdaptQuota(sq, ticks, n);
}

void LocalExecutor::AdaptQuota(SliceQuota& sq, uint64_t ticks,
                               uint32_t n) noexcept {
  const uint64_t mean = ticks / n;
  // Smoothed over ~4 slices, so one odd slice does not swing the quota.
  sq.mean_ticks = sq.mean_ticks == 0
                      ? mean
                      : sq.mean_ticks - sq.mean_ticks / 4 + mean / 4;
  const uint64_t fit = slice_target_ticks_ / (sq.mean_ticks + 1);
  sq.quota = static_cast<uint32_t>(
      std::clamp<uint64_t>(fit, 1, sq.max_quota));
}

}  // namespace spindle
