// Benchmarks for the steal layer, each beside a floor or a peer in the same
// run:
//   BM_Floor_ArrayPushPop          plain array stack, push+pop (the floor)
//   BM_Floor_FencedArrayPushPop    the same with one seq_cst store per pop:
//                                  the least a Chase-Lev pop must do
//   BM_WorkDeque_PushPop           owner push+pop, bursts of 64 (private)
//   BM_WorkDeque_PublishedPushPop  the same, publishing every push (what the
//                                  Runtime does): a Chase-Lev push and pop
//   BM_WorkDeque_Steal             push then steal, one thread (uncontended)
//   BM_WorkDeque_StealBatch        push 64, StealBatch(32) until empty
//   BM_WorkDeque_ContendedSteal    owner pushes, 1-7 thieves steal every task
//   BM_Peer_MutexDeque_ContendedSteal  the same on std::mutex + std::deque
//                                  (spargio's default stealable queue)
// Items processed are tasks: time per item is per push+pop (or push+steal)
// pair, and per task stolen in the contended runs (real time).
// Run (one line):
//   ./bazelw run -c opt //steal:steal_benchmark -- --benchmark_repetitions=5
//   --benchmark_report_aggregates_only=true
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "steal/work_deque.h"

namespace spindle::steal {
namespace {

struct Item {
  int64_t id = 0;
};

constexpr int kBurst = 64;

void BM_Floor_ArrayPushPop(benchmark::State& state) {
  std::array<Item, kBurst> items;
  std::array<Item*, 256> stack;
  size_t top = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      stack[top++] = &items[i];
      benchmark::ClobberMemory();
    }
    for (int i = 0; i < kBurst; ++i) {
      Item* it = top > 0 ? stack[--top] : nullptr;
      benchmark::DoNotOptimize(it);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_Floor_ArrayPushPop);

void BM_Floor_FencedArrayPushPop(benchmark::State& state) {
  std::array<Item, kBurst> items;
  std::array<Item*, 256> stack;
  std::atomic<size_t> published{0};
  size_t top = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      stack[top++] = &items[i];
      benchmark::ClobberMemory();
    }
    for (int i = 0; i < kBurst; ++i) {
      Item* it = top > 0 ? stack[--top] : nullptr;
      // The store-load order a Chase-Lev pop needs before it reads top.
      published.store(top, std::memory_order_seq_cst);
      benchmark::DoNotOptimize(it);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_Floor_FencedArrayPushPop);

void BM_WorkDeque_PushPop(benchmark::State& state) {
  std::array<Item, kBurst> items;
  WorkDeque<Item> d;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      bool ok = d.Push(&items[i]);
      benchmark::DoNotOptimize(ok);
    }
    for (int i = 0; i < kBurst; ++i) {
      Item* it = d.Pop();
      benchmark::DoNotOptimize(it);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_WorkDeque_PushPop);

void BM_WorkDeque_PublishedPushPop(benchmark::State& state) {
  std::array<Item, kBurst> items;
  WorkDeque<Item> d;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      bool ok = d.Push(&items[i]);
      d.Publish();
      benchmark::DoNotOptimize(ok);
    }
    for (int i = 0; i < kBurst; ++i) {
      Item* it = d.Pop();
      benchmark::DoNotOptimize(it);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_WorkDeque_PublishedPushPop);

void BM_WorkDeque_Steal(benchmark::State& state) {
  std::array<Item, kBurst> items;
  WorkDeque<Item> d;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      bool ok = d.Push(&items[i]);
      benchmark::DoNotOptimize(ok);
    }
    d.Publish();  // one release store per burst
    for (int i = 0; i < kBurst; ++i) {
      Item* it = d.Steal();
      benchmark::DoNotOptimize(it);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_WorkDeque_Steal);

void BM_WorkDeque_StealBatch(benchmark::State& state) {
  std::array<Item, kBurst> items;
  std::array<Item*, 32> loot;
  WorkDeque<Item> d;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      bool ok = d.Push(&items[i]);
      benchmark::DoNotOptimize(ok);
    }
    d.Publish();  // one release store per burst
    while (size_t n = d.StealBatch(loot.data(), loot.size())) {
      benchmark::DoNotOptimize(loot[n - 1]);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_WorkDeque_StealBatch);

// The contended runs: each iteration the owner pushes kTasks tasks (waiting
// for room when the queue is full) while the thieves steal them all; the
// iteration ends when every task has been stolen.  The owner does not pop,
// so every task goes through a contended steal.
constexpr int kTasks = 1024;

struct LockFreeQueue {
  WorkDeque<Item> d;
  // Published at once, as the Runtime does: the owner does not pop here, so
  // nothing else would share private items.
  bool Push(Item* it) {
    if (!d.Push(it)) return false;
    d.Publish();
    return true;
  }
  Item* Steal() { return d.Steal(); }
};

struct MutexQueue {
  std::mutex mu;
  std::deque<Item*> q;
  bool Push(Item* it) {
    std::lock_guard<std::mutex> l(mu);
    if (q.size() >= 256) return false;  // same bound as the WorkDeque
    q.push_back(it);
    return true;
  }
  Item* Steal() {
    std::lock_guard<std::mutex> l(mu);
    if (q.empty()) return nullptr;
    Item* it = q.front();
    q.pop_front();
    return it;
  }
};

template <class Queue>
void ContendedSteal(benchmark::State& state) {
  const int thieves = static_cast<int>(state.range(0));
  std::vector<Item> items(kTasks);
  Queue queue;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> stolen{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < thieves; ++t) {
    threads.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (Item* it = queue.Steal()) {
          benchmark::DoNotOptimize(it);
          stolen.fetch_add(1, std::memory_order_relaxed);
        } else {
          std::this_thread::yield();  // 2 cores: let the owner run
        }
      }
    });
  }
  int64_t target = 0;
  for (auto _ : state) {
    for (int i = 0; i < kTasks; ++i) {
      while (!queue.Push(&items[i])) std::this_thread::yield();
    }
    target += kTasks;
    while (stolen.load(std::memory_order_relaxed) < target) {
      std::this_thread::yield();
    }
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  state.SetItemsProcessed(state.iterations() * kTasks);
}

void BM_WorkDeque_ContendedSteal(benchmark::State& state) {
  ContendedSteal<LockFreeQueue>(state);
}
BENCHMARK(BM_WorkDeque_ContendedSteal)
    ->ArgName("thieves")
    ->Arg(1)
    ->Arg(3)
    ->Arg(7)
    ->UseRealTime();

void BM_Peer_MutexDeque_ContendedSteal(benchmark::State& state) {
  ContendedSteal<MutexQueue>(state);
}
BENCHMARK(BM_Peer_MutexDeque_ContendedSteal)
    ->ArgName("thieves")
    ->Arg(1)
    ->Arg(3)
    ->Arg(7)
    ->UseRealTime();

}  // namespace
}  // namespace spindle::steal
