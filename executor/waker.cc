// executor/waker.cc: Waker, on the task protocol (see the protocol comment
// in local_executor.cc: a Waker holds a task reference, which its Wake()
// hands to the inbox message when it wakes from another thread).

#include "executor/waker.h"

#include "executor/internal/inbox.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"

namespace spindle {

Waker Waker::SuspendCurrent(std::coroutine_handle<> h) noexcept {
  using namespace executor_internal;
  TaskHeader* t = tl_task;
  if (t == nullptr) {
    FatalMisuse(
        "Waker::SuspendCurrent called outside a task running on a Spindle "
        "executor");
  }
  t->resume_point = h;
  t->run_state = RunState::kSuspended;
  t->wait_kind = WaitKind::kWaker;
  return Holding(t);
}

Waker Waker::Holding(executor_internal::TaskHeader* t) noexcept {
  t->refs.fetch_add(1, std::memory_order_relaxed);  // the waker's
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
