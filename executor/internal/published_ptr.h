// executor/internal/published_ptr.h: a pointer field that one thread
// writes while others read it (TaskHeader's owner and inbox).
// Internal: included by executor/task.h.

#ifndef SPINDLE_EXECUTOR_INTERNAL_PUBLISHED_PTR_H_
#define SPINDLE_EXECUTOR_INTERNAL_PUBLISHED_PTR_H_

#include <atomic>

namespace spindle::executor_internal {

// A pointer field that one thread writes while others may read it (a
// task's owner and inbox, rewritten when a Runtime moves a started task to
// another worker).  Loads acquire, stores release: a reader that sees the
// new owner sees what the mover wrote before it (the task's run_state).
// Plain moves on x86.
template <typename T>
class PublishedPtr {
 public:
  PublishedPtr() noexcept = default;
  PublishedPtr(const PublishedPtr&) = delete;
  PublishedPtr& operator=(const PublishedPtr&) = delete;
  PublishedPtr& operator=(T* p) noexcept {
    p_.store(p, std::memory_order_release);
    return *this;
  }
  operator T*() const noexcept {  // NOLINT: reads as the pointer it was
    return p_.load(std::memory_order_acquire);
  }
  T* operator->() const noexcept { return p_.load(std::memory_order_acquire); }

 private:
  std::atomic<T*> p_{nullptr};
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_PUBLISHED_PTR_H_
