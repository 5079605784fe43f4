// executor/fiber.h: stackful tasks.  Spawn one with `SpawnFiber(callable,
// FiberOptions{...}, SpawnOptions{...})` on a LocalExecutor, a Spawner, a
// Runtime or a RuntimeSpawner; inside it, call `this_fiber::Await(x)` on any
// awaitable (I/O of executor/io.h, a JoinHandle, a Task, sync primitives,
// WhenAny...), `this_fiber::Yield()`, `YieldMaybe()` and `SleepFor(d)`.
//
// A fiber is scheduled exactly like a coroutine task: same queues (EEVDF
// shares), priorities, tiers, hooks, stats, Abort and JoinHandle<T>.  It
// may suspend at any call depth, which a coroutine cannot: a fiber can run
// code that was never written for async (a parser calling back into a
// reader that awaits, a C function).  The price is a stack per fiber (64
// KiB by default, recycled per thread; see FiberOptions) and a stack switch
// per suspension (a few ns).
//
// Cancellation.  Abort of a suspended fiber, and executor shutdown, unwind
// its stack: the suspension point throws an internal exception (not a
// std::exception), so destructors of objects on the stack run and the
// handle reports kCancelled.  Do not swallow it with `catch (...)`: one that
// does gets it again at the fiber's next suspension; a destructor that
// suspends while the stack unwinds aborts the process with a message.
//
// An exception thrown out of the callable reaches the JoinHandle, as for
// coroutines.  A fiber may suspend inside a catch block.
//
// On x86-64 the floating-point environment (rounding mode, exception
// flags) is the thread's, shared with the tasks that run on it, as for
// coroutines: a switch does not save it.  Elsewhere (and in -fcf-protection
// builds) Boost.Context's switch keeps each fiber's own; see
// executor/internal/context_jump.h.
//
// Requires: the this_fiber:: calls only inside a fiber (elsewhere they abort
// the process with a message naming the call).  A fiber stays on the thread
// that first runs it.
//
// Example:
//   auto h = ex->SpawnFiber([&] {
//     char buf[64];
//     auto n = spindle::this_fiber::Await(spindle::Read(fd, buf, 0));
//     spindle::this_fiber::SleepFor(std::chrono::milliseconds(1));
//     return n.value_or(0);
//   });

#ifndef SPINDLE_EXECUTOR_FIBER_H_
#define SPINDLE_EXECUTOR_FIBER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <chrono>
#include <concepts>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "executor/fiber_task.h"
#include "executor/frame_allocator.h"
#include "executor/internal/awaitable.h"
#include "executor/internal/fiber_switch.h"
#include "executor/io.h"
#include "executor/task.h"

