// executor/internal/task_header.h: the header every task carries, its
// state word and the entry points other threads use on it.
//
// Split from executor/task.h (which includes it): `TaskHeader` is what the
// schedulers and the run loop see; users never touch it.  See
// docs/architecture.md, "The task", for the protocol of the state word.

#ifndef SPINDLE_EXECUTOR_INTERNAL_TASK_HEADER_H_
#define SPINDLE_EXECUTOR_INTERNAL_TASK_HEADER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>

#include "budget/tier.h"
#include "executor/internal/published_ptr.h"
#include "executor/internal/task_ticks.h"
#include "sched/task_node.h"
#include "steal/injector.h"

namespace spindle {

class LocalExecutor;

namespace executor_internal {

struct Inbox;

// Bits of TaskHeader::state, the only task field other threads touch.  The
// low 32 bits are flags; the high 32 bits count the task's references
// (kStateRefOne each: the frame, a join handle, a Waker, an abort in
// flight), so that a completion publishes its bits and drops the frame's
// reference in one RMW.  64-bit constants: `~kStateX` keeps the count.
inline constexpr uint64_t kStateComplete = 1u << 0;    // result stored
inline constexpr uint64_t kStateCancelled = 1u << 1;   // dropped unfinished
inline constexpr uint64_t kStateFailed = 1u << 2;      // result is an exception
inline constexpr uint64_t kStateJoinWaiter = 1u << 3;  // join_waiter is set
inline constexpr uint64_t kStateNotified = 1u << 4;    // a wake is queued
inline constexpr uint64_t kStateCancelRequested = 1u << 5;
// owner and inbox are set (a task of a Runtime is spawned unbound and bound
// to the worker that first runs it: a release RMW after writing them).
inline constexpr uint64_t kStateBound = 1u << 6;
// A thread blocks in Join()/Wait() on the state word: the completer calls
// notify_all (a futex syscall) only when this is set.
inline constexpr uint64_t kStateThreadWaiter = 1u << 7;
inline constexpr uint64_t kStateDone = kStateComplete | kStateCancelled;
inline constexpr uint64_t kStateRefOne = uint64_t{1} << 32;
// The reference count of a state word.
inline constexpr uint32_t RefsOf(uint64_t state) noexcept {
  return static_cast<uint32_t>(state >> 32);
}

// Owner-thread-only scheduling state.
enum class RunState : uint8_t {
  kNew,        // created, not yet spawned
  kQueued,     // linked in a queue of the QueueSet
  kRunning,    // being polled
  kYielded,    // suspended by a yield: the loop re-queues it after the poll
  kSuspended,  // waiting for a wake (I/O, timer, join, user awaiter)
  kDone,       // reached final_suspend
  // Handed by a Runtime worker to another one (a yielded task; see
  // LocalExecutor::MoveTo), in the new worker's inbox until it adopts it.
  kMoving,
};

// What a suspended task waits for (so Abort knows how to cancel it).
//   kIo: a reactor operation (wait_object); cancelled through the driver,
//        the task is cancelled when the operation's completion wakes it,
//        unless the operation completed with a real result, which is
//        delivered first (cancellation then takes effect at the task's next
//        suspension point).
//   kJoin: another task's completion (wait_object is its header).
//   kWaker: a Waker (executor/waker.h); the task is cancelled at once, and
//        the waker's later Wake() is a no-op.
//   kAborted: nothing: the task asked to suspend while an abort was
//        pending; the run loop cancels it after the poll.
enum class WaitKind : uint8_t { kNone, kIo, kJoin, kWaker, kAborted };

// Link for the executor's cross-thread inbox (intrusive MPSC queue): the
// node type of steal::Injector, so that one link of the task header serves
// the injector before the task is bound and the inbox's `wakes` after it
// (WakeNodeOf).  A task has one per inbox list; the list says which, and
// the task is found from the node's address (TaskOfNode,
// local_executor.cc).
using InboxNode = steal::InjectorNode;

struct TaskHeader;

// A task type's entries: one static table per type (a coroutine's
// Task<T>, a fiber returning T), so the header holds one pointer for all.
struct TaskOps {
  // Runs the body to its next suspension (PollTask; the slice loop
  // resumes a coroutine through `resume_point` without it).
  void (*resume)(TaskHeader*) noexcept;
  // Ends the task's body (a finished one, or a cancelled one at its
  // suspension point: a coroutine's frame is destroyed, a fiber's stack
  // unwound) and drops the body's reference, which may free the cell
  // (unless body_ref_kept).
  void (*destroy)(TaskHeader*) noexcept;
  // Frees the cell (destroys the result, returns the memory).
  void (*free_cell)(TaskHeader*) noexcept;
  // The exception the task ended with (set when `threw`), type-erased.
  std::exception_ptr (*error_of)(TaskHeader*) noexcept;
};

// One runnable thing.  See docs/architecture.md, "The task".  A Runtime
// queues tasks that have not run yet on its injectors (the second base).
//
// Size: a spawn writes the whole header, and a burst of 100k spawns is
// bound by the memory it writes, so the header is packed to 211 bytes of
// fields in 224 (TaskCell<void>'s result fills the last 8: 224 in all;
// allocation_test holds it).
// `ctx` is [[no_unique_address]] so that the small fields after it sit in
// its tail padding, and the second base's link is also the inbox link
// (`wakes`): a task is on an injector only before it is bound, and on an
// inbox's `wakes` only after (see WakeNodeOf).
struct TaskHeader : sched::TaskNode, steal::InjectorNode {
  // Field order: what every poll reads or writes comes first (after the
  // queue links of the bases), so that a poll touches few cache lines.

