// executor/internal/c_api_impl.h: what the C interface's translation units
// (c_api.cc, c_api_runtime.cc, c_api_task.cc) share: the handles' layouts,
// the error channel, and spawning a C function as a fiber task.  Not a
// public header: C callers see only executor/spindle.h.

#ifndef SPINDLE_EXECUTOR_INTERNAL_C_API_IMPL_H_
#define SPINDLE_EXECUTOR_INTERNAL_C_API_IMPL_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "executor/executor.h"
#include "executor/spindle.h"

namespace spindle::c_api_internal {

// Sets the calling thread's last error; returns -err.  Cold: off the
// paths that succeed.
[[gnu::cold]] int Fail(int err, std::string what);
[[gnu::cold]] int Fail(int err, const char* what);
// Clears it (at the start of every call).
void ClearError() noexcept;
const char* LastError() noexcept;

// Runs `body`, turning any exception into an errno and a message.  Inlined
// into each entry point: the try costs nothing until something throws.
template <typename F>
[[gnu::always_inline]] inline int Guard(const char* call, F&& body) noexcept {
  try {
    ClearError();
    return body();
  } catch (const executor_internal::FiberUnwind&) {
    // The calling task is being cancelled: C frames cannot be unwound, so
    // the C function is told, and should return.
    return Fail(ECANCELED,
                absl::StrCat(call, ": the task is being cancelled; return"));
  } catch (const std::bad_alloc&) {
    return Fail(ENOMEM, absl::StrCat(call, ": out of memory"));
  } catch (const TaskMisuseError& e) {
    return Fail(EDEADLK, absl::StrCat(call, ": ", e.what()));
  } catch (const std::exception& e) {
    return Fail(EIO, absl::StrCat(call, ": ", e.what()));
  } catch (...) {
    return Fail(EIO, absl::StrCat(call, ": unknown exception"));
  }
}

// Checks an attribute struct's size: smaller than the first version (`v1`
// bytes) is invalid; larger than this library's (`ours`) is fine when the
// bytes it does not know are 0.
int CheckSize(const char* call, const void* attr, size_t size, size_t ours,
              size_t v1);

// The calling thread's id (read from the kernel once per thread).
pid_t ThisThreadId() noexcept;

// What a handle needs to know about its executor, kept alive by both.
struct ExecutorInfo {
  std::atomic<pid_t> run_tid{0};  // the thread in spindle_executor_run
  std::atomic<bool> running{false};  // spindle_executor_run is under way
  size_t workers = 0;             // a runtime's worker count; 0: executor
};

// The `self` every C task receives: the address of a tag, not an object
// (nothing to build per task); it marks calls made from inside a task.
inline char self_tag = 0;
inline spindle_task_t* SelfTag() noexcept {
  return reinterpret_cast<spindle_task_t*>(&self_tag);
}

// A detached C task's callable: nothing waits for its end.
struct CTaskFn {
  spindle_task_fn fn;
  void* arg;
  int operator()() const { return fn(SelfTag(), arg); }
};

// Signalled when a C task's callable is destroyed: after the function
// returned, after the fiber was unwound, or unrun at cancellation.
struct CTaskShared {
  std::mutex mu;
  std::condition_variable cv;
  bool ended = false;
};

// A joinable C task's callable: calls the C function; its destructor marks
// the task ended, whichever way it ends.
struct CTaskBody {
  spindle_task_fn fn;
  void* arg;
  std::shared_ptr<CTaskShared> shared;

