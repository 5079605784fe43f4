// executor/oneshot.h: Oneshot, one value from one sender to one receiver.
//
// Reach for it to hand back one result (a reply to a request, a value
// computed on another thread):
//
//   auto [tx, rx] = spindle::MakeOneshot<int>();
//   std::thread([tx = std::move(tx)]() mutable { tx.Send(42); }).detach();
//   std::optional<int> v = co_await rx;  // nullopt: the sender was dropped
//
// Guarantees: the receiver gets the value, or nullopt once the sender is
// destroyed without sending.  Send() returns false (and drops the value)
// if the receiver is gone.  A receiving task that is cancelled while it
// waits loses nothing: the value stays for the next co_await or TryRecv.
// Requires: one task or thread at a time waits on a receiver (a second
// concurrent wait aborts with a message).
// Thread safety: sender and receiver may live on different threads.
// Memory ordering: Send() happens-before the receive that returns the value.

#ifndef SPINDLE_EXECUTOR_ONESHOT_H_
#define SPINDLE_EXECUTOR_ONESHOT_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <condition_variable>
#include <coroutine>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "executor/internal/wait_list.h"

namespace spindle {

namespace executor_internal {
template <typename T>
struct OneshotState {
  executor_internal::SyncMutex mu;
  executor_internal::SyncCondVar cv;
  std::optional<T> value;
  bool sender_done = false;  // sent, or the sender is gone
  bool receiver_gone = false;
  SyncWaiter* waiter = nullptr;

  // Ends the wait of the receiver, if one waits.  Under mu.
  void WakeReceiverLocked(WakeSet& wakes) {
    if (waiter != nullptr) {
      wakes.Add(std::exchange(waiter, nullptr), WaitOutcome::kGranted);
    }
  }
};
}  // namespace executor_internal

template <typename T>
class OneshotSender {
 public:
  OneshotSender() noexcept = default;
  explicit OneshotSender(
      std::shared_ptr<executor_internal::OneshotState<T>> s) noexcept
      : state_(std::move(s)) {}
  OneshotSender(OneshotSender&&) noexcept = default;
  OneshotSender& operator=(OneshotSender&& o) noexcept {
    if (this != &o) {
      Drop();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  ~OneshotSender() { Drop(); }

  // Sends the value (once: the sender is spent afterwards).  false if the
  // receiver is gone or the sender was spent.
  bool Send(T value) {
    if (state_ == nullptr) return false;
    executor_internal::WakeSet wakes(&state_->cv);
    bool ok;
    {
      std::lock_guard<executor_internal::SyncMutex> lock(state_->mu);
      ok = !state_->receiver_gone;
      if (ok) state_->value.emplace(std::move(value));
      state_->sender_done = true;
      state_->WakeReceiverLocked(wakes);
    }
    wakes.Wake();
    state_.reset();
    return ok;
  }
  bool valid() const noexcept { return state_ != nullptr; }
  // The receiver is gone: a Send() would be dropped (so the work that
  // would produce the value may be skipped).
  bool receiver_gone() const noexcept {
    if (state_ == nullptr) return true;
    std::lock_guard<executor_internal::SyncMutex> lock(state_->mu);
    return state_->receiver_gone;
  }

 private:
  void Drop() noexcept {
    if (state_ == nullptr) return;
    executor_internal::WakeSet wakes(&state_->cv);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(state_->mu);
      state_->sender_done = true;
      state_->WakeReceiverLocked(wakes);
    }
    wakes.Wake();
    state_.reset();
  }
  std::shared_ptr<executor_internal::OneshotState<T>> state_;
};

template <typename T>
class OneshotReceiver {
 public:
  OneshotReceiver() noexcept = default;
  explicit OneshotReceiver(
      std::shared_ptr<executor_internal::OneshotState<T>> s) noexcept
      : state_(std::move(s)) {}
  OneshotReceiver(OneshotReceiver&&) noexcept = default;
  OneshotReceiver& operator=(OneshotReceiver&& o) noexcept {
    if (this != &o) {
      Drop();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  ~OneshotReceiver() { Drop(); }

  struct [[nodiscard]] Awaiter {
    executor_internal::OneshotState<T>* state;
    executor_internal::SyncWaiter node;
    bool suspended = false;  // waiting, or woken but not resumed yet

    explicit Awaiter(executor_internal::OneshotState<T>* s) noexcept
        : state(s) {}
    Awaiter(Awaiter&&) noexcept = default;  // before it is awaited
    ~Awaiter() {
      if (suspended) {
        std::lock_guard<executor_internal::SyncMutex> lock(state->mu);
        if (state->waiter == &node) state->waiter = nullptr;
      }
    }
    // Suspends through the task protocol only: a fiber awaits it directly
    // (executor_internal::FiberDirectAwaiter).
    static constexpr bool kFiberDirect = true;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) noexcept {
      std::lock_guard<executor_internal::SyncMutex> lock(state->mu);
      if (state->sender_done) return false;
      if (state->waiter != nullptr) {
        executor_internal::FatalMisuse(
            "two tasks or threads wait on one OneshotReceiver at once");
      }
      node.task = executor_internal::SuspendForSync(h);
      state->waiter = &node;
      suspended = true;
      return true;
    }
    std::optional<T> await_resume() noexcept {
      suspended = false;
      std::lock_guard<executor_internal::SyncMutex> lock(state->mu);
      std::optional<T> out = std::move(state->value);
      state->value.reset();
      return out;
    }
  };
  // co_await: the value, or nullopt if the sender was dropped unsent (or
  // the value was already taken).
  Awaiter operator co_await() noexcept {
    if (state_ == nullptr) {
      executor_internal::FatalMisuse(
          "co_await of an empty OneshotReceiver (default-constructed or "
          "moved-from)");
    }
    return Awaiter(state_.get());
  }

  // Never waits: the value if it was sent (taking it), else nullopt.
  std::optional<T> TryRecv() noexcept {
    if (state_ == nullptr) return std::nullopt;
    std::lock_guard<executor_internal::SyncMutex> lock(state_->mu);
    std::optional<T> out = std::move(state_->value);
    state_->value.reset();
    return out;
  }
  // From a plain thread (TaskMisuseError on an executor thread).
  std::optional<T> RecvBlocking() {
    executor_internal::CheckBlockingSyncCall("OneshotReceiver::RecvBlocking");
    if (state_ == nullptr) return std::nullopt;
    std::unique_lock<executor_internal::SyncMutex> lock(state_->mu);
    if (!state_->sender_done) {
      if (state_->waiter != nullptr) {
        executor_internal::FatalMisuse(
            "two tasks or threads wait on one OneshotReceiver at once");
      }
      executor_internal::SyncWaiter node;
      node.thread = true;
      state_->waiter = &node;
      state_->cv.wait(lock, [&] { return state_->sender_done; });
    }
    std::optional<T> out = std::move(state_->value);
    state_->value.reset();
    return out;
  }

 private:
  void Drop() noexcept {
    if (state_ == nullptr) return;
    {
      std::lock_guard<executor_internal::SyncMutex> lock(state_->mu);
      state_->receiver_gone = true;
      state_->value.reset();
    }
    state_.reset();
  }
  std::shared_ptr<executor_internal::OneshotState<T>> state_;
};

// A connected sender and receiver.
template <typename T>
std::pair<OneshotSender<T>, OneshotReceiver<T>> MakeOneshot() {
  auto s = std::make_shared<executor_internal::OneshotState<T>>();
  return {OneshotSender<T>(s), OneshotReceiver<T>(s)};
}

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_ONESHOT_H_
