// timing/clock.h: Spindle's clocks.
//
// Reach for `TscClock` first: it is the clock every per-poll measurement in
// Spindle uses.  `TscClock::Now()` is an inline rdtsc (a few ns); ticks become
// nanoseconds by a multiply and a shift, never a division.  `MonotonicClock`
// and `ThreadCpuClock` are the POSIX clocks, for wall time and CPU time where
// a syscall per read is affordable.
//
// Measured cost per read on the 2-core AMD EPYC development VMs (median of
// `./bazelw run -c opt //timing:timing_benchmark`):
//   raw rdtsc ~10 ns, TscClock::Now ~10 ns, TscClock::ToNanos ~1 ns,
//   MonotonicClock::Now ~25-50 ns (vDSO), ThreadCpuClock::Now ~500 ns (a real
//   syscall on these VMs).
// That gap is why per-poll accounting reads the TSC and never the thread CPU
// clock.
//
// Clock source.  `SPINDLE_CLOCK=auto|tsc|monotonic` (default auto) selects
// what `TscClock` reads: `auto` uses the TSC when it is invariant (constant
// and non-stop across C-states and cores, from /proc/cpuinfo or CPUID) and
// the monotonic clock otherwise; `tsc` insists on the cycle counter;
// `monotonic` makes ticks nanoseconds of CLOCK_MONOTONIC.  On aarch64 the
// cycle counter is the virtual counter CNTVCT_EL0.  Call
// `TscClock::InitFromEnv()` at start-up to get an error for a bad value;
// without it the first use configures the clock from the environment and
// falls back to `auto` (with one line on stderr) when the value is bad.

#ifndef SPINDLE_TIMING_CLOCK_H_
#define SPINDLE_TIMING_CLOCK_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <cstdint>
#include <ctime>
#include <string_view>

#include "absl/status/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace spindle::timing {

// The timing layer's version (see timing/VERSION and timing/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.1.1";

// What `TscClock` ticks are.
enum class ClockSource : uint8_t {
  kTsc = 1,        // The CPU's invariant cycle counter (rdtsc / CNTVCT_EL0).
  kMonotonic = 2,  // CLOCK_MONOTONIC nanoseconds (1 tick == 1 ns).
};

std::string_view ClockSourceName(ClockSource source) noexcept;

// The result of calibrating ticks against CLOCK_MONOTONIC_RAW.
struct Calibration {
  ClockSource source = ClockSource::kMonotonic;
  double ticks_per_second = 1e9;
  // ns = (ticks * ns_mult) >> kShift;  ticks = (ns * tick_mult) >> kShift.
  uint64_t ns_mult = uint64_t{1} << 32;
  uint64_t tick_mult = uint64_t{1} << 32;
  // Wall time the calibration took, for the record.
  uint64_t calibration_ns = 0;
};

namespace timing_internal {

inline constexpr int kShift = 32;

// 0 until the clock is configured; then a ClockSource value.  Written once
// (release) by Configure; read (acquire) on every Now().
inline std::atomic<uint8_t> g_source{0};

// Multipliers; written before g_calibrated is set (release), read after it
// is observed (acquire).
inline uint64_t g_ns_mult = 0;
inline uint64_t g_tick_mult = 0;
inline std::atomic<bool> g_calibrated{false};

// Out of line: configure from the environment, then read.
uint64_t NowSlow() noexcept;
// Out of line: calibrate once (bounded to ~20 ms).
void CalibrateSlow() noexcept;
// Test only: -1 detects the counter's invariance, 0 / 1 force the answer.
void OverrideInvariantForTesting(int value) noexcept;

inline uint64_t ReadMonotonicNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<uint64_t>(ts.tv_nsec);
}

inline uint64_t ReadCycleCounter() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __rdtsc();
#elif defined(__aarch64__)
  uint64_t v;
  asm volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return ReadMonotonicNs();
#endif
}

inline uint64_t ReadCycleCounterOrdered() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  unsigned aux;
  return __rdtscp(&aux);
#elif defined(__aarch64__)
  uint64_t v;
  asm volatile("isb; mrs %0, cntvct_el0" : "=r"(v) : : "memory");
  return v;
#else
  return ReadMonotonicNs();
#endif
}

inline uint64_t MulShift(uint64_t value, uint64_t mult) noexcept {
  // __extension__: a consumer's -Wpedantic accepts the GCC/Clang 128-bit type.
  __extension__ typedef unsigned __int128 Uint128;
  return static_cast<uint64_t>((static_cast<Uint128>(value) * mult) >> kShift);
}

}  // namespace timing_internal

