// executor/pool.h: the user-facing task pool.
//
// Reach for `PoolBuilder().Workers(n).MaxQueueSize(q).Build()`: a `Pool`
// runs callables, tasks and process specs (dispatch/process.h) on `n` worker
// threads, highest priority first, and refuses work beyond `q` queued items
// with ResourceExhausted.  Every Submit returns a `PoolHandle<T>` that a
// thread can wait on and a task can `co_await`; it always resolves, also at
// Shutdown (drained or cancelled).  Built on dispatch's `WorkDispatcher` and
// `ProcessRunner`.
//
// `PoolBuilder().OnRuntime(rt)` runs the work on a `Runtime`'s workers
// instead of threads of the pool's own.

#ifndef SPINDLE_EXECUTOR_POOL_H_
#define SPINDLE_EXECUTOR_POOL_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dispatch/launcher.h"
#include "dispatch/process.h"
#include "dispatch/work_dispatcher.h"
#include "executor/local_executor.h"
#include "executor/task.h"
#include "executor/waker.h"

namespace spindle {

using dispatch::Priority;
class Runtime;

namespace executor_internal {

// What a PoolHandle and the worker share.
template <class T>
struct PoolSlot {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::StatusOr<T>> result;  // set once, under mu
  std::vector<Waker> waiters;  // tasks awaiting a handle; under mu

  void Set(absl::StatusOr<T> r) {
    std::vector<Waker> wake;
    {
      std::lock_guard<std::mutex> l(mu);
      result.emplace(std::move(r));
      wake.swap(waiters);
    }
    cv.notify_all();
    for (Waker& w : wake) w.Wake();  // a cancelled waiter's wake is a no-op
  }

  // Suspends the calling task until Set (at once requeued if it already
  // ran).
  void Await(std::coroutine_handle<> h) noexcept {
    Waker w = Waker::SuspendCurrent(h);
    {
      std::lock_guard<std::mutex> l(mu);
      if (!result.has_value()) {
        waiters.push_back(std::move(w));
        return;
      }
    }
    w.Wake();  // set meanwhile: a wake during our own poll re-queues us
  }
};

// The dispatcher item that runs one submission.
struct PoolItem : dispatch::WorkItem {
  PoolItem() : WorkItem(&PoolItem::Dispatch) {}
  virtual ~PoolItem() = default;
  // ran = false: cancelled (Shutdown(kCancel)); resolve with Cancelled.
  virtual void Execute(bool ran) noexcept = 0;
  // On a Runtime-backed pool, a driver task co_awaits this instead of
  // calling Execute(true).  Resolves the handle exactly once, also when its
  // frame is destroyed midway (the Runtime shut down).  Default: Execute.
  virtual Task<void> RunOnDriver();
  class PoolCore* core = nullptr;
  static void Dispatch(WorkItem* w, bool ran) noexcept;
};

}  // namespace executor_internal

// PoolHandle<T>: the result of one submission.
//
// Guarantees: resolves exactly once: with the value; with the status a
// process failed to start with; with Internal when a callable threw; with
// Cancelled when Shutdown(kCancel) dropped it before it ran.
// Thread safety: every member is safe from any thread; copies share it.
template <class T>
class PoolHandle {
 public:
  // Blocks until resolved.
  const absl::StatusOr<T>& Wait() const {
    std::unique_lock<std::mutex> l(slot_->mu);
    slot_->cv.wait(l, [&] { return slot_->result.has_value(); });
    return *slot_->result;
  }
  // nullptr when not resolved within `timeout`.
  const absl::StatusOr<T>* WaitFor(absl::Duration timeout) const {
    std::unique_lock<std::mutex> l(slot_->mu);
    const bool ok = slot_->cv.wait_for(
        l, absl::ToChronoNanoseconds(std::min(timeout, absl::Hours(24 * 365))),
        [&] { return slot_->result.has_value(); });
    return ok ? &*slot_->result : nullptr;
  }
  bool done() const {
    std::lock_guard<std::mutex> l(slot_->mu);
    return slot_->result.has_value();
  }
  // `co_await handle` inside a task: suspends the task (not its worker)
  // until resolved; yields `const absl::StatusOr<T>&`.  A task cancelled
  // while it waits leaves the submission alone (it still runs).
  auto operator co_await() const noexcept {
    struct Awaiter {
      executor_internal::PoolSlot<T>* slot;
      bool await_ready() const {
        std::lock_guard<std::mutex> l(slot->mu);
        return slot->result.has_value();
      }
      void await_suspend(std::coroutine_handle<> h) noexcept { slot->Await(h); }
      const absl::StatusOr<T>& await_resume() const {
        std::lock_guard<std::mutex> l(slot->mu);
        return *slot->result;
      }
    };
    return Awaiter{slot_.get()};
  }

