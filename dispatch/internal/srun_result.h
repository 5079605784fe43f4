// dispatch/internal/srun_result.h: what srun's exit says about a step.

#ifndef SPINDLE_DISPATCH_INTERNAL_SRUN_RESULT_H_
#define SPINDLE_DISPATCH_INTERNAL_SRUN_RESULT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "dispatch/process.h"

namespace spindle::dispatch_internal {

// One srun run by SlurmLauncher.
struct SrunStep {
  std::string name;     // the step's (or own job's) Slurm name
  uint64_t job = 0;     // the allocation; 0: a job of its own
  std::string node;     // where it was placed; empty for a job of its own
  std::string binary;   // the spec's, for messages
  bool cancelled = false;  // we cancelled it (timeout, Kill, shutdown)
};

struct SrunVerdict {
  absl::Status status;       // ProcessHandle::status()
  std::string failed_node;   // a node Slurm reported failed; empty: none
  bool allocation_gone = false;  // the allocation no longer takes steps
};

// Rewrites `r`, srun's own result, into the step's (dispatch/slurm.h says
// how): takes srun's and slurmstepd's lines out of stderr and reads them
// for the exit code, the signal and what failed.
SrunVerdict InterpretSrun(const SrunStep& step, dispatch::ProcessResult& r);

// "step 'NAME' of job J on node N" or "job 'NAME'": for messages.
std::string DescribeStep(const SrunStep& step);

}  // namespace spindle::dispatch_internal

#endif  // SPINDLE_DISPATCH_INTERNAL_SRUN_RESULT_H_
