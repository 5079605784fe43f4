// bench/tail_latency_main.cc: //bench:tail_latency, thin/fat task latency
// percentiles, FIFO vs EEVDF.
#include "bench/bench.h"

int main(int argc, char** argv) {
  spindle::bench::Config defaults;
  return spindle::bench::SuiteMain(argc, argv, "tail_latency", {"tail_latency"},
                                   defaults);
}
