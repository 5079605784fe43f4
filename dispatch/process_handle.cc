// dispatch/process_handle.cc: ProcessHandle, the caller's side of a child
// that a ProcessRunner runs (dispatch/internal/process_shared.h is what
// they share).
#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dispatch/internal/process_shared.h"
#include "dispatch/process.h"

namespace spindle::dispatch {

using dispatch_internal::ProcessShared;

pid_t ProcessHandle::pid() const { return shared_->pid; }

bool ProcessHandle::done() const {
  // Acquire: pairs with the release store in Finish.
  return shared_->done.load(std::memory_order_acquire);
}

const ProcessResult& ProcessHandle::Wait() const {
  std::unique_lock<std::mutex> l(shared_->mu);
  shared_->cv.wait(l, [&] {
    return shared_->done.load(std::memory_order_relaxed);  // under mu
  });
  return shared_->result;
}

const ProcessResult* ProcessHandle::WaitFor(absl::Duration timeout) const {
  timeout = std::clamp(timeout, absl::ZeroDuration(), absl::Hours(24 * 365));
  std::unique_lock<std::mutex> l(shared_->mu);
  const bool ok = shared_->cv.wait_for(
      l, absl::ToChronoNanoseconds(timeout), [&] {
        return shared_->done.load(std::memory_order_relaxed);  // under mu
      });
  return ok ? &shared_->result : nullptr;
}

absl::Status ProcessHandle::status() const {
  std::unique_lock<std::mutex> l(shared_->mu);
  shared_->cv.wait(l, [&] {
    return shared_->done.load(std::memory_order_relaxed);  // under mu
  });
  return absl::Status(shared_->status_code, shared_->status_message);
}

ProcessResult ProcessHandle::TakeResult() const {
  std::unique_lock<std::mutex> l(shared_->mu);
  shared_->cv.wait(l, [&] {
    return shared_->done.load(std::memory_order_relaxed);  // under mu
  });
  return std::move(shared_->result);
}

void ProcessHandle::Kill() const {
  // Holding mu keeps the runner from finishing (and so from being
  // destroyed) while the request is queued.
  std::lock_guard<std::mutex> l(shared_->mu);
  if (shared_->done.load(std::memory_order_relaxed)) return;  // under mu
  dispatch_internal::RequestKill(shared_->core, shared_);
}

void ProcessHandle::OnDone(std::unique_ptr<ProcessDoneCallback> cb) const {
  if (cb == nullptr) return;
  {
    std::lock_guard<std::mutex> l(shared_->mu);
    if (!shared_->done.load(std::memory_order_relaxed)) {  // under mu
      shared_->on_done.push_back(std::move(cb));
      return;
    }
  }
  cb->Done();  // already in: Finish has run (and taken the list) under mu
}

}  // namespace spindle::dispatch
