// executor/watch_test.cc: Watch<T>: latest value, change notification to
// many receivers, close, cancellation, threads.
#include "executor/watch.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeExecutor;
using executor_testing::Settle;

// Collects every value it is woken for, until the watch closes.  (Not
// `while (co_await rx.Changed())`: GCC 12 miscompiles a co_await that is
// itself a while condition; see watch.h.)
Task<> Follow(Watch<int>::Receiver rx, std::vector<int>* seen) {
  for (;;) {
    const bool changed = co_await rx.Changed();
    if (!changed) break;
    seen->push_back(rx.Get());
  }
}

TEST(WatchTest, ReceiversSeeTheLatestValueAndSkipWhatTheyMissed) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    auto w = Watch<int>::Create(0);
    std::vector<int> a, b;
    auto ha = ex->Spawn(Follow(w->Subscribe(), &a));
    auto hb = ex->Spawn(Follow(w->Subscribe(), &b));
    co_await Settle();
    EXPECT_TRUE(a.empty());  // the initial value was seen at Subscribe
    w->Send(1);
    co_await Settle();
    w->Send(2);
    w->Send(3);  // before the receivers ran: 2 is skipped
    co_await Settle();
    w->Modify([](int& v) { v *= 10; });
    w->Close();
    co_await ha;
    co_await hb;
    EXPECT_EQ(a, std::vector<int>({1, 3, 30}));
    EXPECT_EQ(b, std::vector<int>({1, 3, 30}));
    EXPECT_EQ(w->version(), 4u);
    w->Send(99);  // ignored once closed
    EXPECT_EQ(w->Get(), 30);
  }(ex.get()));
}

TEST(WatchTest, AWaitingReceiverCanBeCancelled) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    auto w = Watch<std::string>::Create("a");
    auto h = ex->Spawn([](Watch<std::string>::Receiver rx) -> Task<> {
      (void)co_await rx.Changed();
    }(w->Subscribe()));
    co_await Settle();
    h.Abort();
    co_await Settle();
    EXPECT_EQ(h.status(), JoinStatus::kCancelled);
    w->Send("b");  // the cancelled waiter is no longer listed
    auto rx = w->Subscribe();
    EXPECT_FALSE(rx.has_changed());
    EXPECT_EQ(rx.Get(), "b");
  }(ex.get()));
}

TEST(WatchTest, ThreadsAndWorkersSendAndWait) {
  auto rt = runtime_testing::MakeRuntime(2);
  auto w = Watch<int>::Create(0);
  std::vector<JoinHandle<>> hs;
  std::vector<std::vector<int>> seen(4);
  for (auto& s : seen) hs.push_back(rt->Spawn(Follow(w->Subscribe(), &s)));
  auto rx = w->Subscribe();
  std::thread sender([w] {
    for (int i = 1; i <= 1000; ++i) w->Send(i);
    w->Close();
  });
  int last = 0;
  while (rx.ChangedBlocking()) {
    const int v = rx.Get();
    EXPECT_GT(v, last);  // increasing: only newer values
    last = v;
  }
  sender.join();
  EXPECT_EQ(last, 1000);
  for (auto& h : hs) h.Join();
  for (auto& s : seen) {
    ASSERT_FALSE(s.empty());
    EXPECT_EQ(s.back(), 1000);
    for (size_t i = 1; i < s.size(); ++i) EXPECT_LT(s[i - 1], s[i]);
  }
}

}  // namespace
}  // namespace spindle
