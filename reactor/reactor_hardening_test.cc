// Regression tests for the reactor hardening issue (2026-12-01): descriptor
// flags and lengths that both backends must treat alike, Close cancelling
// its descriptor's operations, thousands of idle operations on one ring,
// wake-ups that must never be lost, the owner-thread rule and SQPOLL
// shutdown.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "reactor/reactor_testing.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using testing::BackendParamName;
using testing::BackendTest;
using testing::DestroyFirst;
using testing::kMs;
using testing::TestOp;
using timing::MonotonicClock;

class HardeningTest : public BackendTest {};

// ---- MSG_DONTWAIT (item 13) -------------------------------------------------

TEST_P(HardeningTest, RecvWithMsgDontWaitOnAnEmptySocketReturnsEAgain) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[8];
  TestOp recv;
  DestroyFirst guard{reactor_};
  reactor_->Recv(&recv, sv[0], buf, sizeof(buf), MSG_DONTWAIT);
  ASSERT_TRUE(RunUntil([&] { return recv.done(); }, nullptr, 2'000 * kMs))
      << "a MSG_DONTWAIT recv must not wait for data";
  EXPECT_EQ(recv.seen, -EAGAIN);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(HardeningTest, SendWithMsgDontWaitOnAFullSocketReturnsEAgain) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::vector<char> chunk(64 * 1024, 'x');
  while (send(sv[0], chunk.data(), chunk.size(), MSG_DONTWAIT) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  TestOp sendop;
  DestroyFirst guard{reactor_};
  reactor_->Send(&sendop, sv[0], chunk.data(), chunk.size(), MSG_DONTWAIT);
  ASSERT_TRUE(RunUntil([&] { return sendop.done(); }, nullptr, 2'000 * kMs))
      << "a MSG_DONTWAIT send must not wait for buffer space";
  EXPECT_EQ(sendop.seen, -EAGAIN);
  close(sv[0]);
  close(sv[1]);
}

// ---- Lengths (item 14) ------------------------------------------------------

TEST_P(HardeningTest, FourGiBRecvWithEightBytesQueuedReturnsEight) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_EQ(write(sv[1], "12345678", 8), 8);
  // Only 8 bytes are queued, so the kernel writes only 8: the length just
  // must not be cut to 32 bits (4 GiB -> 0, which reads as EOF).
  std::vector<char> buf(16);
  TestOp recv;
  DestroyFirst guard{reactor_};
  reactor_->Recv(&recv, sv[0], buf.data(), size_t{1} << 32, 0);
  ASSERT_TRUE(RunUntil([&] { return recv.done(); }));
  EXPECT_EQ(recv.seen, 8);
  close(sv[0]);
  close(sv[1]);
}

TEST_P(HardeningTest, FourGiBReadFromAPipeWithEightBytesReturnsEight) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  ASSERT_EQ(write(p[1], "12345678", 8), 8);
  std::vector<char> buf(16);
  TestOp rd;
  DestroyFirst guard{reactor_};
  reactor_->Read(&rd, p[0], buf.data(), (size_t{1} << 32) + 16, -1);
  ASSERT_TRUE(RunUntil([&] { return rd.done(); }));
  EXPECT_EQ(rd.seen, 8);
  close(p[0]);
  close(p[1]);
}

TEST_P(HardeningTest, LengthsAboveSsizeMaxAreRejectedWithEInval) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  char buf[16] = {};
  TestOp send, recv, write_op, read_op;
  DestroyFirst guard{reactor_};
  reactor_->Send(&send, sv[0], buf, SIZE_MAX, 0);
  reactor_->Write(&write_op, sv[0], buf, size_t{SSIZE_MAX} + 1, -1);
  reactor_->Recv(&recv, sv[1], buf, SIZE_MAX, 0);
  reactor_->Read(&read_op, sv[1], buf, SIZE_MAX, -1);
  ASSERT_TRUE(RunUntil([&] {
    return send.done() && recv.done() && write_op.done() && read_op.done();
  }, nullptr, 2'000 * kMs));
  EXPECT_EQ(send.seen, -EINVAL);
  EXPECT_EQ(write_op.seen, -EINVAL);
  EXPECT_EQ(recv.seen, -EINVAL);
  EXPECT_EQ(read_op.seen, -EINVAL);
  close(sv[0]);
  close(sv[1]);
}

INSTANTIATE_TEST_SUITE_P(Backends, HardeningTest,
                         ::testing::Values(Backend::kIoUring, Backend::kEpoll),
                         BackendParamName);

}  // namespace
}  // namespace spindle::reactor