  // The task's entries.  Its resume entry, for a coroutine, resumes
  // `resume_point`; for a fiber (executor/fiber.h), it switches to the
  // fiber's stack, where the fiber resumes `resume_point` itself.
  const TaskOps* ops = nullptr;
  // The innermost suspended coroutine: the task's own, or, in a fiber, the
  // one this_fiber::Await is running.
  std::coroutine_handle<> resume_point;

  // Memory ordering: completion sets kStateComplete/kStateCancelled with a
  // release RMW after the result is written; JoinHandle readers acquire.
  // A joiner publishes join_waiter, then sets kStateJoinWaiter with a
  // release CAS; the completer's acq_rel CAS reads it.
  // The flags above and, in the high half, the references (the frame's
  // first: kStateRefOne).
  std::atomic<uint64_t> state{kStateRefOne};

  // Accounting: service time is TaskNode::attained_service (charged by
  // QueueSet::Charge for queues that observe it), the spawn tick below.
  uint32_t alloc_size = 0;
  uint16_t home_queue = 0;
  uint8_t io_priority = 1;  // reactor::IoPriority (kNormal)
  RunState run_state = RunState::kNew;

  // 16-byte TaskBudget, id, name, tier state, priority; 49 bytes in 64.
  [[no_unique_address]] budget::TaskContext ctx;

  // In ctx's tail padding.
  WaitKind wait_kind = WaitKind::kNone;
  bool woken = false;   // queued by a Wake: clear kStateNotified at poll
  bool threw = false;   // ended by an exception
  bool bounce = false;  // resume `resume_point` again (nested await/return)
  bool abort_seen = false;  // owner: the abort was acted on (idempotence)
  // ops->resume == &ResumeFiber (else &ResumeCoroutine): the run loop's
  // test, one byte compare.
  bool fiber = false;
  // The destroy entry leaves the body's reference to its caller, which
  // still uses the cell after the frame is gone (DestroyAndComplete).
  bool body_ref_kept = false;

  // Set before the task is published (LocalExecutor, Spawner) or, for a
  // Runtime's stealable task, by the worker that first runs it, before its
  // release RMW of kStateBound.  Other threads read them only after seeing
  // kStateBound (or after the task ran).  A Runtime worker may move a
  // yielded stealable task to another worker (LocalExecutor::MoveTo):
  // inbox, then owner, are rewritten while other threads may read them; a
  // message sent to the old owner is forwarded (see runtime_shared.h).
  PublishedPtr<LocalExecutor> owner;
  PublishedPtr<Inbox> inbox;  // owner's inbox, for wakes from other threads

