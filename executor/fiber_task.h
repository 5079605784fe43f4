// executor/fiber_task.h: what a fiber task is made of.  Users reach for
// `SpawnFiber` (on LocalExecutor, Spawner, Runtime and RuntimeSpawner) and
// `FiberOptions` here, and for `this_fiber::` in executor/fiber.h.
//
// A fiber is a task with its own stack: its body is a plain callable that
// may suspend at any call depth (this_fiber::Await, Yield, SleepFor).  To
// the run loop, the queues, tiers, hooks, stats, Abort and JoinHandle it is
// a task like any other: a TaskHeader whose resume entry switches to the
// fiber's stack and whose destroy entry unwinds it.
//
// Memory layout of one fiber task (one allocation from the frame allocator,
// plus its stack):
//
//   [ FiberContext ][ TaskCell<T>: TaskHeader | result slot ][ callable ]
//
// The context sits right in front of the header, so the resume and destroy
// entries find it at a fixed offset whatever T is.  The stack is mapped
// apart (executor/internal/fiber_stack.h) when the fiber first runs and goes
// back to its cache as soon as the fiber ends; the cell lives on while a
// JoinHandle holds it.

#ifndef SPINDLE_EXECUTOR_FIBER_TASK_H_
#define SPINDLE_EXECUTOR_FIBER_TASK_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "executor/frame_allocator.h"
#include "executor/internal/fiber_stack.h"
#include "executor/internal/sanitizers.h"
#include "executor/task.h"

namespace spindle {

// How a fiber is made.
struct FiberOptions {
  // Usable stack bytes, rounded up to whole pages; a guard page below them
  // faults on overflow.  The fiber's frames begin 64 bytes to ~2 KiB below
  // the top (the stack cache's links, and an offset per stack that spreads
  // the stacks' hot lines over the cache).  Valid: kMinFiberStack ..
  // kMaxFiberStack.
  size_t stack_size = size_t{64} << 10;  // 64 KiB
};

inline constexpr size_t kMinFiberStack = size_t{8} << 10;  // 8 KiB
inline constexpr size_t kMaxFiberStack = size_t{1} << 30;  // 1 GiB

// OK, or InvalidArgument naming the bad value and the valid range.
// SpawnFiber with options that fail this aborts the process with the same
// message (a spawn has no status to return).
absl::Status ValidateFiberOptions(const FiberOptions& options);

// What a fiber's callable returns: the T of its JoinHandle<T>.
template <typename F>
using FiberResult = std::invoke_result_t<std::decay_t<F>&>;

namespace executor_internal {

struct FiberContext;
struct EhGlobals;

// What a fiber's callable type provides (one static table per type).
struct FiberOps {
  void (*body)(FiberContext*) noexcept;  // runs the callable
  void (*drop)(FiberContext*) noexcept;  // destroys it, unrun
  // Ends a fiber that could not start (no stack): the exception is its
  // result, the callable is dropped.
  void (*fail)(FiberContext*, std::exception_ptr) noexcept;
};

// A fiber's switching state, in front of its TaskHeader.  Owner-thread
// only, like the header's run_state.  48 bytes outside the sanitizer
// builds: with a one-pointer callable a fiber is a 320-byte block (five
// cache lines), as a small coroutine task is.  The C++ runtime's
// exception state of a fiber that is switched out (it may suspend inside
// a catch block) is kept on the fiber's own stack, by its side of the
// switch (executor/internal/fiber_switch.h).
struct alignas(16) FiberContext {
  void* self = nullptr;    // the fiber's saved context while it is out
  void* caller = nullptr;  // the scheduler's saved context while it runs
  // The stack's mapping (its guard page first); null until the first
  // resume, when it is mapped (or taken from the cache), and again once
  // the fiber has ended and the stack is back in the cache.
  char* stack_base = nullptr;
  const FiberOps* ops = nullptr;
  // The exception state of the thread the fiber runs on (its C++
  // runtime's per-thread globals, executor/internal/fiber_switch.h), set
  // by the scheduler's side at each switch in.
  EhGlobals* eh_globals = nullptr;
  // The mapping's bytes (guard page included) once mapped; before, the
  // usable bytes asked for (at most kMaxFiberStack).
  uint32_t stack_size = 0;
  bool started = false;
  bool finished = false;   // the body returned (or unwound)
  bool unwinding = false;  // cancelled: the next resume throws FiberUnwind
  // What the sanitizers track per fiber (executor/internal/sanitizers.h):
  // present only in their builds, so that a fiber's block stays small (a
  // burst of spawns writes all of it).
#if defined(SPINDLE_ASAN)
  void* asan_fake = nullptr;
  const void* asan_caller_bottom = nullptr;
  size_t asan_caller_size = 0;
#endif
#if defined(SPINDLE_TSAN)
  void* tsan_fiber = nullptr;
  void* tsan_caller = nullptr;
#endif

