// steal/steal.h: the steal layer in one include.
//
// Start with `WorkDeque` (steal/work_deque.h), each worker's lock-free
// stealable queue; `Injector` (steal/injector.h) takes work submitted from
// outside the workers and a deque's overflow; `StealPolicy`
// (steal/steal_policy.h) decides whom to rob and when to back off, counting
// into `StealStats` (steal/steal_stats.h).

#ifndef SPINDLE_STEAL_STEAL_H_
#define SPINDLE_STEAL_STEAL_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <string_view>

#include "steal/atomics.h"       // IWYU pragma: export
#include "steal/injector.h"      // IWYU pragma: export
#include "steal/steal_policy.h"  // IWYU pragma: export
#include "steal/steal_stats.h"   // IWYU pragma: export
#include "steal/work_deque.h"    // IWYU pragma: export

namespace spindle::steal {

// The steal layer's version (see steal/VERSION and steal/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.2.0";

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_STEAL_H_
