// executor/handoff_test.cc: the hand-off slot (LocalExecutor::handoff_).
// A task that a sync primitive wakes inside a poll while its queue is empty
// runs right after that poll without a trip through the queue; the order is
// always the queue's: tasks queued earlier run first, a task of high
// priority queued later runs first, normal ones queued later run after it;
// an abort cancels it at once and its message is kept.
//
// Whether a wake takes the slot depends on the slice: a queue whose slices
// hold one poll (its first slices, or after a slow one) takes none.  The
// order tests hold either way; the count of hand-offs shows the slot works.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/sync.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeChannel;
using executor_testing::MakeExecutor;
using executor_testing::Settle;

constexpr int kRounds = 200;

Task<> Receive(Channel<int>* ch, std::string* log) {
  std::optional<int> v = co_await ch->Recv();
  EXPECT_EQ(v, 1);
  *log += 'A';
}

Task<> SendOne(Channel<int>* ch, std::string* log) {
  EXPECT_TRUE(co_await ch->Send(1));
  *log += 'S';
}

Task<> Mark(std::string* log, char c) {
  *log += c;
  co_return;
}

// One round of a test: `a` waits in ch->Recv() (logging 'A' when it gets
// the message); the round's body does the rest.
struct Round {
  LocalExecutor* ex;
  Channel<int>* ch;
  JoinHandle<void>* a;
  std::string* log;
  int index;
};

// Runs `body(round)` kRounds times on a fresh executor, each round with a
// new receiver waiting; returns the executor's hand-offs.  `body` is a
// captureless coroutine (a capturing coroutine lambda is unsafe).
uint64_t RunRounds(Task<> (*body)(Round)) {
  auto ex = MakeExecutor();
  return ex->BlockOn([](LocalExecutor* ex,
                        Task<> (*body)(Round)) -> Task<uint64_t> {
    auto ch = MakeChannel<int>(1);
    const uint64_t before = ex->Stats().handoffs;
    for (int i = 0; i < kRounds; ++i) {
      std::string log;
      JoinHandle<void> a = ex->Spawn(Receive(ch.get(), &log));
      co_await Settle();  // a waits in Recv
      co_await body(Round{ex, ch.get(), &a, &log, i});
    }
    co_return ex->Stats().handoffs - before;
  }(ex.get(), body));
}

TEST(HandOffTest, ATaskQueuedBeforeTheWakeRunsFirst) {
  const uint64_t handoffs = RunRounds([](Round r) -> Task<> {
    JoinHandle<void> s = r.ex->Spawn(SendOne(r.ch, r.log));
    JoinHandle<void> x = r.ex->Spawn(Mark(r.log, 'X'));
    co_await *r.a;
    co_await s;
    co_await x;
    // s hands the message to a; x was queued before a was woken.
    EXPECT_EQ(*r.log, "SXA") << "round " << r.index;
  });
  EXPECT_EQ(handoffs, 0u);  // the queue was never empty
}

// Hands the message to the receiver (its queue empty), then queues a
// normal task and a task of high priority behind it.
Task<> SendThenSpawn(LocalExecutor* ex, Channel<int>* ch, std::string* log,
                     JoinHandle<void>* normal, JoinHandle<void>* high) {
  EXPECT_TRUE(co_await ch->Send(1));
  *log += 'S';
  *normal = ex->Spawn(Mark(log, 'N'));
  SpawnOptions o;
  o.priority = Priority::kHigh;
  *high = ex->Spawn(Mark(log, 'H'), o);
}

TEST(HandOffTest, TasksQueuedAfterTheWakeKeepTheQueuesOrder) {
  RunRounds([](Round r) -> Task<> {
    JoinHandle<void> normal, high;
    co_await r.ex->Spawn(SendThenSpawn(r.ex, r.ch, r.log, &normal, &high));
    co_await *r.a;
    co_await normal;
    co_await high;
    // High priority first; then a, woken before the normal task came.
    EXPECT_EQ(*r.log, "SHAN") << "round " << r.index;
  });
}

Task<> SendThenAbort(Channel<int>* ch, JoinHandle<void>* receiver,
                     std::optional<int>* back) {
  EXPECT_TRUE(co_await ch->Send(1));  // handed to the receiver
  receiver->Abort();                   // before it ran
  *back = ch->TryRecv();               // given back by its cancellation
}

TEST(HandOffTest, AnAbortCancelsAHandedOffTaskAtOnceAndKeepsItsMessage) {
  const uint64_t handoffs = RunRounds([](Round r) -> Task<> {
    std::optional<int> back;
    co_await r.ex->Spawn(SendThenAbort(r.ch, r.a, &back));
    EXPECT_EQ(back, 1) << "round " << r.index;
    EXPECT_EQ(r.a->status(), JoinStatus::kCancelled) << "round " << r.index;
    EXPECT_EQ(*r.log, "") << "round " << r.index;
  });
  EXPECT_EQ(handoffs, 0u);  // every handed-off task was aborted
}

Task<int64_t> Bounce(Channel<int>* in, Channel<int>* out, int rounds,
                     bool serve) {
  int64_t sum = 0;
  for (int i = 0; i < rounds; ++i) {
    if (serve) {
      EXPECT_TRUE(co_await out->Send(i));
    }
    std::optional<int> v = co_await in->Recv();
    sum += v.value_or(-1);
    if (!serve) {
      EXPECT_TRUE(co_await out->Send(*v));
    }
  }
  co_return sum;
}

// Two tasks alone on an executor bouncing messages: every message but the
// last of a slice wakes the other task while its queue is empty.
TEST(HandOffTest, TwoTasksBouncingMessagesHandMostOfThemOff) {
  constexpr int kMessages = 2000;
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    auto ab = MakeChannel<int>(1);
    auto ba = MakeChannel<int>(1);
    const uint64_t before = ex->Stats().handoffs;
    JoinHandle<int64_t> a =
        ex->Spawn(Bounce(ba.get(), ab.get(), kMessages / 2, true));
    JoinHandle<int64_t> b =
        ex->Spawn(Bounce(ab.get(), ba.get(), kMessages / 2, false));
    const int64_t sum = kMessages / 2 * (kMessages / 2 - 1) / 2;
    EXPECT_EQ(co_await a, sum);
    EXPECT_EQ(co_await b, sum);
    EXPECT_GT(ex->Stats().handoffs - before, uint64_t{kMessages / 4});
  }(ex.get()));
}

}  // namespace
}  // namespace spindle
