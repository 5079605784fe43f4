#include "budget/hooks.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace spindle::budget {
namespace {

constexpr uint64_t kAlive = 0xA11CEA11CEA11CEull;
constexpr uint64_t kDead = 0xDEADDEADDEADDEADull;

// Heap state captured by a hook: freed with the hook set.  A use after free
// trips asan, and (without asan) usually the magic check.
struct Payload {
  explicit Payload(uint64_t id) : id(id) {}
  ~Payload() { magic = kDead; }
  uint64_t magic = kAlive;
  uint64_t id;
};

PollHooks OnlyBefore(std::function<void(const TaskContext&)> f) {
  PollHooks h;
  h.before_poll = std::move(f);
  return h;
}
PollHooks OnlyYield(std::function<void(const TaskContext&)> f) {
  PollHooks h;
  h.on_yield = std::move(f);
  return h;
}

TEST(HookRegistryTest, EmptyRegistryCallsNothing) {
  HookRegistry reg;
  TaskContext ctx;
  EXPECT_TRUE(reg.empty());
  reg.CallBeforePoll(ctx);
  reg.CallAfterPoll(ctx, PollOutcome::kPending, 5);
  reg.CallOnYield(ctx);
  reg.CallOnComplete(ctx);
  reg.CallOnCancel(ctx);
}

TEST(HookRegistryTest, CallsEachInstalledHookWithItsArguments) {
  HookRegistry reg;
  TaskContext ctx;
  ctx.task_id = 99;
  int before = 0, after = 0, yield = 0, complete = 0;
  uint64_t seen_elapsed = 0;
  PollOutcome seen_outcome = PollOutcome::kPending;
  PollHooks h;
  h.before_poll = [&](const TaskContext& c) { before += c.task_id == 99; };
  h.after_poll = [&](const TaskContext& c, PollOutcome o, uint64_t e) {
    ++after;
    seen_outcome = o;
    seen_elapsed = e;
  };
  h.on_yield = [&](const TaskContext&) { ++yield; };
  h.on_complete = [&](const TaskContext&) { ++complete; };
  int cancel = 0;
  h.on_cancel = [&](const TaskContext& c) { cancel += c.task_id == 99; };
  reg.Install(std::move(h));
  EXPECT_FALSE(reg.empty());
  reg.CallBeforePoll(ctx);
  reg.CallAfterPoll(ctx, PollOutcome::kReady, 1234);
  reg.CallOnYield(ctx);
  reg.CallOnComplete(ctx);
  reg.CallOnComplete(ctx);
  reg.CallOnCancel(ctx);
  EXPECT_EQ(cancel, 1);
  EXPECT_EQ(before, 1);
  EXPECT_EQ(after, 1);
  EXPECT_EQ(seen_outcome, PollOutcome::kReady);
  EXPECT_EQ(seen_elapsed, 1234u);
  EXPECT_EQ(yield, 1);
  EXPECT_EQ(complete, 2);
}

TEST(HookRegistryTest, PartialSetsAndReplaceAndClear) {
  HookRegistry reg;
  TaskContext ctx;
  int a = 0, b = 0;
  reg.Install(OnlyBefore([&](const TaskContext&) { ++a; }));
  reg.CallBeforePoll(ctx);
  reg.CallAfterPoll(ctx, PollOutcome::kPending, 1);  // empty member: skipped
  reg.Install(OnlyYield([&](const TaskContext&) { ++b; }));
  reg.CallBeforePoll(ctx);  // replaced: no longer called
  reg.CallOnYield(ctx);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 1);
  reg.Clear();
  EXPECT_TRUE(reg.empty());
  reg.CallOnYield(ctx);
  EXPECT_EQ(b, 1);
  reg.Install(OnlyYield([&](const TaskContext&) { ++b; }));
  reg.Install(PollHooks{});  // all empty == Clear
  EXPECT_TRUE(reg.empty());
  PollHooks only_cancel;  // on_cancel alone is a set
  only_cancel.on_cancel = [&](const TaskContext&) { ++b; };
  reg.Install(std::move(only_cancel));
  EXPECT_FALSE(reg.empty());
  reg.CallOnComplete(ctx);
  reg.CallOnCancel(ctx);
  EXPECT_EQ(b, 2);
}

TEST(HookRegistryTest, ReplacedSetsAreFreedInBatches) {
  auto payload = std::make_shared<Payload>(1);
  std::weak_ptr<Payload> weak = payload;
  HookRegistry reg;
  reg.Install(OnlyBefore([p = std::move(payload)](const TaskContext&) {
    (void)p;
  }));
  reg.Clear();
  EXPECT_EQ(reg.retired_count(), 1u);
  EXPECT_FALSE(weak.expired()) << "deferred: not freed on the spot";
  reg.Reclaim();
  EXPECT_EQ(reg.retired_count(), 0u);
  EXPECT_TRUE(weak.expired());
  for (size_t i = 0; i < 3 * HookRegistry::kRetireBatch; ++i) {
    reg.Install(OnlyYield([](const TaskContext&) {}));
  }
  EXPECT_LT(reg.retired_count(), HookRegistry::kRetireBatch)
      << "Install reclaims on its own";
}

