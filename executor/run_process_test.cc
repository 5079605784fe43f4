// executor/run_process_test.cc: tasks await processes (RunProcess,
// WaitProcess) and Pool handles, on a LocalExecutor and on a Runtime.
#include "executor/run_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dispatch/dispatch_testing.h"
#include "executor/executor.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

using dispatch::ProcessResult;
using dispatch::ProcessSpec;
using dispatch_testing::Event;

ProcessSpec Sh(const std::string& script) {
  ProcessSpec s;
  s.binary = "/bin/sh";
  s.args = {"-c", script};
  return s;
}

std::unique_ptr<LocalExecutor> MakeExecutor() {
  auto ex = ExecutorBuilder().Build();
  EXPECT_TRUE(ex.ok()) << ex.status();
  return std::move(ex).value();
}

std::unique_ptr<dispatch::ProcessRunner> MakeRunner() {
  auto r = dispatch::ProcessRunner::Create({});
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

// Skips await_ready, so await_suspend runs even when the result is in: the
// path where the result arrives between the two.
template <class A>
struct SuspendAnyway {
  A a;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { a.await_suspend(h); }
  decltype(auto) await_resume() { return a.await_resume(); }
};

TEST(RunProcessTest, ATaskGetsTheResultOrTheStartError) {
  auto ex = MakeExecutor();
  auto ok = ex->Spawn([]() -> Task<ProcessResult> {
    absl::StatusOr<ProcessResult> r =
        co_await RunProcess(Sh("echo out; echo err >&2; exit 7"));
    EXPECT_TRUE(r.ok()) << r.status();
    co_return r.ok() ? *std::move(r) : ProcessResult{};
  }());
  auto missing = ex->Spawn([]() -> Task<absl::Status> {
    ProcessSpec s;
    s.binary = "/nonexistent/spindle-binary";
    absl::StatusOr<ProcessResult> r = co_await RunProcess(std::move(s));
    co_return r.status();
  }());
  auto bad = ex->Spawn([]() -> Task<absl::Status> {
    // Not `RunProcess(ProcessSpec{})`: GCC 12 destroys a braced temporary
    // inside a co_await expression twice (see run_process.h).
    ProcessSpec empty;
    absl::StatusOr<ProcessResult> r = co_await RunProcess(std::move(empty));
    co_return r.status();
  }());
  ex->Run();
  const ProcessResult& r = ok.Join();
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  const absl::Status m = missing.Join();
  EXPECT_EQ(m.code(), absl::StatusCode::kNotFound) << m;
  EXPECT_NE(m.message().find("/nonexistent/spindle-binary"), std::string::npos)
      << m;
  EXPECT_EQ(bad.Join().code(), absl::StatusCode::kInvalidArgument);
}

// The awaiting task is suspended, not its thread: another task keeps running
// while the child lives (it could not if RunProcess blocked the thread).
TEST(RunProcessTest, TheExecutorRunsOtherTasksWhileAChildRuns) {
  auto ex = MakeExecutor();
  auto runner = MakeRunner();
  std::atomic<bool> child_done{false};
  int polls_meanwhile = 0;
  // (Coroutine lambdas take what they use as parameters: the closure dies
  // at the end of the Spawn expression, the parameters live in the frame.)
  auto t1 = ex->Spawn([](dispatch::ProcessRunner* runner,
                         std::atomic<bool>* child_done) -> Task<void> {
    ProcessSpec s = Sh("read line; echo got $line");
    s.stdin_data = "go\n";
    absl::StatusOr<ProcessResult> r = co_await RunProcess(*runner, s);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) {
      EXPECT_EQ(r->stdout_data, "got go\n");
    }
    *child_done = true;
  }(runner.get(), &child_done));
  // Polled first while the child runs: child_done is set only when the
  // task above resumes, which this executor's thread must do.
  auto t2 = ex->Spawn([](std::atomic<bool>* child_done,
                         int* polls_meanwhile) -> Task<void> {
    while (!*child_done) {
      ++*polls_meanwhile;
      co_await SleepFor(std::chrono::milliseconds(1));
    }
  }(&child_done, &polls_meanwhile));
  ex->Run();
  EXPECT_TRUE(child_done);
  EXPECT_GT(polls_meanwhile, 0);
}

