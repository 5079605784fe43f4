// executor/semaphore.h: Semaphore and Mutex for tasks.
//
// Reach for `Semaphore` to bound how many tasks do something at once
// (`co_await sem.Acquire()`, then `sem.Release()`, or the guard that
// `AcquireGuard` returns), and for `Mutex` to keep data consistent across a
// `co_await` (`auto guard = co_await mu.Lock();`).  A waiting task is
// suspended, never its thread; both work across the workers of a Runtime,
// on one LocalExecutor, and from plain threads (the Blocking calls).
//
//   spindle::Mutex mu;
//   spindle::Task<> Append(std::vector<int>& v, int x) {
//     auto guard = co_await mu.Lock();
//     co_await spindle::SleepFor(1ms);  // held across the await
//     v.push_back(x);
//   }  // guard unlocks

#ifndef SPINDLE_EXECUTOR_SEMAPHORE_H_
#define SPINDLE_EXECUTOR_SEMAPHORE_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <mutex>
#include <optional>
#include <utility>

#include "executor/internal/wait_list.h"

namespace spindle {

class Semaphore;

// Holds permits of a Semaphore and releases them when destroyed.
class [[nodiscard]] SemaphoreGuard {
 public:
  SemaphoreGuard() noexcept = default;
  SemaphoreGuard(Semaphore* s, size_t n) noexcept : sem_(s), n_(n) {}
  SemaphoreGuard(SemaphoreGuard&& o) noexcept
      : sem_(std::exchange(o.sem_, nullptr)), n_(o.n_) {}
  SemaphoreGuard& operator=(SemaphoreGuard&& o) noexcept {
    if (this != &o) {
      Release();
      sem_ = std::exchange(o.sem_, nullptr);
      n_ = o.n_;
    }
    return *this;
  }
  ~SemaphoreGuard() { Release(); }
  // Gives the permits back now (no effect on an empty guard).
  void Release() noexcept;
  bool owns() const noexcept { return sem_ != nullptr; }

 private:
  Semaphore* sem_ = nullptr;
  size_t n_ = 0;
};

// Semaphore: a count of permits; tasks wait for them in FIFO order.
//
// Guarantees: waiters are served strictly in arrival order: a request for
// n permits at the head is not overtaken by a later smaller one (no
// starvation of large requests), and TryAcquire fails while anyone waits.
// A waiter whose task is cancelled (Abort, a losing Select branch, a
// shutdown) leaves the queue without taking a permit; one cancelled after
// its permits were granted but before it resumed gives them back.
// Requires: the semaphore outlives every wait on it.  Acquire(n) with n
// larger than will ever be free waits forever (and holds up everyone
// behind it): it is the caller's bound to keep.
// Thread safety: every member may be called from any thread and any task.
// Memory ordering: a Release happens-before the acquisition it grants.
class Semaphore {
 public:
  explicit Semaphore(size_t permits) noexcept : permits_(permits) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  struct [[nodiscard]] AcquireAwaiter {
    Semaphore* sem;
    executor_internal::PermitWaiter node;
    bool suspended = false;  // waiting, or woken but not resumed yet

    AcquireAwaiter(Semaphore* s, size_t count) noexcept : sem(s) {
      node.n = count;
    }
    AcquireAwaiter(AcquireAwaiter&&) noexcept =
        default;  // before it is awaited
    ~AcquireAwaiter() {
      if (suspended) sem->Abandon(this);
    }
    // Suspends through the task protocol only: a fiber awaits it directly
    // (executor_internal::FiberDirectAwaiter).
    static constexpr bool kFiberDirect = true;
    bool await_ready() const noexcept { return node.n == 0; }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      return sem->Suspend(this, h);
    }
    void await_resume() noexcept { suspended = false; }
  };

  // co_await: takes n permits, waiting (FIFO) until they are free.
  AcquireAwaiter Acquire(size_t n = 1) noexcept { return {this, n}; }

