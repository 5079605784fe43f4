// JoinHandles keep their executor's inbox alive through a biased reference
// count (executor/internal/handle_anchor.h): plain on the executor's thread
// inside its Run, atomic elsewhere.  These tests check which count a handle
// takes, that the inbox lives exactly as long as the executor or the last
// handle (a weak_ptr to it expires then, not before), and, under stress,
// handles dropped on other threads while the executor goes (the sanitizer
// configs catch a use after free, a double free or a leak).

#include "executor/internal/handle_anchor.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_internal::HandleAnchor;
using executor_internal::InboxOf;

constexpr int64_t kBias = HandleAnchor::kBias;

TEST(HandleAnchorTest, TheLastReferenceAfterRetireDropsWhatItKeeps) {
  auto keep = std::make_shared<int>(7);
  std::weak_ptr<int> watch = keep;
  auto anchor = std::make_unique<HandleAnchor>();
  // Unarmed: nothing to keep alive, no reference to take.
  EXPECT_EQ(HandleAnchor::Acquire(anchor.get()), nullptr);
  anchor->Arm(nullptr, std::move(keep));
  // No executor runs on this thread: the atomic count.
  HandleAnchor* a = HandleAnchor::Acquire(anchor.get());
  HandleAnchor* b = HandleAnchor::Acquire(anchor.get());
  ASSERT_EQ(a, anchor.get());
  ASSERT_EQ(b, anchor.get());
  EXPECT_EQ(anchor->shared_refs_for_testing(), kBias + 2);
  EXPECT_EQ(anchor->owner_refs_for_testing(), 0);
  HandleAnchor::Release(a);
  anchor->Retire();
  EXPECT_EQ(anchor->shared_refs_for_testing(), 1);
  EXPECT_FALSE(watch.expired()) << "a handle still holds the anchor";
  anchor->Retire();  // idempotent
  EXPECT_EQ(anchor->shared_refs_for_testing(), 1);
  HandleAnchor::Release(b);
  EXPECT_TRUE(watch.expired()) << "the last handle kept the reference";
  // Retired and unheld: a late acquisition gets nothing.
  EXPECT_EQ(HandleAnchor::Acquire(anchor.get()), nullptr);
}

TEST(HandleAnchorTest, RetireWithoutHandlesDropsAtOnce) {
  auto keep = std::make_shared<int>(7);
  std::weak_ptr<int> watch = keep;
  HandleAnchor anchor;
  anchor.Arm(nullptr, std::move(keep));
  anchor.Retire();
  EXPECT_TRUE(watch.expired());
}

Task<int> Seven() { co_return 7; }

// Spawns `n` children and keeps their handles in `out` (the caller drops
// them wherever the test wants).
Task<void> SpawnInto(int n, std::vector<JoinHandle<int>>* out,
                     int64_t* owner_refs_seen) {
  LocalExecutor* ex = CurrentExecutor();
  for (int i = 0; i < n; ++i) out->push_back(ex->Spawn(Seven()));
  *owner_refs_seen =
      InboxOf(*ex)->handle_anchor.owner_refs_for_testing();
  for (auto& h : *out) EXPECT_EQ(co_await h, 7);
}

TEST(HandleAnchorTest, HandlesInsideARunCountWithoutAtomics) {
  auto ex = executor_testing::MakeExecutor();
  const HandleAnchor& anchor = InboxOf(*ex)->handle_anchor;
  std::vector<JoinHandle<int>> handles;
  int64_t seen = 0;
  ex->BlockOn(SpawnInto(10, &handles, &seen));
  EXPECT_EQ(seen, 10) << "spawns inside the Run took the plain count";
  EXPECT_EQ(anchor.shared_refs_for_testing(), kBias);
  // Dropped outside the Run (no executor runs here): the atomic count,
  // which goes below the bias; the sum stays right.
  handles.clear();
  EXPECT_EQ(anchor.owner_refs_for_testing(), 10);
  EXPECT_EQ(anchor.shared_refs_for_testing(), kBias - 10);
  // A spawn outside a Run: atomic.
  JoinHandle<int> outside = ex->Spawn(Seven());
  EXPECT_EQ(anchor.shared_refs_for_testing(), kBias - 9);
  EXPECT_EQ(ex->BlockOn([](JoinHandle<int>* h) -> Task<int> {
              co_return co_await *h;
            }(&outside)),
            7);
}

TEST(HandleAnchorTest, TheInboxLivesWhileAHandleOutlivesItsExecutor) {
  auto ex = executor_testing::MakeExecutor();
  std::weak_ptr<executor_internal::Inbox> inbox = InboxOf(*ex);
  std::vector<JoinHandle<int>> handles;
  int64_t seen = 0;
  ex->BlockOn(SpawnInto(3, &handles, &seen));
  // One queued, never run: cancelled by the destructor.
  JoinHandle<int> queued = ex->Spawn(Seven());
  ex.reset();
  ASSERT_FALSE(inbox.expired()) << "handles are still out";
  EXPECT_EQ(queued.status(), JoinStatus::kCancelled);
  queued.Abort();  // finished: touches nothing
  handles.erase(handles.begin());
  EXPECT_FALSE(inbox.expired());
  handles.clear();
  EXPECT_FALSE(inbox.expired()) << "`queued` still holds it";
  queued = JoinHandle<int>();
  EXPECT_TRUE(inbox.expired()) << "the last handle did not let go";
}

