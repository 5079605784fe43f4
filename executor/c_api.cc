// executor/c_api.cc: the C interface (executor/spindle.h): errors, executors,
// spawners, spawning and task handles.  Runtimes are in c_api_runtime.cc,
// the calls a task makes in c_api_task.cc; what they share is in
// executor/internal/c_api_impl.h.
//
// Every entry point catches everything: a C++ exception becomes a negative
// errno and a per-thread message (spindle_last_error).  A C task is a fiber
// whose callable (CTaskFn, or CTaskBody when joinable) calls the C function
// with `self` = SelfTag().  A handle's timed join from a plain thread waits on
// a condition variable that the callable signals when it is destroyed:
// after the function returned, after the fiber was unwound, or unrun at
// cancellation.  From a task, a join suspends the task on the handle.

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <exception>

#include "executor/internal/c_api_impl.h"
#include "executor/select.h"

namespace spindle::c_api_internal {
namespace {
// The message, and whether it is current: the flag is a plain TLS word, so
// a call that succeeds does not touch the string (whose thread_local
// needs an initialisation check on every access).
thread_local std::string tl_error;
constinit thread_local bool tl_has_error = false;
}  // namespace

int Fail(int err, std::string what) {
  tl_error = std::move(what);
  tl_has_error = true;
  return -err;
}

int Fail(int err, const char* what) { return Fail(err, std::string(what)); }

void ClearError() noexcept { tl_has_error = false; }

const char* LastError() noexcept {
  return tl_has_error ? tl_error.c_str() : "";
}

int CheckSize(const char* call, const void* attr, size_t size, size_t ours,
              size_t v1) {
  if (size < v1) {
    return Fail(EINVAL, absl::StrCat(call, ": attr->size ", size,
                                     " is smaller than the first version's ",
                                     v1, " (set it to sizeof the struct)"));
  }
  const auto* bytes = static_cast<const unsigned char*>(attr);
  for (size_t i = ours; i < size; ++i) {
    if (bytes[i] != 0) {
      return Fail(E2BIG,
                  absl::StrCat(call, ": attr->size ", size,
                               " has fields this library (", ours,
                               " bytes) does not know set at byte ", i));
    }
  }
  return 0;
}

pid_t ThisThreadId() noexcept {
  constinit static thread_local pid_t tid = 0;
  if (tid == 0) [[unlikely]] tid = static_cast<pid_t>(syscall(SYS_gettid));
  return tid;
}

CTaskBody::~CTaskBody() {
  if (shared == nullptr) return;
  std::lock_guard<std::mutex> lock(shared->mu);
  shared->ended = true;
  shared->cv.notify_all();
}


int PlanSpawn(const char* call, const ExecutorInfo& info,
              const std::vector<uint32_t>& queues, spindle_task_fn fn,
              const spindle_task_attr_t* attr, SpawnPlan* plan) {
  if (fn == nullptr) return Fail(EINVAL, absl::StrCat(call, ": fn is NULL"));
  if (attr == nullptr) return 0;
  // Version 1 of the struct ended before `placement`.
  if (attr->size != sizeof(spindle_task_attr_t)) {
    if (int r = CheckSize(call, attr, attr->size, sizeof(spindle_task_attr_t),
                          offsetof(spindle_task_attr_t, placement));
        r != 0) {
      return r;
    }
  }
  // Fields are read where they are (no copy of the struct: this is on
  // every spawn); the version 2 ones only when the caller's struct has them.
  const spindle_task_attr_t& a = *attr;
  const bool v2 = attr->size >= sizeof(spindle_task_attr_t);
  const int placement = v2 ? a.placement : SPINDLE_PLACE_STEALABLE;
  const uint64_t placement_arg = v2 ? a.placement_arg : 0;
  if (a.queue != 0) {
    bool known = false;
    for (uint32_t q : queues) known = known || q == a.queue;
    if (!known) {
      return Fail(EINVAL, absl::StrCat(call, ": attr->queue ", a.queue,
                                       " was not given to the executor"));
    }
  }
  SpawnOptions& so = plan->spawn;
  if (a.queue != 0) so.queue = a.queue;
  if (a.cpu_priority < SPINDLE_PRIORITY_HIGH ||
      a.cpu_priority > SPINDLE_PRIORITY_LOW ||
      a.io_priority < SPINDLE_PRIORITY_HIGH ||
      a.io_priority > SPINDLE_PRIORITY_LOW) {
    return Fail(EINVAL, absl::StrCat(call, ": priorities ", a.cpu_priority,
                                     " / ", a.io_priority,
                                     " out of range: valid is 0..2"));
  }
  so.priority = static_cast<Priority>(a.cpu_priority);
  so.io_priority = static_cast<IoPriority>(a.io_priority);
  if (a.name != nullptr) so.name = a.name;
  if (a.stack_size != 0) {
    plan->fiber.stack_size = a.stack_size;
    if (a.stack_size < kMinFiberStack || a.stack_size > kMaxFiberStack) {
      absl::Status s = ValidateFiberOptions(plan->fiber);
      return Fail(EINVAL, absl::StrCat(call, ": ", s.message()));
    }
  }
  if (placement == SPINDLE_PLACE_STEALABLE) return 0;
  if (info.workers == 0) {
    return Fail(EINVAL, absl::StrCat(call, ": placement ", placement,
                                     " is for runtimes: an executor takes "
                                     "only SPINDLE_PLACE_STEALABLE (0)"));
  }
  const bool indexed = placement == SPINDLE_PLACE_PINNED ||
                       placement == SPINDLE_PLACE_PREFERRED;
  if (indexed && placement_arg >= info.workers) {
    return Fail(EINVAL, absl::StrCat(call, ": placement_arg ", placement_arg,
                                     " is not a worker: valid is 0..",
                                     info.workers - 1));
  }
  RuntimeSpawnOptions& rso = plan->spawn;
  switch (placement) {
    case SPINDLE_PLACE_PINNED:
      rso.placement = Placement::Pinned(placement_arg);
      return 0;
    case SPINDLE_PLACE_PREFERRED:
      rso.placement = Placement::StealablePreferred(placement_arg);
      return 0;
    case SPINDLE_PLACE_ROUND_ROBIN:
      rso.placement = Placement::RoundRobin();
      return 0;
    case SPINDLE_PLACE_STICKY:
      rso.placement = Placement::Sticky(placement_arg);
      return 0;
    default:
      return Fail(EINVAL, absl::StrCat(call, ": placement ", placement,
                                       " out of range: valid is 0..4"));
  }
}

int CheckSelf(const char* call, spindle_task_t* self) {
  if (self != SelfTag()) {
    return Fail(EINVAL,
                absl::StrCat(call, ": self is not the task's own argument"));
  }
  if (!this_fiber::InFiber()) {
    return Fail(EPERM, absl::StrCat(call, ": called outside the task"));
  }
  return 0;
}

}  // namespace spindle::c_api_internal

