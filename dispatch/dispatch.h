// dispatch/dispatch.h: the dispatch layer in one include.
//
// Start with `WorkDispatcher` (dispatch/work_dispatcher.h): submit
// prioritised `WorkItem`s from any thread and attach workers that take them.

#ifndef SPINDLE_DISPATCH_DISPATCH_H_
#define SPINDLE_DISPATCH_DISPATCH_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <string_view>

#include "dispatch/launcher.h"         // IWYU pragma: export
#include "dispatch/process.h"          // IWYU pragma: export
#include "dispatch/work_dispatcher.h"  // IWYU pragma: export

namespace spindle::dispatch {

// The dispatch layer's version (see dispatch/VERSION and
// dispatch/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.1.0";

}  // namespace spindle::dispatch

#endif  // SPINDLE_DISPATCH_DISPATCH_H_
