// An idle Runtime worker's spin before it parks (RuntimeBuilder::
// SpinBeforePark, executor/worker_loop.cc) keeps its CPU: sleepers beside
// the isolation thread's hogs wake on time.  A timing test, so its own
// target, run alone (tags: exclusive): other tests on the same 2 CPUs
// would make the sleepers late whatever the spin does.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using runtime_testing::MakeRuntime;

// The 99th percentile of how late (us) sleepers woke from 1 ms sleeps on
// a two-worker Runtime with tiers on, beside two hogs (one that spins
// between YieldMaybe calls, one whose polls run 3 ms): the hogs move to
// the isolation thread (nice 19) and the sleepers stay on their workers.
int64_t SleeperP99BesideHogs() {
  budget::TierConfig tc = budget::TierConfig::Balanced();
  tc.log_warnings = false;
  RuntimeBuilder b;
  b.Workers(2).Tiers(tc).SpinBeforePark(std::chrono::microseconds(20));
  std::unique_ptr<Runtime> rt = MakeRuntime(b);
  if (rt == nullptr) return -1;
  std::atomic<bool> stop{false};
  constexpr int kSleepers = 4;
  constexpr int kSleeps = 400;
  std::vector<std::vector<int64_t>> late_us(kSleepers);
  std::vector<JoinHandle<void>> sleepers;
  for (int s = 0; s < kSleepers; ++s) {
    RuntimeSpawnOptions on;
    on.placement = Placement::Pinned(static_cast<size_t>(s % 2));
    sleepers.push_back(rt->Spawn(
        [](std::vector<int64_t>* late) -> Task<void> {
          for (int i = 0; i < kSleeps; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            co_await SleepFor(std::chrono::milliseconds(1));
            const auto dt = std::chrono::steady_clock::now() - t0;
            late->push_back(
                std::chrono::duration_cast<std::chrono::microseconds>(dt)
                    .count() -
                1000);
          }
        }(&late_us[static_cast<size_t>(s)]),
        on));
  }
  // Until `stop`: spins `ns` between yields (YieldMaybe, or YieldNow).
  auto hog = [](std::atomic<bool>* stop, uint64_t ns,
                bool maybe) -> Task<void> {
    while (!stop->load(std::memory_order_relaxed)) {
      executor_testing::Spin(ns);
      if (maybe) {
        co_await YieldMaybe();
      } else {
        co_await YieldNow();
      }
    }
  };
  JoinHandle<void> spinner = rt->Spawn(hog(&stop, 2'000, /*maybe=*/true));
  JoinHandle<void> overrunner =
      rt->Spawn(hog(&stop, 3'000'000, /*maybe=*/false));
  for (auto& h : sleepers) EXPECT_EQ(h.Wait(), JoinStatus::kCompleted);
  stop.store(true, std::memory_order_relaxed);
  EXPECT_EQ(spinner.Wait(), JoinStatus::kCompleted);
  EXPECT_EQ(overrunner.Wait(), JoinStatus::kCompleted);
  std::vector<int64_t> all;
  for (auto& l : late_us) all.insert(all.end(), l.begin(), l.end());
  if (all.size() != static_cast<size_t>(kSleepers * kSleeps)) return -1;
  std::sort(all.begin(), all.end());
  return all[all.size() * 99 / 100];
}

// A spinning worker keeps its CPU.  It used to yield it every 2 us; beside
// the isolation thread the sleepers then woke up to a time slice late
// (1.8-2.1 ms at the 99th percentile here, against ~50 us now; the suite's
// hog_mt_p99 with tiers: 1.4-1.9 ms against ~50 us).  Up to three tries,
// for a loaded machine: the fault made every try late.
TEST(RuntimeSpinLatencyTest, ASpinningWorkerKeepsItsCpuBesideTheIsolationThread) {
#if defined(__SANITIZE_THREAD__)
  // Under ThreadSanitizer the fixed spin's p99 was 1.0-1.3 ms (CI, run
  // alone): the instrumentation's own delay is as large as the fault's.
  GTEST_SKIP() << "ThreadSanitizer's overhead hides the difference";
#endif
  const char* reactor = std::getenv("SPINDLE_REACTOR");
  if (reactor != nullptr && std::string(reactor) == "epoll") {
    GTEST_SKIP() << "on epoll a worker does not spin while its operations "
                    "wait in the kernel";
  }
  int64_t best = INT64_MAX;
  for (int attempt = 0; attempt < 3 && best >= 1000; ++attempt) {
    const int64_t p99 = SleeperP99BesideHogs();
    ASSERT_GE(p99, 0);
    std::printf("sleep lateness beside the hogs, p99: %lld us\n",
                static_cast<long long>(p99));
    best = std::min(best, p99);
  }
  EXPECT_LT(best, 1000) << "the sleepers' workers waited out time slices";
}

}  // namespace
}  // namespace spindle
