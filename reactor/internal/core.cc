#include "reactor/internal/core.h"

#include <cerrno>

namespace spindle::reactor::reactor_internal {

void Core::ResolveTimeout(Operation* op, int32_t res) noexcept {
  OpState& s = S(op);
  Operation* other = s.link;
  s.link = nullptr;
  S(other).link = nullptr;
  if (s.bits & kBitTimeoutTimer) {
    // The timer of a Timeout pair: when it expired, the target loses.
    if (res == -ETIME) Cancel(other);
  } else {
    // The target finished first: the timer is no longer needed.
    Cancel(other);
  }
}

int Core::RunReady() noexcept {
  OpList batch = ready_.Detach();
  int n = 0;
  while (Operation* op = batch.PopFront()) {
    Complete(op, op->result);
    ++n;
  }
  return n;
}

void Core::StartTimer(Operation* op) noexcept {
  S(op).phase = OpPhase::kTimer;
  timers_.Push(op);
}

void Core::ExpireTimers(uint64_t now_ns) noexcept {
  while (!timers_.empty() && S(timers_.Top()).deadline_ns <= now_ns) {
    Operation* op = timers_.Pop();
    ++timers_fired_;
    // A plain sleep reports 0; the timer of a Timeout pair reports -ETIME
    // as io_uring's IORING_OP_LINK_TIMEOUT does.
    PushReady(op, (S(op).bits & kBitTimeoutTimer) ? -ETIME : 0);
  }
}

void Core::Cancel(Operation* op) noexcept {
  OpState& s = S(op);
  switch (s.phase) {
    case OpPhase::kIdle:
    case OpPhase::kReady:
      return;  // Already finished: the real result stands.
    case OpPhase::kTimer:
      ++cancel_requests_;
      timers_.Remove(op);
      PushReady(op, -ECANCELED);
      return;
    case OpPhase::kQueued:
    case OpPhase::kInflight:
      ++cancel_requests_;
      driver_->Cancel(op);
      return;
  }
}

void Core::CancelAllTimers() noexcept {
  while (!timers_.empty()) {
    Operation* op = timers_.Pop();
    PushReady(op, -ECANCELED);
  }
}

}  // namespace spindle::reactor::reactor_internal
