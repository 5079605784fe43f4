// bench/overhead_main.cc: //bench:overhead, the per-operation overheads 1A
// spawn, 1B yield and 1C sleep.
#include "bench/bench.h"

int main(int argc, char** argv) {
  spindle::bench::Config defaults;
  return spindle::bench::SuiteMain(
      argc, argv, "overhead", {"1A_spawn", "1B_yield", "1C_sleep"}, defaults);
}
