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

#include "timing/clock.h"

// liburing 2.3's headers know these; older ones may not.  Values are the
// kernel ABI (include/uapi/linux/io_uring.h).
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)
#endif
#ifndef IORING_REGISTER_ENABLE_RINGS
#define IORING_REGISTER_ENABLE_RINGS 12
#endif

namespace spindle::reactor::reactor_internal {

std::atomic<int> g_forced_setup_errno{0};
std::atomic<int> g_setup_attempts{0};

namespace {

// IORING_ASYNC_CANCEL_ANY arrived in 5.19; there is no feature bit for it.
bool KernelAtLeast(int major, int minor) {
  utsname u;
  if (uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

std::string FlagNames(uint32_t f) {
  std::string s;
  auto add = [&](uint32_t bit, const char* name) {
    if (f & bit) {
      if (!s.empty()) s += "|";
      s += name;
    }
  };
  add(IORING_SETUP_SQPOLL, "SQPOLL");
  add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
  add(IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
  add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
  add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
  add(IORING_SETUP_R_DISABLED, "R_DISABLED");
  return s.empty() ? "none" : s;
}

}  // namespace

std::unique_ptr<UringDriver> UringDriver::Create(Core* core, uint32_t entries,
                                                 bool sqpoll, int* err,
                                                 std::string* what) {
  g_setup_attempts.fetch_add(1, std::memory_order_relaxed);
  const int forced = g_forced_setup_errno.load(std::memory_order_relaxed);
  if (forced != 0) {
    *err = forced;
    *what = "io_uring_queue_init_params (forced by test hook)";
    return nullptr;
  }
  std::unique_ptr<UringDriver> d(new UringDriver(core));
  // Most capable first; each later set is what an older kernel accepts.
  // DEFER_TASKRUN needs SINGLE_ISSUER (6.1); COOP_TASKRUN is 5.19.
  const uint32_t kPlain[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
          IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  const uint32_t kSqpoll[] = {IORING_SETUP_SQPOLL};
  const uint32_t* sets = sqpoll ? kSqpoll : kPlain;
  const int nsets = sqpoll ? 1 : 3;
  int ret = -EINVAL;
  io_uring_params p;
  for (int i = 0; i < nsets; ++i) {
    std::memset(&p, 0, sizeof(p));
    p.flags = sets[i];
    if (sqpoll) p.sq_thread_idle = 100;  // ms before the SQ thread sleeps.
    ret = io_uring_queue_init_params(entries, &d->ring_, &p);
    if (ret == 0 || ret != -EINVAL) break;
  }
  if (ret < 0) {
    *err = -ret;
    *what = "io_uring_queue_init_params";
    return nullptr;
  }
  d->ring_ready_ = true;
  d->setup_flags_ = p.flags;
  d->enabled_.store((p.flags & IORING_SETUP_R_DISABLED) == 0,
                    std::memory_order_relaxed);  // Not yet shared.
  d->sqpoll_ = sqpoll;
  d->slot_limit_ = p.cq_entries;
  d->cancel_any_ = KernelAtLeast(5, 19);
  if (io_uring_probe* probe = io_uring_get_probe_ring(&d->ring_)) {
    d->has_msg_ring_ = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    io_uring_free_probe(probe);
  }
  // A blocking eventfd: io_uring returns -EAGAIN for O_NONBLOCK files
  // instead of waiting for them.
  d->event_fd_ = eventfd(0, EFD_CLOEXEC);
  if (d->event_fd_ < 0) {
    *err = errno;
    *what = "eventfd";
    return nullptr;
  }
  d->stats_.ring_entries = p.sq_entries;
  d->stats_.cq_entries = p.cq_entries;
  d->stats_.setup_flags = p.flags;
  d->stats_.features = "setup=" + FlagNames(p.flags) +
                       (d->cancel_any_ ? " cancel_any" : "") +
                       (d->has_msg_ring_ ? " msg_ring" : "") +
                       ((p.features & IORING_FEAT_EXT_ARG) ? " ext_arg" : "");
  d->ArmWake();
  return d;
}

UringDriver::~UringDriver() {
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (event_fd_ >= 0) close(event_fd_);
}

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
  EnableIfNeeded();
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

inline bool UringDriver::Issue(Operation* op) noexcept {
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return false;
  OpState& s = S(op);
  // Reactor clamped byte counts to kMaxRwCount, so they fit the SQE's 32-bit
  // length; iovec counts are ints.
  const unsigned len = static_cast<unsigned>(s.len);
  const uint64_t off = static_cast<uint64_t>(s.offset);
  switch (s.code) {
    case OpCode::kNop:
      io_uring_prep_nop(sqe);
      break;
    case OpCode::kRead:
      io_uring_prep_read(sqe, s.fd, s.addr, len, off);
      sqe->ioprio = IoprioFor(op->priority);
      break;
    case OpCode::kWrite:
      io_uring_prep_write(sqe, s.fd, s.addr, len, off);
      sqe->ioprio = IoprioFor(op->priority);
      break;
    case OpCode::kReadv:
      io_uring_prep_readv(sqe, s.fd, static_cast<const iovec*>(s.addr), len,
                          off);
      sqe->ioprio = IoprioFor(op->priority);
      break;
    case OpCode::kWritev:
      io_uring_prep_writev(sqe, s.fd, static_cast<const iovec*>(s.addr), len,
                           off);
      sqe->ioprio = IoprioFor(op->priority);
      break;
    case OpCode::kAccept:
      io_uring_prep_accept(sqe, s.fd, static_cast<sockaddr*>(s.addr),
                           static_cast<socklen_t*>(s.addr2), 0);
      break;
    case OpCode::kConnect:
      io_uring_prep_connect(sqe, s.fd, static_cast<const sockaddr*>(s.addr),
                            static_cast<socklen_t>(s.len));
      break;
    case OpCode::kRecv:
      io_uring_prep_recv(sqe, s.fd, s.addr, len, s.flags);
      break;
    case OpCode::kSend:
      io_uring_prep_send(sqe, s.fd, s.addr, len, s.flags);
      break;
    case OpCode::kClose:
      io_uring_prep_close(sqe, s.fd);
      break;
    case OpCode::kFsync:
      io_uring_prep_fsync(sqe, s.fd, 0);
      break;
    case OpCode::kPollIn:
      io_uring_prep_poll_add(sqe, s.fd, POLLIN);
      break;
    case OpCode::kPollOut:
      io_uring_prep_poll_add(sqe, s.fd, POLLOUT);
      break;
    case OpCode::kNone:
    case OpCode::kTimer:
      io_uring_prep_nop(sqe);  // Unreachable: Reactor never sends these.
      break;
  }
  io_uring_sqe_set_data(sqe, op);
  s.phase = OpPhase::kInflight;
  ++pending_;
  ++stats_.submitted;
  return true;
}

void UringDriver::Park(Operation* op) noexcept {
  S(op).phase = OpPhase::kQueued;
  parked_[static_cast<int>(op->priority) % 3].PushBack(op);
  ++parked_count_;
  ++stats_.sq_full_waits;
}

void UringDriver::Start(Operation* op) noexcept {
  // Parked operations go first so that priority order holds.
  if (HaveSlot() && parked() == 0 && Issue(op)) [[likely]] return;
  Park(op);
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
  if (HaveSlot() && cancel_queue_.empty() && IssueCancel(op)) return;
  s.bits |= kBitCancelQueued;
  cancel_queue_.PushBack(op);
}

void UringDriver::Resume() noexcept {
  while (!cancel_queue_.empty() && HaveSlot()) {
    Operation* op = cancel_queue_.front();
    if (!IssueCancel(op)) return;
    cancel_queue_.Remove(op);
    S(op).bits &= static_cast<uint8_t>(~kBitCancelQueued);
  }
  for (OpList& q : parked_) {
    while (!q.empty() && HaveSlot()) {
      Operation* op = q.front();
      if (!Issue(op)) return;  // Issue leaves the links alone.
      q.Remove(op);
      --parked_count_;
    }
  }
  if (!wake_armed_ && !core_->shutting_down && HaveSlot()) ArmWake();
}

int UringDriver::Reap() noexcept {
  constexpr unsigned kBatch = 64;
  io_uring_cqe* cqes[kBatch];
  struct Item {
    uint64_t user_data;
    int32_t res;
  } items[kBatch];
  int n = 0;
  for (;;) {
    const unsigned got = io_uring_peek_batch_cqe(&ring_, cqes, kBatch);
    if (got == 0) break;
    for (unsigned i = 0; i < got; ++i) {
      items[i] = {cqes[i]->user_data, cqes[i]->res};
    }
    // Release the CQ slots before any callback can start new operations.
    io_uring_cq_advance(&ring_, got);
    for (unsigned i = 0; i < got; ++i) {
      const uint64_t ud = items[i].user_data;
      if (ud == kMsgTag) {  // Sent by another ring: not one of our slots.
        ++stats_.wakes_received;
        continue;
      }
      --pending_;
      if (ud == kWakeTag) {
        wake_armed_ = false;
        if (items[i].res > 0) ++stats_.wakes_received;
        if (!core_->shutting_down && HaveSlot()) ArmWake();
        continue;
      }
      if (ud == kIgnoreTag) continue;
      Operation* op = reinterpret_cast<Operation*>(ud);
      OpState& s = S(op);
      if (s.bits & kBitCancelQueued) cancel_queue_.Remove(op);
      core_->Complete(op, items[i].res);
      ++n;
    }
    if (got < kBatch) break;
  }
  return n;
}

int UringDriver::Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept {
  EnableIfNeeded();
  uint64_t wait = timeout_ns;
  if (deadline_ns != UINT64_MAX && wait != 0) {
    const uint64_t now = timing::MonotonicClock::Now();
    wait = std::min(wait, deadline_ns > now ? deadline_ns - now : 0);
  }
  ++stats_.syscalls;
  if (wait == 0) {
    io_uring_submit_and_get_events(&ring_);
  } else if (wait == UINT64_MAX) {
    io_uring_submit_and_wait(&ring_, 1);
  } else {
    __kernel_timespec ts;
    ts.tv_sec = static_cast<int64_t>(wait / 1'000'000'000u);
    ts.tv_nsec = static_cast<long long>(wait % 1'000'000'000u);
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  const int n = Reap();
  Resume();
  return n;
}

void UringDriver::Wake() noexcept {
  const uint64_t one = 1;
  // Can only fail if the counter would overflow (2^64 - 2 pending wakes).
  [[maybe_unused]] ssize_t r = write(event_fd_, &one, sizeof(one));
}

bool UringDriver::WakeFrom(UringDriver* source) noexcept {
  // Pairs with the release store in EnableIfNeeded.
  if (!source->has_msg_ring_ || !enabled_.load(std::memory_order_acquire)) {
    return false;
  }
  io_uring_sqe* sqe = source->GetSqe();
  if (sqe == nullptr) return false;
  io_uring_prep_msg_ring(sqe, ring_.ring_fd, 0, kMsgTag, 0);
  io_uring_sqe_set_data64(sqe, kIgnoreTag);
  ++source->pending_;
  source->SubmitNow();
  return true;
}

void UringDriver::CancelAll() noexcept {
  for (OpList& q : parked_) {
    while (Operation* op = q.PopFront()) core_->PushReady(op, -ECANCELED);
  }
  parked_count_ = 0;
  if (cancel_any_) {
    // One request cancels everything in the kernel, the wake read included.
    // It may exceed the slot limit by one; the CQ keeps overflowed entries
    // (IORING_FEAT_NODROP, 5.5+).
    if (io_uring_sqe* sqe = GetSqe()) {
      io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
      io_uring_sqe_set_data64(sqe, kIgnoreTag);
      ++pending_;
    }
  }
  // TODO(reactor): kernels before 5.19 lack CANCEL_ANY; there the shutdown
  // waits (bounded) for in-flight operations to finish on their own.
}

DriverStats UringDriver::Stats() const {
  DriverStats s = stats_;
  s.queued = parked();
  return s;
}

}  // namespace spindle::reactor::reactor_internal
