// executor/waker.h: how to write your own awaitable.
//
// Reach for `Waker`: inside `await_suspend(h)` of an awaitable that a
// Spindle task co_awaits, `Waker::SuspendCurrent(h)` suspends the task and
// returns the one handle that resumes it; store it wherever the event will
// be signalled (a list of waiters, another thread) and call `Wake()` there.
//
//   struct Gate {
//     bool open = false;
//     spindle::Waker waiter;
//     auto Wait() {
//       struct Awaiter {
//         Gate* g;
//         bool await_ready() const noexcept { return g->open; }
//         void await_suspend(std::coroutine_handle<> h) noexcept {
//           g->waiter = spindle::Waker::SuspendCurrent(h);
//         }
//         void await_resume() const noexcept {}
//       };
//       return Awaiter{this};
//     }
//     void Release() { open = true; waiter.Wake(); }
//   };

#ifndef SPINDLE_EXECUTOR_WAKER_H_
#define SPINDLE_EXECUTOR_WAKER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <coroutine>
#include <memory>
#include <utility>

#include "executor/task.h"

namespace spindle {

namespace executor_internal {
struct WakerAccess;
}  // namespace executor_internal

// Waker: the right to resume one suspended task, once, from any thread.
//
// Requires: SuspendCurrent is called from await_suspend of an awaitable
// co_awaited by a task running on a Spindle executor, and that await_suspend
// then returns void or true (the task is suspended; it must not also be
// resumed by other means).
// Guarantees: Wake() requeues the task on its own executor (a plain push on
// the executor's thread, the inbox and a doorbell from other threads).
// Only the first Wake() counts; a Wake() after the task was cancelled
// (Abort, RequestStop, executor shutdown) does nothing and touches nothing
// that is gone: a Waker keeps the task's cell and the executor's inbox
// alive.  An abort of a task suspended on a Waker cancels it at once (its
// frame, and the awaitable in it, are destroyed: an awaitable that is
// listed somewhere should take itself off in its destructor).  Dropping a
// Waker without waking leaves the task suspended until it is aborted or its
// executor stops or shuts down.
// Thread safety: a Waker is a move-only value; Wake() may run on any thread
// (one thread at a time per Waker).
// Memory ordering: everything the waking thread wrote before Wake()
// happens-before the task's resumption.
class Waker {
 public:
  Waker() noexcept = default;
  Waker(Waker&& o) noexcept
      : task_(std::exchange(o.task_, nullptr)), inbox_(std::move(o.inbox_)) {}
  Waker& operator=(Waker&& o) noexcept {
    if (this != &o) {
      Reset();
      task_ = std::exchange(o.task_, nullptr);
      inbox_ = std::move(o.inbox_);
    }
    return *this;
  }
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  ~Waker() {
    if (task_ != nullptr) Reset();  // inline: most Wakers die empty
  }

  // Suspends the calling task at `h` and returns its Waker.  Aborts the
  // process with a message when called outside a Spindle task.
  static Waker SuspendCurrent(std::coroutine_handle<> h) noexcept;

  // Resumes the task (once).  No effect on an empty Waker, a second time,
  // or after the task was cancelled.
  void Wake() noexcept;

  bool valid() const noexcept { return task_ != nullptr; }

 private:
  friend struct executor_internal::WakerAccess;  // the sync primitives
  // A Waker holding a new reference on `t` and its executor's inbox; for a
  // caller that may touch `t` (its own task, or one it keeps listed).
  static Waker Holding(executor_internal::TaskHeader* t) noexcept;
  void Reset() noexcept;
  executor_internal::TaskHeader* task_ = nullptr;
  std::shared_ptr<executor_internal::Inbox> inbox_;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_WAKER_H_
