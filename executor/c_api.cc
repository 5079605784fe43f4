// executor/c_api.cc: the C interface (executor/spindle.h) over
// LocalExecutor and fibers.
//
// Every entry point catches everything: a C++ exception becomes a negative
// errno and a per-thread message (spindle_last_error).  A C task is a fiber
// whose callable (CTaskBody) calls the C function with a `self` that lives
// on the fiber's stack.  A handle's timed join waits on a condition
// variable that the callable signals when it is destroyed: after the
// function returned, after the fiber was unwound, or unrun at cancellation.

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "executor/executor.h"
#include "executor/spindle.h"

namespace {

thread_local std::string tl_error;

int Fail(int err, std::string what) {
  tl_error = std::move(what);
  return -err;
}

// Runs `body`, turning any exception into an errno and a message.
template <typename F>
int Guard(const char* call, F&& body) noexcept {
  try {
    tl_error.clear();
    return body();
  } catch (const spindle::executor_internal::FiberUnwind&) {
    // The calling task is being cancelled: C frames cannot be unwound, so
    // the C function is told, and should return.
    return Fail(ECANCELED, absl::StrCat(call, ": the task is being "
                                              "cancelled; return"));
  } catch (const std::bad_alloc&) {
    return Fail(ENOMEM, absl::StrCat(call, ": out of memory"));
  } catch (const spindle::TaskMisuseError& e) {
    return Fail(EDEADLK, absl::StrCat(call, ": ", e.what()));
  } catch (const std::exception& e) {
    return Fail(EIO, absl::StrCat(call, ": ", e.what()));
  } catch (...) {
    return Fail(EIO, absl::StrCat(call, ": unknown exception"));
  }
}

// Checks an attribute struct's size: smaller than the first version is
// invalid; larger is fine when the bytes this library does not know are 0.
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

// The calling thread's id, read from the kernel once per thread: spawns
// and joins compare it without a system call.
pid_t ThisThreadId() noexcept {
  static thread_local const pid_t tid =
      static_cast<pid_t>(syscall(SYS_gettid));
  return tid;
}

// What a handle needs to know about its executor, kept alive by both.
struct ExecutorInfo {
  std::atomic<pid_t> run_tid{0};  // the thread in spindle_executor_run
};

struct CTaskShared {
  std::mutex mu;
  std::condition_variable cv;
  bool ended = false;
};

}  // namespace

struct spindle_task {
  bool is_self = false;
  spindle::JoinHandle<int> handle;
  std::shared_ptr<CTaskShared> shared;
  std::shared_ptr<ExecutorInfo> info;
};

struct spindle_executor {
  std::unique_ptr<spindle::LocalExecutor> ex;
  std::shared_ptr<ExecutorInfo> info = std::make_shared<ExecutorInfo>();
  std::vector<uint32_t> queues;  // ids given at creation (and 0)
};

struct spindle_spawner {
  spindle::Spawner spawner;
  std::shared_ptr<ExecutorInfo> info;
  std::vector<uint32_t> queues;
};

namespace {

// The fiber's callable.  Its destructor marks the task ended, whichever
// way it ends.
struct CTaskBody {
  spindle_task_fn fn;
  void* arg;
  std::shared_ptr<CTaskShared> shared;

