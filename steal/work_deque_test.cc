#include "steal/work_deque.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace spindle::steal {
namespace {

struct Item {
  int id = 0;
};

TEST(WorkDequeTest, PopIsLifoStealIsFifo) {
  WorkDeque<Item> d;
  Item items[4];
  for (auto& it : items) ASSERT_TRUE(d.Push(&it));
  d.Publish();
  EXPECT_EQ(d.size(), 4u);
  EXPECT_EQ(d.Pop(), &items[3]);
  EXPECT_EQ(d.Steal(), &items[0]);
  EXPECT_EQ(d.Steal(), &items[1]);
  EXPECT_EQ(d.Pop(), &items[2]);
  EXPECT_EQ(d.Pop(), nullptr);
  EXPECT_EQ(d.Steal(), nullptr);
  EXPECT_TRUE(d.empty());
}

// Newest() names what the next Pop takes, private or published; once
// thieves took everything its value is stale and Pop finds the deque empty.
TEST(WorkDequeTest, NewestIsWhatPopTakesNext) {
  WorkDeque<Item, 8> d;
  Item items[3];
  EXPECT_EQ(d.Newest(), nullptr);  // never pushed
  ASSERT_TRUE(d.Push(&items[0]));
  ASSERT_TRUE(d.Push(&items[1]));
  EXPECT_EQ(d.Newest(), &items[1]);  // private
  d.Publish();
  EXPECT_EQ(d.Newest(), &items[1]);  // published
  ASSERT_TRUE(d.Push(&items[2]));
  EXPECT_EQ(d.Newest(), &items[2]);
  EXPECT_EQ(d.Pop(), &items[2]);
  EXPECT_EQ(d.Newest(), &items[1]);
  EXPECT_EQ(d.Steal(), &items[0]);
  EXPECT_EQ(d.Steal(), &items[1]);
  EXPECT_EQ(d.Newest(), &items[1]);  // stale: the deque is empty
  EXPECT_EQ(d.Pop(), nullptr);
}

TEST(WorkDequeTest, PushOnFullIsRefusedAndChangesNothing) {
  WorkDeque<Item, 4> d;
  Item items[5];
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(d.Push(&items[i]));
  EXPECT_FALSE(d.Push(&items[4]));
  EXPECT_EQ(d.size(), 4u);
  d.Publish();
  EXPECT_EQ(d.Steal(), &items[0]);
  EXPECT_TRUE(d.Push(&items[4]));
  EXPECT_EQ(d.Pop(), &items[4]);
}

TEST(WorkDequeTest, PushOrOverflowMovesOldestHalfThenTheItem) {
  WorkDeque<Item, 8> d;
  Item items[9];
  for (int i = 0; i < 8; ++i)
    d.PushOrOverflow(&items[i],
                     [](Item**, size_t) { FAIL() << "no overflow expected"; });
  std::vector<Item*> moved;
  d.PushOrOverflow(&items[8], [&](Item** batch, size_t n) {
    moved.assign(batch, batch + n);
  });
  ASSERT_EQ(moved.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(moved[i], &items[i]);
  EXPECT_EQ(moved[4], &items[8]);
  EXPECT_EQ(d.size(), 4u);
  EXPECT_EQ(d.Steal(), &items[4]);
}

TEST(WorkDequeTest, StealBatchTakesHalfRoundedUpBoundedByMax) {
  WorkDeque<Item, 16> d;
  Item items[7];
  for (auto& it : items) ASSERT_TRUE(d.Push(&it));
  d.Publish();
  Item* out[16];
  EXPECT_EQ(d.StealBatch(out, 0), 0u);
  EXPECT_EQ(d.StealBatch(out, 16), 4u);  // ceil(7 / 2)
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], &items[i]);
  EXPECT_EQ(d.StealBatch(out, 1), 1u);  // max bounds it
  EXPECT_EQ(out[0], &items[4]);
  EXPECT_EQ(d.StealBatch(out, 16), 1u);  // ceil(2 / 2)
  EXPECT_EQ(d.StealBatch(out, 16), 1u);  // the last one
  EXPECT_EQ(d.StealBatch(out, 16), 0u);
}

