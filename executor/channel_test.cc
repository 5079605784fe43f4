// executor/channel_test.cc: Channel and Oneshot: order, capacity, close,
// cancellation in every state, plain threads, and no message lost or
// duplicated between producers and consumers on 1, 2 and 4 workers.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "executor/sync.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeChannel;
using executor_testing::MakePathChannel;
using executor_testing::MakeExecutor;
using executor_testing::Settle;

TEST(ChannelTest, CreateRejectsACapacityOutOfRangeNamingIt) {
  auto zero = Channel<int>::Create(0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("capacity 0"), std::string::npos);
  EXPECT_NE(zero.status().message().find("[1, 1073741824]"), std::string::npos);
  EXPECT_FALSE(Channel<int>::Create(Channel<int>::kMaxCapacity + 1).ok());
  EXPECT_TRUE(Channel<int>::Create(Channel<int>::kMaxCapacity).ok());
}

// Every ChannelPathTest runs twice: on a fresh channel (the general
// paths) and on one whose lock was first taken 100 times in a row by this
// thread, which biases it here (SyncMutex) where membarrier is available:
// Send and Recv then take their fast paths (channel.h).
class ChannelPathTest : public testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Paths, ChannelPathTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& i) {
                           return i.param ? "Biased" : "Fresh";
                         });

Task<> Produce(Channel<int>* ch, int from, int n) {
  for (int i = from; i < from + n; ++i) EXPECT_TRUE(co_await ch->Send(i));
}

TEST_P(ChannelPathTest, MessagesArriveInOrderThroughASmallBuffer) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(2, biased);
    auto p = ex->Spawn(Produce(ch.get(), 0, 1000));
    for (int i = 0; i < 1000; ++i) {
      std::optional<int> v = co_await ch->Recv();
      EXPECT_EQ(v, i);
      EXPECT_LE(ch->size(), 2u);
    }
    co_await p;
  }(ex.get(), GetParam()));
}

TEST_P(ChannelPathTest, SendersWaitWhenFullAndCloseWakesEveryone) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(1, biased);
    EXPECT_EQ(ch->TrySend(1), ChannelStatus::kOk);
    int two = 2;
    EXPECT_EQ(ch->TrySend(two), ChannelStatus::kFull);
    EXPECT_EQ(two, 2);  // not moved from
    auto blocked = ex->Spawn([](Channel<int>* ch) -> Task<bool> {
      co_return co_await ch->Send(3);
    }(ch.get()));
    co_await Settle();
    EXPECT_FALSE(blocked.is_finished());
    ch->Close();
    EXPECT_FALSE(co_await blocked);  // woken, not sent
    EXPECT_EQ(ch->TrySend(4), ChannelStatus::kClosed);
    EXPECT_FALSE(co_await ch->Send(5));
    EXPECT_EQ(co_await ch->Recv(), 1);  // the buffer drains first
    EXPECT_EQ(co_await ch->Recv(), std::nullopt);
    ChannelStatus s;
    EXPECT_EQ(ch->TryRecv(&s), std::nullopt);
    EXPECT_EQ(s, ChannelStatus::kClosed);
  }(ex.get(), GetParam()));
}

TEST_P(ChannelPathTest, CloseWakesWaitingReceiversWithNothing) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(4, biased);
    auto r = ex->Spawn([](Channel<int>* ch) -> Task<std::optional<int>> {
      co_return co_await ch->Recv();
    }(ch.get()));
    co_await Settle();
    ch->Close();
    EXPECT_EQ(co_await r, std::nullopt);
  }(ex.get(), GetParam()));
}

Task<> RecvInto(Channel<int>* ch, std::vector<int>* got) {
  std::optional<int> v = co_await ch->Recv();
  if (v) got->push_back(*v);
}

