// Fibers: Abort in every state, shutdown with fibers suspended, unwinding
// (destructors on the fiber's stack run), stacks (guard page, recycling,
// 100,000 live fibers) and fibers on a Runtime.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executor/executor.h"
#include "executor/internal/fiber_stack.h"
#include "executor/local_executor_testing.h"
#include "executor/runtime_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using executor_testing::Gate;
using executor_testing::MakeExecutor;

// Counts live objects: every one made on a fiber's stack must be destroyed
// by the time its fiber is cancelled.
struct Live {
  static inline std::atomic<int> count{0};
  Live() { count.fetch_add(1, std::memory_order_relaxed); }
  Live(const Live&) { count.fetch_add(1, std::memory_order_relaxed); }
  ~Live() { count.fetch_sub(1, std::memory_order_relaxed); }
};

class FiberCancelTest : public ::testing::Test {
 protected:
  void SetUp() override { Live::count.store(0); }
  void TearDown() override { EXPECT_EQ(Live::count.load(), 0); }
};

Task<void> AbortLater(JoinHandle<int>* h) {
  co_await YieldNow();
  h->Abort();
}

TEST_F(FiberCancelTest, AbortBeforeItRunsDropsTheCallableUnrun) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  bool ran = false;
  JoinHandle<int> h = ex->SpawnFiber([keep = Live(), &ran] {
    ran = true;
    return 1;
  });
  EXPECT_EQ(Live::count.load(), 1);  // the callable's capture
  h.Abort();
  ex->Run();
  EXPECT_FALSE(ran);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_THROW((void)h.Join(), TaskCancelledError);
}

TEST_F(FiberCancelTest, AbortWhileWaitingOnAWakerUnwindsTheStack) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Gate gate;
  bool after = false;
  JoinHandle<int> h = ex->SpawnFiber([&] {
    Live on_stack;
    this_fiber::Await(gate.Wait());
    after = true;
    return 1;
  });
  ex->SpawnDetached(AbortLater(&h));
  ex->Run();
  EXPECT_FALSE(after);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

TEST_F(FiberCancelTest, AbortWhileSleepingOnTheReactorUnwinds) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int> h = ex->SpawnFiber([] {
    Live on_stack;
    this_fiber::SleepFor(std::chrono::seconds(30));
    return 1;
  });
  ex->SpawnDetached(AbortLater(&h));
  const auto t0 = std::chrono::steady_clock::now();
  ex->Run();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

TEST_F(FiberCancelTest, AbortWhileJoiningAnotherTaskUnwinds) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Gate gate;
  JoinHandle<void> target = ex->Spawn(executor_testing::WaitOn(&gate));
  JoinHandle<int> h = ex->SpawnFiber([&] {
    Live on_stack;
    this_fiber::Await(target);
    return 1;
  });
  auto finish = [](JoinHandle<int>* f, Gate* g) -> Task<void> {
    co_await YieldNow();
    f->Abort();
    co_await YieldNow();
    g->Release();
  };
  ex->SpawnDetached(finish(&h, &gate));
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(target.status(), JoinStatus::kCompleted);
}

// Aborted by itself while running: cancelled at its next suspension.
TEST_F(FiberCancelTest, SelfAbortTakesEffectAtTheNextYield) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  JoinHandle<int>* self = nullptr;
  int steps = 0;
  JoinHandle<int> h = ex->SpawnFiber([&] {
    Live on_stack;
    ++steps;
    self->Abort();
    ++steps;  // still running: the abort waits for a suspension point
    this_fiber::Yield();
    ++steps;
    return 1;
  });
  self = &h;
  ex->Run();
  EXPECT_EQ(steps, 2);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

// A catch (...) that swallows the cancellation gets it again at the next
// suspension point; the fiber still ends cancelled.
TEST_F(FiberCancelTest, SwallowedCancellationComesBack) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Gate gate;
  int swallowed = 0;
  bool after = false;
  JoinHandle<int> h = ex->SpawnFiber([&] {
    Live outer;
    try {
      Live inner;
      this_fiber::Await(gate.Wait());
    } catch (...) {
      ++swallowed;
    }
    this_fiber::Yield();  // throws again
    after = true;
    return 1;
  });
  ex->SpawnDetached(AbortLater(&h));
  ex->Run();
  EXPECT_EQ(swallowed, 1);
  EXPECT_FALSE(after);
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
}

