// Costs of the budget layer's hot path beside a relaxed fetch_sub floor.
//   ./bazelw run -c opt //budget:budget_benchmark -- --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
// Targets (medians, same run): Consume <= 3 ns and <= 1.5x the floor;
// BeforeAfterPoll <= 15 ns; Install <= 100 ns; CallNoHooks <= 2 ns.
#include <atomic>
#include <cstdint>
#include <memory>

#include "benchmark/benchmark.h"
#include "budget/budget.h"
#include "timing/clock.h"

namespace spindle::budget {
namespace {

void BM_Floor_RelaxedFetchSub(benchmark::State& state) {
  std::atomic<uint32_t> counter{UINT32_MAX};
  for (auto _ : state) {
    benchmark::DoNotOptimize(counter.fetch_sub(1, std::memory_order_relaxed));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Floor_RelaxedFetchSub);

void BM_TaskBudget_Consume(benchmark::State& state) {
  TaskBudget budget;
  budget.Reset(UINT32_MAX);
  for (auto _ : state) {
    benchmark::DoNotOptimize(budget.Consume());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TaskBudget_Consume);

// The common path of a well-behaved task: BeforePoll with a real TSC read,
// then AfterPoll of a short poll at kMonitor.
void BM_TierManager_BeforeAfterPoll(benchmark::State& state) {
  auto tm = TierManager::Create(TierConfig::Balanced()).value();
  TaskContext ctx;
  tm->OnSpawn(ctx);
  uint64_t elapsed = 100;
  for (auto _ : state) {
    tm->BeforePoll(ctx);
    benchmark::DoNotOptimize(elapsed);
    benchmark::DoNotOptimize(
        tm->AfterPoll(ctx, PollOutcome::kPending, elapsed));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TierManager_BeforeAfterPoll);

// One promotion (monitor -> warn, a warning event with logging off) and one
// demotion (warn -> monitor) per iteration: the rare slow path.
void BM_TierManager_Promotion(benchmark::State& state) {
  TierConfig c = TierConfig::Balanced();
  c.promotion_violations = {1, 1, 1};
  c.demotion_good_polls = 1;
  c.demotion_min_time_ns = 0;
  c.promotion_hysteresis_ns = 0;
  c.demotion_hysteresis_ns = 0;
  c.log_warnings = false;
  auto tm = TierManager::Create(c).value();
  TaskContext ctx;
  tm->OnSpawn(ctx);
  const uint64_t slow = tm->policy().violation_ticks[2] + 1;
  const uint64_t good = 1;
  uint64_t now = 1'000'000;
  for (auto _ : state) {
    ctx.poll_start_tick = now;
    benchmark::DoNotOptimize(tm->AfterPoll(ctx, PollOutcome::kPending, slow));
    now += slow;
    ctx.poll_start_tick = now;
    benchmark::DoNotOptimize(tm->AfterPoll(ctx, PollOutcome::kPending, good));
    now += good;
  }
  if (tm->Metrics().promotions != static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("expected one promotion per iteration");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TierManager_Promotion);

PollHooks MakeHooks(std::atomic<uint64_t>* sink) {
  PollHooks h;
  h.before_poll = [sink](const TaskContext&) {
    sink->fetch_add(1, std::memory_order_relaxed);
  };
  h.after_poll = [sink](const TaskContext&, PollOutcome, uint64_t e) {
    sink->fetch_add(e, std::memory_order_relaxed);
  };
  h.on_yield = [sink](const TaskContext&) {
    sink->fetch_add(1, std::memory_order_relaxed);
  };
  h.on_complete = [sink](const TaskContext&) {
    sink->fetch_add(1, std::memory_order_relaxed);
  };
  return h;
}

// Replacing the whole set (4 hooks) once per iteration, reclamation included.
void BM_HookRegistry_Install(benchmark::State& state) {
  std::atomic<uint64_t> sink{0};
  HookRegistry reg;
  const PollHooks hooks = MakeHooks(&sink);
  for (auto _ : state) {
    reg.Install(hooks);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HookRegistry_Install);

void BM_HookRegistry_CallNoHooks(benchmark::State& state) {
  HookRegistry reg;
  TaskContext ctx;
  for (auto _ : state) {
    reg.CallBeforePoll(ctx);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HookRegistry_CallNoHooks);

// For reference: a call through an installed hook (hazard slot, re-check,
// std::function call).
void BM_HookRegistry_CallWithHooks(benchmark::State& state) {
  std::atomic<uint64_t> sink{0};
  HookRegistry reg;
  reg.Install(MakeHooks(&sink));
  TaskContext ctx;
  for (auto _ : state) {
    reg.CallBeforePoll(ctx);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HookRegistry_CallWithHooks);

}  // namespace
}  // namespace spindle::budget

BENCHMARK_MAIN();