TEST_P(ChannelPathTest, SendsGoToWaitingReceiversInTheOrderTheyCame) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(1, biased);
    std::vector<int> got;
    std::vector<JoinHandle<void>> rs;
    for (int i = 0; i < 3; ++i) {
      rs.push_back(ex->Spawn(RecvInto(ch.get(), &got)));
      co_await Settle();
    }
    for (int i = 1; i <= 3; ++i) EXPECT_TRUE(co_await ch->Send(i));
    EXPECT_EQ(ch->size(), 0u);  // each went to a receiver, none buffered
    for (auto& r : rs) co_await r;
    EXPECT_EQ(got, std::vector<int>({1, 2, 3}));
  }(ex.get(), GetParam()));
}

TEST_P(ChannelPathTest, AReceiverCancelledAfterAHandOffGivesTheMessageBack) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(1, biased);
    std::vector<int> got;
    // To the next waiting receiver.
    auto a = ex->Spawn(RecvInto(ch.get(), &got));
    co_await Settle();
    auto b = ex->Spawn(RecvInto(ch.get(), &got));
    co_await Settle();
    EXPECT_EQ(ch->TrySend(7), ChannelStatus::kOk);  // handed to a
    a.Abort();                                      // before a resumed
    co_await b;
    EXPECT_EQ(got, std::vector<int>({7}));
    // To the front of the buffer, ahead of what was sent meanwhile, even
    // past the capacity.
    auto c = ex->Spawn(RecvInto(ch.get(), &got));
    co_await Settle();
    EXPECT_EQ(ch->TrySend(8), ChannelStatus::kOk);  // handed to c
    EXPECT_EQ(ch->TrySend(9), ChannelStatus::kOk);  // buffered
    c.Abort();
    EXPECT_EQ(ch->size(), 2u);
    EXPECT_EQ(co_await ch->Recv(), 8);
    EXPECT_EQ(co_await ch->Recv(), 9);
  }(ex.get(), GetParam()));
}

TEST_P(ChannelPathTest, ASenderCancelledWhileWaitingSendsNothing) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(1, biased);
    EXPECT_EQ(ch->TrySend(1), ChannelStatus::kOk);
    auto s2 = ex->Spawn(Produce(ch.get(), 2, 1));
    co_await Settle();
    auto s3 = ex->Spawn(Produce(ch.get(), 3, 1));
    co_await Settle();
    s2.Abort();  // waiting: its message is not sent
    EXPECT_EQ(co_await ch->Recv(), 1);
    co_await s3;  // the freed slot went to s3, not lost to the cancelled s2
    EXPECT_EQ(co_await ch->Recv(), 3);
    EXPECT_EQ(ch->size(), 0u);
    EXPECT_EQ(s2.status(), JoinStatus::kCancelled);
  }(ex.get(), GetParam()));
}

TEST_P(ChannelPathTest, WaitingSendersAreNotOvertakenByTrySend) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, bool biased) -> Task<> {
    auto ch = MakePathChannel(1, biased);
    EXPECT_EQ(ch->TrySend(1), ChannelStatus::kOk);
    auto s = ex->Spawn(Produce(ch.get(), 2, 1));
    co_await Settle();
    EXPECT_EQ(co_await ch->Recv(), 1);  // s's message takes the slot
    EXPECT_EQ(ch->TrySend(3), ChannelStatus::kFull);
    co_await s;
    EXPECT_EQ(co_await ch->Recv(), 2);
  }(ex.get(), GetParam()));
}

TEST(ChannelTest, PlainThreadsSendAndReceiveWithTasks) {
  auto rt = runtime_testing::MakeRuntime(2);
  auto in = MakeChannel<int>(4);
  auto out = MakeChannel<int>(4);
  // Task: doubles what the thread sends until the channel closes.
  auto h = rt->Spawn([](Channel<int>* in, Channel<int>* out) -> Task<> {
    while (std::optional<int> v = co_await in->Recv()) {
      EXPECT_TRUE(co_await out->Send(*v * 2));
    }
    out->Close();
  }(in.get(), out.get()));
  std::thread producer([&] {
    for (int i = 0; i < 500; ++i) EXPECT_TRUE(in->SendBlocking(i));
    in->Close();
  });
  for (int i = 0; i < 500; ++i) EXPECT_EQ(out->RecvBlocking(), i * 2);
  EXPECT_EQ(out->RecvBlocking(), std::nullopt);
  producer.join();
  h.Join();

  auto ex = MakeExecutor();
  EXPECT_THROW(ex->BlockOn([](Channel<int>* ch) -> Task<> {
    ch->RecvBlocking();
    co_return;
  }(in.get())),
               TaskMisuseError);
}

