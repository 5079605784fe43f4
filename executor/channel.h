// executor/channel.h: Channel<T>, a bounded multi-producer multi-consumer
// queue between tasks (and plain threads).
//
// Reach for it to hand data from tasks to tasks: senders wait while it is
// full, receivers wait while it is empty, Close() ends it for everyone.
//
//   auto ch = spindle::Channel<std::string>::Create(64).value();
//   // producer task:
//   if (!co_await ch->Send("hello")) { /* closed: not sent */ }
//   // consumer task:
//   while (std::optional<std::string> m = co_await ch->Recv()) Use(*m);
//   // Recv() yields nullopt once the channel is closed and drained.
//
// A plain thread uses TrySend / TryRecv, or SendBlocking / RecvBlocking.

#ifndef SPINDLE_EXECUTOR_CHANNEL_H_
#define SPINDLE_EXECUTOR_CHANNEL_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "executor/internal/ring.h"
#include "executor/internal/wait_list.h"

namespace spindle {

// What a non-waiting send or receive found.
enum class ChannelStatus : uint8_t {
  kOk = 0,      // sent / received
  kFull = 1,    // TrySend: no room (nothing was moved from the value)
  kEmpty = 2,   // TryRecv: nothing buffered
  kClosed = 3,  // closed (and, for a receive, drained)
};

namespace executor_internal {
// A channel waiter: a sender's message, or the slot a receiver is handed
// its message in.
template <typename T>
struct ValueWaiter : SyncWaiter {
  ValueWaiter() noexcept = default;
  explicit ValueWaiter(Unlinked u) noexcept : SyncWaiter(u) {}
  std::optional<T> value;
};
}  // namespace executor_internal

// Channel<T>: bounded MPMC FIFO queue; made by Create, shared by pointer.
//
// Guarantees:
//   - Messages come out in the order they went in.  Waiting senders and
//     waiting receivers are each served first come, first served: a sender
//     that waits is not overtaken by a later TrySend, and a message goes to
//     the receiver that has waited longest.
//   - Nothing is lost or duplicated by cancellation: a receiver whose task
//     is cancelled (Abort, a losing Select branch, a shutdown) after a
//     message was handed to it, but before it resumed, gives the message
//     back to the next receiver (or to the front of the buffer).  A sender
//     cancelled while waiting sent nothing; one cancelled after its message
//     was taken into the channel did send it.
//   - Close() wakes every waiter: waiting senders get false (their
//     messages are not sent), receivers get the buffered messages, then
//     nullopt.
//   - Steady-state sends and receives do not allocate.
// Requires: T is nothrow-move-constructible.  The channel outlives every
// wait on it (hold the shared_ptr).
// Thread safety: every member, from any thread and any task.
// Memory ordering: a send happens-before the receive that returns its
// message.
template <typename T>
class Channel {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "spindle::Channel<T> needs a nothrow move constructor");
  using ValueWaiter = executor_internal::ValueWaiter<T>;
  using WakeSet = executor_internal::WakeSet;
  using WaitOutcome = executor_internal::WaitOutcome;

 public:
  static constexpr size_t kMaxCapacity = size_t{1} << 30;

