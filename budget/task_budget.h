// budget/task_budget.h: the 16-byte per-task budget.
//
// `TaskBudget` is what a task carries in its header so the run loop and the
// task's own suspension points (I/O awaitables, `yield_maybe()`) can agree on
// when a poll should end: a count of operations left in this poll and a TSC
// deadline.  `TierManager` (budget/tier.h) refills it before every poll
// according to the task's tier and priority.
//
// Layout (16 bytes, 16-byte aligned, checked by static_assert):
//   [0, 8)   deadline    TSC tick by which this poll should yield, 0 = none
//   [8, 12)  remaining   operations left in this poll (saturates at 0)
//   [12]     tier        the task's tier (a budget::Tier value)
//   [13]     generation  bumped by every Reset(): one per poll
//   [14, 16) reserved    zero
//
// Memory ordering.  One thread owns a budget at a time (the executor thread
// polling the task; ownership moves between threads only through the run
// queue's own synchronisation, which orders everything here).  The owner
// writes with plain `relaxed` loads and stores: a single writer needs no
// read-modify-write, so `Consume` is a load, a compare and a store, cheaper
// than a locked `fetch_sub`.  Other threads (stats, a watchdog) may read any
// field at any time with `relaxed` loads and get a value the owner wrote,
// never a torn one; the fields are independent numbers and publish no other
// data, so nothing stronger is needed.  The one exception is `Reset`: it
// stores the generation last with `release`, and `generation()` loads it with
// `acquire`, so an observer that sees a new generation also sees the
// remaining count and tier written by that Reset (or later ones).

#ifndef SPINDLE_BUDGET_TASK_BUDGET_H_
#define SPINDLE_BUDGET_TASK_BUDGET_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <cstdint>

namespace spindle::budget {

// TaskBudget: operations left in the current poll, a deadline, the tier.
//
// Requires: only the owning thread calls the mutating functions (`Consume`,
// `Reset`, `set_deadline`, `set_tier`) and the copy operations.
// Guarantees: `Consume` never wraps below zero; `Remaining()` is always a
// value some `Reset`/`Consume` wrote; exactly 16 bytes, 16-byte aligned.
// Thread safety: one writer, any number of readers (see the file comment).
//
// Example:
//   TaskBudget b;
//   b.Reset(128);
//   while (!b.Consume()) DoOneStep();   // 128 steps, then yield
class alignas(16) TaskBudget {
 public:
  // A fresh budget is exhausted (0 operations), has no deadline, tier 0.
  TaskBudget() noexcept = default;

  // Copies are taken by the owner (relaxed loads; see the file comment).
  TaskBudget(const TaskBudget& other) noexcept { CopyFrom(other); }
  TaskBudget& operator=(const TaskBudget& other) noexcept {
    if (this != &other) CopyFrom(other);
    return *this;
  }

  // Charges `n` operations.  Saturates at zero.  Returns true if the budget
  // is exhausted after charging (so also when it already was).
  bool Consume(uint32_t n = 1) noexcept {
    // Single writer: load + store, no RMW.  Readers pair with nothing (relaxed).
    const uint32_t r = remaining_.load(std::memory_order_relaxed);
    const uint32_t left = r > n ? r - n : 0;
    remaining_.store(left, std::memory_order_relaxed);
    return left == 0;
  }

  // Refills the budget with `ops` operations and bumps the generation.
  void Reset(uint32_t ops) noexcept {
    remaining_.store(ops, std::memory_order_relaxed);
    const uint8_t g = generation_.load(std::memory_order_relaxed);
    // Pairs with the acquire load in generation().
    generation_.store(static_cast<uint8_t>(g + 1), std::memory_order_release);
  }

  uint32_t Remaining() const noexcept {
    return remaining_.load(std::memory_order_relaxed);
  }
  bool Exhausted() const noexcept { return Remaining() == 0; }

  // TSC tick by which the current poll should yield (0 = none).
  uint64_t deadline() const noexcept {
    return deadline_.load(std::memory_order_relaxed);
  }
  void set_deadline(uint64_t tick) noexcept {
    deadline_.store(tick, std::memory_order_relaxed);
  }
  // True when `now` is at or past a set deadline.
  bool DeadlinePassed(uint64_t now_ticks) const noexcept {
    const uint64_t d = deadline();
    return d != 0 && now_ticks >= d;
  }
  // True when the task should yield: no operations left or deadline passed.
  bool ShouldYield(uint64_t now_ticks) const noexcept {
    return Exhausted() || DeadlinePassed(now_ticks);
  }

  // The task's tier, a budget::Tier value (kept here so observers see it).
  uint8_t tier() const noexcept { return tier_.load(std::memory_order_relaxed); }
  void set_tier(uint8_t tier) noexcept {
    tier_.store(tier, std::memory_order_relaxed);
  }

  // Bumped (mod 256) by every Reset.
  uint8_t generation() const noexcept {
    // Pairs with the release store in Reset.
    return generation_.load(std::memory_order_acquire);
  }

 private:
  void CopyFrom(const TaskBudget& o) noexcept {
    deadline_.store(o.deadline_.load(std::memory_order_relaxed),
                    std::memory_order_relaxed);
    remaining_.store(o.remaining_.load(std::memory_order_relaxed),
                     std::memory_order_relaxed);
    tier_.store(o.tier_.load(std::memory_order_relaxed),
                std::memory_order_relaxed);
    generation_.store(o.generation_.load(std::memory_order_relaxed),
                      std::memory_order_relaxed);
  }

  std::atomic<uint64_t> deadline_{0};
  std::atomic<uint32_t> remaining_{0};
  std::atomic<uint8_t> tier_{0};
  std::atomic<uint8_t> generation_{0};
  [[maybe_unused]] uint8_t reserved_[2] = {0, 0};
};

static_assert(sizeof(TaskBudget) == 16, "TaskBudget must be exactly 16 bytes");
static_assert(alignof(TaskBudget) == 16, "TaskBudget must be 16-byte aligned");
static_assert(std::atomic<uint64_t>::is_always_lock_free &&
                  std::atomic<uint32_t>::is_always_lock_free &&
                  std::atomic<uint8_t>::is_always_lock_free,
              "TaskBudget's fields must be lock-free atomics");

}  // namespace spindle::budget

#endif  // SPINDLE_BUDGET_TASK_BUDGET_H_
