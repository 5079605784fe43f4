// reactor/internal/uring_driver.h: the io_uring backend (liburing).
//
// Protocol (all on the reactor's thread except Wake):
//   - Start prepares one SQE per operation (user_data = the Operation*) and
//     leaves it in the SQ; Wait submits the whole batch with one
//     io_uring_enter.  When io_uring_get_sqe finds the SQ full, the SQ is
//     flushed first (counted as sq_flushes).  Every operation in the kernel
//     is on `inflight_` (for Close, teardown and per-operation cancels).
//   - Slots.  With IORING_FEAT_NODROP (5.5+) the kernel keeps CQEs that do
//     not fit the CQ on an overflow list instead of dropping them, so there
//     is no cap: any number of operations may wait on idle peers while new
//     ones still run.  The CQ is made large (IORING_SETUP_CQSIZE, at least
//     kMinCqEntries) so overflow stays rare; Reap keeps peeking until the CQ
//     is empty, and liburing's peek flushes the overflow list then.  5.x
//     kernels fail a submit with -EBUSY while the backlog cannot be flushed
//     (the CQ is still full; 6.18 does not, it just keeps the backlog):
//     Wait then reaps and resubmits.  Operations are parked (resumption queue,
//     highest IoPriority first) only when no SQE can be had.
//     Without NODROP (before 5.5) an overflowing CQE would be lost, so the
//     driver keeps at most cq_entries requests in the kernel: one slot is
//     reserved for the wake read, kCancelReserve more for cancel requests
//     (so a cancel never waits for a slot that idle operations hold, only
//     for other cancels, which complete at once), and operations beyond the
//     rest are parked.
//   - Cancel: a parked operation leaves its queue and completes with
//     -ECANCELED; an in-flight one gets an IORING_OP_ASYNC_CANCEL (its CQE is
//     ignored) and completes when the kernel reports it, with -ECANCELED or
//     its real result if it won the race.  No slot (capped mode only): the
//     request waits in the cancel queue (the operation's next/prev links are
//     free while it is in flight), which Resume serves before parked work.
//   - Close(fd) first cancels every operation on `fd`, as epoll does, so
//     that none waits forever and the peer sees EOF: an ASYNC_CANCEL with
//     IORING_ASYNC_CANCEL_FD | ALL (5.19+) hard-linked before the close SQE;
//     before 5.19 (or capped), one cancel per operation on `inflight_` with
//     that descriptor.  Parked operations on it complete with -ECANCELED.
//   - Wake: an IORING_OP_READ on an eventfd is always armed (user_data
//     kWakeTag); Wake() writes the eventfd from any thread and the read's
//     completion makes a blocked io_uring_enter return.  It is re-armed as
//     soon as its completion is reaped, before any parked operation can
//     take a slot, and never counts against the operations' slots.
//     MSG_RING cannot be used for a plain Wake(): it is an SQE that must be
//     submitted on a *source* ring, and a foreign thread has none it may
//     submit on (SINGLE_ISSUER rings reject other threads).
//   - WakeFrom(source) sends IORING_OP_MSG_RING (5.18+) on the source ring
//     with IOSQE_CQE_SKIP_SUCCESS (5.17+): a successful send posts nothing
//     on the source, so it holds no slot there.  A failed send posts a CQE
//     whose user_data is the target driver with kMsgSendBit set; the
//     source's Reap then wakes the target through its eventfd instead, if
//     the target still exists (a process-wide set of live drivers, locked
//     only on create, destroy and this fallback).  The
//     arrival on the target (kMsgTag) is not a request of the target's: it
//     may overflow the target's CQ, which NODROP makes safe; without NODROP
//     WakeFrom is not used (MSG_RING needs 5.18 anyway).
//   - Setup: IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN | R_DISABLED when the
//     kernel takes them (6.1+), else COOP_TASKRUN | TASKRUN_FLAG (5.19+),
//     else none; each with CQSIZE first.  With R_DISABLED the ring is enabled
//     by the first Poll (Wait or Claim), whose thread becomes its single
//     issuer: the reactor's owner.  Until then nothing is submitted (a full
//     SQ parks operations instead of flushing), so a thread that merely
//     starts operations before the first Poll does not capture the ring.
//     A Wait refused with EEXIST (not the single issuer) aborts: the Reactor
//     checks the owner first, so that is a bug, never a spin.
//   - CancelAll (shutdown on the owner): one ASYNC_CANCEL with
//     IORING_ASYNC_CANCEL_ANY (5.19+, NODROP).  When no SQE is free for it
//     (SQPOLL: the kernel thread has not consumed the SQ yet, and
//     io_uring_submit does not wait for it), or before 5.19, or capped: one
//     cancel per operation on `inflight_`, queued where needed, so the
//     destructor's next submit always sends them.
//   - Abandon (destructor off the owner thread): CQEs already in the CQ are
//     dispatched (reading the CQ needs no system call), the ring is closed
//     (io_uring_queue_exit; the kernel cancels the remaining requests as the
//     ring exits) and everything else completes with -ECANCELED.

