// bench/hold.h: keeps a Runtime's other workers busy until a workload's
// tasks have started, so that they all begin on one worker (as when the
// others are busy or still waking): shared by `rebalance`
// (workloads_mt.cc) and `mt_channel` (workloads_channel.cc).
#ifndef SPINDLE_BENCH_HOLD_H_
#define SPINDLE_BENCH_HOLD_H_

#include <atomic>
#include <cstddef>
#include <vector>

#include "executor/join_handle.h"
#include "executor/runtime.h"

namespace spindle::bench {

// What the holds wait for: the workload's tasks add 1 to `started` when
// they begin; the holds end once it reaches `want` (or after 1 s).  Each
// hold adds 1 to `held` when it begins.  Outlives the holds (the caller
// joins them).
struct StartGate {
  std::atomic<int> started{0};
  std::atomic<int> held{0};
  int want = 0;
};

// Spawns a hold pinned to every worker of `rt` but `except` (a worker
// index; `gate` fresh, its `want` set) and returns once each has begun
// (at most 1 s: a spin, also inside a task); their handles go to `holds`,
// for the caller to join.
void HoldOtherWorkers(Runtime& rt, size_t except, StartGate* gate,
                      std::vector<JoinHandle<void>>* holds);

}  // namespace spindle::bench

#endif  // SPINDLE_BENCH_HOLD_H_
