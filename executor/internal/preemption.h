// executor/internal/preemption.h: how much of a slow poll the OS took.
//
// The run loop does not read the thread's CPU time per poll (getrusage is
// a system call, ~0.5 us here).  It keeps a mark (wall tick and thread CPU
// time) taken at a park that slept, at a slow poll, and at a driver yield
// or park once the mark is older than kCpuMarkRefreshNs; when a poll is
// slow enough to be a violation it takes a new mark and asks here how much
// of the poll was the task's own.

#ifndef SPINDLE_EXECUTOR_INTERNAL_PREEMPTION_H_
#define SPINDLE_EXECUTOR_INTERNAL_PREEMPTION_H_

#include <algorithm>
#include <cstdint>

namespace spindle::executor_internal {

// A mark older than this is refreshed at the next driver yield (one
// getrusage per millisecond at most, ~0.05% of a core), so the window a
// slow poll is judged in is the poll plus at most about this much.
inline constexpr uint64_t kCpuMarkRefreshNs = 1'000'000;

// A park at least this long takes a new mark when it ends (it most likely
// slept: a voluntary switch the next slow poll must not be judged across).
// A shorter one does only when the mark is older than kCpuMarkRefreshNs,
// so a loop that parks every few microseconds (completions ready at once)
// pays no system calls per park.
inline constexpr uint64_t kParkMarkNs = 50'000;

// The part of a poll of `elapsed_ns` wall time that the task is charged
// with, when the window since the last mark (`window_ns` of wall time, the
// poll included) had `cpu_ns` of thread CPU time and only involuntary
// context switches (the thread was preempted, never blocked).
//   - A short window (the poll plus at most 2 refresh periods): the
//     off-CPU time is taken to be the poll's, up to its length.  A polite
//     task preempted for 5 ms in a 50 us poll is charged ~50 us; a hog is
//     charged at least the CPU time it had in the window less the short
//     part before the poll.
//   - A longer window (the mark could not be refreshed: one long stretch of
//     polls without a driver yield): the off-CPU time is spread over the
//     window in proportion.  Taking all of it off one poll would judge a
//     real hog 0 ns on a loaded machine.
inline uint64_t JudgedPollNs(uint64_t elapsed_ns, uint64_t window_ns,
                             uint64_t cpu_ns) noexcept {
  if (elapsed_ns > window_ns) window_ns = elapsed_ns;
  if (cpu_ns >= window_ns) return elapsed_ns;
  const uint64_t off_cpu = window_ns - cpu_ns;
  if (window_ns - elapsed_ns <= 2 * kCpuMarkRefreshNs) {
    return elapsed_ns - std::min(elapsed_ns, off_cpu);
  }
  // elapsed * off_cpu / window, without overflowing 64 bits.
  const unsigned __int128 share =
      static_cast<unsigned __int128>(elapsed_ns) * off_cpu / window_ns;
  return elapsed_ns - static_cast<uint64_t>(share);
}

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_PREEMPTION_H_
