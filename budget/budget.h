// budget/budget.h: the budget layer in one include.
//
// Start with `TierManager` (budget/tier.h), which the run loop calls around
// every poll; `TaskBudget` (budget/task_budget.h) is the 16-byte budget a task
// carries; `HookRegistry` (budget/hooks.h) holds user hooks replaceable at run
// time; `TierConfig::FromEnv()` reads the SPINDLE_* environment variables.

#ifndef SPINDLE_BUDGET_BUDGET_H_
#define SPINDLE_BUDGET_BUDGET_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <string_view>

#include "budget/hooks.h"        // IWYU pragma: export
#include "budget/task_budget.h"  // IWYU pragma: export
#include "budget/tier.h"         // IWYU pragma: export

namespace spindle::budget {

// The budget layer's version (see budget/VERSION and budget/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.1.1";

}  // namespace spindle::budget

#endif  // SPINDLE_BUDGET_BUDGET_H_
