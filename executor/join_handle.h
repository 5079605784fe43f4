// executor/join_handle.h: JoinHandle<T>, what spawning a Task returns.
//
// Included by executor/task.h; include either.

#ifndef SPINDLE_EXECUTOR_JOIN_HANDLE_H_
#define SPINDLE_EXECUTOR_JOIN_HANDLE_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "executor/internal/handle_anchor.h"
#include "executor/task.h"

namespace spindle {

namespace executor_internal {

// A join whose target runs inside the joiner's poll (JoinHandle::Awaiter):
// a coroutine task that has not started, either a Runtime's stealable task
// that is still the newest in the joining worker's deque, or a task of the
// joiner's own executor queued by its spawn, is taken back and resumed as
// a nested Task of the joiner, on the joiner's header, as oneTBB's wait
// runs a child itself.  While it runs, the joiner's context carries the
// task's id and name (CurrentTaskContext() inside it is the task's), and
// the joiner's budget, tier and queue are charged for it.  Nothing else can
// reach the task meanwhile: it is off every queue and list, it never ran
// (no Waker names it), no abort is pending, and its one handle is the one
// being awaited (executor/join_inline.cc).
struct InlineJoin {
  TaskHeader* joiner = nullptr;  // set from Begin to End
  TaskHeader* target = nullptr;
  uint64_t saved_id = 0;
  const char* saved_name = nullptr;
};
// Takes `target` back if it may run inline (see LocalExecutor::
// TakeJoinTarget) and gives `joiner` its id and name; false: join it the
// usual way.
bool BeginInlineJoin(TaskHeader* joiner, TaskHeader* target,
                     InlineJoin* ij) noexcept;
// Ends an inline run: the joiner gets its id and name back, the target's
// frame is destroyed (a cancelled one's at its suspension point: its
// locals' destructors run) and its completion bits are set, without an
// RMW.  `cancelled`: the joiner is being destroyed.
void EndInlineJoin(InlineJoin* ij, bool cancelled) noexcept;
}  // namespace executor_internal

// JoinHandle<T>: the spawner's view of a spawned task.
//
// `co_await handle` from a task, or `Join()` from a plain thread, yields the
// task's value, rethrows the exception it threw, or throws
// TaskCancelledError if it was aborted or dropped at shutdown; `status()`
// tells which without throwing.  The value can be taken once.  Dropping the
// handle detaches the task (it keeps running).  `Abort()` cancels the task:
// a queued task is removed, a suspended one has its wait cancelled and is
// destroyed, a finished one is left as it is.
//
// Requires: a valid handle (not default-constructed or moved-from) for
// everything but valid(), Abort() (a no-op then) and destruction.  One task
// at a time awaits a handle.  Join() / Wait() are for threads that do not
// run the task's executor: on that executor's thread they could never
// return.  A task never awaits its own handle.  Each of these misuses
// throws TaskMisuseError at once (the accessors that are noexcept abort
// with a message instead), rather than hanging.
// Thread safety: a handle may be used from any thread, one thread at a time;
// it keeps its executor's inbox alive, so Abort() is safe while (or after)
// the executor is destroyed on another thread.
// Memory ordering: `status()` acquires the completion that released the
// result, so the value is visible once status() is not kPending.
template <typename T = void>
class [[nodiscard]] JoinHandle {
 public:
  JoinHandle() noexcept = default;
  // Takes over a task reference and an anchor reference (or none: see
  // executor/internal/handle_anchor.h).
  JoinHandle(executor_internal::TaskCell<T>* cell,
             executor_internal::HandleAnchor* anchor) noexcept
      : cell_(cell), anchor_(anchor) {}
  JoinHandle(JoinHandle&& o) noexcept
      : cell_(std::exchange(o.cell_, nullptr)),
        anchor_(std::exchange(o.anchor_, nullptr)) {}
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      Reset();
      cell_ = std::exchange(o.cell_, nullptr);
      anchor_ = std::exchange(o.anchor_, nullptr);
    }
    return *this;
  }
  JoinHandle(const JoinHandle&) = delete;
  JoinHandle& operator=(const JoinHandle&) = delete;
  ~JoinHandle() { Reset(); }

  bool valid() const noexcept { return cell_ != nullptr; }
  // The task's id (unique per executor; the same as CurrentTaskContext()
  // inside the task).
  uint64_t id() const noexcept { return Cell("id")->ctx.task_id; }

  JoinStatus status() const noexcept {
    const uint64_t s = Cell("status")->state.load(std::memory_order_acquire);
    if (s & executor_internal::kStateCancelled) return JoinStatus::kCancelled;
    if (s & executor_internal::kStateComplete) {
      return (s & executor_internal::kStateFailed) ? JoinStatus::kFailed
                                                   : JoinStatus::kCompleted;
    }
    return JoinStatus::kPending;
  }
  bool is_finished() const noexcept { return status() != JoinStatus::kPending; }

  // The task's timeline, once it has finished on an executor built with
  // TaskTiming(); nullopt while it runs (its executor is still writing it)
  // or when its executor does not record timing.
  std::optional<TaskTiming> Timing() const noexcept {
    if (status() == JoinStatus::kPending ||
        !executor_internal::IsTimed(cell_)) {
      return std::nullopt;
    }
    return executor_internal::TimingOf(cell_);
  }

  // Requests cancellation; returns immediately.  No effect once finished, or
  // on an empty handle.
  void Abort() noexcept {
    if (cell_ != nullptr) executor_internal::RequestAbort(cell_);
  }

  // Blocks the calling thread until the task finishes; returns how it
  // ended.  By then the task's frame is gone: the destructors of its
  // locals, parameters and captures (a cancelled fiber's whole stack) have
  // run, as for co_await and Join.  TaskMisuseError (instead of a deadlock)
  // when called on the thread running the task's executor while the task
  // is unfinished.
  JoinStatus Wait() const {
    ThrowIfEmpty("Wait");
    executor_internal::CheckJoin(cell_, /*from_task=*/false);
    executor_internal::BlockUntilDone(cell_);
    return status();
  }

  // Wait(), then the value / the task's exception / TaskCancelledError.
  T Join() {
    if (Wait() == JoinStatus::kCancelled) throw TaskCancelledError();
    return Take();
  }

  struct Awaiter {
    JoinHandle* handle;
    // Set while the task runs inside this awaiter's poll (see
    // executor_internal::BeginInlineJoin).
    executor_internal::InlineJoin inline_join{};
    // Suspends through the task protocol only: a fiber awaits it directly
    // (executor_internal::FiberDirectAwaiter).
    static constexpr bool kFiberDirect = true;
    bool await_ready() const {
      handle->ThrowIfEmpty("co_await");
      executor_internal::CheckJoin(handle->cell_, /*from_task=*/true);
      return handle->cell_->state.load(std::memory_order_acquire) &
             executor_internal::kStateDone;
    }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      using namespace executor_internal;
      TaskCell<T>* cell = handle->cell_;
      TaskHeader* me = CurrentTask();
      // A coroutine task that has not started, queued where this poll can
      // take it back (BeginInlineJoin): the awaiter runs it now, as a
      // nested Task (oneTBB's wait does the same): no queueing, no join
      // registration, no wake.
      if (cell->ops == &kCoroutineOps<T> &&
          BeginInlineJoin(me, cell, &inline_join)) {
        auto child = std::coroutine_handle<Promise<T>>::from_address(
            reinterpret_cast<char*>(cell) + kCellSize<T>);
        // Its final_suspend bounces back to `h` (PromiseBase).
        child.promise().continuation = h;
        me->resume_point = child;
        me->bounce = true;
        return true;
      }
      me->resume_point = h;
      me->run_state = RunState::kSuspended;
      me->wait_kind = WaitKind::kJoin;
      me->wait_object = cell;
      cell->join_waiter = me;
      JoinWaitBegin(me);
      uint64_t s = cell->state.load(std::memory_order_acquire);
      while (!(s & kStateDone)) {
        // release: publishes join_waiter to the completer's CAS.
        if (cell->state.compare_exchange_weak(s, s | kStateJoinWaiter,
                                              std::memory_order_acq_rel,
                                              std::memory_order_acquire)) {
          return true;
        }
      }
      JoinWaitEnd(me->inbox);
      me->run_state = RunState::kRunning;
      me->wait_kind = WaitKind::kNone;
      return false;  // finished meanwhile: continue at once
    }
    T await_resume() {
      if (inline_join.joiner != nullptr) {
        executor_internal::EndInlineJoin(&inline_join, /*cancelled=*/false);
      }
      if (handle->cell_->state.load(std::memory_order_acquire) &
          executor_internal::kStateCancelled) {
        throw TaskCancelledError();
      }
      return handle->Take();
    }
    // Destroyed while the task runs inline: the awaiting task is being
    // destroyed (cancelled), and the task with it.
    ~Awaiter() {
      if (inline_join.joiner != nullptr) [[unlikely]] {
        executor_internal::EndInlineJoin(&inline_join, /*cancelled=*/true);
      }
    }
  };
  Awaiter operator co_await() noexcept { return Awaiter{this}; }

 private:
  friend class LocalExecutor;
  void ThrowIfEmpty(const char* op) const {
    if (cell_ == nullptr) {
      throw TaskMisuseError(
          std::string("spindle: JoinHandle::") + op +
          " on an empty handle (default-constructed or moved-from)");
    }
  }
  executor_internal::TaskCell<T>* Cell(const char* op) const noexcept {
    if (cell_ == nullptr) {
      executor_internal::FatalMisuse(
          op[0] == 'i' ? "JoinHandle::id() on an empty handle "
                         "(default-constructed or moved-from)"
                       : "JoinHandle::status() on an empty handle "
                         "(default-constructed or moved-from)");
    }
    return cell_;
  }
  T Take() {
    if constexpr (!std::is_void_v<T>) {
      if (!cell_->result.error) {
        if (cell_->value_taken) {
          throw TaskMisuseError(
              "spindle: the task's value was already taken by an earlier "
              "Join() or co_await of this handle");
        }
        cell_->value_taken = true;
      }
    }
    return cell_->result.Take();
  }
  void Reset() noexcept {
    if (cell_ != nullptr) {
      executor_internal::ReleaseRef(cell_);
      cell_ = nullptr;
    }
    if (anchor_ != nullptr) {
      executor_internal::HandleAnchor::Release(std::exchange(anchor_, nullptr));
    }
  }
  executor_internal::TaskCell<T>* cell_ = nullptr;
  // Keeps the executor's inbox alive for Abort() from any thread.
  executor_internal::HandleAnchor* anchor_ = nullptr;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_JOIN_HANDLE_H_
