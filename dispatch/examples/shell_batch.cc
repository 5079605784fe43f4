// dispatch/examples/shell_batch.cc: runs a batch of shell commands with
// priorities on 2 workers and prints each result as it arrives.
//
//   bazel run //dispatch:shell_batch
//
// Each command is a WorkItem whose priority decides when a worker takes it;
// the worker runs it through a ProcessRunner (output captured, a timeout that
// kills the command's whole process group) and prints what came back.
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dispatch/dispatch.h"

namespace {

using spindle::dispatch::Priority;

struct Command : spindle::dispatch::WorkItem {
  Command(spindle::dispatch::ProcessRunner* r, Priority p, std::string s)
      : WorkItem(&Command::Run), runner(r), script(std::move(s)) {
    priority = p;
  }
  static void Run(WorkItem* w, bool ran) noexcept {
    auto* c = static_cast<Command*>(w);
    if (!ran) return;
    spindle::dispatch::ProcessSpec spec;
    spec.binary = "/bin/sh";
    spec.args = {"-c", c->script};
    spec.timeout = absl::Milliseconds(500);
    spec.kill_grace = absl::Milliseconds(100);
    absl::StatusOr<spindle::dispatch::ProcessResult> r = c->runner->Run(spec);
    static std::mutex print_mu;
    std::lock_guard<std::mutex> l(print_mu);
    std::printf("#%llu %-6s %-28s ", static_cast<unsigned long long>(c->dispatch_seq()),
                std::string(spindle::sched::PriorityName(c->priority)).c_str(),
                c->script.c_str());
    if (!r.ok()) {
      std::printf("failed to start: %s\n", r.status().ToString().c_str());
    } else if (r->timed_out) {
      std::printf("timed out (signal %d) after %s\n", r->term_signal,
                  absl::FormatDuration(r->duration).c_str());
    } else {
      std::string out = r->stdout_data;
      if (!out.empty() && out.back() == '\n') out.pop_back();
      std::printf("exit %d, stdout '%s', %zu bytes of stderr\n", r->exit_code,
                  out.c_str(), r->stderr_data.size());
    }
    std::fflush(stdout);
  }
  spindle::dispatch::ProcessRunner* runner;
  std::string script;
};

}  // namespace

int main() {
  auto runner = spindle::dispatch::ProcessRunner::Create({});
  auto dispatcher = spindle::dispatch::WorkDispatcher::Create({});
  if (!runner.ok() || !dispatcher.ok()) {
    std::fprintf(stderr, "setup failed: %s %s\n",
                 runner.status().ToString().c_str(),
                 dispatcher.status().ToString().c_str());
    return 1;
  }
  std::vector<std::unique_ptr<Command>> batch;
  auto add = [&](Priority p, const char* script) {
    batch.push_back(std::make_unique<Command>(runner->get(), p, script));
  };
  add(Priority::kLow, "echo cleanup");
  add(Priority::kNormal, "echo build; echo warn >&2");
  add(Priority::kHigh, "echo deploy-fix");
  add(Priority::kLow, "sleep 5");  // killed by the timeout
  add(Priority::kNormal, "exit 3");
  add(Priority::kHigh, "uname -s");
  add(Priority::kNormal, "/nonexistent/tool");
  std::vector<spindle::dispatch::WorkItem*> items;
  for (auto& c : batch) items.push_back(c.get());
  // Queued together before any worker starts: high, then normal, then low.
  (*dispatcher)->Submit(items);
  std::vector<std::unique_ptr<spindle::dispatch::Worker>> workers;
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    workers.push_back((*dispatcher)->Attach());
    threads.emplace_back([w = workers.back().get()] { w->Run(); });
  }
  const bool done = (*dispatcher)->Wait(0, 0, absl::Seconds(60));
  const absl::Status quit = (*dispatcher)->Quit(2, absl::Seconds(60));
  for (auto& t : threads) t.join();
  std::printf("%s\n", done && quit.ok() ? "all done" : "not finished");
  return done && quit.ok() ? 0 : 1;
}