// TscClock: a fast, monotonic tick counter with calibrated conversion to ns.
//
// Guarantees: `Now()` never goes backwards on one thread.  It is a plain
// rdtsc, which the CPU may execute before earlier loads and stores complete,
// so two threads that hand off through a lock can read it out of order (seen
// here: ~100 inversions in 800k handoffs).  `NowOrdered()` waits for every
// earlier instruction (rdtscp) and is ordered with any synchronisation between
// threads on an invariant TSC (the only TSC `auto` accepts); it costs ~2x
// `Now()`.  Ticks are comparable only within one process.
//
// Thread safety: every function may be called from any thread.  The first
// `Now()` configures the source, the first conversion calibrates (once, for
// ~20 ms); call `Calibrate()` at start-up to take that cost early.
//
// Memory ordering: the source byte and the calibrated flag are published with
// release stores and read with acquire loads, so a thread that sees them
// also sees the multipliers written before them.
//
// Example:
//   uint64_t t0 = spindle::timing::TscClock::Now();
//   Work();
//   uint64_t ns = spindle::timing::TscClock::ToNanos(
//       spindle::timing::TscClock::Now() - t0);
class TscClock {
 public:
  // Reads the current tick count.
  static inline uint64_t Now() noexcept {
    // Pairs with the release store in Configure.
    const uint8_t source =
        timing_internal::g_source.load(std::memory_order_acquire);
    if (source == static_cast<uint8_t>(ClockSource::kTsc)) [[likely]] {
      return timing_internal::ReadCycleCounter();
    }
    if (source == static_cast<uint8_t>(ClockSource::kMonotonic)) {
      return timing_internal::ReadMonotonicNs();
    }
    return timing_internal::NowSlow();
  }

  // Like Now(), but not executed before earlier instructions complete: use it
  // to compare readings taken on different threads.
  static inline uint64_t NowOrdered() noexcept {
    const uint8_t source =
        timing_internal::g_source.load(std::memory_order_acquire);
    if (source == static_cast<uint8_t>(ClockSource::kTsc)) [[likely]] {
      return timing_internal::ReadCycleCounterOrdered();
    }
    return Now();
  }

  // Converts a tick count (or difference) to nanoseconds: multiply and shift.
  static inline uint64_t ToNanos(uint64_t ticks) noexcept {
    // Pairs with the release store at the end of calibration.
    if (!timing_internal::g_calibrated.load(std::memory_order_acquire))
        [[unlikely]] {
      timing_internal::CalibrateSlow();
    }
    return timing_internal::MulShift(ticks, timing_internal::g_ns_mult);
  }

  // Converts nanoseconds to ticks: multiply and shift.
  static inline uint64_t FromNanos(uint64_t ns) noexcept {
    if (!timing_internal::g_calibrated.load(std::memory_order_acquire))
        [[unlikely]] {
      timing_internal::CalibrateSlow();
    }
    return timing_internal::MulShift(ns, timing_internal::g_tick_mult);
  }

  // Reads SPINDLE_CLOCK and configures the source.  InvalidArgument for an
  // unknown value (naming the variable, the value and the valid values);
  // FailedPrecondition when `tsc` is asked for and the counter is not
  // invariant.  Returns OkStatus if the clock was already configured with the
  // same source; FailedPrecondition if with another.
  static absl::Status InitFromEnv();

  // Configures the source from a SPINDLE_CLOCK-style value ("auto", "tsc",
  // "monotonic"; empty means auto).  Same errors as InitFromEnv.
  static absl::Status Configure(std::string_view value);

  // Calibrates now if not yet done and returns the calibration.
  static const Calibration& Calibrate() noexcept;

  // The configured source (configuring from the environment if needed).
  static ClockSource Source() noexcept;

  // Whether this CPU's cycle counter is invariant (constant rate, running in
  // every C-state): /proc/cpuinfo `constant_tsc` + `nonstop_tsc`, or CPUID
  // 0x80000007 EDX bit 8.  Always true on aarch64 (the generic timer).
  static bool CounterIsInvariant() noexcept;

  // Test only: forget the configuration and calibration so a test can
  // configure another source.  Not safe while other threads read the clock.
  static void ResetForTesting() noexcept;
};

// MonotonicClock: CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall).
class MonotonicClock {
 public:
  static inline uint64_t Now() noexcept {
    return timing_internal::ReadMonotonicNs();
  }
};

// ThreadCpuClock: CPU time of the calling thread in nanoseconds
// (CLOCK_THREAD_CPUTIME_ID).  A real syscall on most VMs: ~0.5 us.
class ThreadCpuClock {
 public:
  static inline uint64_t Now() noexcept {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<uint64_t>(ts.tv_nsec);
  }
};

}  // namespace spindle::timing

#endif  // SPINDLE_TIMING_CLOCK_H_
