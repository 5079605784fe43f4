// dispatch/dispatch_testing.h: test helpers for dispatch and its users.

#ifndef SPINDLE_DISPATCH_DISPATCH_TESTING_H_
#define SPINDLE_DISPATCH_DISPATCH_TESTING_H_

#include <atomic>

namespace spindle::dispatch_testing {

// A one-shot event on a std::atomic: ThreadSanitizer sees its ordering (the
// system Abseil's Notification is not instrumented).
class Event {
 public:
  void Notify() {
    set_.store(true, std::memory_order_release);
    set_.notify_all();
  }
  void WaitForNotification() {
    while (!set_.load(std::memory_order_acquire)) set_.wait(false);
  }
  bool HasBeenNotified() const { return set_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> set_{false};
};

}  // namespace spindle::dispatch_testing

#endif  // SPINDLE_DISPATCH_DISPATCH_TESTING_H_
