// A Bazel consumer of @spindle//executor: two queues, a sleep on the reactor,
// a yield, results joined.  Exits 0 when everything came back as expected.
#include <chrono>
#include <cstdio>

#include "executor/executor.h"
#include "timing/clock.h"

namespace {

spindle::Task<int> Work(int x) {
  co_await spindle::SleepFor(std::chrono::milliseconds(1));
  co_await spindle::YieldNow();
  co_return x * 2;
}

}  // namespace

int main() {
  auto ex = spindle::ExecutorBuilder().WithQueue(1, 3).WithQueue(2, 1).Build();
  if (!ex.ok()) {
    std::fprintf(stderr, "Build: %s\n", ex.status().ToString().c_str());
    return 1;
  }
  spindle::JoinHandle<int> a = (*ex)->Spawn(1, Work(20));
  spindle::JoinHandle<int> b = (*ex)->Spawn(2, Work(1));
  (*ex)->Run();
  const int sum = a.Join() + b.Join();
  std::printf("spindle executor %s, timing %s: %d\n",
              std::string(spindle::executor::kVersion).c_str(),
              std::string(spindle::timing::kVersion).c_str(), sum);
  return sum == 42 ? 0 : 1;
}
