// reactor/internal/uring_driver.h: the io_uring backend (liburing).
//
// Protocol (all on the reactor's thread except Wake):
//   - Start prepares one SQE per operation (user_data = the Operation*) and
//     leaves it in the SQ; Wait submits the whole batch with one
//     io_uring_enter.  When io_uring_get_sqe finds the SQ full, the SQ is
//     flushed first (counted as sq_flushes).
//   - Slots: the driver keeps at most cq_entries requests in the kernel
//     (`pending_`, including its own wake read and cancel requests), so the
//     CQ can never overflow.  An operation that finds no slot (or no SQE) is
//     parked in one of three FIFO resumption queues, one per IoPriority, and
//     counted in sq_full_waits.  After every reap, queued cancellations go
//     first, then parked operations, highest priority first.
//   - Cancel: a parked operation leaves its queue and completes with
//     -ECANCELED; an in-flight one gets an IORING_OP_ASYNC_CANCEL (its CQE is
//     ignored) and completes when the kernel reports it, with -ECANCELED or
//     its real result if it won the race.  No slot: the request waits in the
//     cancel queue (the operation's links are free while it is in flight).
//   - Wake: an IORING_OP_READ on an eventfd is always armed (user_data
//     kWakeTag); Wake() writes the eventfd from any thread and the read's
//     completion makes a blocked io_uring_enter return.  It is re-armed
//     after each completion.  MSG_RING cannot be used for a plain Wake(): it
//     is an SQE that must be submitted on a *source* ring, and a foreign
//     thread has none it may submit on (SINGLE_ISSUER rings reject other
//     threads); WakeFrom(source) uses it when the caller owns a source ring.
//   - Setup: IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN | R_DISABLED when the
//     kernel takes them (6.1+), else COOP_TASKRUN | TASKRUN_FLAG (5.19+),
//     else none.  With R_DISABLED the ring is enabled by the first thread
//     that submits, which becomes its single issuer.

#ifndef SPINDLE_REACTOR_INTERNAL_URING_DRIVER_H_
#define SPINDLE_REACTOR_INTERNAL_URING_DRIVER_H_

#include <liburing.h>

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

class UringDriver final : public Driver {
 public:
  // Sets up a ring.  On failure returns null and stores the positive errno
  // in *err and the call that failed in *what.
  static std::unique_ptr<UringDriver> Create(Core* core, uint32_t entries,
                                             bool sqpoll, int* err,
                                             std::string* what);
  ~UringDriver() override;

  void Start(Operation* op) noexcept override;
  void Cancel(Operation* op) noexcept override;
  int Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept override;
  void Wake() noexcept override;
  void CancelAll() noexcept override;
  bool Quiescent() const noexcept override {
    return pending_ == (wake_armed_ ? 1u : 0u);
  }
  DriverStats Stats() const override;

  // Posts a wake-up CQE on this ring from `source`'s thread through
  // IORING_OP_MSG_RING.  Returns false when `source` cannot send one.
  bool WakeFrom(UringDriver* source) noexcept;
  int ring_fd() const noexcept { return ring_.ring_fd; }
  bool supports_msg_ring() const noexcept { return has_msg_ring_; }

 private:
  static constexpr uint64_t kWakeTag = 1;    // The eventfd read.
  static constexpr uint64_t kIgnoreTag = 2;  // Cancel / MSG_RING sender CQEs.
  static constexpr uint64_t kMsgTag = 3;     // MSG_RING arrival (a wake).

  UringDriver(Core* core) : core_(core) {}

  bool HaveSlot() const noexcept { return pending_ < slot_limit_; }
  // Fast path inline; SlowSqe flushes a full SQ.
  [[gnu::always_inline]] io_uring_sqe* GetSqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    return sqe != nullptr ? sqe : SlowSqe();
  }
  io_uring_sqe* SlowSqe() noexcept;
  int SubmitNow() noexcept;
  void EnableIfNeeded() noexcept;
  void Claim() noexcept override { EnableIfNeeded(); }
  [[gnu::always_inline]] bool Issue(Operation* op) noexcept;
  bool IssueCancel(Operation* op) noexcept;
  void ArmWake() noexcept;
  void Park(Operation* op) noexcept;
  void Resume() noexcept;
  int Reap() noexcept;
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
  bool wake_armed_ = false;
  int event_fd_ = -1;
  uint64_t wake_buf_ = 0;
  uint32_t slot_limit_ = 0;
  uint32_t pending_ = 0;     // Requests in the kernel (SQEs prepared, no CQE).
  uint32_t setup_flags_ = 0;
  OpList parked_[3];
  size_t parked_count_ = 0;  // Sum of the parked_ sizes.
  OpList cancel_queue_;
  DriverStats stats_;
};

}  // namespace spindle::reactor::reactor_internal

#endif  // SPINDLE_REACTOR_INTERNAL_URING_DRIVER_H_
