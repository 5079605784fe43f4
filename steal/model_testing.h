// steal/model_testing.h: a deterministic scheduler that runs the steal
// layer's queues through every interleaving of a few simulated threads.
//
// Test-only.  Instantiate a queue with `ModelAtomics` and describe a small
// program (thread bodies plus a final check) to `ModelExplorer::Explore`: the
// simulated threads run as fibers on the calling thread, one at a time, and
// every atomic access is a scheduling point.  A depth-first search over the
// choices at those points enumerates the executions.
//
// What is covered.  The model is sequentially consistent: each access takes
// effect atomically in the order the scheduler picks, so the search covers
// interleavings, not weak-memory reorderings (those are argued in the
// queues' memory-order annotations and exercised by ThreadSanitizer).
// With `sleep_sets` on (the default) the search skips an execution when it
// differs from one already explored only by swapping adjacent independent
// accesses (different locations, or two loads): Godefroid's sleep sets, which
// explore one execution per Mazurkiewicz trace, so no reachable final state
// is missed.  With `sleep_sets` off it enumerates every interleaving; the
// tests compare the two on small programs.
//
// Thread safety: one exploration at a time per process.

#ifndef SPINDLE_STEAL_MODEL_TESTING_H_
#define SPINDLE_STEAL_MODEL_TESTING_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace spindle::steal_testing {

// A simulated program: thread bodies, run concurrently under the scheduler,
// then `verify` (returns "" or what went wrong) and `outcome` (a canonical
// description of the final state, collected across executions).
struct ModelProgram {
  std::vector<std::function<void()>> threads;
  std::function<std::string()> verify;
  std::function<std::string()> outcome;
};

struct ModelOptions {
  bool sleep_sets = true;
  uint64_t max_executions = 50'000'000;  // a guard, not a sample size
  int max_steps = 10'000;                // per execution: livelock guard
};

struct ModelResult {
  uint64_t executions = 0;     // complete executions explored
  uint64_t sleep_blocked = 0;  // redundant prefixes cut by sleep sets
  uint64_t steps = 0;          // scheduling points, all executions
  bool complete = false;       // the search finished (not cut by the guard)
  std::string failure;         // first verify() failure, with its schedule
  std::set<std::string> outcomes;
};

class ModelExplorer {
 public:
  // Runs `make()` once per execution (fresh state each time) and explores.
  static ModelResult Explore(const std::function<ModelProgram()>& make,
                             const ModelOptions& options = {});

  // Called by ModelAtomic before each access.  A no-op outside a simulated
  // thread (construction, setup, verify).
  static void Access(int location, bool write);
  // Called by ModelAtomic's constructor: ids are assigned in construction
  // order, so they match across executions.
  static int NewLocation();
};

// ModelAtomic: `std::atomic`'s interface over a plain value; each access is
// a scheduling point.  Memory orders are accepted and ignored (the model is
// sequentially consistent).
template <class V>
class ModelAtomic {
 public:
  ModelAtomic() noexcept : ModelAtomic(V{}) {}
  ModelAtomic(V v) noexcept  // NOLINT: mirrors std::atomic
      : value_(v), id_(ModelExplorer::NewLocation()) {}
  ModelAtomic(const ModelAtomic&) = delete;
  ModelAtomic& operator=(const ModelAtomic&) = delete;

  V load(std::memory_order = std::memory_order_seq_cst) const noexcept {
    ModelExplorer::Access(id_, false);
    return value_;
  }
  void store(V v, std::memory_order = std::memory_order_seq_cst) noexcept {
    ModelExplorer::Access(id_, true);
    value_ = v;
  }
  V exchange(V v, std::memory_order = std::memory_order_seq_cst) noexcept {
    ModelExplorer::Access(id_, true);
    V old = value_;
    value_ = v;
    return old;
  }
  bool compare_exchange_strong(
      V& expected, V desired, std::memory_order = std::memory_order_seq_cst,
      std::memory_order = std::memory_order_seq_cst) noexcept {
    ModelExplorer::Access(id_, true);
    if (value_ == expected) {
      value_ = desired;
      return true;
    }
    expected = value_;
    return false;
  }
  V fetch_add(V d, std::memory_order = std::memory_order_seq_cst) noexcept {
    ModelExplorer::Access(id_, true);
    V old = value_;
    value_ = static_cast<V>(value_ + d);
    return old;
  }
  V fetch_sub(V d, std::memory_order = std::memory_order_seq_cst) noexcept {
    ModelExplorer::Access(id_, true);
    V old = value_;
    value_ = static_cast<V>(value_ - d);
    return old;
  }

 private:
  V value_;
  int id_;
};

// The atomics policy for steal's queues under the model.
struct ModelAtomics {
  template <class V>
  using Atomic = ModelAtomic<V>;
};

}  // namespace spindle::steal_testing

#endif  // SPINDLE_STEAL_MODEL_TESTING_H_
