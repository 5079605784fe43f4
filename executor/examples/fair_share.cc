// fair_share: three queues with shares 1:2:5, full of CPU-bound tasks.
//
// Prints each queue's measured share of poll time every 100 ms, then runs a
// deliberately misbehaving task (10 ms per poll) beside well-behaved ones
// and prints its tier as it climbs to isolate and, once it behaves, descends.
// Poll time is wall time (TSC): on an oversubscribed machine the OS's
// preemption of the executor thread counts too, and may promote a polite
// task now and then.
//
//   ./bazelw run -c opt //executor:fair_share -- [seconds]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "executor/executor.h"
#include "timing/clock.h"

namespace {

using spindle::ExecutorBuilder;
using spindle::Task;
using spindle::timing::TscClock;

void Spin(uint64_t ns) {
  const uint64_t end = TscClock::Now() + TscClock::FromNanos(ns);
  while (TscClock::Now() < end) {
  }
}

Task<void> Worker(uint64_t until_tick) {
  while (TscClock::Now() < until_tick) {
    Spin(50'000);  // 50 us of CPU per poll
    co_await spindle::YieldNow();
  }
}

// Prints the queues' shares of poll time in each 100 ms window.
Task<void> Reporter(uint64_t until_tick, int queues) {
  std::vector<uint64_t> last(queues, 0);
  uint64_t next = TscClock::Now() + TscClock::FromNanos(100'000'000);
  int window = 0;
  while (TscClock::Now() < until_tick) {
    if (TscClock::Now() < next) {
      co_await spindle::YieldNow();
      continue;
    }
    next += TscClock::FromNanos(100'000'000);
    spindle::ExecutorStats s = spindle::CurrentExecutor()->Stats();
    uint64_t total = 0;
    std::vector<uint64_t> delta(queues);
    for (int q = 0; q < queues; ++q) {
      delta[q] = s.queues[q].sched.service_ticks - last[q];
      last[q] = s.queues[q].sched.service_ticks;
      total += delta[q];
    }
    std::printf("t=%4d ms ", ++window * 100);
    for (int q = 0; q < queues; ++q) {
      std::printf(" queue %d (share %u): %5.1f%%", q + 1,
                  s.queues[q].sched.share,
                  total == 0 ? 0.0 : 100.0 * delta[q] / total);
    }
    std::printf("   (ideal 12.5%% / 25.0%% / 62.5%%)\n");
  }
}

Task<void> Hog(int* phase_out) {
  // Misbehaves for a while: 10 ms per poll, far over the 1 ms threshold.
  spindle::budget::Tier last = spindle::budget::Tier::kMonitor;
  auto report = [&](const char* what) {
    const spindle::budget::Tier t = spindle::CurrentTaskContext()->tier();
    if (t != last) {
      std::printf("  hog %s: tier %s -> %s\n", what,
                  std::string(spindle::budget::TierName(last)).c_str(),
                  std::string(spindle::budget::TierName(t)).c_str());
      last = t;
    }
  };
  for (int i = 0; i < 60; ++i) {
    Spin(10'000'000);
    co_await spindle::YieldNow();
    report("misbehaving");
  }
  *phase_out = 1;
  // Then behaves: short polls until it is back at monitor (or 5 s pass).
  const uint64_t give_up = TscClock::Now() + TscClock::FromNanos(5'000'000'000);
  while (last != spindle::budget::Tier::kMonitor && TscClock::Now() < give_up) {
    Spin(20'000);
    co_await spindle::YieldNow();
    report("behaving");
  }
}

Task<void> Polite(const int* phase) {
  while (*phase == 0) {
    Spin(20'000);
    co_await spindle::YieldNow();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  if (!(seconds > 0 && seconds <= 3600)) {
    std::fprintf(stderr, "fair_share: seconds must be in (0, 3600], got '%s'\n",
                 argc > 1 ? argv[1] : "");
    return 2;
  }
  {
    auto ex = ExecutorBuilder()
                  .WithQueue(1, 1)
                  .WithQueue(2, 2)
                  .WithQueue(3, 5)
                  .Build();
    if (!ex.ok()) {
      std::fprintf(stderr, "%s\n", std::string(ex.status().message()).c_str());
      return 1;
    }
    const uint64_t until =
        TscClock::Now() +
        TscClock::FromNanos(static_cast<uint64_t>(seconds * 1e9));
    std::printf("Three queues, shares 1:2:5, 4 CPU-bound tasks each, %.1f s:\n",
                seconds);
    for (spindle::QueueId q = 1; q <= 3; ++q) {
      for (int i = 0; i < 4; ++i) (*ex)->SpawnDetached(q, Worker(until));
    }
    (*ex)->SpawnDetached(3, Reporter(until, 3));
    (*ex)->Run();
  }
  {
    // Aggressive promotion; demotion sped up so the example is short.
    spindle::budget::TierConfig tiers =
        spindle::budget::TierConfig::Aggressive();
    tiers.log_warnings = false;
    tiers.demotion_good_polls = 50;
    tiers.demotion_min_time_ns = 200'000'000;
    tiers.demotion_hysteresis_ns = 200'000'000;
    auto ex =
        ExecutorBuilder().WithQueue(1, 1).WithQueue(2, 1).Tiers(tiers).Build();
    if (!ex.ok()) {
      std::fprintf(stderr, "%s\n", std::string(ex.status().message()).c_str());
      return 1;
    }
    std::printf(
        "\nA hog (10 ms per poll) beside polite tasks, Aggressive tiers:\n");
    int phase = 0;
    (*ex)->SpawnDetached(1, Hog(&phase));
    for (int i = 0; i < 3; ++i) (*ex)->SpawnDetached(2, Polite(&phase));
    (*ex)->Run();
    spindle::ExecutorStats s = (*ex)->Stats();
    std::printf(
        "  tier actions: %llu warnings, %llu yields, %llu isolations, "
        "%llu returns from isolation\n",
        static_cast<unsigned long long>(s.tier_warnings),
        static_cast<unsigned long long>(s.tier_yields),
        static_cast<unsigned long long>(s.tier_isolations),
        static_cast<unsigned long long>(s.tier_restores));
  }
  return 0;
}
