// Fibers: spawning, suspending on every kind of awaitable, results and
// exceptions, and the mix with coroutine tasks (executor/fiber.h).
// Cancellation, shutdown and stacks are in fiber_cancel_test.cc.

#include <execinfo.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <cerrno>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "executor/executor.h"
#include "executor/frame_allocator.h"
#include "executor/internal/context_jump.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Constant;
using executor_testing::MakeExecutor;
using executor_testing::ReactorBackendTest;

TEST(FiberTest, ReturnsItsValueThroughTheHandle) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> h = ex->SpawnFiber([] { return 6 * 7; });
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCompleted);
  EXPECT_EQ(h.Join(), 42);
}

TEST(FiberTest, VoidFiberAndMoveOnlyResult) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  int ran = 0;
  JoinHandle<void> v = ex->SpawnFiber([&ran] { ++ran; });
  JoinHandle<std::unique_ptr<std::string>> p = ex->SpawnFiber(
      [] { return std::make_unique<std::string>("on a stack of its own"); });
  ex->Run();
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(v.status(), JoinStatus::kCompleted);
  EXPECT_EQ(*p.Join(), "on a stack of its own");
}

TEST(FiberTest, ExceptionReachesTheHandle) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> h = ex->SpawnFiber([]() -> int {
    this_fiber::Yield();
    throw std::runtime_error("fiber failed");
  });
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kFailed);
  EXPECT_THROW(
      {
        try {
          (void)h.Join();
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "fiber failed");
          throw;
        }
      },
      std::runtime_error);
}

// Fibers and coroutines yield in turn, in spawn order, on one queue.
TEST(FiberTest, YieldsInterleaveWithCoroutinesInSpawnOrder) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  std::vector<std::string> trace;
  auto coro = [](std::vector<std::string>* out) -> Task<void> {
    for (int i = 0; i < 3; ++i) {
      out->push_back("c" + std::to_string(i));
      co_await YieldNow();
    }
  };
  ex->SpawnDetached(coro(&trace));
  (void)ex->SpawnFiber([&trace] {
    for (int i = 0; i < 3; ++i) {
      trace.push_back("f" + std::to_string(i));
      this_fiber::Yield();
    }
  });
  ex->Run();
  EXPECT_EQ(trace, (std::vector<std::string>{"c0", "f0", "c1", "f1", "c2",
                                             "f2"}));
}

// A fiber awaits a coroutine task, a JoinHandle, and a Task directly; a
// coroutine awaits a fiber's handle.
TEST(FiberTest, FibersAndCoroutinesAwaitEachOther) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> child = ex->Spawn(executor_testing::YieldThenReturn(3, 5));
  JoinHandle<int> fiber = ex->SpawnFiber([&child] {
    const int a = this_fiber::Await(child);        // a JoinHandle
    const int b = this_fiber::Await(Constant(7));  // a Task, run inline
    JoinHandle<int> inner = CurrentExecutor()->SpawnFiber([] {
      this_fiber::Yield();
      return 11;
    });
    const int c = this_fiber::Await(inner);  // another fiber
    return a + b + c;
  });
  auto outer = [](JoinHandle<int>* f) -> Task<int> { co_return co_await *f; };
  JoinHandle<int> result = ex->Spawn(outer(&fiber));
  ex->Run();
  EXPECT_EQ(result.Join(), 5 + 7 + 11);
}

// A Task awaited directly in a fiber runs on the fiber's stack: its nested
// awaits and returns bounce there, also when it yields in the middle, and
// the run loop switches the fiber in once per poll.  Coroutine tasks yield
// beside it, so the fiber is polled inside slices of several polls.
TEST(FiberTest, ANestedTaskThatYieldsInsideAFiberFinishesThere) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  auto inner = []() -> Task<int> {
    co_await YieldNow();
    co_return 4;
  };
  auto outer = [inner]() -> Task<int> {
    const int v = co_await inner();
    co_await YieldNow();
    co_return v + co_await inner();
  };
  int others = 0;
  auto yielder = [](int* count) -> Task<void> {
    for (int i = 0; i < 100; ++i) {
      ++*count;
      co_await YieldNow();
    }
  };
  for (int i = 0; i < 3; ++i) ex->SpawnDetached(yielder(&others));
  JoinHandle<int> fiber = ex->SpawnFiber([outer] {
    int sum = 0;
    for (int i = 0; i < 20; ++i) sum += this_fiber::Await(outer());
    return sum;
  });
  ex->Run();
  EXPECT_EQ(fiber.Join(), 20 * 8);
  EXPECT_EQ(others, 300);
}

