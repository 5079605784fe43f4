// bench/fairness_main.cc: //bench:fairness, CPU split between queues vs their
// shares (1 s per run).
#include "bench/bench.h"

int main(int argc, char** argv) {
  spindle::bench::Config defaults;
  return spindle::bench::SuiteMain(argc, argv, "fairness", {"fairness"},
                                   defaults);
}
