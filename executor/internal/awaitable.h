// executor/internal/awaitable.h: what `co_await a` awaits, for code that
// drives an awaitable by hand (select.h's children, this_fiber::Await).

#ifndef SPINDLE_EXECUTOR_INTERNAL_AWAITABLE_H_
#define SPINDLE_EXECUTOR_INTERNAL_AWAITABLE_H_

#include <utility>

namespace spindle::executor_internal {

// The awaiter of `a`: its member or free operator co_await, or `a` itself.
template <typename A>
decltype(auto) AwaiterOf(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(a)); }) {
    return operator co_await(std::forward<A>(a));
  } else {
    return std::forward<A>(a);
  }
}

// What `co_await a` yields (a reference type when the awaiter returns one).
template <typename A>
using AwaitResult = decltype(AwaiterOf(std::declval<A&&>()).await_resume());

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_AWAITABLE_H_