// The suspension at the bottom, out of line: this_fiber::Yield is inline
// (it switches out in its caller's frame), and inlined into Recurse its
// switch code would size every level's frame (under AddressSanitizer,
// 1,000 such levels overflowed the 64 KiB stack).
__attribute__((noinline)) uintptr_t SuspendHere() {
  this_fiber::Yield();
  return reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
}

// Deep call stacks are what fibers are for: an await 1,000 frames down.
// Returns the deepest frame's address; the caller checks the span.
__attribute__((noinline)) uintptr_t Recurse(int depth) {
  if (depth == 0) return SuspendHere();
  uintptr_t deepest = Recurse(depth - 1);
  asm volatile("" : "+r"(deepest));  // no tail call, no loop
  return deepest;
}

TEST(FiberTest, SuspendsThousandFramesDeepOnA64KiBStack) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  FiberOptions o;
  o.stack_size = 64 << 10;
  JoinHandle<uintptr_t> h = ex->SpawnFiber(
      [] {
        const auto top = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
        return top - Recurse(1000);
      },
      o);
  ex->Run();
  // At least a return address and a frame pointer per level.
  const uintptr_t span = h.Join();
  EXPECT_GE(span, 1000u * 16u);
  EXPECT_LT(span, 64u << 10);
}

TEST(FiberTest, SleepsAndYieldMaybe) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int64_t> h = ex->SpawnFiber([] {
    const auto t0 = std::chrono::steady_clock::now();
    this_fiber::SleepFor(std::chrono::milliseconds(2));
    for (int i = 0; i < 1000; ++i) this_fiber::YieldMaybe();
    return static_cast<int64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - t0)
            .count());
  });
  ex->Run();
  EXPECT_GE(h.Join(), 2000);
}

// A fiber may suspend inside a catch block while another fiber throws and
// catches: each keeps its own exception (the runtime's per-thread
// exception state travels with the fiber).
TEST(FiberTest, SuspendingInsideCatchBlocksKeepsEachFibersException) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  auto body = [](std::string tag) {
    return [tag] {
      try {
        throw std::runtime_error(tag);
      } catch (const std::runtime_error&) {
        for (int i = 0; i < 3; ++i) this_fiber::Yield();
        try {
          throw;  // the caught exception: this fiber's, not the other's
        } catch (const std::runtime_error& again) {
          return std::string(again.what()) + "/" +
                 std::to_string(std::uncaught_exceptions());
        }
      }
    };
  };
  JoinHandle<std::string> a = ex->SpawnFiber(body("a"));
  JoinHandle<std::string> b = ex->SpawnFiber(body("b"));
  ex->Run();
  EXPECT_EQ(a.Join(), "a/0");
  EXPECT_EQ(b.Join(), "b/0");
}

// The sync primitives work from fibers: a channel between a fiber producer
// and a coroutine consumer, and a mutex held across a fiber's suspension.
TEST(FiberTest, ChannelAndMutexFromFibers) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  auto ch = executor_testing::MakeChannel<int>(2);
  ASSERT_NE(ch, nullptr);
  (void)ex->SpawnFiber([ch] {
    for (int i = 1; i <= 100; ++i) {
      EXPECT_TRUE(this_fiber::Await(ch->Send(i)));
    }
    ch->Close();
  });
  auto consume = [](std::shared_ptr<Channel<int>> c) -> Task<int> {
    int sum = 0;
    for (;;) {
      std::optional<int> v = co_await c->Recv();
      if (!v) break;
      sum += *v;
    }
    co_return sum;
  };
  JoinHandle<int> sum = ex->Spawn(consume(ch));

  Mutex mu;
  int inside = 0;
  int overlaps = 0;
  for (int i = 0; i < 3; ++i) {
    (void)ex->SpawnFiber([&] {
      auto guard = this_fiber::Await(mu.Lock());
      if (++inside > 1) ++overlaps;
      this_fiber::SleepFor(std::chrono::microseconds(100));
      --inside;
    });
  }
  ex->Run();
  EXPECT_EQ(sum.Join(), 5050);
  EXPECT_EQ(overlaps, 0);
}