using spindle::c_api_internal::CheckSize;
using spindle::c_api_internal::ConfigureCommon;
using spindle::c_api_internal::Fail;
using spindle::c_api_internal::Guard;
using spindle::c_api_internal::SelfTag;
using spindle::c_api_internal::SpawnWith;
using spindle::c_api_internal::ThisThreadId;

namespace {

// Waits for a task's end from a plain thread (not one of a task).
int BlockUntilEnded(const char* call, spindle_task_t* task,
                    int64_t timeout_ns) {
  if (spindle::CurrentExecutor() != nullptr ||
      task->info->run_tid.load(std::memory_order_relaxed) == ThisThreadId()) {
    return Fail(EDEADLK,
                absl::StrCat(call, spindle::CurrentExecutor() != nullptr
                                       ? ": from a coroutine task, which "
                                         "would block its thread (join from "
                                         "a C task or a plain thread)"
                                       : ": on the thread that runs the "
                                         "task's executor, which could never "
                                         "finish it"));
  }
  std::unique_lock<std::mutex> lock(task->shared->mu);
  auto ended = [&] { return task->shared->ended; };
  if (timeout_ns < 0) {
    task->shared->cv.wait(lock, ended);
  } else if (!task->shared->cv.wait_for(
                 lock, std::chrono::nanoseconds(timeout_ns), ended)) {
    return Fail(ETIMEDOUT, absl::StrCat(call, ": not finished after ",
                                        timeout_ns, " ns"));
  }
  lock.unlock();
  // Its callable is gone: the task is done (or is within this poll).
  (void)task->handle.Wait();
  return 0;
}

// Waits for the end of a task, without taking its value.
struct EndAwaiter {
  spindle::JoinHandle<int>::Awaiter inner;
  bool await_ready() { return inner.await_ready(); }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    return inner.await_suspend(h);
  }
  void await_resume() const noexcept {}
};

