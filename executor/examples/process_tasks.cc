// executor/examples/process_tasks.cc: tasks on a Runtime of 2 workers run
// shell commands with `co_await RunProcess(spec)`; each task is suspended
// while its child runs, so all of them run at once.  One command times out,
// one binary is missing.
//
//   bazel run //executor:process_tasks
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "executor/executor.h"

namespace {

using spindle::dispatch::ProcessResult;
using spindle::dispatch::ProcessSpec;

// One command; the line it prints about the result.
spindle::Task<std::string> Run(std::string binary, std::string script) {
  ProcessSpec spec;
  spec.binary = std::move(binary);
  if (!script.empty()) spec.args = {"-c", script};
  spec.timeout = absl::Milliseconds(500);
  spec.kill_grace = absl::Milliseconds(100);
  const std::string what = script.empty() ? spec.binary : script;
  absl::StatusOr<ProcessResult> r = co_await spindle::RunProcess(std::move(spec));
  char line[256];
  if (!r.ok()) {
    std::snprintf(line, sizeof(line), "%-28s not started: %s", what.c_str(),
                  std::string(r.status().message()).c_str());
  } else if (r->timed_out) {
    std::snprintf(line, sizeof(line), "%-28s timed out, signal %d",
                  what.c_str(), r->term_signal);
  } else {
    std::string out = r->stdout_data;
    if (!out.empty() && out.back() == '\n') out.pop_back();
    std::snprintf(line, sizeof(line), "%-28s exit %d, stdout '%s'",
                  what.c_str(), r->exit_code, out.c_str());
  }
  co_return std::string(line);
}

spindle::Task<int> Root() {
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"/bin/sh", "echo compile; sleep 0.2"},
      {"/bin/sh", "echo test; sleep 0.2"},
      {"/bin/sh", "echo lint; exit 2"},
      {"/bin/sh", "sleep 5"},  // over its timeout
      {"/nonexistent/tool", ""},
  };
  std::vector<spindle::JoinHandle<std::string>> tasks;
  for (const auto& [binary, script] : commands) {
    tasks.push_back(spindle::Runtime::Current()->Spawn(Run(binary, script)));
  }
  for (auto& t : tasks) std::printf("%s\n", (co_await t).c_str());
  co_return 0;
}

}  // namespace

int main() {
  auto rt = spindle::RuntimeBuilder().Workers(2).Build();
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", rt.status().ToString().c_str());
    return 1;
  }
  const absl::Time start = absl::Now();
  const int rc = (*rt)->BlockOn(Root());
  // The two 0.2 s commands and the 0.5 s timeout overlap: well under the
  // 0.9 s they would take one after another.
  std::printf("all done in %s\n",
              absl::FormatDuration(absl::Trunc(absl::Now() - start,
                                               absl::Milliseconds(100)))
                  .c_str());
  return rc;
}
