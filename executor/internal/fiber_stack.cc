// executor/internal/fiber_stack.cc: mapping, guarding and recycling fiber
// stacks (see fiber_stack.h).

#include "executor/internal/fiber_stack.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <new>

#include "executor/internal/sanitizers.h"

namespace spindle::executor_internal {

namespace {

// Linux 6.13's madvise advice; Debian 12's headers predate it.
constexpr int kMadvGuardInstall = 102;

// relaxed: a statistic.
std::atomic<size_t> g_mapped_bytes{0};

void Unmap(char* base, size_t size) noexcept {
  munmap(base, size);
  g_mapped_bytes.fetch_sub(size, std::memory_order_relaxed);
}

enum : int { kGuardUnknown = 0, kGuardMadvise = 1, kGuardMprotect = 2 };
std::atomic<int> g_guard_kind{kGuardUnknown};

size_t PageSizeOnce() noexcept { return StackPageSize(); }

// Makes the first page of `base` fault on any access; false on failure.
bool InstallGuard(char* base, size_t page) noexcept {
  // relaxed: the kind is a cached fact about the kernel, not a handoff.
  int kind = g_guard_kind.load(std::memory_order_relaxed);
  if (kind != kGuardMprotect) {
    if (madvise(base, page, kMadvGuardInstall) == 0) {
      g_guard_kind.store(kGuardMadvise, std::memory_order_relaxed);
      return true;
    }
    // EINVAL: an older kernel (or a sanitizer that does not pass the
    // advice on); any other error is not about the advice either.
    if (errno != EINVAL) return false;
    g_guard_kind.store(kGuardMprotect, std::memory_order_relaxed);
  }
  return mprotect(base, page, PROT_NONE) == 0;
}

// A free stack is linked through words at its top (in the
// kStackTopReserve bytes that no context uses).
struct FreeStack {
  FreeStack* next;
  void* parked;  // the entry context waiting on it, or nullptr
};
static_assert(sizeof(FreeStack) <= kStackTopReserve);

constexpr int kMaxSizeClasses = 8;

struct StackCache {
  struct SizeClass {
    size_t size = 0;  // mapping size; 0: unused slot
    FreeStack* head = nullptr;
    size_t count = 0;
  };
  SizeClass classes[kMaxSizeClasses];
  uint64_t mapped = 0;
  uint64_t reused = 0;

  SizeClass* Find(size_t size, bool create) noexcept {
    for (SizeClass& c : classes) {
      if (c.size == size) return &c;
    }
    if (!create) return nullptr;
    for (SizeClass& c : classes) {
      if (c.size == 0) {
        c.size = size;
        return &c;
      }
    }
    return nullptr;
  }
  ~StackCache();
};

// Set when this thread's cache has been destroyed (thread exit): stacks
// released afterwards are unmapped at once.
constinit thread_local bool tl_cache_gone = false;
thread_local StackCache tl_cache;
FreeStack* FreeStackOf(char* base, size_t size) noexcept {
  return reinterpret_cast<FreeStack*>(base + size - sizeof(FreeStack));
}

char* BaseOf(FreeStack* f, size_t size) noexcept {
  return reinterpret_cast<char*>(f) + sizeof(FreeStack) - size;
}

StackCache::~StackCache() {
  tl_cache_gone = true;
  tl_stack_cache_made = false;  // later releases unmap
  if (tl_spare_stack.base != nullptr) {
    Unmap(tl_spare_stack.base, tl_spare_stack.size);
    tl_spare_stack = FiberStack{};
  }
  for (SizeClass& c : classes) {
    while (c.head != nullptr) {
      FreeStack* f = c.head;
      c.head = f->next;
      Unmap(BaseOf(f, c.size), c.size);
    }
    c.count = 0;
  }
}

}  // namespace

// The spare slot: constinit, so reaching it costs no TLS wrapper call.  Its
// stack is unmapped by tl_cache's destructor, which the first release on
// the thread registers (tl_stack_cache_made).
constinit thread_local FiberStack tl_spare_stack{};
constinit thread_local void* tl_spare_parked = nullptr;
constinit thread_local bool tl_stack_cache_made = false;
constinit thread_local uint64_t tl_reused_spare = 0;
constinit thread_local uint64_t tl_reused_parked = 0;

size_t QueryPageSize() noexcept {
  return static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

GuardKind StackGuardKind() noexcept {
  return g_guard_kind.load(std::memory_order_relaxed) == kGuardMprotect
             ? GuardKind::kMprotect
             : GuardKind::kMadvise;
}

FiberStack AcquireStack(size_t usable, void** parked) {
  const size_t page = PageSizeOnce();
  const size_t size = StackMappingSize(usable);
  if (FiberStack s; TakeSpareStack(size, &s, parked)) [[likely]] return s;
  if (!tl_cache_gone) {
    StackCache& cache = tl_cache;
    if (StackCache::SizeClass* c = cache.Find(size, /*create=*/false);
        c != nullptr && c->head != nullptr) {
      FreeStack* f = c->head;
      c->head = f->next;
      c->count--;
      cache.reused++;
      *parked = f->parked;
      tl_reused_parked += f->parked != nullptr;
      return FiberStack{BaseOf(f, size), size};
    }
  }
  *parked = nullptr;
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                   -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  char* base = static_cast<char*>(mem);
  if (!InstallGuard(base, page)) {
    munmap(base, size);
    throw std::bad_alloc();
  }
  g_mapped_bytes.fetch_add(size, std::memory_order_relaxed);
  if (!tl_cache_gone) tl_cache.mapped++;
  return FiberStack{base, size};
}

void ReleaseStack(FiberStack stack, void* parked) noexcept {
#if defined(SPINDLE_ASAN)
  // Frames of the fiber that ran here may have left shadow poison.  (Only
  // under ASan: elsewhere the page size's guard would be tested for
  // nothing on every fiber's end.)
  SanitizerUnpoison(stack.base + PageSizeOnce(), stack.usable());
#endif
  if (tl_spare_stack.base == nullptr && tl_stack_cache_made) [[likely]] {
    tl_spare_stack = stack;
    tl_spare_parked = parked;
    return;
  }
  if (!tl_cache_gone) {
    // tl_cache is constructed here (and its destructor registered) before
    // the spare is used.
    StackCache& cache = tl_cache;
    tl_stack_cache_made = true;
    StackCache::SizeClass* c = cache.Find(stack.size, /*create=*/true);
    if (c != nullptr && (c->count + 1) * stack.size <= kMaxCachedStackBytes) {
      FreeStack* f = FreeStackOf(stack.base, stack.size);
      f->next = c->head;
      f->parked = parked;
      c->head = f;
      c->count++;
      return;
    }
  }
  Unmap(stack.base, stack.size);
}

size_t MappedStackBytes() noexcept {
  return g_mapped_bytes.load(std::memory_order_relaxed);
}

StackCacheStats ThreadStackStats() noexcept {
  StackCacheStats s;
  if (tl_cache_gone) return s;
  const StackCache& cache = tl_cache;
  s.mapped = cache.mapped;
  s.reused = cache.reused + tl_reused_spare;
  s.parked = tl_reused_parked;
  for (const StackCache::SizeClass& c : cache.classes) s.cached_stacks += c.count;
  if (tl_spare_stack.base != nullptr) s.cached_stacks++;
  return s;
}

}  // namespace spindle::executor_internal
