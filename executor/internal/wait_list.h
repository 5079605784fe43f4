// executor/internal/wait_list.h: the lock and the FIFO list of waiters
// that every sync primitive (executor/sync.h) is built on.
//
// A waiter is a suspended task or a plain thread blocked on the
// primitive's condition variable.  The protocol, the same in every
// primitive:
//   - A waiter is linked, and later unlinked, only under the primitive's
//     lock.  Whoever unlinks it (a grant, a close) first sets its outcome,
//     then wakes it through a WakeSet.
//   - A task suspends with SuspendForSync, which takes no reference on it:
//     while it is listed, its frame (whose awaiter is the list node) cannot
//     go without taking the lock to unlink itself, so a holder of the lock
//     may touch it.  Waking it under the lock is then cheap: a task of this
//     thread's executor is requeued in place (no atomic operation); a task
//     of another executor gets a Waker (a reference and its inbox) made
//     under the lock and woken after the unlock.  A blocked thread is
//     notified under the lock: once unlinked it may return (a spurious
//     wake-up) and destroy the primitive, so nothing touches the primitive
//     after the unlock.
//   - A task's awaiter that was suspended and is destroyed without having
//     been resumed (its task was aborted, a losing Select branch, an
//     executor shut down) locks the primitive: still linked, it unlinks
//     itself; already granted, it hands what it was granted (a permit, a
//     message, a notification) on, so nothing is lost.
//   - The outcome is read by the waiter itself only after it was woken
//     (the wake happens-before the resumption), or under the lock.

#ifndef SPINDLE_EXECUTOR_INTERNAL_WAIT_LIST_H_
#define SPINDLE_EXECUTOR_INTERNAL_WAIT_LIST_H_

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "executor/internal/sync_mutex.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"
#include "executor/waker.h"

namespace spindle::executor_internal {

// What ended a wait.  kNone: still waiting (linked).  kGranted: given
// what it waited for (a permit, a message, a notify-one); kBroadcast: woken
// with everyone (nothing to hand on if it is cancelled); kClosed: the
// primitive was closed.
enum class WaitOutcome : uint8_t { kNone, kGranted, kBroadcast, kClosed };

// Blocked plain threads wait on one of these with the SyncMutex.
using SyncCondVar = std::condition_variable_any;

struct SyncWaiter {
  // Every field set.
  SyncWaiter() noexcept
      : prev(nullptr),
        next(nullptr),
        task(nullptr),
        linked(false),
        thread(false),
        outcome(WaitOutcome::kNone) {}
  // Only what is read before the waiter is linked: `linked` and `thread`.
  // For an awaiter's node on a hot path (a channel message), whose
  // `prev`, `next` and `outcome` are written by PushBack, `task` by the
  // suspend before that, and whose `outcome` is set before it is read
  // on the paths that do not link it.
  struct Unlinked {};
  explicit SyncWaiter(Unlinked) noexcept : linked(false), thread(false) {}

