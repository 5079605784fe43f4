// executor/sync.cc: Semaphore, Notify and WaitGroup (see the protocol in
// executor/internal/wait_list.h).

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "executor/internal/task_protocol.h"
#include "executor/internal/wait_list.h"
#include "executor/local_executor.h"
#include "executor/notify.h"
#include "executor/select.h"
#include "executor/semaphore.h"

namespace spindle {
namespace executor_internal {

struct WakerAccess {
  // A Waker for a listed task (see wait_list.h: the lock holder may
  // touch it).
  static Waker For(TaskHeader* t) noexcept { return Waker::Holding(t); }
};

void WakeSet::NotifyThreads() {
  if (notified_) return;
  if (cv_ == nullptr) FatalMisuse("WakeSet without a condition variable");
  cv_->notify_all();
  notified_ = true;
}

// A listed task of another executor: a Waker (a reference and the inbox)
// made under the lock, woken after the unlock.
void WakeSet::AddRemote(TaskHeader* t) {
  Waker k = WakerAccess::For(t);
  if (!remote_.has_value()) {
    remote_.emplace().first = std::move(k);
  } else {
    remote_->rest.push_back(std::move(k));
  }
}

void WakeSet::WakeRemote() noexcept {
  remote_->first.Wake();
  for (Waker& w : remote_->rest) w.Wake();
  remote_.reset();
}

void CheckBlockingSyncCall(const char* what) {
  if (tl_executor != nullptr) {
    throw TaskMisuseError(absl::StrCat(
        "spindle: ", what,
        " on a thread that runs an executor (a worker, or inside a task) "
        "would block its tasks, maybe the one that would unblock it; "
        "co_await the awaitable form from a task instead"));
  }
}

absl::Status TimedOut(std::chrono::nanoseconds d) {
  return absl::DeadlineExceededError(absl::StrCat(
      "timed out after ", absl::FormatDuration(absl::FromChrono(d))));
}

absl::Status NoTimer() {
  return absl::FailedPreconditionError(
      "Timeout needs a timer, and this executor has no reactor (built with "
      "NoReactor())");
}

}  // namespace executor_internal

using executor_internal::SyncWaiter;
using executor_internal::WaitOutcome;
using executor_internal::WakeSet;

// ---- Semaphore ------------------------------------------------------------

bool Semaphore::TryAcquire(size_t n) noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  if (!list_.empty() || permits_ < n) return false;
  permits_ -= n;
  return true;
}

bool Semaphore::Suspend(AcquireAwaiter* a, std::coroutine_handle<> h) noexcept {
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    if (!list_.empty() || permits_ < a->node.n) {
      a->node.task = executor_internal::SuspendForSync(h);
      list_.PushBack(&a->node);
      a->suspended = true;
      return true;
    }
    permits_ -= a->node.n;  // acquired without waiting
  }
  // Charged to the task's budget, as a channel operation that did not wait:
  // a task that keeps finding permits (another worker keeps releasing
  // them) yields at times, holding them (the node unlinked: cancelled
  // before it resumes, Abandon gives them back).
  return executor_internal::YieldMaybeAfterOpHolding(h, a->suspended);
}

void Semaphore::Abandon(AcquireAwaiter* a) noexcept {
  WakeSet wakes(&cv_);
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    if (a->node.linked) {
      // Cancelled while waiting: the waiters behind it may fit now.
      list_.Remove(&a->node);
    } else {
      // Granted, never resumed: the permits go back.
      permits_ += a->node.n;
    }
    GrantLocked(wakes);
  }
  wakes.Wake();
}

void Semaphore::AcquireBlocking(size_t n) {
  executor_internal::CheckBlockingSyncCall("Semaphore::AcquireBlocking");
  std::unique_lock<executor_internal::SyncMutex> lock(mu_);
  if (list_.empty() && permits_ >= n) {
    permits_ -= n;
    return;
  }
  executor_internal::PermitWaiter node;
  node.thread = true;
  node.n = n;
  list_.PushBack(&node);
  cv_.wait(lock, [&] { return !node.linked; });
}

void Semaphore::Release(size_t n) noexcept {
  WakeSet wakes(&cv_);
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    permits_ += n;
    GrantLocked(wakes);
  }
  wakes.Wake();
}

