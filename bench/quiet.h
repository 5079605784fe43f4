// bench/quiet.h: the builders every Spindle row starts from.
//
// Rows run with the Balanced tiers (the default a user gets) but without
// their warnings: a VM's preemptions make slow polls that would print in
// the middle of the table.

#ifndef SPINDLE_BENCH_QUIET_H_
#define SPINDLE_BENCH_QUIET_H_

#include <cstddef>
#include <cstdint>

#include "executor/executor.h"

namespace spindle::bench {

// budget::TierConfig::Balanced() with log_warnings off.
inline budget::TierConfig QuietTiers() {
  budget::TierConfig tc = budget::TierConfig::Balanced();
  tc.log_warnings = false;
  return tc;
}

// A single-threaded executor's builder with QuietTiers().
inline ExecutorBuilder QuietExecutor() {
  ExecutorBuilder b;
  b.Tiers(QuietTiers());
  return b;
}

// A Runtime's builder of `workers` workers with QuietTiers().
inline RuntimeBuilder QuietRuntime(int64_t workers) {
  RuntimeBuilder b;
  b.Workers(static_cast<size_t>(workers)).Tiers(QuietTiers());
  return b;
}

}  // namespace spindle::bench

#endif  // SPINDLE_BENCH_QUIET_H_