#ifndef SPINDLE_REACTOR_INTERNAL_URING_DRIVER_H_
#define SPINDLE_REACTOR_INTERNAL_URING_DRIVER_H_

#include <liburing.h>
#include <poll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "reactor/internal/core.h"
#include "reactor/internal/operation.h"

namespace spindle::reactor::reactor_internal {

// SQE ioprio values: IOPRIO_PRIO_VALUE(class, level) = class << 13 | level.
inline constexpr uint16_t kIoprioClassShift = 13;
inline constexpr uint16_t kIoprioRealTime = (1u << kIoprioClassShift) | 0u;
inline constexpr uint16_t kIoprioIdle = (3u << kIoprioClassShift) | 0u;
constexpr uint16_t IoprioFor(IoPriority p) noexcept {
  return p == IoPriority::kHigh  ? kIoprioRealTime
         : p == IoPriority::kLow ? kIoprioIdle
                                 : uint16_t{0};
}

// Test hook state (reactor.h: SetIoUringSetupFailureForTesting).
extern std::atomic<int> g_forced_setup_errno;
extern std::atomic<int> g_setup_attempts;

// Test-only quirks, read when a ring is set up: they make this kernel look
// like an older one, or make a kernel call fail, so that the fallbacks run.
inline constexpr uint32_t kQuirkNoNoDrop = 1;     // No NODROP / CQSIZE (<5.5).
inline constexpr uint32_t kQuirkNoCancelFd = 2;   // No CANCEL_FD/ANY (<5.19).
inline constexpr uint32_t kQuirkFailMsgRing = 4;  // WakeFrom sends to fd -1.
void SetUringQuirksForTesting(uint32_t quirks);

// The smallest CQ the driver asks for (IORING_SETUP_CQSIZE): 64 KiB of CQEs.
inline constexpr uint32_t kMinCqEntries = 4096;

class UringDriver final : public Driver {
 public:
  // Sets up a ring.  On failure returns null and stores the positive errno
  // in *err and the call that failed in *what.
  static std::unique_ptr<UringDriver> Create(Core* core, uint32_t entries,
                                             UringSetup setup,
                                             uint32_t sqpoll_idle_ms,
                                             int* err, std::string* what);
  ~UringDriver() override;

