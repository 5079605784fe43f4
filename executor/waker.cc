// executor/waker.cc: Waker, on the task protocol (see the protocol comment
// in local_executor.cc: a Waker holds a task reference, which its Wake()
// hands to the inbox message when it wakes from another thread).

#include "executor/waker.h"

#include "executor/internal/inbox.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"

namespace spindle {

namespace executor_internal {
TaskHeader* SuspendOnWaker(std::coroutine_handle<> h,
                           const char* misuse) noexcept {
  TaskHeader* t = tl_task;
  if (t == nullptr) FatalMisuse(misuse);
  t->resume_point = h;
  t->run_state = RunState::kSuspended;
  t->wait_kind = WaitKind::kWaker;  // an abort cancels it at once
  return t;
}
}  // namespace executor_internal

Waker Waker::SuspendCurrent(std::coroutine_handle<> h) noexcept {
  return Holding(executor_internal::SuspendOnWaker(
      h,
      "Waker::SuspendCurrent called outside a task running on a Spindle "
      "executor"));
}

Waker Waker::Holding(executor_internal::TaskHeader* t) noexcept {
  // the waker's reference
  t->state.fetch_add(executor_internal::kStateRefOne,
                     std::memory_order_relaxed);
  Waker w;
  w.task_ = t;
  w.inbox_ = executor_internal::InboxOf(*t->owner);
  return w;
}

void Waker::Wake() noexcept {
  executor_internal::TaskHeader* t = std::exchange(task_, nullptr);
  if (t == nullptr) return;
  executor_internal::WakeByWaker(t);  // consumes the reference
  inbox_.reset();
}

void Waker::Reset() noexcept {
  if (task_ != nullptr) {
    executor_internal::ReleaseRef(std::exchange(task_, nullptr));
  }
  inbox_.reset();
}

}  // namespace spindle