TEST(HookRegistryTest, SetInUseSurvivesReplacementUntilTheCallReturns) {
  HookRegistry reg;
  std::atomic<int> phase{0};
  auto payload = std::make_shared<Payload>(7);
  std::weak_ptr<Payload> weak = payload;
  std::atomic<uint64_t> seen_magic{0};
  reg.Install(OnlyBefore([p = std::move(payload), &phase,
                               &seen_magic](const TaskContext&) {
    phase.store(1, std::memory_order_release);
    while (phase.load(std::memory_order_acquire) != 2) std::this_thread::yield();
    seen_magic.store(p->magic);
  }));
  std::thread caller([&] {
    TaskContext ctx;
    reg.CallBeforePoll(ctx);
  });
  while (phase.load(std::memory_order_acquire) != 1) std::this_thread::yield();
  // The hook is running: replace the set many times and reclaim.
  for (size_t i = 0; i < 2 * HookRegistry::kRetireBatch; ++i) {
    reg.Install(OnlyYield([](const TaskContext&) {}));
  }
  reg.Reclaim();
  EXPECT_FALSE(weak.expired()) << "freed while a call was using it";
  phase.store(2, std::memory_order_release);
  caller.join();
  EXPECT_EQ(seen_magic.load(), kAlive);
  reg.Reclaim();
  EXPECT_TRUE(weak.expired());
}

TEST(HookRegistryTest, HooksMayNestAndInstallDuringACall) {
  HookRegistry outer, inner;
  TaskContext ctx;
  int inner_calls = 0, outer_calls = 0;
  inner.Install(OnlyYield([&](const TaskContext&) { ++inner_calls; }));
  outer.Install(OnlyYield([&](const TaskContext& c) {
    ++outer_calls;
    inner.CallOnYield(c);
    outer.Clear();  // replaces the running set: it stays alive till return
    outer.Reclaim();
  }));
  outer.CallOnYield(ctx);
  outer.CallOnYield(ctx);  // cleared
  EXPECT_EQ(outer_calls, 1);
  EXPECT_EQ(inner_calls, 1);
}

// The stress: 100,000 replacements while two threads call.
class HookStressTest : public ::testing::TestWithParam<int> {};

TEST_P(HookStressTest, ReplaceWhileThreadsCall) {
  const int callers = GetParam();
  constexpr int kInstalls = 100'000;
  HookRegistry reg;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> bad{0};
  std::atomic<uint64_t> calls{0};
  std::atomic<int> started{0};
  auto make = [&](uint64_t id) {
    auto p = std::make_shared<Payload>(id);
    PollHooks h;
    h.before_poll = [p](const TaskContext&) {
      if (p->magic != kAlive) std::abort();
    };
    h.after_poll = [p, &calls](const TaskContext& c, PollOutcome,
                               uint64_t e) {
      if (p->magic != kAlive) std::abort();
      (void)c;
      (void)e;
      calls.fetch_add(1, std::memory_order_relaxed);
    };
    h.on_yield = [p](const TaskContext& c) {
      // Ids installed by one writer are seen in non-decreasing order;
      // the caller passes its last seen id through task_id.
      auto* last = reinterpret_cast<uint64_t*>(c.task_id);
      if (p->id < *last) std::abort();
      *last = p->id;
    };
    return h;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&] {
      uint64_t last_id = 0;
      TaskContext ctx;
      ctx.task_id = reinterpret_cast<uint64_t>(&last_id);
      uint64_t n = 0;
      while (!done.load(std::memory_order_acquire)) {
        reg.CallBeforePoll(ctx);
        reg.CallAfterPoll(ctx, PollOutcome::kPending, n);
        reg.CallOnYield(ctx);
        reg.CallOnComplete(ctx);
        if (n++ == 0) started.fetch_add(1, std::memory_order_release);
      }
      if (n == 0) bad.fetch_add(1);
    });
  }
  // Replacements start only once every caller is inside its loop, so the
  // callers overlap the writer even when the machine has fewer cores than
  // threads (a caller scheduled late used to make no call at all).
  while (started.load(std::memory_order_acquire) < callers) {
    std::this_thread::yield();
  }
  for (int i = 1; i <= kInstalls; ++i) {
    if (i % 1000 == 0) {
      reg.Clear();
    } else {
      reg.Install(make(static_cast<uint64_t>(i)));
    }
  }
  done.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(calls.load(), 0u);
  reg.Reclaim();
  EXPECT_EQ(reg.retired_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Callers, HookStressTest, ::testing::Values(2, 4),
                         [](const auto& info) {
                           return "callers_" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace spindle::budget