  CTaskBody(spindle_task_fn f, void* a, std::shared_ptr<CTaskShared> s)
      : fn(f), arg(a), shared(std::move(s)) {}
  CTaskBody(CTaskBody&&) noexcept = default;
  CTaskBody(const CTaskBody&) = delete;
  ~CTaskBody() {
    if (shared == nullptr) return;
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->ended = true;
    shared->cv.notify_all();
  }
  int operator()() {
    spindle_task self;
    self.is_self = true;
    return fn(&self, arg);
  }
};

int SpawnCommon(const char* call, const std::vector<uint32_t>& queues,
                spindle_task_fn fn, const spindle_task_attr_t* attr,
                spindle::FiberOptions* fo, spindle::SpawnOptions* so) {
  if (fn == nullptr) return Fail(EINVAL, absl::StrCat(call, ": fn is NULL"));
  if (attr == nullptr) return 0;
  if (int r = CheckSize(call, attr, attr->size, sizeof(spindle_task_attr_t),
                        sizeof(spindle_task_attr_t));
      r != 0) {
    return r;
  }
  bool known = attr->queue == 0;
  for (uint32_t q : queues) known = known || q == attr->queue;
  if (!known) {
    return Fail(EINVAL, absl::StrCat(call, ": attr->queue ", attr->queue,
                                     " was not given to the executor"));
  }
  if (attr->queue != 0) so->queue = attr->queue;
  if (attr->cpu_priority < SPINDLE_PRIORITY_HIGH ||
      attr->cpu_priority > SPINDLE_PRIORITY_LOW ||
      attr->io_priority < SPINDLE_PRIORITY_HIGH ||
      attr->io_priority > SPINDLE_PRIORITY_LOW) {
    return Fail(EINVAL, absl::StrCat(call, ": priorities ",
                                     attr->cpu_priority, " / ",
                                     attr->io_priority,
                                     " out of range: valid is 0..2"));
  }
  so->priority = static_cast<spindle::Priority>(attr->cpu_priority);
  so->io_priority = static_cast<spindle::IoPriority>(attr->io_priority);
  if (attr->name != nullptr) so->name = attr->name;
  if (attr->stack_size != 0) {
    fo->stack_size = attr->stack_size;
    absl::Status s = spindle::ValidateFiberOptions(*fo);
    if (!s.ok()) {
      return Fail(EINVAL, absl::StrCat(call, ": ", s.message()));
    }
  }
  return 0;
}

template <typename Spawn>
int SpawnWith(const char* call, const std::vector<uint32_t>& queues,
              const std::shared_ptr<ExecutorInfo>& info, spindle_task_fn fn,
              void* arg, const spindle_task_attr_t* attr,
              spindle_task_t** out, Spawn&& spawn) {
  spindle::FiberOptions fo;
  spindle::SpawnOptions so;
  if (int r = SpawnCommon(call, queues, fn, attr, &fo, &so); r != 0) return r;
  if (out == nullptr) {
    spawn(CTaskBody(fn, arg, nullptr), fo, so, nullptr);
    return 0;
  }
  auto task = std::make_unique<spindle_task>();
  task->shared = std::make_shared<CTaskShared>();
  task->info = info;
  spawn(CTaskBody(fn, arg, task->shared), fo, so, &task->handle);
  *out = task.release();
  return 0;
}

int CheckSelf(const char* call, spindle_task_t* self) {
  if (self == nullptr || !self->is_self) {
    return Fail(EINVAL, absl::StrCat(call, ": self is not the task's own "
                                           "argument"));
  }
  if (!spindle::this_fiber::InFiber()) {
    return Fail(EPERM, absl::StrCat(call, ": called outside the task"));
  }
  return 0;
}

}  // namespace

extern "C" {

const char* spindle_version(void) {
  static const std::string v(spindle::executor::kVersion);
  return v.c_str();
}

const char* spindle_last_error(void) { return tl_error.c_str(); }

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
    if (a.num_queues != 0 &&
        (a.queue_ids == nullptr || a.queue_shares == nullptr)) {
      return Fail(EINVAL, absl::StrCat(call, ": num_queues ", a.num_queues,
                                       " with a NULL queue_ids or "
                                       "queue_shares"));
    }
    spindle::ExecutorBuilder b;
    auto exec = std::make_unique<spindle_executor>();
    for (uint32_t i = 0; i < a.num_queues; ++i) {
      b.WithQueue(a.queue_ids[i], a.queue_shares[i]);
      exec->queues.push_back(a.queue_ids[i]);
    }
    switch (a.reactor) {
      case SPINDLE_REACTOR_AUTO:
      case SPINDLE_REACTOR_IO_URING:
      case SPINDLE_REACTOR_EPOLL: {
        spindle::reactor::ReactorOptions o;
        o.backend = a.reactor == SPINDLE_REACTOR_IO_URING
                        ? spindle::reactor::BackendChoice::kIoUring
                    : a.reactor == SPINDLE_REACTOR_EPOLL
                        ? spindle::reactor::BackendChoice::kEpoll
                        : spindle::reactor::BackendChoice::kAuto;
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
      b.Tiers(spindle::budget::TierConfig::Balanced());
    } else if (a.tiers == -1) {
      b.NoTiers();
    } else if (a.tiers != 0) {
      return Fail(EINVAL, absl::StrCat(call, ": tiers ", a.tiers,
                                       " out of range: valid is -1, 0, 1"));
    }
    b.TaskTiming(a.task_timing != 0);
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
    ex->info->run_tid.store(ThisThreadId(),
                            std::memory_order_relaxed);
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
                     [&](CTaskBody&& body, const spindle::FiberOptions& fo,
                         const spindle::SpawnOptions& so,
                         spindle::JoinHandle<int>* h) {
                       if (h == nullptr) {
                         ex->ex->SpawnFiberDetached(std::move(body), fo, so);
                       } else {
                         *h = ex->ex->SpawnFiber(std::move(body), fo, so);
                       }
                     });
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
                     attr, out,
                     [&](CTaskBody&& body, const spindle::FiberOptions& fo,
                         const spindle::SpawnOptions& so,
                         spindle::JoinHandle<int>* h) {
                       if (h == nullptr) {
                         sp->spawner.SpawnFiberDetached(std::move(body), fo,
                                                        so);
                       } else {
                         *h = sp->spawner.SpawnFiber(std::move(body), fo, so);
                       }
                     });
  });
}

