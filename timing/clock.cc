// Configuration and calibration of TscClock.
//
// Protocol: g_source goes 0 -> {kTsc, kMonotonic} once, under g_mu, with a
// release store; g_calibrated goes false -> true once, under g_mu, after the
// multipliers are written.  Readers never take g_mu: they load the two
// atomics with acquire.  Only ResetForTesting moves them back, and it is
// documented as unsafe with concurrent readers.

#include "timing/clock.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace spindle::timing {
namespace timing_internal {
namespace {

std::mutex g_mu;
Calibration g_calibration;  // Guarded by g_mu until g_calibrated is set.
// -1: detect; 0/1: forced by a test.
std::atomic<int> g_invariant_override{-1};

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so std::string_view arguments are converted explicitly.
absl::string_view Av(std::string_view v) { return {v.data(), v.size()}; }

struct Sample {
  uint64_t ns;
  uint64_t ticks;
};

uint64_t ReadRawNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<uint64_t>(ts.tv_nsec);
}

// One (ns, ticks) pair whose ns is bracketed as tightly as we can manage:
// the best of a few tries, so a preemption between reads does not skew it.
Sample TightSample() {
  Sample best{0, 0};
  uint64_t best_gap = UINT64_MAX;
  for (int i = 0; i < 8; ++i) {
    const uint64_t a = ReadRawNs();
    const uint64_t t = ReadCycleCounter();
    const uint64_t b = ReadRawNs();
    if (b - a < best_gap) {
      best_gap = b - a;
      best = Sample{a + (b - a) / 2, t};
    }
  }
  return best;
}

bool CpuinfoSaysInvariant() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    auto has = [&](const char* flag) {
      const std::string padded = std::string(" ") + flag;
      size_t pos = line.find(padded);
      while (pos != std::string::npos) {
        const size_t end = pos + padded.size();
        if (end == line.size() || line[end] == ' ') return true;
        pos = line.find(padded, end);
      }
      return false;
    };
    return has("constant_tsc") && has("nonstop_tsc");
  }
  return false;
}

bool DetectInvariant() {
#if defined(__x86_64__) || defined(__i386__)
  if (CpuinfoSaysInvariant()) return true;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx)) {
    return (edx & (1u << 8)) != 0;
  }
  return false;
#elif defined(__aarch64__)
  return true;  // The generic timer runs at a fixed frequency.
#else
  return false;
#endif
}

// Requires g_mu.  Measures ticks per second and fills the multipliers.
void CalibrateLocked() {
  const uint8_t source = g_source.load(std::memory_order_relaxed);
  Calibration c;
  c.source = static_cast<ClockSource>(source);
  const uint64_t start = ReadRawNs();
  if (source == static_cast<uint8_t>(ClockSource::kTsc)) {
    // Two tight samples ~10 ms apart: the bracketing error is tens of ns,
    // so the rate is good to ~1e-5.
    const Sample s0 = TightSample();
    timespec pause{0, 10'000'000};
    nanosleep(&pause, nullptr);
    const Sample s1 = TightSample();
    const double ticks_per_ns = static_cast<double>(s1.ticks - s0.ticks) /
                                static_cast<double>(s1.ns - s0.ns);
    c.ticks_per_second = ticks_per_ns * 1e9;
    const double scale = static_cast<double>(uint64_t{1} << kShift);
    c.ns_mult = static_cast<uint64_t>(scale / ticks_per_ns + 0.5);
    c.tick_mult = static_cast<uint64_t>(scale * ticks_per_ns + 0.5);
  } else {
    c.ticks_per_second = 1e9;
    c.ns_mult = uint64_t{1} << kShift;
    c.tick_mult = uint64_t{1} << kShift;
  }
  c.calibration_ns = ReadRawNs() - start;
  g_calibration = c;
  g_ns_mult = c.ns_mult;
  g_tick_mult = c.tick_mult;
  // Pairs with the acquire loads in TscClock::ToNanos / FromNanos.
  g_calibrated.store(true, std::memory_order_release);
}