TEST(OneshotTest, DeliversOnceOrNothingWhenTheSenderIsDropped) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    auto [tx, rx] = MakeOneshot<std::string>();
    std::thread t([tx = std::move(tx)]() mutable {
      EXPECT_TRUE(tx.Send("reply"));
      EXPECT_FALSE(tx.Send("again"));  // spent
    });
    EXPECT_EQ(co_await rx, "reply");
    t.join();
    EXPECT_EQ(co_await rx, std::nullopt);  // taken already

    auto [tx2, rx2] = MakeOneshot<int>();
    { auto dropped = std::move(tx2); }
    EXPECT_EQ(co_await rx2, std::nullopt);
  }());
  auto [tx, rx] = MakeOneshot<int>();
  { auto gone = std::move(rx); }
  EXPECT_FALSE(tx.Send(1));
}

TEST(OneshotTest, AReceiverCancelledWhileWaitingLosesNothing) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    auto [tx, rx] = MakeOneshot<int>();
    auto w = ex->Spawn(
        [](OneshotReceiver<int>* rx) -> Task<> { co_await *rx; }(&rx));
    co_await Settle();
    w.Abort();
    co_await Settle();
    EXPECT_EQ(w.status(), JoinStatus::kCancelled);
    EXPECT_TRUE(tx.Send(5));
    EXPECT_EQ(rx.TryRecv(), 5);
  }(ex.get()));
}

// ---- Stress ---------------------------------------------------------------

// Sends per producer: SPINDLE_CHANNEL_STRESS_SENDS (total) when set, else
// 10M in total for an optimised build and fewer under sanitizers and -O0.
int64_t StressSends() {
  if (const char* env = std::getenv("SPINDLE_CHANNEL_STRESS_SENDS")) {
    return std::atoll(env);
  }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || \
    !defined(__OPTIMIZE__)
  return 200'000;
#else
  return 10'000'000;
#endif
}

Task<> StressProduce(Channel<int64_t>* ch, int64_t from, int64_t n) {
  for (int64_t i = from; i < from + n; ++i) {
    if (!co_await ch->Send(i)) ADD_FAILURE() << "closed early";
  }
}

Task<> StressConsume(Channel<int64_t>* ch, std::vector<uint8_t>* seen,
                     std::atomic<int64_t>* count) {
  while (std::optional<int64_t> v = co_await ch->Recv()) {
    // Each id is written by exactly one consumer: no data race unless a
    // message is duplicated (which the count below then shows too).
    (*seen)[*v]++;
    count->fetch_add(1, std::memory_order_relaxed);
  }
}

TEST(ChannelStressTest, NoMessageLostOrDuplicatedAcrossWorkers) {
  const int64_t total = StressSends();
  constexpr int kProducers = 4;
  constexpr int kConsumers = 4;
  for (size_t workers : {1, 2, 4}) {
    auto rt = runtime_testing::MakeRuntime(workers);
    auto ch = MakeChannel<int64_t>(64);
    std::vector<uint8_t> seen(total, 0);
    std::atomic<int64_t> count{0};
    std::vector<JoinHandle<>> producers, consumers;
    const int64_t per = total / kProducers;
    for (int c = 0; c < kConsumers; ++c) {
      consumers.push_back(rt->Spawn(StressConsume(ch.get(), &seen, &count)));
    }
    for (int p = 0; p < kProducers; ++p) {
      producers.push_back(rt->Spawn(StressProduce(ch.get(), p * per, per)));
    }
    for (auto& h : producers) h.Join();
    ch->Close();
    for (auto& h : consumers) h.Join();
    EXPECT_EQ(count.load(), per * kProducers) << workers << " workers";
    int64_t wrong = 0;
    for (int64_t i = 0; i < per * kProducers; ++i) wrong += seen[i] != 1;
    EXPECT_EQ(wrong, 0) << workers << " workers";
  }
}

