// dispatch/slurm.h: process tasks as Slurm job steps.
//
// Reach for `SlurmLauncher::Create(options)` when a batch of process tasks
// outgrows one machine: it holds one Slurm allocation (`salloc --no-shell`)
// and runs each `ProcessSpec` as a job step inside it (`srun --jobid=J
// --overlap`).  Hand it to a `ProcessRunner` (`ProcessRunnerOptions::
// launcher`) or a `Pool` (`PoolBuilder::Launcher`): the handles, priorities,
// queue limit, timeouts and results are those of local processes.
//
//   auto slurm = dispatch::SlurmLauncher::Create(
//       dispatch::SlurmOptions::FromEnv().value()).value();
//   auto pool = spindle::PoolBuilder().Workers(8).Launcher(slurm)
//                   .Build().value();
//   dispatch::ProcessSpec spec;
//   spec.binary = "hostname";
//   auto h = pool->Submit(spec).value();
//   std::string node = h.Wait().value().stdout_data;
//
// Why Slurm's commands and not libslurm: libslurm's API changes with every
// Slurm release (its soname with it), while salloc, srun, scancel, squeue
// and scontrol keep their options across releases; srun already forwards
// stdin, keeps stdout and stderr apart and returns the task's exit code; and
// a step is a local process the runner watches like any other (reaped,
// drained, timed out), so nothing else in Spindle knows about Slurm.  The
// cost is one srun process per running step (~40 ms to start a step).
//
// How a spec runs:
//   - As a step of the allocation (`srun --jobid=J --overlap -N1 -n1 -w
//     NODE`) on the allocation's live node with the fewest steps of ours
//     running; or, when `spec.cpus` exceeds `cpus_per_node`, as a job of its
//     own (`srun -N1 -n1 -c CPUS`, same partition, account and time limit),
//     which waits in Slurm's queue for the CPUs.
//   - binary and args as given (a bare name is looked up in PATH on the
//     node); the environment is the spec's, applied to srun, which passes it
//     on (`--export=ALL`), plus SLURM_CONF and Slurm's SLURM_* variables;
//     `working_dir` is `--chdir`; stdin, stdout, stderr, output cap and drain
//     bound as for a local process.
//   - Results: the exit code; a signal (srun's 128+n and its message); both
//     streams apart, with srun's and slurmstepd's own lines (those that
//     start with "srun: " or "slurmstepd") taken out of stderr; the duration
//     includes the step's launch.  A binary the node cannot execute is
//     NotFound or PermissionDenied naming it and the node (the handle's
//     status()); a working directory missing on the node is
//     FailedPrecondition (Slurm then ran the task in /tmp).
//   - The timeout is Spindle's, to the second: when it fires the step is
//     cancelled (`scancel J.S`, which kills it) and srun gets SIGTERM; the
//     result says timed_out.  Kill (Abort of a task awaiting it, Pool
//     shutdown with kCancel, runner shutdown) cancels the step at once.
//     srun then ends by itself; if it has not within 10 s (slurmctld
//     unreachable), it gets SIGKILL.  A cancelled step is looked for (every
//     100 ms, on the launcher's own thread) until Slurm lists it, and for
//     10 s after srun ended: srun interrupted while creating its step may
//     exit while slurmctld still creates it.  A scancel that did not take
//     is sent again every 2 s while the step is listed.
//   - A node that fails while a step runs on it: that step's handle status
//     is Unavailable naming the step, the job and the node (its result is
//     unknown); the node is dropped and later specs run on the nodes left
//     (the allocation is made with --no-kill, so it survives).  When no node
//     is left, or the allocation itself ended (time limit, scancel), every
//     later Start fails with Unavailable naming the job.
//   - The allocation is released (`scancel J`) when the launcher is
//     destroyed: after every runner and pool holding it, so after every step
//     has ended.
//
// Not done: several tasks per step (MPI), GPUs or other GRES, memory
// requests, heterogeneous jobs, Slurm's own accounting (sacct), retrying a
// step whose node failed, growing or replacing the allocation.

