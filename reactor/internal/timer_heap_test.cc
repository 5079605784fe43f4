#include "reactor/internal/timer_heap.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace spindle::reactor::reactor_internal {
namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__) || \
    !defined(NDEBUG)
constexpr int kMany = 200'000;
#else
constexpr int kMany = 1'000'000;
#endif

TEST(TimerHeapTest, PopsInDeadlineOrder) {
  std::mt19937_64 rng(42);
  std::vector<Operation> ops(1000);
  TimerHeap heap;
  for (Operation& op : ops) {
    S(&op).deadline_ns = rng() % 10'000;
    heap.Push(&op);
  }
  uint64_t last = 0;
  size_t popped = 0;
  while (!heap.empty()) {
    Operation* op = heap.Pop();
    EXPECT_GE(S(op).deadline_ns, last);
    EXPECT_EQ(S(op).heap_index, kNoHeapIndex);
    last = S(op).deadline_ns;
    ++popped;
  }
  EXPECT_EQ(popped, ops.size());
}

TEST(TimerHeapTest, RemoveFromTheMiddleKeepsOrder) {
  std::mt19937_64 rng(7);
  std::vector<Operation> ops(2000);
  TimerHeap heap;
  for (Operation& op : ops) {
    S(&op).deadline_ns = rng() % 100'000;
    heap.Push(&op);
  }
  // Remove every third one.
  size_t removed = 0;
  for (size_t i = 0; i < ops.size(); i += 3) {
    heap.Remove(&ops[i]);
    ++removed;
  }
  EXPECT_EQ(heap.size(), ops.size() - removed);
  std::vector<uint64_t> got;
  while (!heap.empty()) got.push_back(S(heap.Pop()).deadline_ns);
  std::vector<uint64_t> want;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (i % 3 != 0) want.push_back(S(&ops[i]).deadline_ns);
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
}

TEST(TimerHeapTest, EarliestDeadlineOfEmptyHeapIsNever) {
  TimerHeap heap;
  EXPECT_EQ(heap.EarliestDeadline(), UINT64_MAX);
}

// A million pending timers: pushes and pops stay cheap (O(log n)) and
// memory is one pointer per timer.  Asserts the order, not the time.
TEST(TimerHeapTest, AMillionPendingTimers) {
  std::mt19937_64 rng(1);
  std::unique_ptr<Operation[]> ops(new Operation[kMany]);
  TimerHeap heap;
  for (int i = 0; i < kMany; ++i) {
    S(&ops[i]).deadline_ns = rng();
    heap.Push(&ops[i]);
  }
  EXPECT_EQ(heap.size(), static_cast<size_t>(kMany));
  uint64_t last = 0;
  for (int i = 0; i < kMany; ++i) {
    Operation* op = heap.Pop();
    ASSERT_GE(S(op).deadline_ns, last);
    last = S(op).deadline_ns;
  }
  EXPECT_TRUE(heap.empty());
}

}  // namespace
}  // namespace spindle::reactor::reactor_internal
