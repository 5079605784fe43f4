// A thread's hazard record must stay its own until the thread is gone:
// hook calls can come from destructors of thread_local objects that run
// after the record's own thread-exit cleanup (an executor kept in
// thread-local storage, for example).

#include <thread>

#include "budget/hooks.h"
#include "gtest/gtest.h"

namespace spindle::budget {
namespace {

struct LateHookUser {
  bool* owned_at_exit = nullptr;
  ~LateHookUser() {
    if (owned_at_exit != nullptr) {
      *owned_at_exit =
          budget_internal::ThisThreadHazardRecordOwnedForTesting();
    }
  }
};

TEST(HooksThreadExitTest, LateThreadLocalDestructorsStillOwnARecord) {
  bool owned = false;
  std::thread t([&] {
    // Constructed before the thread's first hook call, so destroyed after
    // the record was given back at thread exit.
    thread_local LateHookUser late;
    late.owned_at_exit = &owned;
    ASSERT_TRUE(budget_internal::ThisThreadHazardRecordOwnedForTesting());
  });
  t.join();
  EXPECT_TRUE(owned) << "a record given back at thread exit was used again";
}

}  // namespace
}  // namespace spindle::budget
