// io_uring ring setup chosen by the user (ReactorOptions::uring_setup,
// SPINDLE_URING_SETUP): each setup the kernel offers runs operations, says
// so in Stats(), and one it refuses is Unavailable naming the flags and the
// errno (skipped here, with the reason, when this kernel refuses it).

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

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

// Drops CAP_SYS_NICE and CAP_SYS_ADMIN from the calling thread only
// (capabilities are per thread); false when it could not.
bool DropIoprioCapabilities() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  for (int cap : {CAP_SYS_NICE, CAP_SYS_ADMIN}) {
    data[cap / 32].effective &= ~(1u << (cap % 32));
    data[cap / 32].permitted &= ~(1u << (cap % 32));
  }
  return syscall(SYS_capset, &hdr, data) == 0;
}

TEST(IoPriorityTest, HighPriorityWithoutTheCapabilityFallsBackToNormal) {
  // Without CAP_SYS_NICE the kernel refuses a real-time-class read with
  // -EPERM; the reactor runs it at normal priority instead (once logged).
  int seen_first = 0, seen_second = 0;
  uint64_t fallbacks = 0;
  std::string skip;
  std::thread t([&] {
    if (!DropIoprioCapabilities()) {
      skip = "cannot drop capabilities here";
      return;
    }
    ReactorOptions o;
    o.backend = BackendChoice::kIoUring;
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::Create(o);
    if (!r.ok()) {
      skip = std::string(r.status().message());
      return;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return;
    if (write(p[1], "abcdef", 6) != 6) return;
    char buf[3];
    Operation a, b;
    int done = 0;
    for (Operation* op : {&a, &b}) {
      op->priority = IoPriority::kHigh;
      op->user = &done;
      op->on_complete = [](Operation* o) noexcept {
        ++*static_cast<int*>(o->user);
      };
    }
    (*r)->Read(&a, p[0], buf, 3, -1);
    while (done < 1) (*r)->Poll(UINT64_MAX);
    (*r)->Read(&b, p[0], buf, 3, -1);
    while (done < 2) (*r)->Poll(UINT64_MAX);
    seen_first = a.result;
    seen_second = b.result;
    fallbacks = (*r)->Stats().ioprio_fallbacks;
    close(p[0]);
    close(p[1]);
  });
  t.join();
  if (!skip.empty()) GTEST_SKIP() << skip;
  EXPECT_EQ(seen_first, 3) << "the refused read was not run again";
  EXPECT_EQ(seen_second, 3);
  EXPECT_EQ(fallbacks, 1u);
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
