// The README's first program, verbatim (executor:readme_example_test runs it).
#include <chrono>
#include "executor/executor.h"

spindle::Task<int> Work(int x) {
  co_await spindle::SleepFor(std::chrono::milliseconds(1));  // on the reactor
  co_await spindle::YieldNow();
  co_return x * 2;
}

int main() {
  // Two queues sharing CPU time 3:1 (EEVDF), tiers from SPINDLE_* variables.
  auto ex = spindle::ExecutorBuilder().WithQueue(1, 3).WithQueue(2, 1).Build();
  if (!ex.ok()) return 1;  // e.g. InvalidArgument naming a bad share
  spindle::JoinHandle<int> a = (*ex)->Spawn(1, Work(20));
  spindle::JoinHandle<int> b = (*ex)->Spawn(2, Work(1));
  (*ex)->Run();
  return a.Join() + b.Join() == 42 ? 0 : 1;  // rethrows a task's exception
}
