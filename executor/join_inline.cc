// executor/join_inline.cc: inline joins.  A task that awaits the handle of
// a task that has not started (a Runtime's stealable task still the newest
// item of the awaiting worker's deque, or a task of the awaiting task's own
// executor, queued there by its spawn) runs it inside its own poll as a
// nested Task (JoinHandle::Awaiter; the declarations and the rules are in
// executor/join_handle.h).
//
// Why.  A fork-join tree (`mt_fib`: spawn a child, compute, join it) joins
// its newest spawn almost always before any other worker took it.  The
// usual path then costs a bind RMW, a queue insert and pick, a join
// registration CAS, a completion CAS and a wake of the joiner; the inline
// path costs the deque pop and nothing locked besides (oneTBB's wait runs
// such a child itself).  On a LocalExecutor the usual path also ran the
// tree breadth first (its queue is FIFO), every task of it live at once.
//
// Why it is safe without RMWs on the task's state.  The task is unbound
// (no owner yet, or, for a task of the executor, its kStateBound cleared
// by one CAS: an Abort only sets kStateCancelRequested and returns; no
// Waker can name it: it never ran, and code inside it runs as the joiner:
// wakes, I/O and joins register the joiner's header), it is off every
// queue and list (the deque pop took it, thieves see only other items; or
// Remove and UnlinkLive), and the one handle to it is the one being
// awaited, whose task is suspended until the end.
// So from the pop to the end of EndInlineJoin only the thread that polls
// the joiner touches it, and a plain store publishes its completion bits
// (release: the result, to whoever reads the handle's status later).  A
// concurrent Abort (a misuse: the handle is in use by its awaiter) can
// only lose its own bit: the task counts as finished, as an abort that
// came after the end.
//
// Accounting.  The joiner's queue and budget are charged for the inline
// run (hence only a task of the joiner's queue, priority and I/O priority
// runs inline); it counts as a spawn and by its outcome at its end, on the
// executor that ends it, so ExecutorStats' balance holds on every worker.
// Not with hooks (they would miss its polls) or task timing (its timeline
// would be the joiner's).

#include <cstdint>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/runtime_shared.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"
#include "executor/task.h"

