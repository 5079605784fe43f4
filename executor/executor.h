// executor/executor.h: Spindle's public facade.
//
// Reach for `ExecutorBuilder` to build a `LocalExecutor`, write tasks as
// functions returning `Task<T>`, `Spawn` them (a `JoinHandle<T>` comes back)
// and `Run()` or `BlockOn()`.  Inside a task: `co_await YieldNow()`,
// `co_await YieldMaybe()`, `CurrentExecutor()`.
//
//   #include "executor/executor.h"
//
//   spindle::Task<int> Answer() { co_return 42; }
//
//   int main() {
//     auto ex = spindle::ExecutorBuilder().WithQueue(1, 3).WithQueue(2, 1)
//                   .Build().value();
//     spindle::JoinHandle<int> h = ex->Spawn(1, Answer());
//     ex->Run();
//     return h.Join() == 42 ? 0 : 1;
//   }

#ifndef SPINDLE_EXECUTOR_EXECUTOR_H_
#define SPINDLE_EXECUTOR_EXECUTOR_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <string_view>

#include "executor/driver.h"
#include "executor/fiber.h"
#include "executor/io.h"
#include "executor/local_executor.h"
#include "executor/pool.h"
#include "executor/run_process.h"
#include "executor/runtime.h"
#include "executor/sync.h"
#include "executor/task.h"
#include "executor/waker.h"

namespace spindle::executor {

// The executor layer's version (see executor/VERSION, executor/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.2.0";

}  // namespace spindle::executor

#endif  // SPINDLE_EXECUTOR_EXECUTOR_H_
