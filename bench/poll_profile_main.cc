// bench/poll_profile_main.cc: //bench:poll_profile, N_TASKS tasks x
// YIELDS_PER_TASK yields, for profiling.
//
// Plain run: the suite's poll_profile benchmark (spindle, asio, floor; wall
// time), with EXECUTOR selecting one.
//
// PROFILE=callgrind: re-runs itself twice under `valgrind --tool=callgrind`,
// once with YIELDS_PER_TASK=Y and once with 2Y, for the one executor that
// EXECUTOR names (default spindle), and prints instructions per poll =
// (Ir(2Y) - Ir(Y)) / (N_TASKS * Y): setup and teardown cancel out, and the
// count is repeatable on a machine without hardware counters.  The 2Y
// profile stays in the output directory for callgrind_annotate.
// WORKLOAD=channel (PROFILE=callgrind, EXECUTOR spindle) profiles a
// channel ping-pong instead of yields: two tasks on one LocalExecutor
// exchange N_TASKS x Y messages through two Channel<int64_t> of capacity 1,
// and the count is per message.  WORKLOAD=spawn and WORKLOAD=fiber_spawn
// profile Y rounds of N_TASKS coroutine tasks (fibers) spawned in a burst
// and run to completion on one LocalExecutor; the count is per task
// (spawn + run + teardown, the frame and stack caches warm).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench.h"
#include "bench/workloads.h"
#include "reactor/reactor.h"

extern char** environ;

namespace spindle::bench {
namespace {

constexpr const char* kChildEnv = "SPINDLE_POLL_PROFILE_CHILD";

bool OnPath(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + tool).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

// What poll_profile runs: EXECUTOR's yield loop, or with WORKLOAD=channel,
// spawn or fiber_spawn a Spindle workload (named spindle_<workload>).
absl::StatusOr<std::string> Workload(const Config& c) {
  const std::string executor = c.executor.empty() ? "spindle" : c.executor;
  const char* w = std::getenv("WORKLOAD");
  const std::string workload = w != nullptr ? w : "";
  if (workload.empty() || workload == "yield") return executor;
  if (workload != "channel" && workload != "spawn" &&
      workload != "fiber_spawn") {
    return absl::InvalidArgumentError(
        absl::StrCat("WORKLOAD='", workload,
                     "' is not valid: use yield, channel, spawn or "
                     "fiber_spawn"));
  }
  if (executor != "spindle") {
    return absl::InvalidArgumentError(absl::StrCat(
        "WORKLOAD=", workload, " runs Spindle only: EXECUTOR='", executor,
        "' is not valid with it (use spindle, or leave it unset)"));
  }
  return "spindle_" + workload;
}

absl::StatusOr<Rows> RunOnce(const std::string& executor, int64_t tasks,
                             int64_t yields) {
  if (executor == "asio") return AsioYield("poll_profile", tasks, yields);
  if (executor == "floor") return FloorYieldLoop("poll_profile", tasks, yields);
  if (executor == "spindle_channel") {
    return SpindleChannelLocal("poll_profile", tasks * yields);
  }
  if (executor == "spindle_spawn" || executor == "spindle_fiber_spawn") {
    return SpindleSpawnRounds("poll_profile", tasks, yields,
                              executor == "spindle_fiber_spawn");
  }
  return SpindleYield("poll_profile", tasks, yields, 1);
}

// Runs valgrind on this binary in child mode; returns the total Ir.
absl::StatusOr<uint64_t> Callgrind(const std::string& self,
                                   const std::string& out_file,
                                   int64_t yields) {
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    if (kv.rfind("YIELDS_PER_TASK=", 0) == 0 || kv.rfind("PROFILE=", 0) == 0) {
      continue;
    }
    env_store.push_back(kv);
  }
  env_store.push_back(absl::StrCat("YIELDS_PER_TASK=", yields));
  // Under valgrind, the reactor's auto choice is epoll (reactor/reactor.h);
  // the counts of bench/README.md are of the backend auto picks outside it
  // (io_uring where the ring can be set up), so the child is told that one.
  if (std::getenv("SPINDLE_REACTOR") == nullptr) {
    absl::StatusOr<std::unique_ptr<reactor::Reactor>> r =
        reactor::Reactor::Create({});
    if (r.ok()) {
      env_store.push_back(
          absl::StrCat("SPINDLE_REACTOR=",
                       std::string(reactor::BackendName((*r)->backend()))));
    }
  }
  env_store.push_back(absl::StrCat(kChildEnv, "=1"));
  std::vector<char*> envp;
  for (std::string& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = {"valgrind", "--tool=callgrind", "--quiet",
                                   "--callgrind-out-file=" + out_file, self};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "valgrind", nullptr, nullptr, argv.data(),
                              envp.data());
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start valgrind: ", std::strerror(rc)));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError("the profiled run failed under valgrind");
  }
  std::ifstream f(out_file);
  std::string line;
  while (std::getline(f, line)) {
    for (const char* key : {"totals:", "summary:"}) {
      if (line.rfind(key, 0) == 0) {
        return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10);
      }
    }
  }
  return absl::InternalError(absl::StrCat("no totals line in ", out_file));
}

