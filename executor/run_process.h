// executor/run_process.h: a task awaits a process.
//
// Reach for `co_await spindle::RunProcess(spec)` inside a task: it starts the
// `dispatch::ProcessSpec` (dispatch/process.h: own process group, stdout and
// stderr drained at once, timeout, always reaped) and suspends the task, not
// its worker, until the child is reaped and drained.  The result is an
// `absl::StatusOr<dispatch::ProcessResult>`: a failure to start (a missing
// binary, EACCES, EMFILE, a bad spec) is the status; an exit code, a signal
// or a timeout is in the result.
//
//   spindle::Task<int> Build() {
//     dispatch::ProcessSpec spec;
//     spec.binary = "make";
//     spec.timeout = absl::Minutes(5);
//     absl::StatusOr<dispatch::ProcessResult> r =
//         co_await spindle::RunProcess(std::move(spec));
//     co_return r.ok() ? r->exit_code : -1;
//   }
//
// The child is watched by a `dispatch::ProcessRunner` (one thread with its
// own reactor).  `RunProcess(spec)` uses a process-wide one, created at the
// first call (backend: SPINDLE_REACTOR, else io_uring, else epoll) and
// destroyed at exit; `RunProcess(runner, spec)` uses yours.
// `WaitProcess(handle)` awaits a child you started with
// `ProcessRunner::Start` (for its pid, or to Kill it).
//
// Cancellation: when the awaiting task is cancelled (Abort, executor or
// Runtime shutdown) while the child runs, the child's process group gets
// SIGKILL and the runner reaps it; nothing is left behind.  (WaitProcess
// does not kill: the handle's owner decides.)
// GCC 12: build the spec before the co_await.  `co_await
// RunProcess(ProcessSpec{...})` crashes there: GCC 12 destroys a braced
// temporary inside a co_await expression twice (a compiler bug that hits
// any awaitable; a named spec, or one returned by a function, is fine).
// Works on a LocalExecutor and on every worker of a Runtime.  The spawn
// itself (posix_spawn, tens of microseconds to a few milliseconds) runs on
// the awaiting task's thread.

#ifndef SPINDLE_EXECUTOR_RUN_PROCESS_H_
#define SPINDLE_EXECUTOR_RUN_PROCESS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <coroutine>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "dispatch/process.h"

namespace spindle {

// The runner RunProcess(spec) uses; created at the first call.  Unavailable
// (and every RunProcess(spec) resolves with that status) when no reactor can
// be made; InvalidArgument for a bad SPINDLE_REACTOR.
absl::StatusOr<dispatch::ProcessRunner*> DefaultProcessRunner();

namespace executor_internal {

// Suspends the calling task until `h` is done (a Waker registered with
// ProcessHandle::OnDone).  Aborts with a message outside a Spindle task.
void SuspendUntilProcessDone(const dispatch::ProcessHandle& h,
                             std::coroutine_handle<> awaiting) noexcept;

}  // namespace executor_internal

// WaitProcessAwaitable: `co_await WaitProcess(handle)`; yields the result.
//
// Requires: `handle` came from ProcessRunner::Start; the runner outlives
// the await.  Guarantees: resumes once the result is in; a cancelled task
// leaves the child alone.
class WaitProcessAwaitable {
 public:
  explicit WaitProcessAwaitable(dispatch::ProcessHandle h) : handle_(std::move(h)) {}
  bool await_ready() const { return handle_.done(); }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    executor_internal::SuspendUntilProcessDone(handle_, h);
  }
  const dispatch::ProcessResult& await_resume() const { return handle_.Wait(); }

 private:
  dispatch::ProcessHandle handle_;
};

inline WaitProcessAwaitable WaitProcess(dispatch::ProcessHandle handle) {
  return WaitProcessAwaitable(std::move(handle));
}

// RunProcessAwaitable: `co_await RunProcess(...)`; yields
// absl::StatusOr<dispatch::ProcessResult>.
//
// The child starts when the task awaits, not when RunProcess is called.
// Requires: the runner (yours, or the default) outlives the await; awaited
// once.  Guarantees: see the file comment (a cancelled task's child is
// killed and reaped).
class RunProcessAwaitable {
 public:
  RunProcessAwaitable(dispatch::ProcessRunner* runner,
                      dispatch::ProcessSpec spec)
      : runner_(runner), spec_(std::move(spec)) {}
  RunProcessAwaitable(const RunProcessAwaitable&) = delete;
  RunProcessAwaitable& operator=(const RunProcessAwaitable&) = delete;
  RunProcessAwaitable(RunProcessAwaitable&& o) noexcept
      : runner_(o.runner_), spec_(std::move(o.spec_)),
        start_error_(std::move(o.start_error_)),
        handle_(std::exchange(o.handle_, std::nullopt)) {}
  // A task cancelled while the child runs: SIGKILL to its group (the
  // runner reaps it).
  ~RunProcessAwaitable() {
    if (handle_.has_value() && !handle_->done()) handle_->Kill();
  }

  // Starts the child; ready at once when it fails to start.
  bool await_ready();
  void await_suspend(std::coroutine_handle<> h) noexcept {
    executor_internal::SuspendUntilProcessDone(*handle_, h);
  }
  absl::StatusOr<dispatch::ProcessResult> await_resume();

 private:
  dispatch::ProcessRunner* runner_;  // null: the default runner
  dispatch::ProcessSpec spec_;
  absl::Status start_error_;
  std::optional<dispatch::ProcessHandle> handle_;
};

// Runs `spec` on the default runner.
inline RunProcessAwaitable RunProcess(dispatch::ProcessSpec spec) {
  return RunProcessAwaitable(nullptr, std::move(spec));
}
// Runs `spec` on `runner`.
inline RunProcessAwaitable RunProcess(dispatch::ProcessRunner& runner,
                                      dispatch::ProcessSpec spec) {
  return RunProcessAwaitable(&runner, std::move(spec));
}

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_RUN_PROCESS_H_
