// executor/internal/wait_list.h: the FIFO list of waiters that every sync
// primitive (executor/sync.h) keeps under its mutex.
//
// A waiter is a suspended task (it holds the task's Waker) or a plain
// thread blocked on the primitive's condition variable.  The protocol, the
// same in every primitive:
//   - A waiter is linked, and later unlinked, only under the primitive's
//     mutex.  Whoever unlinks it (a grant, a close) first sets its outcome,
//     and moves its Waker into a WakeSet, which wakes after the unlock.
//   - A task's awaiter that was suspended and is destroyed without having
//     been resumed (its task was aborted, a losing Select branch, an
//     executor shut down) locks the mutex: still linked, it unlinks itself;
//     already granted, it hands what it was granted (a permit, a message, a
//     notification) on, so nothing is lost.
//   - The outcome is read by the waiter itself only after it was woken
//     (Wake() happens-before the resumption), or under the mutex.

#ifndef SPINDLE_EXECUTOR_INTERNAL_WAIT_LIST_H_
#define SPINDLE_EXECUTOR_INTERNAL_WAIT_LIST_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "executor/waker.h"

namespace spindle::executor_internal {

// What ended a wait.  kNone: still waiting (linked).  kGranted: given
// what it waited for (a permit, a message, a notify-one); kBroadcast: woken
// with everyone (nothing to hand on if it is cancelled); kClosed: the
// primitive was closed.
enum class WaitOutcome : uint8_t { kNone, kGranted, kBroadcast, kClosed };

struct SyncWaiter {
  SyncWaiter* prev = nullptr;
  SyncWaiter* next = nullptr;
  Waker waker;  // a task's; empty for a blocked thread
  bool linked = false;
  bool thread = false;  // a plain thread waiting on the condition variable
  WaitOutcome outcome = WaitOutcome::kNone;
};

// A waiter for n permits (Semaphore, Mutex).
struct PermitWaiter : SyncWaiter {
  size_t n = 0;
};

// Intrusive doubly linked FIFO.  Not thread-safe: the owner's mutex guards
// it and every waiter in it.
class WaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
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
    w->linked = true;
    w->outcome = WaitOutcome::kNone;
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
    w->linked = false;
  }

 private:
  SyncWaiter* head_ = nullptr;
  SyncWaiter* tail_ = nullptr;
};

// The wakes an operation owes, collected under the mutex and delivered
// after it is released (a woken task on another worker does not then
// stall on the mutex its waker still holds).
class WakeSet {
 public:
  // Unlinks `w` from `list` with `outcome` and takes its wake.
  void Take(WaitList& list, SyncWaiter* w, WaitOutcome outcome) {
    list.Remove(w);
    w->outcome = outcome;
    if (w->thread) {
      threads_ = true;
    } else if (!first_.valid()) {
      first_ = std::move(w->waker);
    } else {
      rest_.push_back(std::move(w->waker));  // only Close / NotifyAll
    }
  }

  // Call after the mutex is released.
  void Wake(std::condition_variable& cv) noexcept {
    WakeTasks();
    if (threads_) cv.notify_all();
    threads_ = false;
  }
  // For a primitive that no thread blocks on.
  void WakeTasks() noexcept {
    first_.Wake();
    for (Waker& w : rest_) w.Wake();
    rest_.clear();
  }

 private:
  Waker first_;
  std::vector<Waker> rest_;
  bool threads_ = false;
};

// Misuse guard of the blocking (plain-thread) calls: throws
// TaskMisuseError when the calling thread runs an executor, whose tasks
// the block would stall (and which may be the ones to unblock it).
void CheckBlockingSyncCall(const char* what);

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_WAIT_LIST_H_
