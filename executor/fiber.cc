// executor/fiber.cc: switching to and from fibers, their entry, their end
// and their cancellation (see executor/fiber.h and fiber_task.h).
//
// Switching.  The run loop resumes a fiber through its TaskHeader's resume
// entry (ResumeFiber): SwitchIn jumps to the fiber's saved context; the
// fiber runs until it suspends (SwitchOut jumps back to the saved caller)
// or its body ends (the entry's jump out, where the entry then waits,
// parked on the stack, for the next fiber to take the stack).
// JumpContext (executor/internal/context_jump.h) does the jump: it saves
// the callee-saved registers on the current stack and hands the other side
// the saved context.
//
// Per switch, besides the jump: the C++ runtime's caught-exception state is
// swapped (so a fiber may suspend inside a catch block while other fibers
// throw), and the sanitizers are told (executor/internal/sanitizers.h).
//
// Cancellation.  DestroyFiber of a fiber that started and did not finish
// sets `unwinding` and switches it in: its suspension point throws
// FiberUnwind, the body's handler catches it once the stack is unwound,
// and the entry ends the fiber as for a return.  A never-started fiber's
// callable is destroyed without running.

#include <cxxabi.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "executor/fiber.h"
#include "executor/internal/fiber_switch.h"
#include "executor/internal/sanitizers.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"

namespace spindle {

absl::Status ValidateFiberOptions(const FiberOptions& options) {
  if (options.stack_size < kMinFiberStack ||
      options.stack_size > kMaxFiberStack) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FiberOptions::stack_size ", options.stack_size,
        " is out of range: valid is ", kMinFiberStack, " (8 KiB) to ",
        kMaxFiberStack, " (1 GiB) bytes"));
  }
  return absl::OkStatus();
}