// Waits for a task's end from a C task: the calling fiber suspends.
int AwaitEnd(const char* call, spindle_task_t* task, int64_t timeout_ns) {
  EndAwaiter end{task->handle.operator co_await()};
  if (timeout_ns < 0) {
    spindle::this_fiber::Await(end);
    return 0;
  }
  if (timeout_ns > 0) {
    absl::Status s = spindle::this_fiber::Await(
        spindle::Timeout(std::chrono::nanoseconds(timeout_ns), end));
    if (s.ok()) return 0;
    if (s.code() != absl::StatusCode::kDeadlineExceeded) {
      return Fail(ENOTSUP, absl::StrCat(call, ": ", s.message()));
    }
  }
  return Fail(ETIMEDOUT, absl::StrCat(call, ": not finished after ",
                                      timeout_ns, " ns"));
}

// A finished task's outcome: taken from its handle once, then kept.
int Outcome(const char* call, spindle_task_t* task, int* result) {
  if (!task->joined) {
    task->joined = true;
    switch (task->handle.status()) {
      case spindle::JoinStatus::kCancelled:
        task->join_rc = -ECANCELED;
        break;
      case spindle::JoinStatus::kFailed:
        try {
          (void)task->handle.Join();
          task->join_rc = -EIO;
        } catch (const std::bad_alloc&) {
          task->join_rc = -ENOMEM;
        } catch (...) {
          task->join_rc = -EIO;
        }
        break;
      default:
        task->join_result = task->handle.Join();
        task->join_rc = 0;
    }
  }
  switch (task->join_rc) {
    case 0:
      if (result != nullptr) *result = task->join_result;
      return 0;
    case -ECANCELED:
      return Fail(ECANCELED, absl::StrCat(call, ": the task was cancelled"));
    case -ENOMEM:
      return Fail(ENOMEM,
                  absl::StrCat(call, ": the task could not start: no stack"));
    default:
      return Fail(EIO, absl::StrCat(call, ": the task failed"));
  }
}

}  // namespace

