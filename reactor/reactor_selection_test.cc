// Backend selection and options (ReactorOptions, SPINDLE_REACTOR, the
// epoll fallback), SQE I/O priorities, a plain SQPOLL ring, the version.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "reactor/internal/uring_driver.h"
#include "reactor/reactor.h"
#include "reactor/reactor_testing.h"
#include "timing/clock.h"

namespace spindle::reactor {
namespace {

using testing::kMs;
using testing::TestOp;
using timing::MonotonicClock;

TEST(VersionTest, MatchesTheVersionFile) { EXPECT_EQ(kVersion, "0.2.0"); }

TEST(IoPriorityTest, SqeIoprioUsesRealTimeAndIdleClasses) {
  // IOPRIO_PRIO_VALUE(class, level): RT is class 1, IDLE class 3.
  EXPECT_EQ(reactor_internal::IoprioFor(IoPriority::kHigh), 1u << 13);
  EXPECT_EQ(reactor_internal::IoprioFor(IoPriority::kNormal), 0u);
  EXPECT_EQ(reactor_internal::IoprioFor(IoPriority::kLow), 3u << 13);
}

TEST(SqpollTest, SqpollRingRunsOperations) {
  ReactorOptions o;
  o.backend = BackendChoice::kIoUring;
  o.sqpoll = true;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  if (!r.ok()) GTEST_SKIP() << "SQPOLL ring refused: " << r.status();
  EXPECT_NE((*r)->Stats().features.find("SQPOLL"), std::string::npos);
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  char buf[4];
  TestOp nop, rd;
  (*r)->Nop(&nop);
  (*r)->Read(&rd, p[0], buf, sizeof(buf), -1);
  ASSERT_EQ(write(p[1], "abcd", 4), 4);
  const uint64_t give_up = MonotonicClock::Now() + 10'000 * kMs;
  while (!(nop.done() && rd.done()) && MonotonicClock::Now() < give_up) {
    (*r)->Poll(kMs);
  }
  EXPECT_EQ(nop.seen, 0);
  EXPECT_EQ(rd.seen, 4);
  close(p[0]);
  close(p[1]);
}

// ---- Options and backend selection ------------------------------------------

class SelectionTest : public ::testing::Test {
 protected:
  void TearDown() override {
    SetIoUringSetupFailureForTesting(0);
    unsetenv("SPINDLE_REACTOR");
  }
};

TEST_F(SelectionTest, RingEntriesMustBeAPowerOfTwoInRange) {
  for (uint32_t bad : {0u, 1u, 3u, 100u, 65536u}) {
    ReactorOptions o;
    o.backend = BackendChoice::kEpoll;
    o.ring_entries = bad;
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string msg(r.status().message());
    EXPECT_NE(msg.find("ring_entries = " + std::to_string(bad)),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("[2, 32768]"), std::string::npos) << msg;
  }
}

TEST_F(SelectionTest, FromEnvParsesTheBackend) {
  unsetenv("SPINDLE_REACTOR");
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kAuto);
  setenv("SPINDLE_REACTOR", "epoll", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kEpoll);
  setenv("SPINDLE_REACTOR", "io_uring", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kIoUring);
  setenv("SPINDLE_REACTOR", "auto", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kAuto);
}

TEST_F(SelectionTest, BackendValuesAreCaseInsensitive) {
  setenv("SPINDLE_REACTOR", "EPOLL", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kEpoll);
  setenv("SPINDLE_REACTOR", "IO_Uring", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->backend, BackendChoice::kIoUring);
  unsetenv("SPINDLE_REACTOR");
}

TEST_F(SelectionTest, UnknownBackendNamesTheValidValues) {
  setenv("SPINDLE_REACTOR", "kqueue", 1);
  absl::StatusOr<ReactorOptions> o = ReactorOptions::FromEnv();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(o.status().message());
  EXPECT_NE(msg.find("kqueue"), std::string::npos) << msg;
  EXPECT_NE(msg.find("auto, io_uring, epoll"), std::string::npos) << msg;
}

TEST_F(SelectionTest, AutoFallsBackToEpollWhenIoUringIsRefused) {
  SetIoUringSetupFailureForTesting(EPERM);
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  const std::string reason((*r)->fallback_reason());
  EXPECT_NE(reason.find("EPERM"), std::string::npos) << reason;
  EXPECT_EQ((*r)->Stats().fallback_reason, reason);
  // The fallback reactor works.
  TestOp op;
  (*r)->Nop(&op);
  while (!op.done()) (*r)->Poll(UINT64_MAX);
  EXPECT_EQ(op.seen, 0);
}

// Under valgrind (its preload library in LD_PRELOAD), auto picks epoll and
// says why; an explicit io_uring is kept.
TEST_F(SelectionTest, AutoPicksEpollUnderValgrind) {
  const char* old = std::getenv("LD_PRELOAD");
  const std::string saved = old != nullptr ? old : "";
  setenv("LD_PRELOAD", "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so",
         1);
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ReactorOptions forced;
  forced.backend = BackendChoice::kIoUring;
  absl::StatusOr<std::unique_ptr<Reactor>> u = Reactor::Create(forced);
  if (old != nullptr) {
    setenv("LD_PRELOAD", saved.c_str(), 1);
  } else {
    unsetenv("LD_PRELOAD");
  }
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  const std::string reason((*r)->fallback_reason());
  EXPECT_NE(reason.find("valgrind"), std::string::npos) << reason;
  EXPECT_EQ((*r)->Stats().fallback_reason, reason);
  if (u.ok()) {  // io_uring may be refused here (a container)
    EXPECT_EQ((*u)->backend(), Backend::kIoUring);
    EXPECT_TRUE((*u)->fallback_reason().empty());
  }
  // Without it, auto is io_uring where the ring can be set up.
  absl::StatusOr<std::unique_ptr<Reactor>> plain = Reactor::Create({});
  ASSERT_TRUE(plain.ok()) << plain.status();
  if (u.ok()) {
    EXPECT_EQ((*plain)->backend(), Backend::kIoUring);
  }
}

TEST_F(SelectionTest, AutoFallsBackForENOSYSAndENOMEM) {
  for (int err : {ENOSYS, ENOMEM}) {
    SetIoUringSetupFailureForTesting(err);
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  }
}

TEST_F(SelectionTest, AutoDoesNotHideOtherSetupErrors) {
  SetIoUringSetupFailureForTesting(EINVAL);
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("EINVAL"),
            std::string::npos);
}

