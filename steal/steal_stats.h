// steal/steal_stats.h: counters for a worker's stealing, and their ratios.
//
// `StealStats` is a plain snapshot (copyable, summable across workers) with
// the ratios the runtime reports; `StealCounters` is the live, single-writer
// set a worker bumps on its hot path and anyone may snapshot.  Units are
// fixed: a *probe* is one attempt on one victim, a *scan* is one pass over
// victims, and task counts are tasks.

#ifndef SPINDLE_STEAL_STEAL_STATS_H_
#define SPINDLE_STEAL_STEAL_STATS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <cstdint>
#include <initializer_list>

namespace spindle::steal {

// StealStats: a snapshot of stealing counters.
//
// Requires: nothing.
// Guarantees: `successful_probes <= probes` and `fruitless_scans <= scans`
// for any snapshot taken from one `StealCounters` (each pair is recorded so
// that the bound holds even for a concurrent reader), hence
// `steal_success_rate()` is in [0, 1].  Every ratio is 0 when its
// denominator is 0.
// Thread safety: a value type; not synchronised.
//
// Example:
//   steal::StealStats total;
//   for (auto& w : workers) total += w.counters().Snapshot();
//   double rate = total.steal_success_rate();
struct StealStats {
  // Stealing.
  uint64_t probes = 0;             // victims probed (one Steal/StealBatch each)
  uint64_t successful_probes = 0;  // probes that took at least one task
  uint64_t tasks_stolen = 0;       // tasks taken by successful probes
  uint64_t scans = 0;              // passes over the victims
  uint64_t fruitless_scans = 0;    // scans that stole nothing
  uint64_t backoffs = 0;           // cooldowns started after a fruitless scan
  // Where the worker's tasks came from (the runtime records these).
  uint64_t local_tasks = 0;     // popped from the worker's own queues
  uint64_t injected_tasks = 0;  // popped from the injector

  // Successful probes / probes: never above 1.
  double steal_success_rate() const noexcept {
    return Ratio(successful_probes, probes);
  }
  // Tasks stolen per scan.
  double stolen_per_scan() const noexcept { return Ratio(tasks_stolen, scans); }
  // Tasks stolen per successful probe (the effective batch size).
  double stolen_per_success() const noexcept {
    return Ratio(tasks_stolen, successful_probes);
  }
  // Local tasks / all tasks run (local + injected + stolen).
  double local_hit_ratio() const noexcept {
    return Ratio(local_tasks, local_tasks + injected_tasks + tasks_stolen);
  }

  StealStats& operator+=(const StealStats& o) noexcept {
    probes += o.probes;
    successful_probes += o.successful_probes;
    tasks_stolen += o.tasks_stolen;
    scans += o.scans;
    fruitless_scans += o.fruitless_scans;
    backoffs += o.backoffs;
    local_tasks += o.local_tasks;
    injected_tasks += o.injected_tasks;
    return *this;
  }

 private:
  static double Ratio(uint64_t num, uint64_t den) noexcept {
    return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
  }
};

// StealCounters: the live counters behind a StealStats, one writer.
//
// Requires: one thread at a time (the owning worker) calls the `Add*`
// functions.
// Guarantees: `Snapshot()` from any thread returns values the writer
// stored, never torn, and keeps the bounds StealStats promises.  Adding is a
// relaxed load and store per counter, no locked instruction.
// Thread safety: single writer, any number of readers.
// Memory ordering: counters publish nothing else; all accesses are relaxed,
// except that the writer bumps a total before its part (probes before
// successful_probes, scans before fruitless_scans) and stores the part with
// release, and the reader loads the part first with acquire, which keeps
// part <= total.
//
// Example:
//   counters.AddProbe(taken);   // worker
//   auto s = counters.Snapshot();   // monitor thread
class StealCounters {
 public:
  // One probe that took `tasks` tasks (0 = it failed).
  void AddProbe(uint64_t tasks) noexcept {
    Bump(probes_, 1, std::memory_order_relaxed);  // before the part
    if (tasks > 0) {
      // Pairs with the acquire load in Snapshot: the probe is visible first.
      Bump(successful_probes_, 1, std::memory_order_release);
      Bump(tasks_stolen_, tasks, std::memory_order_relaxed);
    }
  }
  // One scan, fruitless when it stole nothing; `backoff` when it started a
  // cooldown.
  void AddScan(bool fruitless, bool backoff) noexcept {
    Bump(scans_, 1, std::memory_order_relaxed);  // before the part
    // Pairs with the acquire load in Snapshot: the scan is visible first.
    if (fruitless) Bump(fruitless_scans_, 1, std::memory_order_release);
    if (backoff) Bump(backoffs_, 1, std::memory_order_relaxed);
  }
  void AddLocal(uint64_t tasks) noexcept {
    Bump(local_tasks_, tasks, std::memory_order_relaxed);
  }
  void AddInjected(uint64_t tasks) noexcept {
    Bump(injected_tasks_, tasks, std::memory_order_relaxed);
  }

  // Writer only: adds every counter of `s` (moving a worker's history).
  void Merge(const StealStats& s) noexcept {
    Bump(probes_, s.probes, std::memory_order_relaxed);
    Bump(successful_probes_, s.successful_probes, std::memory_order_release);
    Bump(tasks_stolen_, s.tasks_stolen, std::memory_order_relaxed);
    Bump(scans_, s.scans, std::memory_order_relaxed);
    Bump(fruitless_scans_, s.fruitless_scans, std::memory_order_release);
    Bump(backoffs_, s.backoffs, std::memory_order_relaxed);
    Bump(local_tasks_, s.local_tasks, std::memory_order_relaxed);
    Bump(injected_tasks_, s.injected_tasks, std::memory_order_relaxed);
  }
  // Writer only: zeroes every counter (parts first, keeping part <= total).
  void Reset() noexcept {
    for (auto* c :
         {&successful_probes_, &fruitless_scans_, &tasks_stolen_, &backoffs_,
          &probes_, &scans_, &local_tasks_, &injected_tasks_}) {
      c->store(0, std::memory_order_relaxed);  // publishes nothing
    }
  }

  StealStats Snapshot() const noexcept {
    StealStats s;
    // Parts first with acquire (pairs with their release bumps), totals
    // after: a total read after its part is at least as new as the part.
    s.successful_probes = successful_probes_.load(std::memory_order_acquire);
    s.fruitless_scans = fruitless_scans_.load(std::memory_order_acquire);
    s.tasks_stolen = tasks_stolen_.load(std::memory_order_relaxed);
    s.backoffs = backoffs_.load(std::memory_order_relaxed);
    s.probes = probes_.load(std::memory_order_relaxed);
    s.scans = scans_.load(std::memory_order_relaxed);
    s.local_tasks = local_tasks_.load(std::memory_order_relaxed);
    s.injected_tasks = injected_tasks_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  static void Bump(std::atomic<uint64_t>& c, uint64_t n,
                   std::memory_order order) noexcept {
    // Single writer: load + store, no read-modify-write.
    c.store(c.load(std::memory_order_relaxed) + n, order);
  }

  std::atomic<uint64_t> probes_{0};
  std::atomic<uint64_t> successful_probes_{0};
  std::atomic<uint64_t> tasks_stolen_{0};
  std::atomic<uint64_t> scans_{0};
  std::atomic<uint64_t> fruitless_scans_{0};
  std::atomic<uint64_t> backoffs_{0};
  std::atomic<uint64_t> local_tasks_{0};
  std::atomic<uint64_t> injected_tasks_{0};
};

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_STEAL_STATS_H_