absl::Status ConfigureLocked(std::string_view raw) {
  // Any case, as the SPINDLE_* tier variables accept ("TSC", "Auto").
  const std::string value = absl::AsciiStrToLower(std::string(raw));
  ClockSource wanted;
  const bool invariant = TscClock::CounterIsInvariant();
  if (value.empty() || value == "auto") {
    wanted = invariant ? ClockSource::kTsc : ClockSource::kMonotonic;
  } else if (value == "tsc") {
#if !defined(__x86_64__) && !defined(__i386__) && !defined(__aarch64__)
    return absl::UnavailableError(
        "SPINDLE_CLOCK=tsc: this CPU architecture has no cycle counter "
        "Spindle can read; valid values here: auto, monotonic");
#endif
    if (!invariant) {
      return absl::FailedPreconditionError(
          "SPINDLE_CLOCK=tsc: the CPU's TSC is not invariant (no "
          "constant_tsc + nonstop_tsc in /proc/cpuinfo, no CPUID invariant "
          "TSC bit); use SPINDLE_CLOCK=auto or SPINDLE_CLOCK=monotonic");
    }
    wanted = ClockSource::kTsc;
  } else if (value == "monotonic") {
    wanted = ClockSource::kMonotonic;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("SPINDLE_CLOCK='", Av(raw),
                     "' is not a valid clock; valid values: auto, tsc, "
                     "monotonic"));
  }
  const uint8_t current = g_source.load(std::memory_order_relaxed);
  if (current != 0) {
    if (current == static_cast<uint8_t>(wanted)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "SPINDLE_CLOCK='", Av(raw), "': the clock is already running as ",
        Av(ClockSourceName(static_cast<ClockSource>(current))),
        "; configure it before the first TscClock::Now()"));
  }
  // Pairs with the acquire load in TscClock::Now.
  g_source.store(static_cast<uint8_t>(wanted), std::memory_order_release);
  return absl::OkStatus();
}

std::string_view EnvValue() {
  const char* v = std::getenv("SPINDLE_CLOCK");
  return v == nullptr ? std::string_view() : std::string_view(v);
}

}  // namespace

uint64_t NowSlow() noexcept {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_source.load(std::memory_order_relaxed) == 0) {
      absl::Status s = ConfigureLocked(EnvValue());
      if (!s.ok()) {
        std::fprintf(stderr,
                     "spindle: %s; using SPINDLE_CLOCK=auto (call "
                     "TscClock::InitFromEnv() at start-up to get this as an "
                     "error)\n",
                     std::string(s.message()).c_str());
        s = ConfigureLocked("auto");
      }
    }
  }
  return TscClock::Now();
}

void CalibrateSlow() noexcept {
  if (g_source.load(std::memory_order_acquire) == 0) (void)NowSlow();
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_calibrated.load(std::memory_order_relaxed)) CalibrateLocked();
}

}  // namespace timing_internal

std::string_view ClockSourceName(ClockSource source) noexcept {
  switch (source) {
    case ClockSource::kTsc:
      return "tsc";
    case ClockSource::kMonotonic:
      return "monotonic";
  }
  return "unknown";
}

absl::Status TscClock::InitFromEnv() {
  return Configure(timing_internal::EnvValue());
}

absl::Status TscClock::Configure(std::string_view value) {
  std::lock_guard<std::mutex> lock(timing_internal::g_mu);
  return timing_internal::ConfigureLocked(value);
}

const Calibration& TscClock::Calibrate() noexcept {
  timing_internal::CalibrateSlow();
  return timing_internal::g_calibration;
}

ClockSource TscClock::Source() noexcept {
  uint8_t s = timing_internal::g_source.load(std::memory_order_acquire);
  if (s == 0) {
    (void)timing_internal::NowSlow();
    s = timing_internal::g_source.load(std::memory_order_acquire);
  }
  return static_cast<ClockSource>(s);
}

bool TscClock::CounterIsInvariant() noexcept {
  const int forced =
      timing_internal::g_invariant_override.load(std::memory_order_relaxed);
  if (forced >= 0) return forced == 1;
  static const bool detected = timing_internal::DetectInvariant();
  return detected;
}

void TscClock::ResetForTesting() noexcept {
  std::lock_guard<std::mutex> lock(timing_internal::g_mu);
  timing_internal::g_source.store(0, std::memory_order_relaxed);
  timing_internal::g_calibrated.store(false, std::memory_order_relaxed);
  timing_internal::g_calibration = Calibration{};
}

namespace timing_internal {
void OverrideInvariantForTesting(int value) noexcept {
  g_invariant_override.store(value, std::memory_order_relaxed);
}
}  // namespace timing_internal

}  // namespace spindle::timing