namespace executor_internal {

[[noreturn]] void ThrowUnwind() {
  // Suspending while the stack unwinds (a destructor that waits) cannot
  // throw again: that would terminate without saying why.
  if (std::uncaught_exceptions() > 0) {
    FatalMisuse(
        "a cancelled fiber suspended while its stack was unwinding (a "
        "destructor that awaits, yields or sleeps): cancellation cannot "
        "wait");
  }
  throw FiberUnwind{};
}

constinit thread_local FiberContext* tl_fiber = nullptr;
constinit thread_local EhGlobals* tl_eh_globals = nullptr;

EhGlobals* FetchEhGlobals() noexcept {
  tl_eh_globals = reinterpret_cast<EhGlobals*>(abi::__cxa_get_globals());
  return tl_eh_globals;
}

namespace {

// The first instruction a fiber runs: its body, then the jump out.  Where
// entries park, that jump is where the entry waits for the next fiber to
// take the stack: the next jump in resumes it with that fiber's context.
[[noreturn]] void FiberEntry(ContextTransfer in) noexcept {
  for (;;) {
    auto* f = static_cast<FiberContext*>(in.data);
    f->caller = in.fctx;
#if defined(SPINDLE_ASAN)
    AsanFinishSwitch(nullptr, &f->asan_caller_bottom, &f->asan_caller_size);
#endif
    // A new fiber has caught nothing (the scheduler's state is restored by
    // its side of the switch).
    *f->eh_globals = EhGlobals{nullptr, 0};
    f->ops->body(f);
    f->finished = true;
    if (!f->unwinding) HeaderOfFiber(f)->run_state = RunState::kDone;
#if defined(SPINDLE_ASAN)
    // Nothing of this stack is used again: no fake stack to keep.
    AsanStartSwitch(nullptr, f->asan_caller_bottom, f->asan_caller_size);
#endif
#if defined(SPINDLE_TSAN)
    TsanSwitchTo(f->tsan_caller);
#endif
    in = JumpContext(f->caller, nullptr);
    // Resumed only where entries park (EndFiberStack hands the context to
    // the stack cache then), by BeginFiber or StartFiber of the stack's
    // next fiber.
  }
}

}  // namespace

void CheckFiberOptions(const FiberOptions& options) noexcept {
  const absl::Status s = ValidateFiberOptions(options);
  if (!s.ok()) {
    const std::string what = absl::StrCat("SpawnFiber: ", s.message());
    FatalMisuse(what.c_str());
  }
}

namespace {

// Stack tops are page-aligned, so the hot top lines of many fibers' stacks
// would all fall in the same cache sets; starting each a few lines lower
// (cycling through kColors offsets) spreads them.
constexpr size_t kColors = 32;
constinit thread_local size_t tl_color = 0;

}  // namespace

bool StartFiber(FiberContext* f) noexcept {
  f->started = true;
  void* parked = nullptr;
  FiberStack s;
  try {
    s = AcquireStack(f->stack_size, &parked);
  } catch (...) {
    f->ops->fail(f, std::current_exception());
    f->finished = true;
    HeaderOfFiber(f)->run_state = RunState::kDone;
    return false;
  }
  UseFiberStack(f, s, parked);
  return true;
}

void MakeFiberContext(FiberContext* f) noexcept {
  const size_t below = kStackTopReserve + (tl_color++ % kColors) * 64;
  f->self = MakeContext(f->stack().top() - below, f->stack().usable() - below,
                        &FiberEntry);
#if defined(SPINDLE_TSAN)
  f->tsan_fiber = TsanCreateFiber();
#endif
}

void ResumeFiber(TaskHeader* h) noexcept {
  PollFiber(FiberOfHeader(h));
}

namespace {

// A started fiber that has not ended: switched in to unwind its stack (its
// suspension point throws FiberUnwind), which ends it.  Out of line: the
// switch's saved registers would otherwise cost every fiber's destruction.
[[gnu::noinline]] void UnwindFiber(FiberContext* f) noexcept {
  f->unwinding = true;
  SwitchIn(f);
  if (!f->finished) {
    FatalMisuse(
        "a cancelled fiber suspended instead of unwinding (a catch (...) "
        "that swallowed the cancellation and waited again)");
  }
}

}  // namespace

void DestroyFiber(TaskHeader* h) noexcept {
  FiberContext* f = FiberOfHeader(h);
  if (!f->started) [[unlikely]] {
    f->ops->drop(f);
  } else if (!f->finished) [[unlikely]] {
    UnwindFiber(f);
  }
  // A fiber that ended in a poll released its stack then (EndFiberStack);
  // one unwound here has just ended, leaving its entry parked.
  if (f->stack_base != nullptr) [[unlikely]] EndFiberStack(f);
#if defined(SPINDLE_TSAN)
  TsanDestroyFiber(f->tsan_fiber);
  f->tsan_fiber = nullptr;
#endif
  // The body's reference; may free the cell.
  if (!h->body_ref_kept) [[likely]] ReleaseRef(h);
}

FiberContext* CurrentFiberOrDie(const char* call) noexcept {
  FiberContext* f = tl_fiber;
  if (f == nullptr) {
    const std::string what =
        absl::StrCat(call, " called outside a fiber (spawn one with "
                           "SpawnFiber; a coroutine uses co_await)");
    FatalMisuse(what.c_str());
  }
  return f;
}

[[noreturn]] void AwaitSlow(FiberContext* f) {
  if (f == nullptr) CurrentFiberOrDie("this_fiber::Await");
  ThrowUnwind();
}

[[noreturn]] void YieldSlow(FiberContext* f) {
  if (f == nullptr) CurrentFiberOrDie("this_fiber::Yield");
  ThrowUnwind();
}

FiberStack CurrentFiberStack() noexcept {
  return tl_fiber != nullptr ? tl_fiber->stack() : FiberStack{};
}


}  // namespace executor_internal

namespace this_fiber {

bool InFiber() noexcept { return executor_internal::tl_fiber != nullptr; }

void YieldMaybe() {
  executor_internal::FiberContext* f =
      executor_internal::CurrentFiberOrDie("this_fiber::YieldMaybe");
  if (f->unwinding) executor_internal::ThrowUnwind();
  if (!YieldMaybeAwaiter{}.await_ready()) Yield();
}

void SleepFor(std::chrono::nanoseconds d) {
  (void)executor_internal::CurrentFiberOrDie("this_fiber::SleepFor");
  Await(spindle::SleepFor(d));
}

}  // namespace this_fiber
}  // namespace spindle