TEST_F(SelectionTest, ForcedIoUringFailsClearlyWhenRefused) {
  SetIoUringSetupFailureForTesting(EPERM);
  ReactorOptions o;
  o.backend = BackendChoice::kIoUring;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("EPERM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("io_uring"), std::string::npos) << msg;
}

TEST_F(SelectionTest, EpollNeverAttemptsIoUring) {
  const int before = IoUringSetupAttemptsForTesting();
  ReactorOptions o;
  o.backend = BackendChoice::kEpoll;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->backend(), Backend::kEpoll);
  EXPECT_TRUE((*r)->fallback_reason().empty());
  EXPECT_EQ(IoUringSetupAttemptsForTesting(), before);
}

TEST_F(SelectionTest, AutoPrefersIoUringWhenTheKernelAllowsIt) {
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create({});
  ASSERT_TRUE(r.ok()) << r.status();
  if ((*r)->backend() != Backend::kIoUring) {
    GTEST_SKIP() << "io_uring refused here: " << (*r)->fallback_reason();
  }
  EXPECT_TRUE((*r)->fallback_reason().empty());
  const std::string features = (*r)->Stats().features;
  EXPECT_NE(features.find("setup="), std::string::npos);
  RecordProperty("io_uring_features", features);
  std::printf("io_uring features: %s\n", features.c_str());
}

}  // namespace
}  // namespace spindle::reactor
