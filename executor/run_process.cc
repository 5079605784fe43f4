// executor/run_process.cc: RunProcess, WaitProcess and the default runner.

#include "executor/run_process.h"

#include <memory>
#include <utility>

#include "executor/waker.h"

namespace spindle {

absl::StatusOr<dispatch::ProcessRunner*> DefaultProcessRunner() {
  // Created once, at the first call (thread-safe static initialisation);
  // destroyed at exit, which kills and reaps the children still running and
  // resolves their handles.
  static const absl::StatusOr<std::unique_ptr<dispatch::ProcessRunner>>
      runner = dispatch::ProcessRunner::Create({});
  if (!runner.ok()) return runner.status();
  return runner->get();
}

namespace executor_internal {
namespace {

// Wakes the awaiting task when the runner stores the result.  Owns the
// Waker, so it is safe whenever it runs: after the task was cancelled, the
// wake does nothing.
class WakeOnDone final : public dispatch::ProcessDoneCallback {
 public:
  explicit WakeOnDone(Waker w) : waker_(std::move(w)) {}
  void Done() noexcept override { waker_.Wake(); }

 private:
  Waker waker_;
};

}  // namespace

void SuspendUntilProcessDone(const dispatch::ProcessHandle& h,
                             std::coroutine_handle<> awaiting) noexcept {
  // A result stored between await_ready and here runs Done() inside OnDone,
  // on this thread: a wake during the task's own poll, which the executor
  // turns into a re-queue.
  h.OnDone(std::make_unique<WakeOnDone>(Waker::SuspendCurrent(awaiting)));
}

}  // namespace executor_internal

bool RunProcessAwaitable::await_ready() {
  dispatch::ProcessRunner* runner = runner_;
  if (runner == nullptr) {
    absl::StatusOr<dispatch::ProcessRunner*> d = DefaultProcessRunner();
    if (!d.ok()) {
      start_error_ = d.status();
      return true;
    }
    runner = *d;
  }
  absl::StatusOr<dispatch::ProcessHandle> h = runner->Start(spec_);
  if (!h.ok()) {
    start_error_ = h.status();
    return true;
  }
  handle_.emplace(*std::move(h));
  return handle_->done();
}

absl::StatusOr<dispatch::ProcessResult> RunProcessAwaitable::await_resume() {
  if (!start_error_.ok()) return start_error_;
  // A launcher's verdict (a Slurm step whose node failed): the result is
  // not the spec's.
  if (absl::Status s = handle_->status(); !s.ok()) return s;
  return handle_->TakeResult();
}

}  // namespace spindle
