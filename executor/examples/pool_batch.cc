// executor/examples/pool_batch.cc: a batch of shell commands with
// priorities through a Pool of 2 workers; each result printed.
//
//   bazel run //executor:pool_batch
#include <cstdio>
#include <string>
#include <vector>

#include "executor/executor.h"

int main() {
  auto pool = spindle::PoolBuilder().Workers(2).MaxQueueSize(16).Build();
  if (!pool.ok()) {
    std::fprintf(stderr, "%s\n", pool.status().ToString().c_str());
    return 1;
  }
  struct Job {
    spindle::Priority priority;
    std::string script;
  };
  const std::vector<Job> jobs = {
      {spindle::Priority::kLow, "echo cleanup"},
      {spindle::Priority::kHigh, "echo deploy-fix"},
      {spindle::Priority::kNormal, "echo build; echo warn >&2"},
      {spindle::Priority::kNormal, "exit 3"},
      {spindle::Priority::kLow, "sleep 5"},  // over its timeout
  };
  std::vector<spindle::PoolHandle<spindle::dispatch::ProcessResult>> handles;
  for (const Job& j : jobs) {
    spindle::dispatch::ProcessSpec spec;
    spec.binary = "/bin/sh";
    spec.args = {"-c", j.script};
    spec.timeout = absl::Milliseconds(500);
    auto h = (*pool)->Submit(spec, j.priority);
    if (!h.ok()) {
      std::fprintf(stderr, "%s\n", h.status().ToString().c_str());
      return 1;
    }
    handles.push_back(*h);
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    const auto& r = handles[i].Wait();
    std::printf("%-28s ", jobs[i].script.c_str());
    if (!r.ok()) {
      std::printf("%s\n", r.status().ToString().c_str());
    } else if (r->timed_out) {
      std::printf("timed out, signal %d\n", r->term_signal);
    } else {
      std::string out = r->stdout_data;
      if (!out.empty() && out.back() == '\n') out.pop_back();
      std::printf("exit %d, stdout '%s', stderr %zu bytes\n", r->exit_code,
                  out.c_str(), r->stderr_data.size());
    }
  }
  (*pool)->Shutdown(spindle::ShutdownMode::kDrain);
  std::printf("pending after shutdown: %zu\n", (*pool)->PendingTasks());
  return 0;
}
