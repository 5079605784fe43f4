// The README's multi-core program, verbatim (executor:readme_runtime_test
// runs it).
#include <chrono>
#include "executor/executor.h"

// Sums [from, to): halves are spawned, and an idle worker steals them.
spindle::Task<long> Sum(long from, long to) {
  if (to - from > 100'000) {
    long mid = from + (to - from) / 2;
    auto left = spindle::Runtime::Current()->Spawn(Sum(from, mid));
    long right = co_await Sum(mid, to);
    co_return co_await left + right;  // joins, wherever `left` ran
  }
  long s = 0;
  for (long i = from; i < to; ++i) s += i;
  co_await spindle::SleepFor(std::chrono::microseconds(100));  // this worker's ring
  co_return s;
}

int main() {
  auto rt = spindle::RuntimeBuilder().Workers(4).Build();
  if (!rt.ok()) return 1;  // e.g. InvalidArgument naming a bad worker count
  const long n = 10'000'000;
  long total = (*rt)->BlockOn(Sum(0, n));  // this thread waits; 4 workers run
  return total == n * (n - 1) / 2 ? 0 : 1;  // rethrows a task's exception
}