  void Start(Operation* op) noexcept override;
  // Start's body, inline for the Reactor's operation calls: each passes its
  // opcode (S(op).code) as a constant, so Issue's switch folds away.
  [[gnu::always_inline]] void StartInline(Operation* op,
                                          OpCode code) noexcept {
    // Parked operations go first so that priority order holds.
    if (HaveSlot() && parked() == 0 && Issue(op, code)) [[likely]] return;
    Park(op);
  }
  void Cancel(Operation* op) noexcept override;
  int Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept override;
  void Wake() noexcept override;
  void CancelAll() noexcept override;
  void Abandon() noexcept override;
  bool Quiescent() const noexcept override {
    return pending_ == (wake_armed_ ? 1u : 0u);
  }
  bool capped() const noexcept { return op_limit_ != UINT32_MAX; }
  bool Idle() const noexcept override {
    return io_uring_sq_ready(&ring_) == 0 && io_uring_cq_ready(&ring_) == 0;
  }
  // Loads only: unsubmitted entries, posted completions, or (TASKRUN_FLAG)
  // completion work the kernel holds for this thread's next enter.
  bool HasPendingWork() const noexcept override {
    return io_uring_sq_ready(&ring_) != 0 || io_uring_cq_ready(&ring_) != 0 ||
           (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0;
  }
  bool PeeksCompletions() const noexcept override {
    return (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) == 0 ||
           (setup_flags_ & IORING_SETUP_TASKRUN_FLAG) != 0;
  }
  DriverStats Stats() const override;

  // Posts a wake-up CQE on this ring from `source`'s thread through
  // IORING_OP_MSG_RING.  Returns false when `source` cannot send one.
  bool WakeFrom(UringDriver* source) noexcept;
  int ring_fd() const noexcept { return ring_.ring_fd; }
  bool supports_msg_ring() const noexcept { return has_msg_ring_; }

 private:
  static constexpr uint64_t kWakeTag = 1;    // The eventfd read.
  static constexpr uint64_t kIgnoreTag = 2;  // Cancel request CQEs.
  static constexpr uint64_t kMsgTag = 3;     // MSG_RING arrival (a wake).
  static constexpr uint64_t kLastTag = 3;
  // Set in the user_data of a MSG_RING send (the target UringDriver*, which
  // is at least 8-byte aligned, so the bit is free): only a failed send
  // posts a CQE, and it carries the target to wake instead.
  static constexpr uint64_t kMsgSendBit = 1;
  // Capped mode: slots kept for cancel requests (at most a quarter).
  static constexpr uint32_t kCancelReserve = 64;

  explicit UringDriver(Core* core) : core_(core) {}

  // Requests in the kernel other than the wake read.
  uint32_t used() const noexcept { return pending_ - (wake_armed_ ? 1 : 0); }
  bool HaveSlot() const noexcept { return used() < op_limit_; }
  bool HaveCancelSlot() const noexcept { return used() < cancel_limit_; }
  // Fast path inline; SlowSqe flushes a full SQ.
  [[gnu::always_inline]] io_uring_sqe* GetSqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    return sqe != nullptr ? sqe : SlowSqe();
  }
  io_uring_sqe* SlowSqe() noexcept;
  int SubmitNow() noexcept;
  void EnableIfNeeded() noexcept;
  void Claim() noexcept override { EnableIfNeeded(); }
  // `code` is S(op).code.
  [[gnu::always_inline]] bool Issue(Operation* op, OpCode code) noexcept;
  // The SQE ioprio for `op` (records that it went out as real-time class).
  uint16_t Ioprio(Operation* op) noexcept {
    if (op->priority == IoPriority::kHigh) [[unlikely]] {
      if (rt_ioprio_denied_) {
        S(op).bits &= static_cast<uint8_t>(~kBitRtIoprio);
        return 0;
      }
      S(op).bits |= kBitRtIoprio;
    }
    return IoprioFor(op->priority);
  }
  void RtIoprioDenied() noexcept;
  bool IssueCancel(Operation* op) noexcept;
  // Before a Close of `close_op`'s descriptor: cancels every operation on it
  // (parked ones at once).  False when there is no SQE for it now.
  bool CancelForClose(Operation* close_op) noexcept;
  void ArmWake() noexcept;
  void Park(Operation* op) noexcept;
  void Resume() noexcept;
  int Reap() noexcept;
  // A failed WakeFrom send's fallback: Wake() on `target` unless it has
  // been destroyed since (the CQE outlives nothing but the address).
  static void WakeIfAlive(const UringDriver* target) noexcept;
  // Handles one CQE; returns 1 when it ran an operation's callback.
  [[gnu::always_inline]] inline int Dispatch(uint64_t user_data,
                                             int32_t res) noexcept;
  size_t parked() const noexcept { return parked_count_; }

