// LocalExecutor spawn and yield costs beside the floor: a minimal coroutine
// loop with free-list frames, written here.
//   ./bazelw run -c opt //executor:executor_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <vector>

#include "benchmark/benchmark.h"
#include "executor/executor.h"
#include "executor/executor_testing.h"

namespace spindle {
namespace {

using executor_testing::FloorBump;
using executor_testing::FloorLoop;
using executor_testing::FloorTask;
using executor_testing::FloorYielder;
using executor_testing::g_floor_loop;

void BM_Floor_Spawn(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  FloorLoop loop(static_cast<size_t>(n));
  g_floor_loop = &loop;
  std::atomic<uint64_t> counter{0};
  for (auto _ : state) {
    for (int i = 0; i < n; ++i) loop.Push(FloorBump(&counter).handle);
    loop.Run();
  }
  benchmark::DoNotOptimize(counter.load());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Floor_Spawn)->ArgName("tasks")->Arg(1000)->Arg(10000)->Arg(100000);

void BM_Floor_Yield(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  constexpr int kTasks = 1000;
  FloorLoop loop(kTasks * 2);
  g_floor_loop = &loop;
  uint64_t counter = 0;
  for (auto _ : state) {
    for (int i = 0; i < kTasks; ++i)
      loop.Push(FloorYielder(k, &counter).handle);
    loop.Run();
  }
  benchmark::DoNotOptimize(counter);
  state.SetItemsProcessed(state.iterations() * kTasks * k);
}
BENCHMARK(BM_Floor_Yield)->ArgName("yields")->Arg(10)->Arg(100)->Arg(1000);

// ---- Spindle
// ----------------------------------------------------------------------

Task<void> Bump(std::atomic<uint64_t>* counter) {
  counter->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

Task<void> Yielder(int k, uint64_t* counter) {
  for (int i = 0; i < k; ++i) {
    ++*counter;
    co_await YieldNow();
  }
  co_return;
}

std::unique_ptr<LocalExecutor> Build(ExecutorBuilder& b) {
  absl::StatusOr<std::unique_ptr<LocalExecutor>> ex = b.Build();
  if (!ex.ok()) std::abort();
  return std::move(*ex);
}

void BM_Spawn(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  ExecutorBuilder b;
  auto ex = Build(b);
  std::atomic<uint64_t> counter{0};
  for (auto _ : state) {
    for (int i = 0; i < n; ++i) ex->SpawnDetached(Bump(&counter));
    ex->Run();
  }
  benchmark::DoNotOptimize(counter.load());
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Spawn)->ArgName("tasks")->Arg(1000)->Arg(10000)->Arg(100000);

// Yield variants: args are (yields per task, queues, stats on).
void BM_YieldImpl(benchmark::State& state, int queues, bool stats) {
  const int k = static_cast<int>(state.range(0));
  constexpr int kTasks = 1000;
  ExecutorBuilder b;
  for (int q = 0; q < queues; ++q) b.WithQueue(static_cast<QueueId>(q + 1), 1);
  b.CollectStats(stats);
  auto ex = Build(b);
  uint64_t counter = 0;
  for (auto _ : state) {
    for (int i = 0; i < kTasks; ++i) {
      ex->SpawnDetached(static_cast<QueueId>(i % queues + 1),
                        Yielder(k, &counter));
    }
    ex->Run();
  }
  benchmark::DoNotOptimize(counter);
  state.SetItemsProcessed(state.iterations() * kTasks * k);
}

void BM_Yield(benchmark::State& state) { BM_YieldImpl(state, 1, true); }
void BM_Yield_NoStats(benchmark::State& state) {
  BM_YieldImpl(state, 1, false);
}
void BM_Yield_TwoQueues(benchmark::State& state) {
  BM_YieldImpl(state, 2, true);
}
void BM_Yield_TwoQueues_NoStats(benchmark::State& state) {
  BM_YieldImpl(state, 2, false);
}
BENCHMARK(BM_Yield)->ArgName("yields")->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_Yield_NoStats)->ArgName("yields")->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_Yield_TwoQueues)->ArgName("yields")->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_Yield_TwoQueues_NoStats)
    ->ArgName("yields")
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000);

}  // namespace
}  // namespace spindle

BENCHMARK_MAIN();
