// The io_uring backend: submission, parking, cancellation, reaping and
// wake-ups (setup and teardown are in uring_setup.cc).
#include "reactor/internal/uring_driver.h"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/thread_annotations.h"
#include "timing/clock.h"

#include "reactor/internal/uring_compat.h"

namespace spindle::reactor::reactor_internal {

void UringDriver::EnableIfNeeded() noexcept {
  // Relaxed: only this (the owner) thread writes it.
  if (enabled_.load(std::memory_order_relaxed)) [[likely]] return;
  // liburing 2.3 declares io_uring_enable_rings but does not export it.
  syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS,
          nullptr, 0);
  // Pairs with the acquire load in WakeFrom.
  enabled_.store(true, std::memory_order_release);
}

int UringDriver::SubmitNow() noexcept {
  // Relaxed: only the owner (or, before the first Poll, the one thread
  // using the reactor) reads and writes it here.  A disabled ring has no
  // issuer yet: submitting would enable it for this thread, which need not
  // be the one that polls.  The SQEs wait for the first Poll.
  if (!enabled_.load(std::memory_order_relaxed)) return -EBADFD;
  ++stats_.syscalls;
  return io_uring_submit(&ring_);
}

io_uring_sqe* UringDriver::SlowSqe() noexcept {
  ++stats_.sq_flushes;
  SubmitNow();
  return io_uring_get_sqe(&ring_);
}

void UringDriver::ArmWake() noexcept {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return;  // Re-armed at the next reap.
  io_uring_prep_read(sqe, event_fd_, &wake_buf_, sizeof(wake_buf_), 0);
  io_uring_sqe_set_data64(sqe, kWakeTag);
  ++pending_;
  wake_armed_ = true;
}

bool UringDriver::CancelForClose(Operation* close_op) noexcept {
  const int fd = S(close_op).fd;
  // Parked operations on `fd` never reached the kernel: finish them now.
  for (OpList& q : parked_) {
    for (Operation* op = q.front(); op != nullptr;) {
      Operation* next = OpList::After(op);
      if (op != close_op && S(op).fd == fd) {
        q.Remove(op);
        --parked_count_;
        core_->PushReady(op, -ECANCELED);
      }
      op = next;
    }
  }
  if (cancel_any_ && nodrop_) {
    // 5.19+: one request cancels every request on the descriptor's file.
    // It must run before the close (it looks the descriptor up), so the
    // close is hard-linked behind it (a link that holds even when the cancel
    // finds nothing and fails with -ENOENT).  Both SQEs or neither.
    if (io_uring_sq_space_left(&ring_) < 2) {
      ++stats_.sq_flushes;
      SubmitNow();
      if (io_uring_sq_space_left(&ring_) < 2) return false;
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, kIgnoreTag);
    io_uring_sqe_set_flags(sqe, IOSQE_IO_HARDLINK);
    ++pending_;
    return true;
  }
  // Before 5.19: cancel our own in-flight requests on `fd` by user_data.
  // Their order against the close does not matter: a request holds its own
  // reference to the file, and the peer sees EOF when the last one drops.
  for (Operation* op = inflight_.front(); op != nullptr;
       op = InflightList::After(op)) {
    if (S(op).fd == fd) Cancel(op);
  }
  return true;
}

void UringDriver::Park(Operation* op) noexcept {
  S(op).phase = OpPhase::kQueued;
  parked_[static_cast<int>(op->priority) % 3].PushBack(op);
  ++parked_count_;
  ++stats_.sq_full_waits;
}

void UringDriver::Start(Operation* op) noexcept {
  StartInline(op, S(op).code);
}

bool UringDriver::IssueCancel(Operation* op) noexcept {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return false;
  io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(op), 0);
  io_uring_sqe_set_data64(sqe, kIgnoreTag);
  ++pending_;
  return true;
}

void UringDriver::Cancel(Operation* op) noexcept {
  OpState& s = S(op);
  if (s.phase == OpPhase::kQueued) {
    parked_[static_cast<int>(op->priority) % 3].Remove(op);
    --parked_count_;
    core_->PushReady(op, -ECANCELED);
    return;
  }
  if (s.bits & kBitCancelRequested) return;
  s.bits |= kBitCancelRequested;
  if (HaveCancelSlot() && cancel_queue_.empty() && IssueCancel(op)) return;
  s.bits |= kBitCancelQueued;
  cancel_queue_.PushBack(op);
}

