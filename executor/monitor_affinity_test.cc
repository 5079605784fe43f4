// The monitor thread runs on the CPUs the process started on, not on the
// CPU its creator was pinned to.  Its own binary: the monitor starts with
// the first executor of the process, which this test builds.

#include <dirent.h>
#include <sched.h>
#include <sys/types.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "executor/executor.h"
#include "executor/local_executor_testing.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

// The thread id of the thread named `name` in this process, or -1.
pid_t ThreadNamed(const std::string& name) {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string line;
    if (std::getline(comm, line) && line == name) {
      found = static_cast<pid_t>(std::atoi(e->d_name));
    }
  }
  closedir(dir);
  return found;
}

TEST(MonitorAffinityTest, TheMonitorIsNotPinnedWithTheThreadThatStartedIt) {
  cpu_set_t start;
  ASSERT_EQ(sched_getaffinity(0, sizeof(start), &start), 0);
  if (CPU_COUNT(&start) < 2) GTEST_SKIP() << "one CPU only";
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  // Pinned like an application's executor thread, it builds the process's
  // first executor (the monitor starts with it) and runs it.
  auto ex = executor_testing::MakeExecutor(ExecutorBuilder().NoReactor());
  ex->BlockOn([]() -> Task<void> { co_return; }());
  sched_setaffinity(0, sizeof(start), &start);
  // The thread names itself and sets its CPUs first thing; wait for that.
  pid_t tid = -1;
  cpu_set_t monitor;
  for (int i = 0; i < 5000; ++i) {
    tid = ThreadNamed("spindle-monitor");
    if (tid > 0 && sched_getaffinity(tid, sizeof(monitor), &monitor) == 0 &&
        CPU_EQUAL(&monitor, &start)) {
      break;
    }
    sched_yield();
  }
  ASSERT_GT(tid, 0) << "no thread named spindle-monitor";
  ASSERT_EQ(sched_getaffinity(tid, sizeof(monitor), &monitor), 0);
  EXPECT_TRUE(CPU_EQUAL(&monitor, &start))
      << "the monitor runs on " << CPU_COUNT(&monitor) << " CPU(s), the "
      << "process started on " << CPU_COUNT(&start);
}

}  // namespace
}  // namespace spindle
