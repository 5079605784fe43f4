// A Runtime moves a stealable task to its isolation thread as soon as one
// of its polls is judged a violation while other tasks of its worker wait
// (executor/task_move.cc, MoveAtYield), without waiting for the tiers to
// climb to isolate; it comes back once it has gone the demotion
// hysteresis without a violation.  A slow poll that keeps nobody waiting
// moves nothing.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Spin;
using runtime_testing::MakeRuntime;

// The default (Balanced) tiers: climbing to isolate takes 14 violations
// and at least 200 ms (promotion hysteresis), so a move within a few
// polls is the latency move.  `hysteresis`: the demotion hysteresis.
std::unique_ptr<Runtime> LatencyRuntime(size_t workers,
                                        std::chrono::milliseconds hysteresis) {
  budget::TierConfig tc = budget::TierConfig::Balanced();
  tc.log_warnings = false;
  tc.demotion_hysteresis_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(hysteresis)
          .count());
  RuntimeBuilder b;
  b.Workers(workers).Tiers(tc);
  return MakeRuntime(b);
}

// Sleeps 200 us at a time until `stop`: a timer of its worker is always
// pending, so a slow poll there keeps it waiting.
Task<void> Ticker(const std::atomic<bool>* stop) {
  while (!stop->load(std::memory_order_acquire)) {
    co_await SleepFor(std::chrono::microseconds(200));
  }
}

// A Ticker pinned on each worker, stopped and joined by Stop().
class Tickers {
 public:
  explicit Tickers(Runtime& rt) {
    for (size_t w = 0; w < rt.worker_count(); ++w) {
      RuntimeSpawnOptions o;
      o.placement = Placement::Pinned(w);
      handles_.push_back(rt.Spawn(Ticker(&stop_), o));
    }
  }
  void Stop() {
    stop_.store(true, std::memory_order_release);
    for (auto& h : handles_) EXPECT_EQ(h.Wait(), JoinStatus::kCompleted);
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<JoinHandle<void>> handles_;
};

struct HogTrace {
  int polls_on_workers = 0;      // before its first poll on the isolation
                                 // thread
  bool isolated_thread = false;  // reached the isolation thread
  budget::Tier tier_there = budget::Tier::kMonitor;  // at its first poll there
};

// Polls of 20 ms (each a violation: the threshold is 1 ms) until the task
// runs on the isolation thread (CurrentWorker() == n), at most `max_polls`.
// The monitor judges polls by sampling, first seeing a poll up to 10 ms
// late (50 ms after its executor was parked): a 20 ms poll may be missed
// only if it is the first after a park.
Task<HogTrace> SlowPolls(size_t n, int max_polls) {
  HogTrace tr;
  for (int i = 0; i < max_polls; ++i) {
    if (CurrentWorker().value() == n) {
      tr.isolated_thread = true;
      tr.tier_there = CurrentTaskContext()->tier();
      break;
    }
    ++tr.polls_on_workers;
    Spin(20'000'000);
    co_await YieldNow();
  }
  co_return tr;
}

class RuntimeLatencyTest : public ::testing::TestWithParam<size_t> {};

TEST_P(RuntimeLatencyTest, ASlowPollThatKeepsOthersWaitingMovesAtOnce) {
  const size_t n = GetParam();
  auto rt = LatencyRuntime(n, std::chrono::milliseconds(500));
  ASSERT_NE(rt, nullptr);
  Tickers tickers(*rt);
  // Wherever the hog runs, a ticker's timer comes due during its poll.
  const HogTrace tr = rt->Spawn(SlowPolls(n, 20)).Join();
  tickers.Stop();
  ASSERT_TRUE(tr.isolated_thread) << "still on a worker after 20 slow polls";
  // The first slow poll that the monitor saw moves it; the slack is for a
  // first poll after a park, and a monitor thread that gets no CPU during
  // a poll (then that poll is not judged).  Climbing to isolate would take
  // 14 violations here.
  EXPECT_LE(tr.polls_on_workers, 5);
  EXPECT_LT(tr.tier_there, budget::Tier::kIsolate);
  const RuntimeStats s = rt->Stats();
  ASSERT_TRUE(s.isolation.has_value());
  EXPECT_EQ(s.isolation->moved_in, 1u);
}

TEST_P(RuntimeLatencyTest, ASlowPollThatKeepsNobodyWaitingStays) {
  const size_t n = GetParam();
  auto rt = LatencyRuntime(n, std::chrono::milliseconds(500));
  ASSERT_NE(rt, nullptr);
  // Five violations at most: tier warn (yield needs 6, and 100 ms after
  // warn was reached).
  const HogTrace tr = rt->Spawn(SlowPolls(n, 5)).Join();
  EXPECT_FALSE(tr.isolated_thread);
  EXPECT_EQ(tr.polls_on_workers, 5);
  const RuntimeStats s = rt->Stats();
  if (s.isolation.has_value()) {
    EXPECT_EQ(s.isolation->moved_in, 0u);
  }
}

// Moved for latency, then polite (short polls): it stays on the isolation
// thread until the demotion hysteresis has passed since its last
// violation, then goes back to a worker at a yield.
struct Return {
  bool moved = false;
  bool back = false;
  int64_t polls_there = 0;
  int64_t ms_since_slow = 0;  // from the end of its last slow poll
};

Task<Return> MovesBack(size_t n) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  Return r;
  Clock::time_point slow_end;
  while (Clock::now() < deadline) {
    const bool on_isolation = CurrentWorker().value() == n;
    if (on_isolation) {
      r.moved = true;
      ++r.polls_there;
    } else if (r.moved) {
      r.back = true;
      r.ms_since_slow = std::chrono::duration_cast<std::chrono::milliseconds>(
                            Clock::now() - slow_end)
                            .count();
      break;
    } else {
      Spin(20'000'000);
      slow_end = Clock::now();
    }
    co_await YieldNow();
  }
  co_return r;
}

TEST_P(RuntimeLatencyTest, AMovedTaskComesBackAfterTheHysteresis) {
  const size_t n = GetParam();
  auto rt = LatencyRuntime(n, std::chrono::milliseconds(100));
  ASSERT_NE(rt, nullptr);
  Tickers tickers(*rt);
  const Return r = rt->Spawn(MovesBack(n)).Join();
  tickers.Stop();
  ASSERT_TRUE(r.moved) << "never moved";
  ASSERT_TRUE(r.back) << "never came back within 20 s";
  // Not at its first yield there (a task below tier isolate that was not
  // moved for latency would leave at once).
  EXPECT_GT(r.polls_there, 1);
  // The hysteresis (100 ms) counts from the end of the last violation as
  // the tiers judged it: the monitor's lower bound of the poll, less the
  // time the OS took the thread away, so it may start a little early.
  EXPECT_GE(r.ms_since_slow, 50);
  const RuntimeStats s = rt->Stats();
  ASSERT_TRUE(s.isolation.has_value());
  EXPECT_EQ(s.isolation->moved_in, 1u);
  EXPECT_EQ(s.isolation->moved_out, 1u);
}

// One worker has no isolation thread: nothing moves.
INSTANTIATE_TEST_SUITE_P(Workers, RuntimeLatencyTest,
                         ::testing::Values(size_t{2}, size_t{4}),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return "workers_" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace spindle
