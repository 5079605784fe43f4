// executor/internal/sanitizers.h: what AddressSanitizer and ThreadSanitizer
// must be told when a thread switches stacks (fibers, executor/fiber.h).
// Without a sanitizer every call here compiles to nothing.
//
// AddressSanitizer keeps the bounds of the stack it runs on (to unpoison it
// when an exception or longjmp leaves frames behind, and for its fake
// stacks of detect_stack_use_after_return): a switch is announced with
// __sanitizer_start_switch_fiber and completed, on the new stack, with
// __sanitizer_finish_switch_fiber.  ThreadSanitizer keeps a shadow call
// stack and a happens-before clock per fiber: each fiber gets its own
// (__tsan_create_fiber) and every switch names the one it goes to.

#ifndef SPINDLE_EXECUTOR_INTERNAL_SANITIZERS_H_
#define SPINDLE_EXECUTOR_INTERNAL_SANITIZERS_H_

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define SPINDLE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPINDLE_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define SPINDLE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPINDLE_TSAN 1
#endif
#endif

#if defined(SPINDLE_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(SPINDLE_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace spindle::executor_internal {

inline void SanitizerUnpoison(void* p, size_t n) noexcept {
#if defined(SPINDLE_ASAN)
  __asan_unpoison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}

// One side of a stack switch, as AddressSanitizer sees it.  `fake` holds
// the leaving side's fake stack while it is away (nullptr when the leaving
// side never comes back: a finished fiber).
inline void AsanStartSwitch(void** fake, const void* to_bottom,
                            size_t to_size) noexcept {
#if defined(SPINDLE_ASAN)
  __sanitizer_start_switch_fiber(fake, to_bottom, to_size);
#else
  (void)fake;
  (void)to_bottom;
  (void)to_size;
#endif
}

// On arrival: `from_bottom` / `from_size` receive the bounds of the stack
// that was left (may be null).
inline void AsanFinishSwitch(void* fake, const void** from_bottom,
                             size_t* from_size) noexcept {
#if defined(SPINDLE_ASAN)
  __sanitizer_finish_switch_fiber(fake, from_bottom, from_size);
#else
  (void)fake;
  (void)from_bottom;
  (void)from_size;
#endif
}

inline void* TsanCurrentFiber() noexcept {
#if defined(SPINDLE_TSAN)
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}

inline void* TsanCreateFiber() noexcept {
#if defined(SPINDLE_TSAN)
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}

inline void TsanSwitchTo(void* fiber) noexcept {
#if defined(SPINDLE_TSAN)
  __tsan_switch_to_fiber(fiber, 0);
#else
  (void)fiber;
#endif
}

inline void TsanDestroyFiber(void* fiber) noexcept {
#if defined(SPINDLE_TSAN)
  if (fiber != nullptr) __tsan_destroy_fiber(fiber);
#else
  (void)fiber;
#endif
}

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_SANITIZERS_H_
