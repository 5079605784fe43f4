// executor/notify.h: Notify and WaitGroup, events between tasks.
//
// Reach for `Notify` to wake tasks that wait for "something changed" (a
// notify-one that is remembered when nobody waits yet, or a notify-all),
// and for `WaitGroup` to wait until n pieces of work are done.
//
//   spindle::Notify ready;
//   // consumer task:  co_await ready.Notified();
//   // producer:       ready.NotifyOne();   // from any thread or task
//
//   spindle::WaitGroup wg;
//   wg.Add(3);
//   for (int i = 0; i < 3; ++i) rt->SpawnDetached(Work(i, &wg));  // Done()
//   co_await wg.Wait();

#ifndef SPINDLE_EXECUTOR_NOTIFY_H_
#define SPINDLE_EXECUTOR_NOTIFY_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "executor/internal/wait_list.h"

namespace spindle {

// Notify: wakes one waiter (FIFO) or all of them, and never loses a
// notify-one.
//
// Guarantees: NotifyOne() with nobody waiting stores one permit (several
// such calls still store one), which the next Notified() consumes without
// waiting; with waiters it wakes the longest-waiting one.  NotifyAll()
// wakes everyone waiting now and stores nothing.  A waiter cancelled after
// a NotifyOne() chose it but before it resumed hands the notification on
// (to the next waiter, or as the stored permit): it is not lost.
// Requires: the Notify outlives every wait on it.
// Thread safety: every member, from any thread and any task.
// Memory ordering: a Notify call happens-before the wait it ends.
class Notify {
 public:
  Notify() = default;
  Notify(const Notify&) = delete;
  Notify& operator=(const Notify&) = delete;

  struct [[nodiscard]] Awaiter {
    Notify* notify;
    executor_internal::SyncWaiter node;
    bool suspended = false;  // waiting, or woken but not resumed yet

    explicit Awaiter(Notify* n) noexcept : notify(n) {}
    Awaiter(Awaiter&&) noexcept = default;  // before it is awaited
    ~Awaiter() {
      if (suspended) notify->Abandon(this);
    }
    // Suspends through the task protocol only: a fiber awaits it directly
    // (executor_internal::FiberDirectAwaiter).
    static constexpr bool kFiberDirect = true;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      return notify->Suspend(this, h);
    }
    void await_resume() noexcept { suspended = false; }
  };

  // co_await: returns at once if a permit is stored (consuming it), else
  // waits for a NotifyOne or NotifyAll.
  Awaiter Notified() noexcept { return Awaiter(this); }
  // From a plain thread (TaskMisuseError on an executor thread).
  void WaitBlocking();

  void NotifyOne() noexcept;
  void NotifyAll() noexcept;

  size_t waiters() const noexcept;

 private:
  bool Suspend(Awaiter* a, std::coroutine_handle<> h) noexcept;
  void Abandon(Awaiter* a) noexcept;
  void NotifyOneLocked(executor_internal::WakeSet& wakes) noexcept;

  mutable executor_internal::SyncMutex mu_;
  executor_internal::SyncCondVar cv_;
  bool permit_ = false;
  executor_internal::WaitList list_;
};

// WaitGroup: a counter of outstanding work; Wait() returns once it is 0.
//
// Add(n) before handing out the work, Done() once per unit.  Wait() with
// the count at 0 returns at once.  Done() more times than Add() aborts the
// process with a message (a count below zero is always a bug).
// Requires: the WaitGroup outlives every wait on it.
// Thread safety: every member, from any thread and any task.
// Memory ordering: every Done() happens-before the Wait() it ends.
class WaitGroup {
 public:
  WaitGroup() = default;
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  struct [[nodiscard]] Awaiter {
    WaitGroup* group;
    executor_internal::SyncWaiter node;
    bool suspended = false;  // waiting, or woken but not resumed yet

    explicit Awaiter(WaitGroup* g) noexcept : group(g) {}
    Awaiter(Awaiter&&) noexcept = default;  // before it is awaited
    ~Awaiter() {
      if (suspended) group->Abandon(this);
    }
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      return group->Suspend(this, h);
    }
    void await_resume() noexcept { suspended = false; }
  };

  void Add(size_t n = 1) noexcept;
  void Done() noexcept;
  Awaiter Wait() noexcept { return Awaiter(this); }
  // From a plain thread (TaskMisuseError on an executor thread).
  void WaitBlocking();
  size_t count() const noexcept;

 private:
  bool Suspend(Awaiter* a, std::coroutine_handle<> h) noexcept;
  void Abandon(Awaiter* a) noexcept;

  mutable executor_internal::SyncMutex mu_;
  executor_internal::SyncCondVar cv_;
  size_t count_ = 0;
  executor_internal::WaitList list_;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_NOTIFY_H_