// Executor destruction cancels fibers in every state: queued, suspended on
// I/O (a pipe nobody writes), on a waker, and mid-await of a coroutine.
TEST_F(FiberCancelTest, ShutdownUnwindsSuspendedFibers) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  Gate gate;
  std::vector<JoinHandle<int>> handles;
  {
    auto ex = MakeExecutor();
    ASSERT_NE(ex, nullptr);
    handles.push_back(ex->SpawnFiber([fd = fds[0]] {
      Live on_stack;
      char c;
      return static_cast<int>(this_fiber::Await(Read(fd, &c, 1)));
    }));
    handles.push_back(ex->SpawnFiber([&gate] {
      Live on_stack;
      this_fiber::Await(gate.Wait());
      return 2;
    }));
    handles.push_back(ex->SpawnFiber([&gate] {
      Live on_stack;
      this_fiber::Await(executor_testing::WaitOn(&gate));
      return 3;
    }));
    ex->BlockOn(executor_testing::Settle());
    handles.push_back(ex->SpawnFiber([keep = Live()] { return 4; }));
    EXPECT_EQ(Live::count.load(), 4);
  }
  for (JoinHandle<int>& h : handles) {
    EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  }
  close(fds[0]);
  close(fds[1]);
}

using FiberCancelDeathTest = FiberCancelTest;

TEST_F(FiberCancelDeathTest, ADestructorThatWaitsWhileUnwindingSaysWhy) {
  EXPECT_DEATH(
      {
        auto ex = MakeExecutor();
        struct WaitsInDestructor {
          ~WaitsInDestructor() { this_fiber::Yield(); }
        };
        Gate gate;
        JoinHandle<int> h = ex->SpawnFiber([&gate] {
          WaitsInDestructor w;
          this_fiber::Await(gate.Wait());
          return 1;
        });
        ex->SpawnDetached(AbortLater(&h));
        ex->Run();
      },
      "suspended while its stack was unwinding");
  Live::count.store(0);  // the child's, not ours
}

// Overflowing a fiber's stack faults on its guard page instead of writing
// over whatever lies below: the handler checks the faulting address.
char* g_guard_lo = nullptr;
char* g_guard_hi = nullptr;

void OnSegv(int, siginfo_t* info, void*) {
  char* a = static_cast<char*>(info->si_addr);
  const char* msg = (a >= g_guard_lo && a < g_guard_hi)
                        ? "fault on the guard page\n"
                        : "fault elsewhere\n";
  (void)!write(2, msg, __builtin_strlen(msg));
  _exit(3);
}

// Recurses until the stack runs out (the limit is never reached).
__attribute__((noinline)) int Overflow(int depth, int limit) {
  volatile char big[1024];
  big[0] = static_cast<char>(depth);
  if (depth == limit) return big[0];
  return Overflow(depth + 1, limit) + big[0];
}

TEST_F(FiberCancelDeathTest, StackOverflowFaultsOnTheGuardPage) {
  EXPECT_EXIT(
      {
        static char alt[64 << 10];
        stack_t ss{};
        ss.ss_sp = alt;
        ss.ss_size = sizeof(alt);
        sigaltstack(&ss, nullptr);
        struct sigaction sa {};
        sa.sa_sigaction = &OnSegv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigaction(SIGSEGV, &sa, nullptr);
        auto ex = MakeExecutor();
        FiberOptions o;
        o.stack_size = 16 << 10;
        (void)ex->SpawnFiber(
            [] {
              const executor_internal::FiberStack st =
                  executor_internal::CurrentFiberStack();
              g_guard_lo = st.base;
              g_guard_hi = st.base + executor_internal::StackPageSize();
              return Overflow(0, 1 << 30);
            },
            o);
        ex->Run();
      },
      ::testing::ExitedWithCode(3), "fault on the guard page");
}

// Stacks are recycled: sequential fibers reuse one mapping.
TEST_F(FiberCancelTest, StacksAreRecycled) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  const executor_internal::StackCacheStats before =
      executor_internal::ThreadStackStats();
  for (int i = 0; i < 100; ++i) {
    JoinHandle<int> h = ex->SpawnFiber([i] {
      this_fiber::Yield();
      return i;
    });
    ex->Run();
    EXPECT_EQ(h.Join(), i);
  }
  const executor_internal::StackCacheStats after =
      executor_internal::ThreadStackStats();
  EXPECT_LE(after.mapped - before.mapped, 1u);
  EXPECT_GE(after.reused - before.reused, 99u);
}