 private:
  friend class Pool;
  explicit PoolHandle(std::shared_ptr<executor_internal::PoolSlot<T>> s)
      : slot_(std::move(s)) {}
  std::shared_ptr<executor_internal::PoolSlot<T>> slot_;
};

// A void callable resolves to this.
struct PoolDone {};

enum class ShutdownMode : uint8_t {
  kDrain,   // run everything queued, then stop
  kCancel,  // drop what is queued (Cancelled), kill running processes
};

namespace executor_internal {

// The calling pool thread's own executor (made at its first task).
absl::StatusOr<LocalExecutor*> PoolThreadExecutor();
// Internal naming `what` and the exception in flight (call in a catch).
absl::Status ThrownStatus(const char* what);

// The pool's machinery, shared by the template Submit and pool.cc.
class PoolCore {
 public:
  // `runtime` null: `workers` threads of the pool's own; else `workers`
  // driver tasks pinned to the runtime's workers 0..workers-1.
  PoolCore(int workers, size_t max_queue,
           std::unique_ptr<dispatch::WorkDispatcher> d,
           std::unique_ptr<dispatch::ProcessRunner> r, Runtime* runtime);
  ~PoolCore();
  // Reserves a queue slot; the error names the capacity.
  absl::Status Admit();
  void Enqueue(PoolItem* item, Priority p) noexcept;
  void Dispatched() noexcept;
  void Finished() noexcept;
  bool cancelling() const noexcept {
    return cancelling_.load(std::memory_order_relaxed);  // see Shutdown
  }
  void Shutdown(ShutdownMode mode);
  size_t Pending() const;
  dispatch::ProcessRunner& runner() { return *runner_; }
  // Running process handles, for Shutdown(kCancel).
  void Track(const dispatch::ProcessHandle& h);
  void Untrack(const dispatch::ProcessHandle& h);
  // A driver task ended (retired, or cancelled with its Runtime).
  void DriverGone() noexcept;