TEST(RunProcessTest, ManyChildrenAtOnceFromManyTasks) {
  auto ex = MakeExecutor();
  std::vector<JoinHandle<int>> hs;
  for (int i = 0; i < 64; ++i) {
    hs.push_back(ex->Spawn([](int i) -> Task<int> {
      absl::StatusOr<ProcessResult> r =
          co_await RunProcess(Sh("exit " + std::to_string(i % 50)));
      co_return r.ok() ? r->exit_code : -1;
    }(i)));
  }
  ex->Run();
  for (int i = 0; i < 64; ++i) EXPECT_EQ(hs[i].Join(), i % 50) << i;
}

// An aborted task's child is killed and reaped: the runner has nothing left
// running, and the result the task would have had is dropped.
TEST(RunProcessTest, AbortingTheAwaitingTaskKillsItsChild) {
  auto ex = MakeExecutor();
  auto runner = MakeRunner();
  auto h = ex->Spawn([](dispatch::ProcessRunner* runner) -> Task<int> {
    absl::StatusOr<ProcessResult> r =
        co_await RunProcess(*runner, Sh("sleep 100"));
    co_return r.ok() ? r->exit_code : -1;
  }(runner.get()));
  auto t3 = ex->Spawn([](dispatch::ProcessRunner* runner,
                         JoinHandle<int>* h) -> Task<void> {
    while (runner->running() == 0) co_await YieldNow();  // started
    h->Abort();
  }(runner.get(), &h));
  ex->Run();
  EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  // The SIGKILL is queued to the runner's thread: wait for its reap (a
  // bound, not a guess: it fails only if the child survives 10 s).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (runner->running() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(runner->running(), 0u) << "the child outlived its task";
}

// A Runtime destroyed while its tasks await children: every child killed.
TEST(RunProcessTest, RuntimeShutdownKillsTheChildrenItsTasksAwait) {
  auto runner = MakeRunner();
  {
    auto rt = RuntimeBuilder().Workers(2).Build();
    ASSERT_TRUE(rt.ok()) << rt.status();
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 4; ++i) {
      hs.push_back((*rt)->Spawn(
          [](dispatch::ProcessRunner* runner) -> Task<int> {
            absl::StatusOr<ProcessResult> r =
                co_await RunProcess(*runner, Sh("sleep 100"));
            co_return r.ok() ? r->exit_code : -1;
          }(runner.get())));
    }
    // The four are started (the runner watches them) before the shutdown.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (runner->running() < 4 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_EQ(runner->running(), 4u);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (runner->running() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(runner->running(), 0u) << "a child outlived the Runtime";
}

TEST(RunProcessTest, WaitProcessAwaitsAStartedChild) {
  auto ex = MakeExecutor();
  auto runner = MakeRunner();
  absl::StatusOr<dispatch::ProcessHandle> early = runner->Start(Sh("exit 3"));
  ASSERT_TRUE(early.ok()) << early.status();
  early->Wait();  // done before the task awaits it
  absl::StatusOr<dispatch::ProcessHandle> late =
      runner->Start(Sh("sleep 0.05; exit 4"));
  ASSERT_TRUE(late.ok()) << late.status();
  auto h = ex->Spawn([](dispatch::ProcessHandle early,
                        dispatch::ProcessHandle late) -> Task<int> {
    const int a = (co_await WaitProcess(early)).exit_code;
    // The result in before await_suspend registers: woken at once.
    // (A named awaitable: GCC 12 destroys a braced temporary in a co_await
    // expression twice.)
    SuspendAnyway<WaitProcessAwaitable> again{WaitProcess(early)};
    const int b = (co_await again).exit_code;
    const int c = (co_await WaitProcess(late)).exit_code;
    co_return a * 100 + b * 10 + c;
  }(*early, *late));
  ex->Run();
  EXPECT_EQ(h.Join(), 334);
}

TEST(RunProcessTest, TasksOnEveryRuntimeWorkerRunProcesses) {
  auto rt = RuntimeBuilder().Workers(2).Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  const int sum = (*rt)->BlockOn([]() -> Task<int> {
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 16; ++i) {
      hs.push_back(Runtime::Current()->Spawn([](int i) -> Task<int> {
        absl::StatusOr<ProcessResult> r =
            co_await RunProcess(Sh("exit " + std::to_string(i)));
        co_return r.ok() ? r->exit_code : -100;
      }(i)));
    }
    int s = 0;
    for (auto& h : hs) s += co_await h;
    co_return s;
  }());
  EXPECT_EQ(sum, 15 * 16 / 2);
}

