// executor/select_test.cc: WhenAny, WhenAll and Timeout: winners, losers
// cancelled and their resources released, errors, and the awaiting task's
// own cancellation.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "executor/sync.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeChannel;
using executor_testing::MakeExecutor;
using executor_testing::Settle;

using std::chrono::milliseconds;
using std::chrono::seconds;

Task<> SendLater(Channel<int>* ch, int v) {
  co_await SleepFor(milliseconds(1));
  co_await ch->Send(v);
}

TEST(WhenAnyTest, AMessageBeatsATimerAndATimerBeatsSilence) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    auto ch = MakeChannel<int>(1);
    ex->SpawnDetached(SendLater(ch.get(), 42));
    auto r = co_await WhenAny(ch->Recv(), SleepFor(seconds(30)));
    EXPECT_EQ(r.index(), 0u);
    if (r.index() == 0) {
      EXPECT_EQ(std::get<0>(r), 42);
    }

    auto quiet = co_await WhenAny(ch->Recv(), SleepFor(milliseconds(2)));
    EXPECT_EQ(quiet.index(), 1u);
    if (quiet.index() == 1) {
      EXPECT_EQ(std::get<1>(quiet), 0);
    }
    // The losing Recv left the channel's queue: a message sent now is
    // buffered for the next receiver, not handed to the dead one.
    EXPECT_EQ(ch->TrySend(7), ChannelStatus::kOk);
    EXPECT_EQ(ch->size(), 1u);
    EXPECT_EQ(ch->TryRecv(), 7);
  }(ex.get()));
}

// A Send is moved into the branch with its message (before it is
// awaited): on a full channel it loses to the timer and sends nothing; with
// room it wins, and the message is the one it was given.
TEST(WhenAnyTest, ASendBranchCarriesItsMessage) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    auto ch = MakeChannel<std::string>(1);
    EXPECT_EQ(ch->TrySend(std::string("first")), ChannelStatus::kOk);
    auto full = co_await WhenAny(ch->Send(std::string(64, 'x')),
                                 SleepFor(milliseconds(2)));
    EXPECT_EQ(full.index(), 1u);
    EXPECT_EQ(ch->size(), 1u);
    EXPECT_EQ(ch->TryRecv(), "first");
    auto room = co_await WhenAny(ch->Send(std::string(64, 'y')),
                                 SleepFor(seconds(30)));
    EXPECT_EQ(room.index(), 0u);
    if (room.index() == 0) {
      EXPECT_TRUE(std::get<0>(room));
    }
    EXPECT_EQ(ch->TryRecv(), std::string(64, 'y'));
    EXPECT_EQ(ch->size(), 0u);
  }());
}

// One poll: the Notify branch wins, then a message is handed to the Recv
// branch, which is queued behind it and has not resumed.
Task<> NotifyThenSend(Notify* n, Channel<int>* ch) {
  co_await Settle();  // both branches wait by now
  n->NotifyOne();
  EXPECT_EQ(ch->TrySend(5), ChannelStatus::kOk);
  co_return;
}

TEST(WhenAnyTest, ALoserHandedAMessageAfterTheDecisionGivesItBack) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    auto ch = MakeChannel<int>(1);
    Notify n;
    ex->SpawnDetached(NotifyThenSend(&n, ch.get()));
    auto r = co_await WhenAny(ch->Recv(), n.Notified());
    EXPECT_EQ(r.index(), 1u);
    // The losing Recv was aborted before it could resume with the message:
    // it went back to the channel.
    EXPECT_EQ(ch->TryRecv(), 5);
  }(ex.get()));
}

TEST(WhenAnyTest, OnAWorkerOfARuntime) {
  auto rt = runtime_testing::MakeRuntime(2);
  auto ch = MakeChannel<int>(1);
  int v = rt->BlockOn([](Runtime* rt, Channel<int>* ch) -> Task<int> {
    rt->SpawnDetached(SendLater(ch, 5));
    auto r = co_await WhenAny(SleepFor(seconds(30)), ch->Recv());
    co_return r.index() == 1 ? *std::get<1>(r) : -1;
  }(rt.get(), ch.get()));
  EXPECT_EQ(v, 5);
}

TEST(WhenAnyTest, LosersGiveUpTheirPlaceInLocks) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    Mutex mu;
    Semaphore sem(0);
    MutexGuard held = co_await mu.Lock();
    auto r = co_await WhenAny(mu.Lock(), sem.Acquire(2), YieldNow());
    EXPECT_EQ(r.index(), 2u);
    EXPECT_EQ(sem.waiters(), 0u);
    held.unlock();
    EXPECT_FALSE(mu.is_locked());  // no cancelled waiter was granted it
    sem.Release(2);
    EXPECT_EQ(sem.available(), 2u);
  }());
}

Task<int> Throws() {
  co_await YieldNow();
  throw std::runtime_error("child failed");
}