// A fiber's entry stays parked on its stack when the fiber ends, whichever
// way it ends, and the next fiber on that stack resumes it: from the spare
// slot and from the size lists (two stack sizes in turn), after a return,
// a throw, an unwinding abort and a fiber dropped before it started.  (Not
// under the sanitizers, which track each fiber's stack to its end.)
TEST_F(FiberCancelTest, ParkedEntriesRunTheNextFibers) {
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  const executor_internal::StackCacheStats before =
      executor_internal::ThreadStackStats();
  constexpr int kRounds = 40;
  int started = 0;
  for (int i = 0; i < kRounds; ++i) {
    FiberOptions o;
    o.stack_size = (i % 2 == 0) ? (size_t{16} << 10) : (size_t{32} << 10);
    switch (i % 4) {
      case 0: {
        JoinHandle<int> h = ex->SpawnFiber(
            [i] {
              this_fiber::Yield();
              return i;
            },
            o);
        ex->Run();
        EXPECT_EQ(h.Join(), i);
        ++started;
        break;
      }
      case 1: {
        JoinHandle<int> h = ex->SpawnFiber(
            [i]() -> int { throw std::runtime_error(std::to_string(i)); },
            o);
        ex->Run();
        try {
          (void)h.Join();
          ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error& e) {
          EXPECT_EQ(e.what(), std::to_string(i));
        }
        ++started;
        break;
      }
      case 2: {
        JoinHandle<int> h = ex->SpawnFiber(
            [] {
              Live guard;
              this_fiber::Await(SleepFor(std::chrono::hours(1)));
              return -1;
            },
            o);
        ex->SpawnDetached(AbortLater(&h));  // once the fiber sleeps
        ex->Run();
        EXPECT_EQ(h.status(), JoinStatus::kCancelled);
        EXPECT_EQ(Live::count.load(), 0) << "the stack was not unwound";
        ++started;
        break;
      }
      default: {
        JoinHandle<int> h = ex->SpawnFiber([] { return 0; }, o);
        h.Abort();  // never starts: no stack
        ex->Run();
        EXPECT_EQ(h.status(), JoinStatus::kCancelled);
        break;
      }
    }
  }
  const executor_internal::StackCacheStats after =
      executor_internal::ThreadStackStats();
  EXPECT_LE(after.mapped - before.mapped, 2u) << "one stack per size";
  if (executor_testing::kSanitized) {
    EXPECT_EQ(after.parked - before.parked, 0u);
  } else {
    EXPECT_GE(after.parked - before.parked,
              static_cast<uint64_t>(started - 2));
  }
}

// A fiber suspended inside a catch block on one thread, unwound by its
// executor's destruction on another: the fiber's exception state is put
// on the destroying thread (where it unwinds), and the thread it ran on
// keeps its own (here: inside a catch block of its own, waiting).
TEST_F(FiberCancelTest, UnwindingOnAnotherThreadLeavesTheFirstThreadsException) {
  std::unique_ptr<LocalExecutor> ex;
  JoinHandle<int> h;
  std::atomic<int> stage{0};  // 1: the fiber sleeps; 2: ex destroyed
  std::string seen_on_a;
  std::thread a([&] {
    ex = MakeExecutor();
    h = ex->SpawnFiber([] {
      Live guard;
      try {
        throw std::runtime_error("fiber's");
      } catch (const std::runtime_error&) {
        this_fiber::Await(SleepFor(std::chrono::hours(1)));
      }
      return 1;
    });
    LocalExecutor::RunLimits until_idle;
    until_idle.until_idle = true;  // the fiber asleep: nothing runnable
    (void)ex->RunFor(until_idle);
    try {
      throw std::logic_error("thread a's");
    } catch (const std::logic_error&) {
      stage.store(1, std::memory_order_release);
      while (stage.load(std::memory_order_acquire) != 2) {
        std::this_thread::yield();
      }
      try {
        throw;  // what this thread has caught, still its own?
      } catch (const std::exception& e) {
        seen_on_a = e.what();
      }
    }
  });
  while (stage.load(std::memory_order_acquire) != 1) {
    std::this_thread::yield();
  }
  ASSERT_EQ(Live::count.load(), 1) << "the fiber is not asleep";
  ex.reset();  // unwinds the fiber here
  EXPECT_EQ(std::uncaught_exceptions(), 0);
  EXPECT_EQ(std::current_exception(), nullptr)
      << "the fiber's caught exception stayed on this thread";
  stage.store(2, std::memory_order_release);
  a.join();
  EXPECT_EQ(seen_on_a, "thread a's");
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  EXPECT_EQ(Live::count.load(), 0);
}