// Joins, channels and Notify suspend a fiber directly too (no bridge
// frame), and each still gets what it waited for.
TEST(FiberTest, JoinChannelAndNotifyAwaitsTakeNoFrame) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  auto ch = executor_testing::MakeChannel<int>(1);
  ASSERT_NE(ch, nullptr);
  Notify go;
  auto child = [](int v) -> Task<int> {
    co_await YieldNow();
    co_return v;
  };
  JoinHandle<int> kid = ex->Spawn(child(41));
  uint64_t frames = ~uint64_t{0};
  int got = 0;
  ex->SpawnFiberDetached([&] {
    const auto before = executor_internal::ThreadFrameStats();
    got = this_fiber::Await(kid);          // suspends: the child yields
    got += *this_fiber::Await(ch->Recv());  // suspends: nothing sent yet
    this_fiber::Await(go.Notified());       // suspends until NotifyOne
    const auto after = executor_internal::ThreadFrameStats();
    frames = (after.pooled_allocs + after.system_allocs) -
             (before.pooled_allocs + before.system_allocs);
  });
  auto feed = [](std::shared_ptr<Channel<int>> c, Notify* n) -> Task<void> {
    for (int i = 0; i < 3; ++i) co_await YieldNow();
    (void)co_await c->Send(1);
    for (int i = 0; i < 3; ++i) co_await YieldNow();
    n->NotifyOne();
  };
  // Spawned before the fiber runs: the frame count covers only its awaits.
  ex->SpawnDetached(feed(ch, &go));
  ex->Run();
  EXPECT_EQ(got, 42);
  EXPECT_EQ(frames, 0u);
}

// I/O from a fiber on both backends: a pipe written by a coroutine.
class FiberIoTest : public ReactorBackendTest {};