// Consumers are aborted at random points of their waits; whatever they
// had not returned must still come out of the channel.
Task<> CountOne(Channel<int64_t>* ch, std::atomic<int64_t>* got) {
  for (;;) {
    std::optional<int64_t> v = co_await ch->Recv();
    if (!v) co_return;
    got->fetch_add(*v, std::memory_order_relaxed);
  }
}

TEST(ChannelStressTest, AbortedReceiversLoseNoMessage) {
  for (size_t workers : {1, 2, 4}) {
    auto rt = runtime_testing::MakeRuntime(workers);
    auto ch = MakeChannel<int64_t>(8);
    std::atomic<int64_t> got{0};
    constexpr int64_t kMessages = 20'000;
    auto producer = rt->Spawn(StressProduce(ch.get(), 1, kMessages));
    uint32_t seed = 12345;
    while (!producer.is_finished()) {
      std::vector<JoinHandle<>> cs;
      for (int i = 0; i < 4; ++i)
        cs.push_back(rt->Spawn(CountOne(ch.get(), &got)));
      for (int spin = 0; spin < static_cast<int>(seed % 2000); ++spin) {
        std::this_thread::yield();
      }
      seed = seed * 1103515245u + 12345u;
      for (auto& h : cs) {
        h.Abort();
        h.Wait();
      }
    }
    ch->Close();
    // Drain what the aborted consumers left (or gave back).
    int64_t rest = 0;
    while (std::optional<int64_t> v = ch->TryRecv()) rest += *v;
    EXPECT_EQ(got.load() + rest, kMessages * (kMessages + 1) / 2)
        << workers << " workers";
  }
}

// A Runtime shut down while its tasks wait on a channel that a plain
// thread keeps sending to: every message the thread sent is received or
// still buffered (a receiver cancelled after a hand-off gives it back), and
// the sender never touches a task or an executor that is gone.
Task<> ReceiveForever(Channel<int64_t>* ch, std::atomic<int64_t>* got) {
  while (std::optional<int64_t> v = co_await ch->Recv()) {
    got->fetch_add(*v, std::memory_order_relaxed);
  }
}

TEST(ChannelStressTest, ARuntimeShutDownUnderWaitingReceiversLosesNothing) {
  for (int round = 0; round < 20; ++round) {
    auto ch = MakeChannel<int64_t>(4);
    std::atomic<int64_t> got{0};
    std::atomic<bool> stop{false};
    std::atomic<int64_t> sent{0};
    auto rt = runtime_testing::MakeRuntime(2);
    for (int i = 0; i < 8; ++i)
      rt->SpawnDetached(ReceiveForever(ch.get(), &got));
    std::thread sender([&] {
      for (int64_t i = 1; !stop.load(std::memory_order_relaxed); ++i) {
        int64_t v = i;
        if (ch->TrySend(v) == ChannelStatus::kOk) {
          sent.fetch_add(i, std::memory_order_relaxed);
        } else {
          std::this_thread::yield();
        }
      }
    });
    while (sent.load() < 1000) std::this_thread::yield();
    rt.reset();  // cancels the receivers, some mid hand-off
    stop.store(true);
    sender.join();
    int64_t rest = 0;
    while (std::optional<int64_t> v = ch->TryRecv()) rest += *v;
    EXPECT_EQ(got.load() + rest, sent.load()) << "round " << round;
  }
}

}  // namespace
}  // namespace spindle
