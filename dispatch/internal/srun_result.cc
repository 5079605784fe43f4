// dispatch/internal/srun_result.cc: reading srun's exit and messages.
//
// What srun 22.05 prints (with --quiet), one line each, on its stderr:
//   srun: error: NODE: task 0: Exited with exit code N    (N != 0)
//   srun: error: NODE: task 0: Terminated                  (strsignal text)
//   srun: error: Node failure on NODE
//   srun: error: Task launch for StepId=J.S failed on node NODE: REASON
//   srun: error: Unable to create step for job J: REASON
//   srun: error: Unable to confirm allocation for job J: REASON
//   srun: error: Unable to allocate resources: REASON      (a job of its own)
//   slurmstepd-NODE: error: execve(): PATH: REASON
//   slurmstepd-NODE: error: couldn't chdir to `DIR': REASON: going to /tmp ...
//   slurmstepd-NODE: error: *** STEP J.S ON NODE CANCELLED AT TIME ***
// srun exits with the task's exit code, or 128+n for signal n; after a node
// failure it exits 0.
#include "dispatch/internal/srun_result.h"

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace spindle::dispatch_internal {
namespace {

bool IsSlurmLine(absl::string_view line) {
  return absl::StartsWith(line, "srun: ") ||
         absl::StartsWith(line, "slurmstepd: ") ||
         (absl::StartsWith(line, "slurmstepd-") &&
          line.find(": ") != absl::string_view::npos);
}

// The text after `marker` in `line`, up to `end` (or the line's end).
absl::string_view After(absl::string_view line, absl::string_view marker,
                       absl::string_view end = {}) {
  size_t at = line.find(marker);
  if (at == absl::string_view::npos) return {};
  absl::string_view rest = line.substr(at + marker.size());
  if (!end.empty()) rest = rest.substr(0, rest.find(end));
  return rest;
}

absl::Status ExecFailure(absl::string_view reason, std::string msg) {
  if (absl::StrContains(reason, "No such file")) {
    return absl::NotFoundError(std::move(msg));
  }
  if (absl::StrContains(reason, "Permission denied")) {
    return absl::PermissionDeniedError(std::move(msg));
  }
  return absl::FailedPreconditionError(std::move(msg));
}

}  // namespace

std::string DescribeStep(const SrunStep& step) {
  if (step.job == 0) return absl::StrFormat("Slurm job '%s'", step.name);
  return absl::StrFormat("Slurm job step '%s' of job %d on node %s", step.name,
                         step.job, step.node);
}

SrunVerdict InterpretSrun(const SrunStep& step, dispatch::ProcessResult& r) {
  // Take Slurm's lines out of stderr; keep every other byte as it came.
  std::vector<std::string> slurm;
  std::string kept;
  absl::string_view err = r.stderr_data;
  while (!err.empty()) {
    size_t nl = err.find('\n');
    size_t len = nl == absl::string_view::npos ? err.size() : nl + 1;
    absl::string_view line = err.substr(0, len);
    if (IsSlurmLine(line)) {
      slurm.emplace_back(absl::StripSuffix(line, "\n"));
    } else {
      kept.append(line.data(), line.size());
    }
    err.remove_prefix(len);
  }
  r.stderr_data = std::move(kept);

  SrunVerdict v;
  const std::string what = DescribeStep(step);
  bool task_line = false;
  bool signalled = false;
  std::string first_error;
  absl::Status exec_error;
  for (const std::string& line : slurm) {
    if (absl::string_view node = After(line, "Node failure on "); !node.empty()) {
      v.failed_node = std::string(absl::StripAsciiWhitespace(node));
      v.status = absl::UnavailableError(absl::StrFormat(
          "%s failed: Slurm reports node %s failed (\"%s\"); the task's "
          "result is unknown",
          what, v.failed_node, line));
    } else if (absl::string_view n = After(line, " failed on node ", ":");
               absl::StrContains(line, "Task launch") && !n.empty()) {
      v.failed_node = std::string(n);
      v.status = absl::UnavailableError(absl::StrFormat(
          "%s did not start: Slurm could not launch it on node %s (\"%s\")",
          what, v.failed_node, line));
    } else if (absl::string_view t = After(line, ": task 0: "); !t.empty()) {
      task_line = true;
      signalled = !absl::StartsWith(t, "Exited with exit code ");
    } else if (absl::string_view e = After(line, "execve(): "); !e.empty()) {
      absl::string_view reason = After(e, ": ");
      exec_error = ExecFailure(
          reason, absl::StrFormat("%s: '%s' could not be executed (\"%s\")",
                                  what, step.binary, line));
    } else if (absl::StrContains(line, "couldn't chdir to")) {
      exec_error = absl::FailedPreconditionError(absl::StrFormat(
          "%s: the working directory is missing on the node; Slurm ran the "
          "task in /tmp instead (\"%s\")",
          what, line));
    } else if (absl::StrContains(line, "Unable to create step") ||
               absl::StrContains(line, "Unable to confirm allocation") ||
               absl::StrContains(line, "Unable to allocate resources")) {
      if (absl::StrContains(line, "node configuration is not available") &&
          step.job != 0) {
        v.failed_node = step.node;  // -w NODE: the node left the job
      } else if (step.job != 0) {
        v.allocation_gone = true;
      }
      v.status = absl::UnavailableError(
          absl::StrFormat("%s did not start: \"%s\"", what, line));
    } else if (absl::StrContains(line, "CANCELLED") && !step.cancelled) {
      if (absl::StrContains(line, "TIME LIMIT")) v.allocation_gone = true;
      if (v.status.ok()) {
        v.status = absl::UnavailableError(absl::StrFormat(
            "%s was cancelled outside Spindle (\"%s\")", what, line));
      }
    } else if (first_error.empty() && absl::StartsWith(line, "srun: error:")) {
      first_error = line;
    }
  }
  if (v.status.ok()) v.status = exec_error;

  if (r.term_signal == 0) {  // srun exited (we did not kill it)
    const int rc = r.exit_code;
    if (signalled && rc > 128 && rc - 128 < 65) {
      r.exit_code = -1;
      r.term_signal = rc - 128;
    }
    if (v.status.ok() && !task_line && rc != 0 && !step.cancelled) {
      v.status = absl::UnavailableError(absl::StrFormat(
          "%s: srun failed with exit code %d (\"%s\")", what, rc,
          first_error.empty() ? "no message" : first_error));
    }
  }
  return v;
}

}  // namespace spindle::dispatch_internal
