// Costs of Spindle's clocks beside the raw rdtsc floor.
//   ./bazelw run -c opt //timing:timing_benchmark
#include <x86intrin.h>

#include "benchmark/benchmark.h"
#include "timing/clock.h"

namespace spindle::timing {
namespace {

void BM_Floor_Rdtsc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(__rdtsc());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Floor_Rdtsc);

void BM_TscClock_Now(benchmark::State& state) {
  (void)TscClock::Now();
  for (auto _ : state) benchmark::DoNotOptimize(TscClock::Now());
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(ClockSourceName(TscClock::Source())));
}
BENCHMARK(BM_TscClock_Now);

void BM_TscClock_NowOrdered(benchmark::State& state) {
  (void)TscClock::Now();
  for (auto _ : state) benchmark::DoNotOptimize(TscClock::NowOrdered());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TscClock_NowOrdered);

void BM_TscClock_ToNanos(benchmark::State& state) {
  TscClock::Calibrate();
  uint64_t ticks = 123'456'789;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ticks);
    benchmark::DoNotOptimize(TscClock::ToNanos(ticks));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TscClock_ToNanos);

void BM_MonotonicClock_Now(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(MonotonicClock::Now());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MonotonicClock_Now);

void BM_ThreadCpuClock_Now(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ThreadCpuClock::Now());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ThreadCpuClock_Now);

}  // namespace
}  // namespace spindle::timing

BENCHMARK_MAIN();
