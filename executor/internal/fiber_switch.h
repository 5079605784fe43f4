// executor/internal/fiber_switch.h: the two halves of a fiber switch, inline
// (executor/fiber.cc has the entry, the end and cancellation).
//
// Why inline.  The jump (executor/internal/context_jump.h) is entered with
// a call and left with an indirect jump, so the CPU's return-address
// predictor keeps the calls of the stack that was left: every `ret` taken
// right after a switch is mispredicted (measured here: a raw round trip
// costs ~11 ns, and ~28 ns once each side returns through one function
// after its switch).
// So the run loop switches in from its own frame (RunSlice) and
// this_fiber::Yield switches out from the caller's, and neither side
// returns through a frame of its own after the jump.
//
// Per switch, besides the jump: the C++ runtime's caught-exception state is
// swapped (so a fiber may suspend inside a catch block while other code
// throws on the thread): each side keeps its own in a local of its frame
// across the jump and puts it back when the jump returns.  The fiber's side
// reaches the thread's state through FiberContext::eh_globals, which the
// scheduler's side sets at each switch in: a suspended fiber may be
// resumed on another thread (unwound by an executor destroyed there), and
// a thread-local read inline on the fiber's side could reuse the address
// computed on the first thread before the switch.
// `tl_fiber` names the running fiber, and the sanitizers are told
// (executor/internal/sanitizers.h).

#ifndef SPINDLE_EXECUTOR_INTERNAL_FIBER_SWITCH_H_
#define SPINDLE_EXECUTOR_INTERNAL_FIBER_SWITCH_H_

#include "executor/fiber_task.h"
#include "executor/internal/context_jump.h"
#include "executor/internal/fiber_stack.h"
#include "executor/internal/sanitizers.h"

namespace spindle::executor_internal {

// The fiber running on this thread (null on the thread's own stack).  Not
// tl_task: a cancelled fiber unwinds outside its own poll.  Read before a
// switch, never cached across one.
extern constinit thread_local FiberContext* tl_fiber;

// The C++ runtime's per-thread exception globals (libstdc++ and libc++abi
// lay them out alike): the chain of caught exceptions and the count of
// uncaught ones.
struct EhGlobals {
  void* caught;
  unsigned int uncaught;
};

// Cached per thread: the runtime's own accessor goes through
// __tls_get_addr (a shared library's thread-local), this does not.
extern constinit thread_local EhGlobals* tl_eh_globals;
EhGlobals* FetchEhGlobals() noexcept;

inline EhGlobals* ThreadEhGlobals() noexcept {
  EhGlobals* g = tl_eh_globals;
  return g != nullptr ? g : FetchEhGlobals();
}

// Whether a finished fiber's entry stays parked on its stack for the next
// fiber (executor/internal/fiber_stack.h).  Not under the sanitizers: they
// track each fiber's stack from its first switch to its last (ASan's fake
// stack, TSan's fiber object), which a parked entry would outlive.
#if defined(SPINDLE_ASAN) || defined(SPINDLE_TSAN)
inline constexpr bool kParkFiberEntries = false;
#else
inline constexpr bool kParkFiberEntries = true;
#endif

// The first resume: a stack (from the cache, or mapped) and the initial
// context.  False if no stack could be had: the fiber has ended, failed
// with std::bad_alloc at its JoinHandle.
bool StartFiber(FiberContext* f) noexcept;

// The fiber's initial context on its new stack (the entry, not yet run).
void MakeFiberContext(FiberContext* f) noexcept;

// Gives the fiber stack `s`, and starts it at the entry parked on it
// (`parked`), or at a fresh context when none is.
inline void UseFiberStack(FiberContext* f, const FiberStack& s,
                          void* parked) noexcept {
  f->stack_base = s.base;
  f->stack_size = static_cast<uint32_t>(s.size);
  if (kParkFiberEntries && parked != nullptr) [[likely]] {
    f->self = parked;  // an entry waiting at the stack's top
  } else {
    MakeFiberContext(f);
  }
}

// StartFiber, with its common case inline: the spare stack is taken over,
// with the last fiber's entry parked on it.
inline bool BeginFiber(FiberContext* f) noexcept {
  if constexpr (kParkFiberEntries) {
    FiberStack s;
    void* parked;
    if (TakeSpareStack(StackMappingSize(f->stack_size), &s, &parked))
        [[likely]] {
      f->started = true;
      UseFiberStack(f, s, parked);
      return true;
    }
  }
  return StartFiber(f);
}

// After a switch in that ended the fiber: its stack goes back to the cache
// at once (the spare slot, inline, when it is free), with the entry parked
// on it.  The stack is then the next fiber's to start, and DestroyFiber
// finds none to release.
inline void EndFiberStack(FiberContext* f) noexcept {
  const FiberStack s = f->stack();
  void* parked = kParkFiberEntries ? f->self : nullptr;
  f->stack_base = nullptr;
  f->stack_size = 0;
  if (!PutSpareStack(s, parked)) [[unlikely]] ReleaseStack(s, parked);
}

// Scheduler side: runs the fiber (started: it has a stack and a context)
// until it switches out or ends.
__attribute__((always_inline)) inline void SwitchIn(FiberContext* f) noexcept {
  FiberContext* const outer = tl_fiber;  // non-null: a fiber cancels one
  tl_fiber = f;
  EhGlobals* g = ThreadEhGlobals();
  const EhGlobals mine = *g;
  // The fiber's side reaches this thread's state through it, not through
  // a thread-local of its own (see the top comment).
  f->eh_globals = g;
  void* fake = nullptr;
#if defined(SPINDLE_ASAN)
  // Only here: the page size is a function-local static, whose guard would
  // otherwise be tested twice per switch for arguments nobody reads.
  AsanStartSwitch(&fake, f->stack_base + StackPageSize(),
                  f->stack().usable());
#endif
#if defined(SPINDLE_TSAN)
  f->tsan_caller = TsanCurrentFiber();
  TsanSwitchTo(f->tsan_fiber);
#endif
  const ContextTransfer back = JumpContext(f->self, f);
  f->self = back.fctx;
  AsanFinishSwitch(fake, nullptr, nullptr);
  *g = mine;
  tl_fiber = outer;
}

// One poll of a fiber task, from the caller's frame (the run loop's, and
// ResumeFiber's): starts it if it has not started, switches it in, and
// returns its stack once it has ended.
__attribute__((always_inline)) inline void PollFiber(FiberContext* f) noexcept {
  if (!f->started && !BeginFiber(f)) [[unlikely]] return;
  SwitchIn(f);
  if (f->finished) EndFiberStack(f);
}

// Fiber side: back to whoever switched it in, until it is switched in again.
__attribute__((always_inline)) inline void SwitchOut(
    FiberContext* f) noexcept {
  const EhGlobals mine = *f->eh_globals;  // this fiber's, on its stack
#if defined(SPINDLE_ASAN)
  AsanStartSwitch(&f->asan_fake, f->asan_caller_bottom, f->asan_caller_size);
#endif
#if defined(SPINDLE_TSAN)
  TsanSwitchTo(f->tsan_caller);
#endif
  const ContextTransfer in = JumpContext(f->caller, nullptr);
  f->caller = in.fctx;
#if defined(SPINDLE_ASAN)
  AsanFinishSwitch(f->asan_fake, &f->asan_caller_bottom,
                   &f->asan_caller_size);
#endif
  *f->eh_globals = mine;  // the (maybe other) thread it is back on
}

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_FIBER_SWITCH_H_