#ifndef SPINDLE_DISPATCH_SLURM_H_
#define SPINDLE_DISPATCH_SLURM_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dispatch/launcher.h"
#include "dispatch/process.h"

namespace spindle::dispatch_internal {
class SlurmCore;
}  // namespace spindle::dispatch_internal

namespace spindle::dispatch {

// SlurmOptions: the allocation to hold.  FromEnv reads the SPINDLE_SLURM_*
// variable named beside each field.
struct SlurmOptions {
  int nodes = 1;          // [1, 100000]; SPINDLE_SLURM_NODES
  int cpus_per_node = 1;  // [1, 4096]; SPINDLE_SLURM_CPUS_PER_NODE
  std::string partition;  // empty: the cluster's default; _PARTITION
  std::string account;    // empty: the user's default; _ACCOUNT
  // The allocation's time limit, rounded up to whole minutes (Slurm's
  // unit).  [1 minute, 365 days]; SPINDLE_SLURM_TIME_LIMIT in minutes.
  absl::Duration time_limit = absl::Hours(1);
  // How long Create waits for the nodes to be free (salloc --immediate).
  // [1 s, 1 day]; SPINDLE_SLURM_WAIT in seconds.
  absl::Duration allocation_wait = absl::Seconds(60);
  // The slurm.conf for every Slurm command; empty: SLURM_CONF as the
  // environment has it (or Slurm's default).  SPINDLE_SLURM_CONF.
  std::string conf;
  // Where salloc, srun, scancel, squeue and scontrol are; empty: PATH.
  std::string commands_dir;

  // InvalidArgument naming the field, its value and the valid range.
  absl::Status Validate() const;
  // The defaults, with each SPINDLE_SLURM_* variable that is set applied;
  // InvalidArgument naming a variable whose value is not a number in range.
  static absl::StatusOr<SlurmOptions> FromEnv();
  // The slurm.conf of dispatch/slurm/local_cluster.sh's private cluster
  // ($SPINDLE_SLURM_DIR/slurm.conf, default /tmp/spindle-slurm) when it
  // exists; empty otherwise.  For tests and benchmarks that fall back to it.
  static std::string LocalClusterConf();
};

// SlurmLauncher: one held allocation; specs run as its job steps.
//
// Requires: Slurm's client commands, a reachable controller and munge (see
// docs/guides/cluster.md; dispatch/slurm/local_cluster.sh starts a private
// cluster on this machine).
// Guarantees: see the file comment.  Destruction releases the allocation.
// Thread safety: every member is safe from any thread.
class SlurmLauncher final : public ProcessLauncher {
 public:
  // Allocates (`salloc --no-shell --no-kill`).  InvalidArgument for bad
  // options; FailedPrecondition when a Slurm command is missing;
  // Unavailable naming Slurm's reason when no allocation was granted within
  // `allocation_wait` or the controller cannot be reached.
  static absl::StatusOr<std::shared_ptr<SlurmLauncher>> Create(
      const SlurmOptions& options);
  ~SlurmLauncher() override;
  SlurmLauncher(const SlurmLauncher&) = delete;
  SlurmLauncher& operator=(const SlurmLauncher&) = delete;

  // The allocation's job id.
  uint64_t job_id() const;
  // Its nodes that have not failed under a step of ours.
  std::vector<std::string> live_nodes() const;
  // Steps of the allocation prepared and not yet ended (jobs of their own
  // not counted).
  size_t steps_running() const;

  absl::StatusOr<Prepared> Prepare(const ProcessSpec& spec) override;

 private:
  explicit SlurmLauncher(std::unique_ptr<dispatch_internal::SlurmCore> core);
  std::unique_ptr<dispatch_internal::SlurmCore> core_;
};

}  // namespace spindle::dispatch

#endif  // SPINDLE_DISPATCH_SLURM_H_
