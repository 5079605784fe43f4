// dispatch/internal/process_shared.h: what a ProcessHandle shares with
// its ProcessRunner (process_runner.cc runs the child; process_handle.cc
// waits on and reads the result).

#ifndef SPINDLE_DISPATCH_INTERNAL_PROCESS_SHARED_H_
#define SPINDLE_DISPATCH_INTERNAL_PROCESS_SHARED_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "dispatch/process.h"

namespace spindle::dispatch_internal {

class RunnerCore;
struct Proc;

struct ProcessShared {
  RunnerCore* core = nullptr;
  pid_t pid = -1;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> done{false};
  dispatch::ProcessResult result;  // written once, under mu, before done
  // The launcher's verdict, as result.  Kept as code and text, so that
  // each status() is a Status of its caller's own (no Status rep shared
  // across threads: the system Abseil's refcount is not seen by TSan).
  absl::StatusCode status_code = absl::StatusCode::kOk;
  std::string status_message;
  // Registered by ProcessHandle::OnDone before done; taken by Finish.
  std::vector<std::unique_ptr<dispatch::ProcessDoneCallback>> on_done;  // mu
  Proc* proc = nullptr;  // the runner's thread only
};

// Queues a kill of `s`'s child for the runner's thread (which ignores it
// once the child is reaped).  The caller holds s->mu and has seen it not
// done, so the runner is still alive.
void RequestKill(RunnerCore* core, std::shared_ptr<ProcessShared> s);

}  // namespace spindle::dispatch_internal

#endif  // SPINDLE_DISPATCH_INTERNAL_PROCESS_SHARED_H_
