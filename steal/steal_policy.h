// steal/steal_policy.h: which victims a worker probes, how much it takes,
// and when it backs off.
//
// `StealOptions` holds the knobs (spargio's set: steal budget, victim stride,
// victim probe count, batch size, locality margin, fail cost, backoff min /
// max, stealable queue capacity) with defaults and `Validate()`.
// `StealPolicy` is one worker's stealing logic built from them: `Scan` walks
// the victims in the policy's order, steals through callbacks, counts into
// `StealCounters` and returns the cooldown to observe before the next scan.
// It owns no threads and no queues, so the runtime (and a test's simulated
// victims) supply both.

#ifndef SPINDLE_STEAL_STEAL_POLICY_H_
#define SPINDLE_STEAL_STEAL_POLICY_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "steal/steal_stats.h"

namespace spindle::steal {

// StealOptions: the stealing knobs.
//
// Requires: nothing; any value may be set.
// Guarantees: the defaults pass `Validate()`; `Validate()` returns
// InvalidArgument naming the first knob out of range, its value and the
// range (e.g. "StealOptions.batch_size = 0 is out of range [1, 128]").
// Thread safety: a value type; not synchronised.
//
// Example:
//   steal::StealOptions o;
//   o.victim_probe_count = 2;
//   o.backoff_max = std::chrono::microseconds(200);
//   if (absl::Status s = o.Validate(); !s.ok()) return s;
struct StealOptions {
  // Most tasks one scan may take, over all victims ("tasks drained per
  // pass").  [1, 4096].
  uint32_t steal_budget = 64;
  // Step between consecutive victims in a scan, counted over the other
  // workers (1 = neighbours in turn).  A stride sharing a factor with the
  // number of victims still reaches every victim: after a full cycle the
  // walk shifts by one.  [1, 1024].
  uint32_t victim_stride = 1;
  // Most victims probed in one scan (capped at workers - 1).  [1, 1024].
  uint32_t victim_probe_count = 4;
  // Most tasks taken from one victim in one probe (the `max` of
  // WorkDeque::StealBatch, which also never takes more than half).
  // [1, 128]; 128 is half of the default WorkDeque capacity.
  uint32_t batch_size = 32;
  // A victim whose queue holds `locality_margin` tasks or fewer is not
  // probed: those tasks stay with their owner (and its warm cache).
  // [0, 4096].
  uint32_t locality_margin = 0;
  // Budget units a fruitless probe costs, so that a scan over empty victims
  // ends early.  0 = failures are free.  [0, 4096].
  uint32_t fail_cost = 1;
  // Cooldown after the first fruitless scan; each further fruitless scan
  // doubles it, up to backoff_max; a scan that steals resets it.
  // backoff_min in [0, 1 s] (0 disables the cooldown); backoff_max in
  // [backoff_min, 1 s].
  std::chrono::nanoseconds backoff_min = std::chrono::microseconds(1);
  std::chrono::nanoseconds backoff_max = std::chrono::microseconds(500);
  // Most tasks a worker keeps in its stealable queue; past it, new tasks go
  // elsewhere (the injector): enqueue-side backpressure.  [1, 65536].
  uint32_t stealable_queue_capacity = 256;

  // InvalidArgument naming the first bad knob, its value and the range.
  absl::Status Validate() const;
};

// StealPolicy: one worker's stealing decisions.
//
// Requires: options that pass `Validate()` (`Create` checks); `Scan`'s
// `self < workers`.
// Guarantees: a scan probes at most `victim_probe_count` distinct victims,
// never `self`, never an empty one, never one whose size is <=
// `locality_margin` unless it waives the margin; asks each for
// at most min(batch_size, budget left); takes at most `steal_budget` tasks
// in all, and stops when a probe leaves no budget.  Starting points rotate
// pseudo-randomly (seeded, so reproducible).  The cooldown after fruitless
// scans is 0 or within [backoff_min, backoff_max].
// Thread safety: one worker owns a policy; `counters().Snapshot()` may be
// called from any thread.
//
// Example:
//   auto policy = steal::StealPolicy::Create(options, /*seed=*/worker_id);
//   auto r = policy->Scan(
//       worker_id, workers.size(),
//       [&](size_t v) { return workers[v].deque.size(); },
//       [&](size_t v, size_t max) { return workers[v].deque.StealBatch(
//                                       my_deque, max); });
//   if (r.stolen == 0) ParkFor(r.cooldown);
class StealPolicy {
 public:
  struct ScanResult {
    size_t stolen = 0;  // tasks taken
    size_t probes = 0;  // victims asked
    // How long to wait before the next scan (0 after a fruitful scan).
    std::chrono::nanoseconds cooldown{0};
  };

