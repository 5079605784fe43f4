// executor/select.h: WhenAll, WhenAny (select) and Timeout over any
// awaitables.
//
// Reach for `WhenAny` to wait for the first of several events (a message
// or a timer, two sockets), `WhenAll` to run several awaits concurrently
// and wait for all of them, and `Timeout` to bound any await:
//
//   auto first = co_await spindle::WhenAny(ch->Recv(), spindle::SleepFor(1s));
//   if (first.index() == 0) Use(std::get<0>(first));  // the message
//   else                    Idle();                    // the timer
//
//   auto [a, b] = co_await spindle::WhenAll(Fetch(1), Fetch(2));
//
//   absl::StatusOr<int32_t> n =
//       co_await spindle::Timeout(5s, spindle::Read(fd, buf, len));
//
// How they work: each awaitable runs as a child task on the calling task's
// executor (on a Runtime, the same worker), in its queue and at its
// priorities, so every awaitable that a task can co_await can be combined.
// A child that loses (WhenAny), or whose sibling threw (WhenAll), is
// aborted, and the combinator waits until it is gone before it returns:
// the loser's resources are released (its I/O cancelled, its place in a
// channel's or a lock's queue given up, without losing a message or a
// permit; see executor/sync.h).  The child that
// decides aborts its siblings in the same poll, before any of them can
// resume: a sibling that was handed a message or a permit meanwhile gives
// it back.  When the awaiting task is itself cancelled, its children are
// aborted too.  An I/O operation cannot be given back: a read in a losing
// branch that completed in the same instant as the winner has its bytes
// dropped (as with any cancelled read).  When every byte matters, bound a
// read with the I/O form `Timeout(Read(fd, buf, n), d)` of executor/io.h:
// the kernel links the timer to the read, and a read that completed is
// delivered.
//
// Results: an awaitable yielding void is represented by std::monostate.
// WhenAny yields std::variant<R...> whose index() is the winner's position
// (types may repeat); WhenAll yields std::tuple<R...>.  An exception thrown
// by a child is rethrown to the awaiting task (WhenAll: the first one;
// WhenAny: if the child that threw was the first to finish).
//
// Requires: awaitables are movable (every Spindle awaitable is, until it is
// awaited) and do not refer to locals that the awaiting task destroys
// before the combinator returns.
// Cost: one child task (one frame allocation) per awaitable, plus one
// shared state: fine for events, not meant for a per-message hot loop.

#ifndef SPINDLE_EXECUTOR_SELECT_H_
#define SPINDLE_EXECUTOR_SELECT_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "executor/internal/awaitable.h"
#include "executor/io.h"
#include "executor/local_executor.h"
#include "executor/notify.h"
#include "executor/task.h"

