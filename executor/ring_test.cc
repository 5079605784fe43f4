// executor/ring_test.cc: the FIFO ring a Channel buffers in keeps its order
// through wrap-around at both ends and through growth while wrapped.

#include "executor/internal/ring.h"

#include <deque>
#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace spindle::executor_internal {
namespace {

// Drives a ring and a std::deque with the same operations; they must agree.
class RingModel {
 public:
  explicit RingModel(size_t capacity) : ring_(capacity) {}
  void PushBack(int v) {
    ring_.PushBack(std::make_unique<int>(v));
    model_.push_back(v);
  }
  void PushFront(int v) {
    ring_.PushFront(std::make_unique<int>(v));
    model_.push_front(v);
  }
  void PopFront() {
    ASSERT_FALSE(model_.empty());
    std::unique_ptr<int> got = ring_.PopFront();
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(*got, model_.front());
    model_.pop_front();
    EXPECT_EQ(ring_.size(), model_.size());
  }
  void Drain() {
    while (!model_.empty()) PopFront();
    EXPECT_TRUE(ring_.empty());
  }

 private:
  Ring<std::unique_ptr<int>> ring_;
  std::deque<int> model_;
};

TEST(RingTest, KeepsOrderThroughManyWrapsAtEveryCapacity) {
  for (size_t cap = 1; cap <= 7; ++cap) {
    SCOPED_TRACE(cap);
    RingModel m(cap);
    int next = 0;
    // Fill to 1..cap, then take all but one: the head walks round the ring.
    for (int round = 0; round < 20; ++round) {
      const size_t fill = 1 + static_cast<size_t>(round) % cap;
      for (size_t i = 0; i < fill; ++i) m.PushBack(next++);
      for (size_t i = 0; i + 1 < fill; ++i) m.PopFront();
    }
    m.Drain();
  }
}

TEST(RingTest, PushFrontWrapsBelowSlotZero) {
  RingModel m(4);
  m.PushFront(1);  // head 0 -> 3
  m.PushFront(0);  // 3 -> 2
  m.PushBack(2);   // wraps to slot 0
  m.PopFront();
  m.PushFront(-1);
  m.Drain();
}

TEST(RingTest, GrowsWhileWrappedAndKeepsOrder) {
  RingModel m(3);
  m.PushBack(0);
  m.PushBack(1);
  m.PopFront();
  m.PushBack(2);
  m.PushBack(3);   // full and wrapped: head 1, slots 1, 2, 0
  m.PushFront(-1); // grows to 6, then pushes in front
  m.PushBack(4);
  m.PushBack(5);
  m.PushBack(6);   // grows again
  m.Drain();
}

}  // namespace
}  // namespace spindle::executor_internal