  CTaskBody(spindle_task_fn f, void* a, std::shared_ptr<CTaskShared> s)
      : fn(f), arg(a), shared(std::move(s)) {}
  CTaskBody(CTaskBody&&) noexcept = default;
  CTaskBody(const CTaskBody&) = delete;
  ~CTaskBody();
  int operator()() const { return fn(SelfTag(), arg); }
};

// Where and how a C task runs, from a spindle_task_attr_t.
struct SpawnPlan {
  FiberOptions fiber;
  RuntimeSpawnOptions spawn;  // its placement is used on runtimes only
};

// Validates `attr` (may be NULL) against an executor's queues (and, for a
// runtime, its worker count) into `plan`; 0 or a negative errno.
int PlanSpawn(const char* call, const ExecutorInfo& info,
              const std::vector<uint32_t>& queues, spindle_task_fn fn,
              const spindle_task_attr_t* attr, SpawnPlan* plan);

// The common case of PlanSpawn, inline (it is on every spawn): a struct of
// this version, the default queue and placement, priorities and stack size
// in range.  False: PlanSpawn decides (and names what is wrong).
inline bool PlanSpawnFast(const spindle_task_attr_t* attr, SpawnPlan* plan) {
  if (attr == nullptr) return true;
  const spindle_task_attr_t& a = *attr;
  if (a.size != sizeof(spindle_task_attr_t) || a.queue != 0 ||
      a.placement != SPINDLE_PLACE_STEALABLE ||
      static_cast<unsigned>(a.cpu_priority) > SPINDLE_PRIORITY_LOW ||
      static_cast<unsigned>(a.io_priority) > SPINDLE_PRIORITY_LOW ||
      (a.stack_size != 0 && (a.stack_size < kMinFiberStack ||
                             a.stack_size > kMaxFiberStack))) {
    return false;
  }
  plan->spawn.priority = static_cast<Priority>(a.cpu_priority);
  plan->spawn.io_priority = static_cast<IoPriority>(a.io_priority);
  plan->spawn.name = a.name;
  if (a.stack_size != 0) plan->fiber.stack_size = a.stack_size;
  return true;
}

// Spawns fn(self, arg) as a fiber on `target` (a LocalExecutor, Spawner
// or Runtime): detached when `out` is NULL, else with a C handle in *out.
template <typename Target>
int SpawnWith(const char* call, const std::vector<uint32_t>& queues,
              const std::shared_ptr<ExecutorInfo>& info, spindle_task_fn fn,
              void* arg, const spindle_task_attr_t* attr,
              spindle_task_t** out, Target& target);

// Applies the attributes an executor and a runtime share (queues, reactor,
// tiers, timing) to `b`, an ExecutorBuilder or a RuntimeBuilder, and lists
// the queue ids in `queues`; 0 or a negative errno naming the bad value.
template <typename Attr, typename Builder>
int ConfigureCommon(const char* call, const Attr& a, Builder& b,
                    std::vector<uint32_t>* queues) {
  if (a.num_queues != 0 &&
      (a.queue_ids == nullptr || a.queue_shares == nullptr)) {
    return Fail(EINVAL, absl::StrCat(call, ": num_queues ", a.num_queues,
                                     " with a NULL queue_ids or "
                                     "queue_shares"));
  }
  for (uint32_t i = 0; i < a.num_queues; ++i) {
    b.WithQueue(a.queue_ids[i], a.queue_shares[i]);
    queues->push_back(a.queue_ids[i]);
  }
  switch (a.reactor) {
    case SPINDLE_REACTOR_AUTO:
    case SPINDLE_REACTOR_IO_URING:
    case SPINDLE_REACTOR_EPOLL: {
      reactor::ReactorOptions o;
      o.backend = a.reactor == SPINDLE_REACTOR_IO_URING
                      ? reactor::BackendChoice::kIoUring
                  : a.reactor == SPINDLE_REACTOR_EPOLL
                      ? reactor::BackendChoice::kEpoll
                      : reactor::BackendChoice::kAuto;
      b.Reactor(o);
      break;
    }
    case SPINDLE_REACTOR_NONE:
      b.NoReactor();
      break;
    default:
      return Fail(EINVAL, absl::StrCat(call, ": reactor ", a.reactor,
                                       " out of range: valid is 0..3"));
  }
  if (a.tiers == 1) {
    b.Tiers(budget::TierConfig::Balanced());
  } else if (a.tiers == -1) {
    b.NoTiers();
  } else if (a.tiers != 0) {
    return Fail(EINVAL, absl::StrCat(call, ": tiers ", a.tiers,
                                     " out of range: valid is -1, 0, 1"));
  }
  b.TaskTiming(a.task_timing != 0);
  return 0;
}

// 0 when `self` is the calling task's own argument, else -EINVAL / -EPERM.
int CheckSelf(const char* call, spindle_task_t* self);

}  // namespace spindle::c_api_internal

// The opaque handles of executor/spindle.h.

// A handle from a spawn (a task's own `self` is SelfTag(), not one).
struct spindle_task {
  spindle::JoinHandle<int> handle;
  std::shared_ptr<spindle::c_api_internal::CTaskShared> shared;
  std::shared_ptr<spindle::c_api_internal::ExecutorInfo> info;
  // A join's outcome, kept for the next join (the value is taken once).
  bool joined = false;
  int join_rc = 0;
  int join_result = 0;
};

struct spindle_executor {
  std::unique_ptr<spindle::LocalExecutor> ex;
  std::shared_ptr<spindle::c_api_internal::ExecutorInfo> info =
      std::make_shared<spindle::c_api_internal::ExecutorInfo>();
  std::vector<uint32_t> queues;  // ids given at creation
};

struct spindle_spawner {
  spindle::Spawner spawner;
  std::shared_ptr<spindle::c_api_internal::ExecutorInfo> info;
  std::vector<uint32_t> queues;
};

struct spindle_runtime {
  std::unique_ptr<spindle::Runtime> rt;
  std::shared_ptr<spindle::c_api_internal::ExecutorInfo> info =
      std::make_shared<spindle::c_api_internal::ExecutorInfo>();
  std::vector<uint32_t> queues;
};

namespace spindle::c_api_internal {

template <typename Target>
int SpawnJoinable(const std::shared_ptr<ExecutorInfo>& info,
                  spindle_task_fn fn, void* arg, const SpawnPlan& plan,
                  spindle_task_t** out, Target& target);

template <typename Target>
int SpawnWith(const char* call, const std::vector<uint32_t>& queues,
              const std::shared_ptr<ExecutorInfo>& info, spindle_task_fn fn,
              void* arg, const spindle_task_attr_t* attr,
              spindle_task_t** out, Target& target) {
  SpawnPlan plan;
  if (fn == nullptr || !PlanSpawnFast(attr, &plan)) [[unlikely]] {
    if (int r = PlanSpawn(call, *info, queues, fn, attr, &plan); r != 0) {
      return r;
    }
  }
  if (out == nullptr) {
    target.SpawnFiberDetached(CTaskFn{fn, arg}, plan.fiber, plan.spawn);
    return 0;
  }
  return SpawnJoinable(info, fn, arg, plan, out, target);
}

// SpawnWith's joinable case, out of line: the detached one stays small.
template <typename Target>
[[gnu::noinline]] int SpawnJoinable(const std::shared_ptr<ExecutorInfo>& info,
                                    spindle_task_fn fn, void* arg,
                                    const SpawnPlan& plan,
                                    spindle_task_t** out, Target& target) {
  auto task = std::make_unique<spindle_task>();
  task->shared = std::make_shared<CTaskShared>();
  task->info = info;
  task->handle = target.SpawnFiber(CTaskBody(fn, arg, task->shared),
                                   plan.fiber, plan.spawn);
  *out = task.release();
  return 0;
}

}  // namespace spindle::c_api_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_C_API_IMPL_H_
