// Depends on @spindle//timing alone: a TSC reading that moves forward.
#include <cstdio>

#include "timing/clock.h"

int main() {
  const uint64_t t0 = spindle::timing::TscClock::Now();
  const uint64_t t1 = spindle::timing::TscClock::Now();
  std::printf("timing %s: %s\n",
              std::string(spindle::timing::kVersion).c_str(),
              t1 >= t0 ? "ok" : "clock went backwards");
  return t1 >= t0 ? 0 : 1;
}