// A thread's cached stacks (its spare and its lists) are unmapped when it
// exits.
TEST_F(FiberCancelTest, ThreadExitUnmapsItsCachedStacks) {
  const size_t before = executor_internal::MappedStackBytes();
  std::thread([before] {
    auto ex = MakeExecutor();
    ASSERT_NE(ex, nullptr);
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 10; ++i) {
      hs.push_back(ex->SpawnFiber([i] {
        this_fiber::Yield();  // all ten live at once: ten stacks
        return i;
      }));
    }
    ex->Run();
    EXPECT_GT(executor_internal::MappedStackBytes(), before);
    EXPECT_GE(executor_internal::ThreadStackStats().cached_stacks, 10u);
  }).join();
  EXPECT_EQ(executor_internal::MappedStackBytes(), before);
}

// 100,000 fibers alive at once, each with a guarded 16 KiB stack: past the
// ~32,000 that two mappings per stack would allow under the default
// vm.max_map_count, where the kernel has MADV_GUARD_INSTALL.  (Fewer under
// the sanitizers: AddressSanitizer's per-fiber state is much larger, and
// ThreadSanitizer counts each fiber against its limit of 8,128 threads.)
#if defined(__SANITIZE_THREAD__)
constexpr int kManyFibers = 1'000;
#elif defined(__SANITIZE_ADDRESS__)
constexpr int kManyFibers = 20'000;
#else
constexpr int kManyFibers = 100'000;
#endif

TEST_F(FiberCancelTest, HundredThousandLiveFibers) {
  const int n = kManyFibers;
  auto ex = MakeExecutor();
  ASSERT_NE(ex, nullptr);
  Notify go;
  int waiting = 0;
  int64_t sum = 0;
  FiberOptions o;
  o.stack_size = 16 << 10;
  for (int i = 0; i < n; ++i) {
    (void)ex->SpawnFiber(
        [&, i] {
          ++waiting;
          this_fiber::Await(go.Notified());
          --waiting;
          sum += i;
        },
        o);
  }
  ex->BlockOn(executor_testing::Settle());
  ASSERT_EQ(waiting, n);
  // The sanitizers map much of their own: counted only without them.
  if (!executor_testing::kSanitized &&
      executor_internal::StackGuardKind() ==
          executor_internal::GuardKind::kMadvise) {
    FILE* maps = fopen("/proc/self/maps", "r");
    ASSERT_NE(maps, nullptr);
    int lines = 0;
    for (int c; (c = fgetc(maps)) != EOF;) lines += c == '\n';
    fclose(maps);
    EXPECT_LT(lines, n / 2) << "guarded stacks should share mappings";
  }
  go.NotifyAll();
  ex->Run();
  EXPECT_EQ(waiting, 0);
  EXPECT_EQ(sum, int64_t{n} * (n - 1) / 2);
}

// On a Runtime: fibers on every worker, handing values through a channel to
// coroutines, and fibers left suspended at shutdown are unwound.
TEST_F(FiberCancelTest, RuntimeRunsFibersAndUnwindsThemAtShutdown) {
  Gate never;  // only touched on the worker that waits on it
  std::vector<JoinHandle<int>> stuck;
  {
    auto rt = runtime_testing::MakeRuntime(2);
    ASSERT_NE(rt, nullptr);
    auto ch = executor_testing::MakeChannel<int>(4);
    ASSERT_NE(ch, nullptr);
    std::vector<JoinHandle<int>> fibers;
    for (int f = 0; f < 8; ++f) {
      fibers.push_back(rt->SpawnFiber([ch, f] {
        for (int i = 0; i < 100; ++i) {
          if (!this_fiber::Await(ch->Send(f * 100 + i))) return -1;
          this_fiber::Yield();
        }
        return f;
      }));
    }
    auto sum = [](std::shared_ptr<Channel<int>> c) -> Task<int64_t> {
      int64_t s = 0;
      for (int i = 0; i < 800; ++i) {
        std::optional<int> v = co_await c->Recv();
        if (!v) break;
        s += *v;
      }
      co_return s;
    };
    EXPECT_EQ(rt->BlockOn(sum(ch)), int64_t{799} * 800 / 2);
    for (int f = 0; f < 8; ++f) EXPECT_EQ(fibers[f].Join(), f);
    for (int i = 0; i < 4; ++i) {
      stuck.push_back(rt->SpawnFiber([] {
        Live on_stack;
        this_fiber::SleepFor(std::chrono::hours(1));
        return 0;
      }));
    }
    // Wait until all four are suspended (each made its Live).
    while (Live::count.load() < 4) std::this_thread::yield();
  }
  for (JoinHandle<int>& h : stuck) {
    EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  }
}

}  // namespace
}  // namespace spindle