namespace spindle {
namespace executor_internal {

// The fiber running on this thread; aborts naming `call` outside one.
// Out of line: a fiber reads thread-local state afresh after every switch.
FiberContext* CurrentFiberOrDie(const char* call) noexcept;

// The calling fiber's stack (empty outside a fiber): for tests and
// diagnostics.
FiberStack CurrentFiberStack() noexcept;

// Throws the cancellation of a fiber being cancelled (aborts the process
// if its stack is already unwinding).
[[noreturn]] void ThrowUnwind();

// Yield outside a fiber (aborts naming the call) or in a cancelled one
// (throws FiberUnwind).
[[noreturn]] void YieldSlow(FiberContext* f);

// Await outside a fiber (aborts naming the call) or in a cancelled one
// (throws FiberUnwind).
[[noreturn]] void AwaitSlow(FiberContext* f);

// The coroutine this_fiber::Await runs: `co_await` needs a coroutine
// handle to give the awaiter, and the awaiter resumes it like a task's.
template <typename R>
struct Bridge {
  using Stored = std::conditional_t<std::is_reference_v<R>,
                                    std::remove_reference_t<R>*, R>;
  struct PromiseBase {
    std::exception_ptr error;
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
    static void* operator new(size_t n) { return AllocateFrame(n); }
    static void operator delete(void* p, size_t n) noexcept {
      FreeFrame(p, n);
    }
  };
  struct ValuePromise : PromiseBase {
    std::optional<Stored> value;
    template <typename U>
    void return_value(U&& u) {
      if constexpr (std::is_reference_v<R>) {
        value = std::addressof(u);
      } else {
        value.emplace(std::forward<U>(u));
      }
    }
  };
  struct VoidPromise : PromiseBase {
    void return_void() noexcept {}
  };
  struct promise_type
      : std::conditional_t<std::is_void_v<R>, VoidPromise, ValuePromise> {
    Bridge get_return_object() noexcept {
      return Bridge{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
  };

  explicit Bridge(std::coroutine_handle<promise_type> h) noexcept : h(h) {}
  Bridge(Bridge&& o) noexcept : h(std::exchange(o.h, {})) {}
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;
  ~Bridge() {
    if (h) h.destroy();
  }

  R Take() {
    promise_type& p = h.promise();
    if (p.error) std::rethrow_exception(p.error);
    if constexpr (std::is_void_v<R>) {
      return;
    } else if constexpr (std::is_reference_v<R>) {
      return static_cast<R>(**p.value);
    } else {
      return std::move(*p.value);
    }
  }

  std::coroutine_handle<promise_type> h;
};

// Forwards to an awaiter that lives in the fiber's frame (already found
// not ready).
template <typename Aw>
struct AwaiterRef {
  Aw* aw;
  bool await_ready() const noexcept { return false; }
  template <typename P>
  decltype(auto) await_suspend(std::coroutine_handle<P> h) {
    return aw->await_suspend(h);
  }
  decltype(auto) await_resume() { return aw->await_resume(); }
};

// An awaiter that says (kFiberDirect) its bool await_suspend uses the
// handle only as the current task's resume point and has the task woken
// through the task protocol (PrepareIo, SuspendForSync, a join): a fiber's
// resume entry switches stacks and never resumes that handle, so the fiber
// calls await_suspend itself, with no bridge frame between.  Not for an
// awaiter that runs a nested coroutine (awaiting a Task): that one bounces
// on the bridge.
template <typename Aw>
concept FiberDirectAwaiter =
    requires { requires Aw::kFiberDirect; } &&
    requires(Aw& a) {
      { a.await_suspend(std::coroutine_handle<>{}) } -> std::same_as<bool>;
    };

template <typename R, typename Aw>
Bridge<R> MakeBridge(Aw* aw) {
  if constexpr (std::is_void_v<R>) {
    co_await AwaiterRef<Aw>{aw};
  } else {
    co_return co_await AwaiterRef<Aw>{aw};
  }
}

}  // namespace executor_internal

namespace this_fiber {

// True when called from a fiber (directly or from a coroutine it awaits).
bool InFiber() noexcept;

// Suspends the calling fiber until `a` completes and returns what
// `co_await a` would (or throws what it would).  Anything a task can
// co_await works.  Cost: nothing more than the awaiter when it is ready;
// otherwise two stack switches, and for an awaiter that is not a
// FiberDirectAwaiter (I/O, joins, the sync primitives are) one small frame
// from the frame allocator.
//
// Always inline: the fiber switches out in the caller's frame, so that no
// `ret` runs right after the switch back in (the CPU's return predictor
// holds the scheduler's calls then, and would miss it: see
// executor/internal/fiber_switch.h).
template <typename A>
[[gnu::always_inline]] inline executor_internal::AwaitResult<A> Await(
    A&& a) {
  using R = executor_internal::AwaitResult<A>;
  // tl_fiber is read here, before any switch, and not after one.
  executor_internal::FiberContext* f = executor_internal::tl_fiber;
  if (f == nullptr || f->unwinding) [[unlikely]] {
    executor_internal::AwaitSlow(f);
  }
  decltype(auto) aw = executor_internal::AwaiterOf(std::forward<A>(a));
  using Aw = std::remove_reference_t<decltype(aw)>;
  if (aw.await_ready()) return aw.await_resume();
  if constexpr (executor_internal::FiberDirectAwaiter<Aw>) {
    // A fiber's resume entry switches stacks and never resumes the resume
    // point: the no-op handle only fills the field.
    if (aw.await_suspend(std::noop_coroutine())) {
      executor_internal::SwitchOut(f);
      if (f->unwinding) [[unlikely]] executor_internal::ThrowUnwind();
    }
    return aw.await_resume();
  } else {
    auto bridge = executor_internal::MakeBridge<R, Aw>(std::addressof(aw));
    // Runs the bridge on this stack as the run loop runs a coroutine task
    // (nested awaits and returns bounce here, so the stack stays flat), and
    // switches out while it waits.  Inline: no return after a switch (see
    // executor/internal/fiber_switch.h).
    executor_internal::TaskHeader* t = executor_internal::HeaderOfFiber(f);
    t->resume_point = bridge.h;
    for (;;) {
      do {
        t->bounce = false;
        t->resume_point.resume();
      } while (t->bounce);
      if (bridge.h.done()) break;
      executor_internal::SwitchOut(f);
      if (f->unwinding) [[unlikely]] executor_internal::ThrowUnwind();
    }
    return bridge.Take();
  }
}

// Re-queues the calling fiber behind the runnable tasks (YieldNow).
// Inline: the switch out happens in the caller's frame (see
// executor/internal/fiber_switch.h).
inline void Yield() {
  executor_internal::FiberContext* f = executor_internal::tl_fiber;
  if (f == nullptr || f->unwinding) [[unlikely]] {
    executor_internal::YieldSlow(f);
  }
  executor_internal::HeaderOfFiber(f)->run_state =
      executor_internal::RunState::kYielded;
  executor_internal::SwitchOut(f);
  if (f->unwinding) [[unlikely]] executor_internal::ThrowUnwind();
}

// Yields only when the fiber's budget or slice is used up, or another queue
// should run first (YieldMaybe).
void YieldMaybe();

// Suspends the calling fiber for `d` (SleepFor).
void SleepFor(std::chrono::nanoseconds d);

}  // namespace this_fiber
}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_FIBER_H_