 private:
  struct Drivers;  // pool.cc: the driver tasks of a Runtime-backed pool
  void WaitDrained();
  const int workers_n_;
  const size_t max_queue_;
  std::atomic<size_t> queued_{0};
  std::atomic<bool> cancelling_{false};
  std::atomic<size_t> pending_{0};  // enqueued, not yet finished
  std::unique_ptr<dispatch::WorkDispatcher> dispatcher_;
  std::unique_ptr<dispatch::ProcessRunner> runner_;
  std::vector<std::unique_ptr<dispatch::Worker>> workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<Drivers> drivers_;      // Runtime-backed only
  std::atomic<int> live_drivers_{0};      // driver tasks not yet ended
  // Runtime-backed Shutdown(kDrain) waits on these (see WaitDrained).
  std::atomic<bool> draining_{false};
  std::mutex drain_mu_;
  std::condition_variable drain_cv_;
  std::mutex mu_;
  bool closed_ = false;  // guarded by mu_
  std::vector<dispatch::ProcessHandle> running_;  // guarded by mu_
};

}  // namespace executor_internal

// Pool: a bounded, prioritised queue in front of worker threads, or in
// front of a Runtime's workers (PoolBuilder::OnRuntime).
//
// Requires: Shutdown (or destruction) is not called from a pool worker, nor
// (Runtime-backed) from any thread that runs an executor: it fails at once
// with a message there, since it waits for the pool's driver tasks.  A
// Runtime-backed pool is destroyed before its Runtime; if the Runtime goes
// first, the submissions it was running and everything queued resolve
// Cancelled, and Submit returns FailedPrecondition.
// Guarantees: at most MaxQueueSize submissions wait (running ones do not
// count); every handle resolves; destruction is Shutdown(kDrain).
// On a Runtime: worker w (w < Workers(n)) runs a driver task that takes one
// submission at a time: a callable runs inside it (a blocking callable
// blocks that worker), a process is awaited (the worker runs its other
// tasks meanwhile).
// Thread safety: every member is safe from any thread.
//
// Example:
//   auto pool = spindle::PoolBuilder().Workers(2).MaxQueueSize(100)
//                   .Build().value();
//   auto h = pool->Submit([] { return 6 * 7; }, spindle::Priority::kHigh);
//   int v = h.value().Wait().value();
class Pool {
 public:
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs `fn()` on a worker.  ResourceExhausted when the queue is full;
  // FailedPrecondition after Shutdown.
  template <class F, class R = std::invoke_result_t<std::decay_t<F>&>>
  absl::StatusOr<PoolHandle<std::conditional_t<std::is_void_v<R>, PoolDone, R>>>
  Submit(F&& fn, Priority priority = Priority::kNormal) {
    using T = std::conditional_t<std::is_void_v<R>, PoolDone, R>;
    if (absl::Status s = core_->Admit(); !s.ok()) return s;
    auto slot = std::make_shared<executor_internal::PoolSlot<T>>();
    struct Item final : executor_internal::PoolItem {
      std::decay_t<F> fn;
      std::shared_ptr<executor_internal::PoolSlot<T>> slot;
      Item(F&& f, std::shared_ptr<executor_internal::PoolSlot<T>> s)
          : fn(std::forward<F>(f)), slot(std::move(s)) {}
      void Execute(bool ran) noexcept override {
        if (!ran) {
          slot->Set(absl::CancelledError("Pool shut down before it ran"));
          return;
        }
        try {
          if constexpr (std::is_void_v<R>) {
            fn();
            slot->Set(PoolDone{});
          } else {
            slot->Set(fn());
          }
        } catch (...) {
          slot->Set(executor_internal::ThrownStatus("the submitted callable"));
        }
      }
    };
    core_->Enqueue(new Item(std::forward<F>(fn), slot), priority);
    return PoolHandle<T>(std::move(slot));
  }

  // Runs a task to completion.  On a pool of threads, each thread has its
  // own LocalExecutor (made at its first task; children the task spawns run
  // there too, while it runs); on a Runtime, the driver task awaits it.  An
  // exception the task throws resolves the handle with Internal naming it;
  // an empty Task is InvalidArgument.  A task already running is not
  // interrupted by Shutdown(kCancel) (it runs to completion); on a Runtime
  // that shuts down under it, it is cancelled and resolves Cancelled.
  template <class T>
  absl::StatusOr<PoolHandle<std::conditional_t<std::is_void_v<T>, PoolDone, T>>>
  Submit(Task<T> task, Priority priority = Priority::kNormal) {
    using U = std::conditional_t<std::is_void_v<T>, PoolDone, T>;
    using Slot = executor_internal::PoolSlot<U>;
    if (!task.valid()) {
      return absl::InvalidArgumentError("Pool::Submit: the Task is empty");
    }
    if (absl::Status s = core_->Admit(); !s.ok()) return s;
    auto slot = std::make_shared<Slot>();
    struct Item final : executor_internal::PoolItem {
      Task<T> task;
      std::shared_ptr<Slot> slot;
      Item(Task<T> t, std::shared_ptr<Slot> s)
          : task(std::move(t)), slot(std::move(s)) {}
      void Execute(bool ran) noexcept override {
        if (!ran) {
          slot->Set(absl::CancelledError("Pool shut down before it ran"));
          return;
        }
        absl::StatusOr<LocalExecutor*> ex =
            executor_internal::PoolThreadExecutor();
        if (!ex.ok()) {
          slot->Set(ex.status());
          return;
        }
        try {
          if constexpr (std::is_void_v<T>) {
            (*ex)->BlockOn(std::move(task));
            slot->Set(PoolDone{});
          } else {
            slot->Set((*ex)->BlockOn(std::move(task)));
          }
        } catch (...) {
          slot->Set(executor_internal::ThrownStatus("the submitted task"));
        }
      }
      Task<void> RunOnDriver() override {
        // Resolves Cancelled if the frame goes before the task ends.
        struct Cleanup {
          Slot* slot;
          bool resolved = false;
          ~Cleanup() {
            if (!resolved) {
              slot->Set(absl::CancelledError(
                  "the Runtime running the pool shut down under the task"));
            }
          }
        } cleanup{slot.get()};
        try {
          if constexpr (std::is_void_v<T>) {
            co_await std::move(task);
            slot->Set(PoolDone{});
          } else {
            slot->Set(co_await std::move(task));
          }
        } catch (...) {
          slot->Set(executor_internal::ThrownStatus("the submitted task"));
        }
        cleanup.resolved = true;
      }
    };
    core_->Enqueue(new Item(std::move(task), slot), priority);
    return PoolHandle<U>(std::move(slot));
  }

