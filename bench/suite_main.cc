// bench/suite_main.cc: //bench:suite, every benchmark of docs/measuring.md's
// table that has landed.
#include "bench/bench.h"

int main(int argc, char** argv) {
  spindle::bench::Config defaults;
  return spindle::bench::SuiteMain(argc, argv, "suite", {}, defaults);
}
