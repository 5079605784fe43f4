// executor/internal/spawn_api.h: the Spawn overloads that LocalExecutor and
// Spawner share (executor/local_executor.h).

#ifndef SPINDLE_EXECUTOR_INTERNAL_SPAWN_API_H_
#define SPINDLE_EXECUTOR_INTERNAL_SPAWN_API_H_

#include <utility>

#include "executor/executor_builder.h"
#include "executor/fiber_task.h"
#include "executor/internal/handle_anchor.h"
#include "executor/spawn_options.h"
#include "executor/task.h"

namespace spindle {
namespace executor_internal {

// The Spawn / SpawnDetached overloads shared by LocalExecutor and Spawner;
// `Derived::SubmitTask(header, options)` takes the task from there.
template <typename Derived>
class SpawnApi {
 public:
  template <typename T>
  JoinHandle<T> Spawn(Task<T> task, const SpawnOptions& options = {}) {
    TaskCell<T>* cell = task.Release();
    AddUnpublishedRef(cell);  // the handle's
    static_cast<Derived*>(this)->SubmitTask(cell, options);
    return JoinHandle<T>(cell, HandleAnchor::Acquire(
                                   &static_cast<Derived*>(this)
                                        ->inbox_->handle_anchor));
  }
  template <typename T>
  JoinHandle<T> Spawn(QueueId queue, Task<T> task) {
    SpawnOptions o;
    o.queue = queue;
    return Spawn(std::move(task), o);
  }
  template <typename T>
  void SpawnDetached(Task<T> task, const SpawnOptions& options = {}) {
    static_cast<Derived*>(this)->SubmitTask(task.Release(), options);
  }
  template <typename T>
  void SpawnDetached(QueueId queue, Task<T> task) {
    SpawnOptions o;
    o.queue = queue;
    SpawnDetached(std::move(task), o);
  }
  // A fiber (executor/fiber.h) running `fn()` on its own stack.  Throws
  // std::bad_alloc when no stack can be mapped; aborts with a message for
  // invalid FiberOptions (ValidateFiberOptions says why first).
  template <typename F>
  JoinHandle<FiberResult<F>> SpawnFiber(F&& fn,
                                        const FiberOptions& fiber = {},
                                        const SpawnOptions& options = {}) {
    TaskCell<FiberResult<F>>* cell = MakeFiber(std::forward<F>(fn), fiber);
    AddUnpublishedRef(cell);  // the handle's
    static_cast<Derived*>(this)->SubmitTask(cell, options);
    return JoinHandle<FiberResult<F>>(
        cell, HandleAnchor::Acquire(
                  &static_cast<Derived*>(this)->inbox_->handle_anchor));
  }
  template <typename F>
  void SpawnFiberDetached(F&& fn, const FiberOptions& fiber = {},
                          const SpawnOptions& options = {}) {
    static_cast<Derived*>(this)->SubmitTask(
        MakeFiber(std::forward<F>(fn), fiber), options);
  }
};

}  // namespace executor_internal
}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_INTERNAL_SPAWN_API_H_