  SyncWaiter* prev;
  SyncWaiter* next;
  TaskHeader* task;  // the suspended task; null for a thread
  bool linked;
  bool thread;  // a plain thread waiting on the condition variable
  WaitOutcome outcome;
};

// Suspends the calling task at `h` for a primitive's list (no reference is
// taken; see above).  Aborts with a message outside a Spindle task.
// Inline: a channel message suspends one task.
inline TaskHeader* SuspendForSync(std::coroutine_handle<> h) noexcept {
  TaskHeader* t = tl_task;
  if (t == nullptr) [[unlikely]] {
    FatalMisuse(
        "a Spindle sync primitive (Channel, Mutex, Semaphore, Notify, ...) "
        "was awaited outside a task running on a Spindle executor");
  }
  t->resume_point = h;
  t->run_state = RunState::kSuspended;
  t->wait_kind = WaitKind::kWaker;  // an abort cancels it at once
  return t;
}

// After a channel operation, a Semaphore (Mutex) acquisition or a Notify
// or WaitGroup wait that did not wait: charges the calling task's
// operation budget (the one YieldMaybe counts, reset at every poll), and
// every 32 operations asks what YieldMaybe asks besides (YieldDue: the
// tiers' deadline, a queue that should run first, an event to reap).
// Once the budget is spent, or YieldDue says so, the task yields there:
// it is re-queued behind the runnable ones and resumes with the operation
// done (a received message, permits or a notification are held by its
// awaiter, which gives them back if the task is cancelled before then).
// So a consumer whose channel never runs empty, or whose semaphore
// another worker keeps releasing, or a producer whose channel never
// fills, lets the other tasks of its worker run.  Returns await_suspend's
// answer.  Inline: a load, a store and a test when it does not yield.
[[gnu::always_inline]] inline bool YieldMaybeAfterOp(
    std::coroutine_handle<> h) noexcept {
  TaskHeader* const t = tl_task;
  if (t == nullptr) [[unlikely]] return false;
  if (!t->ctx.budget.Consume()) [[likely]] {
    if ((t->ctx.budget.Remaining() & 31u) != 0) [[likely]] return false;
    if (!t->owner->YieldDue(t)) return false;
  }
  t->resume_point = h;
  t->run_state = RunState::kYielded;
  return true;
}

// YieldMaybeAfterOp for an awaiter that holds what the operation took (a
// message, permits, a notification) until the task resumes: marks it
// `suspended` when the task yields, so that the awaiter's destructor
// gives it back if the task is cancelled before then.
[[gnu::always_inline]] inline bool YieldMaybeAfterOpHolding(
    std::coroutine_handle<> h, bool& suspended) noexcept {
  if (!YieldMaybeAfterOp(h)) [[likely]] return false;
  suspended = true;
  return true;
}

// Under the primitive's lock, for a task still listed: if it belongs to
// this thread's executor (LocalOwnerOf: that executor, else null),
// requeues it now (HandOffLocal: inside a poll it may run right after it),
// with no atomic operation, and returns true.  Nothing else can wake it
// (it is listed only here), and an abort arriving from another thread is
// acted on by this thread later: a queued task is then removed and
// cancelled, its awaiter handing its grant on.  Inline: it is most of a
// same-worker channel message.
inline LocalExecutor* LocalOwnerOf(const TaskHeader* t) noexcept {
  LocalExecutor* const ex = tl_executor;  // read once
  return t->owner == ex ? ex : nullptr;
}
// RequeueListedLocal's requeue, for a caller that found `ex` with
// LocalOwnerOf(t).
[[gnu::always_inline]] inline void RequeueLocal(LocalExecutor* ex,
                                                TaskHeader* t) noexcept {
  t->wait_kind = WaitKind::kNone;
  ex->HandOffLocal(t);
}
// A Runtime's movable task that an idle worker could take (Q0-Q2 of
// executor/task_move.cc) is not requeued in place: it gets a Waker, whose
// wake after the unlock offers it (WakeByWaker), so that no move, doorbell
// or wake-up happens under the primitive's lock.
[[gnu::always_inline]] inline bool OfferedLater(LocalExecutor* ex,
                                                const TaskHeader* t) noexcept {
  return ex->MayOffer(t) && ex->OfferWanted();
}
inline bool RequeueListedLocal(TaskHeader* t) noexcept {
  LocalExecutor* const ex = LocalOwnerOf(t);
  if (ex == nullptr || OfferedLater(ex, t)) [[unlikely]] return false;
  RequeueLocal(ex, t);
  return true;
}

// A waiter for n permits (Semaphore, Mutex).
struct PermitWaiter : SyncWaiter {
  size_t n = 0;
};

// Intrusive doubly linked FIFO.  Not thread-safe: the owner's mutex guards
// it and every waiter in it.
class WaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  size_t size() const noexcept { return size_; }
  SyncWaiter* front() const noexcept { return head_; }

  void PushBack(SyncWaiter* w) noexcept {
    w->prev = tail_;
    w->next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = w;
    } else {
      head_ = w;
    }
    tail_ = w;
    ++size_;
    w->linked = true;
    w->outcome = WaitOutcome::kNone;
  }

  // Remove(front()), for a non-empty list (the front's prev is already
  // null).
  void PopFront() noexcept {
    SyncWaiter* w = head_;
    head_ = w->next;
    if (head_ != nullptr) {
      head_->prev = nullptr;
    } else {
      tail_ = nullptr;
    }
    w->next = nullptr;
    --size_;
    w->linked = false;
  }

  void Remove(SyncWaiter* w) noexcept {
    if (w->prev != nullptr) {
      w->prev->next = w->next;
    } else {
      head_ = w->next;
    }
    if (w->next != nullptr) {
      w->next->prev = w->prev;
    } else {
      tail_ = w->prev;
    }
    w->prev = w->next = nullptr;
    --size_;
    w->linked = false;
  }

 private:
  SyncWaiter* head_ = nullptr;
  SyncWaiter* tail_ = nullptr;
  size_t size_ = 0;
};

