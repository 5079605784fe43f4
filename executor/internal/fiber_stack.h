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
