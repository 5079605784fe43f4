// steal/atomics.h: the atomic-type policy the steal layer's queues are
// templated over.
//
// `StdAtomics` is the production policy (plain `std::atomic`).  Tests swap in
// a policy whose atomics hand control to a deterministic scheduler at every
// access, so the same queue code can be explored interleaving by interleaving.

#ifndef SPINDLE_STEAL_ATOMICS_H_
#define SPINDLE_STEAL_ATOMICS_H_

#include <atomic>

namespace spindle::steal {

// StdAtomics: `Atomic<V>` is `std::atomic<V>`.
//
// Requires: nothing.
// Guarantees: a policy provides `template <class V> using Atomic = ...` whose
// type offers the `std::atomic` members the queues use: `load`, `store`,
// `exchange`, `compare_exchange_strong`, `fetch_add`, `fetch_sub`, each taking
// `std::memory_order` arguments, and a constructor from `V`.
// Thread safety: that of `std::atomic`.
//
// Example:
//   steal::WorkDeque<Task, 256, uint64_t, steal::StdAtomics> deque;
struct StdAtomics {
  template <class V>
  using Atomic = std::atomic<V>;
};

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_ATOMICS_H_