namespace spindle {
namespace executor_internal {

// What `co_await a` yields, with void as std::monostate, by value.
template <typename A>
using AwaitValue = std::conditional_t<
    std::is_void_v<decltype(AwaiterOf(std::declval<A&&>()).await_resume())>,
    std::monostate,
    std::remove_cvref_t<
        decltype(AwaiterOf(std::declval<A&&>()).await_resume())>>;

template <typename A>
Task<AwaitValue<A>> AwaitAsValue(A a) {
  if constexpr (std::is_void_v<
                    decltype(AwaiterOf(std::declval<A&&>()).await_resume())>) {
    co_await std::move(a);
    co_return std::monostate{};
  } else {
    co_return co_await std::move(a);
  }
}

// The children of a combinator, in the state it shares with them.  A
// child that decides the outcome (WhenAny's first, WhenAll's first error)
// aborts its siblings at once, in the same poll: they all run on one
// executor, so a sibling that was handed something meanwhile (a message,
// a permit) and is queued, not yet resumed, is cancelled before it can
// resume with it, and its awaiter gives it back.
template <size_t N>
struct Children {
  std::array<JoinHandle<>, N> handles;
  void AbortAllBut(size_t me) noexcept {
    for (size_t i = 0; i < N; ++i) {
      if (i != me) handles[i].Abort();
    }
  }
};

// The combinator's hold on its children: aborts them if its frame is
// destroyed (its task cancelled) before it joined them.
template <size_t N>
struct AbortChildrenOnExit {
  Children<N>* c;
  ~AbortChildrenOnExit() {
    for (JoinHandle<>& h : c->handles) h.Abort();
  }
};

// Awaits a handle, whatever the child ended with (its error is reported
// through the combinator's state, not here).
inline Task<bool> JoinQuietly(JoinHandle<>* h) {
  try {
    co_await *h;
  } catch (...) {
  }
  co_return true;
}

// Aborts every child and waits until each has finished or been cancelled.
template <size_t N>
Task<> AbortAndJoin(Children<N>* c) {
  for (JoinHandle<>& h : c->handles) h.Abort();
  for (JoinHandle<>& h : c->handles) {
    if (!h.valid()) continue;
    (void)co_await JoinQuietly(&h);
  }
}

template <typename V, size_t N>
struct AnyState : Children<N> {
  std::atomic<bool> decided{false};
  std::optional<V> value;
  std::exception_ptr error;
  Notify done;
};

template <size_t I, typename S, typename A>
Task<> AnyChild(std::shared_ptr<S> s, A a) {
  std::exception_ptr error;
  try {
    auto v = co_await AwaitAsValue(std::move(a));
    if (!s->decided.exchange(true, std::memory_order_acq_rel)) {
      s->value.emplace(std::in_place_index<I>, std::move(v));
      s->AbortAllBut(I);
      s->done.NotifyOne();
    }
    co_return;
  } catch (...) {
    error = std::current_exception();
  }
  if (!s->decided.exchange(true, std::memory_order_acq_rel)) {
    s->error = error;
    s->AbortAllBut(I);
    s->done.NotifyOne();
  }
}

template <typename... R>
struct AllState : Children<sizeof...(R)> {
  std::atomic<size_t> remaining{sizeof...(R)};
  std::atomic<bool> failed{false};
  std::tuple<std::optional<R>...> values;
  std::exception_ptr error;
  Notify done;
};

template <size_t I, typename S, typename A>
Task<> AllChild(std::shared_ptr<S> s, A a) {
  std::exception_ptr error;
  try {
    std::get<I>(s->values).emplace(co_await AwaitAsValue(std::move(a)));
    if (s->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      s->done.NotifyOne();
    }
    co_return;
  } catch (...) {
    error = std::current_exception();
  }
  if (!s->failed.exchange(true, std::memory_order_acq_rel)) {
    s->error = error;
    s->AbortAllBut(I);
    s->done.NotifyOne();
  }
}

// Spawns one child per awaitable on the calling task's executor.
// (They run only once the caller suspends, so every handle is set by the
// time a child can abort its siblings.)  Children run in the caller's
// queue, at its CPU and I/O priorities: they compete as it would.
inline SpawnOptions ChildOptions() {
  TaskHeader* t = CurrentTask();
  SpawnOptions o;
  o.queue = CurrentExecutor()->queue_set().Stats(t->home_queue).id;
  o.priority = t->priority;
  o.io_priority = static_cast<IoPriority>(t->io_priority);
  return o;
}

template <typename S, typename... A, size_t... I>
void SpawnAny(const std::shared_ptr<S>& s, std::index_sequence<I...>,
              A&&... a) {
  LocalExecutor* ex = CurrentExecutor();
  const SpawnOptions o = ChildOptions();
  ((s->handles[I] = ex->Spawn(AnyChild<I>(s, std::move(a)), o)), ...);
}

template <typename S, typename... A, size_t... I>
void SpawnAll(const std::shared_ptr<S>& s, std::index_sequence<I...>,
              A&&... a) {
  LocalExecutor* ex = CurrentExecutor();
  const SpawnOptions o = ChildOptions();
  ((s->handles[I] = ex->Spawn(AllChild<I>(s, std::move(a)), o)), ...);
}

}  // namespace executor_internal

// The first of the awaitables to finish: its position is the variant's
// index().  The others are aborted and gone before this returns.
template <typename... A>
Task<std::variant<executor_internal::AwaitValue<A>...>> WhenAny(A... a) {
  static_assert(sizeof...(A) >= 1, "WhenAny needs at least one awaitable");
  using V = std::variant<executor_internal::AwaitValue<A>...>;
  auto s = std::make_shared<executor_internal::AnyState<V, sizeof...(A)>>();
  executor_internal::AbortChildrenOnExit<sizeof...(A)> guard{s.get()};
  executor_internal::SpawnAny(s, std::index_sequence_for<A...>{},
                              std::move(a)...);
  co_await s->done.Notified();
  co_await executor_internal::AbortAndJoin<sizeof...(A)>(s.get());
  if (s->error) std::rethrow_exception(s->error);
  co_return std::move(*s->value);
}

// Every awaitable's result, once all have finished.  If one throws, the
// others are aborted and the exception is rethrown.
template <typename... A>
Task<std::tuple<executor_internal::AwaitValue<A>...>> WhenAll(A... a) {
  using S = executor_internal::AllState<executor_internal::AwaitValue<A>...>;
  auto s = std::make_shared<S>();
  executor_internal::AbortChildrenOnExit<sizeof...(A)> guard{s.get()};
  if constexpr (sizeof...(A) > 0) {
    executor_internal::SpawnAll(s, std::index_sequence_for<A...>{},
                                std::move(a)...);
    co_await s->done.Notified();
    co_await executor_internal::AbortAndJoin<sizeof...(A)>(s.get());
  }
  if (s->error) std::rethrow_exception(s->error);
  co_return std::apply(
      [](auto&... v) {
        return std::tuple<executor_internal::AwaitValue<A>...>(
            std::move(*v)...);
      },
      s->values);
}

namespace executor_internal {
template <typename V>
using TimeoutResult = std::conditional_t<std::is_same_v<V, std::monostate>,
                                         absl::Status, absl::StatusOr<V>>;
absl::Status TimedOut(std::chrono::nanoseconds d);
absl::Status NoTimer();

// The first awaitable's value from a WhenAny that it won, as a
// TimeoutResult (Timeout, WithCancellation).
template <typename V, typename Variant>
TimeoutResult<V> FirstValue(Variant& r) {
  if constexpr (std::is_same_v<V, std::monostate>) {
    return absl::OkStatus();
  } else {
    return std::move(std::get<0>(r));
  }
}
}  // namespace executor_internal

// `a`'s result, or DEADLINE_EXCEEDED once `d` has passed first (then `a`
// is aborted and gone).  FAILED_PRECONDITION on an executor without a
// reactor (no timer).  For an awaitable yielding void: an absl::Status.
template <typename A>
Task<executor_internal::TimeoutResult<executor_internal::AwaitValue<A>>>
Timeout(std::chrono::nanoseconds d, A a) {
  auto r = co_await WhenAny(std::move(a), SleepFor(d));
  if (r.index() == 1) {
    if (std::get<1>(r) == -ENOTSUP) co_return executor_internal::NoTimer();
    co_return executor_internal::TimedOut(d);
  }
  co_return executor_internal::FirstValue<executor_internal::AwaitValue<A>>(r);
}

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_SELECT_H_