TEST(HandleAnchorTest, WithoutHandlesTheInboxGoesWithTheExecutor) {
  auto ex = executor_testing::MakeExecutor();
  std::weak_ptr<executor_internal::Inbox> inbox = InboxOf(*ex);
  std::vector<JoinHandle<int>> handles;
  int64_t seen = 0;
  ex->BlockOn(SpawnInto(5, &handles, &seen));
  handles.clear();
  ex.reset();
  EXPECT_TRUE(inbox.expired());
}

TEST(HandleAnchorTest, ASpawnerAfterTheExecutorGetsACancelledHandle) {
  auto ex = executor_testing::MakeExecutor();
  std::optional<Spawner> spawner(ex->GetSpawner());
  std::weak_ptr<executor_internal::Inbox> inbox = InboxOf(*ex);
  ex.reset();
  JoinHandle<int> late = spawner->Spawn(Seven());
  EXPECT_EQ(late.status(), JoinStatus::kCancelled);
  late.Abort();
  late = JoinHandle<int>();
  EXPECT_FALSE(inbox.expired()) << "the spawner holds the inbox";
  spawner.reset();
  EXPECT_TRUE(inbox.expired());
}

// Handles made on the executor's thread inside its Run, dropped and
// aborted by other threads while it runs and while it is destroyed.
TEST(HandleAnchorTest, HandlesDroppedOnOtherThreadsWhileTheExecutorGoes) {
  constexpr int kRounds = 20;
  constexpr int kPerRound = 400;
  constexpr int kThreads = 3;
  for (int round = 0; round < kRounds; ++round) {
    auto ex = executor_testing::MakeExecutor();
    std::weak_ptr<executor_internal::Inbox> inbox = InboxOf(*ex);
    std::mutex mu;
    std::vector<JoinHandle<int>> shared;
    std::atomic<bool> done{false};
    std::vector<std::thread> droppers;
    for (int t = 0; t < kThreads; ++t) {
      droppers.emplace_back([&, t] {
        while (true) {
          JoinHandle<int> h;
          {
            std::lock_guard<std::mutex> lock(mu);
            if (!shared.empty()) {
              h = std::move(shared.back());
              shared.pop_back();
            }
          }
          if (!h.valid()) {
            if (done.load(std::memory_order_acquire)) return;
            std::this_thread::yield();
            continue;
          }
          if ((t + round) % 2 == 0) h.Abort();
        }
      });
    }
    ex->BlockOn([](std::mutex* mu, std::vector<JoinHandle<int>>* shared,
                   int n) -> Task<void> {
      LocalExecutor* self = CurrentExecutor();
      for (int i = 0; i < n; ++i) {
        JoinHandle<int> h = self->Spawn(Seven());
        if (i % 4 == 0) {
          EXPECT_EQ(co_await h, 7);
          continue;  // dropped here: the plain count
        }
        std::lock_guard<std::mutex> lock(*mu);
        shared->push_back(std::move(h));
        if (i % 32 == 0) co_await YieldNow();
      }
    }(&mu, &shared, kPerRound));
    // Some handles are still queued for the droppers: the executor goes
    // while they are dropped.
    ex.reset();
    done.store(true, std::memory_order_release);
    for (auto& d : droppers) d.join();
    EXPECT_TRUE(shared.empty());
    EXPECT_TRUE(inbox.expired()) << "round " << round;
  }
}

// A Runtime's handles: made on a worker, dropped by a plain thread after
// the Runtime is gone (the sanitizers see the state freed once, at the
// last drop).
TEST(HandleAnchorTest, RuntimeHandlesOutliveTheRuntime) {
  auto rt = RuntimeBuilder().Workers(2).Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  std::vector<JoinHandle<int>> handles;
  (*rt)->BlockOn([](std::vector<JoinHandle<int>>* out) -> Task<void> {
    for (int i = 0; i < 100; ++i) {
      out->push_back(Runtime::Current()->Spawn(Seven()));
    }
    for (auto& h : *out) EXPECT_EQ(co_await h, 7);
  }(&handles));
  JoinHandle<int> outside = (*rt)->Spawn(Seven());
  EXPECT_EQ(outside.Join(), 7);
  rt->reset();
  for (auto& h : handles) {
    EXPECT_EQ(h.status(), JoinStatus::kCompleted);
    h.Abort();
  }
  std::thread([h = std::move(handles)]() mutable { h.clear(); }).join();
}

}  // namespace
}  // namespace spindle
