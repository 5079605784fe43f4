// sched/queue_set_testing.h: helpers shared by the QueueSet tests.

#ifndef SPINDLE_SCHED_QUEUE_SET_TESTING_H_
#define SPINDLE_SCHED_QUEUE_SET_TESTING_H_

#include <algorithm>
#include <cstdint>

#include "sched/queue_set.h"

namespace spindle::sched::queue_set_testing {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kScale = 4;  // Sanitizers: shorter random runs.
#else
inline constexpr int kScale = 1;
#endif

// Ticks are abstract in these tests: a small latency and slice keep the
// numbers readable; polls cost 50..150 ticks.
inline QueueSetConfig TestConfig() {
  QueueSetConfig c;
  c.sched_latency_ticks = 2000;
  c.min_slice_ticks = 100;
  return c;
}
// Two queues' worth of short requests (latency 1000, min slice 500): with
// shares 1 and 9, a wake into the share-9 queue preempts the other.
inline QueueSetConfig PreemptionConfig() {
  QueueSetConfig c;
  c.sched_latency_ticks = 1000;
  c.min_slice_ticks = 500;
  return c;
}
inline constexpr uint64_t kMinPoll = 50;
inline constexpr uint64_t kMaxPoll = 150;

inline uint64_t MaxSlice(const QueueSet& qs) {
  uint64_t m = 0;
  for (const QueueStats& s : qs.Snapshot()) m = std::max(m, s.slice_ticks);
  return m;
}

}  // namespace spindle::sched::queue_set_testing

#endif  // SPINDLE_SCHED_QUEUE_SET_TESTING_H_
