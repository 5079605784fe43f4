// reactor/internal/epoll_driver.h: the epoll backend, a readiness-based
// emulation of the io_uring operations.
//
// Protocol (all on the reactor's thread except Wake):
//   - Start tries the system call at once without blocking (MSG_DONTWAIT for
//     recv/send; other stream descriptors are switched to O_NONBLOCK, once
//     per call, with fcntl).  A result other than EAGAIN goes to the ready
//     list and its callback runs at the next Poll: regular-file reads,
//     writes and fsync therefore run synchronously.  NOP completes the same
//     way, and so does a Recv or Send whose caller passed MSG_DONTWAIT
//     (-EAGAIN included, as io_uring reports it).
//   - On EAGAIN the operation joins its descriptor's reader or writer FIFO
//     (intrusive, no allocation) and the descriptor is registered
//     edge-triggered for IN|OUT|RDHUP (EPOLL_CTL_MOD, or ADD when the kernel
//     does not know it; MOD also reports current readiness).  An event
//     retries the FIFO's operations in order until one hits EAGAIN again.
//   - Connect: connect() returns EINPROGRESS, the operation waits for
//     writability and its result is SO_ERROR.
//   - Cancel unlinks a waiting operation and completes it with -ECANCELED
//     (the kernel holds no reference to its buffers).  Close cancels every
//     waiter of that descriptor first.
//   - Timers live in the Reactor's heap; the driver arms one timerfd
//     (absolute CLOCK_MONOTONIC) at the earliest deadline, because
//     epoll_wait's timeout is in ms and epoll_pwait2's is subject to the
//     thread's timer slack (50 us by default) while a timerfd is not.
//   - Wake writes an eventfd that is registered with the epoll set.

#ifndef SPINDLE_REACTOR_INTERNAL_EPOLL_DRIVER_H_
#define SPINDLE_REACTOR_INTERNAL_EPOLL_DRIVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reactor/internal/core.h"
#include "reactor/internal/operation.h"

namespace spindle::reactor::reactor_internal {

class EpollDriver final : public Driver {
 public:
  // On failure returns null and stores the positive errno in *err and the
  // call that failed in *what.
  static std::unique_ptr<EpollDriver> Create(Core* core, int* err,
                                             std::string* what);
  ~EpollDriver() override;

  void Start(Operation* op) noexcept override;
  void Cancel(Operation* op) noexcept override;
  int Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept override;
  void Wake() noexcept override;
  void CancelAll() noexcept override;
  bool Quiescent() const noexcept override { return true; }
  DriverStats Stats() const override;

 private:
  struct FdWaiters {
    OpList readers;
    OpList writers;
  };

  explicit EpollDriver(Core* core) : core_(core) {}

  static bool IsReader(OpCode code) noexcept;
  int32_t Try(Operation* op) noexcept;
  void Enqueue(Operation* op) noexcept;
  void Retry(OpList& list) noexcept;
  void CancelWaiters(int fd) noexcept;
  void ArmTimer(uint64_t deadline_ns) noexcept;

  Core* core_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  int timer_fd_ = -1;
  uint64_t armed_deadline_ = UINT64_MAX;
  std::vector<FdWaiters> fds_;  // Indexed by descriptor; grows only.
  size_t waiting_ = 0;
  DriverStats stats_;
};

}  // namespace spindle::reactor::reactor_internal

#endif  // SPINDLE_REACTOR_INTERNAL_EPOLL_DRIVER_H_
