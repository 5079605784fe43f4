// executor/watch.h: Watch<T>, the latest value of something, watched by
// many tasks.
//
// Reach for it to publish state that changes (a configuration, a health
// flag, a "shutting down" signal) to every task that cares: each receiver
// sees the newest value and can wait for the next change; intermediate
// values a slow receiver missed are skipped, never queued.
//
//   auto config = spindle::Watch<Config>::Create(LoadConfig());
//   // in each task:
//   auto rx = config->Subscribe();
//   while (bool changed = co_await rx.Changed()) Apply(rx.Get());
//   // Changed() is false once the watch is closed.
//
// GCC 12: declare the condition, as above.  `while (co_await rx.Changed())`
// (a co_await that is itself a while condition) is miscompiled by GCC 12
// and crashes; the declaration form, or a bool set in the loop body, is
// fine.
//   // on reload, from any thread:
//   config->Send(LoadConfig());
//
// Why Watch (and not a broadcast queue): what runtime users fan out to many
// tasks is mostly state, where only the latest value matters; a queue per
// receiver would make a slow receiver either block the sender or lose
// messages.  A Channel per receiver is the tool when every message counts.
//
// Guarantees: Changed() returns true as soon as a value newer than the one
// the receiver last saw (Subscribe, Get or Changed) was sent, and false
// once the watch is closed and the receiver has seen the last value.  A
// receiver cancelled while it waits simply stops waiting (a broadcast has
// nothing to hand on).
// Requires: T is copyable.  The Watch outlives its receivers' waits (they
// hold the shared_ptr).
// Thread safety: Send, Modify, Get, Close from any thread; a Receiver is
// used by one task or thread at a time.
// Memory ordering: Send happens-before the Changed() it ends and every
// Get() that returns its value.

#ifndef SPINDLE_EXECUTOR_WATCH_H_
#define SPINDLE_EXECUTOR_WATCH_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "executor/internal/wait_list.h"

namespace spindle {

template <typename T>
class Watch : public std::enable_shared_from_this<Watch<T>> {
  using WaitOutcome = executor_internal::WaitOutcome;

 public:
  static std::shared_ptr<Watch> Create(T initial) {
    return std::shared_ptr<Watch>(new Watch(std::move(initial)));
  }
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  // Publishes a new value and wakes every receiver waiting for a change.
  // Ignored once closed.
  void Send(T value) {
    Modify([&](T& v) { v = std::move(value); });
  }
  // Changes the value in place under the watch's lock (keep `f` short; it
  // must not wait or touch this watch).  Ignored once closed.
  template <typename F>
  void Modify(F&& f) {
    executor_internal::WakeSet wakes(&cv_);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_);
      if (closed_) return;
      f(value_);
      ++version_;
      WakeAllLocked(wakes, WaitOutcome::kBroadcast);
    }
    wakes.Wake();
  }
  // Wakes every waiter: Changed() returns false from now on for receivers
  // that have seen the last value.
  void Close() noexcept {
    executor_internal::WakeSet wakes(&cv_);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_);
      closed_ = true;
      WakeAllLocked(wakes, WaitOutcome::kClosed);
    }
    wakes.Wake();
  }
  // A copy of the current value.
  T Get() const {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    return value_;
  }
  // How many values have been sent (0 for the initial one).
  uint64_t version() const noexcept {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    return version_;
  }

  class Receiver;
  // A receiver that has seen the current value.
  Receiver Subscribe() {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    return Receiver(this->shared_from_this(), version_);
  }

  class Receiver {
   public:
    struct [[nodiscard]] Awaiter {
      Receiver* rx;
      executor_internal::SyncWaiter node;
      bool suspended = false;  // waiting, or woken but not resumed yet
      bool result = false;

      explicit Awaiter(Receiver* r) noexcept : rx(r) {}
      Awaiter(Awaiter&&) noexcept = default;  // before it is awaited
      ~Awaiter() {
        if (suspended) {
          std::lock_guard<executor_internal::SyncMutex> lock(rx->w_->mu_);
          if (node.linked) rx->w_->waiters_.Remove(&node);
        }
      }
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> h) noexcept {
        Watch* w = rx->w_.get();
        std::lock_guard<executor_internal::SyncMutex> lock(w->mu_);
        if (rx->TakeNewLocked(&result)) return false;
        node.task = executor_internal::SuspendForSync(h);
        w->waiters_.PushBack(&node);
        suspended = true;
        return true;
      }
      bool await_resume() noexcept {
        if (suspended) {
          suspended = false;
          std::lock_guard<executor_internal::SyncMutex> lock(rx->w_->mu_);
          (void)rx->TakeNewLocked(&result);
        }
        return result;
      }
    };

    // co_await: true once a newer value than the last seen is there (it is
    // then seen: read it with Get()); false once closed with nothing new.
    Awaiter Changed() noexcept { return Awaiter(this); }
    // From a plain thread (TaskMisuseError on an executor thread).
    bool ChangedBlocking() {
      executor_internal::CheckBlockingSyncCall(
          "Watch::Receiver::ChangedBlocking");
      std::unique_lock<executor_internal::SyncMutex> lock(w_->mu_);
      bool result = false;
      while (!TakeNewLocked(&result)) {
        executor_internal::SyncWaiter node;
        node.thread = true;
        w_->waiters_.PushBack(&node);
        w_->cv_.wait(lock, [&] { return !node.linked; });
      }
      return result;
    }
    // The current value; marks it seen.
    T Get() {
      std::lock_guard<executor_internal::SyncMutex> lock(w_->mu_);
      seen_ = w_->version_;
      return w_->value_;
    }
    bool has_changed() const {
      std::lock_guard<executor_internal::SyncMutex> lock(w_->mu_);
      return w_->version_ != seen_;
    }

   private:
    friend class Watch;
    Receiver(std::shared_ptr<Watch> w, uint64_t seen)
        : w_(std::move(w)), seen_(seen) {}
    // Under the lock: true when the wait is over, with *changed saying why
    // (a newer value, now seen; or false: closed with nothing new).
    bool TakeNewLocked(bool* changed) noexcept {
      if (w_->version_ != seen_) {
        seen_ = w_->version_;
        *changed = true;
        return true;
      }
      *changed = false;
      return w_->closed_;
    }
    std::shared_ptr<Watch> w_;
    uint64_t seen_;
  };

 private:
  explicit Watch(T initial) : value_(std::move(initial)) {}
  void WakeAllLocked(executor_internal::WakeSet& wakes, WaitOutcome why) {
    while (!waiters_.empty()) wakes.Take(waiters_, waiters_.front(), why);
  }

  mutable executor_internal::SyncMutex mu_;
  executor_internal::SyncCondVar cv_;
  T value_;
  uint64_t version_ = 0;
  bool closed_ = false;
  executor_internal::WaitList waiters_;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_WATCH_H_
