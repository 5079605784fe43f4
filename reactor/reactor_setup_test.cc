// io_uring ring setup chosen by the user (ReactorOptions::uring_setup,
// SPINDLE_URING_SETUP): each setup the kernel offers runs operations, says
// so in Stats(), and one it refuses is Unavailable naming the flags and the
// errno (skipped here, with the reason, when this kernel refuses it).

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "reactor/reactor.h"

namespace spindle::reactor {
namespace {

class UringSetupTest : public ::testing::TestWithParam<UringSetup> {};

TEST_P(UringSetupTest, EachOfferedSetupRunsOperationsAndSaysWhichItIs) {
  ReactorOptions o;
  o.backend = BackendChoice::kIoUring;
  o.uring_setup = GetParam();
  o.sqpoll_idle_ms = 10;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  if (!r.ok()) {
    const std::string msg(r.status().message());
    ASSERT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << msg;
    if (GetParam() != UringSetup::kAuto) {
      // The refusal names the setup and its flags.
      EXPECT_NE(msg.find(std::string(UringSetupName(GetParam()))),
                std::string::npos)
          << msg;
    }
    GTEST_SKIP() << "this kernel or sandbox refuses it: " << msg;
  }
  const ReactorStats s = (*r)->Stats();
  if (GetParam() == UringSetup::kAuto) {
    EXPECT_NE(s.uring_setup, "auto");
    EXPECT_FALSE(s.uring_setup.empty());
  } else {
    EXPECT_EQ(s.uring_setup, UringSetupName(GetParam())) << s.features;
  }
  // Operations work: a NOP and a timer.
  Operation nop, sleep;
  int done = 0;
  nop.user = &done;
  sleep.user = &done;
  nop.on_complete = [](Operation* op) noexcept {
    ++*static_cast<int*>(op->user);
  };
  sleep.on_complete = nop.on_complete;
  (*r)->Nop(&nop);
  (*r)->SleepFor(&sleep, 1'000'000);
  while (done < 2) (*r)->Poll(UINT64_MAX);
  EXPECT_EQ(nop.result, 0);
  EXPECT_EQ(sleep.result, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Setups, UringSetupTest,
    ::testing::Values(UringSetup::kAuto, UringSetup::kPlain,
                      UringSetup::kCoopTaskrun, UringSetup::kDeferTaskrun,
                      UringSetup::kSqpoll),
    [](const ::testing::TestParamInfo<UringSetup>& info) {
      return std::string(UringSetupName(info.param));
    });

TEST(UringSetupEnvTest, ParsesEveryValueInAnyCaseAndNamesBadOnes) {
  setenv("SPINDLE_URING_SETUP", "DEFER_TASKRUN", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->uring_setup, UringSetup::kDeferTaskrun);
  setenv("SPINDLE_URING_SETUP", "sqpoll", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->uring_setup, UringSetup::kSqpoll);
  setenv("SPINDLE_URING_SETUP", "Coop_Taskrun", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->uring_setup, UringSetup::kCoopTaskrun);
  setenv("SPINDLE_URING_SETUP", "plain", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->uring_setup, UringSetup::kPlain);
  setenv("SPINDLE_URING_SETUP", "", 1);
  EXPECT_EQ(ReactorOptions::FromEnv()->uring_setup, UringSetup::kAuto);
  setenv("SPINDLE_URING_SETUP", "iopoll", 1);
  absl::StatusOr<ReactorOptions> bad = ReactorOptions::FromEnv();
  unsetenv("SPINDLE_URING_SETUP");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(bad.status().message());
  EXPECT_NE(msg.find("iopoll"), std::string::npos) << msg;
  EXPECT_NE(msg.find("auto, plain, coop_taskrun, defer_taskrun, sqpoll"),
            std::string::npos)
      << msg;
}

TEST(UringSetupEnvTest, SqpollIdleOutOfRangeIsInvalidArgument) {
  ReactorOptions o;
  o.uring_setup = UringSetup::kSqpoll;
  o.sqpoll_idle_ms = 0;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("1..60000"),
            std::string::npos);
}

TEST(UringSetupEnvTest, ARefusedExplicitSetupIsUnavailableNotEpoll) {
  // Under backend auto, a refused *explicit* setup is an error: the user
  // asked for those flags (auto falls back to epoll only for EPERM, ENOSYS
  // and ENOMEM, and only with setup auto).
  SetIoUringSetupFailureForTesting(EINVAL);
  ReactorOptions o;
  o.uring_setup = UringSetup::kDeferTaskrun;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  SetIoUringSetupFailureForTesting(0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(r.status().message()).find("Invalid argument"),
            std::string::npos)
      << r.status();
}

TEST(UringSetupEnvTest, EpollReportsNoUringSetup) {
  ReactorOptions o;
  o.backend = BackendChoice::kEpoll;
  absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->Stats().uring_setup, "");
}

}  // namespace
}  // namespace spindle::reactor