// The wakes an operation owes, collected under the primitive's lock.  A
// task of another thread is woken after the lock is released (it does not
// then stall on the lock its waker still holds).  Blocked threads are
// notified at once, under the lock: a thread that returns from its wait may
// destroy the primitive, so nothing may touch its condition variable after
// the unlock (a spurious wake-up, or another notify, can end that thread's
// wait as soon as it is unlinked).
class WakeSet {
 public:
  // `cv`: the primitive's condition variable, for thread waiters (null for
  // a primitive that no thread blocks on).
  explicit WakeSet(SyncCondVar* cv = nullptr) noexcept : cv_(cv) {}
  WakeSet(const WakeSet&) = delete;
  WakeSet& operator=(const WakeSet&) = delete;

  // A WakeSet wakes any waiter (LocalWakes below: only some).
  static constexpr bool kWakesAny = true;
  static constexpr bool CanTake(const SyncWaiter*) noexcept { return true; }
  // Take(list, list.front(), outcome), for a non-empty list.
  [[gnu::always_inline]] void TakeFront(WaitList& list, WaitOutcome outcome) {
    SyncWaiter* w = list.front();
    list.PopFront();
    Add(w, outcome);
  }

  // Unlinks `w` from `list` with `outcome` and wakes it (now, for a task of
  // this thread or a thread; else at Wake()).
  [[gnu::always_inline]] void Take(WaitList& list, SyncWaiter* w,
                                   WaitOutcome outcome) {
    list.Remove(w);
    Add(w, outcome);
  }

  // The same for a waiter kept outside a list (a Oneshot's one receiver).
  // The common case (a task of this thread) is inline and touches nothing
  // of the set; the rest is out of line (executor/sync.cc).  Take and Add
  // are forced inline: left to itself GCC calls them, and the call's
  // prologue and epilogue were ~15% of a same-worker channel message.
  [[gnu::always_inline]] void Add(SyncWaiter* w, WaitOutcome outcome) {
    w->outcome = outcome;
    if (w->thread) [[unlikely]] {
      NotifyThreads();
      return;
    }
    if (RequeueListedLocal(w->task)) [[likely]] return;
    AddRemote(w->task);
  }

  // Call after the lock is released: wakes the tasks of other threads.
  void Wake() noexcept {
    if (remote_.has_value()) [[unlikely]] WakeRemote();
  }

 private:
  // Wakers for tasks of other threads, made under the lock.  Optional, so
  // that a set that wakes only local tasks costs a flag to make and drop.
  struct Remote {
    Waker first;
    std::vector<Waker> rest;  // only Close / NotifyAll and the like
  };
  // One notify_all wakes every blocked thread; each rechecks its node once
  // it gets the lock, after this critical section.
  void NotifyThreads();
  void AddRemote(TaskHeader* t);
  void WakeRemote() noexcept;

  SyncCondVar* cv_;
  bool notified_ = false;
  std::optional<Remote> remote_;
};

// The wakes a biased fast path (executor/channel.h) may do: only of tasks
// of this thread's executor, requeued at once, so it needs no WakeSet, no
// Wake() and no call.  Same interface as WakeSet; the caller asks CanTake
// first and leaves a waiter it refuses to the general path.
class LocalWakes {
 public:
  static constexpr bool kWakesAny = false;
  // Whether `w` is a task of this thread's executor (remembered for the
  // TakeFront that follows).
  [[gnu::always_inline]] bool CanTake(const SyncWaiter* w) noexcept {
    if (w->thread) return false;
    ex_ = LocalOwnerOf(w->task);
    return ex_ != nullptr && !OfferedLater(ex_, w->task);
  }
  // For a non-empty list whose front passed CanTake.
  [[gnu::always_inline]] void TakeFront(WaitList& list,
                                        WaitOutcome outcome) noexcept {
    SyncWaiter* w = list.front();
    list.PopFront();
    w->outcome = outcome;
    RequeueLocal(ex_, w->task);
  }

 private:
  LocalExecutor* ex_ = nullptr;
};

// Misuse guard of the blocking (plain-thread) calls: throws
// TaskMisuseError when the calling thread runs an executor, whose tasks
// the block would stall (and which may be the ones to unblock it).
void CheckBlockingSyncCall(const char* what);

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_WAIT_LIST_H_