TEST(WorkDequeTest, StealBatchIntoDequeKeepsOrderAndRespectsRoom) {
  WorkDeque<Item, 16> victim;
  WorkDeque<Item, 4> mine;
  Item items[12];
  for (auto& it : items) ASSERT_TRUE(victim.Push(&it));
  victim.Publish();
  Item other;
  ASSERT_TRUE(mine.Push(&other));
  // Half of 12 is 6, but `mine` has room for 3.
  EXPECT_EQ(victim.StealBatch(mine, 16), 3u);
  EXPECT_EQ(mine.size(), 4u);
  EXPECT_EQ(mine.Pop(), &items[2]);  // newest stolen on top
  EXPECT_EQ(mine.Pop(), &items[1]);
  EXPECT_EQ(mine.Pop(), &items[0]);
  EXPECT_EQ(mine.Pop(), &other);
  EXPECT_EQ(victim.size(), 9u);
}

TEST(WorkDequeTest, StolenLootIsPublishedInTheThiefsDeque) {
  WorkDeque<Item, 16> victim;
  WorkDeque<Item, 16> mine;
  Item items[4];
  for (auto& it : items) ASSERT_TRUE(victim.Push(&it));
  victim.Publish();
  ASSERT_EQ(victim.StealBatch(mine, 16), 2u);
  // A third thread can take the loot from `mine` without its owner acting.
  EXPECT_EQ(mine.Steal(), &items[0]);
}

TEST(WorkDequeTest, PrivateItemsAreStealableOnlyOncePublished) {
  WorkDeque<Item, 16> d;
  Item items[4];
  for (auto& it : items) ASSERT_TRUE(d.Push(&it));
  Item* out[4];
  EXPECT_EQ(d.Steal(), nullptr);
  EXPECT_EQ(d.StealBatch(out, 4), 0u);
  EXPECT_EQ(d.size(), 4u);  // private items count
  d.Publish();
  EXPECT_EQ(d.Steal(), &items[0]);
  EXPECT_EQ(d.Pop(), &items[3]);
  EXPECT_EQ(d.Pop(), &items[2]);
  EXPECT_EQ(d.Pop(), &items[1]);
  EXPECT_EQ(d.Pop(), nullptr);
}

TEST(WorkDequeTest, AThiefsRequestMakesTheOwnerShareTheOlderHalf) {
  WorkDeque<Item, 16> d;
  Item items[6];
  for (auto& it : items) ASSERT_TRUE(d.Push(&it));
  EXPECT_EQ(d.Steal(), nullptr);  // nothing public: asks the owner
  // The owner's next Pop answers, after taking its item: the older half of
  // the five private items left, rounded up (0, 1, 2).
  EXPECT_EQ(d.Pop(), &items[5]);
  Item* out[8];
  ASSERT_EQ(d.StealBatch(out, 8), 2u);  // half of the 3 published, rounded up
  EXPECT_EQ(out[0], &items[0]);
  EXPECT_EQ(out[1], &items[1]);
  EXPECT_EQ(d.Steal(), &items[2]);
  EXPECT_EQ(d.Steal(), nullptr);  // asks again
  EXPECT_EQ(d.Pop(), &items[4]);  // answers: shares 3, the one left
  EXPECT_EQ(d.Steal(), &items[3]);
  EXPECT_EQ(d.Pop(), nullptr);
  EXPECT_TRUE(d.empty());
}

TEST(WorkDequeTest, APushThatFindsTheRingFullAnswersARequest) {
  WorkDeque<Item, 4> d;
  Item items[5];
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(d.Push(&items[i]));
  EXPECT_EQ(d.Steal(), nullptr);  // asks
  EXPECT_FALSE(d.Push(&items[4]));  // full, but shares the older half
  EXPECT_EQ(d.Steal(), &items[0]);
  EXPECT_EQ(d.Steal(), &items[1]);
  EXPECT_EQ(d.Steal(), nullptr);
  EXPECT_TRUE(d.Push(&items[4]));  // the thieves made room
}

TEST(WorkDequeTest, NoRequestNoSharing) {
  WorkDeque<Item, 16> d;
  Item items[3];
  for (auto& it : items) ASSERT_TRUE(d.Push(&it));
  ASSERT_EQ(d.Pop(), &items[2]);
  ASSERT_TRUE(d.Push(&items[2]));
  // Nobody asked: everything is still private.
  Item* out[4];
  EXPECT_EQ(d.StealBatch(out, 4), 0u);
}

