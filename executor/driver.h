// executor/driver.h: the seam between the run loop and whatever produces
// events (the reactor, or nothing but cross-thread wake-ups).
//
// The loop calls `Poll(0)` every MaxPollsPerYield polls or DriverYield time
// to reap completions without blocking, and `Poll(timeout)` when no task is
// runnable, to sleep until the next completion, timer deadline or `Wake()`.

#ifndef SPINDLE_EXECUTOR_DRIVER_H_
#define SPINDLE_EXECUTOR_DRIVER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <cstdint>
#include <string_view>

namespace spindle {

namespace reactor {
class Reactor;
}  // namespace reactor

// Driver: what the run loop drives between polls.
//
// Requires: Poll and Shutdown are called on the executor's thread only.
// Guarantees: Wake() may be called from any thread, any number of times; a
// Wake() that happens before or during a blocking Poll makes it return.
class Driver {
 public:
  virtual ~Driver() = default;
  // Reaps completions (running their callbacks, which wake tasks).  Blocks
  // up to `timeout_ns` when nothing is ready: 0 never blocks, UINT64_MAX
  // waits until an event or Wake().  Returns the number of events handled.
  virtual int Poll(uint64_t timeout_ns) noexcept = 0;
  // Makes a blocked Poll return.  Thread-safe.
  virtual void Wake() noexcept = 0;
  // Requests cancellation of one in-flight operation (`op` is what the
  // awaiter registered as the task's wait object); its completion still
  // arrives through Poll.
  virtual void Cancel(void* op) noexcept { (void)op; }
  // Cancels everything in flight and reaps it (callbacks run).
  virtual void Shutdown() noexcept = 0;
  virtual std::string_view Name() const noexcept = 0;
  // The reactor I/O awaitables start their operations on, if any.
  virtual reactor::Reactor* reactor() noexcept { return nullptr; }
};

// ParkingDriver: no I/O; sleeps on a futex until Wake().
class ParkingDriver final : public Driver {
 public:
  int Poll(uint64_t timeout_ns) noexcept override;
  void Wake() noexcept override;
  void Shutdown() noexcept override {}
  std::string_view Name() const noexcept override { return "parking"; }

 private:
  // Incremented by every Wake (release); Poll sleeps while it is unchanged.
  std::atomic<uint32_t> wakes_{0};
  uint32_t seen_ = 0;  // executor thread only
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_DRIVER_H_