  Core* core_;
  io_uring ring_{};
  bool ring_ready_ = false;  // io_uring_queue_init succeeded.
  // False while R_DISABLED is in effect.  Written (release) by the owner
  // thread when it enables the ring; read (acquire) by WakeFrom on another
  // reactor's thread, because MSG_RING to a disabled ring fails (-EBADFD).
  std::atomic<bool> enabled_{true};
  bool sqpoll_ = false;
  bool cancel_any_ = false;  // IORING_ASYNC_CANCEL_ANY (5.19+).
  bool has_msg_ring_ = false;
  bool rt_ioprio_denied_ = false;  // kHigh got -EPERM once: send it normal
  bool wake_armed_ = false;
  int event_fd_ = -1;
  uint64_t wake_buf_ = 0;
  bool nodrop_ = false;               // IORING_FEAT_NODROP (5.5+).
  bool msg_ring_fd_invalid_ = false;  // kQuirkFailMsgRing.
  // Capped mode: at most this many operations / operations plus cancels in
  // the kernel (the wake read's slot comes on top).  UINT32_MAX: no cap.
  uint32_t op_limit_ = UINT32_MAX;
  uint32_t cancel_limit_ = UINT32_MAX;
  uint32_t cq_entries_ = 0;
  // Requests that will post a CQE (SQEs prepared or submitted, CQE not yet
  // reaped): operations, cancels, the wake read.  Not MSG_RING sends.
  uint32_t pending_ = 0;
  uint32_t setup_flags_ = 0;
  OpList parked_[3];
  size_t parked_count_ = 0;  // Sum of the parked_ sizes.
  OpList cancel_queue_;
  InflightList inflight_;
  DriverStats stats_;
};

// Prepares one SQE for `op` (false: no SQE could be had).
[[gnu::always_inline]] inline bool UringDriver::Issue(Operation* op,
                                                     OpCode code) noexcept {
  OpState& s = S(op);
  if (code == OpCode::kClose) [[unlikely]] {
    if (!CancelForClose(op)) return false;
  }
  io_uring_sqe* sqe = GetSqe();
  if (sqe == nullptr) return false;
  // Reactor clamped byte counts to kMaxRwCount, so they fit the SQE's 32-bit
  // length; iovec counts are ints.
  const unsigned len = static_cast<unsigned>(s.len);
  const uint64_t off = static_cast<uint64_t>(s.offset);
  switch (code) {
    case OpCode::kNop:
      io_uring_prep_nop(sqe);
      break;
    case OpCode::kRead:
      io_uring_prep_read(sqe, s.fd, s.addr, len, off);
      sqe->ioprio = Ioprio(op);
      break;
    case OpCode::kWrite:
      io_uring_prep_write(sqe, s.fd, s.addr, len, off);
      sqe->ioprio = Ioprio(op);
      break;
    case OpCode::kReadv:
      io_uring_prep_readv(sqe, s.fd, static_cast<const iovec*>(s.addr), len,
                          off);
      sqe->ioprio = Ioprio(op);
      break;
    case OpCode::kWritev:
      io_uring_prep_writev(sqe, s.fd, static_cast<const iovec*>(s.addr), len,
                           off);
      sqe->ioprio = Ioprio(op);
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
  inflight_.PushBack(op);
  ++pending_;
  ++stats_.submitted;
  return true;
}

}  // namespace spindle::reactor::reactor_internal

#endif  // SPINDLE_REACTOR_INTERNAL_URING_DRIVER_H_
