// bench/hog_main.cc: //bench:hog, latency beside a hog task, tiers on and off.
#include "bench/bench.h"

int main(int argc, char** argv) {
  spindle::bench::Config defaults;
  return spindle::bench::SuiteMain(argc, argv, "hog", {"hog"}, defaults);
}