namespace spindle {

using executor_internal::TaskHeader;
using executor_internal::Worker;

bool LocalExecutor::TakeJoinTarget(TaskHeader* joiner,
                                   TaskHeader* target) noexcept {
  using executor_internal::kStateBound;
  // Fibers switch stacks in their polls and bounce on their own stacks.
  // A stop or shutdown cancels what has not run: not started here either.
  if (joiner->fiber || target->fiber || hooks_ != nullptr || task_timing_ ||
      stopping_ || shutting_down_) {
    return false;
  }
  if (target->home_queue != joiner->home_queue ||
      target->priority != joiner->priority ||
      target->io_priority != joiner->io_priority) {
    return false;
  }
  // acquire: an Abort that came first (seen here) makes it run the usual
  // way (cancelled by Adopt, or queued with its abort to process).
  const uint64_t s = target->state.load(std::memory_order_acquire);
  if (s & (executor_internal::kStateCancelRequested |
           executor_internal::kStateDone)) {
    return false;
  }
  Worker* const w = worker_;
  const bool bound = (s & kStateBound) != 0;
  if (!bound) {
    // A Runtime's stealable task: only from this worker's own deque (the
    // isolation thread has no worker_, nor a deque of its own).
    if (w == nullptr || w->deque.Newest() != target) return false;
  } else {
    // A task of this executor queued by its spawn and never polled (a poll
    // stamps poll_start_tick; a TSC tick is never 0), referred to by its
    // frame and the handle being awaited only: no abort, wake or Waker.
    if (target->owner != this || !target->queued ||
        target->run_state != executor_internal::RunState::kQueued ||
        target->ctx.poll_start_tick != 0 || target == handoff_ ||
        executor_internal::RefsOf(s) != 2 ||
        (s & (executor_internal::kStateNotified |
              executor_internal::kStateJoinWaiter |
              executor_internal::kStateThreadWaiter))) {
      return false;
    }
  }
  // The joiner's poll goes on only while YieldMaybe would let it: its
  // budget of operations (one per inline join), and, every 16th join, the
  // rest of YieldMaybe's test (its deadline, due I/O or timers, a queue
  // that should run first: a clock read and a look at the ring, a quarter
  // of an inline join's cost if made at every one).  Otherwise the join
  // suspends, the loop reaps, drains its inbox and runs what is due, and
  // starts the task in a poll of its own: a fork-join tree runs in polls
  // of a budget's length, not as one poll of the whole tree.
  budget::TaskBudget& b = joiner->ctx.budget;
  if (b.Consume()) return false;
  if ((b.Remaining() & 15) == 0 && YieldDue(joiner)) return false;
  if (!bound) {
    // The newest item is ours unless a thief took every item (then Pop
    // finds the deque empty).
    TaskHeader* const t = w->deque.Pop();
    if (t == nullptr) return false;
    ABSL_RAW_CHECK(t == target, "inline join: the deque's newest item changed");
    w->policy->counters().AddLocal(1);
    Worker::Bump(w->started);
  } else {
    // Unbound from here on, as a Runtime task not yet started: an Abort
    // from another thread (a misuse while its handle is awaited, but not
    // one that may crash) then only marks the state (RequestAbort) and
    // takes no reference that the end's plain store could lose.  A CAS
    // from the state checked above: an Abort that got there first sends
    // the join the usual way.
    uint64_t expected = s;
    if (!target->state.compare_exchange_strong(expected, s & ~kStateBound,
                                               std::memory_order_acq_rel,
                                               std::memory_order_relaxed)) {
      return false;
    }
    // Off its queue and this executor's books (`queued` was checked: the
    // Remove cannot fail).  It was counted as a spawn (and in tier 0) when
    // it was adopted; its end counts it again, with its outcome
    // (CountInlineJoinEnd), so ExecutorStats' balance holds throughout.
    const bool removed = queue_set_->Remove(target);
    ABSL_RAW_CHECK(removed, "inline join: a queued task was not in its queue");
    UnlinkLive(target);
    stats_.spawns--;
    if (tiers_ != nullptr) tiers_->OnComplete(target->ctx);
  }
  stats_.joins_inlined++;
  if (w != nullptr) Worker::Bump(w->joins_inlined);
  return true;
}

void LocalExecutor::CountInlineJoinEnd(bool failed, bool cancelled) noexcept {
  stats_.spawns++;
  if (cancelled) {
    stats_.cancellations++;
  } else if (failed) {
    stats_.failed++;
  } else {
    stats_.completions++;
  }
}

namespace executor_internal {

bool BeginInlineJoin(TaskHeader* joiner, TaskHeader* target,
                     InlineJoin* ij) noexcept {
  LocalExecutor* const ex = tl_executor;
  if (ex == nullptr || !ex->TakeJoinTarget(joiner, target)) return false;
  ij->joiner = joiner;
  ij->target = target;
  ij->saved_id = joiner->ctx.task_id;
  ij->saved_name = joiner->ctx.name;
  joiner->ctx.task_id = target->ctx.task_id;
  joiner->ctx.name = target->ctx.name;
  return true;
}

void EndInlineJoin(InlineJoin* ij, bool cancelled) noexcept {
  TaskHeader* const joiner = ij->joiner;
  TaskHeader* const t = ij->target;
  ij->joiner = nullptr;
  joiner->ctx.task_id = ij->saved_id;
  joiner->ctx.name = ij->saved_name;
  // The frame goes first (a cancelled one at its suspension point: the
  // destructors of its locals run), keeping the body's reference, which
  // the store below drops.
  t->body_ref_kept = true;
  t->ops->destroy(t);
  const bool failed = !cancelled && t->threw;
  // The joiner's executor: the one polling it (await_resume), or the one
  // destroying it (the Awaiter's destructor).
  joiner->owner->CountInlineJoinEnd(failed, cancelled);
  const uint64_t s = t->state.load(std::memory_order_relaxed);
  if (RefsOf(s) == 1) {  // the handle went first: nobody will read it
    t->ops->free_cell(t);
    return;
  }
  // release: the result and the frame's end, to whoever reads the handle's
  // status (another thread, once the joiner hands the handle on).
  t->state.store((s - kStateRefOne) | CompletionBits(t, cancelled),
                 std::memory_order_release);
}

}  // namespace executor_internal
}  // namespace spindle