void Semaphore::GrantLocked(WakeSet& wakes) noexcept {
  while (!list_.empty()) {
    SyncWaiter* w = list_.front();
    const size_t need = static_cast<executor_internal::PermitWaiter*>(w)->n;
    if (need > permits_) return;  // FIFO: nobody overtakes the head
    permits_ -= need;
    wakes.Take(list_, w, WaitOutcome::kGranted);
  }
}

size_t Semaphore::available() const noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  return permits_;
}

size_t Semaphore::waiters() const noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  return list_.size();
}

// ---- Notify ---------------------------------------------------------------

bool Notify::Suspend(Awaiter* a, std::coroutine_handle<> h) noexcept {
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    if (!permit_) {
      a->node.task = executor_internal::SuspendForSync(h);
      list_.PushBack(&a->node);
      a->suspended = true;
      return true;
    }
    permit_ = false;  // the stored permit, taken without waiting
  }
  // Charged as Semaphore::Suspend's; a task cancelled while it yields
  // passes the permit on (Abandon, as for a granted one).
  a->node.outcome = WaitOutcome::kGranted;
  return executor_internal::YieldMaybeAfterOpHolding(h, a->suspended);
}

void Notify::Abandon(Awaiter* a) noexcept {
  WakeSet wakes(&cv_);
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    if (a->node.linked) {
      list_.Remove(&a->node);
    } else if (a->node.outcome == WaitOutcome::kGranted) {
      NotifyOneLocked(wakes);  // its notify-one goes on
    }
  }
  wakes.Wake();
}

void Notify::WaitBlocking() {
  executor_internal::CheckBlockingSyncCall("Notify::WaitBlocking");
  std::unique_lock<executor_internal::SyncMutex> lock(mu_);
  if (permit_) {
    permit_ = false;
    return;
  }
  SyncWaiter node;
  node.thread = true;
  list_.PushBack(&node);
  cv_.wait(lock, [&] { return !node.linked; });
}

void Notify::NotifyOneLocked(WakeSet& wakes) noexcept {
  if (list_.empty()) {
    permit_ = true;
    return;
  }
  wakes.Take(list_, list_.front(), WaitOutcome::kGranted);
}

void Notify::NotifyOne() noexcept {
  WakeSet wakes(&cv_);
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    NotifyOneLocked(wakes);
  }
  wakes.Wake();
}

void Notify::NotifyAll() noexcept {
  WakeSet wakes(&cv_);
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    while (!list_.empty()) {
      wakes.Take(list_, list_.front(), WaitOutcome::kBroadcast);
    }
  }
  wakes.Wake();
}

size_t Notify::waiters() const noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  return list_.size();
}

// ---- WaitGroup ------------------------------------------------------------

void WaitGroup::Add(size_t n) noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  count_ += n;
}

void WaitGroup::Done() noexcept {
  WakeSet wakes(&cv_);
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    if (count_ == 0) {
      executor_internal::FatalMisuse(
          "WaitGroup::Done() called more times than Add() counted");
    }
    if (--count_ == 0) {
      while (!list_.empty()) {
        wakes.Take(list_, list_.front(), WaitOutcome::kBroadcast);
      }
    }
  }
  wakes.Wake();
}

bool WaitGroup::Suspend(Awaiter* a, std::coroutine_handle<> h) noexcept {
  {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    if (count_ != 0) {
      a->node.task = executor_internal::SuspendForSync(h);
      list_.PushBack(&a->node);
      a->suspended = true;
      return true;
    }
  }
  // Charged as Semaphore::Suspend's (nothing is held meanwhile).
  return executor_internal::YieldMaybeAfterOp(h);
}

void WaitGroup::Abandon(Awaiter* a) noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  if (a->node.linked) list_.Remove(&a->node);
}

void WaitGroup::WaitBlocking() {
  executor_internal::CheckBlockingSyncCall("WaitGroup::WaitBlocking");
  std::unique_lock<executor_internal::SyncMutex> lock(mu_);
  if (count_ == 0) return;
  SyncWaiter node;
  node.thread = true;
  list_.PushBack(&node);
  cv_.wait(lock, [&] { return !node.linked; });
}

size_t WaitGroup::count() const noexcept {
  std::lock_guard<executor_internal::SyncMutex> lock(mu_);
  return count_;
}

}  // namespace spindle
