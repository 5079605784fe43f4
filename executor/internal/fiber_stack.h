// executor/internal/fiber_stack.h: the stacks of fibers (executor/fiber.h).
//
// A stack is one anonymous mapping: a guard page at its low end, then the
// usable bytes.  Overflowing the stack touches the guard page and faults
// (SIGSEGV) instead of writing over whatever lies below.
//
// Guard pages.  Where the kernel has MADV_GUARD_INSTALL (Linux 6.13+), the
// guard is a page-table marker: the mapping stays one VMA, and neighbouring
// stacks merge into one, so 100,000 guarded stacks do not come near the
// process's mapping limit (vm.max_map_count, 65,530 by default).  Elsewhere
// the guard page is mprotect'ed PROT_NONE, which splits the mapping in two:
// about 32,000 live stacks at the default limit.
//
// Recycling.  Released stacks go to a per-thread cache (the releasing
// thread's, which is where the next fiber will probably run): first one
// spare slot (a fiber that ends hands its stack to the next that starts,
// the common case, in a few instructions), then lists per stack size, up to
// kMaxCachedStackBytes each; past that, and at thread exit, they are
// unmapped.  A cached stack keeps its pages: reusing it costs no page
// faults.
//
// Parked entries.  A fiber's entry (executor/fiber.cc) does not leave its
// stack when the fiber ends: it switches out and waits there, at the top
// of the stack, for the next fiber.  The stack goes to the cache with that
// parked context, and the next fiber to take the stack resumes it instead
// of building a fresh context (make_fcontext and its trampoline).  The top
// kStackTopReserve bytes of a stack are the cache's (its free-list links);
// contexts begin below them.
//
// Thread safety: AcquireStack and ReleaseStack may be called from any
// thread, on any stack; the caches are per thread.

#ifndef SPINDLE_EXECUTOR_INTERNAL_FIBER_STACK_H_
#define SPINDLE_EXECUTOR_INTERNAL_FIBER_STACK_H_

#include <cstddef>
#include <cstdint>

#include "executor/internal/sanitizers.h"

namespace spindle::executor_internal {

// The page size: a guard page's size, and what stack sizes round up to.
size_t QueryPageSize() noexcept;
inline size_t StackPageSize() noexcept {
  static const size_t page = QueryPageSize();
  return page;
}

struct FiberStack {
  char* base = nullptr;  // the mapping's low end: the guard page
  size_t size = 0;       // the whole mapping, guard page included

  char* top() const noexcept { return base + size; }
  // The bytes above the guard page.
  size_t usable() const noexcept { return size - StackPageSize(); }
};

// Per thread and per stack size.
inline constexpr size_t kMaxCachedStackBytes = size_t{64} << 20;  // 64 MiB

// The cache's bytes at the top of every stack (see above).
inline constexpr size_t kStackTopReserve = 64;

// The mapping that holds `usable` bytes: rounded up to whole pages, plus
// the guard page.  A mask, not a division (~20-40 cycles on this project's
// machines, on every fiber's start): a page is a power of 2.
inline size_t StackMappingSize(size_t usable) noexcept {
  const size_t page = StackPageSize();
  return ((usable + page - 1) & ~(page - 1)) + page;
}

// The spare slot (see Recycling above), reached inline by TakeSpareStack
// and PutSpareStack, the common cases of AcquireStack and ReleaseStack.
extern constinit thread_local FiberStack tl_spare_stack;
extern constinit thread_local void* tl_spare_parked;
// Whether the thread's cache is set up (its destructor registered, which
// unmaps the spare at thread exit): until then the spare is not used.
extern constinit thread_local bool tl_stack_cache_made;
extern constinit thread_local uint64_t tl_reused_spare;
extern constinit thread_local uint64_t tl_reused_parked;

// Takes the spare stack if it has `mapping_size` bytes: true, with the
// stack and the context of the entry parked on it (nullptr if none).
inline bool TakeSpareStack(size_t mapping_size, FiberStack* stack,
                           void** parked) noexcept {
  if (tl_spare_stack.size != mapping_size) return false;
  *stack = tl_spare_stack;
  *parked = tl_spare_parked;
  tl_spare_stack = FiberStack{};
  tl_spare_parked = nullptr;
  tl_reused_spare++;
  tl_reused_parked += *parked != nullptr;
  return true;
}

// Puts `stack` in the spare slot if it is free: true.  (Not under ASan,
// whose ReleaseStack clears the stack's poison.)
inline bool PutSpareStack(FiberStack stack, void* parked) noexcept {
#if defined(SPINDLE_ASAN)
  (void)stack;
  (void)parked;
  return false;
#else
  if (tl_spare_stack.base != nullptr || !tl_stack_cache_made) return false;
  tl_spare_stack = stack;
  tl_spare_parked = parked;
  return true;
#endif
}

// A stack with at least `usable` bytes above its guard page (rounded up to
// whole pages).  `*parked`: the entry context parked on it (ReleaseStack's
// `parked`), or nullptr for a stack that has none (a fresh one).  Throws
// std::bad_alloc when the mapping fails (out of memory, or out of
// mappings).
FiberStack AcquireStack(size_t usable, void** parked);

// Returns a stack to this thread's cache (or unmaps it).  `parked`: the
// context of a fiber entry waiting at the stack's top for the next fiber,
// or nullptr.
void ReleaseStack(FiberStack stack, void* parked) noexcept;

// How guard pages are made on this kernel.
enum class GuardKind : uint8_t { kMadvise, kMprotect };
GuardKind StackGuardKind() noexcept;

struct StackCacheStats {
  uint64_t mapped = 0;         // stacks mapped (fresh)
  uint64_t reused = 0;         // stacks taken from the cache
  uint64_t parked = 0;         // of those, with a parked entry on them
  uint64_t cached_stacks = 0;  // on this thread's cache now
};
StackCacheStats ThreadStackStats() noexcept;

// Bytes of stack mapped in the whole process (in use or cached).
size_t MappedStackBytes() noexcept;

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_FIBER_STACK_H_