  FiberStack stack() const noexcept {
    return FiberStack{stack_base, stack_size};
  }
};
static_assert(kMaxFiberStack + (size_t{1} << 20) <= UINT32_MAX,
              "FiberContext::stack_size holds a whole mapping");
#if !defined(SPINDLE_ASAN) && !defined(SPINDLE_TSAN)
static_assert(sizeof(FiberContext) == 48 || sizeof(void*) != 8,
              "a fiber's block grows a cache line past 48 bytes here");
#endif

inline TaskHeader* HeaderOfFiber(FiberContext* f) noexcept {
  return reinterpret_cast<TaskHeader*>(reinterpret_cast<char*>(f) +
                                       sizeof(FiberContext));
}
inline FiberContext* FiberOfHeader(TaskHeader* h) noexcept {
  return reinterpret_cast<FiberContext*>(reinterpret_cast<char*>(h) -
                                         sizeof(FiberContext));
}

// Thrown inside a cancelled fiber from its suspension point, to unwind its
// stack (destructors run).  Not a std::exception: a handler for those does
// not catch it.  A `catch (...)` that swallows it gets it again at the
// fiber's next suspension.
struct FiberUnwind {};

// The resume and destroy entries of every fiber task.
void ResumeFiber(TaskHeader* h) noexcept;
void DestroyFiber(TaskHeader* h) noexcept;

// Aborts with the validation message when `options` are invalid.
void CheckFiberOptions(const FiberOptions& options) noexcept;

inline constexpr size_t RoundUp(size_t n, size_t a) noexcept {
  return (n + a - 1) / a * a;
}

template <typename T, typename Fn>
struct FiberLayout {
  static_assert(alignof(TaskCell<T>) <= 16 && alignof(Fn) <= 16,
                "a fiber's result and callable must not need more than "
                "16-byte alignment");
  static constexpr size_t kCell = sizeof(FiberContext);
  static constexpr size_t kFn = RoundUp(kCell + kCellSize<T>, alignof(Fn));
  static constexpr size_t kTotal = kFn + sizeof(Fn);
  static TaskCell<T>* Cell(FiberContext* f) noexcept {
    return static_cast<TaskCell<T>*>(HeaderOfFiber(f));
  }
  static Fn* Callable(FiberContext* f) noexcept {
    return std::launder(
        reinterpret_cast<Fn*>(reinterpret_cast<char*>(f) + kFn));
  }
};

// Runs on the fiber's stack: the callable, its result or exception, then
// the callable's destruction.  Returns to the fiber's entry, which ends it.
template <typename T, typename Fn>
void FiberBody(FiberContext* f) noexcept {
  using L = FiberLayout<T, Fn>;
  TaskCell<T>* cell = L::Cell(f);
  Fn* fn = L::Callable(f);
  try {
    if constexpr (std::is_void_v<T>) {
      std::invoke(*fn);
    } else {
      cell->result.Set(std::invoke(*fn));
    }
  } catch (const FiberUnwind&) {
    // Cancelled: the stack is unwound; the task reports kCancelled.
  } catch (...) {
    cell->result.error = std::current_exception();
    cell->threw = true;
  }
  fn->~Fn();
}

template <typename T, typename Fn>
void DropCallable(FiberContext* f) noexcept {
  FiberLayout<T, Fn>::Callable(f)->~Fn();
}

template <typename T, typename Fn>
void FailFiber(FiberContext* f, std::exception_ptr e) noexcept {
  TaskCell<T>* cell = FiberLayout<T, Fn>::Cell(f);
  cell->result.error = std::move(e);
  cell->threw = true;
  FiberLayout<T, Fn>::Callable(f)->~Fn();
}

template <typename T>
void FreeFiberCell(TaskHeader* h) noexcept {
  FiberContext* f = FiberOfHeader(h);
  auto* cell = static_cast<TaskCell<T>*>(h);
  const size_t size = cell->alloc_size;
  cell->~TaskCell<T>();
  f->~FiberContext();
  FreeFrame(f, size);
}

template <typename T, typename Fn>
inline constexpr FiberOps kFiberCallableOps{
    &FiberBody<T, Fn>, &DropCallable<T, Fn>, &FailFiber<T, Fn>};

// The entries of a fiber task returning T.
template <typename T>
inline constexpr TaskOps kFiberOps{&ResumeFiber, &DestroyFiber,
                                   &FreeFiberCell<T>, &ErrorOfCell<T>};

// Makes a fiber task that runs `fn` (not yet spawned): the cell, with one
// reference (the body's).  Throws std::bad_alloc when memory cannot be had.
// The stack is mapped (or taken from the cache) when the fiber first runs,
// so a burst of spawns holds no stacks until they run; a fiber that cannot
// get one ends failed, with std::bad_alloc at its JoinHandle.
template <typename F>
TaskCell<FiberResult<F>>* MakeFiber(F&& fn, const FiberOptions& options) {
  using T = FiberResult<F>;
  static_assert(!std::is_reference_v<T>,
                "a fiber's callable returns a value (its JoinHandle holds "
                "it), not a reference");
  using Fn = std::decay_t<F>;
  using L = FiberLayout<T, Fn>;
  if (options.stack_size < kMinFiberStack ||
      options.stack_size > kMaxFiberStack) [[unlikely]] {
    CheckFiberOptions(options);
  }
  void* mem = AllocateFrame(L::kTotal);
  auto* f = ::new (mem) FiberContext;
  auto* cell = ::new (static_cast<void*>(HeaderOfFiber(f))) TaskCell<T>;
  cell->alloc_size = static_cast<uint32_t>(L::kTotal);
  cell->ops = &kFiberOps<T>;
  cell->fiber = true;
  f->ops = &kFiberCallableOps<T, Fn>;
  f->stack_size = static_cast<uint32_t>(options.stack_size);
  try {
    ::new (static_cast<void*>(L::Callable(f))) Fn(std::forward<F>(fn));
  } catch (...) {
    FreeFiberCell<T>(cell);
    throw;
  }
  return cell;
}

}  // namespace executor_internal
}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_FIBER_TASK_H_
