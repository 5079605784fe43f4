#include "timing/clock.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace spindle::timing {
namespace {

uint64_t MonotonicNs() { return MonotonicClock::Now(); }

// Leaves the clock in its environment-default state for the next test.
class ClockTest : public ::testing::Test {
 protected:
  void TearDown() override {
    timing_internal::OverrideInvariantForTesting(-1);
    TscClock::ResetForTesting();
    unsetenv("SPINDLE_CLOCK");
  }
};

TEST_F(ClockTest, MonotonicOnOneThreadAcrossManyReads) {
  uint64_t last = TscClock::Now();
  for (int i = 0; i < 1'000'000; ++i) {
    const uint64_t now = TscClock::Now();
    ASSERT_GE(now, last) << "at read " << i;
    last = now;
  }
}

TEST_F(ClockTest, MonotonicAcrossThreadsWhenOrderedByALock) {
  // Each thread reads the clock while holding the lock and checks that it is
  // not behind the last value any thread stored under the same lock.  Plain
  // Now() may execute before the lock is taken; NowOrdered() may not.
  std::mutex mu;
  uint64_t last = 0;
  std::atomic<int> violations{0};
  auto body = [&] {
    for (int i = 0; i < 100'000; ++i) {
      std::lock_guard<std::mutex> lock(mu);
      const uint64_t now = TscClock::NowOrdered();
      if (now < last) violations.fetch_add(1, std::memory_order_relaxed);
      last = now;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(body);
  for (auto& t : threads) t.join();
  EXPECT_EQ(violations.load(), 0);
}

TEST_F(ClockTest, CalibrationMatchesMonotonicWithinOnePercentOver50ms) {
  const Calibration& cal = TscClock::Calibrate();
  EXPECT_GT(cal.ticks_per_second, 0);
  EXPECT_LT(cal.calibration_ns, 200'000'000u) << "calibration must be bounded";
  const uint64_t m0 = MonotonicNs();
  const uint64_t t0 = TscClock::Now();
  // Wait 50 ms of monotonic time (a timed wait, not synchronisation).
  timespec pause{0, 50'000'000};
  while (nanosleep(&pause, &pause) != 0) {
  }
  const uint64_t t1 = TscClock::Now();
  const uint64_t m1 = MonotonicNs();
  const double mono_ns = static_cast<double>(m1 - m0);
  const double tsc_ns = static_cast<double>(TscClock::ToNanos(t1 - t0));
  ASSERT_GE(mono_ns, 50e6);
  EXPECT_NEAR(tsc_ns / mono_ns, 1.0, 0.01)
      << "tsc_ns=" << tsc_ns << " mono_ns=" << mono_ns;
}

TEST_F(ClockTest, ConversionRoundTrip) {
  TscClock::Calibrate();
  for (uint64_t ns : {uint64_t{1'000}, uint64_t{1'000'000},
                      uint64_t{1'000'000'000}, uint64_t{3'600'000'000'000}}) {
    const uint64_t ticks = TscClock::FromNanos(ns);
    const uint64_t back = TscClock::ToNanos(ticks);
    // Truncation in each direction loses at most a tick: allow 2 ns.
    EXPECT_LE(std::abs(static_cast<double>(back) - static_cast<double>(ns)),
              2.0 + 1e-6 * static_cast<double>(ns))
        << "ns=" << ns << " ticks=" << ticks << " back=" << back;
  }
  EXPECT_EQ(TscClock::ToNanos(0), 0u);
}

TEST_F(ClockTest, ForcedMonotonicFallbackTicksAreNanoseconds) {
  TscClock::ResetForTesting();
  ASSERT_TRUE(TscClock::Configure("monotonic").ok());
  EXPECT_EQ(TscClock::Source(), ClockSource::kMonotonic);
  const uint64_t before = MonotonicNs();
  const uint64_t now = TscClock::Now();
  const uint64_t after = MonotonicNs();
  EXPECT_GE(now, before);
  EXPECT_LE(now, after);
  EXPECT_EQ(TscClock::ToNanos(12345), 12345u);
  EXPECT_EQ(TscClock::FromNanos(12345), 12345u);
}

TEST_F(ClockTest, AutoFallsBackWhenCounterIsNotInvariant) {
  TscClock::ResetForTesting();
  timing_internal::OverrideInvariantForTesting(0);
  ASSERT_TRUE(TscClock::Configure("auto").ok());
  EXPECT_EQ(TscClock::Source(), ClockSource::kMonotonic);
}

TEST_F(ClockTest, ForcedTscOnNonInvariantCounterIsAnError) {
  TscClock::ResetForTesting();
  timing_internal::OverrideInvariantForTesting(0);
  const absl::Status s = TscClock::Configure("tsc");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("SPINDLE_CLOCK=tsc"), std::string::npos) << s;
}

TEST_F(ClockTest, ValuesAreCaseInsensitive) {
  TscClock::ResetForTesting();
  timing_internal::OverrideInvariantForTesting(1);
  ASSERT_TRUE(TscClock::Configure("MONOTONIC").ok());
  EXPECT_EQ(TscClock::Source(), ClockSource::kMonotonic);
  TscClock::ResetForTesting();
  ASSERT_TRUE(TscClock::Configure("Auto").ok());
  EXPECT_EQ(TscClock::Source(), ClockSource::kTsc);
}

TEST_F(ClockTest, AutoUsesCounterWhenInvariant) {
  TscClock::ResetForTesting();
  timing_internal::OverrideInvariantForTesting(1);
  ASSERT_TRUE(TscClock::Configure("auto").ok());
  EXPECT_EQ(TscClock::Source(), ClockSource::kTsc);
}

TEST_F(ClockTest, BadEnvironmentValueNamesVariableValueAndValidValues) {
  TscClock::ResetForTesting();
  setenv("SPINDLE_CLOCK", "rdtsc-please", 1);
  const absl::Status s = TscClock::InitFromEnv();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(s.message());
  EXPECT_NE(msg.find("SPINDLE_CLOCK"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rdtsc-please"), std::string::npos) << msg;
  EXPECT_NE(msg.find("auto, tsc, monotonic"), std::string::npos) << msg;
}

TEST_F(ClockTest, EnvironmentSelectsMonotonic) {
  TscClock::ResetForTesting();
  setenv("SPINDLE_CLOCK", "monotonic", 1);
  ASSERT_TRUE(TscClock::InitFromEnv().ok());
  EXPECT_EQ(TscClock::Source(), ClockSource::kMonotonic);
}

TEST_F(ClockTest, BadEnvironmentValueOnFirstUseFallsBackToAuto) {
  TscClock::ResetForTesting();
  setenv("SPINDLE_CLOCK", "bogus", 1);
  (void)TscClock::Now();
  const ClockSource expected = TscClock::CounterIsInvariant()
                                   ? ClockSource::kTsc
                                   : ClockSource::kMonotonic;
  EXPECT_EQ(TscClock::Source(), expected);
}

TEST_F(ClockTest, ReconfiguringToAnotherSourceIsRefused) {
  TscClock::ResetForTesting();
  ASSERT_TRUE(TscClock::Configure("monotonic").ok());
  EXPECT_TRUE(TscClock::Configure("monotonic").ok());
  timing_internal::OverrideInvariantForTesting(1);
  EXPECT_EQ(TscClock::Configure("tsc").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ThreadCpuClockTest, AdvancesWithWorkAndNotWithSleep) {
  const uint64_t c0 = ThreadCpuClock::Now();
  volatile uint64_t sink = 0;
  for (int i = 0; i < 5'000'000; ++i) sink = sink + i;
  const uint64_t c1 = ThreadCpuClock::Now();
  EXPECT_GT(c1, c0);
  timespec pause{0, 20'000'000};
  nanosleep(&pause, nullptr);
  const uint64_t c2 = ThreadCpuClock::Now();
  // Sleeping 20 ms costs far less than 20 ms of CPU.
  EXPECT_LT(c2 - c1, 10'000'000u);
}

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/timing/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(VersionTest, MatchesVersionFile) { EXPECT_EQ(kVersion, VersionFile()); }

}  // namespace
}  // namespace spindle::timing