TEST(PoolAwaitTest, ATaskAwaitsPoolHandles) {
  auto pool = PoolBuilder().Workers(2).Build();
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto ex = MakeExecutor();
  Event gate;
  auto slow = (*pool)->Submit([&] {
    gate.WaitForNotification();
    return 5;
  });
  ASSERT_TRUE(slow.ok());
  auto fast = (*pool)->Submit([] { return 6 * 7; });
  ASSERT_TRUE(fast.ok());
  fast->Wait();  // resolved before the task looks
  auto proc = (*pool)->Submit(Sh("echo pooled"));
  ASSERT_TRUE(proc.ok());
  auto h = ex->Spawn([](PoolHandle<int> fast, PoolHandle<int> slow,
                        PoolHandle<ProcessResult> proc,
                        Event* gate) -> Task<int> {
    int v = (co_await fast).value();
    // Resolved before await_suspend registers: woken at once.
    SuspendAnyway<decltype(fast.operator co_await())> again{
        fast.operator co_await()};
    v += (co_await again).value();
    const absl::StatusOr<ProcessResult>& p = co_await proc;
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) {
      EXPECT_EQ(p->stdout_data, "pooled\n");
    }
    gate->Notify();  // another thread resolves `slow` while we wait
    v += (co_await slow).value();
    co_return v;
  }(*fast, *slow, *proc, &gate));
  ex->Run();
  EXPECT_EQ(h.Join(), 42 + 42 + 5);
}

// A task cancelled while it awaits a pool handle leaves the submission to
// run; its later resolution wakes nothing that is gone.
TEST(PoolAwaitTest, AnAbortedWaiterLeavesTheSubmissionAlone) {
  auto pool = PoolBuilder().Workers(1).Build();
  ASSERT_TRUE(pool.ok()) << pool.status();
  Event gate;
  std::atomic<bool> ran{false};
  auto slow = (*pool)->Submit([&] {
    gate.WaitForNotification();
    ran = true;
  });
  ASSERT_TRUE(slow.ok());
  {
    auto ex = MakeExecutor();
    auto h = ex->Spawn(
        [](PoolHandle<PoolDone> slow) -> Task<void> { co_await slow; }(*slow));
    auto t4 = ex->Spawn([](JoinHandle<void>* h) -> Task<void> {
      co_await YieldNow();
      h->Abort();
    }(&h));
    ex->Run();
    EXPECT_EQ(h.status(), JoinStatus::kCancelled);
  }  // the executor is gone before the handle resolves
  gate.Notify();
  EXPECT_TRUE(slow->Wait().ok());
  EXPECT_TRUE(ran);
  (*pool)->Shutdown(ShutdownMode::kDrain);
}

TEST(PoolAwaitTest, ACancelledSubmissionWakesItsWaiter) {
  auto pool = PoolBuilder().Workers(1).Build();
  ASSERT_TRUE(pool.ok()) << pool.status();
  Event gate, started;
  auto busy = (*pool)->Submit([&] {
    started.Notify();
    gate.WaitForNotification();
  });
  ASSERT_TRUE(busy.ok());
  started.WaitForNotification();
  auto queued = (*pool)->Submit([] { return 1; });
  ASSERT_TRUE(queued.ok());
  auto rt = RuntimeBuilder().Workers(2).Build();
  ASSERT_TRUE(rt.ok()) << rt.status();
  auto h = (*rt)->Spawn([](PoolHandle<int> queued) -> Task<absl::StatusCode> {
    co_return (co_await queued).status().code();
  }(*queued));
  std::thread shutdown([&] { (*pool)->Shutdown(ShutdownMode::kCancel); });
  // Free the worker only once the Shutdown has begun: a Submit refused as
  // FailedPrecondition says so (the refusal and the cancel are set in one
  // critical section), so the worker then cancels `queued`, not runs it.
  for (;;) {
    auto probe = (*pool)->Submit([] {});
    if (probe.status().code() == absl::StatusCode::kFailedPrecondition) break;
    std::this_thread::yield();
  }
  gate.Notify();
  EXPECT_EQ(h.Join(), absl::StatusCode::kCancelled);
  shutdown.join();
}

}  // namespace
}  // namespace spindle
