// Costs of the sched layer beside an intrusive-list floor.
//   ./bazelw run -c opt //sched:sched_benchmark -- --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
//
// Push+pop benchmarks keep 64 tasks queued and move one task through the
// scheduler per iteration.  BM_QueueSet_PickCharge runs the executor's cycle
// on the default config (sched_latency 2 ms, min_slice 100 us) with two
// tasks per queue and shares 1 + 37i mod 1000: Pick, Charge with a poll time
// of 1..20 us (uniform, from a fixed pseudo-random table, in TSC ticks), Push
// back.  The counter polls_per_slice says how often a slice ends, i.e. how
// often the EEVDF choice itself runs.
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "sched/sched.h"
#include "timing/clock.h"

namespace spindle::sched {
namespace {

constexpr int kQueued = 64;

// The floor: the least work a FIFO of intrusive nodes can do (singly linked,
// no size, no `queued` flag, no O(1) remove).
struct FloorList {
  TaskNode* head = nullptr;
  TaskNode* tail = nullptr;
  void Push(TaskNode* t) {
    t->next = nullptr;
    if (tail != nullptr) {
      tail->next = t;
    } else {
      head = t;
    }
    tail = t;
  }
  TaskNode* Pop() {
    TaskNode* t = head;
    if (t == nullptr) return nullptr;
    head = t->next;
    if (head == nullptr) tail = nullptr;
    return t;
  }
};

// Every list and scheduler here lives on the heap, as a QueueSet's do: a
// local would be addressed off the frame pointer, which some CPUs (AMD Zen's
// memory renaming) forward at zero latency, flattering whichever variant the
// compiler happens to leave on the stack.
void BM_Floor_IntrusiveListPushPop(benchmark::State& state) {
  std::vector<TaskNode> nodes(kQueued);
  auto owned = std::make_unique<FloorList>();
  FloorList& list = *owned;
  benchmark::DoNotOptimize(&list);
  for (auto& n : nodes) list.Push(&n);
  for (auto _ : state) {
    TaskNode* t = list.Pop();
    benchmark::DoNotOptimize(t);
    list.Push(t);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Floor_IntrusiveListPushPop);

template <typename S>
void PushPopLoop(benchmark::State& state, S& s, std::vector<TaskNode>& nodes) {
  for (auto& n : nodes) s.Push(&n);
  for (auto _ : state) {
    TaskNode* t = s.Pop();
    benchmark::DoNotOptimize(t);
    s.Push(t);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Fifo_PushPop(benchmark::State& state) {
  std::vector<TaskNode> nodes(kQueued);
  auto s = std::make_unique<FifoScheduler>();
  PushPopLoop(state, *s, nodes);
}
BENCHMARK(BM_Fifo_PushPop);

// The same with high, normal and low tasks mixed (the lists beside the
// normal one are used).
void BM_Fifo_PushPopMixedPriorities(benchmark::State& state) {
  std::vector<TaskNode> nodes(kQueued);
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].priority = static_cast<Priority>(i % 3);
  }
  auto s = std::make_unique<FifoScheduler>();
  PushPopLoop(state, *s, nodes);
}
BENCHMARK(BM_Fifo_PushPopMixedPriorities);

void BM_Lifo_PushPop(benchmark::State& state) {
  std::vector<TaskNode> nodes(kQueued);
  auto s = std::make_unique<LifoScheduler>();
  PushPopLoop(state, *s, nodes);
}
BENCHMARK(BM_Lifo_PushPop);

void BM_Priority_PushPop(benchmark::State& state) {
  std::vector<TaskNode> nodes(kQueued);
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].priority = static_cast<Priority>(i % 3);
  }
  auto s = std::make_unique<PriorityScheduler>(/*aging_pops=*/64);
  PushPopLoop(state, *s, nodes);
}
BENCHMARK(BM_Priority_PushPop);

void BM_Las_PushPop(benchmark::State& state) {
  std::vector<TaskNode> nodes(kQueued);
  auto owned = std::make_unique<LasScheduler>(kQueued);
  LasScheduler& s = *owned;
  for (auto& n : nodes) s.Push(&n);
  uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    TaskNode* t = s.Pop();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t->attained_service += x & 1023;  // As QueueSet::Charge would.
    s.Push(t);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Las_PushPop);

void BM_QueueSet_PickCharge(benchmark::State& state) {
  const int queues = static_cast<int>(state.range(0));
  QueueSet qs(QueueSetConfig::Default());
  std::vector<TaskNode> nodes(2 * queues);
  for (int i = 0; i < queues; ++i) {
    const uint16_t q = *qs.AddQueue(i, 1 + (i * 37) % 1000);
    qs.Push(q, &nodes[2 * i]);
    qs.Push(q, &nodes[2 * i + 1]);
  }
  std::array<uint64_t, 256> service;
  uint64_t x = 88172645463325252ull;
  for (auto& s : service) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s = timing::TscClock::FromNanos(1'000 + x % 19'001);  // 1..20 us.
  }
  uint32_t k = 0;
  for (auto _ : state) {
    TaskNode* t = qs.Pick();
    qs.Charge(t, service[k++ & 255]);
    qs.Push(t->queue_index, t);
  }
  state.SetItemsProcessed(state.iterations());
  uint64_t polls = 0;
  uint64_t exhaustions = 0;
  for (const QueueStats& s : qs.Snapshot()) {
    polls += s.polls;
    exhaustions += s.slice_exhaustions;
  }
  state.counters["polls_per_slice"] =
      static_cast<double>(polls) / static_cast<double>(exhaustions + 1);
  if (!qs.CheckInvariants().ok()) state.SkipWithError("invariants broken");
}
BENCHMARK(BM_QueueSet_PickCharge)->ArgName("queues")->Arg(1)->Arg(2)->Arg(16)->Arg(256);

}  // namespace
}  // namespace spindle::sched

BENCHMARK_MAIN();