int spindle_task_join(spindle_task_t* task, int* result, int64_t timeout_ns) {
  return Guard("spindle_task_join", [&]() -> int {
    const char* call = "spindle_task_join";
    if (task == nullptr || task->is_self) {
      return Fail(EINVAL, "spindle_task_join: not a handle from a spawn");
    }
    if (!task->handle.is_finished()) {
      if (spindle::CurrentExecutor() != nullptr ||
          task->info->run_tid.load(std::memory_order_relaxed) ==
              ThisThreadId()) {
        return Fail(EDEADLK,
                    absl::StrCat(call, ": on the thread that runs the "
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
    }
    // Ended: its completion is published within the same poll.
    switch (task->handle.Wait()) {
      case spindle::JoinStatus::kCancelled:
        return Fail(ECANCELED, absl::StrCat(call, ": the task was cancelled"));
      case spindle::JoinStatus::kFailed:
        try {
          (void)task->handle.Join();
        } catch (const std::bad_alloc&) {
          return Fail(ENOMEM, absl::StrCat(call, ": the task could not "
                                                 "start: no stack"));
        }
        return Fail(EIO, absl::StrCat(call, ": the task failed"));
      default: {
        const int v = task->handle.Join();
        if (result != nullptr) *result = v;
        return 0;
      }
    }
  });
}

int spindle_task_abort(spindle_task_t* task) {
  return Guard("spindle_task_abort", [&]() -> int {
    if (task == nullptr || task->is_self) {
      return Fail(EINVAL, "spindle_task_abort: not a handle from a spawn");
    }
    task->handle.Abort();
    return 0;
  });
}

int spindle_task_release(spindle_task_t* task) {
  return Guard("spindle_task_release", [&]() -> int {
    if (task == nullptr || task->is_self) {
      return Fail(EINVAL, "spindle_task_release: not a handle from a spawn");
    }
    delete task;
    return 0;
  });
}

int spindle_yield(spindle_task_t* self) {
  return Guard("spindle_yield", [&]() -> int {
    if (int r = CheckSelf("spindle_yield", self); r != 0) return r;
    spindle::this_fiber::Yield();
    return 0;
  });
}

int spindle_yield_maybe(spindle_task_t* self) {
  return Guard("spindle_yield_maybe", [&]() -> int {
    if (int r = CheckSelf("spindle_yield_maybe", self); r != 0) return r;
    spindle::this_fiber::YieldMaybe();
    return 0;
  });
}

int spindle_sleep(spindle_task_t* self, uint64_t ns) {
  return Guard("spindle_sleep", [&]() -> int {
    if (int r = CheckSelf("spindle_sleep", self); r != 0) return r;
    spindle::this_fiber::SleepFor(
        std::chrono::nanoseconds(static_cast<int64_t>(ns)));
    return 0;
  });
}

int64_t spindle_read(spindle_task_t* self, int fd, void* buf, size_t len,
                     int64_t offset) {
  return Guard("spindle_read", [&]() -> int {
    if (int r = CheckSelf("spindle_read", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Read(fd, buf, len, offset));
  });
}

int64_t spindle_write(spindle_task_t* self, int fd, const void* buf,
                      size_t len, int64_t offset) {
  return Guard("spindle_write", [&]() -> int {
    if (int r = CheckSelf("spindle_write", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Write(fd, buf, len, offset));
  });
}

int spindle_fsync(spindle_task_t* self, int fd) {
  return Guard("spindle_fsync", [&]() -> int {
    if (int r = CheckSelf("spindle_fsync", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Fsync(fd));
  });
}

}  // extern "C"