  static absl::StatusOr<StealPolicy> Create(const StealOptions& options,
                                            uint64_t seed = 0);

  const StealOptions& options() const noexcept { return options_; }

  // The k-th victim (k < workers - 1) of a scan by `self` that starts at
  // `start` (< workers - 1): distinct for distinct k, never `self`.
  static size_t VictimAt(size_t self, size_t workers, size_t stride,
                         size_t start, size_t k) noexcept;

  // Whether a thief may take from a victim that holds `queued` stealable
  // tasks: past `locality_margin`; or, where the victim keeps no locality
  // (`waive_margin`: e.g. a worker held in one long poll, whose cache those
  // tasks would not find warm), any at all.  The one rule of Scan, for a
  // caller that asks the same question elsewhere (is there work a thief
  // could take, before it parks).
  bool MayStealFrom(size_t queued, bool waive_margin = false) const noexcept {
    return waive_margin ? queued != 0 : queued > options_.locality_margin;
  }

  // One scan.  `size_of(v)` estimates victim v's stealable tasks;
  // `steal_from(v, max)` takes up to `max` of them and returns how many it
  // took; `waives_margin(v)` says whether victim v keeps no locality (see
  // MayStealFrom; the overload without it: none waives).  Records one scan
  // and its probes in `counters()`.
  template <class SizeOf, class StealFrom>
  ScanResult Scan(size_t self, size_t workers, SizeOf&& size_of,
                  StealFrom&& steal_from) noexcept {
    return Scan(self, workers, size_of, steal_from,
                [](size_t) { return false; });
  }
  template <class SizeOf, class StealFrom, class WaivesMargin>
  ScanResult Scan(size_t self, size_t workers, SizeOf&& size_of,
                  StealFrom&& steal_from,
                  WaivesMargin&& waives_margin) noexcept {
    ScanResult r;
    const size_t victims = workers > 1 ? workers - 1 : 0;
    size_t budget = options_.steal_budget;
    if (victims > 0) {
      const size_t probes =
          std::min<size_t>(options_.victim_probe_count, victims);
      const size_t start = static_cast<size_t>(NextRandom() % victims);
      for (size_t k = 0; k < probes && budget > 0; ++k) {
        const size_t v =
            VictimAt(self, workers, options_.victim_stride, start, k);
        const size_t queued = size_of(v);
        // An empty victim's waiver is not asked (it may cost a cache line).
        if (!MayStealFrom(queued, queued != 0 && waives_margin(v))) continue;
        const size_t max = std::min<size_t>(options_.batch_size, budget);
        const size_t got = std::min(steal_from(v, max), max);
        ++r.probes;
        counters_.AddProbe(got);
        if (got > 0) {
          r.stolen += got;
          budget -= got;
        } else {
          budget -= std::min<size_t>(options_.fail_cost, budget);
        }
      }
    }
    const bool fruitless = r.stolen == 0;
    if (fruitless) {
      cooldown_ =
          std::clamp(cooldown_ * 2, options_.backoff_min, options_.backoff_max);
    } else {
      cooldown_ = std::chrono::nanoseconds(0);
    }
    r.cooldown = cooldown_;
    counters_.AddScan(fruitless, fruitless && cooldown_.count() > 0);
    return r;
  }

  // The cooldown the last scan asked for.
  std::chrono::nanoseconds cooldown() const noexcept { return cooldown_; }
  // The worker found work some other way: the next fruitless scan starts
  // again at backoff_min.
  void ResetCooldown() noexcept { cooldown_ = std::chrono::nanoseconds(0); }

  // Enqueue-side backpressure: may a task join a stealable queue that holds
  // `queued` tasks?
  bool AdmitStealable(size_t queued) const noexcept {
    return queued < options_.stealable_queue_capacity;
  }

  StealCounters& counters() noexcept { return counters_; }
  const StealCounters& counters() const noexcept { return counters_; }

  StealPolicy(StealPolicy&& other) noexcept;
  StealPolicy& operator=(StealPolicy&& other) noexcept;

 private:
  StealPolicy(const StealOptions& options, uint64_t seed) noexcept;
  uint64_t NextRandom() noexcept;

  StealOptions options_;
  uint64_t rng_;
  std::chrono::nanoseconds cooldown_{0};
  StealCounters counters_;
};

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_STEAL_POLICY_H_
