// executor/cancellation_test.cc: CancellationToken trees and
// WithCancellation over I/O and sync awaitables.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "executor/sync.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::MakeExecutor;
using executor_testing::Settle;

TEST(CancellationTokenTest, CancellingAParentReachesEveryDescendant) {
  CancellationToken root;
  CancellationToken a = root.Child();
  CancellationToken b = a.Child();
  CancellationToken sibling = root.Child();
  b.Cancel();  // a leaf alone
  EXPECT_TRUE(b.is_cancelled());
  EXPECT_FALSE(a.is_cancelled());
  root.Cancel();
  EXPECT_TRUE(a.is_cancelled());
  EXPECT_TRUE(sibling.is_cancelled());
  root.Cancel();                             // idempotent
  EXPECT_TRUE(root.Child().is_cancelled());  // born cancelled
}

TEST(CancellationTokenTest, ManyShortLivedChildrenDoNotPinTheParent) {
  CancellationToken root;
  for (int i = 0; i < 10000; ++i) (void)root.Child();
  CancellationToken kept = root.Child();
  root.Cancel();
  EXPECT_TRUE(kept.is_cancelled());
}

Task<int> WaitThenOne(CancellationToken t) {
  co_await t.Cancelled();
  co_return 1;
}

TEST(CancellationTokenTest, WaitersWakeOnCancelFromAnotherThread) {
  auto rt = runtime_testing::MakeRuntime(2);
  CancellationToken root;
  std::vector<JoinHandle<int>> hs;
  for (int i = 0; i < 8; ++i)
    hs.push_back(rt->Spawn(WaitThenOne(root.Child())));
  std::thread canceller([root] { root.Cancel(); });
  int sum = 0;
  for (auto& h : hs) sum += h.Join();
  canceller.join();
  EXPECT_EQ(sum, 8);
}

TEST(WithCancellationTest, CancelsAReadAndAChannelWaitWithoutLosingMessages) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  auto ex = MakeExecutor();
  ex->BlockOn([](LocalExecutor* ex, int rfd) -> Task<> {
    CancellationToken token;
    auto ch = Channel<int>::Create(2).value();
    auto reader =
        ex->Spawn([](CancellationToken t, int fd) -> Task<absl::Status> {
          char buf[4];
          absl::StatusOr<int32_t> r =
              co_await WithCancellation(t, Read(fd, buf, 4));
          co_return r.status();
        }(token.Child(), rfd));
    auto receiver = ex->Spawn(
        [](CancellationToken t, Channel<int>* ch) -> Task<absl::Status> {
          auto r = co_await WithCancellation(t, ch->Recv());
          co_return r.status();
        }(token.Child(), ch.get()));
    co_await Settle();
    EXPECT_FALSE(reader.is_finished());
    token.Cancel();
    absl::Status rs = co_await reader;
    absl::Status cs = co_await receiver;
    EXPECT_EQ(rs.code(), absl::StatusCode::kCancelled) << rs;
    EXPECT_EQ(cs.code(), absl::StatusCode::kCancelled) << cs;
    // The cancelled Recv is out of the queue: a message stays buffered.
    EXPECT_EQ(ch->TrySend(3), ChannelStatus::kOk);
    EXPECT_EQ(ch->TryRecv(), 3);
    // Already cancelled: nothing starts.
    absl::Status again = co_await WithCancellation(token, YieldNow());
    EXPECT_EQ(again.code(), absl::StatusCode::kCancelled);
    // A token that never fires does not get in the way.
    CancellationToken idle;
    absl::Status fine = co_await WithCancellation(idle, YieldNow());
    EXPECT_TRUE(fine.ok()) << fine;
  }(ex.get(), fds[0]));
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace spindle