  // Acquire, then a guard that releases the n permits.
  struct [[nodiscard]] GuardAwaiter : AcquireAwaiter {
    using AcquireAwaiter::AcquireAwaiter;
    SemaphoreGuard await_resume() noexcept {
      AcquireAwaiter::await_resume();
      return SemaphoreGuard(sem, node.n);
    }
  };
  GuardAwaiter AcquireGuard(size_t n = 1) noexcept { return {this, n}; }

  // Takes n permits if they are free and nobody waits; never waits.
  bool TryAcquire(size_t n = 1) noexcept;
  // From a plain thread: waits for n permits, blocking the thread.
  // TaskMisuseError on a thread that runs an executor.
  void AcquireBlocking(size_t n = 1);
  // Returns n permits and grants the waiters they satisfy, in order.
  void Release(size_t n = 1) noexcept;

  // Free permits now (a snapshot).
  size_t available() const noexcept;
  // Tasks and threads waiting now (a snapshot).
  size_t waiters() const noexcept;

 private:
  friend class Mutex;
  bool Suspend(AcquireAwaiter* a, std::coroutine_handle<> h) noexcept;
  void Abandon(AcquireAwaiter* a) noexcept;
  // Grants the head waiters that the free permits satisfy.
  void GrantLocked(executor_internal::WakeSet& wakes) noexcept;

  mutable executor_internal::SyncMutex mu_;
  executor_internal::SyncCondVar cv_;
  size_t permits_;
  executor_internal::WaitList list_;
};

inline void SemaphoreGuard::Release() noexcept {
  if (sem_ != nullptr) std::exchange(sem_, nullptr)->Release(n_);
}

class Mutex;

// Holds a Mutex; unlocks it when destroyed (or at unlock()).
class [[nodiscard]] MutexGuard {
 public:
  MutexGuard() noexcept = default;
  explicit MutexGuard(Mutex* m) noexcept : mu_(m) {}
  MutexGuard(MutexGuard&& o) noexcept : mu_(std::exchange(o.mu_, nullptr)) {}
  MutexGuard& operator=(MutexGuard&& o) noexcept {
    if (this != &o) {
      unlock();
      mu_ = std::exchange(o.mu_, nullptr);
    }
    return *this;
  }
  ~MutexGuard() { unlock(); }
  void unlock() noexcept;
  bool owns_lock() const noexcept { return mu_ != nullptr; }
  explicit operator bool() const noexcept { return owns_lock(); }

 private:
  Mutex* mu_ = nullptr;
};

// Mutex: an async lock, FIFO, that may be held across co_await.
//
// `co_await mu.Lock()` yields a MutexGuard.  Fairness, cancellation and
// thread safety are the Semaphore's (it is a semaphore of one permit).
// Not recursive: a task that locks a Mutex it holds waits for itself
// forever, as with std::mutex.
class Mutex {
 public:
  Mutex() noexcept : sem_(1) {}
  struct [[nodiscard]] LockAwaiter : Semaphore::AcquireAwaiter {
    LockAwaiter(Semaphore* s, Mutex* m) noexcept
        : AcquireAwaiter(s, 1), mu(m) {}
    Mutex* mu;
    MutexGuard await_resume() noexcept {
      Semaphore::AcquireAwaiter::await_resume();
      return MutexGuard(mu);
    }
  };
  LockAwaiter Lock() noexcept { return LockAwaiter(&sem_, this); }
  // An owning guard, or an empty one if the mutex is held or awaited.
  MutexGuard TryLock() noexcept {
    return sem_.TryAcquire(1) ? MutexGuard(this) : MutexGuard();
  }
  // From a plain thread (TaskMisuseError on an executor thread).
  MutexGuard LockBlocking() {
    sem_.AcquireBlocking(1);
    return MutexGuard(this);
  }
  bool is_locked() const noexcept { return sem_.available() == 0; }

 private:
  friend class MutexGuard;
  Semaphore sem_;
};

inline void MutexGuard::unlock() noexcept {
  if (mu_ != nullptr) std::exchange(mu_, nullptr)->sem_.Release(1);
}

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_SEMAPHORE_H_