TEST_P(FiberIoTest, ReadsAPipeWrittenByACoroutine) {
  SPINDLE_MAKE_OR_SKIP(ex);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  JoinHandle<std::string> reader = ex->SpawnFiber([fd = fds[0]] {
    std::string got;
    char buf[8];
    while (got.size() < 10) {
      const int32_t n = this_fiber::Await(Read(fd, buf, sizeof(buf)));
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  });
  auto writer = [](int fd) -> Task<void> {
    co_await SleepFor(std::chrono::milliseconds(1));
    co_await Write(fd, "0123456789", 10);
  };
  ex->SpawnDetached(writer(fds[1]));
  ex->Run();
  EXPECT_EQ(reader.Join(), "0123456789");
  close(fds[0]);
  close(fds[1]);
}

// An I/O await (IoAwaiter, TimeoutAwaiter) suspends the fiber directly:
// no bridge frame from the frame allocator, on either backend; a timeout
// still cancels the read it bounds.
TEST_P(FiberIoTest, IoAwaitsTakeNoFrameAndTimeoutsCancel) {
  SPINDLE_MAKE_OR_SKIP(ex);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  uint64_t frames = ~uint64_t{0};
  int32_t timed_out = 0;
  int32_t read = 0;
  ex->SpawnFiberDetached([&, fd = fds[0]] {
    const auto before = executor_internal::ThreadFrameStats();
    char c = 0;
    timed_out = this_fiber::Await(
        Timeout(Read(fd, &c, 1), std::chrono::milliseconds(1)));
    this_fiber::Await(SleepFor(std::chrono::microseconds(100)));
    read = this_fiber::Await(Read(fd, &c, 1));
    const auto after = executor_internal::ThreadFrameStats();
    frames = (after.pooled_allocs + after.system_allocs) -
             (before.pooled_allocs + before.system_allocs);
  });
  auto writer = [](int fd) -> Task<void> {
    co_await SleepFor(std::chrono::milliseconds(3));
    co_await Write(fd, "x", 1);
  };
  ex->SpawnDetached(writer(fds[1]));
  ex->Run();
  EXPECT_EQ(timed_out, -ECANCELED);
  EXPECT_EQ(read, 1);
  EXPECT_EQ(frames, 0u);
  close(fds[0]);
  close(fds[1]);
}

INSTANTIATE_TEST_SUITE_P(Backends, FiberIoTest,
                         ::testing::Values(reactor::BackendChoice::kIoUring,
                                           reactor::BackendChoice::kEpoll));

TEST(FiberTest, OptionsOutOfRangeAreNamed) {
  FiberOptions o;
  EXPECT_TRUE(ValidateFiberOptions(o).ok());
  o.stack_size = 4096;
  absl::Status s = ValidateFiberOptions(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4096"), std::string::npos) << s;
  EXPECT_NE(s.message().find("8192"), std::string::npos) << s;
  o.stack_size = size_t{2} << 30;
  EXPECT_FALSE(ValidateFiberOptions(o).ok());
}

// On x86-64 the floating-point environment is the thread's, as for
// coroutine tasks (executor/internal/context_jump.h): a switch neither
// saves nor reloads it.  Boost.Context's switch reloaded each side's own
// MXCSR, which cost ~50 ns per switch whenever the two differed in a
// sticky exception flag (67 ns per yield against 13 for a fiber that
// cleared the flags), and made this test fail.
TEST(FiberTest, FloatingPointFlagsAreTheThreadsAcrossSwitches) {
#if !SPINDLE_OWN_CONTEXT_JUMP
  GTEST_SKIP() << "Boost.Context's switch (this architecture, or a CET "
                  "build) keeps each side's MXCSR";
#else
  constexpr unsigned kFlags = 0x3f;  // MXCSR's six exception flags
  constexpr unsigned kInexact = 0x20;
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  const unsigned saved = _mm_getcsr();
  unsigned fiber_saw = 0;
  unsigned coroutine_saw = kFlags;
  JoinHandle<void> f = ex->SpawnFiber([&fiber_saw] {
    _mm_setcsr(_mm_getcsr() & ~kFlags);
    this_fiber::Yield();  // the coroutine raises "inexact" meanwhile
    fiber_saw = _mm_getcsr() & kFlags;
    _mm_setcsr(_mm_getcsr() & ~kFlags);
    this_fiber::Yield();
  });
  auto coro = [](unsigned* saw) -> Task<void> {
    _mm_setcsr((_mm_getcsr() & ~kFlags) | kInexact);
    co_await YieldNow();
    *saw = _mm_getcsr() & kFlags;  // the fiber cleared them meanwhile
  };
  JoinHandle<void> c = ex->Spawn(coro(&coroutine_saw));
  ex->Run();
  _mm_setcsr(saved);
  EXPECT_EQ(f.status(), JoinStatus::kCompleted);
  EXPECT_EQ(c.status(), JoinStatus::kCompleted);
  EXPECT_EQ(fiber_saw, kInexact);
  EXPECT_EQ(coroutine_saw, 0u);
#endif
}

// A stack trace taken inside a fiber ends at the fiber's entry (its
// trampoline's unwind information), for both a fresh stack and a reused
// one with an entry parked on it.
TEST(FiberTest, StackTracesInsideAFiberEndAtItsEntry) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  constexpr int kMax = 64;
  std::vector<int> depths;
  for (int i = 0; i < 3; ++i) {
    ex->SpawnFiberDetached([&depths] {
      void* frames[kMax];
      depths.push_back(backtrace(frames, kMax));
    });
    ex->Run();
  }
  ASSERT_EQ(depths.size(), 3u);
  for (int d : depths) {
    EXPECT_GT(d, 1);
    EXPECT_LT(d, 16);  // the fiber's frames only, not the scheduler's
  }
}

using FiberDeathTest = ::testing::Test;

TEST_F(FiberDeathTest, SpawnWithABadStackSizeSaysWhy) {
  EXPECT_DEATH(
      {
        auto ex = MakeExecutor();
        FiberOptions o;
        o.stack_size = 100;
        (void)ex->SpawnFiber([] {}, o);
      },
      "stack_size 100 is out of range");
}

TEST_F(FiberDeathTest, ThisFiberOutsideAFiberSaysWhy) {
  EXPECT_DEATH(this_fiber::Yield(),
               "this_fiber::Yield called outside a fiber");
  EXPECT_DEATH(
      {
        auto ex = MakeExecutor();
        auto coro = []() -> Task<void> {
          this_fiber::SleepFor(std::chrono::milliseconds(1));
          co_return;
        };
        ex->BlockOn(coro());
      },
      "this_fiber::SleepFor called outside a fiber");
}

}  // namespace
}  // namespace spindle
