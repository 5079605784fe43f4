// executor/cancellation.h: CancellationToken, cooperative cancellation in a
// tree, and WithCancellation to make any await honour a token.
//
// Reach for it to stop a group of tasks and everything they wait on:
//
//   spindle::CancellationToken server;                 // a root
//   spindle::CancellationToken conn = server.Child();  // one per connection
//   // in the connection's task:
//   absl::StatusOr<int32_t> n =
//       co_await spindle::WithCancellation(conn, spindle::Read(fd, buf, len));
//   if (!n.ok()) co_return;  // CANCELLED: the read was cancelled
//   // at shutdown:
//   server.Cancel();  // cancels conn and every other child
//
// Guarantees: Cancel() is idempotent and reaches every descendant (made
// before or after the Cancel: a child of a cancelled token is born
// cancelled).  `co_await token.Cancelled()` returns once the token is
// cancelled.  WithCancellation(token, a) aborts `a` when the token fires
// first (its I/O cancelled, its place in a lock or channel given up; see
// executor/select.h), and yields a CANCELLED status.
// Thread safety: tokens are cheap copyable handles to shared state; every
// member may be called from any thread and any task.
// Memory ordering: Cancel() happens-before every wait it ends and every
// is_cancelled() that returns true.

#ifndef SPINDLE_EXECUTOR_CANCELLATION_H_
#define SPINDLE_EXECUTOR_CANCELLATION_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <coroutine>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "executor/internal/wait_list.h"
#include "executor/select.h"
#include "executor/task.h"

namespace spindle {

namespace executor_internal {
struct CancelNode {
  executor_internal::SyncMutex mu;
  std::atomic<bool> cancelled{false};
  WaitList waiters;
  std::vector<std::weak_ptr<CancelNode>> children;
};
}  // namespace executor_internal

class CancellationToken {
 public:
  // A new root token, not cancelled.
  CancellationToken();

  // A token cancelled with this one (and on its own by its own Cancel()).
  CancellationToken Child() const;

  // Cancels this token and all its descendants.
  void Cancel() const noexcept;
  bool is_cancelled() const noexcept {
    return node_->cancelled.load(std::memory_order_acquire);
  }

  struct [[nodiscard]] Awaiter {
    executor_internal::CancelNode* node;
    executor_internal::SyncWaiter waiter;
    bool suspended = false;  // waiting, or woken but not resumed yet

    explicit Awaiter(executor_internal::CancelNode* n) noexcept : node(n) {}
    Awaiter(Awaiter&&) noexcept = default;  // before it is awaited
    ~Awaiter() {
      if (suspended) {
        std::lock_guard<executor_internal::SyncMutex> lock(node->mu);
        if (waiter.linked) node->waiters.Remove(&waiter);
      }
    }
    bool await_ready() const noexcept {
      return node->cancelled.load(std::memory_order_acquire);
    }
    bool await_suspend(std::coroutine_handle<> h) noexcept;
    void await_resume() noexcept { suspended = false; }
  };
  // co_await: returns once the token is cancelled.  The token must outlive
  // the wait (keep a copy).
  Awaiter Cancelled() const noexcept { return Awaiter(node_.get()); }

 private:
  explicit CancellationToken(std::shared_ptr<executor_internal::CancelNode> n)
      : node_(std::move(n)) {}
  std::shared_ptr<executor_internal::CancelNode> node_;
};

namespace executor_internal {
absl::Status CancelledByToken();

// Keeps the token alive for as long as its wait lasts.
inline Task<> WaitCancelled(CancellationToken token) {
  co_await token.Cancelled();
}
}  // namespace executor_internal

// `a`'s result, or CANCELLED if `token` is (or gets) cancelled first (then
// `a` is aborted and gone).  For an awaitable yielding void: a Status.
template <typename A>
Task<executor_internal::TimeoutResult<executor_internal::AwaitValue<A>>>
WithCancellation(CancellationToken token, A a) {
  if (token.is_cancelled()) co_return executor_internal::CancelledByToken();
  auto r =
      co_await WhenAny(std::move(a), executor_internal::WaitCancelled(token));
  if (r.index() == 1) co_return executor_internal::CancelledByToken();
  co_return executor_internal::FirstValue<executor_internal::AwaitValue<A>>(r);
}

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_CANCELLATION_H_
