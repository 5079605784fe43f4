// steal/atomics.h: the atomic-type policy the steal layer's queues are
// templated over.
//
// `StdAtomics` is the production policy (plain `std::atomic`).  Tests swap in
// a policy whose atomics hand control to a deterministic scheduler at every
// access, so the same queue code can be explored interleaving by interleaving.

#ifndef SPINDLE_STEAL_ATOMICS_H_
#define SPINDLE_STEAL_ATOMICS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

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
