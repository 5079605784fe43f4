// executor/internal/task_protocol.h: the parts of the task protocol that
// the run loop and the cross-thread entry points share (see the protocol
// comment at the top of executor/local_executor.cc).

#ifndef SPINDLE_EXECUTOR_INTERNAL_TASK_PROTOCOL_H_
#define SPINDLE_EXECUTOR_INTERNAL_TASK_PROTOCOL_H_

#include <atomic>
#include <coroutine>
#include <cstdint>

#include "executor/internal/inbox.h"
#include "executor/task.h"

namespace spindle {
class LocalExecutor;
}  // namespace spindle

namespace spindle::executor_internal {

// The executor running on this thread (inside Run / BlockOn / shutdown) and
// the task it is polling.  constinit: no TLS wrapper call on access.
extern constinit thread_local LocalExecutor* tl_executor;
extern constinit thread_local TaskHeader* tl_task;

// Suspends the task being polled at `h`, waiting on a Waker (or a sync
// primitive's list, which wakes it the same way): an abort cancels it at
// once.  Aborts with `misuse` when called outside a task.  Takes no
// reference (Waker::SuspendCurrent takes the Waker's).
TaskHeader* SuspendOnWaker(std::coroutine_handle<> h,
                           const char* misuse) noexcept;

// The bits a task's end sets: cancelled, or complete (and failed if it
// threw).  CompleteAndRelease and an inline join's end (EndInlineJoin).
inline uint64_t CompletionBits(const TaskHeader* t, bool cancelled) noexcept {
  if (cancelled) return kStateCancelled;
  return t->threw ? kStateComplete | kStateFailed : kStateComplete;
}

// Sets the completion bits of `t` (owner thread), drops the body's
// reference (see DestroyAndComplete) and wakes its joiner; frees the cell if
// that reference was the last.
inline void CompleteAndRelease(TaskHeader* t, bool cancelled) noexcept {
  const uint64_t bits = CompletionBits(t, cancelled);
  // One RMW publishes the bits and drops the body's reference, unless a
  // thread blocks on the word (kStateThreadWaiter): its notify comes after
  // the bits, so the reference is kept for it and dropped after.  A joining
  // task (kStateJoinWaiter) holds a handle and cannot drop it before the
  // wake below: the cell outlives the reads of join_waiter.
  // acq_rel: releases the result to joiners; acquires join_waiter and the
  // writes of every earlier releaser (this may be the last reference).
  uint64_t old = t->state.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = old | bits;
    if (!(old & kStateThreadWaiter)) next -= kStateRefOne;
  } while (!t->state.compare_exchange_weak(old, next,
                                           std::memory_order_acq_rel,
                                           std::memory_order_relaxed));
  if (old & kStateJoinWaiter) {
    TaskHeader* waiter = t->join_waiter;
    Inbox* waiter_inbox = waiter->inbox;  // read before the wake
    WakeSole(waiter);
    // The last touch of the waiter's executor: its destructor waits for it.
    JoinWaitEnd(waiter_inbox);
  }
  if (old & kStateThreadWaiter) {
    // Only a blocked thread needs the futex wake (BlockUntilDone sets the
    // bit with an RMW before it waits, so one of the two RMWs sees the
    // other).
    t->state.notify_all();
    ReleaseRef(t);  // the body's
    return;
  }
  if (RefsOf(old) == 1) t->ops->free_cell(t);  // the others went meanwhile
}

// DestroyAndComplete of a task that others refer to (a handle, an abort
// in flight), and one of them may be dropped on another thread meanwhile:
// the body's reference keeps the cell alive until the completion is
// published, and goes with it.  Out of line, so that DestroyAndComplete's
// common case stays a tail call.
[[gnu::noinline]] inline void DestroyAndCompleteShared(
    TaskHeader* t, bool cancelled) noexcept {
  t->body_ref_kept = true;
  t->ops->destroy(t);
  CompleteAndRelease(t, cancelled);
}

// Ends `t`, which will not run again: its frame goes first (the
// destructors of its locals, parameters and captures run; a fiber's stack
// unwinds), then its joiners see it done (`cancelled` or not): a thread in
// Wait() or a joining task never sees a task done while its destructors
// still run.
inline void DestroyAndComplete(TaskHeader* t, bool cancelled) noexcept {
  // Only the frame refers to the task (no handle, no abort in flight): no
  // other thread can observe the state, so no RMW and no notify.
  // acquire: pairs with the acq_rel release of the last other reference.
  if (RefsOf(t->state.load(std::memory_order_acquire)) == 1) {
    t->ops->destroy(t);  // drops the frame's reference: frees the cell
    return;
  }
  DestroyAndCompleteShared(t, cancelled);
}

inline void DestroyCancelled(TaskHeader* t) noexcept {
  DestroyAndComplete(t, /*cancelled=*/true);
}

// Clears `waiter`'s join registration on `target` if the target has not
// finished; true when the registration is gone (and uncounted).
inline bool DeregisterJoin(TaskHeader* waiter, TaskHeader* target) noexcept {
  uint64_t ts = target->state.load(std::memory_order_acquire);
  while (!(ts & kStateDone)) {
    if (target->state.compare_exchange_weak(ts, ts & ~kStateJoinWaiter,
                                            std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
      JoinWaitEnd(waiter->inbox);
      return true;
    }
  }
  return false;  // the target finished: its completer wakes the waiter
}


}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_TASK_PROTOCOL_H_