void UringDriver::Resume() noexcept {
  // The wake read first: its slot is reserved, never a parked operation's.
  if (!wake_armed_ && !core_->shutting_down) ArmWake();
  while (!cancel_queue_.empty() && HaveCancelSlot()) {
    Operation* op = cancel_queue_.front();
    if (!IssueCancel(op)) return;
    cancel_queue_.Remove(op);
    S(op).bits &= static_cast<uint8_t>(~kBitCancelQueued);
  }
  for (OpList& q : parked_) {
    while (!q.empty() && HaveSlot()) {
      Operation* op = q.front();
      if (!Issue(op, S(op).code)) return;  // Issue leaves the links alone.
      q.Remove(op);
      --parked_count_;
    }
  }
}

int UringDriver::Reap() noexcept {
  constexpr unsigned kBatch = 64;
  io_uring_cqe* cqes[kBatch];
  struct Item {
    uint64_t user_data;
    int32_t res;
  } items[kBatch];
  int n = 0;
  // Bounded, so that a storm of MSG_RING arrivals cannot keep one Poll here.
  uint64_t budget = 2 * static_cast<uint64_t>(cq_entries_) + kBatch;
  while (budget > 0) {
    // When the CQ is empty and the kernel flags an overflow backlog
    // (IORING_SQ_CQ_OVERFLOW) or pending task work, liburing's peek enters
    // the kernel to flush it: so keep peeking until it returns nothing.
    const unsigned got = io_uring_peek_batch_cqe(&ring_, cqes, kBatch);
    if (got == 0) break;
    budget -= std::min<uint64_t>(budget, got);
    for (unsigned i = 0; i < got; ++i) {
      items[i] = {cqes[i]->user_data, cqes[i]->res};
    }
    // Release the CQ slots before any callback can start new operations.
    io_uring_cq_advance(&ring_, got);
    for (unsigned i = 0; i < got; ++i) {
      n += Dispatch(items[i].user_data, items[i].res);
    }
  }
  return n;
}

void UringDriver::RtIoprioDenied() noexcept {
  if (rt_ioprio_denied_) return;
  rt_ioprio_denied_ = true;
  ++stats_.ioprio_fallbacks;
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true, std::memory_order_relaxed)) {
    std::fprintf(stderr,
                 "spindle reactor: IoPriority::kHigh (the real-time I/O "
                 "class) needs CAP_SYS_NICE, which this process lacks: "
                 "high-priority reads and writes run at normal priority "
                 "(logged once)\n");
  }
}

inline int UringDriver::Dispatch(uint64_t ud, int32_t res) noexcept {
  if (ud == kMsgTag) {  // Sent by another ring: not one of our requests.
    ++stats_.wakes_received;
    return 0;
  }
  if ((ud & kMsgSendBit) != 0 && ud > kLastTag) [[unlikely]] {
    // A WakeFrom whose MSG_RING failed (only failures post a CQE:
    // CQE_SKIP_SUCCESS): wake the target through its eventfd instead.
    ++stats_.wake_fallbacks;
    WakeIfAlive(reinterpret_cast<const UringDriver*>(ud & ~kMsgSendBit));
    return 0;
  }
  --pending_;
  if (ud == kWakeTag) {
    wake_armed_ = false;
    if (res > 0) ++stats_.wakes_received;
    // At once, whatever the slot count: the wake read's slot is its own.
    if (!core_->shutting_down) ArmWake();
    return 0;
  }
  if (ud == kIgnoreTag) return 0;
  Operation* op = reinterpret_cast<Operation*>(ud);
  OpState& s = S(op);
  inflight_.Remove(op);
  if (s.bits & kBitCancelQueued) cancel_queue_.Remove(op);
  if (res == -EPERM && (s.bits & kBitRtIoprio) &&
      !(s.bits & kBitCancelRequested)) [[unlikely]] {
    // The real-time I/O class needs CAP_SYS_NICE (or CAP_SYS_ADMIN); the
    // kernel refuses the whole read or write without it.  Run it again at
    // normal priority, and every later kHigh operation too.
    RtIoprioDenied();
    if (!Issue(op, s.code)) Park(op);
    return 0;
  }
  core_->Complete(op, res);
  return 1;
}

