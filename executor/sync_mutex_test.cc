// The biased SyncMutex on real threads (protocol in
// executor/internal/sync_mutex.h; every interleaving of its steps is in
// sync_mutex_model_test.cc): it biases towards a thread that takes it
// kBiasAfter times in a row, a second thread revokes the bias, and mutual
// exclusion holds through the revocation under contention.  Under
// ThreadSanitizer no lock is biased (the heavy barrier is off): the same
// counts then check the exchange lock alone.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/internal/sync_mutex.h"
#include "gtest/gtest.h"

namespace spindle::executor_internal {
namespace {

TEST(SyncMutexTest, BiasesTowardsOneThreadThenARevocationKeepsCountsExact) {
  SyncMutex mu;
  uint64_t counter = 0;  // plain: guarded by mu
  constexpr int kSolo = 1000;
  constexpr int kEach = 200000;
  for (int i = 0; i < kSolo; ++i) {
    std::lock_guard<SyncMutex> g(mu);
    ++counter;
  }
  if (HeavyBarrierAvailable()) {
    EXPECT_EQ(mu.bias_owner(), tl_sync_thread_id);
  } else {
    EXPECT_EQ(mu.bias_owner(), SyncMutex::kNoBias);
  }
  EXPECT_FALSE(mu.revoked());

  std::atomic<bool> go{false};
  std::thread other([&] {
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    for (int i = 0; i < kEach; ++i) {
      std::lock_guard<SyncMutex> g(mu);
      ++counter;
    }
  });
  go.store(true, std::memory_order_release);
  for (int i = 0; i < kEach; ++i) {
    std::lock_guard<SyncMutex> g(mu);
    ++counter;
  }
  other.join();
  EXPECT_EQ(counter, uint64_t{kSolo} + 2 * uint64_t{kEach});
  EXPECT_EQ(mu.revoked(), HeavyBarrierAvailable());
}

TEST(SyncMutexTest, TryLockRevokesToo) {
  SyncMutex mu;
  for (uint32_t i = 0; i < 2 * SyncMutex::kBiasAfter; ++i) {
    mu.lock();
    mu.unlock();
  }
  bool took = false;
  std::thread([&] {
    took = mu.try_lock();
    if (took) mu.unlock();
  }).join();
  EXPECT_TRUE(took);
  EXPECT_EQ(mu.revoked(), HeavyBarrierAvailable());
  // The former owner takes the exchange lock from now on.
  ASSERT_TRUE(mu.try_lock());
  bool second = true;
  std::thread([&] { second = mu.try_lock(); }).join();
  EXPECT_FALSE(second);  // held by the main thread: refused
  mu.unlock();
}

// A channel biased to one worker (its two tasks exchange thousands of
// messages) and then used from a plain thread and a task on another worker
// at once: every message arrives once.
TEST(SyncMutexTest, AChannelBiasedToOneWorkerServesOthersAfterwards) {
  auto rt = RuntimeBuilder().Workers(2).Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto ch = Channel<int64_t>::Create(4).value();
  constexpr int64_t kLocal = 5000;
  constexpr int64_t kRemote = 20000;
  RuntimeSpawnOptions on0, on1;
  on0.placement = Placement::Pinned(0);
  on1.placement = Placement::Pinned(1);

  auto produce = [](Channel<int64_t>* c, int64_t from, int64_t n) -> Task<> {
    for (int64_t i = 0; i < n; ++i) co_await c->Send(from + i);
  };
  auto consume = [](Channel<int64_t>* c, int64_t n) -> Task<int64_t> {
    int64_t sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += (co_await c->Recv()).value();
    co_return sum;
  };
  // Phase 1: both ends on worker 0.
  auto p0 = (*rt)->Spawn(produce(ch.get(), 0, kLocal), on0);
  auto c0 = (*rt)->Spawn(consume(ch.get(), kLocal), on0);
  p0.Join();
  const int64_t local_sum = c0.Join();
  EXPECT_EQ(local_sum, kLocal * (kLocal - 1) / 2);

  // Phase 2: a task on worker 1 and a plain thread send; worker 0 receives.
  auto c1 = (*rt)->Spawn(consume(ch.get(), 2 * kRemote), on0);
  auto p1 = (*rt)->Spawn(produce(ch.get(), 0, kRemote), on1);
  std::thread sender([&] {
    for (int64_t i = 0; i < kRemote; ++i) {
      ASSERT_TRUE(ch->SendBlocking(kRemote + i));
    }
  });
  sender.join();
  p1.Join();
  const int64_t n = 2 * kRemote;
  EXPECT_EQ(c1.Join(), n * (n - 1) / 2);
}

}  // namespace
}  // namespace spindle::executor_internal
