// executor/parking_driver.cc: the driver of an executor without a reactor.

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "executor/driver.h"

namespace spindle {

int ParkingDriver::Poll(uint64_t timeout_ns) noexcept {
  uint32_t w = wakes_.load(std::memory_order_acquire);
  if (w != seen_ || timeout_ns == 0) {
    seen_ = w;
    return 0;
  }
  timespec ts;
  timespec* tsp = nullptr;
  if (timeout_ns != UINT64_MAX) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000u);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000u);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&wakes_), FUTEX_WAIT_PRIVATE,
          w, tsp, nullptr, 0);
  seen_ = wakes_.load(std::memory_order_acquire);
  return 0;
}

void ParkingDriver::Wake() noexcept {
  // release: pairs with the acquire load in Poll.
  wakes_.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&wakes_), FUTEX_WAKE_PRIVATE,
          1, nullptr, nullptr, 0);
}

}  // namespace spindle