TEST(WhenAnyTest, TheWinnersExceptionReachesTheAwaiter) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    bool caught = false;
    try {
      (void)co_await WhenAny(Throws(), SleepFor(seconds(30)));
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "child failed";
    }
    EXPECT_TRUE(caught);
  }());
}

Task<int> Value(int v) {
  co_await YieldNow();
  co_return v;
}

Task<> Nothing() { co_return; }

TEST(WhenAllTest, CollectsEveryResultInPosition) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    auto [a, b, c] = co_await WhenAll(Value(1), Nothing(), Value(3));
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, std::monostate{});
    EXPECT_EQ(c, 3);
    auto none = co_await WhenAll();
    EXPECT_EQ(std::tuple_size_v<decltype(none)>, 0u);
  }());
}

Task<int> PriorityOfChild() {
  co_await YieldNow();
  co_return static_cast<int>(CurrentTaskContext()->priority);
}

Task<> ParentInQueue2(std::vector<int>* priorities) {
  auto [a, b] = co_await WhenAll(PriorityOfChild(), PriorityOfChild());
  priorities->push_back(a);
  priorities->push_back(b);
  priorities->push_back(static_cast<int>(CurrentTaskContext()->priority));
}

TEST(WhenAllTest, ChildrenRunInTheCallersQueueAtItsPriority) {
  auto ex = ExecutorBuilder().WithQueue(1, 1).WithQueue(2, 1).Build();
  ASSERT_TRUE(ex.ok()) << ex.status();
  std::vector<int> priorities;
  SpawnOptions o;
  o.queue = 2;
  o.priority = Priority::kHigh;
  (*ex)->SpawnDetached(ParentInQueue2(&priorities), o);
  (*ex)->Run();
  ASSERT_EQ(priorities.size(), 3u);
  EXPECT_EQ(priorities[0], priorities[2]);
  EXPECT_EQ(priorities[1], priorities[2]);
  const ExecutorStats stats = (*ex)->Stats();
  for (const auto& q : stats.queues) {
    if (q.sched.id == 1) {
      EXPECT_EQ(q.sched.polls, 0u);  // nothing ran in the first queue
    }
  }
}

TEST(WhenAllTest, AFailureAbortsTheOthersAndIsRethrown) {
  auto ex = MakeExecutor();
  ex->BlockOn([]() -> Task<> {
    Semaphore never(0);
    bool caught = false;
    try {
      (void)co_await WhenAll(never.Acquire(), Throws());
    } catch (const std::runtime_error&) {
      caught = true;
    }
    EXPECT_TRUE(caught);
    EXPECT_EQ(never.waiters(), 0u);  // the Acquire was aborted, not left
  }());
}

TEST(TimeoutTest, AReadFromASilentSocketTimesOutAndIsCancelled) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  auto ex = MakeExecutor();
  ex->BlockOn([](int rfd, int wfd) -> Task<> {
    char buf[8];
    absl::StatusOr<int32_t> r =
        co_await Timeout(milliseconds(5), Read(rfd, buf, sizeof buf));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_NE(r.status().message().find("timed out after 5ms"),
              std::string::npos)
        << r.status();
    // The timed-out read is gone: the next one gets the byte.
    EXPECT_EQ(::write(wfd, "x", 1), 1);
    absl::StatusOr<int32_t> ok =
        co_await Timeout(seconds(30), Read(rfd, buf, sizeof buf));
    EXPECT_TRUE(ok.ok()) << ok.status();
    if (ok.ok()) {
      EXPECT_EQ(*ok, 1);
    }
    EXPECT_EQ(buf[0], 'x');
    absl::Status done = co_await Timeout(seconds(30), Nothing());
    EXPECT_TRUE(done.ok());
  }(fds[0], fds[1]));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(TimeoutTest, WithoutAReactorItSaysSoInsteadOfFiringAtOnce) {
  auto ex = ExecutorBuilder().NoReactor().Build();
  ASSERT_TRUE(ex.ok()) << ex.status();
  (*ex)->BlockOn([]() -> Task<> {
    Semaphore never(0);
    absl::Status s = co_await Timeout(milliseconds(1), never.Acquire());
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_EQ(never.waiters(), 0u);
  }());
}

Task<> SelectForever(Semaphore* sem, Notify* n) {
  (void)co_await WhenAny(sem->Acquire(), n->Notified());
}

TEST(WhenAnyTest, AbortingTheAwaitingTaskAbortsItsChildren) {
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex) -> Task<> {
    Semaphore sem(0);
    Notify n;
    auto h = ex->Spawn(SelectForever(&sem, &n));
    co_await Settle();
    EXPECT_EQ(sem.waiters(), 1u);
    EXPECT_EQ(n.waiters(), 1u);
    h.Abort();
    co_await Settle();
    EXPECT_EQ(h.status(), JoinStatus::kCancelled);
    EXPECT_EQ(sem.waiters(), 0u);
    EXPECT_EQ(n.waiters(), 0u);
  }(ex.get()));
}

}  // namespace
}  // namespace spindle