  // Runs a process (see dispatch/process.h), here or as the pool's launcher
  // prepares it (PoolBuilder::Launcher).  A failure to start resolves the
  // handle with that status, as does a launcher's verdict that the result
  // is not the spec's (ProcessHandle::status(): a Slurm step whose node
  // failed is Unavailable).
  absl::StatusOr<PoolHandle<dispatch::ProcessResult>> Submit(
      dispatch::ProcessSpec spec, Priority priority = Priority::kNormal);

  // Submissions queued or running.
  size_t PendingTasks() const;

  // Stops accepting work, then drains or cancels; returns when every worker
  // has stopped and every handle is resolved.  Later calls return at once.
  void Shutdown(ShutdownMode mode);

 private:
  friend class PoolBuilder;
  explicit Pool(std::unique_ptr<executor_internal::PoolCore> core)
      : core_(std::move(core)) {}
  std::unique_ptr<executor_internal::PoolCore> core_;
};

// PoolBuilder: Workers in [1, 1024] (default 2; on a Runtime: in
// [1, its worker count], default all of them); MaxQueueSize in [1, 2^30]
// (default 1024).  Build: InvalidArgument naming the bad value and its
// range; whatever the dispatcher or the process runner reports.
class PoolBuilder {
 public:
  PoolBuilder& Workers(int n) {
    workers_ = n;
    workers_set_ = true;
    return *this;
  }
  // Runs the pool's work on `runtime`'s workers (no threads of its own).
  PoolBuilder& OnRuntime(Runtime& runtime) {
    runtime_ = &runtime;
    return *this;
  }
  PoolBuilder& MaxQueueSize(size_t q) {
    max_queue_ = q;
    return *this;
  }
  // Process submissions run as `launcher` prepares them (dispatch/
  // launcher.h): with a `dispatch::SlurmLauncher` (dispatch/slurm.h), as
  // Slurm job steps.  Workers(n) is then the number of steps in flight; the
  // rest wait in the pool's queue, not Slurm's.  A step that fails for
  // Slurm's reasons (its node failed) resolves with that status.  The pool
  // holds the launcher until it is destroyed.
  PoolBuilder& Launcher(std::shared_ptr<dispatch::ProcessLauncher> launcher) {
    launcher_ = std::move(launcher);
    return *this;
  }
  absl::StatusOr<std::unique_ptr<Pool>> Build() const;

 private:
  int workers_ = 2;
  bool workers_set_ = false;
  size_t max_queue_ = 1024;
  Runtime* runtime_ = nullptr;
  std::shared_ptr<dispatch::ProcessLauncher> launcher_;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_POOL_H_
