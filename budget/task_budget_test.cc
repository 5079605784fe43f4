#include "budget/task_budget.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <type_traits>

#include "budget/budget.h"
#include "gtest/gtest.h"

namespace spindle::budget {
namespace {

TEST(TaskBudgetTest, SizeAndAlignment) {
  EXPECT_EQ(sizeof(TaskBudget), 16u);
  EXPECT_EQ(alignof(TaskBudget), 16u);
  TaskBudget budgets[3];
  for (const auto& b : budgets) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(&b) % 16, 0u);
  }
  EXPECT_EQ(alignof(TaskContext) % 16, 0u);
}

// The layer's VERSION file, read at test time from the runfiles (the
// test's `data`), so kVersion cannot drift from it.
std::string VersionFile() {
  const char* dir = std::getenv("TEST_SRCDIR");
  if (dir == nullptr) return "(TEST_SRCDIR is not set)";
  std::ifstream in(std::string(dir) + "/spindle/budget/VERSION");
  std::string version;
  std::getline(in, version);
  return version;
}

TEST(BudgetVersionTest, MatchesVersionFile) {
  EXPECT_EQ(kVersion, VersionFile());
}

TEST(TaskBudgetTest, FreshBudgetIsExhaustedWithNoDeadline) {
  TaskBudget b;
  EXPECT_EQ(b.Remaining(), 0u);
  EXPECT_TRUE(b.Exhausted());
  EXPECT_EQ(b.deadline(), 0u);
  EXPECT_EQ(b.tier(), 0);
  EXPECT_EQ(b.generation(), 0);
  EXPECT_FALSE(b.DeadlinePassed(~uint64_t{0})) << "0 means no deadline";
}

TEST(TaskBudgetTest, ConsumeCountsDownAndReportsExhaustion) {
  TaskBudget b;
  b.Reset(3);
  EXPECT_FALSE(b.Consume());
  EXPECT_EQ(b.Remaining(), 2u);
  EXPECT_FALSE(b.Consume());
  EXPECT_TRUE(b.Consume()) << "the third of three exhausts it";
  EXPECT_TRUE(b.Exhausted());
}

TEST(TaskBudgetTest, ConsumeSaturatesAtZero) {
  TaskBudget b;
  b.Reset(5);
  EXPECT_TRUE(b.Consume(7));
  EXPECT_EQ(b.Remaining(), 0u);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.Consume());
  EXPECT_EQ(b.Remaining(), 0u) << "never wraps past zero";
  EXPECT_TRUE(b.Consume(UINT32_MAX));
  EXPECT_EQ(b.Remaining(), 0u);
  b.Reset(UINT32_MAX);
  EXPECT_FALSE(b.Consume(UINT32_MAX - 1));
  EXPECT_EQ(b.Remaining(), 1u);
  EXPECT_TRUE(b.Consume(UINT32_MAX));
  EXPECT_EQ(b.Remaining(), 0u);
}

TEST(TaskBudgetTest, ConsumeZeroChangesNothing) {
  TaskBudget b;
  b.Reset(2);
  EXPECT_FALSE(b.Consume(0));
  EXPECT_EQ(b.Remaining(), 2u);
  b.Reset(0);
  EXPECT_TRUE(b.Consume(0)) << "an empty budget stays exhausted";
}

TEST(TaskBudgetTest, ResetBumpsGenerationAndWraps) {
  TaskBudget b;
  for (int i = 1; i <= 300; ++i) {
    b.Reset(10);
    ASSERT_EQ(b.generation(), static_cast<uint8_t>(i));
  }
  EXPECT_EQ(b.Remaining(), 10u);
}

TEST(TaskBudgetTest, DeadlineAndTierAreIndependentOfCount) {
  TaskBudget b;
  b.set_deadline(1000);
  b.set_tier(3);
  b.Reset(1);
  EXPECT_EQ(b.deadline(), 1000u);
  EXPECT_EQ(b.tier(), 3);
  EXPECT_FALSE(b.DeadlinePassed(999));
  EXPECT_TRUE(b.DeadlinePassed(1000));
  EXPECT_FALSE(b.ShouldYield(999));
  EXPECT_TRUE(b.ShouldYield(1000));
  EXPECT_TRUE(b.Consume());
  EXPECT_TRUE(b.ShouldYield(0));
}

TEST(TaskBudgetTest, CopyCopiesEveryField) {
  TaskBudget a;
  a.Reset(42);
  a.set_deadline(7);
  a.set_tier(2);
  TaskBudget b(a);
  EXPECT_EQ(b.Remaining(), 42u);
  EXPECT_EQ(b.deadline(), 7u);
  EXPECT_EQ(b.tier(), 2);
  EXPECT_EQ(b.generation(), 1);
  TaskBudget c;
  c = a;
  EXPECT_EQ(c.Remaining(), 42u);
}

// One owner consumes and resets; an observer reads every field.  Under tsan
// this must be race-free, and the observer only ever sees values the owner
// wrote (never more than the reset value).
TEST(TaskBudgetTest, ObserverReadsWhileOwnerWrites) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kRounds = 2'000;
#else
  constexpr int kRounds = 20'000;
#endif
  TaskBudget b;
  constexpr uint32_t kOps = 100;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> bad{0};
  std::thread observer([&] {
    while (!done.load(std::memory_order_acquire)) {
      (void)b.generation();
      const uint32_t r = b.Remaining();
      const uint64_t d = b.deadline();
      if (r > kOps) bad.fetch_add(1);
      if (d > static_cast<uint64_t>(kRounds)) bad.fetch_add(1);
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    b.Reset(kOps);
    b.set_deadline(static_cast<uint64_t>(i + 1));
    while (!b.Consume()) {
    }
  }
  done.store(true, std::memory_order_release);
  observer.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(b.generation(), static_cast<uint8_t>(kRounds));
}

}  // namespace
}  // namespace spindle::budget