int UringDriver::Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept {
  EnableIfNeeded();
  uint64_t wait = timeout_ns;
  if (deadline_ns != UINT64_MAX && wait != 0) {
    const uint64_t now = timing::MonotonicClock::Now();
    wait = std::min(wait, deadline_ns > now ? deadline_ns - now : 0);
  }
  ++stats_.syscalls;
  int ret;
  if (wait == 0) {
    ret = io_uring_submit_and_get_events(&ring_);
  } else if (wait == UINT64_MAX) {
    ret = io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts;
    ts.tv_sec = static_cast<int64_t>(wait / 1'000'000'000u);
    ts.tv_nsec = static_cast<long long>(wait % 1'000'000'000u);
    io_uring_cqe* cqe = nullptr;
    ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  if (ret == -EEXIST) [[unlikely]] {
    // SINGLE_ISSUER refuses this thread.  Reactor::Poll checks the owner
    // first, so this is a broken invariant; ignoring it would spin.
    ABSL_RAW_LOG(FATAL,
                 "spindle reactor: io_uring_enter failed with EEXIST: this "
                 "thread is not the ring's single issuer");
  }
  int n = Reap();
  if (ret == -EBUSY) {
    // 5.x with NODROP: the overflow backlog did not fit the CQ, so nothing
    // was submitted.  Reap made room; submit again without waiting (there
    // were completions, so this Poll has work to report).
    ++stats_.syscalls;
    io_uring_submit(&ring_);
    n += Reap();
  }
  Resume();
  return n;
}

void UringDriver::Wake() noexcept {
  const uint64_t one = 1;
  // Can only fail if the counter would overflow (2^64 - 2 pending wakes).
  [[maybe_unused]] ssize_t r = write(event_fd_, &one, sizeof(one));
}

bool UringDriver::WakeFrom(UringDriver* source) noexcept {
  // The acquire pairs with the release store in EnableIfNeeded (the target
  // is enabled on its own thread: MSG_RING to a disabled ring fails with
  // -EBADFD).  The source is ours (relaxed: this thread enabled it, or
  // nobody has, and then it cannot submit yet).
  if (!source->has_msg_ring_ ||
      !source->enabled_.load(std::memory_order_relaxed) ||
      !enabled_.load(std::memory_order_acquire)) {
    return false;
  }
  io_uring_sqe* sqe = source->GetSqe();
  if (sqe == nullptr) return false;
  io_uring_prep_msg_ring(sqe, source->msg_ring_fd_invalid_ ? -1 : ring_.ring_fd,
                         0, kMsgTag, 0);
  // No CQE on the source unless the send fails (then Reap falls back).
  io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(this) | kMsgSendBit);
  source->SubmitNow();
  return true;
}

void UringDriver::CancelAll() noexcept {
  for (OpList& q : parked_) {
    while (Operation* op = q.PopFront()) core_->PushReady(op, -ECANCELED);
  }
  parked_count_ = 0;
  if (cancel_any_ && nodrop_) {
    // One request cancels everything in the kernel, the wake read included;
    // without a cap its CQE always has room (NODROP).
    if (io_uring_sqe* sqe = GetSqe()) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, kIgnoreTag);
      ++pending_;
      return;
    }
  }
  // Before 5.19 (no CANCEL_ANY), or capped: one cancel per operation, queued
  // for a slot where needed.  The wake read stays; the ring's exit ends it.
  for (Operation* op = inflight_.front(); op != nullptr;
       op = InflightList::After(op)) {
    Cancel(op);
  }
}

void UringDriver::Abandon() noexcept {
  // 1. What the kernel already completed carries real results.  Reading the
  //    CQ is plain memory; io_uring_peek_batch_cqe could enter the kernel
  //    (to flush), which this thread may not, so walk it by hand.
  constexpr unsigned kBatch = 64;
  struct Item {
    uint64_t user_data;
    int32_t res;
  } items[kBatch];
  for (;;) {
    unsigned got = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      items[got++] = {cqe->user_data, cqe->res};
      if (got == kBatch) break;
    }
    if (got == 0) break;
    io_uring_cq_advance(&ring_, got);
    for (unsigned i = 0; i < got; ++i) {
      Dispatch(items[i].user_data, items[i].res);
    }
  }
  // 2. Close the ring: as it exits the kernel cancels every request left
  //    (io_ring_exit_work), without this thread submitting anything.
  io_uring_queue_exit(&ring_);
  ring_ready_ = false;
  // 3. Everything else is cancelled as far as the caller can tell.
  for (OpList& q : parked_) {
    while (Operation* op = q.PopFront()) core_->PushReady(op, -ECANCELED);
  }
  parked_count_ = 0;
  cancel_queue_.Detach();
  while (Operation* op = inflight_.PopFront()) {
    S(op).bits &= static_cast<uint8_t>(~kBitCancelQueued);
    core_->PushReady(op, -ECANCELED);
  }
  pending_ = 0;
  wake_armed_ = false;
}

DriverStats UringDriver::Stats() const {
  DriverStats s = stats_;
  s.queued = parked();
  return s;
}

}  // namespace spindle::reactor::reactor_internal