  void* wait_object = nullptr;  // reactor::Operation* or join target
  TaskHeader* join_waiter = nullptr;

  // Per-task timing (ExecutorBuilder::TaskTiming), attached and written by
  // the owner; run time: TaskNode::attained_service.  Until the adoption,
  // the spawn tick is TaskNode::enqueue_tick (the queue delay starts there;
  // 0: spawned outside a Run, not stamped).
  TaskTicksPtr ticks;

  // Spawns and wakes from other threads use the second base (WakeNodeOf).
  InboxNode waker_node;            // Waker wakes from other threads
  InboxNode abort_node;            // aborts from other threads
  TaskHeader* all_prev = nullptr;  // executor's list of live tasks
  TaskHeader* all_next = nullptr;

  bool value_taken = false;  // the result was moved out by a join
  // A Runtime's stealable coroutine task (bound by the worker that first
  // ran it): a worker may move it to another once it has started (MoveTo).
  bool movable = false;
  // Moved to the isolation thread below tier isolate, for a slow poll that
  // kept other tasks of its worker waiting (FinishPoll); written by the
  // worker that moves it, before the move.
  bool moved_for_latency = false;
  // Moved at a yield to a worker that asked (Q4, executor/task_move.cc);
  // cleared when it is next offered at a wake.  Owner-written, before a
  // move, like moved_for_latency.
  bool moved_at_yield = false;
};

// The header's link on an inbox's `wakes` (spawns and wakes from other
// threads): the injector's link, free once the task has left the injector.
// Neither queue touches a node after popping it.
inline InboxNode* WakeNodeOf(TaskHeader* t) noexcept { return t; }
inline TaskHeader* TaskOfWakeNode(InboxNode* n) noexcept {
  return static_cast<TaskHeader*>(n);
}

// The join handle's reference, taken at spawn before the cell is published
// (only the spawning thread knows it yet): a plain increment, no RMW.
inline void AddUnpublishedRef(TaskHeader* h) noexcept {
  h->state.store(h->state.load(std::memory_order_relaxed) + kStateRefOne,
                 std::memory_order_relaxed);
}

// Drops one reference; frees the cell at zero.
inline void ReleaseRef(TaskHeader* h) noexcept {
  // Sole owner (the common case of a detached task): no other reference can
  // appear, so no RMW.  acquire: sees the writes of earlier releasers.
  if (RefsOf(h->state.load(std::memory_order_acquire)) == 1) {
    h->ops->free_cell(h);
    return;
  }
  // acq_rel: the last releaser must see every write of the others.
  if (RefsOf(h->state.fetch_sub(kStateRefOne, std::memory_order_acq_rel)) ==
      1) {
    h->ops->free_cell(h);
  }
}

// Wakes a suspended task from any thread (I/O completion, join, user code).
// Duplicate wakes before the task runs again are ignored.
void Wake(TaskHeader* task) noexcept;
// Wakes a task from the one event its suspension waits for: a reactor
// operation's completion (wait_kind kIo) or a joined task's (kJoin).
void WakeSole(TaskHeader* task) noexcept;

// Requests cancellation of a task from any thread (JoinHandle::Abort).
void RequestAbort(TaskHeader* task) noexcept;

// Counts a join registration of `waiter` in its executor's inbox, so that
// the executor's destruction waits for a completer that is waking it from
// another thread (see LocalExecutor's shutdown protocol).  JoinWaitEnd
// undoes it: called by whoever consumes the registration.
void JoinWaitBegin(TaskHeader* waiter) noexcept;
void JoinWaitEnd(Inbox* waiter_inbox) noexcept;

}  // namespace executor_internal
}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_INTERNAL_TASK_HEADER_H_
