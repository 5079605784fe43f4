// QueueSet::SliceCursor: the run loop's way through one queue's slice
// (Next, Requeue, YieldNext, RequeueHandOff, TakesHandOff, Close), against
// what Pick / Push would do.
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "sched/queue_set.h"
#include "sched/queue_set_testing.h"
#include "sched/scheduler.h"

namespace spindle::sched {
namespace {

using namespace queue_set_testing;  // NOLINT: test helpers

TEST(SliceCursorTest, YieldNextRotatesTheQueueInFifoOrder) {
  QueueSet qs(TestConfig());
  const uint16_t q = *qs.AddQueue(1, 1);
  std::vector<TaskNode> nodes(4);
  for (TaskNode& n : nodes) qs.Push(q, &n);
  TaskNode* t = qs.Pick();
  ASSERT_EQ(t, &nodes[0]);
  QueueSet::SliceCursor slice = qs.CurrentSlice();
  // Each task yields in turn: the queue comes round in order, twice.
  std::vector<TaskNode*> order;
  for (int i = 0; i < 8; ++i) {
    t = slice.YieldNext(t);
    ASSERT_NE(t, nullptr);
    EXPECT_FALSE(t->queued);
    order.push_back(t);
    EXPECT_EQ(qs.Size(), 3u);  // The running task is not queued.
  }
  for (int i = 0; i < 8; ++i) EXPECT_EQ(order[i], &nodes[(i + 1) % 4]) << i;
  slice.Requeue(t);
  slice.Close(8);
  qs.ChargeSlice(q, 100, 9);
  EXPECT_EQ(qs.Size(), 4u);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  // One pick by Pick and eight by the cursor; polls as charged.
  EXPECT_EQ(qs.Stats(q).picks, 9u);
  EXPECT_EQ(qs.Stats(q).polls, 9u);
}

TEST(SliceCursorTest, YieldNextOfTheOnlyTaskGivesItBack) {
  QueueSet qs(TestConfig());
  const uint16_t q = *qs.AddQueue(1, 1);
  TaskNode only;
  qs.Push(q, &only);
  ASSERT_EQ(qs.Pick(), &only);
  QueueSet::SliceCursor slice = qs.CurrentSlice();
  EXPECT_EQ(slice.YieldNext(&only), &only);
  EXPECT_FALSE(only.queued);
  EXPECT_TRUE(qs.Empty());
  EXPECT_EQ(slice.Next(), nullptr);  // Nothing else queued.
  qs.ChargeSlice(q, 10, 2);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
}

TEST(SliceCursorTest, YieldNextAfterAPreemptingWakeRequeuesAndStops) {
  // B (share 9) has the nearer deadline: a wake into B while A's slice runs
  // asks for a preemption, and the cursor stops there.
  QueueSet qs(PreemptionConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 9);
  TaskNode a1, a2, b1;
  qs.Push(a, &a1);
  qs.Push(a, &a2);
  ASSERT_EQ(qs.Pick(), &a1);
  QueueSet::SliceCursor slice = qs.CurrentSlice();
  qs.Push(b, &b1);  // Woken by a1's poll.
  ASSERT_TRUE(qs.ShouldPreempt());
  EXPECT_EQ(slice.YieldNext(&a1), nullptr);
  EXPECT_TRUE(a1.queued);  // Requeued behind a2.
  EXPECT_EQ(qs.Size(), 3u);
  slice.Close(0);
  qs.ChargeSlice(a, 10, 1);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  EXPECT_EQ(qs.Pick(), &b1);  // EEVDF picks the woken queue.
  qs.Charge(&b1, 10);
  EXPECT_EQ(qs.Pick(), &a2);
  qs.Charge(&a2, 10);
  EXPECT_EQ(qs.Pick(), &a1);
}

TEST(SliceCursorTest, YieldNextKeepsPriorityOrder) {
  // A normal task that yields goes behind the normal tasks but never ahead
  // of a queued high one.
  QueueSet qs(TestConfig());
  const uint16_t q = *qs.AddQueue(1, 1);
  TaskNode n1, n2, high;
  high.priority = Priority::kHigh;
  qs.Push(q, &n1);
  qs.Push(q, &n2);
  ASSERT_EQ(qs.Pick(), &n1);
  QueueSet::SliceCursor slice = qs.CurrentSlice();
  qs.Push(q, &high);  // Woken during n1's poll, same queue.
  EXPECT_EQ(slice.YieldNext(&n1), &high);
  EXPECT_EQ(slice.YieldNext(&high), &high);  // Still the most urgent.
  EXPECT_EQ(slice.Next(), &n2);
  EXPECT_EQ(slice.Next(), &n1);
  EXPECT_EQ(slice.Next(), nullptr);
  qs.ChargeSlice(q, 10, 4);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
}

// WakeSole's fast path: only a normal-priority task into a FIFO queue that
// is runnable already; anything else is left to Push, untouched.
TEST(QueueSetTest, TryPushToRunnableFifoTakesOnlyTheCommonCase) {
  QueueSet qs(TestConfig());
  const uint16_t fifo = *qs.AddQueue(1, 1);
  const uint16_t las = *qs.AddQueue(2, 1, std::make_unique<LasScheduler>());
  TaskNode first, normal, high, other;
  // Not runnable yet (empty): Push must join it to the tree.
  EXPECT_FALSE(qs.TryPushToRunnableFifo(fifo, &first));
  EXPECT_FALSE(first.queued);
  qs.Push(fifo, &first);
  EXPECT_TRUE(qs.TryPushToRunnableFifo(fifo, &normal));
  EXPECT_TRUE(normal.queued);
  EXPECT_EQ(normal.queue_index, fifo);
  high.priority = Priority::kHigh;
  EXPECT_FALSE(qs.TryPushToRunnableFifo(fifo, &high));
  EXPECT_FALSE(high.queued);
  qs.Push(fifo, &high);
  // Not a FIFO: the queue's own scheduler decides.
  TaskNode seed;
  qs.Push(las, &seed);
  EXPECT_FALSE(qs.TryPushToRunnableFifo(las, &other));
  EXPECT_FALSE(other.queued);
  EXPECT_EQ(qs.Size(), 4u);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  // The FIFO's order: high first, then first and normal as pushed.
  std::vector<TaskNode*> fifo_order;
  for (TaskNode* t = qs.Pick(); t != nullptr; t = qs.Pick()) {
    if (t->queue_index == fifo) fifo_order.push_back(t);
  }
  EXPECT_EQ(fifo_order, (std::vector<TaskNode*>{&high, &first, &normal}));
}

// The executor's hand-off slot holds a task woken while the queue was
// empty: RequeueHandOff puts it back where Push would have put it then,
// ahead of the normal tasks queued since and behind the high ones;
// TakesHandOff says whether it may run before Next()'s task.
TEST(SliceCursorTest, AHandOffGoesBackAheadOfLaterNormalTasks) {
  QueueSet qs(TestConfig());
  const uint16_t q = *qs.AddQueue(1, 1);
  TaskNode running, handed, later, high;
  qs.Push(q, &running);
  ASSERT_EQ(qs.Pick(), &running);
  QueueSet::SliceCursor slice = qs.CurrentSlice();
  ASSERT_TRUE(slice.fifo()->IsEmpty());  // `handed` is woken now
  EXPECT_TRUE(slice.TakesHandOff());
  slice.Requeue(&later);  // queued after it
  EXPECT_TRUE(slice.TakesHandOff());
  high.priority = Priority::kHigh;
  qs.Push(q, &high);
  EXPECT_FALSE(slice.TakesHandOff());  // high runs first
  handed.queue_index = q;
  slice.RequeueHandOff(&handed);
  EXPECT_TRUE(handed.queued);
  EXPECT_EQ(qs.Size(), 3u);
  EXPECT_TRUE(qs.CheckInvariants().ok()) << qs.CheckInvariants();
  EXPECT_EQ(slice.YieldNext(&running), &high);
  EXPECT_EQ(slice.Next(), &handed);
  EXPECT_EQ(slice.Next(), &later);
  EXPECT_EQ(slice.Next(), &running);
  EXPECT_EQ(slice.Next(), nullptr);
}

TEST(SliceCursorTest, NoHandOffOncePreemptionIsDue) {
  QueueSet qs(PreemptionConfig());
  const uint16_t a = *qs.AddQueue(1, 1);
  const uint16_t b = *qs.AddQueue(2, 9);
  TaskNode a1, b1;
  qs.Push(a, &a1);
  ASSERT_EQ(qs.Pick(), &a1);
  QueueSet::SliceCursor slice = qs.CurrentSlice();
  EXPECT_TRUE(slice.TakesHandOff());
  qs.Push(b, &b1);  // a wake that preempts the slice
  ASSERT_TRUE(qs.ShouldPreempt());
  EXPECT_FALSE(slice.TakesHandOff());
}

}  // namespace
}  // namespace spindle::sched