  // A channel that buffers up to `capacity` messages, 1..kMaxCapacity.
  static absl::StatusOr<std::shared_ptr<Channel>> Create(size_t capacity) {
    if (capacity < 1 || capacity > kMaxCapacity) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Channel capacity ", capacity, " is out of range: it must be in [1, ",
          kMaxCapacity, "]"));
    }
    return std::shared_ptr<Channel>(new Channel(capacity));
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  struct [[nodiscard]] SendAwaiter {
    Channel* ch;
    ValueWaiter node;
    bool suspended = false;  // waiting, or woken but not resumed yet

    SendAwaiter(Channel* c, T&& v) noexcept
        : ch(c), node(typename ValueWaiter::Unlinked{}) {
      node.value.emplace(std::move(v));
    }
    // Before it is awaited: only the channel and the message are set.
    SendAwaiter(SendAwaiter&& o) noexcept
        : ch(o.ch), node(typename ValueWaiter::Unlinked{}) {
      node.value = std::move(o.node.value);
    }
    ~SendAwaiter() {
      if (suspended) ch->AbandonSend(this);
    }
    // Suspends through the task protocol only: a fiber awaits it directly
    // (executor_internal::FiberDirectAwaiter).
    static constexpr bool kFiberDirect = true;
    bool await_ready() const noexcept { return false; }
    [[gnu::always_inline]] bool await_suspend(
        std::coroutine_handle<> h) noexcept {
      return ch->SuspendSend(this, h);
    }
    // true: sent; false: the channel is closed (the message was not sent).
    bool await_resume() noexcept {
      suspended = false;
      return node.outcome == WaitOutcome::kGranted;
    }
  };

  struct [[nodiscard]] RecvAwaiter {
    Channel* ch;
    ValueWaiter node;
    bool suspended = false;  // waiting, or woken but not resumed yet

    explicit RecvAwaiter(Channel* c) noexcept
        : ch(c), node(typename ValueWaiter::Unlinked{}) {}
    // Before it is awaited: only the channel is set.
    RecvAwaiter(RecvAwaiter&& o) noexcept
        : ch(o.ch), node(typename ValueWaiter::Unlinked{}) {}
    ~RecvAwaiter() {
      if (suspended) ch->AbandonRecv(this);
    }
    // Suspends through the task protocol only: a fiber awaits it directly
    // (executor_internal::FiberDirectAwaiter).
    static constexpr bool kFiberDirect = true;
    bool await_ready() const noexcept { return false; }
    [[gnu::always_inline]] bool await_suspend(
        std::coroutine_handle<> h) noexcept {
      return ch->SuspendRecv(this, h);
    }
    // The next message, or nullopt once the channel is closed and drained.
    std::optional<T> await_resume() noexcept {
      suspended = false;
      std::optional<T> out = std::move(node.value);
      node.value.reset();
      return out;
    }
  };

  // co_await: sends, waiting while the channel is full.  Yields false if
  // the channel is (or gets) closed first; the message is then dropped.
  SendAwaiter Send(T value) noexcept {
    return SendAwaiter(this, std::move(value));
  }
  // co_await: the next message; nullopt once closed and drained.
  RecvAwaiter Recv() noexcept { return RecvAwaiter(this); }

  // Never waits.  kOk moves from `value`; kFull and kClosed leave it.
  ChannelStatus TrySend(T& value) noexcept {
    WakeSet wakes(&cv_);
    ChannelStatus s;
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_);
      s = SendLocked(value, wakes);
    }
    wakes.Wake();
    return s;
  }
  ChannelStatus TrySend(T&& value) noexcept { return TrySend(value); }

  // Never waits: a message, or nullopt with *status kEmpty or kClosed.
  std::optional<T> TryRecv(ChannelStatus* status = nullptr) noexcept {
    WakeSet wakes(&cv_);
    std::optional<T> out;
    ChannelStatus s;
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_);
      s = RecvLocked(out, wakes);
    }
    wakes.Wake();
    if (status != nullptr) *status = s;
    return out;
  }

  // From a plain thread: Send / Recv that block the thread.
  // TaskMisuseError on a thread that runs an executor.
  bool SendBlocking(T value) {
    executor_internal::CheckBlockingSyncCall("Channel::SendBlocking");
    WakeSet wakes(&cv_);
    ValueWaiter node;
    {
      std::unique_lock<executor_internal::SyncMutex> lock(mu_);
      const ChannelStatus s = SendLocked(value, wakes);
      if (s != ChannelStatus::kFull) {
        lock.unlock();
        wakes.Wake();
        return s == ChannelStatus::kOk;
      }
      node.thread = true;
      node.value.emplace(std::move(value));
      senders_.PushBack(&node);
      cv_.wait(lock, [&] { return !node.linked; });
    }
    return node.outcome == WaitOutcome::kGranted;
  }
  std::optional<T> RecvBlocking() {
    executor_internal::CheckBlockingSyncCall("Channel::RecvBlocking");
    WakeSet wakes(&cv_);
    ValueWaiter node;
    {
      std::unique_lock<executor_internal::SyncMutex> lock(mu_);
      if (RecvLocked(node.value, wakes) != ChannelStatus::kEmpty) {
        lock.unlock();
        wakes.Wake();
        return std::move(node.value);
      }
      node.thread = true;
      receivers_.PushBack(&node);
      cv_.wait(lock, [&] { return !node.linked; });
    }
    return std::move(node.value);
  }

  // Closes the channel: sends fail from now on, every waiter wakes.
  // Idempotent.
  void Close() noexcept {
    WakeSet wakes(&cv_);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_);
      closed_ = true;
      while (!senders_.empty()) {
        wakes.TakeFront(senders_, WaitOutcome::kClosed);
      }
      while (!receivers_.empty()) {
        wakes.TakeFront(receivers_, WaitOutcome::kClosed);
      }
    }
    wakes.Wake();
  }

  bool closed() const noexcept {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    return closed_;
  }
  // Buffered messages now (a snapshot).
  size_t size() const noexcept {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    return buf_.size();
  }
  size_t capacity() const noexcept { return capacity_; }

 private:
  explicit Channel(size_t capacity) : capacity_(capacity), buf_(capacity) {}

  // Invariants (under mu_): receivers_ non-empty => buf_ empty; senders_
  // non-empty => buf_ holds at least capacity_ messages.

  // What SendLocked / RecvLocked return, with LocalWakes, for an operation
  // the fast path must leave to the general one (nothing was changed).
  static constexpr ChannelStatus kNotLocal = static_cast<ChannelStatus>(0xff);

  // Send and receive under mu_, for every caller: Wakes is WakeSet (the
  // general paths, the Try and blocking calls) or LocalWakes (the fast
  // paths, which get kNotLocal where they would need more).
  // *buffered (if given) is set when the message went into the buffer
  // (not to a waiting receiver).
  template <typename Wakes>
  [[gnu::always_inline]] ChannelStatus SendLocked(
      T& value, Wakes& wakes, bool* buffered = nullptr) noexcept {
    if (closed_) return ChannelStatus::kClosed;
    if (!receivers_.empty()) {
      auto* r = static_cast<ValueWaiter*>(receivers_.front());
      if (!wakes.CanTake(r)) return kNotLocal;
      r->value.emplace(std::move(value));
      wakes.TakeFront(receivers_, WaitOutcome::kGranted);
      return ChannelStatus::kOk;
    }
    if (buf_.size() >= capacity_ || !senders_.empty()) {
      return ChannelStatus::kFull;
    }
    buf_.PushBack(std::move(value));
    if (buffered != nullptr) *buffered = true;
    return ChannelStatus::kOk;
  }

  template <typename Wakes>
  [[gnu::always_inline]] ChannelStatus RecvLocked(std::optional<T>& out,
                                                  Wakes& wakes) noexcept {
    if (buf_.empty()) {
      return closed_ ? ChannelStatus::kClosed : ChannelStatus::kEmpty;
    }
    if constexpr (Wakes::kWakesAny) {
      out.emplace(buf_.PopFront());
      if (!senders_.empty()) [[unlikely]] RefillFromSenders(wakes);
    } else {
      if (!senders_.empty()) return kNotLocal;
      out.emplace(buf_.PopFront());
    }
    return ChannelStatus::kOk;
  }

  // The slots a receive freed go to the longest-waiting senders.  Out of
  // line: a receive that finds no sender waiting keeps few registers.
  [[gnu::noinline]] void RefillFromSenders(WakeSet& wakes) noexcept {
    while (!senders_.empty() && buf_.size() < capacity_) {
      auto* s = static_cast<ValueWaiter*>(senders_.front());
      buf_.PushBack(std::move(*s->value));
      s->value.reset();
      wakes.TakeFront(senders_, WaitOutcome::kGranted);
    }
  }

  // await_suspend of Send and Recv.  The fast paths run with the lock
  // biased to this thread (a channel whose tasks share a worker, after 64
  // locks in a row) and LocalWakes: a hand-off to a waiting task of this
  // thread, a buffer with room or a message, a close, or a wait.  They need
  // no WakeSet and no call, so they keep to scratch registers.  Everything
  // else (a thread or a task of another thread to wake, senders to refill
  // from, an unbiased lock, no task) takes the general path, with the lock
  // held.
  [[gnu::always_inline]] bool SuspendSend(SendAwaiter* a,
                                          std::coroutine_handle<> h) noexcept {
    const uint64_t me = executor_internal::tl_sync_thread_id;
    if (mu_.TryB1(me)) [[likely]] {
      executor_internal::LocalWakes wakes;
      bool buffered = false;
      const ChannelStatus s = SendLocked(*a->node.value, wakes, &buffered);
      if (s == ChannelStatus::kFull) {
        if (executor_internal::tl_task != nullptr) [[likely]] {
          Wait(senders_, a, h);
          mu_.UnlockB2();
          return true;
        }
      } else if (s != kNotLocal) {
        mu_.UnlockB2();
        a->node.outcome = s == ChannelStatus::kOk ? WaitOutcome::kGranted
                                                  : WaitOutcome::kClosed;
        return buffered && executor_internal::YieldMaybeAfterOp(h);
      }
      return SuspendSendLocked(a, h);
    }
    mu_.LockAfterB1(me);
    return SuspendSendLocked(a, h);
  }

  [[gnu::always_inline]] bool SuspendRecv(RecvAwaiter* a,
                                          std::coroutine_handle<> h) noexcept {
    const uint64_t me = executor_internal::tl_sync_thread_id;
    if (mu_.TryB1(me)) [[likely]] {
      executor_internal::LocalWakes wakes;
      const ChannelStatus s = RecvLocked(a->node.value, wakes);
      if (s == ChannelStatus::kEmpty) {
        if (executor_internal::tl_task != nullptr) [[likely]] {
          Wait(receivers_, a, h);
          mu_.UnlockB2();
          return true;
        }
      } else if (s != kNotLocal) {
        mu_.UnlockB2();  // a message, or closed and drained (nullopt)
        return RecvYieldMaybe(a, h);
      }
      return SuspendRecvLocked(a, h);
    }
    mu_.LockAfterB1(me);
    return SuspendRecvLocked(a, h);
  }

  // Under mu_: the awaiting task waits in `list`.
  template <typename Awaiter>
  [[gnu::always_inline]] static void Wait(executor_internal::WaitList& list,
                                          Awaiter* a,
                                          std::coroutine_handle<> h) noexcept {
    a->node.task = executor_internal::SuspendForSync(h);
    list.PushBack(&a->node);
    a->suspended = true;
  }

  // The general paths, entered holding mu_ (which they release).
  [[gnu::noinline]] bool SuspendSendLocked(SendAwaiter* a,
                                           std::coroutine_handle<> h) noexcept {
    WakeSet wakes(&cv_);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_, std::adopt_lock);
      const ChannelStatus s = SendLocked(*a->node.value, wakes);
      if (s == ChannelStatus::kFull) {
        Wait(senders_, a, h);
        return true;
      }
      // Not waiting: the outcome is known now.
      a->node.outcome = s == ChannelStatus::kOk ? WaitOutcome::kGranted
                                                : WaitOutcome::kClosed;
    }
    wakes.Wake();
    return executor_internal::YieldMaybeAfterOp(h);
  }

  [[gnu::noinline]] bool SuspendRecvLocked(RecvAwaiter* a,
                                           std::coroutine_handle<> h) noexcept {
    WakeSet wakes(&cv_);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_, std::adopt_lock);
      if (RecvLocked(a->node.value, wakes) == ChannelStatus::kEmpty) {
        Wait(receivers_, a, h);
        return true;
      }
    }
    wakes.Wake();
    return RecvYieldMaybe(a, h);
  }

  // The end of a Recv that did not wait (it took a buffered message, or
  // found the channel closed and drained): the task's budget is charged,
  // and once it is spent (or YieldMaybe's tests say so, every 32
  // operations) the task yields holding what it received (`suspended`:
  // cancelled before it resumes, it gives the message back).
  // A Send that did not wait is charged the same, except on the fast path
  // when it handed its message to a waiting task of this thread: that
  // queues the receiver here, so the sender cannot keep the worker from it
  // by such hand-offs (and a same-worker ping-pong pays nothing).  So a
  // task whose channel never runs empty, never fills, or whose peers on
  // other workers always wait for it, does not keep its worker from the
  // other tasks (executor_internal::YieldMaybeAfterOpHolding).
  [[gnu::always_inline]] static bool RecvYieldMaybe(
      RecvAwaiter* a, std::coroutine_handle<> h) noexcept {
    return executor_internal::YieldMaybeAfterOpHolding(h, a->suspended);
  }

  [[gnu::noinline]] void AbandonSend(SendAwaiter* a) noexcept {
    std::lock_guard<executor_internal::SyncMutex> lock(mu_);
    // Still waiting: nothing was sent.  Otherwise it was sent (or refused
    // by a close): nothing to undo either way.
    if (a->node.linked) senders_.Remove(&a->node);
  }

  [[gnu::noinline]] void AbandonRecv(RecvAwaiter* a) noexcept {
    WakeSet wakes(&cv_);
    {
      std::lock_guard<executor_internal::SyncMutex> lock(mu_);
      if (a->node.linked) {
        receivers_.Remove(&a->node);
      } else if (a->node.value.has_value()) {
        // Handed a message it will never return: the next receiver gets
        // it, or it goes back to the front of the buffer.
        if (!receivers_.empty()) {
          auto* r = static_cast<ValueWaiter*>(receivers_.front());
          r->value.emplace(std::move(*a->node.value));
          wakes.TakeFront(receivers_, WaitOutcome::kGranted);
        } else {
          buf_.PushFront(std::move(*a->node.value));
        }
        a->node.value.reset();
      }
    }
    wakes.Wake();
  }

  const size_t capacity_;
  mutable executor_internal::SyncMutex mu_;
  executor_internal::SyncCondVar cv_;
  bool closed_ = false;
  executor_internal::Ring<T> buf_;
  executor_internal::WaitList senders_;
  executor_internal::WaitList receivers_;
};

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_CHANNEL_H_