int Profile(const Config& c) {
  absl::StatusOr<std::string> workload = Workload(c);
  if (!workload.ok()) {
    std::cerr << "poll_profile: " << workload.status().message() << "\n";
    return 2;
  }
  if (!OnPath("valgrind")) {
    std::cerr << "poll_profile: PROFILE=callgrind needs valgrind, which is "
                 "not on PATH (Debian: apt-get install valgrind)\n";
    return 1;
  }
  const std::string executor = *workload;
  if (executor == "tbb") {
    std::cerr << "poll_profile: EXECUTOR='tbb' is not valid here: use "
                 "spindle, asio or floor\n";
    return 2;
  }
  const int64_t tasks = c.n_tasks.value_or(1000);
  const int64_t y = c.yields_per_task.value_or(100);
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    std::cerr << "poll_profile: cannot read /proc/self/exe: " << ec.message()
              << "\n";
    return 1;
  }
  const std::string base =
      absl::StrCat(c.out_dir, "/callgrind.poll_profile.", executor);
  std::cout << "poll_profile: callgrind, " << executor << ", " << tasks
            << " tasks x " << y << " and " << 2 * y << " yields\n";
  absl::StatusOr<uint64_t> ir1 = Callgrind(self, base + ".y1.out", y);
  if (!ir1.ok()) {
    std::cerr << "poll_profile: " << ir1.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<uint64_t> ir2 = Callgrind(self, base + ".y2.out", 2 * y);
  if (!ir2.ok()) {
    std::cerr << "poll_profile: " << ir2.status().message() << "\n";
    return 1;
  }
  std::filesystem::remove(base + ".y1.out", ec);
  const double ops = static_cast<double>(tasks) * static_cast<double>(y);
  const char* what = executor == "spindle_channel"
                         ? "per message (channel ping-pong)"
                     : executor == "spindle_spawn"
                         ? "per task (spawn + run + teardown)"
                     : executor == "spindle_fiber_spawn"
                         ? "per fiber (spawn + run + teardown)"
                         : "per poll (yield + resume)";
  std::cout << absl::StrFormat(
      "instructions: %d (Y=%d), %d (Y=%d)\n"
      "instructions %s, %s: %.1f\n"
      "profile: %s.y2.out (callgrind_annotate it)\n",
      *ir1, y, *ir2, 2 * y, what, executor,
      (static_cast<double>(*ir2) - static_cast<double>(*ir1)) / ops, base);
  return 0;
}

}  // namespace
}  // namespace spindle::bench

int main(int argc, char** argv) {
  using namespace spindle::bench;
  const char* profile = std::getenv("PROFILE");
  const std::string p = profile != nullptr ? profile : "";
  if (std::getenv(kChildEnv) != nullptr) {
    absl::StatusOr<Config> c = ConfigFromEnv();
    if (!c.ok()) return 2;
    absl::StatusOr<std::string> w = Workload(*c);
    if (!w.ok()) return 2;
    absl::StatusOr<Rows> r = RunOnce(*w, c->n_tasks.value_or(1000),
                                     c->yields_per_task.value_or(100));
    return r.ok() ? 0 : 1;
  }
  if (p.empty())
    return SuiteMain(argc, argv, "poll_profile", {"poll_profile"}, {});
  if (p != "callgrind") {
    std::cerr << "poll_profile: PROFILE='" << p
              << "' is not valid: use callgrind (or leave it unset)\n";
    return 2;
  }
  absl::StatusOr<Config> c = ConfigFromEnv();
  if (!c.ok()) {
    std::cerr << "poll_profile: " << c.status().message() << "\n";
    return 2;
  }
  const char* bwd = std::getenv("BUILD_WORKING_DIRECTORY");
  c->out_dir = bwd != nullptr && *bwd != '\0' ? bwd : ".";
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--out") c->out_dir = argv[i + 1];
  }
  return Profile(*c);
}