extern "C" {

const char* spindle_version(void) {
  static const std::string v(spindle::executor::kVersion);
  return v.c_str();
}

const char* spindle_last_error(void) {
  return spindle::c_api_internal::LastError();
}

void spindle_executor_attr_init(spindle_executor_attr_t* attr) {
  if (attr == nullptr) return;
  std::memset(attr, 0, sizeof(*attr));
  attr->size = sizeof(*attr);
  attr->reactor = SPINDLE_REACTOR_AUTO;
}

int spindle_executor_create(const spindle_executor_attr_t* attr,
                            spindle_executor_t** out) {
  return Guard("spindle_executor_create", [&]() -> int {
    const char* call = "spindle_executor_create";
    if (out == nullptr) return Fail(EINVAL, "spindle_executor_create: out is NULL");
    *out = nullptr;
    spindle_executor_attr_t a;
    spindle_executor_attr_init(&a);
    if (attr != nullptr) {
      if (int r = CheckSize(call, attr, attr->size, sizeof(a), sizeof(a));
          r != 0) {
        return r;
      }
      a = *attr;
    }
    spindle::ExecutorBuilder b;
    auto exec = std::make_unique<spindle_executor>();
    if (int r = ConfigureCommon(call, a, b, &exec->queues); r != 0) return r;
    absl::StatusOr<std::unique_ptr<spindle::LocalExecutor>> ex = b.Build();
    if (!ex.ok()) {
      return Fail(EINVAL, absl::StrCat(call, ": ", ex.status().message()));
    }
    exec->ex = std::move(*ex);
    *out = exec.release();
    return 0;
  });
}

int spindle_executor_destroy(spindle_executor_t* ex) {
  return Guard("spindle_executor_destroy", [&]() -> int {
    if (ex == nullptr) return Fail(EINVAL, "spindle_executor_destroy: ex is NULL");
    if (spindle::CurrentExecutor() == ex->ex.get() ||
        ex->info->running.load(std::memory_order_acquire)) {
      return Fail(EBUSY, "spindle_executor_destroy: the executor is running "
                         "(called from one of its tasks, or while "
                         "spindle_executor_run runs)");
    }
    delete ex;
    return 0;
  });
}

int spindle_executor_run(spindle_executor_t* ex, uint64_t max_polls,
                         int64_t timeout_ns, int flags) {
  return Guard("spindle_executor_run", [&]() -> int {
    if (ex == nullptr) return Fail(EINVAL, "spindle_executor_run: ex is NULL");
    if ((flags & ~SPINDLE_RUN_UNTIL_IDLE) != 0) {
      return Fail(EINVAL, absl::StrCat("spindle_executor_run: flags ", flags,
                                       " has unknown bits (valid: "
                                       "SPINDLE_RUN_UNTIL_IDLE)"));
    }
    if (spindle::CurrentExecutor() != nullptr) {
      return Fail(EBUSY, "spindle_executor_run: called from a task");
    }
    spindle::LocalExecutor::RunLimits l;
    l.max_polls = max_polls;
    l.timeout = std::chrono::nanoseconds(timeout_ns);
    l.until_idle = (flags & SPINDLE_RUN_UNTIL_IDLE) != 0;
    if (ex->info->running.exchange(true, std::memory_order_acq_rel)) {
      return Fail(EBUSY, "spindle_executor_run: another thread runs the "
                         "executor");
    }
    struct Done {
      std::atomic<bool>* running;
      ~Done() { running->store(false, std::memory_order_release); }
    } done{&ex->info->running};
    ex->info->run_tid.store(ThisThreadId(), std::memory_order_relaxed);
    using S = spindle::LocalExecutor::RunStatus;
    switch (ex->ex->RunFor(l)) {
      case S::kDone:
        return SPINDLE_RUN_DONE;
      case S::kPollLimit:
        return SPINDLE_RUN_POLL_LIMIT;
      case S::kTimeout:
        return SPINDLE_RUN_TIMEOUT;
      case S::kIdle:
        return SPINDLE_RUN_IDLE;
    }
    return SPINDLE_RUN_DONE;
  });
}

int spindle_executor_stats(const spindle_executor_t* ex,
                           spindle_stats_t* out) {
  return Guard("spindle_executor_stats", [&]() -> int {
    const char* call = "spindle_executor_stats";
    if (ex == nullptr || out == nullptr) {
      return Fail(EINVAL, "spindle_executor_stats: ex or out is NULL");
    }
    if (out->size < sizeof(spindle_stats_t)) {
      return Fail(EINVAL, absl::StrCat(call, ": out->size ", out->size,
                                       " is smaller than ",
                                       sizeof(spindle_stats_t)));
    }
    const spindle::ExecutorStats s = ex->ex->Stats();
    const size_t size = out->size;
    std::memset(out, 0, size);  // fields of a newer version: zero
    out->size = size;
    out->polls = s.polls;
    out->spawns = s.spawns;
    out->completions = s.completions;
    out->cancellations = s.cancellations;
    out->live_tasks = s.live_tasks;
    return 0;
  });
}

void spindle_task_attr_init(spindle_task_attr_t* attr) {
  if (attr == nullptr) return;
  std::memset(attr, 0, sizeof(*attr));
  attr->size = sizeof(*attr);
  attr->cpu_priority = SPINDLE_PRIORITY_NORMAL;
  attr->io_priority = SPINDLE_PRIORITY_NORMAL;
}

int spindle_spawn(spindle_executor_t* ex, spindle_task_fn fn, void* arg,
                  const spindle_task_attr_t* attr, spindle_task_t** out) {
  return Guard("spindle_spawn", [&]() -> int {
    if (ex == nullptr) return Fail(EINVAL, "spindle_spawn: ex is NULL");
    const pid_t runner = ex->info->run_tid.load(std::memory_order_relaxed);
    if (runner != 0 && runner != ThisThreadId()) {
      return Fail(EPERM,
                  "spindle_spawn: not the thread that runs the executor "
                  "(use a spawner)");
    }
    return SpawnWith("spindle_spawn", ex->queues, ex->info, fn, arg, attr, out,
                     *ex->ex);
  });
}

int spindle_spawner_create(spindle_executor_t* ex, spindle_spawner_t** out) {
  return Guard("spindle_spawner_create", [&]() -> int {
    if (ex == nullptr || out == nullptr) {
      return Fail(EINVAL, "spindle_spawner_create: ex or out is NULL");
    }
    *out = new spindle_spawner{ex->ex->GetSpawner(), ex->info, ex->queues};
    return 0;
  });
}

int spindle_spawner_destroy(spindle_spawner_t* sp) {
  return Guard("spindle_spawner_destroy", [&]() -> int {
    if (sp == nullptr) return Fail(EINVAL, "spindle_spawner_destroy: sp is NULL");
    delete sp;
    return 0;
  });
}

int spindle_spawner_spawn(spindle_spawner_t* sp, spindle_task_fn fn,
                          void* arg, const spindle_task_attr_t* attr,
                          spindle_task_t** out) {
  return Guard("spindle_spawner_spawn", [&]() -> int {
    if (sp == nullptr) return Fail(EINVAL, "spindle_spawner_spawn: sp is NULL");
    return SpawnWith("spindle_spawner_spawn", sp->queues, sp->info, fn, arg,
                     attr, out, sp->spawner);
  });
}

int spindle_task_join(spindle_task_t* task, int* result, int64_t timeout_ns) {
  return Guard("spindle_task_join", [&]() -> int {
    const char* call = "spindle_task_join";
    if (task == nullptr || task == SelfTag()) {
      return Fail(EINVAL, "spindle_task_join: not a handle from a spawn");
    }
    if (!task->handle.is_finished()) {
      if (int r = spindle::this_fiber::InFiber()
                      ? AwaitEnd(call, task, timeout_ns)
                      : BlockUntilEnded(call, task, timeout_ns);
          r != 0) {
        return r;
      }
    }
    return Outcome(call, task, result);
  });
}

int spindle_task_abort(spindle_task_t* task) {
  return Guard("spindle_task_abort", [&]() -> int {
    if (task == nullptr || task == SelfTag()) {
      return Fail(EINVAL, "spindle_task_abort: not a handle from a spawn");
    }
    task->handle.Abort();
    return 0;
  });
}

int spindle_task_release(spindle_task_t* task) {
  return Guard("spindle_task_release", [&]() -> int {
    if (task == nullptr || task == SelfTag()) {
      return Fail(EINVAL, "spindle_task_release: not a handle from a spawn");
    }
    delete task;
    return 0;
  });
}

}  // extern "C"
