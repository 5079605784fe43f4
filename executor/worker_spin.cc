// executor/worker_spin.cc: a Runtime worker's short wait awake before it
// parks (step I0 of the protocol in internal/runtime_shared.h).

#include <algorithm>
#include <cstdint>
#include <thread>

#include "executor/internal/cpu_relax.h"
#include "executor/internal/inbox.h"
#include "executor/internal/runtime_shared.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::RuntimeShared;
using executor_internal::Worker;

// I0: idle, not yet on the idle list, a short wait awake before I1 and the
// park's system call.  A wake from another worker on a VM can cost ~10 us
// when it must bring a halted CPU back (the `pingpong` row went 11-13x the
// raw MSG_RING round trip on a 2-core VM); a worker that is still awake
// sees the item in its inbox (or a Nudge) within the line transfer, and
// its producer skips the doorbell, since `parked` stays false meanwhile.
// It spins before I1, not after it: joining and leaving the idle list take
// idle_mu, and two workers passing a task back and forth met there at
// every hand-off (`pingpong`: ~35% of its round trip).  Off the idle list
// it is an awake worker, so N3 never wakes it, and it watches for what N3
// would have told it: its inbox and the injectors at every step; if it
// searches, every deque (N2 counted on it); if it does not, whether it may
// search now (F1's bound), every 8th step.
// True when the loop should look again: the inbox or a queue has
// something, or the driver had work (a completion, a due timer, a
// submission; polled here without waiting: it ended the spin at once
// after every park, since the park's wake leaves a submission behind).
// False when `deadline` (a TSC tick) has passed: the caller goes on to I1
// and parks, which polls the driver under the inbox's protocol, so no
// wake is lost.
// Not while epoll has operations in the kernel (their completions cannot
// be seen without a system call).
//
// `yield`: another awake worker last spun on this CPU (SharesCpuWith
// AwakeWorker), so the one this worker waits for may be runnable here:
// the spin yields the CPU every couple of microseconds, else that worker
// could not run until the kernel's time slice ends.  Otherwise it never
// yields: a yield lets the kernel run any other thread there for a whole
// time slice (with EEVDF the yielder's deadline moves a slice on), and a
// worker that is runnable but not running when its wake comes gets no
// wake-up preemption.  With tiers on, the isolation thread (nice 19,
// running the hogs) took the yields that way, and `hog_mt_p99` with tiers
// went from ~50 us to 1.4-1.9 ms.
// The pauses between two looks of the spin: about 80 ns of them.  A pause
// takes ~10 ns on older cores and on this project's VMs, but ~40-140
// cycles on Skylake-SP and later, where a fixed 8 would delay every wake a
// spin catches by up to ~0.4 us.  Measured once per process (the fastest
// of three runs of 64), 1..8.
static uint32_t PausesPerLook() noexcept {
  static const uint32_t pauses = [] {
    uint64_t best = UINT64_MAX;
    for (int run = 0; run < 3; ++run) {
      const uint64_t t0 = timing::TscClock::Now();
      for (int i = 0; i < 64; ++i) executor_internal::CpuRelax();
      best = std::min(best, timing::TscClock::Now() - t0);
    }
    const uint64_t per_pause = std::max<uint64_t>(1, best / 64);
    return static_cast<uint32_t>(std::clamp<uint64_t>(
        timing::TscClock::FromNanos(80) / per_pause, 1, 8));
  }();
  return pauses;
}

bool LocalExecutor::SpinBeforePark(uint64_t now, uint64_t deadline,
                                   bool yield) noexcept {
  if (io_ != nullptr && !io_peeks_ && KernelWaits()) return false;
  const executor_internal::Inbox& in = *inbox_;
  Worker& w = *worker_;
  const RuntimeShared& rt = *w.rt;
  const uint64_t yield_every = timing::TscClock::FromNanos(2'000);
  const uint32_t pauses = PausesPerLook();
  uint64_t last_yield = now;
  for (uint32_t step = 1; now < deadline; ++step) {
    if (yield && now - last_yield >= yield_every) {
      std::this_thread::yield();
      Worker::Bump(w.spin_yields);
      last_yield = now;
    }
    for (uint32_t i = 0; i < pauses; ++i) executor_internal::CpuRelax();
    if (!in.Empty() || rt.AnyInjected(w)) return true;
    if (step % 8 == 0 && (w.searching ? rt.AnyWork(w) : rt.MaySearch())) {
      return true;
    }
    now = timing::TscClock::Now();
    if (IoDue(now)) {
      DriverYield(now);  // what it reaps may make a task runnable
      return true;
    }
  }
  return false;
}

}  // namespace spindle
