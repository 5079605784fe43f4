// reactor/reactor_testing.h: test-only helpers shared by the reactor tests:
// an Operation that records its completion, a loopback listener, a fixture
// parameterised over both backends, idle socket pairs, a wait for a doorbell
// and an RLIMIT_NOFILE helper.

#ifndef SPINDLE_REACTOR_REACTOR_TESTING_H_
#define SPINDLE_REACTOR_REACTOR_TESTING_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "reactor/reactor.h"
#include "timing/clock.h"

namespace spindle::reactor::testing {

inline constexpr uint64_t kMs = 1'000'000;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int kSanitizerScale = 4;
#else
inline constexpr int kSanitizerScale = 1;
#endif

// An Operation that records how its callback ran.
struct TestOp : Operation {
  int calls = 0;
  int32_t seen = 0;
  uint64_t done_ns = 0;
  std::vector<IoPriority>* order = nullptr;
  std::function<void(TestOp*)> then;  // Runs inside the callback.

  TestOp() { on_complete = &OnDone; }
  bool done() const { return calls > 0; }

  static void OnDone(Operation* op) noexcept {
    auto* t = static_cast<TestOp*>(op);
    ++t->calls;
    t->seen = op->result;
    t->done_ns = timing::MonotonicClock::Now();
    if (t->order != nullptr) t->order->push_back(op->priority);
    if (t->then) t->then(t);
  }
};

// Destroys a reactor when it goes out of scope.  Declared after the
// Operations of a test, it makes the reactor (whose destructor runs their
// callbacks) go first even when an ASSERT returns early.
struct DestroyFirst {
  std::unique_ptr<Reactor>& reactor;
  ~DestroyFirst() { reactor.reset(); }
};

// A listening TCP socket on 127.0.0.1 with an ephemeral port.
struct Listener {
  int fd = -1;
  sockaddr_in addr{};
  explicit Listener(int backlog = 64) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd, backlog), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  }
  ~Listener() {
    if (fd >= 0) close(fd);
  }
  const sockaddr* sa() const {
    return reinterpret_cast<const sockaddr*>(&addr);
  }
};

inline std::string BackendParamName(
    const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kIoUring ? "IoUring" : "Epoll";
}

// Raises the RLIMIT_NOFILE soft limit to the hard limit; returns the soft
// limit now in effect.
inline uint64_t RaiseFdLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

// Socket pairs that stay idle; closes them on destruction.
struct IdlePairs {
  std::vector<int> fds;
  bool Open(int n) {
    for (int i = 0; i < n; ++i) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return false;
      }
      fds.push_back(sv[0]);
      fds.push_back(sv[1]);
    }
    return true;
  }
  int reader(int i) const { return fds[2 * i]; }
  int writer(int i) const { return fds[2 * i + 1]; }
  ~IdlePairs() {
    for (int fd : fds) close(fd);
  }
};

// Polls `r` until it sees a doorbell; false after `limit_ns`.
inline bool PollUntilWoken(Reactor& r, uint64_t limit_ns) {
  const uint64_t before = r.Stats().wakes_received;
  const uint64_t give_up = timing::MonotonicClock::Now() + limit_ns;
  while (r.Stats().wakes_received == before) {
    if (timing::MonotonicClock::Now() > give_up) return false;
    r.Poll(50 * kMs);
  }
  return true;
}

// A fixture over both backends; `reactor_` is ready in each test body, and
// the test is skipped when io_uring is refused here.
class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  ReactorOptions Options(uint32_t ring_entries = 256) const {
    ReactorOptions o;
    o.backend = GetParam() == Backend::kIoUring ? BackendChoice::kIoUring
                                                : BackendChoice::kEpoll;
    o.ring_entries = ring_entries;
    return o;
  }

  // Creates a reactor of the parameter's backend; sets skip_ when io_uring
  // is refused here.
  std::unique_ptr<Reactor> Make(uint32_t ring_entries = 256) {
    absl::StatusOr<std::unique_ptr<Reactor>> r =
        Reactor::Create(Options(ring_entries));
    if (!r.ok()) {
      skip_ = std::string(r.status().message());
      return nullptr;
    }
    return std::move(*r);
  }

  void SetUp() override {
    reactor_ = Make();
    if (reactor_ == nullptr) {
      GTEST_SKIP() << "io_uring unavailable here: " << skip_;
    }
    ASSERT_EQ(reactor_->backend(), GetParam());
  }

  // Polls until `pred` holds; false after `limit_ns`.
  bool RunUntil(const std::function<bool()>& pred, Reactor* r = nullptr,
                uint64_t limit_ns = 10'000 * kMs) {
    if (r == nullptr) r = reactor_.get();
    const uint64_t give_up = timing::MonotonicClock::Now() + limit_ns;
    while (!pred()) {
      if (timing::MonotonicClock::Now() > give_up) return false;
      r->Poll(kMs);
    }
    return true;
  }

  std::string skip_;
  std::unique_ptr<Reactor> reactor_;
};

}  // namespace spindle::reactor::testing

#endif  // SPINDLE_REACTOR_REACTOR_TESTING_H_
