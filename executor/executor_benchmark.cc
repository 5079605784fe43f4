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

namespace spindle {
namespace {

// ---- The floor ------------------------------------------------------------------
// The least code that spawns and runs coroutine tasks: frames from a free
// list, a ring of handles, no accounting, no fairness, no wake-ups.

struct FloorFreeList {
  static constexpr size_t kBlock = 512;  // every frame here is smaller
  struct Block {
    Block* next;
  };
  Block* head = nullptr;
  void* Get(size_t n) {
    if (n > kBlock) return std::malloc(n);
    if (head != nullptr) {
      Block* b = head;
      head = b->next;
      return b;
    }
    return std::malloc(kBlock);
  }
  void Put(void* p, size_t n) {
    if (n > kBlock) {
      std::free(p);
      return;
    }
    auto* b = static_cast<Block*>(p);
    b->next = head;
    head = b;
  }
  ~FloorFreeList() {
    while (head != nullptr) {
      Block* n = head->next;
      std::free(head);
      head = n;
    }
  }
};
thread_local FloorFreeList g_floor_frames;

struct FloorLoop {
  std::vector<std::coroutine_handle<>> ring;
  size_t head = 0;
  size_t tail = 0;
  size_t mask = 0;
  explicit FloorLoop(size_t capacity) {
    size_t c = 1;
    while (c < capacity) c <<= 1;
    ring.resize(c);
    mask = c - 1;
  }
  void Push(std::coroutine_handle<> h) { ring[tail++ & mask] = h; }
  void Run() {
    while (head != tail) ring[head++ & mask].resume();
  }
};
thread_local FloorLoop* g_floor_loop = nullptr;

struct FloorTask {
  struct promise_type {
    FloorTask get_return_object() {
      return FloorTask{
          std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::abort(); }
    static void* operator new(size_t n) { return g_floor_frames.Get(n); }
    static void operator delete(void* p, size_t n) { g_floor_frames.Put(p, n); }
  };
  std::coroutine_handle<promise_type> handle;
};

struct FloorYield {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const noexcept {
    g_floor_loop->Push(h);
  }
  void await_resume() const noexcept {}
};

FloorTask FloorBump(std::atomic<uint64_t>* counter) {
  counter->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

FloorTask FloorYielder(int k, uint64_t* counter) {
  for (int i = 0; i < k; ++i) {
    ++*counter;
    co_await FloorYield{};
  }
  co_return;
}

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
    for (int i = 0; i < kTasks; ++i) loop.Push(FloorYielder(k, &counter).handle);
    loop.Run();
  }
  benchmark::DoNotOptimize(counter);
  state.SetItemsProcessed(state.iterations() * kTasks * k);
}
BENCHMARK(BM_Floor_Yield)->ArgName("yields")->Arg(10)->Arg(100)->Arg(1000);

// ---- Spindle ----------------------------------------------------------------------

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
void BM_Yield_NoStats(benchmark::State& state) { BM_YieldImpl(state, 1, false); }
void BM_Yield_TwoQueues(benchmark::State& state) { BM_YieldImpl(state, 2, true); }
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
