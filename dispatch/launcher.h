// dispatch/launcher.h: where a ProcessRunner's processes run.
//
// A `ProcessRunner` runs a `ProcessSpec` on this machine.  Give it a
// `ProcessLauncher` (`ProcessRunnerOptions::launcher`) and it runs what the
// launcher prepares instead: a local command that runs the spec elsewhere
// (dispatch/slurm/slurm.h runs it as a Slurm job step through `srun`).  The
// runner still does everything it does for a local child: it spawns the
// command, reads both streams, feeds stdin, enforces the timeout and reaps
// it.  The launcher is told when the runner stops the command (so it can
// stop the remote work too) and turns the command's result into the spec's.
//
// Most users never implement this: they create a launcher (the Slurm one)
// and hand it to `ProcessRunner::Create` or `PoolBuilder::Launcher`.

#ifndef SPINDLE_DISPATCH_LAUNCHER_H_
#define SPINDLE_DISPATCH_LAUNCHER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dispatch/process.h"

namespace spindle::dispatch {

// LaunchedProcess: what a launcher keeps for one started process.
//
// Thread safety: the runner calls Stop and Finish on its own thread, one at
// a time; neither may block (queue slow work to a thread of the launcher's).
class LaunchedProcess {
 public:
  virtual ~LaunchedProcess() = default;
  // The runner is about to signal the local command's process group with
  // `sig`: SIGTERM when the spec's timeout fires, SIGKILL when the grace is
  // over, on ProcessHandle::Kill and at runner shutdown.  Not called once
  // the command has been reaped.  Returns how long the runner waits before
  // it sends a SIGKILL itself, so that the launcher can stop the remote
  // work first and let the command end on its own (a Slurm step is
  // cancelled, then srun exits); ZeroDuration: at once.  A SIGTERM is
  // always sent at once.
  virtual absl::Duration Stop(int sig) noexcept = 0;
  // The command has been reaped and drained: rewrite `result` (the local
  // command's) into the spec's.  A non-OK status says the spec's result is
  // unknown (ProcessHandle::status()); `result` then keeps what is known.
  virtual absl::Status Finish(ProcessResult& result) noexcept = 0;
};

// ProcessLauncher: turns a spec into a local command.
//
// Thread safety: Prepare is called from any thread that calls
// ProcessRunner::Start; an implementation is safe to call concurrently.
// Lifetime: each runner given the launcher holds a reference until it is
// destroyed (after every process it started has been reaped).
class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;

  struct Prepared {
    ProcessSpec command;  // what the runner spawns here
    std::unique_ptr<LaunchedProcess> process;  // never null
  };
  // `spec` is valid (ProcessSpec::Validate).  An error fails Start with it.
  virtual absl::StatusOr<Prepared> Prepare(const ProcessSpec& spec) = 0;
};

}  // namespace spindle::dispatch

#endif  // SPINDLE_DISPATCH_LAUNCHER_H_