TEST(WorkDequeTest, NarrowIndicesWrapAround) {
  WorkDeque<Item, 8, uint8_t> d(/*first_index=*/250);
  Item items[8];
  for (int round = 0; round < 100; ++round) {
    for (auto& it : items) ASSERT_TRUE(d.Push(&it));
    EXPECT_FALSE(d.Push(&items[0]));
    EXPECT_EQ(d.size(), 8u);
    d.Publish();
    EXPECT_EQ(d.Steal(), &items[0]);
    EXPECT_EQ(d.Pop(), &items[7]);
    Item* out[8];
    EXPECT_EQ(d.StealBatch(out, 8), 3u);
    while (d.Pop() != nullptr) {
    }
    EXPECT_TRUE(d.empty());
  }
}

// Exactly-once under real concurrency: one owner doing random pushes (with
// overflow and publishing, or private until a thief asks) and pops, N
// thieves doing random steals and batch steals (half of them into their own
// deque, popped from there).
#if defined(__SANITIZE_THREAD__)
constexpr int kOwnerOps = 200'000;
#elif defined(__SANITIZE_ADDRESS__)
constexpr int kOwnerOps = 1'000'000;
#else
constexpr int kOwnerOps = 10'000'000;
#endif

class WorkDequeStressTest : public ::testing::TestWithParam<int> {};

TEST_P(WorkDequeStressTest, EveryItemTakenExactlyOnce) {
  const int thieves = GetParam();
  using Deque = WorkDeque<Item, 256>;
  auto items = std::make_unique<Item[]>(kOwnerOps);
  auto taken = std::make_unique<std::atomic<uint8_t>[]>(kOwnerOps);
  for (int i = 0; i < kOwnerOps; ++i) {
    items[i].id = i;
    taken[i].store(0, std::memory_order_relaxed);
  }
  auto take = [&](Item* it) {
    ASSERT_NE(it, nullptr);
    taken[it->id].fetch_add(1, std::memory_order_relaxed);
  };

  Deque deque;
  std::atomic<bool> done{false};
  absl::Notification go;
  std::vector<std::thread> threads;
  std::atomic<uint64_t> thief_ops{0};
  for (int t = 0; t < thieves; ++t) {
    threads.emplace_back([&, t] {
      std::minstd_rand rng(1000 + t);
      auto own = std::make_unique<Deque>();
      Item* buf[64];
      uint64_t ops = 0;
      go.WaitForNotification();
      // done is set after the owner's final drain; one more sweep after it.
      for (bool last = false; !last;) {
        last = done.load(std::memory_order_acquire);
        size_t got = 0;
        switch (rng() % 3) {
          case 0:
            if (Item* it = deque.Steal()) {
              take(it);
              got = 1;
            }
            break;
          case 1:
            got = deque.StealBatch(buf, 1 + rng() % 64);
            for (size_t i = 0; i < got; ++i) take(buf[i]);
            break;
          default:
            got = deque.StealBatch(*own, 1 + rng() % 64);
            while (Item* it = own->Pop()) take(it);
        }
        ++ops;
        // Two cores, up to eight threads: let the owner run.
        if (got == 0) std::this_thread::yield();
      }
      thief_ops.fetch_add(ops, std::memory_order_relaxed);
    });
  }

  std::minstd_rand rng(7);
  int pushed = 0;
  go.Notify();
  for (int op = 0; op < kOwnerOps && pushed < kOwnerOps; ++op) {
    const uint32_t dice = rng() % 100;
    if (dice < 30) {
      deque.PushOrOverflow(&items[pushed++], [&](Item** batch, size_t n) {
        for (size_t i = 0; i < n; ++i) take(batch[i]);
      });
    } else if (dice < 55) {
      // Private until a thief asks (or the next PushOrOverflow).
      if (!deque.Push(&items[pushed])) {
        deque.Publish();
        continue;
      }
      ++pushed;
    } else if (Item* it = deque.Pop()) {
      take(it);
    }
  }
  while (Item* it = deque.Pop()) take(it);
  done.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  while (Item* it = deque.Pop()) take(it);

  int wrong = 0;
  for (int i = 0; i < kOwnerOps; ++i) {
    const int want = i < pushed ? 1 : 0;
    if (taken[i].load(std::memory_order_relaxed) != want && ++wrong < 10) {
      ADD_FAILURE() << "item " << i << " taken "
                    << int{taken[i].load(std::memory_order_relaxed)}
                    << " times, want " << want;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(pushed, kOwnerOps / 2);
  RecordProperty("thief_ops", std::to_string(thief_ops.load()));
}

INSTANTIATE_TEST_SUITE_P(Thieves, WorkDequeStressTest,
                         ::testing::Values(1, 3, 7), [](const auto& info) {
                           return "thieves" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace spindle::steal
