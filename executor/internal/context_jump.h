// executor/internal/context_jump.h: the stack switch under every fiber
// switch (executor/internal/fiber_switch.h): a saved context is a stack
// pointer, and a jump saves the current one and resumes another.
//
//   JumpContext(to, data): saves the callee-saved registers on the current
//     stack, resumes the context `to`, and hands it {this context, data}.
//     Returns when some later jump resumes this context: with that jump's
//     {its context, its data}.
//   MakeContext(top, size, entry): a context that, when first jumped to,
//     calls entry({the jumper's context, data}) on the stack below `top`.
//     `entry` never returns (it jumps away for the last time).
//
// On x86-64 (System V, ELF) the jump is Spindle's own
// (context_jump.cc): six pushes, the stack pointer swap, six pops and an
// indirect jump.  Elsewhere it is Boost.Context's jump_fcontext and
// make_fcontext, which work the same way.  Ours differs in one respect:
// Boost.Context also saves and reloads the SSE control/status register
// (MXCSR) and the x87 control word at every jump.  The reload costs ~3.5 ns
// of a 6.9 ns round trip here, and whenever the two sides' MXCSR differ,
// even only in a sticky exception flag (any inexact floating-point result
// sets one), it costs ~50 ns per jump: a round trip measured 102 ns after
// one printf of a double on one side.  Here the floating-point environment
// (rounding mode, exception flags, denormal modes) is the thread's, shared
// by every task that runs on it, exactly as for coroutine tasks: a fiber
// that changes the rounding mode puts it back before it suspends.
//
// The jump leaves with an indirect jump, not a return, so the CPU's
// return-address predictor is not consumed (fiber_switch.h says why that
// matters).  A fresh context starts in a trampoline whose unwind
// information marks the end of the stack's call chain, so debuggers and
// stack traces stop there.

#ifndef SPINDLE_EXECUTOR_INTERNAL_CONTEXT_JUMP_H_
#define SPINDLE_EXECUTOR_INTERNAL_CONTEXT_JUMP_H_

#include <cstddef>
#include <cstdint>

// Not with control-flow protection (-fcf-protection defines __CET__): the
// jump neither switches a shadow stack nor lands on endbr64 (it jumps to
// return addresses), so a CET build takes Boost.Context's.
#if defined(__x86_64__) && defined(__ELF__) && !defined(_WIN32) && \
    !defined(__CET__)
#define SPINDLE_OWN_CONTEXT_JUMP 1
#else
#define SPINDLE_OWN_CONTEXT_JUMP 0
#include "boost/context/detail/fcontext.hpp"
#endif

namespace spindle::executor_internal {

#if SPINDLE_OWN_CONTEXT_JUMP

// What a jump hands the context it resumes (two registers: rax, rdx).
struct ContextTransfer {
  void* fctx;  // the context that jumped (resume it to go back)
  void* data;
};

extern "C" ContextTransfer spindle_jump_context(void* to,
                                                void* data) noexcept;
extern "C" void spindle_context_trampoline() noexcept;

using ContextEntry = void (*)(ContextTransfer) noexcept;

inline ContextTransfer JumpContext(void* to, void* data) noexcept {
  return spindle_jump_context(to, data);
}

// The saved frame a jump pops: r12, r13, r14, r15, rbx, rbp, then where to
// go.  A fresh one goes to the trampoline, which calls rbx (the entry)
// with the transfer; rbp 0 ends frame-pointer walks.
inline void* MakeContext(char* top, size_t /*size*/,
                         ContextEntry entry) noexcept {
  const uintptr_t sp = reinterpret_cast<uintptr_t>(top) & ~uintptr_t{15};
  // Once the seven words are popped the stack pointer is `sp`, 16-byte
  // aligned, as a call (the trampoline's) needs.
  void** frame = reinterpret_cast<void**>(sp) - 7;
  frame[0] = nullptr;  // r12
  frame[1] = nullptr;  // r13
  frame[2] = nullptr;  // r14
  frame[3] = nullptr;  // r15
  frame[4] = reinterpret_cast<void*>(entry);  // rbx
  frame[5] = nullptr;                         // rbp
  frame[6] = reinterpret_cast<void*>(&spindle_context_trampoline);
  return frame;
}

#else  // Boost.Context

using ContextTransfer = boost::context::detail::transfer_t;
using ContextEntry = void (*)(ContextTransfer) noexcept;

inline ContextTransfer JumpContext(void* to, void* data) noexcept {
  return boost::context::detail::jump_fcontext(to, data);
}

inline void* MakeContext(char* top, size_t size, ContextEntry entry) noexcept {
  return boost::context::detail::make_fcontext(top, size, entry);
}

#endif

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_CONTEXT_JUMP_H_
