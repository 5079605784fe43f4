// executor/internal/preemption.h: how much of a slow poll the OS took.
//
// The run loop does not read the thread's CPU time per poll (getrusage is
// a system call, ~0.5 us here).  It keeps a mark (wall tick and thread CPU
// time) taken at a park, at a slow poll, or at a driver yield once the mark
// is older than kCpuMarkRefreshNs; when a poll is slow enough to be a
// violation it takes a new mark and asks here how much of the poll was the
// task's own.

#ifndef SPINDLE_EXECUTOR_INTERNAL_PREEMPTION_H_
#define SPINDLE_EXECUTOR_INTERNAL_PREEMPTION_H_

#include <cstdint>

namespace spindle::executor_internal {

// A mark older than this is refreshed at the next driver yield, so the
// window a slow poll is judged in stays short.
inline constexpr uint64_t kCpuMarkRefreshNs = 10'000'000;

// The part of a poll of `elapsed_ns` wall time that the task is charged
// with, when the window since the last mark (`window_ns` of wall time, the
// poll included) had `cpu_ns` of thread CPU time and only involuntary
// context switches.  The off-CPU time of the window (window - cpu) is
// spread over the window in proportion: the poll is charged its wall time
// less its share of the off-CPU time, never less than its share of the CPU
// time.  Subtracting all of the window's off-CPU time from one poll would
// judge a real hog 0 ns on a loaded machine whenever the window is long.
inline uint64_t JudgedPollNs(uint64_t elapsed_ns, uint64_t window_ns,
                             uint64_t cpu_ns) noexcept {
  if (window_ns == 0 || cpu_ns >= window_ns) return elapsed_ns;
  if (elapsed_ns > window_ns) window_ns = elapsed_ns;
  const uint64_t off_cpu = window_ns - cpu_ns;
  // elapsed * off_cpu / window without overflow: both are < 2^64 ns, the
  // product may not be.
  const unsigned __int128 share =
      static_cast<unsigned __int128>(elapsed_ns) * off_cpu / window_ns;
  return elapsed_ns - static_cast<uint64_t>(share);
}

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_PREEMPTION_H_
