// executor/internal/context_jump.cc: the x86-64 (System V) stack switch
// (see context_jump.h).  Elsewhere Boost.Context's is used and this file is
// empty.
//
// spindle_jump_context(to = rdi, data = rsi):
//   push the callee-saved registers (the return address is already below
//   them: the call's), save the stack pointer as this context (rax), load
//   `to` as the stack pointer, pop its registers and the address it left
//   at, and jump there with rax = the context left, rdx = data: the two
//   words of the ContextTransfer that the resumed side's call returns (or,
//   for a fresh context, that the trampoline passes to its entry).
//   No unwind information: an unwinder stops here, as it must, since the
//   stack changes halfway through.
//
// spindle_context_trampoline: where a fresh context (MakeContext) first
//   goes.  rbx holds the entry; the transfer moves to the argument
//   registers.  Its unwind information says the return address is
//   undefined: the outermost frame of the fiber's stack.  The entry never
//   returns (ud2 if it did).

#include "executor/internal/context_jump.h"

#if SPINDLE_OWN_CONTEXT_JUMP

asm(R"(
    .pushsection .text
    .p2align 4
    .globl spindle_jump_context
    .type spindle_jump_context, @function
spindle_jump_context:
    pushq %rbp
    pushq %rbx
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    movq %rsp, %rax
    movq %rdi, %rsp
    popq %r12
    popq %r13
    popq %r14
    popq %r15
    popq %rbx
    popq %rbp
    popq %r8
    movq %rsi, %rdx
    jmpq *%r8
    .size spindle_jump_context, .-spindle_jump_context

    .p2align 4
    .globl spindle_context_trampoline
    .type spindle_context_trampoline, @function
spindle_context_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %rax, %rdi
    movq %rdx, %rsi
    callq *%rbx
    ud2
    .cfi_endproc
    .size spindle_context_trampoline, .-spindle_context_trampoline
    .popsection
)");

#endif
